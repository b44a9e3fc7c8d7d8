# ruff: noqa: E501  (HTML and Markdown layout lines)
"""The weekly capacity review: last week's traffic and the current fleet in, a recommendation out.

``build_review`` computes every figure once into a plain dict (also written as ``review.json``);
``render_html`` and ``render_markdown`` only lay it out. The HTML is one self-contained file:
inline CSS, plots as inline base64 PNG, no script and no network asset.

Sections (HTML ``<section id=...>``):
    demand       arrival rate per query type and window (from the trace)
    plan-diff    recommended plan against the current one: replicas added and removed per option,
                 GPUs per tier, cost per period and its delta
    cost         cost breakdown of both
    slo          per type: simulated attainment and p99 against the SLO (headroom), for the current
                 plan on the whole trace and the recommended schedule window by window
    stress       the recommended schedule replayed at 1.2× and 1.5× the traffic
    utilization  per deployment: simulated utilization and peak KV
    what-if      demand +20 %, prices −10 %, the busiest tier unavailable (each re-solved)
    schedule     per window: rates, replicas per option, added and removed
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.options import OptionTable, build_option_table
from planner.plan import Plan
from planner.problem import DemandWindow, Instance, Scaling

SECTIONS = (
    ("demand", "Demand over time"),
    ("plan-diff", "Recommended plan vs current"),
    ("cost", "Cost breakdown"),
    ("slo", "SLO headroom (simulated)"),
    ("stress", "Stress: traffic ×1.2 and ×1.5"),
    ("utilization", "Utilization per deployment"),
    ("what-if", "What if"),
    ("schedule", "Scaling schedule"),
)


@dataclass
class ReviewInputs:
    instance: Instance
    instance_path: Path
    traces: list[Path]
    current: Plan
    window_s: float = 900.0
    policy: str = "jsq"
    method: str = "milp"
    seed: int = 0
    validate: bool = True  # replay the recommended schedule and re-solve where it misses (planner.validation)
    # Seconds per solve (the multi-period MILP over every window, each what-if): a weekly review
    # must end; a solve that stops at the limit reports its status and gap on the page.
    time_limit: float | None = 60.0


def _sim_summary(inst: Instance, plan: Plan, trace: Any, mapper: Any, policy: str, seed: int) -> dict[str, Any]:
    from planner.sim.replay import run_simulation

    return run_simulation(inst, plan, trace, mapper, policy, seed, 0.0).summary()


def _trace(inputs: ReviewInputs, **options: Any) -> tuple[Any, Any]:
    from planner.sim.replay import TraceArgs, trace_feed

    args = TraceArgs(inputs.traces, None, options.get("rate_scale", 1.0), 1.0, None,
                     options.get("start_s", 0.0), options.get("duration_s"), False, inputs.seed)  # fmt: skip
    return trace_feed(inputs.instance, inputs.instance_path, args)


def _with_windows(inst: Instance, demand: Any) -> Instance:
    old = inst.scaling
    rates = demand.rate_matrix()
    windows = tuple(
        DemandWindow(
            id=_clock(demand.window_s * t),
            hours=demand.window_s / 3600.0,
            rates={q: float(rates[t, i]) for i, q in enumerate(demand.type_ids)},
        )
        for t in range(rates.shape[0])
    )
    sc = Scaling(
        windows=windows,
        base_fleet=old.base_fleet if old else False,
        on_demand_premium=old.on_demand_premium if old else 0.0,
        max_change=old.max_change if old else None,
    )
    return inst.model_copy(update={"scaling": sc})


def _clock(seconds: float) -> str:
    m = round(seconds / 60)
    return f"+{m // 60:d}:{m % 60:02d}"


def _fleet(plan: Plan) -> dict[str, int]:
    return {d.option.key: d.replicas for d in plan.deployments if d.replicas > 0}


def _tiers(plan: Plan) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in plan.deployments:
        out[d.gpu] = out.get(d.gpu, 0) + d.gpus
    return out


def _cost(plan: Plan) -> dict[str, float]:
    c = plan.cost
    if c is None:
        return {}
    return {k: round(getattr(c, k), 4) for k in ("rental", "storage", "delay_penalty", "unserved_penalty", "total")}


def _what_if(
    inst: Instance, base_cost: float, method: str, seed: int, busiest_tier: str | None, time_limit: float | None
) -> list[dict[str, Any]]:
    """Each scenario re-solved as a single-period plan at the peak window rates."""
    from planner.multiperiod import peak_instance, with_rate
    from planner.solvers import solve

    peak = peak_instance(inst)
    scenarios: list[tuple[str, Instance]] = [("plan for the peak as is", peak)]
    up = tuple(with_rate(q, q.arrival_rate * 1.2) for q in peak.query_types)
    scenarios.append(("demand +20%", peak.model_copy(update={"query_types": up})))
    cheap = tuple(g.model_copy(update={"price_per_hour": g.price_per_hour * 0.9}) for g in peak.gpus)
    scenarios.append(("prices −10%", peak.model_copy(update={"gpus": cheap})))
    if busiest_tier is not None:
        gone = tuple(g.model_copy(update={"available": 0}) if g.id == busiest_tier else g for g in peak.gpus)
        scenarios.append((f"{busiest_tier} unavailable", peak.model_copy(update={"gpus": gone})))
    rows = []
    for name, sc in scenarios:
        p = (
            solve(sc, method, seed=seed, time_limit=time_limit)
            if method == "agh"
            else solve(sc, "milp", time_limit=time_limit)
        )
        ok = p.has_solution and p.objective is not None
        rows.append(
            {
                "scenario": name,
                "status": p.status,
                "cost": round(p.objective, 2) if ok else None,
                "delta_vs_recommended": round(p.objective - base_cost, 2) if ok else None,  # type: ignore[operator]
                "gpus": sum(d.gpus for d in p.deployments) if ok else None,
                "gpus_by_tier": _tiers(p) if ok else {},
                "fleet": _fleet(p) if ok else {},
            }
        )
    return rows


def build_review(inputs: ReviewInputs, progress: Any = None) -> dict[str, Any]:
    """Every figure of the review (see the module docstring), as plain data."""
    from planner.checker import check_plan
    from planner.multiperiod import window_plan
    from planner.review.demand import demand_from_trace
    from planner.solvers import solve

    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    inst = inputs.instance
    trace, mapper = _trace(inputs)
    say("demand")
    demand = demand_from_trace(trace, mapper.type_of, [q.id for q in inst.query_types], inputs.window_s)
    rates = demand.rate_matrix()
    mp_inst = _with_windows(inst, demand)
    table: OptionTable = build_option_table(mp_inst)
    say("multi-period plan")
    rec = solve(mp_inst, inputs.method, table=table, seed=inputs.seed, time_limit=inputs.time_limit)
    if not rec.has_solution:
        raise RuntimeError(f"no recommended plan: {rec.status} ({rec.message})")
    targets_set = any(inst.attainment(q) is not None for q in inst.query_types)
    if inputs.validate and rec.schedule and targets_set:
        # The recommendation's promise is checked the way solve --validate checks a plan: each
        # window's plan replays that window's traffic, a type that misses is derated by the
        # measured shortfall and the schedule re-solved (planner.validation).
        from planner.sim.replay import feed_of
        from planner.sim.scale import Requests
        from planner.validation import validate

        say("validate recommended schedule")
        per_window = [
            Requests.collect(feed_of(*_trace(inputs, start_s=t * inputs.window_s, duration_s=inputs.window_s)))
            for t in range(len(rec.schedule))
        ]

        def resolve(tb: OptionTable) -> Plan:
            say("re-solve derated schedule")
            return solve(mp_inst, inputs.method, table=tb, seed=inputs.seed, time_limit=inputs.time_limit)

        # The schedule's windows are the multi-period instance's (validation._scenes reads them).
        rec, table = validate(
            mp_inst, table, rec, per_window, resolve, [str(p) for p in inputs.traces], inputs.policy, inputs.seed
        )
        if not rec.has_solution:
            raise RuntimeError(f"no recommended plan after derating: {rec.status} ({rec.message})")
    check = check_plan(mp_inst, rec, table)
    cur_check = check_plan(inst, inputs.current)

    say("simulate current plan")
    cur_sim = _sim_summary(inst, inputs.current, trace, mapper, inputs.policy, inputs.seed)
    sims: dict[str, list[dict[str, Any]]] = {}
    for label, scale in (("1.0", 1.0), ("1.2", 1.2), ("1.5", 1.5)):
        say(f"simulate recommended schedule ×{label}")
        per = []
        for t, w in enumerate(rec.schedule or []):
            tr, mp = _trace(inputs, rate_scale=scale, start_s=t * inputs.window_s, duration_s=inputs.window_s)
            wp = window_plan(rec, w)
            s = _sim_summary(inst, wp, tr, mp, inputs.policy, inputs.seed)
            per.append(s)
        sims[label] = per

    say("what-if")
    busiest = max(_tiers(rec).items(), key=lambda kv: kv[1])[0] if rec.deployments else None
    what_if = _what_if(mp_inst, rec.objective or 0.0, inputs.method, inputs.seed, busiest, inputs.time_limit)

    cur_fleet, rec_fleet = _fleet(inputs.current), _fleet(rec)
    diff = []
    for key in sorted(set(cur_fleet) | set(rec_fleet)):
        a, b = cur_fleet.get(key, 0), rec_fleet.get(key, 0)
        diff.append({"option": key, "current": a, "recommended": b, "change": b - a})
    tiers = sorted(set(_tiers(inputs.current)) | set(_tiers(rec)))
    cur_cost = inputs.current.cost.total if inputs.current.cost else None
    rec_cost = rec.cost.total if rec.cost else None
    return {
        "instance": inst.name,
        "period_hours": inst.period_hours,
        "generated_in_s": None,  # filled below
        "traces": [str(p) for p in inputs.traces],
        "window_s": inputs.window_s,
        "policy": inputs.policy,
        "method": inputs.method,
        "demand": {
            "type_ids": demand.type_ids,
            "windows": [_clock(inputs.window_s * t) for t in range(demand.windows)],
            "rates": rates.round(4).tolist(),
            "rows": [r.__dict__ for r in demand.rows],
            "unmapped": demand.unmapped,
        },
        "current": {
            "fleet": cur_fleet,
            "gpus_by_tier": _tiers(inputs.current),
            "cost": _cost(inputs.current),
            "check": [str(v) for v in cur_check.violations],
        },
        "recommended": {
            "status": rec.status,
            "objective": rec.objective,
            "bound": rec.bound,
            "gap": rec.gap,
            "fleet": rec_fleet,
            "gpus_by_tier": _tiers(rec),
            "base_fleet": {d.option.key: d.replicas for d in rec.base_fleet or []},
            "cost": _cost(rec),
            "check": [str(v) for v in check.violations],
            "validation": None if rec.validation is None else rec.validation.model_dump(mode="json"),
            "validation_skipped": None
            if rec.validation is not None
            else ("--no-validate" if not inputs.validate else "mean-latency semantics: no attainment target to check"),
        },
        "diff": diff,
        "tiers": [
            {"tier": g, "current": _tiers(inputs.current).get(g, 0), "recommended": _tiers(rec).get(g, 0)}
            for g in tiers
        ],
        "cost_delta": None if cur_cost is None or rec_cost is None else round(rec_cost - cur_cost, 2),
        "slo": (slo_rows := _slo_rows(inst, cur_sim, sims["1.0"])),
        "flags": _flags(slo_rows),
        "stress": {k: _attainment(v) for k, v in sims.items()},
        "utilization": _utilization(cur_sim, sims["1.0"]),
        "what_if": what_if,
        "schedule": [
            {
                "window": w.window,
                "hours": w.hours,
                "rates": {q: r for q, r in zip(demand.type_ids, rates[t].round(3).tolist(), strict=True)},
                "fleet": {d.option.key: d.replicas for d in w.deployments},
                "added": {c.option.key: c.replicas for c in w.added},
                "removed": {c.option.key: c.replicas for c in w.removed},
                "cost": round(w.cost or 0.0, 2),
            }
            for t, w in enumerate(rec.schedule or [])
        ],
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }


def _attainment(per_window: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled over windows: met / served per type and overall."""
    met: dict[str, float] = {}
    served: dict[str, int] = {}
    for s in per_window:
        for ty, d in s["types"].items():
            served[ty] = served.get(ty, 0) + d["served"]
            met[ty] = met.get(ty, 0.0) + (d["attainment"] or 0.0) * d["served"]
    out = {ty: round(met[ty] / served[ty], 6) if served[ty] else None for ty in served}
    total = sum(served.values())
    out["all"] = round(sum(met.values()) / total, 6) if total else None
    return out


def _slo_rows(inst: Instance, cur: dict[str, Any], rec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rec_att = _attainment(rec)
    rows = []
    for q in inst.query_types:
        d = cur["types"].get(q.id)
        p99s = [s["types"][q.id]["ttft_s"]["p99"] for s in rec if q.id in s["types"]]
        tp99 = [
            s["types"][q.id]["tpot_s"]["p99"] for s in rec if q.id in s["types"] and s["types"][q.id]["tpot_s"]["p99"]
        ]
        target = inst.attainment(q)
        rows.append(
            {
                "type": q.id,
                "slo": {"ttft_s": q.slo.ttft_s, "tpot_s": q.slo.tpot_s, "e2e_s": q.slo.e2e_s},
                # the type's attainment target (slo_attainment; 0.99 stands in under mean semantics)
                "target": target if target is not None else 0.99,
                "current_attainment": d["attainment"] if d else None,
                "current_ttft_p99": d["ttft_s"]["p99"] if d else None,
                "current_tpot_p99": d["tpot_s"]["p99"] if d else None,
                "recommended_attainment": rec_att.get(q.id),
                "recommended_ttft_p99": max(p99s) if p99s else None,
                "recommended_tpot_p99": max(tp99) if tp99 else None,
                "ttft_headroom": _headroom(q.slo.ttft_s, max(p99s) if p99s else None),
                "tpot_headroom": _headroom(q.slo.tpot_s, max(tp99) if tp99 else None),
            }
        )
    return rows


def _flags(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (plan, type) whose replayed attainment is below the type's target."""
    out = []
    for plan in ("current", "recommended"):
        for x in rows:
            a = x[f"{plan}_attainment"]
            if a is not None and a < x["target"]:
                out.append(f"{plan} plan misses {x['type']}: attainment {a:.4f} < target {x['target']:g} in replay")
    return out


def _validation_line(rec: dict[str, Any]) -> str:
    """One sentence on the recommended schedule's replay check (planner.validation)."""
    v = rec.get("validation")
    if v is None:
        return f"Not validated by replay ({rec.get('validation_skipped') or 'no schedule'})."
    verdict = "meets every target" if v["passed"] else "still misses a target"
    derated = ", ".join(f"{t} ×{f:g}" for t, f in sorted(v["derating_by_type"].items())) or "none"
    line = f"Validated by replay, window by window: {verdict} after {v['rounds']} round(s); capacity derating by type: {derated}."
    return line + (f" {v['message']}" if v.get("message") else "")


def _headroom(slo: float | None, p99: float | None) -> float | None:
    """1 − p99/SLO: the share of the SLO left unused at the 99th percentile (negative: missed)."""
    if slo is None or p99 is None:
        return None
    return round(1.0 - p99 / slo, 4)


def _utilization(cur: dict[str, Any], rec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{"plan": "current", "pool": p["pool"], "replicas": p["replicas"], "utilization": p["utilization"],
             "peak_kv": p["peak_kv"]} for p in cur["pools"]]  # fmt: skip
    pooled: dict[str, list[float]] = {}
    kv: dict[str, float] = {}
    for s in rec:
        for p in s["pools"]:
            pooled.setdefault(p["pool"], []).append(p["utilization"] or 0.0)
            kv[p["pool"]] = max(kv.get(p["pool"], 0.0), p["peak_kv"] or 0.0)
    for pool, us in pooled.items():
        rows.append({"plan": "recommended", "pool": pool, "replicas": None, "utilization": round(sum(us) / len(us), 4),
                     "peak_kv": kv[pool]})  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------- plots
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plots(review: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = {}
    d = review["demand"]
    rates = np.asarray(d["rates"])
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(len(d["windows"]))
    for i, ty in enumerate(d["type_ids"]):
        ax.step(x, rates[:, i], where="post", label=ty)
    ax.set_xticks(x, d["windows"], rotation=45, fontsize=8)
    ax.set_ylabel("requests/s")
    ax.set_xlabel(f"window start ({review['window_s'] / 60:g} min windows)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out["demand"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    terms = ["rental", "storage", "delay_penalty", "unserved_penalty"]
    cur = [review["current"]["cost"].get(t, 0.0) for t in terms]
    rec = [review["recommended"]["cost"].get(t, 0.0) for t in terms]
    for n, (_label, vals) in enumerate((("current", cur), ("recommended", rec))):
        bottom = 0.0
        for t, v in zip(terms, vals, strict=True):
            ax.bar(n, v, bottom=bottom, color=f"C{terms.index(t)}", label=t if n == 0 else None)
            bottom += v
    ax.set_xticks([0, 1], ["current", "recommended"])
    ax.set_ylabel(f"$ per {review['period_hours']:g} h")
    ax.legend(fontsize=8)
    out["cost"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    tiers = review["tiers"]
    xt = np.arange(len(tiers))
    ax.bar(xt - 0.2, [t["current"] for t in tiers], 0.4, label="current")
    ax.bar(xt + 0.2, [t["recommended"] for t in tiers], 0.4, label="recommended (peak)")
    ax.set_xticks(xt, [t["tier"] for t in tiers])
    ax.set_ylabel("GPUs")
    ax.legend(fontsize=8)
    out["tiers"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    types = [r["type"] for r in review["slo"]]
    xs = np.arange(len(types))
    ax.bar(xs - 0.2, [r["current_attainment"] or 0 for r in review["slo"]], 0.4, label="current")
    ax.bar(xs + 0.2, [r["recommended_attainment"] or 0 for r in review["slo"]], 0.4, label="recommended")
    ax.axhline(0.99, ls=":", color="k", lw=0.8)
    ax.set_xticks(xs, types)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("SLO attainment")
    ax.legend(fontsize=8)
    out["slo"] = _png(fig)
    return out


# --------------------------------------------------------------------------------------------- layout
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1d2430}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:0.9em}td,th{border:1px solid #ccd;padding:3px 8px;text-align:right}
th{background:#f2f4f8}td:first-child,th:first-child{text-align:left}.bad{color:#b00020;font-weight:600}
.good{color:#0a7d32}.muted{color:#667}img{max-width:100%}
"""


def _table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _cell(c: Any) -> str:
    if c is None:
        return "-"
    if isinstance(c, float):
        if math.isnan(c):
            return "-"
        return f"{c:,.4g}" if abs(c) < 1000 else f"{c:,.0f}"
    if isinstance(c, dict):
        return html.escape(", ".join(f"{k} ×{v}" for k, v in c.items())) or "-"
    return html.escape(str(c))


def _att(a: float | None, target: float = 0.99) -> str:
    if a is None:
        return "-"
    cls = "good" if a >= target else "bad"
    return f'<span class="{cls}">{a:.4f}</span>'


def render_html(review: dict[str, Any]) -> str:
    img = plots(review)
    r = review
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Capacity review: {html.escape(r['instance'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Capacity review: {html.escape(r['instance'])}</h1>",
        f"<p class='muted'>Traffic: {html.escape(', '.join(Path(p).name for p in r['traces']))} · "
        f"{r['window_s'] / 60:g}-minute windows · placement {html.escape(r['policy'])} · "
        f"method {html.escape(r['method'])} · built in {r['elapsed_s']} s</p>",
    ]
    body = {
        "demand": f"<img alt='demand' src='{img['demand']}'>"
        + _table(["window", *r["demand"]["type_ids"]], [[w, *row] for w, row in zip(r["demand"]["windows"], r["demand"]["rates"], strict=True)])
        + f"<p class='muted'>requests/s per window; unmapped requests: {r['demand']['unmapped']}</p>",
        "plan-diff": _table(["option", "current", "recommended (peak)", "change"],
                            [[d["option"], d["current"], d["recommended"], f"{d['change']:+d}"] for d in r["diff"]])
        + _table(["GPU tier", "current", "recommended (peak)"], [[t["tier"], t["current"], t["recommended"]] for t in r["tiers"]])
        + f"<img alt='gpus per tier' src='{img['tiers']}'>"
        + f"<p>Cost per {r['period_hours']:g} h: current ${_cell(r['current']['cost'].get('total'))}, recommended "
        f"${_cell(r['recommended']['cost'].get('total'))} (delta <b>{_cell(r['cost_delta'])}</b>). "
        f"Recommended status {html.escape(str(r['recommended']['status']))}, gap {_cell(r['recommended']['gap'])}; "
        f"checker: {'OK' if not r['recommended']['check'] else html.escape('; '.join(r['recommended']['check']))}.</p>"
        + (f"<p>Base fleet (rented all period): {_cell(r['recommended']['base_fleet'])}</p>" if r["recommended"]["base_fleet"] else "")
        + f"<p>{html.escape(_validation_line(r['recommended']))}</p>",
        "cost": _table(["term", "current", "recommended"],
                       [[t, r["current"]["cost"].get(t), r["recommended"]["cost"].get(t)]
                        for t in ("rental", "storage", "delay_penalty", "unserved_penalty", "total")])
        + f"<img alt='cost' src='{img['cost']}'>",
        "slo": ("<ul class='flags'>" + "".join(f"<li class='bad'>{html.escape(f)}</li>" for f in r["flags"]) + "</ul>"
                if r["flags"] else "<p class='good'>Both plans meet every type's attainment target in replay.</p>")
        + "<table><thead><tr><th>type</th><th>SLO ttft/tpot/e2e s</th><th>target</th><th>current attainment</th>"
        "<th>current ttft/tpot p99</th><th>recommended attainment</th><th>recommended ttft/tpot p99</th>"
        "<th>ttft headroom</th><th>tpot headroom</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td>{html.escape(x['type'])}</td><td>{x['slo']['ttft_s']}/{x['slo']['tpot_s']}/{x['slo']['e2e_s']}</td>"
            f"<td>{x['target']:g}</td>"
            f"<td>{_att(x['current_attainment'], x['target'])}</td><td>{_cell(x['current_ttft_p99'])}/{_cell(x['current_tpot_p99'])}</td>"
            f"<td>{_att(x['recommended_attainment'], x['target'])}</td><td>{_cell(x['recommended_ttft_p99'])}/{_cell(x['recommended_tpot_p99'])}</td>"
            f"<td>{_cell(x['ttft_headroom'])}</td><td>{_cell(x['tpot_headroom'])}</td></tr>"
            for x in r["slo"]
        )
        + "</tbody></table>"
        + f"<img alt='attainment' src='{img['slo']}'>"
        + "<p class='muted'>Headroom = 1 − p99/SLO (negative: the SLO is missed at p99). The recommended "
        "schedule is simulated window by window, each window's fleet on that window's traffic.</p>",
        "stress": "<table><thead><tr><th>traffic</th>"
        + "".join(f"<th>{html.escape(t)}</th>" for t in [*r["demand"]["type_ids"], "all"])
        + "</tr></thead><tbody>"
        + "".join(
            f"<tr><td>×{k}</td>" + "".join(f"<td>{_att(v.get(t))}</td>" for t in [*r["demand"]["type_ids"], "all"]) + "</tr>"
            for k, v in r["stress"].items()
        )
        + "</tbody></table>",
        "utilization": _table(["plan", "pool", "replicas", "utilization", "peak KV"],
                              [[u["plan"], u["pool"], u["replicas"], u["utilization"], u["peak_kv"]] for u in r["utilization"]]),
        "what-if": _table(["scenario", "status", "cost", "Δ vs recommended", "GPUs", "fleet"],
                          [[w["scenario"], w["status"], w["cost"], w["delta_vs_recommended"], w["gpus"], w["fleet"]] for w in r["what_if"]])
        + "<p class='muted'>Each scenario is re-solved as one plan for the peak window's rates; Δ is against the "
        "recommended multi-period cost.</p>",
        "schedule": _table(["window", "hours", "rates", "fleet", "added", "removed", "cost $"],
                           [[s["window"], s["hours"], s["rates"], s["fleet"], s["added"], s["removed"], s["cost"]] for s in r["schedule"]]),
    }  # fmt: skip
    for sid, title in SECTIONS:
        parts.append(f"<section id='{sid}'><h2>{html.escape(title)}</h2>{body[sid]}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(review: dict[str, Any]) -> str:
    r = review
    lines = [f"# Capacity review: {r['instance']}", ""]
    lines.append(
        f"Traffic {', '.join(Path(p).name for p in r['traces'])}; {r['window_s'] / 60:g}-minute windows; built in {r['elapsed_s']} s."
    )
    lines += [
        "",
        "## Recommended plan vs current",
        "",
        "| option | current | recommended (peak) | change |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {d['option']} | {d['current']} | {d['recommended']} | {d['change']:+d} |" for d in r["diff"]]
    lines += ["", f"Cost per {r['period_hours']:g} h: current {r['current']['cost'].get('total')}, recommended "
              f"{r['recommended']['cost'].get('total')}, delta {r['cost_delta']}.",
              "", _validation_line(r["recommended"])]  # fmt: skip
    lines += [
        "",
        "## SLO attainment (simulated)",
        "",
        *([f"- **{f}**" for f in r["flags"]] or ["Both plans meet every type's attainment target in replay."]),
        "",
        "| type | target | current | recommended | ×1.2 | ×1.5 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for x in r["slo"]:
        t = x["type"]
        lines.append(
            f"| {t} | {x['target']:g} | {x['current_attainment']} | {x['recommended_attainment']} | {r['stress']['1.2'].get(t)} | {r['stress']['1.5'].get(t)} |"
        )
    lines += ["", "## What if", "", "| scenario | status | cost | Δ | GPUs |", "|---|---|---:|---:|---:|"]
    lines += [
        f"| {w['scenario']} | {w['status']} | {w['cost']} | {w['delta_vs_recommended']} | {w['gpus']} |"
        for w in r["what_if"]
    ]
    lines += ["", "## Scaling schedule", "", "| window | fleet | added | removed | cost $ |", "|---|---|---|---|---:|"]
    for s in r["schedule"]:
        fmt = lambda d: ", ".join(f"{k} ×{v}" for k, v in d.items()) or "-"  # noqa: E731
        lines.append(f"| {s['window']} | {fmt(s['fleet'])} | {fmt(s['added'])} | {fmt(s['removed'])} | {s['cost']} |")
    return "\n".join(lines) + "\n"
