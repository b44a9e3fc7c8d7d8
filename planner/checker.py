"""Independent feasibility and cost checker: the instance and the plan, nothing else.

It rebuilds the option table from the instance (the one place figures come from) and recomputes
every constraint family and cost term of the spec from the plan's deployments, routing and
unserved fractions. It imports no solver code. Violations carry the family name used in the MILP
(``planner.solvers.milp``) and in the spec: coverage, max_unserved, eligibility, capacity,
accuracy, availability, budget, split (a prefill/decode pair runs both pools), plus the plan's
own bookkeeping (reference, integrality, gpus, cost, objective, bound, status).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.options import Option, OptionTable, build_option_table, check_pairs, needs_checks, tpot_limit
from planner.plan import (
    Cost,
    Plan,
    Replicas,
    Routing,
    Unserved,
    plan_cost,
    plan_pairs,
    plan_solution,
    unknown_names,
)
from planner.problem import Instance, QueryType

ABS_TOL = 1e-6
REL_TOL = 1e-6


def _close(a: float, b: float, rel: float = REL_TOL, abs_: float = ABS_TOL) -> bool:
    return abs(a - b) <= abs_ + rel * max(abs(a), abs(b))


@dataclass
class Violation:
    family: str
    detail: str

    def __str__(self) -> str:
        return f"{self.family}: {self.detail}"


@dataclass
class CheckReport:
    violations: list[Violation] = field(default_factory=list)
    cost: Cost | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, family: str, detail: str) -> None:
        self.violations.append(Violation(family, detail))


def check_plan(inst: Instance, plan: Plan, table: OptionTable | None = None) -> CheckReport:
    """Every violation of ``plan`` against ``inst``; ``report.cost`` is the recomputed cost.

    With attainment targets, the pairs the plan routes to are judged on their simulated
    capacity (:mod:`planner.capacity`, deterministic), never on the table's estimates."""
    table = table or build_option_table(inst)
    if needs_checks(table):
        table = check_pairs(table, plan_pairs(plan))
    rep = CheckReport()
    if plan.instance != inst.name:
        rep.add("reference", f"plan is for instance {plan.instance!r}, not {inst.name!r}")
    if not plan.has_solution:
        rep.add("status", f"plan has status {plan.status!r}: it holds no solution to check")
        return rep

    unknown = unknown_names(inst, plan)
    if unknown:  # a model or GPU the instance lacks cannot be priced or looked up: report and stop
        for u in unknown:
            rep.add("reference", u)
        return rep
    if inst.scaling is not None:
        _check_schedule(inst, plan, table, rep)
        return rep
    y, x, u = plan_solution(plan)
    types = {q.id: q for q in inst.query_types}
    _check_deployments(inst, table, plan, rep)
    _check_routing_refs(table, x, u, types, rep)
    _check_coverage(inst, x, u, rep)
    _check_capacity(inst, table, y, x, rep)
    _check_split(inst, table, y, x, rep)
    _check_accuracy(inst, x, rep)
    _check_availability(inst, y, rep)
    cost = plan_cost(table, y, x, u)
    rep.cost = cost
    _check_budget(inst, cost, rep)
    _check_costs(plan, cost, rep)
    return rep


def _check_deployments(inst: Instance, table: OptionTable, plan: Plan, rep: CheckReport) -> None:
    seen = set()
    gpu_ids = {g.id for g in inst.gpus}
    model_ids = {m.id for m in inst.models}
    for d in plan.deployments:
        o = d.option
        if o in seen:
            rep.add("reference", f"deployment {o.key} is listed twice")
        seen.add(o)
        if d.model not in model_ids or d.gpu not in gpu_ids:
            rep.add("reference", f"deployment {o.key} names an unknown model or gpu")
            continue
        why = table.deployable(o)
        if why:
            rep.add("eligibility", f"deployment {o.key} cannot be deployed: {why}")
        if d.gpus != d.replicas * o.gpus_per_replica:
            rep.add(
                "gpus",
                f"deployment {o.key}: gpus {d.gpus} != replicas {d.replicas} × tp·pp {o.gpus_per_replica}",
            )


def _check_routing_refs(
    table: OptionTable, x: Routing, u: Unserved, types: dict[str, QueryType], rep: CheckReport
) -> None:
    for t in list(x) + list(u):
        if t not in types:
            rep.add("reference", f"unknown query type {t!r} in routing/unserved")
    for t, shares in x.items():
        for o, v in shares.items():
            if v < -ABS_TOL:
                rep.add("coverage", f"{t} → {o.key}: negative fraction {v:.6g}")
            row = table.row(o, t)
            if v > ABS_TOL and o.role == "decode":
                rep.add("eligibility", f"{t} routed to {o.key}: a split pair is routed to through its prefill pool")
                continue
            if v > ABS_TOL and (row is None or not row.eligible):
                why = "not in the option table" if row is None else (row.reason or "not eligible")
                rep.add("eligibility", f"{t} routed to {o.key} ({v:.4g}), which is not eligible: {why}")


def _check_coverage(inst: Instance, x: Routing, u: Unserved, rep: CheckReport) -> None:
    """Σ_k x[i,k] + u[i] = 1 and 0 ≤ u[i] ≤ ζ_i for every type i."""
    for q in inst.query_types:
        served = sum(x.get(q.id, {}).values())
        un = u.get(q.id, 0.0)
        if not _close(served + un, 1.0):
            rep.add("coverage", f"{q.id}: routed {served:.6g} + unserved {un:.6g} != 1")
        if un < -ABS_TOL:
            rep.add("max_unserved", f"{q.id}: negative unserved fraction {un:.6g}")
        if un > q.max_unserved + ABS_TOL:
            rep.add("max_unserved", f"{q.id}: unserved {un:.6g} > max_unserved {q.max_unserved:.6g}")


def _check_capacity(inst: Instance, table: OptionTable, y: Replicas, x: Routing, rep: CheckReport) -> None:
    """Σ_i λ_i·x[i,k] / throughput_rps[i,k] ≤ max_utilization · y[k] for every option k."""
    load: dict[Option, float] = {}
    types = {q.id: q for q in inst.query_types}
    for t, shares in x.items():
        for o, v in shares.items():
            row = table.row(o, t)
            if row is None or not row.throughput_rps or t not in types:
                continue
            load[o] = load.get(o, 0.0) + types[t].arrival_rate * v / row.throughput_rps
    for o, need in load.items():
        have = inst.max_utilization * y.get(o, 0)
        if need > have * (1 + REL_TOL) + ABS_TOL:
            rep.add(
                "capacity",
                f"{o.key}: load {need:.6g} replicas > max_utilization {inst.max_utilization} × {y.get(o, 0)} replicas",
            )
    _check_shared_tpot(inst, table, y, x, rep)


def _check_shared_tpot(inst: Instance, table: OptionTable, y: Replicas, x: Routing, rep: CheckReport) -> None:
    """The shared-pool rule (:mod:`planner.options`, attainment tables): for every option k and every
    TPOT limit τ_j of a type j routed there, Σ_i λ_i·x[i,k] / thr[i,k | tpot ≤ τ_j] ≤ max_utilization·y[k],
    where a type whose own limit is looser is held to τ_j (its ``tight`` row; a type with none
    cannot share a pool with j)."""
    if not table.tight:
        return
    types = {q.id: q for q in inst.query_types}
    routed: dict[Option, dict[str, float]] = {}
    for t, shares in x.items():
        for o, v in shares.items():
            if v > ABS_TOL and t in types:
                routed.setdefault(o, {})[t] = v
    for o, members in routed.items():
        for lvl in sorted({tpot_limit(types[t]) for t in members}):
            tighter = [t for t in members if tpot_limit(types[t]) == lvl]
            need = 0.0
            for t, v in members.items():
                row = table.row(o, t) if tpot_limit(types[t]) <= lvl else table.tight.get((o, t, lvl))
                if row is None or not row.eligible or not row.throughput_rps:
                    if tpot_limit(types[t]) > lvl:
                        rep.add(
                            "capacity",
                            f"{o.key}: {t} shares the pool with {tighter[0]} but cannot meet its TPOT limit {lvl:g} s",
                        )
                    continue
                need += types[t].arrival_rate * v / row.throughput_rps
            have = inst.max_utilization * y.get(o, 0)
            if lvl < max(tpot_limit(types[t]) for t in members) and need > have * (1 + REL_TOL) + ABS_TOL:
                rep.add(
                    "capacity",
                    f"{o.key}: load {need:.6g} replicas with every type held to {tighter[0]}'s TPOT limit "
                    f"{lvl:g} s > max_utilization {inst.max_utilization} × {y.get(o, 0)} replicas",
                )


def _check_split(inst: Instance, table: OptionTable, y: Replicas, x: Routing, rep: CheckReport) -> None:
    """Split pairs (:mod:`planner.disaggregation`): a type routed to a pair's prefill pool loads its
    decode pool too, so for every pair s (the prefill pool's own capacity is :func:`_check_capacity`'s)

        Σ_i λ_i·x[i,s] / decode_rps[i,s] ≤ max_utilization · decode replicas      (capacity)
        Σ_i link[i,s]·x[i,s]              ≤ max_utilization · prefill replicas    (capacity: KV link)

    and a pair runs both pools or neither (split)."""
    sp = table.split
    types = {q.id: q for q in inst.query_types}
    decode_load: dict[Option, float] = {}
    link_load: dict[Option, float] = {}
    for t, shares in x.items():
        for o, v in shares.items():
            if o.role != "prefill" or t not in types or sp is None or (s := sp.index(o)) is None:
                continue
            d = sp.decode[s]
            row = table.row(d, t)
            i = table.type_ids.index(t)
            if row is None or not row.throughput_rps or (i, s) not in sp.link:
                continue  # not eligible: _check_routing_refs says so
            decode_load[d] = decode_load.get(d, 0.0) + types[t].arrival_rate * v / row.throughput_rps
            link_load[o] = link_load.get(o, 0.0) + sp.link[i, s] * v
    u = inst.max_utilization
    for loads, what in ((decode_load, "decode pool"), (link_load, "KV link of the prefill pool")):
        for o, need in loads.items():
            if need > u * y.get(o, 0) * (1 + REL_TOL) + ABS_TOL:
                rep.add(
                    "capacity",
                    f"{o.key}: {what} load {need:.6g} replicas > max_utilization {u} × {y.get(o, 0)} replicas",
                )
    pools: dict[str, dict[str, int]] = {}
    for o, n in y.items():
        if o.role and n > 0:
            pools.setdefault(o.pair, {})[o.role] = n
    for pair, roles in sorted(pools.items()):
        for role in ("prefill", "decode"):
            if role not in roles:
                other = "decode" if role == "prefill" else "prefill"
                rep.add("split", f"pair {pair} deploys {other} replicas but no {role} replicas")


def _check_accuracy(inst: Instance, x: Routing, rep: CheckReport) -> None:
    """Σ_k e[model(k)][i]·x[i,k] ≤ ε_i for every type i with an accuracy limit."""
    for q in inst.query_types:
        if q.max_error is None:
            continue
        err = sum(inst.error(o.model, q.id) * v for o, v in x.get(q.id, {}).items())
        if err > q.max_error + ABS_TOL:
            rep.add("accuracy", f"{q.id}: routed error {err:.6g} > max_error {q.max_error:.6g}")


def _check_availability(inst: Instance, y: Replicas, rep: CheckReport) -> None:
    """Σ_{k on tier g} tp_k·pp_k·y[k] ≤ available_g for every tier with a limit."""
    for g in inst.gpus:
        used = sum(o.gpus_per_replica * n for o, n in y.items() if o.gpu == g.id)
        if g.available is not None and used > g.available:
            rep.add("availability", f"{g.id}: {used} GPUs > available {g.available}")


def _check_budget(inst: Instance, cost: Cost, rep: CheckReport) -> None:
    """rental + storage ≤ budget."""
    if inst.budget is None:
        return
    spend = cost.rental + cost.storage
    if spend > inst.budget * (1 + REL_TOL) + ABS_TOL:
        rep.add("budget", f"rental + storage {spend:.6g} > budget {inst.budget:.6g}")


def _check_costs(plan: Plan, cost: Cost, rep: CheckReport) -> None:
    if plan.cost is None:
        rep.add("cost", "plan has a solution but no cost")
    else:
        for term in ("rental", "storage", "delay_penalty", "unserved_penalty", "total"):
            stated, actual = getattr(plan.cost, term), getattr(cost, term)
            if not _close(stated, actual):
                rep.add("cost", f"{term}: plan says {stated:.8g}, recomputed {actual:.8g}")
    if plan.objective is None or not _close(plan.objective, cost.total):
        rep.add("objective", f"objective {plan.objective} != recomputed total {cost.total:.8g}")
    if plan.bound is not None and plan.objective is not None:
        if plan.bound > plan.objective * (1 + REL_TOL) + ABS_TOL:
            rep.add("bound", f"bound {plan.bound:.8g} exceeds objective {plan.objective:.8g}")
        if plan.gap is not None and plan.objective > 0:
            gap = max(0.0, (plan.objective - plan.bound) / plan.objective)
            if abs(gap - plan.gap) > 1e-6:
                rep.add("bound", f"gap {plan.gap:.6g} != (objective − bound)/objective = {gap:.6g}")
    if plan.status == "optimal" and plan.bound is None:
        rep.add("status", "status 'optimal' without a proven bound")


PER_WINDOW_FAMILIES = (
    "reference", "gpus", "eligibility", "coverage", "max_unserved", "capacity", "accuracy", "availability",
)  # fmt: skip


def _check_schedule(inst: Instance, plan: Plan, table: OptionTable, rep: CheckReport) -> None:
    """Multi-period plan: every window as a single-period plan against its own rates, then the
    period-wide rules (peak deployments, base fleet, change limit, budget, cost) from
    :mod:`planner.multiperiod`'s definitions."""
    from planner.multiperiod import schedule_cost, schedule_solution, window_plan, window_tables, windows

    sc = inst.scaling
    assert sc is not None
    ws = windows(inst)
    if plan.schedule is None or len(plan.schedule) != len(ws):
        got = 0 if plan.schedule is None else len(plan.schedule)
        rep.add("schedule", f"the instance has {len(ws)} demand windows, the plan's schedule {got}")
        return
    tables = window_tables(table)
    for w, wp, tab in zip(ws, plan.schedule, tables, strict=True):
        if wp.window != w.id or not _close(wp.hours, w.hours):
            rep.add("schedule", f"window {wp.window!r} ({wp.hours} h) != instance window {w.id!r} ({w.hours:.6g} h)")
        sub = check_plan(tab.instance, window_plan(plan, wp), tab)
        for v in sub.violations:
            if v.family in PER_WINDOW_FAMILIES:
                rep.add(v.family, f"window {w.id}: {v.detail}")
    ys, xs, us, base = schedule_solution(plan)
    peak: dict[Option, int] = {}
    for y in ys:
        for o, n in y.items():
            peak[o] = max(peak.get(o, 0), n)
    top = {d.option: d.replicas for d in plan.deployments}
    if {o: n for o, n in peak.items() if n > 0} != top:
        rep.add("schedule", "top-level deployments are not each option's peak replica count over the windows")
    if base and not sc.base_fleet:
        rep.add("schedule", "a base fleet is given but the instance's scaling has base_fleet: false")
    for o, b in base.items():
        low = min(y.get(o, 0) for y in ys)
        if b > low:
            rep.add("schedule", f"{o.key}: base fleet {b} > {low} replicas in some window")
    if sc.max_change is not None and len(ys) > 1:
        for t in range(len(ys)):
            prev, now = ys[t - 1], ys[t]
            for o in set(prev) | set(now):
                if abs(now.get(o, 0) - prev.get(o, 0)) > sc.max_change:
                    rep.add(
                        "change",
                        f"window {ws[t].id}: {o.key} goes {prev.get(o, 0)} → {now.get(o, 0)} "
                        f"(max_change {sc.max_change})",
                    )
    for t, wp in enumerate(plan.schedule):
        prev, now = ys[t - 1], ys[t]
        added = {c.option: c.replicas for c in wp.added}
        removed = {c.option: c.replicas for c in wp.removed}
        for o in set(prev) | set(now):
            d = now.get(o, 0) - prev.get(o, 0)
            if added.get(o, 0) - removed.get(o, 0) != d:
                rep.add(
                    "schedule",
                    f"window {wp.window}: added/removed for {o.key} do not give {prev.get(o, 0)} → {now.get(o, 0)}",
                )
    cost, _ = schedule_cost(inst, tables, ys, xs, us, base)
    rep.cost = cost
    _check_budget(inst, cost, rep)
    _check_costs(plan, cost, rep)
