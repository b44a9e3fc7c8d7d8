"""mooncake-2025's shipped-instance tests (tests/test_instances.py's, for this instance): its
golden plan, the two backends on its table, and the command-line solve then check. In a file of
their own so that pytest-xdist runs them beside test_instances.py's (--dist loadfile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_instances as shipped
from tests.conftest import INSTANCES

NAME = "mooncake-2025"
pytestmark = pytest.mark.skipif(not (INSTANCES / f"{NAME}.yaml").is_file(), reason="not shipped")


def test_golden(golden_capacities: None) -> None:
    shipped.test_golden(NAME, golden_capacities)


def test_backends_agree_on_shipped(golden_capacities: None) -> None:
    shipped.test_backends_agree_on_shipped(NAME, golden_capacities)


def test_cli_solve_then_check(tmp_path: Path) -> None:
    shipped.test_cli_solve_then_check(NAME, tmp_path)
