"""Solution methods behind one entry point: ``solve(instance, method=..., **options) -> Plan``.

Methods are registered by name in :data:`METHODS` as ``module:function`` and imported when first
used, so the exact solver and the heuristics (which reuse the exact model to polish) can import
each other's modules without an import cycle. A new method is one function and one registry line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from planner.options import OptionTable, build_option_table
from planner.plan import Plan
from planner.problem import Instance

Method = Callable[..., Plan]

METHODS: dict[str, str] = {
    "milp": "planner.solvers.milp_method:solve_milp",
    "gh": "planner.heuristics.methods:solve_gh",
    "agh": "planner.heuristics.methods:solve_agh",
    "cheapest-tier": "planner.baselines:solve_cheapest_tier",
    "best-model": "planner.baselines:solve_best_model",
    "melange": "planner.baselines:solve_melange",
}


def method(name: str) -> Method:
    """The registered function of method ``name``."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    module, func = METHODS[name].split(":")
    fn: Method = getattr(importlib.import_module(module), func)
    return fn


def solve(inst: Instance, method_name: str = "milp", table: OptionTable | None = None, **options: Any) -> Plan:
    """Solve ``inst`` with a registered method; the option table is built once and shared."""
    return method(method_name)(table or build_option_table(inst), **options)
