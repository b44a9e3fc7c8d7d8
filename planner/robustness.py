"""Robustness: stress-testing a frozen plan, and planning with headroom.

**Stress** (Cheng & Nguyen's robustness table): keep a plan's replicas and routing, multiply every
routed pair's latency figures (ttft, tpot, e2e) and every error rate by a factor f, and report per
query type

* ``slo_share`` — the share of the type's requests routed to pairs whose inflated figures now
  miss one of its SLOs;
* ``accuracy_broken`` — whether the routed-load-weighted error f·Σ e·x now exceeds max_error;
* ``accuracy_share`` — the least share of the type's requests that would have to move, worst
  model first, to its most accurate routed option to restore max_error (all of the served share
  when even that option alone misses it);
* ``violating_share`` — max(slo_share, accuracy_share): requests that break an SLO or whose
  answers push the type past its error limit, as a share of the type;
* the plan's cost at that factor: rental and storage are frozen; the delay penalty scales with f.

**Headroom** h: solve against a tightened instance (every SLO divided by 1 + h, and every
max_error by 1 + h_e with a separate error headroom h_e), so the plan survives latency inflation up
to 1 + h (and error inflation up to 1 + h_e), then price and check it on the original instance. The
two are separate because an error limit within h of the best model's error makes any error
headroom infeasible, while latency headroom only costs replicas. The result is reported
``feasible``: it is optimal only for the tightened problem.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.options import OptionTable
from planner.plan import Plan, build_plan, plan_solution
from planner.problem import SLO, Instance


@dataclass(frozen=True)
class StressRow:
    factor: float
    query_type: str
    arrival_rate: float
    slo_share: float
    accuracy_error: float
    max_error: float | None
    accuracy_broken: bool
    accuracy_share: float
    violating_share: float


@dataclass(frozen=True)
class StressResult:
    factor: float
    rows: list[StressRow]
    violating_demand_share: float  # requests/s violating ÷ requests/s of all types
    cost_total: float
    cost_delay_penalty: float


def stress(table: OptionTable, plan: Plan, factors: list[float]) -> list[StressResult]:
    """The plan frozen, its figures inflated by each factor (see the module docstring)."""
    inst = table.instance
    _, x, _ = plan_solution(plan)
    assert plan.cost is not None, "stress needs a plan with a solution"
    out = []
    for f in factors:
        rows = []
        bad_rps = 0.0
        delay = 0.0
        for q in inst.query_types:
            shares = x.get(q.id, {})
            slo_share = 0.0
            err = 0.0
            for o, v in shares.items():
                row = table.row(o, q.id)
                if row is None:
                    continue
                figs = [None if val is None else val * f for val in (row.ttft_s, row.tpot_s, row.e2e_s)]
                if _misses(q.slo, *figs):
                    slo_share += v
                err += min(1.0, inst.error(o.model, q.id) * f) * v
                if q.delay_penalty and row.e2e_s is not None:
                    delay += 3600.0 * inst.period_hours * q.arrival_rate * q.delay_penalty * row.e2e_s * f * v
            broken = q.max_error is not None and err > q.max_error + 1e-9
            acc_share = _accuracy_share(inst, q.id, shares, f, err, q.max_error) if broken else 0.0
            violating = max(slo_share, acc_share)
            bad_rps += violating * q.arrival_rate
            rows.append(StressRow(f, q.id, q.arrival_rate, slo_share, err, q.max_error, broken, acc_share, violating))
        total_rps = sum(q.arrival_rate for q in inst.query_types)
        c = plan.cost
        total = c.rental + c.storage + c.unserved_penalty + delay
        out.append(StressResult(f, rows, bad_rps / total_rps, total, delay))
    return out


def _accuracy_share(inst: Instance, type_id: str, shares: dict, f: float, err: float, limit: float | None) -> float:
    """Least share to move (worst model first) to the most accurate routed option to meet ``limit``."""
    assert limit is not None
    errs = sorted(((min(1.0, inst.error(o.model, type_id) * f), v) for o, v in shares.items() if v > 0), reverse=True)
    best = errs[-1][0]
    if best > limit + 1e-12:
        return sum(v for _, v in errs)
    moved, excess = 0.0, err - limit
    for e, v in errs:
        if excess <= 1e-12 or e <= best:
            break
        take = min(v, excess / (e - best))
        moved += take
        excess -= take * (e - best)
    return moved


def _misses(slo: SLO, ttft: float | None, tpot: float | None, e2e: float | None) -> bool:
    return any(
        lim is not None and val is not None and val > lim * (1 + 1e-9)
        for lim, val in ((slo.ttft_s, ttft), (slo.tpot_s, tpot), (slo.e2e_s, e2e))
    )


def tightened(inst: Instance, headroom: float, error_headroom: float = 0.0) -> Instance:
    """The instance with every SLO divided by 1 + headroom, every max_error by 1 + error_headroom."""
    g = 1.0 + headroom
    ge = 1.0 + error_headroom

    def slo(s: SLO) -> SLO:
        return SLO(**{k: (None if v is None else v / g) for k, v in s.model_dump().items()})

    types = tuple(
        q.model_copy(update={"slo": slo(q.slo), "max_error": None if q.max_error is None else q.max_error / ge})
        for q in inst.query_types
    )
    return inst.model_copy(update={"query_types": types})


def on_original(table: OptionTable, plan: Plan, headroom: float, error_headroom: float = 0.0) -> Plan:
    """A plan solved on the tightened instance, priced on the original one (``table``)."""
    if not plan.has_solution:
        note = f"headroom {headroom:g}, error headroom {error_headroom:g}"
        return plan.model_copy(update={"message": f"{plan.message or ''} ({note})".strip()})
    y, x, u = plan_solution(plan)
    return build_plan(
        table,
        method=plan.method,
        status="feasible",
        replicas=y,
        routing=x,
        unserved=u,
        solve_seconds=plan.solve_seconds,
        backend=plan.backend,
        seed=plan.seed,
        message=f"planned with headroom {headroom:g} (errors {error_headroom:g}): optimal only for the tightened "
        "problem",
    )
