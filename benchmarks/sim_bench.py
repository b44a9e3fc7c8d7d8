# ruff: noqa: E501  (markdown table rows and findings are long lines by nature)
"""Simulator speed: (a) the one-hour Azure conv trace through the azure-2023 MILP plan per policy,
(b) a 1,000,000-request synthetic stream against one pool (wall time, RSS flat with length),
(c) placement decision time with 1,000 replicas per policy.

    taskset -c 0 python benchmarks/sim_bench.py            # full run
    python benchmarks/sim_bench.py --quick                 # smaller sizes (smoke test)

Writes benchmarks/results/sim_bench.md and sim_bench.json (written after each part).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CONV = DATA / "azure" / "AzureLLMInferenceTrace_conv.csv"

from planner.loader import load_instance  # noqa: E402
from planner.options import build_option_table  # noqa: E402
from planner.sim.cluster import parse_option, simulator_for_option, simulator_for_plan  # noqa: E402
from planner.sim.engine import SimConfig  # noqa: E402
from planner.sim.mapping import TypeMapper  # noqa: E402
from planner.sim.policies import policy_names  # noqa: E402
from planner.sim.replay import feed_of  # noqa: E402
from planner.sim.scale import Requests, min_replicas  # noqa: E402
from planner.sim.traces import Trace, synthetic_trace  # noqa: E402
from planner.solvers import solve  # noqa: E402

POLICIES = policy_names()  # every registered placement policy, in registration order


def vmrss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine() -> dict[str, Any]:
    aff = None
    with contextlib.suppress(AttributeError):
        aff = sorted(os.sched_getaffinity(0))
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity": aff,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": " ".join(["python", *sys.argv]),
    }


def write(res: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sim_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "sim_bench.md").write_text(render(res))


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    L = [
        "# Simulator speed benchmark",
        "",
        f"Machine: {m['cpu']} · nproc {m['nproc']} · pinned to CPUs {m['affinity']} · Python {m['python']} · {m['platform']}",
        "",
        f"Command: `{m['command']}` (run as `taskset -c 0 python benchmarks/sim_bench.py` when taskset exists).",
        "Wall times are `Simulator.run` only (simulator construction and summary excluded) unless stated.",
        "",
    ]
    a = res.get("a")
    if a:
        L += [
            "## (a) One-hour Azure conv trace through the azure-2023 MILP plan",
            "",
            f"Plan: {a['plan']} · {a['requests']:,} requests over {a['simulated_s']:,.0f} s of trace. "
            f"Feed: the conv trace pre-read into arrays (`Requests.feed()`), so parsing is excluded; "
            f"the same run reading the CSV inside the feed (`feed_of(Trace, mapper)`, jsq) took "
            f"{a['jsq_with_parse_s']:.2f} s. Target ≤ 10 s per run.",
            "",
            "| policy | runs | wall s (median) | events | simulated req/s | events/s | attainment | placement p50/p99 µs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in a["rows"]:
            L.append(
                f"| {r['policy']} | {r['runs']} | {r['wall_s']:.3f} | {r['events']:,} | {r['req_per_s']:,.0f} | "
                f"{r['events_per_s']:,.0f} | {r['attainment']} | {r['placement_p50_us']}/{r['placement_p99_us']} |"
            )
        L.append("")
    b = res.get("b")
    if b:
        L += [
            f"## (b) {b['n']:,}-request synthetic stream, one pool",
            "",
            f"Option `{b['option']}` × {b['replicas']} replicas (pilot: {b['pilot_n']:,} requests at {b['rate']} req/s, "
            f"jsq, fewest replicas for 0.99 = {b['pilot_min']} → ×1.1 margin), every request typed `{b['type']}`, "
            f"policy jsq, `synthetic_trace({b['n']}, rate={b['rate']}, seed=0)` streamed into `Simulator.run` "
            "(never materialized). Target ≤ 300 s.",
            "",
            f"- wall time: **{b['wall_s']:.1f} s** ({b['n'] / b['wall_s']:,.0f} req/s simulated, "
            f"{b['events']:,} events, {b['simulated_s']:,.0f} s simulated)",
            f"- attainment {b['attainment']} · utilization {b['utilization']} · placement p50/p99 "
            f"{b['placement_p50_us']}/{b['placement_p99_us']} µs",
            "",
            "| requests fed | VmRSS MB | ru_maxrss MB | wall s so far |",
            "|---:|---:|---:|---:|",
        ]
        for p in b["rss"]:
            L.append(f"| {p['requests']:,} | {p['vmrss_mb']:.1f} | {p['maxrss_mb']:.1f} | {p['wall_s']:.1f} |")
        L += ["", b["rss_note"], ""]
    c = res.get("c")
    if c:
        L += [
            f"## (c) Placement decision time, {c['replicas']:,} replicas of `{c['option']}`",
            "",
            f"{c['n']:,} requests (type `{c['type']}`) at {c['rate']:.0f} req/s = {c['load_target']:.0%} of "
            f"{c['replicas']} × table throughput {c['table_thr']:.3f} req/s. Times are measured by the simulator "
            "around each `policy.choose` (`summary['placement_us']`). Target p99 ≤ 1000 µs.",
            "",
            "| policy | decisions | p50 µs | p99 µs | max µs | run wall s | utilization | attainment |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in c["rows"]:
            L.append(
                f"| {r['policy']} | {r['decisions']:,} | {r['p50']} | {r['p99']} | {r['max']} | {r['wall_s']:.1f} | "
                f"{r['utilization']} | {r['attainment']} |"
            )
        L.append("")
        if c.get("note"):
            L += [c["note"], ""]
    L += ["## Findings", "", *FINDINGS, ""]
    return "\n".join(L) + "\n"


FINDINGS = [
    "1. Fixed after the first run: memory grew with trace length for every policy but aladdin (finished requests stayed on a re-prediction heap only Aladdin drains; +468 MB from 100k to 1M requests). With the fix the 1M stream adds 3.6 MB after the first 100k (table above).",
    "2. Fixed after the first run: multi-second placement maxima were cyclic-GC pauses inside the timed window; the simulator now pauses the cyclic collector during a run (its loop makes no cycles). The remaining maxima of 2-8 ms are single outliers (OS scheduling); p99 is < 100 µs for every policy.",
    "3. Part (c)'s attainment (~0.93 for every policy, even at 62% utilization) is most likely the lognormal length tail against conv-short's SLOs (e2e 30 s with outputs up to 2,048 tokens on an L4), not queueing: all five policies agree to 3 decimals.",
]


def part_a(inst: Any, table: Any, res: dict[str, Any], quick: bool) -> None:
    plan = solve(inst, "milp", table=table)
    mapper = TypeMapper.from_file(ROOT / "instances" / "azure-2023.traces.yml", inst)
    reqs = Requests.collect(feed_of(Trace([CONV]), mapper))
    rows = []
    for p in POLICIES:
        runs = 3 if p == "jsq" and not quick else 1
        walls, s, ev = [], None, 0
        for _ in range(runs):
            sim = simulator_for_plan(inst, plan, SimConfig(policy=p))
            t = time.perf_counter()
            sim.run(reqs.feed())
            walls.append(time.perf_counter() - t)
            s, ev = sim.summary(), sim.n_events
        w = statistics.median(walls)
        rows.append(
            {
                "policy": p,
                "runs": runs,
                "walls_s": [round(x, 4) for x in walls],
                "wall_s": w,
                "events": ev,
                "req_per_s": len(reqs) / w,
                "events_per_s": ev / w,
                "attainment": s["attainment"],
                "types": {k: v["attainment"] for k, v in s["types"].items()},
                "placement_p50_us": s["placement_us"]["p50"],
                "placement_p99_us": s["placement_us"]["p99"],
                "simulated_s": s["simulated_s"],
            }
        )
        print(f"[a] {p}: {w:.3f} s, {ev} events, attainment {s['attainment']}", flush=True)
    sim = simulator_for_plan(inst, plan, SimConfig(policy="jsq"))
    t = time.perf_counter()
    sim.run(feed_of(Trace([CONV]), mapper))
    with_parse = time.perf_counter() - t
    res["a"] = {
        "plan": ", ".join(f"{d.option.key}×{d.replicas}" for d in plan.deployments if d.replicas > 0)
        + f" (objective ${plan.objective:.2f})",
        "requests": len(reqs),
        "simulated_s": rows[0]["simulated_s"],
        "jsq_with_parse_s": with_parse,
        "rows": rows,
    }


def part_b(inst: Any, table: Any, res: dict[str, Any], quick: bool) -> None:
    opt = parse_option("llama-3.1-8b/h100-80gb/1/1")
    tid = "conv-long"
    ti = [q.id for q in inst.query_types].index(tid)
    rate = 200.0
    n = 100_000 if quick else 1_000_000
    pilot_n = 20_000
    pilot = Requests.collect(
        (k, ti, r.arrival_s, r.input_tokens, r.output_tokens)
        for k, r in enumerate(synthetic_trace(pilot_n, rate=rate, seed=1))
    )
    t = time.perf_counter()
    sr = min_replicas(inst, opt, pilot, "jsq", 0.99, table)
    print(f"[b] pilot: min replicas {sr.replicas} (probes {sr.probes}) in {time.perf_counter() - t:.1f} s", flush=True)
    base = sr.replicas or sr.fluid_estimate
    replicas = max(base + 1, math.ceil(base * 1.1))
    sim = simulator_for_option(inst, opt, replicas, SimConfig(policy="jsq"), [ti])
    marks = {10_000, 100_000, 250_000, 500_000, 750_000, n}
    rss: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def feed() -> Any:
        for k, r in enumerate(synthetic_trace(n, rate=rate, seed=0)):
            if k in marks:
                rss.append(
                    {
                        "requests": k,
                        "vmrss_mb": vmrss_mb(),
                        "maxrss_mb": maxrss_mb(),
                        "wall_s": time.perf_counter() - t0,
                    }
                )
                print(f"[b] {k:,} fed: VmRSS {rss[-1]['vmrss_mb']:.1f} MB, {rss[-1]['wall_s']:.1f} s", flush=True)
            yield k, ti, r.arrival_s, r.input_tokens, r.output_tokens

    rss.append({"requests": 0, "vmrss_mb": vmrss_mb(), "maxrss_mb": maxrss_mb(), "wall_s": 0.0})
    sim.run(feed())
    wall = time.perf_counter() - t0
    rss.append({"requests": n, "vmrss_mb": vmrss_mb(), "maxrss_mb": maxrss_mb(), "wall_s": wall})
    s = sim.summary()
    pts = {p["requests"]: p for p in rss}
    lo = pts.get(100_000, rss[1])
    note = (
        f"VmRSS after 100,000 requests: {lo['vmrss_mb']:.1f} MB; at the end ({n:,}): {rss[-1]['vmrss_mb']:.1f} MB "
        f"(Δ {rss[-1]['vmrss_mb'] - lo['vmrss_mb']:+.1f} MB); peak ru_maxrss {rss[-1]['maxrss_mb']:.1f} MB "
        "(the process peak, which includes the pilot and building the option table before this run)."
    )
    res["b"] = {
        "option": opt.key,
        "type": tid,
        "rate": rate,
        "n": n,
        "pilot_n": pilot_n,
        "pilot_min": sr.replicas,
        "pilot_probes": sr.probes,
        "replicas": replicas,
        "wall_s": wall,
        "events": sim.n_events,
        "simulated_s": s["simulated_s"],
        "attainment": s["attainment"],
        "utilization": s["pools"][0]["utilization"],
        "placement_p50_us": s["placement_us"]["p50"],
        "placement_p99_us": s["placement_us"]["p99"],
        "rss": rss,
        "rss_note": note,
    }
    print(f"[b] {n:,} requests in {wall:.1f} s, attainment {s['attainment']}", flush=True)


def part_c(inst: Any, table: Any, res: dict[str, Any], n: int, budget_s: float) -> None:
    opt = parse_option("llama-3.1-8b/l4/1/1")
    tid = "conv-short"
    ti = [q.id for q in inst.query_types].index(tid)
    row = table.row(opt, tid)
    thr = row.throughput_rps
    replicas = 1000
    load = 0.6
    rate = load * replicas * thr
    reqs = Requests.collect(
        (k, ti, r.arrival_s, r.input_tokens, r.output_tokens)
        for k, r in enumerate(synthetic_trace(n, rate=rate, seed=0, input_mean=460, output_mean=158, max_input=1024))
    )
    rows = []
    note = ""
    for p in POLICIES:
        sim = simulator_for_option(inst, opt, replicas, SimConfig(policy=p), [ti], row.batch)
        t = time.perf_counter()
        sim.run(reqs.feed())
        w = time.perf_counter() - t
        s = sim.summary()
        pl = s["placement_us"]
        rows.append(
            {
                "policy": p,
                "decisions": pl["decisions"],
                "p50": pl["p50"],
                "p99": pl["p99"],
                "max": pl["max"],
                "wall_s": w,
                "utilization": s["pools"][0]["utilization"],
                "attainment": s["attainment"],
            }
        )
        print(f"[c] {p}: p50 {pl['p50']} p99 {pl['p99']} max {pl['max']} µs; run {w:.1f} s", flush=True)
        res["c"] = {
            "option": opt.key,
            "type": tid,
            "replicas": replicas,
            "n": n,
            "rate": rate,
            "load_target": load,
            "table_thr": thr,
            "rows": rows,
            "note": note,
        }
        write(res)
    res["c"]["note"] = (
        "Synthetic lengths for conv-short: lognormal means 460 in / 158 out (the type's means), inputs ≤ 1024. "
        "The warm-up (first requests on an idle 1,000-worker pool) is included in the percentiles."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--c-requests", type=int, default=100_000)
    ap.add_argument("--render-only", action="store_true", help="rewrite the md from the existing json")
    args = ap.parse_args()
    if args.render_only:
        write(json.loads((RESULTS / "sim_bench.json").read_text()))
        return
    res: dict[str, Any] = {"machine": machine()}
    old = RESULTS / "sim_bench.json"
    if args.parts != "abc" and old.exists():  # keep the other parts of an earlier run
        prev = json.loads(old.read_text())
        for k in "abc":
            if k not in args.parts and k in prev:
                res[k] = prev[k]
    inst = load_instance(ROOT / "instances" / "azure-2023.yaml")
    table = build_option_table(inst)
    if "a" in args.parts:
        part_a(inst, table, res, args.quick)
        write(res)
    if "b" in args.parts:
        part_b(inst, table, res, args.quick)
        write(res)
    if "c" in args.parts:
        part_c(inst, table, res, 20_000 if args.quick else args.c_requests, 600)
        write(res)
    print((RESULTS / "sim_bench.md").read_text())


if __name__ == "__main__":
    main()
