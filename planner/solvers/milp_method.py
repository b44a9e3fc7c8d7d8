"""``--method milp``: build the Pyomo model, solve it exactly, read the plan, diagnose infeasibility."""

from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo

from planner.options import OptionTable
from planner.plan import Plan, build_plan, plan_solution
from planner.solvers.backends import BACKENDS, SolveOptions
from planner.solvers.diagnosis import diagnose
from planner.solvers.milp import ModelScope, build_model, solution_of

# ``--backend highs-arrays`` routes twins as one class (planner.solvers.matrix.build_matrix's
# ``classes``: an exact reformulation, one x column per type and class of options with the same
# pairs and figures). Measured 2026-12-07, AGH's plan as the start, 1 thread, alone: fleet-100x30x30
# seed 7 proven optimal in 138 -> 63 s, fleet-200x40x40 seed 4 in 96 -> 84 s (the same optima);
# fleet-100 seed 1 at its 300-s limit: plan $3,721.69 -> $3,717.70, bound $3,691.50 -> $3,694.21
# (gap 0.81 -> 0.63%).
TWIN_CLASSES = True


def solve_milp(
    table: OptionTable,
    *,
    backend: str = "highs",
    time_limit: float | None = None,
    gap: float = 1e-6,
    threads: int = 1,
    seed: int | None = None,
    diagnose_infeasible: bool = True,
    warm_start: Plan | None = None,
) -> Plan:
    """Solve the spec's MILP; statuses are the backend's own, never upgraded.

    ``warm_start`` is a plan of the same instance (a heuristic's, say) given to the solver as its
    first incumbent (HiGHS) or hint (SCIP).
    """
    if backend == "highs-arrays":
        from planner.solvers.matrix import supported

        if supported(table):
            return _solve_arrays(
                table, time_limit=time_limit, gap=gap, seed=seed, warm_start=warm_start, threads=threads
            )
        backend = "highs"  # shared-pool rows: only the Pyomo model states them
    if backend not in BACKENDS:
        known = ", ".join(sorted([*BACKENDS, "highs-arrays"]))
        raise KeyError(f"unknown backend {backend!r}; known: {known}")
    t0 = time.perf_counter()
    opts = SolveOptions(time_limit=time_limit, gap=gap, threads=threads)
    model = build_model(table, ModelScope())
    start = _start_from_plan(model, table, warm_start) if warm_start is not None and warm_start.has_solution else None
    result = BACKENDS[backend](model, opts, start)
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
    replicas, routing, unserved = solution_of(model)
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


def _plan_arrays(table: OptionTable, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """A plan's replicas y (over the table's options) and routing X (types × options + 1, the last
    column unserved); options and types the table does not know are left out."""
    y_plan, x_plan, u_plan = plan_solution(plan)
    index = {o: k for k, o in enumerate(table.options)}
    y = np.zeros(len(table.options))
    X = np.zeros((len(table.type_ids), len(table.options) + 1))
    for o, n in y_plan.items():
        if o in index:
            y[index[o]] = n
    for i, t in enumerate(table.type_ids):
        for o, v in x_plan.get(t, {}).items():
            if o in index:
                X[i, index[o]] = v
        X[i, -1] = u_plan.get(t, 0.0)
    return y, X


def _start_from_plan(model: pyo.ConcreteModel, table: OptionTable, plan: Plan) -> dict[int, float]:
    """The plan's y, z, x, u (and w) as values of the model's variables (``id(var) -> value``)."""
    y, X = _plan_arrays(table, plan)
    start: dict[int, float] = {}
    for k in model.K:
        start[id(model.y[k])] = float(y[k])
        start[id(model.z[k])] = float(y[k] > 0)
    for i, k in model.P:
        if X[i, k] != 0:
            start[id(model.x[i, k])] = float(X[i, k])
    for i in model.I:
        start[id(model.u[i])] = float(X[i, -1])
    for j, k in model.JK:  # shared-pool indicators: on where the plan serves j on k
        start[id(model.w[j, k])] = float(start.get(id(model.x[j, k]), 0.0) > 1e-12)
    if len(model.S):  # split pairs: both pools' replicas, the pair's use, the shares routed to it
        y_plan, x_plan, _ = plan_solution(plan)
        sp = table.split
        for s in model.S:
            yp, yd = y_plan.get(sp.prefill[s], 0), y_plan.get(sp.decode[s], 0)
            start[id(model.yp[s])], start[id(model.yd[s])] = float(yp), float(yd)
            start[id(model.zs[s])] = float(yp > 0 and yd > 0)
        for i, s in model.PS:
            start[id(model.xs[i, s])] = float(x_plan.get(table.type_ids[i], {}).get(sp.prefill[s], 0.0))
    return start


def _solve_arrays(
    table: OptionTable,
    *,
    time_limit: float | None,
    gap: float,
    seed: int | None,
    warm_start: Plan | None = None,
    threads: int = 1,
) -> Plan:
    """``backend="highs-arrays"``: the same model built as arrays (:mod:`planner.solvers.matrix`)
    and handed to HiGHS without Pyomo — for fleet-scale tables, where Pyomo's build and translation
    take minutes. The message says how long the build took.

    The link_route rows (x[i,k] ≤ z[k], one per eligible pair) are left out: at integrality the
    capacity row implies them (x > 0 forces y ≥ 1, hence z = 1), so the optimum is the same, and
    without them the root LP is one row per option instead of one per pair. Measured with AGH's
    plan as the start, 300 s, 1 thread: fleet-100x30x30 seed 0 proven optimal in 133 s (with the
    rows: gap 0.086% at the limit); fleet-200x40x40, whose root LP with the rows did not finish in
    300 s on 7 of 10 seeds, gets a bound (seed 2: gap 0.42%). The LP only loses the storage term's
    tightening. Twins (one model's deployment on one GPU across tiers) route as one class
    (TWIN_CLASSES): the same optimum with a quarter of the x columns at fleet scale."""
    from planner.solvers.matrix import build_matrix, twin_classes
    from planner.solvers.matrix import solution_of as matrix_solution

    t0 = time.perf_counter()
    mm = build_matrix(table, route_links=False, classes=twin_classes(table) if TWIN_CLASSES else None)
    build_s = time.perf_counter() - t0  # the twin labels' pass (~0.1-0.2 s at fleet-200) included
    limit = None if time_limit is None else max(time_limit - build_s, 1.0)
    start = None
    if warm_start is not None and warm_start.has_solution:
        start = mm.start_of(*_plan_arrays(table, warm_start))
    res = mm.solve(time_limit=limit, gap=gap, start=start, threads=threads)
    seconds = time.perf_counter() - t0
    built = f"model built as arrays in {build_s:.2f} s"
    common = {"method": "milp", "solve_seconds": seconds, "backend": "highs-arrays", "seed": seed}
    if res.status == "infeasible":
        from planner.solvers.diagnosis import diagnose

        blockers = diagnose(table, "highs", SolveOptions(time_limit=time_limit, gap=gap))
        message = f"proven infeasible; {built}"
        return build_plan(table, status="infeasible", message=message, diagnosis=blockers, **common)
    if res.values is None:
        return build_plan(table, status="no_solution", bound=res.bound, message=f"{res.message}; {built}", **common)
    replicas, routing, unserved = matrix_solution(mm, res.values)
    bound = res.bound if res.bound is None or res.objective is None else min(res.bound, res.objective)
    return build_plan(
        table,
        status=res.status,
        replicas=replicas,
        routing=routing,
        unserved=unserved,
        objective=res.objective,
        bound=bound,
        message=f"{res.message}; {built}",
        **common,
    )
