# ruff: noqa: E501, B023  (long markdown rows; cell() is called inside its loop iteration)
"""How far the planner's capacity model is from the simulated truth on the Azure 2023 traces.

(a) GPUs needed at 99% SLO attainment per placement policy (``scale_plan`` on the azure-2023 MILP
    plan) on the Azure conv trace alone and the Azure code trace alone, beside the MILP counts.
(b) max_utilization sweep: solve azure-2023 at each u, simulate the plan on both traces merged
    (jsq), record $ / GPUs / attainment per type; then, per (option, type) of the plans, the
    highest Poisson rate one replica sustains at ≥ 0.99 attainment vs the table's throughput_rps.

    taskset -c 1 python benchmarks/sim_study.py

Writes benchmarks/results/sim_study.md, sim_study.csv, sim_gpus.png (md rewritten as it goes).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CONV = DATA / "azure" / "AzureLLMInferenceTrace_conv.csv"
CODE = DATA / "azure" / "AzureLLMInferenceTrace_code.csv"
UTILS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.85)
MULTS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.375, 1.5, 1.75, 2.0, 2.5, 3.0)
TARGET = 0.99

from planner.loader import load_instance  # noqa: E402
from planner.options import build_option_table  # noqa: E402
from planner.sim.cli import scale_plan  # noqa: E402
from planner.sim.cluster import simulator_for_option, simulator_for_plan  # noqa: E402
from planner.sim.engine import SimConfig  # noqa: E402
from planner.sim.mapping import TypeMapper  # noqa: E402
from planner.sim.policies import policy_names  # noqa: E402
from planner.sim.replay import feed_of  # noqa: E402
from planner.sim.scale import Requests  # noqa: E402
from planner.sim.traces import Trace, synthetic_trace  # noqa: E402
from planner.solvers import solve  # noqa: E402

POLICIES = policy_names()  # every registered placement policy, in registration order

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


def fmt(x: Any, nd: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


# ----------------------------------------------------------------------------- (a)
def part_a(inst: Any, table: Any, plan: Any, mapper: Any, st: dict[str, Any]) -> None:
    for name, path in (("conv", CONV), ("code", CODE)):
        reqs = Requests.collect(feed_of(Trace([path]), mapper))
        tids = [q.id for q in inst.query_types]
        present = sorted({tids[t] for t in np.unique(reqs.ty) if t >= 0})
        t = time.perf_counter()
        rows = scale_plan(inst, table, plan, reqs, list(POLICIES), TARGET, 0, 0.0)
        log(
            f"(a) {name}: {len(reqs):,} requests, scale_plan over {len(POLICIES)} policies in "
            f"{time.perf_counter() - t:.1f} s"
        )
        routed = {}
        for ty, shares in plan.routing.items():
            if ty not in present:
                continue
            for s in shares:
                if s.fraction > 0:
                    routed.setdefault(s.option.key, []).append(f"{ty} {s.fraction:.2f}")
        for r in rows:
            r["trace"] = name
            r["types_routed"] = "; ".join(routed.get(r["option"], []))
        st["a"][name] = {"requests": len(reqs), "rows": rows, "types": present}
        write(st)


def gpus_per_replica(key: str) -> int:
    """GPUs of one replica from an option key, model/gpu/tpN/ppN[/mbtB]."""
    tp, pp = key.split("/")[2:4]
    return int(tp.removeprefix("tp")) * int(pp.removeprefix("pp"))


def a_tables(st: dict[str, Any]) -> list[str]:
    L: list[str] = []
    for name, d in st["a"].items():
        rows = d["rows"]
        L += [
            f"### {name} trace ({d['requests']:,} requests; types {', '.join(d['types'])})",
            "",
            "| deployment option | types routed (plan share) | requests | MILP replicas / GPUs | "
            + " | ".join(POLICIES)
            + " |",
            "|---|---|---:|---:|" + "---:|" * len(POLICIES),
        ]
        by_opt: dict[str, dict[str, Any]] = {}
        for r in rows:
            by_opt.setdefault(r["option"], {})[r["policy"]] = r
        tot_milp = 0
        tot = {p: 0 for p in POLICIES}
        bad = {p: False for p in POLICIES}
        for opt, per in by_opt.items():
            any_r = next(iter(per.values()))
            g = gpus_per_replica(opt)
            tot_milp += any_r["planned_replicas"] * g
            cells = []
            for p in POLICIES:
                r = per.get(p)
                if r is None:
                    cells.append("–")
                    bad[p] = True
                elif r["replicas"] is None:
                    cells.append(f"unreachable (ceiling {r['ceiling']:.4f})")
                    bad[p] = True
                else:
                    ratio = r["replicas"] / any_r["planned_replicas"]
                    extra = f", h={r['headroom']}" if r.get("headroom") is not None else ""
                    cells.append(f"{r['replicas']} / {r['gpus']} (×{ratio:.2f}{extra})")
                    tot[p] += r["gpus"]
            L.append(
                f"| `{opt}` | {any_r['types_routed']} | {any_r['requests']:,} | "
                f"{any_r['planned_replicas']} / {any_r['planned_replicas'] * g} | " + " | ".join(cells) + " |"
            )
        L.append(
            f"| **total GPUs** | | | **{tot_milp}** | "
            + " | ".join(("≥" if bad[p] else "") + f"**{tot[p]}** (×{tot[p] / tot_milp:.2f})" for p in POLICIES)
            + " |"
        )
        L.append("")
        st.setdefault("a_totals", {})[name] = {"milp": tot_milp, **{p: (None if bad[p] else tot[p]) for p in POLICIES}}
    return L


def plot_a(st: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tots = st.get("a_totals", {})
    if not tots:
        return
    fig, axes = plt.subplots(1, len(tots), figsize=(5.5 * len(tots), 4), squeeze=False)
    labels = ["MILP", *POLICIES]
    colors = ["0.4", "C0", "C1", "C2", "C3", "C4"]
    for ax, (name, t) in zip(axes[0], tots.items(), strict=True):
        vals = [t["milp"], *[t[p] for p in POLICIES]]
        xs = np.arange(len(labels))
        for x, v, c in zip(xs, vals, colors, strict=True):
            if v is None:
                ax.text(x, 0.1, "unreach.", rotation=90, ha="center", va="bottom", fontsize=8)
            else:
                ax.bar(x, v, color=c)
                ax.text(x, v, str(v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(xs, labels, rotation=30, ha="right")
        ax.set_ylabel("GPUs")
        ax.set_title(f"Azure {name} trace: GPUs for {TARGET:.0%} attainment")
    fig.tight_layout()
    fig.savefig(RESULTS / "sim_gpus.png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- (b)
def part_b(inst: Any, mapper: Any, st: dict[str, Any]) -> dict[float, tuple[Any, Any, Any]]:
    reqs = Requests.collect(feed_of(Trace([CONV, CODE]), mapper))
    log(f"(b) merged trace: {len(reqs):,} requests over {reqs.span:,.0f} s")
    plans = {}
    for u in UTILS:
        iu = inst.model_copy(update={"max_utilization": u})
        tab = build_option_table(iu)
        plan = solve(iu, "milp", table=tab)
        plans[u] = (iu, tab, plan)
        row: dict[str, Any] = {"u": u, "status": plan.status, "requests": len(reqs)}
        if not plan.has_solution:
            st["b"].append(row)
            continue
        dep = [d for d in plan.deployments if d.replicas > 0]
        sim = simulator_for_plan(iu, plan, SimConfig(policy="jsq"))
        t = time.perf_counter()
        sim.run(reqs.feed())
        s = sim.summary()
        row.update(
            objective=round(plan.objective, 2),
            gpus=sum(d.replicas * d.option.gpus_per_replica for d in dep),
            deployments=", ".join(f"{d.option.key}×{d.replicas}" for d in dep),
            attainment=s["attainment"],
            types={
                k: {c: v[c] for c in ("attainment", "ttft_attainment", "tpot_attainment", "e2e_attainment")}
                for k, v in s["types"].items()
            },
            utilization={p["pool"]: p["utilization"] for p in s["pools"]},
            wall_s=round(time.perf_counter() - t, 2),
        )
        st["b"].append(row)
        log(f"(b) u={u}: ${row['objective']} {row['gpus']} GPUs, attainment {row['attainment']} ({row['deployments']})")
        write(st)
    return plans


def sustain(inst: Any, tab: Any, opt: Any, ti: int, q: Any, lengths: str, pool: dict[int, tuple[Any, Any]]) -> dict:
    row = tab.row(opt, q.id)
    thr = row.throughput_rps
    out: dict[str, Any] = {"probes": []}
    best = None
    for m in MULTS:
        rate = m * thr
        n = int(min(6000, max(1500, rate * 1200)))
        if lengths == "mean":
            gen = synthetic_trace(
                n,
                rate=rate,
                seed=7,
                input_mean=q.input_tokens,
                input_sigma=0.0,
                output_mean=q.output_tokens,
                output_sigma=0.0,
            )
            feed = ((k, ti, r.arrival_s, r.input_tokens, r.output_tokens) for k, r in enumerate(gen))
        else:
            inp, outp = pool[ti]
            rng = np.random.default_rng(11)
            arr = np.cumsum(rng.exponential(1 / rate, n))
            pick = rng.integers(0, len(inp), n)
            feed = (
                (k, ti, float(a), int(inp[j]), int(outp[j])) for k, (a, j) in enumerate(zip(arr, pick, strict=False))
            )
        sim = simulator_for_option(inst, opt, 1, SimConfig(policy="jsq"), [ti], row.batch)
        sim.run(feed)
        s = sim.summary()
        a = s["attainment"] or 0.0
        out["probes"].append((m, a))
        if a >= TARGET:
            best = m
        else:
            break
    out["best_mult"] = best
    out["thr"] = thr
    return out


def part_b_capacity(
    plans: dict[float, tuple[Any, Any, Any]], reqs_by_type: dict[int, tuple[Any, Any]], st: dict[str, Any]
) -> None:
    seen = set()
    for u, (iu, tab, plan) in plans.items():
        if not plan.has_solution:
            continue
        qs = {q.id: (i, q) for i, q in enumerate(iu.query_types)}
        for ty, shares in plan.routing.items():
            for s in shares:
                if s.fraction <= 0:
                    continue
                if (s.option.key, ty) in seen and u != max(UTILS):
                    pass
                ti, q = qs[ty]
                row = tab.row(s.option, ty)
                r_mean = sustain(iu, tab, s.option, ti, q, "mean", reqs_by_type)
                r_tr = sustain(iu, tab, s.option, ti, q, "trace", reqs_by_type)
                seen.add((s.option.key, ty))
                rec = {
                    "u": u,
                    "option": s.option.key,
                    "type": ty,
                    "batch": row.batch,
                    "table_thr_rps": round(row.throughput_rps, 4),
                    "planned_rate_rps": round(u * row.throughput_rps, 4),
                    "sim_mean_len_rps": None
                    if r_mean["best_mult"] is None
                    else round(r_mean["best_mult"] * row.throughput_rps, 4),
                    "ratio_mean_len": r_mean["best_mult"],
                    "sim_trace_len_rps": None
                    if r_tr["best_mult"] is None
                    else round(r_tr["best_mult"] * row.throughput_rps, 4),
                    "ratio_trace_len": r_tr["best_mult"],
                    "probes_mean": r_mean["probes"],
                    "probes_trace": r_tr["probes"],
                }
                st["cap"].append(rec)
                log(
                    f"(b) capacity u={u} {s.option.key} {ty}: table {row.throughput_rps:.3f} rps, "
                    f"sim mean-len ×{r_mean['best_mult']}, trace-len ×{r_tr['best_mult']}"
                )
                write(st)


# ----------------------------------------------------------------------------- output
def write(st: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    L = [
        "# Simulated capacity vs the planner's model (azure-2023)",
        "",
        f"Machine: nproc {os.cpu_count()} · Python {platform.python_version()} · {platform.platform()}",
        "",
        f"Command: `{st['command']}` (elapsed {time.perf_counter() - T0:.0f} s when written). "
        f"Target attainment {TARGET}; seed 0; staleness 0 (live load).",
        "",
        "## (a) GPUs needed at 99% attainment per policy vs the MILP plan",
        "",
        f"MILP plan for `instances/azure-2023.yaml` (max_utilization {st.get('u0')}): {st.get('plan0', '')}. "
        "`scale_plan` splits each trace by the plan's routing (smooth weighted round-robin on each type's shares) "
        "and finds, per deployment and policy, the fewest replicas whose sub-trace reaches 0.99 attainment. "
        "Cells: replicas / GPUs (× simulated/MILP replicas; h = Aladdin's packing headroom at the answer).",
        "",
    ]
    if st["a"]:
        L += a_tables(st)
        L += ["![GPUs per policy vs MILP](sim_gpus.png)", ""]
    if st["b"]:
        L += [
            "## (b) max_utilization sweep: MILP plan at u, simulated on conv + code merged (jsq)",
            "",
            "Per type: attainment (ttft / tpot / e2e attainment).",
            "",
            "| u | $ objective | GPUs | deployments | overall | " + " | ".join(st["type_ids"]) + " |",
            "|---:|---:|---:|---|---:|" + "---|" * len(st["type_ids"]),
        ]
        for r in st["b"]:
            if "attainment" not in r:
                L.append(f"| {r['u']} | {r['status']} | | | | " + " | ".join("" for _ in st["type_ids"]) + " |")
                continue
            cells = []
            for t in st["type_ids"]:
                d = r["types"].get(t)
                if d is None:
                    cells.append("–")
                else:
                    mark = "**" if (d["attainment"] or 0) < TARGET else ""
                    cells.append(
                        f"{mark}{fmt(d['attainment'])}{mark} ({fmt(d['ttft_attainment'], 3)} / "
                        f"{fmt(d['tpot_attainment'], 3)} / {fmt(d['e2e_attainment'], 3)})"
                    )
            L.append(
                f"| {r['u']} | {r['objective']} | {r['gpus']} | {r['deployments']} | {fmt(r['attainment'])} | "
                + " | ".join(cells)
                + " |"
            )
        L += ["", "Bold: below 0.99.", ""]
        if st.get("finding"):
            L += [st["finding"], ""]
    if st["cap"]:
        L += [
            "### Table throughput vs the simulated sustainable rate of one replica",
            "",
            "For every (option, type) a plan routes traffic to: one replica (max_num_seqs = the table's batch), "
            "a Poisson stream of that type only at m × the table's `throughput_rps` for "
            f"m in {MULTS} (stopping at the first m below 0.99), jsq; the highest passing m is the ratio "
            "simulated / planned. Two length models: every request at the type's mean input/output (the "
            "planner's own assumption) and lengths resampled from the type's requests in the Azure trace. "
            "`planned rate` = u × throughput_rps, the load the MILP puts on a replica at most.",
            "",
            "| u | option | type | batch | table throughput rps | planned rate rps (u×) | sim rate, mean lengths (ratio) | sim rate, trace lengths (ratio) |",
            "|---:|---|---|---:|---:|---:|---:|---:|",
        ]
        for c in st["cap"]:

            def cell(rate: Any, ratio: Any) -> str:
                return (
                    f"< {MULTS[0] * c['table_thr_rps']:.3f} (< ×{MULTS[0]})" if ratio is None else f"{rate} (×{ratio})"
                )

            L.append(
                f"| {c['u']} | `{c['option']}` | {c['type']} | {c['batch']} | {c['table_thr_rps']} | "
                f"{c['planned_rate_rps']} | {cell(c['sim_mean_len_rps'], c['ratio_mean_len'])} | "
                f"{cell(c['sim_trace_len_rps'], c['ratio_trace_len'])} |"
            )
        L.append("")
        if st.get("cap_note"):
            L += [st["cap_note"], ""]
    (RESULTS / "sim_study.md").write_text("\n".join(L) + "\n")
    with (RESULTS / "sim_study.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "section",
                "trace_or_u",
                "option",
                "policy_or_type",
                "requests",
                "milp_replicas",
                "replicas",
                "gpus",
                "attainment",
                "ratio",
                "extra",
            ]
        )
        for name, d in st["a"].items():
            for r in d["rows"]:
                w.writerow(
                    [
                        "a_scale",
                        name,
                        r["option"],
                        r["policy"],
                        r["requests"],
                        r["planned_replicas"],
                        r["replicas"],
                        r["gpus"],
                        r["attainment"],
                        None if r["replicas"] is None else round(r["replicas"] / r["planned_replicas"], 4),
                        json.dumps(
                            {
                                "ceiling": r["ceiling"],
                                "headroom": r.get("headroom"),
                                "types_routed": r["types_routed"],
                                "reason": r.get("reason", ""),
                            }
                        ),
                    ]
                )
        for r in st["b"]:
            if "attainment" not in r:
                continue
            w.writerow(
                [
                    "b_util",
                    r["u"],
                    r["deployments"],
                    "all",
                    r["requests"],
                    None,
                    None,
                    r["gpus"],
                    r["attainment"],
                    None,
                    json.dumps({"objective": r["objective"], "types": r["types"]}),
                ]
            )
        for c in st["cap"]:
            w.writerow(
                [
                    "b_capacity",
                    c["u"],
                    c["option"],
                    c["type"],
                    None,
                    None,
                    1,
                    None,
                    None,
                    c["ratio_trace_len"],
                    json.dumps({k: c[k] for k in ("table_thr_rps", "planned_rate_rps", "ratio_mean_len", "batch")}),
                ]
            )


def main() -> None:
    from planner.loader import load_instance as _li  # noqa: F401

    st: dict[str, Any] = {"a": {}, "b": [], "cap": [], "command": " ".join(["python", *sys.argv])}
    parts = sys.argv[1] if len(sys.argv) > 1 else "ab"
    inst = load_instance(ROOT / "instances" / "azure-2023.yaml")
    st["type_ids"] = [q.id for q in inst.query_types]
    st["u0"] = inst.max_utilization
    mapper = TypeMapper.from_file(ROOT / "instances" / "azure-2023.traces.yml", inst)
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table)
    st["plan0"] = (
        ", ".join(f"`{d.option.key}`×{d.replicas}" for d in plan.deployments if d.replicas > 0)
        + f", objective ${plan.objective:.2f}"
    )
    log(f"plan: {st['plan0']}")
    if "a" in parts:
        part_a(inst, table, plan, mapper, st)
        write(st)
        plot_a(st)
        write(st)
    if "b" in parts:
        plans = part_b(inst, mapper, st)
        ok = [r for r in st["b"] if "types" in r and all((d["attainment"] or 0) >= TARGET for d in r["types"].values())]
        if ok:
            best = max(ok, key=lambda r: r["u"])
            st["finding"] = (
                f"**Largest max_utilization at which every type reaches {TARGET}: u = {best['u']}** "
                f"(${best['objective']}, {best['gpus']} GPUs)."
            )
            fails = [r for r in st["b"] if "types" in r and r["u"] > best["u"]]
        else:
            st["finding"] = f"**No u in {UTILS} gives every type {TARGET}.**"
            fails = [r for r in st["b"] if "types" in r]
        for r in fails:
            worst_t, worst = min(r["types"].items(), key=lambda kv: kv[1]["attainment"] or 0)
            comp = min(("ttft", "tpot", "e2e"), key=lambda c: worst[f"{c}_attainment"] or 0)
            if (worst["attainment"] or 0) < TARGET:
                st["finding"] += (
                    f" At u = {r['u']} the limiting type is {worst_t} ({worst['attainment']}), "
                    f"limited by {comp} ({comp} attainment {worst[f'{comp}_attainment']})."
                )
        write(st)
        reqs = Requests.collect(feed_of(Trace([CONV, CODE]), mapper))
        by_type = {t: (reqs.inp[reqs.ty == t], reqs.out[reqs.ty == t]) for t in range(len(inst.query_types))}
        part_b_capacity(plans, by_type, st)
        rat = [c["ratio_trace_len"] for c in st["cap"] if c["ratio_trace_len"] is not None]
        ratm = [c["ratio_mean_len"] for c in st["cap"] if c["ratio_mean_len"] is not None]
        if rat:
            st["cap_note"] = (
                f"Simulated/planned throughput: mean lengths {min(ratm, default=math.nan)}–{max(ratm, default=math.nan)}, "
                f"trace lengths {min(rat)}–{max(rat)} (scan resolution 0.125 up to 1.5, then 1.75, 2, 2.5, 3)."
            )
        write(st)
    log("done")


if __name__ == "__main__":
    main()
