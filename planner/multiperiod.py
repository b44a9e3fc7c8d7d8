r"""Multi-period planning: one fleet per demand window, costed over the whole period.

An instance with ``scaling`` carries a demand profile of windows t = 1..T. The profile repeats
over the period H, so window t stands for h_t = hours_t · H / Σ_s hours_s hours, and window T is
followed by window 1. Window t is the single-period problem of the spec with λ_i replaced by
λ_{i,t} and H by h_t: the option table's rows (figures, eligibility) do not depend on either, so
one table serves every window and only the coefficients are recomputed (:func:`window_tables`).

Costs of a schedule (y[k,t] replicas, x[i,k,t] routing, u[i,t] unserved; price p_k = $/GPU-hour
× tp·pp, so rental_t[k] = h_t·p_k and rental[k] = H·p_k):

    without a base fleet   rental = Σ_t Σ_k rental_t[k]·y[k,t]
    with a base fleet b[k] rental = Σ_k rental[k]·b[k] + (1 + π)·Σ_t Σ_k rental_t[k]·(y[k,t] − b[k])
                           (b[k] ≤ y[k,t]: the base runs all period; π = on_demand_premium)
    storage  = Σ_{k used in any window} storage[k]                  (weights are stored all period)
    delay    = Σ_t Σ_{i,k} 3600·h_t·λ_{i,t}·ρ_i·e2e[i,k]·x[i,k,t]
    unserved = Σ_t Σ_i 3600·h_t·λ_{i,t}·φ_i·u[i,t]

Every window must satisfy coverage, capacity, accuracy and availability on its own; the budget
bounds the period's total rental + storage; and with ``max_change`` Δ,
|y[k,t] − y[k,t−1]| ≤ Δ for every option and every t (cyclically).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner.options import Option, OptionTable, rental_per_replica, storage_per_option, with_instance
from planner.plan import (
    Change,
    Cost,
    Deployment,
    Plan,
    WindowPlan,
    build_plan,
    gpus_by_tier,
    option_fields,
    plan_cost,
    plan_solution,
    relative_gap,
)
from planner.problem import Instance, QueryType


@dataclass(frozen=True)
class Window:
    index: int
    id: str
    hours: float  # h_t: hours of the period this window stands for
    rates: tuple[float, ...]  # λ_{i,t} per query type, requests/s


def windows(inst: Instance) -> list[Window]:
    sc = inst.scaling
    assert sc is not None and sc.windows
    total = sum(w.hours for w in sc.windows)
    out = []
    for n, w in enumerate(sc.windows):
        rates = tuple(float(w.rates.get(q.id, q.arrival_rate)) for q in inst.query_types)
        out.append(Window(n, w.id or f"w{n + 1}", w.hours * inst.period_hours / total, rates))
    return out


def with_rate(q: QueryType, rate: float) -> QueryType:
    """Type q at another mean rate, its burst percentiles scaled with it (a burst shape is a
    property of the traffic, not of one window's volume)."""
    update: dict[str, Any] = {"arrival_rate": rate}
    for key in (
        "arrival_rate_p90",
        "arrival_rate_p99",
        "arrival_rate_slow_p90",
        "arrival_rate_slow_p99",
        "arrival_burst_rate",
    ):
        v = getattr(q, key)
        update[key] = None if v is None or q.arrival_rate <= 0 else v * rate / q.arrival_rate
    if q.arrival_burst_envelope is not None and q.arrival_rate > 0:
        update["arrival_burst_envelope"] = tuple((s, r * rate / q.arrival_rate) for s, r in q.arrival_burst_envelope)
    return q.model_copy(update=update)


def window_instance(inst: Instance, w: Window) -> Instance:
    """Window t as a single-period instance (no budget: the budget binds the whole period)."""
    types = tuple(with_rate(q, r) for q, r in zip(inst.query_types, w.rates, strict=True))
    return inst.model_copy(update={"query_types": types, "period_hours": w.hours, "budget": None, "scaling": None})


def peak_instance(inst: Instance) -> Instance:
    """The single-period instance at every type's peak window rate (the plan made once for the peak)."""
    ws = windows(inst)
    types = tuple(with_rate(q, max(w.rates[i] for w in ws)) for i, q in enumerate(inst.query_types))
    return inst.model_copy(update={"query_types": types, "scaling": None})


def window_tables(table: OptionTable) -> list[OptionTable]:
    inst = table.instance
    return [with_instance(table, window_instance(inst, w)) for w in windows(inst)]


Schedule = list[dict[Option, int]]


def schedule_cost(
    inst: Instance,
    tables: list[OptionTable],
    replicas: Schedule,
    routing: list[dict[str, dict[Option, float]]],
    unserved: list[dict[str, float]],
    base: dict[Option, int],
) -> tuple[Cost, list[float]]:
    """The period's cost terms (module docstring) and each window's rental + delay + unserved."""
    sc = inst.scaling
    assert sc is not None
    prem = 1.0 + sc.on_demand_premium if sc.base_fleet else 1.0
    per_window = []
    rental = sum(rental_per_replica(inst, o) * b for o, b in base.items())
    delay = unserved_pen = 0.0
    used: set[Option] = set()
    for t, tab in enumerate(tables):
        wi = tab.instance
        r_t = sum(rental_per_replica(wi, o) * (y - base.get(o, 0)) * prem for o, y in replicas[t].items())
        used |= {o for o, y in replicas[t].items() if y > 0}
        c = plan_cost(tab, {}, routing[t], unserved[t])  # no replicas: the window's penalties only
        rental += r_t
        delay += c.delay_penalty
        unserved_pen += c.unserved_penalty
        per_window.append(r_t + c.delay_penalty + c.unserved_penalty)
    storage = sum(storage_per_option(inst, o) for o in used)
    total = rental + storage + delay + unserved_pen
    return Cost(
        rental=rental, storage=storage, delay_penalty=delay, unserved_penalty=unserved_pen, total=total
    ), per_window


def build_schedule_plan(
    table: OptionTable,
    tables: list[OptionTable],
    *,
    method: str,
    status: str,
    replicas: Schedule,
    routing: list[dict[str, dict[Option, float]]],
    unserved: list[dict[str, float]],
    base: dict[Option, int],
    objective: float | None = None,
    bound: float | None = None,
    solve_seconds: float = 0.0,
    backend: str | None = None,
    seed: int | None = None,
    message: str | None = None,
) -> Plan:
    """A plan whose ``schedule`` holds every window; its top-level deployments are each option's
    peak replica count, its routing that of the busiest window (what a static export deploys)."""
    inst = table.instance
    ws = windows(inst)
    parts = [
        build_plan(tab, method=method, status="feasible", replicas=y, routing=x, unserved=u)  # type: ignore[arg-type]
        for tab, y, x, u in zip(tables, replicas, routing, unserved, strict=True)
    ]
    y_clean = [{d.option: d.replicas for d in p.deployments} for p in parts]
    x_clean = [{t: {s.option: s.fraction for s in shares} for t, shares in p.routing.items()} for p in parts]
    u_clean = [dict(p.unserved) for p in parts]
    base = {o: b for o, b in base.items() if b > 0}
    cost, per_window = schedule_cost(inst, tables, y_clean, x_clean, u_clean, base)
    sched = []
    for t, (w, p) in enumerate(zip(ws, parts, strict=True)):
        prev = y_clean[t - 1]  # cyclic: window 1 follows the last
        now = y_clean[t]
        opts = sorted(set(prev) | set(now))
        added = [_change(o, now.get(o, 0) - prev.get(o, 0)) for o in opts if now.get(o, 0) > prev.get(o, 0)]
        removed = [_change(o, prev.get(o, 0) - now.get(o, 0)) for o in opts if prev.get(o, 0) > now.get(o, 0)]
        sched.append(
            WindowPlan(
                window=w.id,
                hours=w.hours,
                deployments=p.deployments,
                routing=p.routing,
                unserved=p.unserved,
                added=added,
                removed=removed,
                cost=per_window[t],
            )
        )
    peak: dict[Option, Deployment] = {}
    for p in parts:
        for d in p.deployments:
            if d.option not in peak or d.replicas > peak[d.option].replicas:
                peak[d.option] = d
    busiest = max(range(len(ws)), key=lambda t: sum(ws[t].rates))
    obj = cost.total if objective is None else float(objective)
    gap = relative_gap(obj, bound)
    deployments = [peak[o] for o in sorted(peak)]
    by_tier = gpus_by_tier(deployments)
    return Plan(
        instance=inst.name,
        method=method,
        status=status,  # type: ignore[arg-type]
        objective=obj,
        bound=bound,
        gap=gap,
        solve_seconds=round(solve_seconds, 4),
        cost=cost,
        deployments=deployments,
        routing=parts[busiest].routing,
        unserved=parts[busiest].unserved,
        backend=backend,
        seed=seed,
        message=message,
        gpus_by_tier=by_tier,
        schedule=sched,
        base_fleet=[
            Deployment(**option_fields(o), replicas=b, gpus=b * o.gpus_per_replica) for o, b in sorted(base.items())
        ]
        if inst.scaling is not None and inst.scaling.base_fleet
        else None,
    )


def _change(o: Option, n: int) -> Change:
    return Change(**option_fields(o), replicas=n)


def schedule_solution(
    plan: Plan,
) -> tuple[Schedule, list[dict[str, dict[Option, float]]], list[dict[str, float]], dict[Option, int]]:
    """(y_t, x_t, u_t, base) of a multi-period plan."""
    assert plan.schedule is not None
    ys, xs, us = [], [], []
    for w in plan.schedule:
        y, x, u = plan_solution(window_plan(plan, w))
        ys.append(y)
        xs.append(x)
        us.append(u)
    base = {d.option: d.replicas for d in plan.base_fleet or []}
    return ys, xs, us, base


def window_plan(plan: Plan, w: WindowPlan) -> Plan:
    """Window ``w`` of ``plan`` as a single-period plan (for the checker, the simulator, exports)."""
    return Plan(
        instance=plan.instance,
        method=plan.method,
        status=plan.status,
        deployments=w.deployments,
        routing=w.routing,
        unserved=w.unserved,
    )
