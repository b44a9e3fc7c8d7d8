"""Shared fixtures. Tests that take a ``backend`` argument run once per exact backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from planner.loader import load_instance_data
from planner.problem import Instance
from planner.solvers.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = ROOT / "instances"
SHARED = ROOT.parent / "shared"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", sorted(BACKENDS))


def make_instance(doc: dict[str, Any], name: str = "test") -> Instance:
    """Validate an inline instance document (as if read from ``<name>.yaml``)."""
    return load_instance_data({"name": name, **doc}, f"{name}.yaml", ROOT)
