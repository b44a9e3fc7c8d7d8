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


MULTIPERIOD: dict[str, str] = {
    "milp": "planner.solvers.multiperiod:solve_multiperiod_milp",
    "agh": "planner.solvers.multiperiod:solve_multiperiod_agh",
}


def method(name: str, multiperiod: bool = False) -> Method:
    """The registered function of method ``name`` (its multi-period form when asked)."""
    registry = MULTIPERIOD if multiperiod else METHODS
    if name not in registry:
        kind = "multi-period " if multiperiod else ""
        raise KeyError(f"unknown {kind}method {name!r}; known: {', '.join(sorted(registry))}")
    module, func = registry[name].split(":")
    fn: Method = getattr(importlib.import_module(module), func)
    return fn


def solve(inst: Instance, method_name: str = "milp", table: OptionTable | None = None, **options: Any) -> Plan:
    """Solve ``inst`` with a registered method; the option table is built once and shared. An
    instance with ``scaling`` windows is planned per window (multi-period milp or agh)."""
    table = table or build_option_table(inst)
    return method(method_name, table.instance.scaling is not None)(table, **options)
