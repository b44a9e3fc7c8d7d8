r"""The multi-period MILP (and AGH's multi-period counterpart) over an instance's demand windows.

Extends the spec's model (:mod:`planner.solvers.milp`) with a window index t ∈ T; notation and
costs as in :mod:`planner.multiperiod` (h_t hours per window, λ_{i,t} rates, π premium).

Variables
    y[k,t] ∈ {0..M_k}   replicas of option k in window t   (M_k: the largest single-window big-M)
    b[k]   ∈ {0..M_k}   base fleet, rented all period        (only with ``base_fleet``)
    z[k]   ∈ {0,1}      option k used in some window (pays its storage once)
    x[i,k,t] ∈ [0,1]    share of type i routed to k in window t, on eligible pairs P
    u[i,t] ∈ [0,ζ_i]    unserved share of type i in window t

Constraints (index sets; units)
    coverage[i,t]      Σ_k x[i,k,t] + u[i,t] = 1                              I × T; share
    capacity[k,t]      Σ_i λ_{i,t}/thr[i,k]·x[i,k,t] ≤ U·y[k,t]                K × T; replicas
    tight[j,k,t]       the shared-pool rule of :func:`planner.solvers.milp._shared_tpot` in
                       every window, with w[j,k,t] ∈ {0,1}                    JK × T; replicas
    accuracy[i,t]      Σ_k e[i,k]·x[i,k,t] ≤ ε_i                              I_ε × T; error rate
    availability[g,t]  Σ_{k on g} tp_k·pp_k·y[k,t] ≤ A_g                     G × T; GPUs
    budget             rental + storage ≤ B                                   one row; $ per period
    linking            y[k,t] ≤ M_k·z[k];  z[k] ≤ Σ_t y[k,t];  x[i,k,t] ≤ z[k]
    base[k,t]          b[k] ≤ y[k,t]                                          K × T; replicas
    change[k,t]        −Δ ≤ y[k,t] − y[k,t−1] ≤ Δ  (t−1 cyclic)               K × T; replicas
Objective
    rental + storage + delay + unserved ($ per period, :mod:`planner.multiperiod`).

Any single-period plan for the peak rates, repeated in every window, satisfies all of these and
costs at most its own objective (delay and unserved only fall with the rates), so the
multi-period optimum never exceeds the peak plan's cost.
"""

from __future__ import annotations

import time
from typing import Any

import pyomo.environ as pyo

from planner.multiperiod import build_schedule_plan, window_instance, window_tables, windows
from planner.options import Option, OptionTable
from planner.plan import Plan, build_plan
from planner.solvers.backends import BACKENDS, SolveOptions
from planner.solvers.milp import big_m, tight_rows


def build_model(table: OptionTable, tables: list[OptionTable]) -> pyo.ConcreteModel:
    inst = table.instance
    sc = inst.scaling
    assert sc is not None
    T = list(range(len(tables)))
    pairs = list(table.pairs)
    used = sorted({k for _, k in pairs})
    types = list(range(len(table.type_ids)))
    ms = [big_m(tab, types) for tab in tables]
    M = {k: max(1, max(m[k] for m in ms)) for k in used}
    prem = 1.0 + sc.on_demand_premium if sc.base_fleet else 1.0

    m = pyo.ConcreteModel(name=f"{inst.name}-multiperiod")
    m.T = pyo.Set(initialize=T, ordered=True)
    m.K = pyo.Set(initialize=used, ordered=True)
    m.I = pyo.Set(initialize=types, ordered=True)
    m.PT = pyo.Set(initialize=[(i, k, t) for (i, k) in pairs for t in T], dimen=3, ordered=True)
    m.y = pyo.Var(m.K, m.T, domain=pyo.NonNegativeIntegers, bounds=lambda _, k, t: (0, M[k]))
    m.z = pyo.Var(m.K, domain=pyo.Binary)
    m.x = pyo.Var(m.PT, domain=pyo.NonNegativeReals, bounds=(0.0, 1.0))
    m.u = pyo.Var(m.I, m.T, domain=pyo.NonNegativeReals, bounds=lambda _, i, t: (0.0, inst.query_types[i].max_unserved))
    by_type: dict[int, list[int]] = {i: [] for i in types}
    by_opt: dict[int, list[int]] = {k: [] for k in used}
    for i, k in pairs:
        by_type[i].append(k)
        by_opt[k].append(i)

    m.coverage = pyo.Constraint(m.I, m.T, rule=lambda _, i, t: sum(m.x[i, k, t] for k in by_type[i]) + m.u[i, t] == 1)
    U = inst.max_utilization
    m.capacity = pyo.Constraint(
        m.K, m.T, rule=lambda _, k, t: sum(tables[t].load[i, k] * m.x[i, k, t] for i in by_opt[k]) <= U * m.y[k, t]
    )
    rows = {t: {(r.j, r.k): r for r in tight_rows(tables[t], by_opt)} for t in T}
    jk = sorted({key for t in T for key in rows[t]})
    m.JKT = pyo.Set(initialize=[(j, k, t) for (j, k) in jk for t in T if (j, k) in rows[t]], dimen=3, ordered=True)
    m.w = pyo.Var(m.JKT, domain=pyo.Binary)
    m.tight = pyo.Constraint(
        m.JKT,
        rule=lambda _, j, k, t: (
            sum(a * m.x[i, k, t] for i, a in rows[t][j, k].coef.items())
            <= U * m.y[k, t] + rows[t][j, k].big_m * (1 - m.w[j, k, t])
        ),
    )
    m.tight_on = pyo.Constraint(m.JKT, rule=lambda _, j, k, t: m.x[j, k, t] <= m.w[j, k, t])
    excl = [(j, i, k, t) for (j, k, t) in m.JKT for i in rows[t][j, k].excluded]
    m.tight_excl = pyo.Constraint(excl, rule=lambda _, j, i, k, t: m.x[i, k, t] + m.w[j, k, t] <= 1)
    limited = [i for i in types if inst.query_types[i].max_error is not None and by_type[i]]
    m.accuracy = pyo.Constraint(
        limited,
        m.T,
        rule=lambda _, i, t: sum(table.error[i, k] * m.x[i, k, t] for k in by_type[i]) <= inst.query_types[i].max_error,
    )
    tiers = [n for n, g in enumerate(inst.gpus) if g.available is not None]
    on_tier = {n: [k for k in used if table.tier[k] == n] for n in tiers}
    tiers = [n for n in tiers if on_tier[n]]
    m.availability = pyo.Constraint(
        tiers,
        m.T,
        rule=lambda _, n, t: sum(int(table.gpus[k]) * m.y[k, t] for k in on_tier[n]) <= inst.gpus[n].available,
    )
    m.link_upper = pyo.Constraint(m.K, m.T, rule=lambda _, k, t: m.y[k, t] <= M[k] * m.z[k])
    m.link_lower = pyo.Constraint(m.K, rule=lambda _, k: m.z[k] <= sum(m.y[k, t] for t in T))
    m.link_route = pyo.Constraint(m.PT, rule=lambda _, i, k, t: m.x[i, k, t] <= m.z[k])

    if sc.base_fleet:
        m.b = pyo.Var(m.K, domain=pyo.NonNegativeIntegers, bounds=lambda _, k: (0, M[k]))
        m.base = pyo.Constraint(m.K, m.T, rule=lambda _, k, t: m.b[k] <= m.y[k, t])
        rental = sum(float(table.rental[k]) * m.b[k] for k in used) + sum(
            prem * float(tables[t].rental[k]) * (m.y[k, t] - m.b[k]) for k in used for t in T
        )
    else:
        rental = sum(float(tables[t].rental[k]) * m.y[k, t] for k in used for t in T)
    if sc.max_change is not None and len(T) > 1:
        d = sc.max_change
        m.change_up = pyo.Constraint(m.K, m.T, rule=lambda _, k, t: m.y[k, t] - m.y[k, T[t - 1]] <= d)
        m.change_down = pyo.Constraint(m.K, m.T, rule=lambda _, k, t: m.y[k, T[t - 1]] - m.y[k, t] <= d)
    storage = sum(float(table.storage[k]) * m.z[k] for k in used)
    if inst.budget is not None and used:
        m.budget = pyo.Constraint(expr=rental + storage <= inst.budget)
    penalties = sum(tables[t].delay[i, k] * m.x[i, k, t] for (i, k, t) in m.PT) + sum(
        float(tables[t].unserved[i]) * m.u[i, t] for i in types for t in T
    )
    m.total = pyo.Objective(expr=rental + storage + penalties, sense=pyo.minimize)
    m.table, m.tables = table, tables
    return m


def _solution(m: pyo.ConcreteModel) -> tuple[list[dict[Option, int]], list[Any], list[Any], dict[Option, int]]:
    t0 = m.table
    ys = [{t0.options[k]: round(pyo.value(m.y[k, t])) for k in m.K} for t in m.T]
    xs: list[dict[str, dict[Option, float]]] = [{tid: {} for tid in t0.type_ids} for _ in m.T]
    for i, k, t in m.PT:
        xs[t][t0.type_ids[i]][t0.options[k]] = float(pyo.value(m.x[i, k, t]))
    us = [{t0.type_ids[i]: float(pyo.value(m.u[i, t])) for i in m.I} for t in m.T]
    base = {t0.options[k]: round(pyo.value(m.b[k])) for k in m.K} if hasattr(m, "b") else {}
    return ys, xs, us, base


def solve_multiperiod_milp(
    table: OptionTable,
    *,
    backend: str = "highs",
    time_limit: float | None = None,
    gap: float = 1e-6,
    threads: int = 1,
    seed: int | None = None,
    warm_start: bool = True,
    **_: Any,
) -> Plan:
    """Exact multi-period plan; status, objective and bound are the backend's own. The
    multi-period AGH plan (seconds) is given to the solver as its first incumbent: with many
    windows HiGHS can otherwise spend minutes before finding a schedule that good."""
    t0 = time.perf_counter()
    tables = window_tables(table)
    model = build_model(table, tables)
    start = None
    if warm_start:
        heur = solve_multiperiod_agh(table, seed=seed or 0, tables=tables)
        if heur.has_solution:
            start = _start(model, heur)
    result = BACKENDS[backend](model, SolveOptions(time_limit=time_limit, gap=gap, threads=threads), start)
    seconds = time.perf_counter() - t0
    if result.status in ("infeasible", "no_solution"):
        msg = "proven infeasible" if result.status == "infeasible" else f"no solution found ({result.message})"
        return build_plan(
            table, method="milp", status=result.status, bound=result.bound, solve_seconds=seconds, backend=backend,
            seed=seed, message=f"multi-period: {msg}",
        )  # fmt: skip
    ys, xs, us, base = _solution(model)
    bound = result.bound
    if bound is not None and result.objective is not None:
        bound = min(bound, result.objective)
    return build_schedule_plan(
        table, tables, method="milp", status=result.status, replicas=ys, routing=xs, unserved=us, base=base,
        objective=result.objective, bound=bound, solve_seconds=seconds, backend=backend, seed=seed,
        message=result.message,
    )  # fmt: skip


def _start(m: pyo.ConcreteModel, plan: Plan) -> dict[int, float]:
    """A multi-period plan as values of the model's variables (``id(var) -> value``)."""
    from planner.multiperiod import schedule_solution

    t0 = m.table
    ys, xs, us, base = schedule_solution(plan)
    index = {o: k for k, o in enumerate(t0.options)}
    start: dict[int, float] = {}
    for k in m.K:
        o = t0.options[k]
        used = any(y.get(o, 0) > 0 for y in ys)
        start[id(m.z[k])] = float(used)
        for t in m.T:
            start[id(m.y[k, t])] = float(ys[t].get(o, 0))
        if hasattr(m, "b"):
            start[id(m.b[k])] = float(base.get(o, 0))
    for t in m.T:
        for i, tid in enumerate(t0.type_ids):
            start[id(m.u[i, t])] = float(us[t].get(tid, 0.0))
            for o, v in xs[t].get(tid, {}).items():
                k = index.get(o)
                if k is not None and (i, k, t) in m.PT:
                    start[id(m.x[i, k, t])] = float(v)
    for j, k, t in m.JKT:  # shared-pool indicators: on where the plan serves j on k in window t
        start[id(m.w[j, k, t])] = float(start.get(id(m.x[j, k, t]), 0.0) > 1e-12)
    return start


def solve_multiperiod_agh(
    table: OptionTable,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    tables: list[OptionTable] | None = None,
    **_: Any,
) -> Plan:
    """AGH on every window alone, then the coupling repaired: replica counts raised until the
    change limit holds (raising never breaks capacity), and the base fleet set to each option's
    trough (optimal for a fixed schedule when the premium is ≥ 0). Never claims optimality."""
    from planner.heuristics.methods import solve_agh

    t0 = time.perf_counter()
    inst = table.instance
    sc = inst.scaling
    assert sc is not None
    tables = tables or window_tables(table)
    ws = windows(inst)
    ys, xs, us = [], [], []
    for w, tab in zip(ws, tables, strict=True):
        limit = None if time_limit is None else time_limit / len(ws)
        p = solve_agh(tab, seed=seed, time_limit=limit)
        if not p.has_solution:
            return build_plan(
                table, method="agh", status="no_solution", solve_seconds=time.perf_counter() - t0, seed=seed,
                message=f"multi-period: AGH found no plan for window {w.id} alone",
            )  # fmt: skip
        ys.append({d.option: d.replicas for d in p.deployments})
        xs.append({t: {s.option: s.fraction for s in shares} for t, shares in p.routing.items()})
        us.append(dict(p.unserved))
    if sc.max_change is not None and len(ys) > 1:
        _smooth(ys, sc.max_change)
    opts = sorted({o for y in ys for o in y})
    base = {o: min(y.get(o, 0) for y in ys) for o in opts} if sc.base_fleet else {}
    plan = build_schedule_plan(
        table, tables, method="agh", status="feasible", replicas=ys, routing=xs, unserved=us, base=base,
        solve_seconds=time.perf_counter() - t0, seed=seed,
    )  # fmt: skip
    if inst.budget is not None and plan.cost is not None and plan.cost.rental + plan.cost.storage > inst.budget:
        return build_plan(
            table, method="agh", status="no_solution", solve_seconds=time.perf_counter() - t0, seed=seed,
            message="multi-period: the windows' plans together exceed the budget",
        )  # fmt: skip
    avail = {g.id: g.available for g in inst.gpus if g.available is not None}
    for t, y in enumerate(ys):
        use: dict[str, int] = {}
        for o, n in y.items():
            use[o.gpu] = use.get(o.gpu, 0) + n * o.gpus_per_replica
        if any(use.get(g, 0) > a for g, a in avail.items()):
            return build_plan(
                table, method="agh", status="no_solution", solve_seconds=time.perf_counter() - t0, seed=seed,
                message=f"multi-period: meeting the change limit needs more GPUs than available in window {ws[t].id}",
            )  # fmt: skip
    return plan


def _smooth(ys: list[dict[Option, int]], delta: int) -> None:
    """Raise counts until |y[k,t] − y[k,t−1]| ≤ Δ cyclically (a fixed point: values only grow)."""
    opts = sorted({o for y in ys for o in y})
    n = len(ys)
    changed = True
    while changed:
        changed = False
        for t in range(n):
            for o in opts:
                need = max(ys[(t - 1) % n].get(o, 0), ys[(t + 1) % n].get(o, 0)) - delta
                if ys[t].get(o, 0) < need:
                    ys[t][o] = need
                    changed = True


def peak_plan(table: OptionTable, method: str = "milp", **options: Any) -> Plan:
    """The single-period plan made once for every type's peak window rate."""
    from planner.multiperiod import peak_instance
    from planner.options import with_instance
    from planner.solvers import solve

    peak = peak_instance(table.instance)
    return solve(peak, method, table=with_instance(table, peak), **options)


__all__ = ["peak_plan", "solve_multiperiod_agh", "solve_multiperiod_milp", "window_instance"]
