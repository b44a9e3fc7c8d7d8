"""``--method milp``: build the Pyomo model, solve it exactly, read the plan, diagnose infeasibility."""

from __future__ import annotations

import time

import pyomo.environ as pyo

from planner.options import OptionTable
from planner.plan import Plan, build_plan
from planner.solvers.backends import BACKENDS, SolveOptions
from planner.solvers.diagnosis import diagnose
from planner.solvers.milp import ModelScope, build_model


def solve_milp(
    table: OptionTable,
    *,
    backend: str = "highs",
    time_limit: float | None = None,
    gap: float = 1e-6,
    threads: int = 1,
    seed: int | None = None,
    diagnose_infeasible: bool = True,
) -> Plan:
    """Solve the spec's MILP; statuses are the backend's own, never upgraded."""
    if backend not in BACKENDS:
        raise KeyError(f"unknown backend {backend!r}; known: {', '.join(sorted(BACKENDS))}")
    t0 = time.perf_counter()
    opts = SolveOptions(time_limit=time_limit, gap=gap, threads=threads)
    model = build_model(table, ModelScope())
    result = BACKENDS[backend](model, opts)
    seconds = time.perf_counter() - t0
    if result.status == "infeasible":
        blockers = diagnose(table, backend, opts) if diagnose_infeasible else None
        return build_plan(
            table,
            method="milp",
            status="infeasible",
            solve_seconds=seconds,
            backend=backend,
            seed=seed,
            message="proven infeasible",
            diagnosis=blockers,
        )
    if result.status == "no_solution":
        return build_plan(
            table,
            method="milp",
            status="no_solution",
            bound=result.bound,
            solve_seconds=seconds,
            backend=backend,
            seed=seed,
            message=f"no solution found ({result.message})",
        )
    replicas = {table.options[k]: pyo.value(model.y[k]) for k in model.K}
    routing: dict[str, dict] = {t: {} for t in table.type_ids}
    for i, k in model.P:
        routing[table.type_ids[i]][table.options[k]] = pyo.value(model.x[i, k])
    unserved = {table.type_ids[i]: pyo.value(model.u[i]) for i in model.I}
    bound = result.bound
    if bound is not None and result.objective is not None:
        bound = min(bound, result.objective)  # a bound above the incumbent is round-off
    return build_plan(
        table,
        method="milp",
        status=result.status,
        replicas=replicas,
        routing=routing,
        unserved=unserved,
        objective=result.objective,
        bound=bound,
        solve_seconds=seconds,
        backend=backend,
        seed=seed,
        message=result.message,
    )
