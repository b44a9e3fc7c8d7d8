"""Solution methods behind one entry point: ``solve(instance, method=..., **options) -> Plan``.

Methods register themselves in :data:`METHODS`; the CLI and benchmarks look them up by name, so a
new method is one function and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from planner.options import OptionTable, build_option_table
from planner.plan import Plan
from planner.problem import Instance
from planner.solvers.milp_method import solve_milp

Method = Callable[..., Plan]

METHODS: dict[str, Method] = {
    "milp": solve_milp,
}


def solve(inst: Instance, method: str = "milp", table: OptionTable | None = None, **options: Any) -> Plan:
    """Solve ``inst`` with a registered method; the option table is built once and shared."""
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[method](table or build_option_table(inst), **options)
