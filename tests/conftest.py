"""Shared fixtures. Tests that take a ``backend`` argument run once per exact backend."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planner.loader import load_instance, load_instance_data
from planner.problem import Instance
from planner.solvers.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = ROOT / "instances"
SHARED = ROOT.parent / "shared"
GOLDEN = Path(__file__).parent / "golden"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", sorted(BACKENDS))


def make_instance(doc: dict[str, Any], name: str = "test") -> Instance:
    """Validate an inline instance document (as if read from ``<name>.yaml``)."""
    return load_instance_data({"name": name, **doc}, f"{name}.yaml", ROOT)


@pytest.fixture(scope="session")
def golden_capacities() -> Iterator[None]:
    """The golden plans' simulated capacities, on the capacity disk cache, made once for every
    test worker: the first worker to ask simulates them (on every core) under a file lock while
    the others wait, then each reads them from disk. Without it test_golden, the export tests and
    the simulator's command-line tests simulated the same azure-2023 and mooncake-2025 pairs side
    by side, minutes each."""
    from planner import capacity
    from planner.options import build_option_table, check_pairs, needs_checks
    from planner.plan import plan_pairs, read_plan

    disk = capacity._disk_dir()
    if disk is None:  # PLANNER_NO_CACHE: nothing to share
        yield
        return
    disk.mkdir(parents=True, exist_ok=True)
    with open(disk / ".golden-capacities.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for golden in sorted(GOLDEN.glob("*.yaml")):
                path = INSTANCES / golden.name
                if not path.is_file():
                    continue
                table = build_option_table(load_instance(path))
                plan = read_plan(golden)
                if plan.has_solution and needs_checks(table):
                    check_pairs(table, plan_pairs(plan))  # simulated (or read) and kept on disk
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    yield
