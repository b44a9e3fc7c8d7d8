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
    """Every capacity the shipped instances' solves simulate, on the capacity disk cache, made
    once for every test worker: the first worker to ask solves each simulated instance that has a
    golden plan (the lazy loop simulates every pair its rounds use, on every core) under a file
    lock while the others wait, and leaves a stamp; the others then find the stamp and go on, and
    read the capacities from disk as their tests need them. Without it test_golden, the backends'
    comparison, the export tests and the simulator's command-line tests simulated the same
    azure-2023 and mooncake-2025 pairs side by side, minutes each."""
    from planner import capacity
    from planner.options import build_option_table, needs_checks
    from planner.solvers import solve

    disk = capacity._disk_dir()
    if disk is None:  # PLANNER_NO_CACHE: nothing to share
        yield
        return
    disk.mkdir(parents=True, exist_ok=True)
    stamp = disk / f".golden-capacities-{capacity._code_version()}.done"
    with open(disk / ".golden-capacities.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not stamp.exists():
                for golden in sorted(GOLDEN.glob("*.yaml")):
                    path = INSTANCES / golden.name
                    if path.is_file() and needs_checks(table := build_option_table(load_instance(path))):
                        solve(table.instance, "milp", table=table)  # simulated (or read) and kept on disk
                stamp.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    yield
