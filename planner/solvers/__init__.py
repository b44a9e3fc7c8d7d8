"""Solution methods behind one entry point: ``solve(instance, method=..., **options) -> Plan``.

Methods are registered by name in :data:`METHODS` as ``module:function`` and imported when first
used, so the exact solver and the heuristics (which reuse the exact model to polish) can import
each other's modules without an import cycle. A new method is one function and one registry line.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from planner.options import (
    OptionTable,
    build_option_table,
    check_pairs,
    estimated,
    needs_checks,
    pending_checks,
    relaxed,
)
from planner.plan import Plan, plan_pairs
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


MAX_CHECK_ROUNDS = 60
MAX_PROOF_ROUNDS = 200  # rounds on the relaxation with prove=True


LATE_ROUND_S = 5.0  # a lazy round's time limit once the solve's own limit is spent (seconds)


def solve(inst: Instance, method_name: str = "milp", table: OptionTable | None = None, **options: Any) -> Plan:
    """Solve ``inst`` with a registered method; the option table is built once and shared. An
    instance with ``scaling`` windows is planned per window (multi-period milp or agh).

    With attainment targets (model mode) the table starts with analytic estimates
    (:mod:`planner.capacity`), and solving is lazy: solve, simulate every pair the solution uses
    that is still an estimate, re-solve, until the solution uses only simulated pairs. Each round
    simulates at least one new pair, so the loop ends. The last round's status, bound and gap are
    those of its table: the pairs the plan uses simulated, the others estimated. The estimates are
    not bounds, so "optimal" is not a claim about a fully simulated table. What is: the exact
    method then solves once more on the relaxation (:func:`planner.options.relaxed`: every row
    still estimated at its rate bound, which no simulation exceeds, and without delay cost), and
    that MILP's proven bound is a lower bound on the cost of any plan with every pair simulated —
    ``simulated_bound`` on the plan, and its gap in the message. The rate bound is loose (it
    ignores queueing), so that bound is far below the plan (quickstart: $116.16 against $247.92).
    ``prove=True`` closes it: solve the relaxation, simulate the pairs its solution still takes at
    their bound, repeat until its solution uses only simulated pairs — then that plan costs what
    the relaxation says, which bounds every fully simulated plan: it is optimal for the fully
    simulated table (quickstart: $237.36, seconds; azure-2023 takes hundreds of pairs). A round
    limit or the time limit returns the lazy plan with the last bound. A ``time_limit`` is the
    whole solve's: each round gets what is left of it (at least :data:`LATE_ROUND_S`)."""
    table = table or build_option_table(inst)
    prove = bool(options.pop("prove", False))
    solver = method(method_name, table.instance.scaling is not None)
    if not needs_checks(table):
        return solver(table, **options)
    start = time.perf_counter()
    rounds, checked = 0, 0
    limit = options.get("time_limit")
    while True:
        if limit is not None:
            # The time limit is the whole solve's, over every lazy round; once it is spent a round
            # still gets LATE_ROUND_S, as the plan must end on simulated pairs only.
            options["time_limit"] = max(limit - (time.perf_counter() - start), LATE_ROUND_S)
        plan = solver(table, **options)
        # The plan's pairs still estimated, and the rows of its shared pools' types held to a
        # tighter TPOT: simulated, then solved again.
        todo = pending_checks(table, plan_pairs(plan))
        if not todo:
            break
        if rounds >= MAX_CHECK_ROUNDS:
            return plan.model_copy(
                update={"status": "no_solution", "message": f"capacity checks did not settle in {rounds} rounds"}
            )
        table = check_pairs(table, plan_pairs(plan))
        checked += len(todo)
        rounds += 1
    if not rounds:
        return plan
    note = (
        f"capacity: {checked} (option, type) rows simulated in {rounds} lazy rounds; status and bound"
        " hold for the table with the plan's pairs simulated and the rest estimated"
    )
    update: dict[str, Any] = {}
    exact = method_name == "milp" and plan.has_solution and plan.objective is not None
    if exact and not estimated(table):  # every row simulated: the last round's bound is that table's
        update["simulated_bound"] = plan.bound
    elif exact:
        proven = 0
        while True:
            if limit is not None:
                options["time_limit"] = max(limit - (time.perf_counter() - start), LATE_ROUND_S)
            low = solver(relaxed(table), **options)
            todo = pending_checks(table, plan_pairs(low)) if low.has_solution else {}
            if prove and low.status == "optimal" and not todo:  # optimal with every pair simulated
                note = (
                    f"capacity: {checked} (option, type) rows simulated in {rounds} lazy rounds and"
                    f" {proven} rounds on the rate-bound relaxation; optimal for the table with every"
                    " pair simulated (the relaxation's optimum uses simulated pairs only)"
                )
                plan, update["simulated_bound"] = low, low.bound if low.bound is not None else low.objective
                break
            out_of_time = limit is not None and time.perf_counter() - start > limit
            if not prove or not todo or proven >= MAX_PROOF_ROUNDS or out_of_time:
                lb = low.bound if low.bound is not None else (low.objective if low.status == "optimal" else None)
                if lb is not None:
                    lb = min(lb, plan.objective)  # the plan is itself a fully simulated plan
                    update["simulated_bound"] = lb
                    gap = (plan.objective - lb) / max(abs(plan.objective), 1e-9)
                    note += (
                        f"; with every pair simulated no plan costs less than {lb:,.2f} (rate-bound"
                        f" relaxation{f' after {proven} rounds' if proven else ''}), so this plan is within"
                        f" {gap:.1%} of that optimum"
                    )
                break
            table = check_pairs(table, plan_pairs(low))
            checked += len(todo)
            proven += 1
    message = f"{plan.message}; {note}" if plan.message else note
    update |= {"solve_seconds": round(time.perf_counter() - start, 4), "message": message}
    return plan.model_copy(update=update)
