"""Rolling re-optimization: re-plan every window vs one plan made for the peak (azure-2023).

For window lengths of 5, 15 and 30 minutes over the one-hour Azure conv + code traces (rates
scaled ×SCALE so fleets are large enough for integrality not to dominate), compare

    peak      one single-period MILP plan at every type's peak window rate, held all hour
    rolling   the multi-period MILP (a fresh fleet every window, no change limit)
    limited   the multi-period MILP with at most 2 replicas of an option added/removed per window
    agh       the multi-period AGH (its gap to the rolling MILP)

Costs are the planner's ($ per 24 h, the hour's profile repeating). Attainment is the simulator's
(jsq): the peak plan replays the whole trace; a schedule replays each window's slice on that
window's fleet (a fresh cluster per window, so queues do not carry over a boundary).

Run from the repository root: ``python benchmarks/rolling_study.py`` → ``benchmarks/results/rolling.md``
and ``rolling.csv``.
"""

from __future__ import annotations

import csv
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.checker import check_plan  # noqa: E402
from planner.loader import load_instance  # noqa: E402
from planner.multiperiod import peak_instance, window_plan  # noqa: E402
from planner.options import build_option_table, with_instance  # noqa: E402
from planner.review.demand import demand_from_trace  # noqa: E402
from planner.review.report import _with_windows  # noqa: E402
from planner.sim.replay import TraceArgs, run_simulation, trace_feed  # noqa: E402
from planner.solvers import solve  # noqa: E402

INSTANCE = ROOT / "instances" / "azure-2023.yaml"
RESULTS = ROOT / "benchmarks" / "results"
SCALE = 4.0
WINDOWS_MIN = (5, 15, 30)


def trace(inst: Any, **kw: Any) -> tuple[Any, Any]:
    args = TraceArgs(None, None, SCALE, 1.0, None, kw.get("start_s", 0.0), kw.get("duration_s"), False, 0)
    return trace_feed(inst, INSTANCE, args)


def attainment(summaries: list[dict[str, Any]]) -> float:
    met = served = 0.0
    for s in summaries:
        for d in s["types"].values():
            served += d["served"]
            met += (d["attainment"] or 0.0) * d["served"]
    return met / served if served else float("nan")


def schedule_attainment(inst: Any, plan: Any, window_s: float) -> float:
    out = []
    for t, w in enumerate(plan.schedule or []):
        tr, mp = trace(inst, start_s=t * window_s, duration_s=window_s)
        out.append(run_simulation(inst, window_plan(plan, w), tr, mp, "jsq", 0, 0.0).summary())
    return attainment(out)


def main() -> None:
    inst = load_instance(INSTANCE)
    rows = []
    t_all = time.perf_counter()
    for minutes in WINDOWS_MIN:
        window_s = minutes * 60.0
        tr, mp = trace(inst)
        demand = demand_from_trace(tr, mp.type_of, [q.id for q in inst.query_types], window_s)
        mp_inst = _with_windows(inst, demand)
        table = build_option_table(mp_inst)
        peak = peak_instance(mp_inst)
        t0 = time.perf_counter()
        peak_plan = solve(peak, "milp", table=with_instance(table, peak))
        t_peak = time.perf_counter() - t0
        results = {"peak": (peak_plan, t_peak)}
        for name, change in (("rolling", None), ("limited", 2)):
            sc = mp_inst.scaling.model_copy(update={"max_change": change})  # type: ignore[union-attr]
            inst_c = mp_inst.model_copy(update={"scaling": sc})
            t0 = time.perf_counter()
            p = solve(inst_c, "milp", table=with_instance(table, inst_c), time_limit=60)
            results[name] = (p, time.perf_counter() - t0)
            assert check_plan(inst_c, p, with_instance(table, inst_c)).ok
        t0 = time.perf_counter()
        agh = solve(mp_inst, "agh", table=table, seed=0)
        results["agh"] = (agh, time.perf_counter() - t0)
        base = peak_plan.objective or float("nan")
        rolling_cost = results["rolling"][0].objective
        for name, (p, secs) in results.items():
            print(f"{minutes} min {name}: {p.status} {p.objective} ({secs:.1f} s)", flush=True)
            if name == "peak":
                tr, mp = trace(inst)
                att = attainment([run_simulation(inst, p, tr, mp, "jsq", 0, 0.0).summary()])
            else:
                att = schedule_attainment(inst, p, window_s)
            rows.append(
                {
                    "window_min": minutes,
                    "windows": demand.windows,
                    "plan": name,
                    "status": p.status,
                    "cost": round(p.objective, 2) if p.objective is not None else None,
                    "bound": round(p.bound, 2) if p.bound is not None else None,
                    "mip_gap": round(p.gap, 4) if p.gap is not None else None,
                    "saving_vs_peak": round(1 - p.objective / base, 4) if p.objective else None,
                    "gap_vs_rolling_milp": round(p.objective / rolling_cost - 1, 4)
                    if name == "agh" and p.objective and rolling_cost
                    else None,
                    "peak_gpus": sum(d.gpus for d in p.deployments),
                    "solve_s": round(secs, 2),
                    "attainment": round(att, 4),
                }
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "rolling.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Rolling re-optimization vs one plan for the peak (azure-2023)",
        "",
        f"Machine: {platform.processor() or platform.machine()} · Python {platform.python_version()} · "
        f"command `python benchmarks/rolling_study.py` ({time.perf_counter() - t_all:.0f} s).",
        f"Traffic: Azure conv + code one-hour traces, rates ×{SCALE:g} (`--rate-scale`), mapped by "
        "`instances/azure-2023.traces.yml`; costs in $ per 24 h (the hour's profile repeating); "
        "attainment simulated with jsq.",
        "",
        "| window | plan | status | cost $ | bound $ | MIP gap | saving vs peak | AGH vs MILP | peak GPUs | solve s "
        "| attainment |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sv = "-" if r["saving_vs_peak"] is None else f"{100 * r['saving_vs_peak']:.1f}%"
        gp = "-" if r["gap_vs_rolling_milp"] is None else f"{100 * r['gap_vs_rolling_milp']:.2f}%"
        mg = "-" if r["mip_gap"] is None else f"{100 * r['mip_gap']:.2f}%"
        lines.append(
            f"| {r['window_min']} min ({r['windows']}) | {r['plan']} | {r['status']} | {r['cost']} | "
            f"{r['bound'] if r['bound'] is not None else '-'} | "
            f"{mg} | {sv} | {gp} | "
            f"{r['peak_gpus']} | {r['solve_s']} | {r['attainment']} |"
        )
    lines += [
        "",
        "peak: one single-period plan at every type's peak window rate; rolling: multi-period MILP, a new fleet "
        "every window; limited: at most 2 replicas of an option added or removed between windows; agh: the "
        "multi-period heuristic (per-window AGH, then the coupling repaired).",
        "Attainment is low for every plan because the planner's capacity model is optimistic for the code type "
        "(see sim_study.md): re-planning saves cost at the same model error, it does not fix it.",
    ]
    (RESULTS / "rolling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
