"""A synthetic week replayed for a 200-replica plan, pool by pool, with 1 and 2 local workers.

    python benchmarks/week_replay.py [--requests 50000000] [--workers 1,2] [--policy round-robin]

The trace: ``--requests`` Poisson arrivals at 82.7 req/s (50 M requests = 7 days) with Azure
conv's mean lengths (lognormal; :func:`planner.sim.traces.synthetic_trace`), all of azure-2023's
``conv-long`` type, generated as it is read (never materialized). The plan: 20 pools of 10
replicas each (7-8B models on every GPU tier of azure-2023, TP 1 and 2), each taking 1/20 of the
traffic (0.41 req/s per replica). The replay (:func:`planner.sim.shard.replay_sharded`) streams
the trace once into per-pool shards on disk, replays the 20 pools as tasks, and merges.

For each worker count: wall time (sharding and replay apart), the driver's peak RSS and the
largest worker's, and the merged attainment (identical across worker counts). Then the projection
for a cluster: each pool's measured task seconds plus Ray's measured overhead per task
(:func:`planner.executor.overhead` on a local Ray cluster, when Ray is installed), scheduled
longest-first on W workers (:func:`planner.sim.shard.projection`): the week's wall time on W
Ray workers is bounded below by its longest pool.

Writes benchmarks/results/week_replay.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner import executor  # noqa: E402
from planner.loader import load_instance  # noqa: E402
from planner.plan import Plan  # noqa: E402
from planner.sim.engine import SimConfig  # noqa: E402
from planner.sim.shard import projection, replay_sharded  # noqa: E402
from planner.sim.traces import synthetic_trace  # noqa: E402

RATE = 82.7  # req/s: 50 M requests in 7 days
MODELS = ("llama-3.1-8b", "qwen2.5-7b", "mistral-7b")
GPUS = ("l4", "a10g", "l40s", "a100-80gb", "h100-80gb", "h200")


def week_plan(inst: Any, pools: int = 20, replicas: int = 10) -> Plan:
    opts = [{"model": m, "gpu": g, "tp": 1, "pp": 1} for g in GPUS for m in MODELS]
    opts += [{"model": m, "gpu": "a100-80gb", "tp": 2, "pp": 1} for m in MODELS]
    opts = opts[:pools]
    t = inst.query_types[0].id
    return Plan.model_validate(
        {
            "instance": inst.name,
            "method": "manual",
            "status": "feasible",
            "deployments": [{**o, "replicas": replicas, "gpus": replicas * o["tp"]} for o in opts],
            "routing": {t: [{**o, "fraction": 1.0 / len(opts)} for o in opts]},
        }
    )


def feed(n: int, seed: int) -> Any:
    return ((k, 0, r.arrival_s, r.input_tokens, r.output_tokens) for k, r in enumerate(synthetic_trace(n, RATE, seed)))


def one(args: argparse.Namespace, w: int) -> dict[str, Any]:
    """One worker count, in its own process (so its peak RSS is its own)."""
    base = load_instance(ROOT / "instances" / "azure-2023.yaml")
    inst = base.model_copy(update={"query_types": [q for q in base.query_types if q.id == "conv-long"]})
    plan = week_plan(inst)
    config = SimConfig(policy=args.policy, seed=args.seed)
    ex = executor.InProcess() if w == 1 else executor.LocalPool(w)
    t0 = time.perf_counter()
    merged = replay_sharded(inst, plan, feed(args.requests, args.seed), config, ex)
    wall = time.perf_counter() - t0
    s = merged.summary()
    s.pop("placement_us", None)
    return {
        "workers": w,
        "executor": ex.describe(),
        "wall_s": wall,
        "shard_s": merged.shard_s,
        "replay_s": merged.replay_s,
        "task_s": [r.wall_s for r in merged.results],
        "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_mb": max(r.peak_rss_mb for r in merged.results),
        "replicas": sum(d.replicas for d in plan.deployments),
        "pools": len(plan.deployments),
        "summary": json.dumps(s, sort_keys=True),
        "requests": s["requests"],
        "days": s["simulated_s"] / 86400,
        "attainment": s["attainment"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=50_000_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--policy", default="round-robin")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one worker count, print JSON
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "week_replay.md")
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args, args.one)))
        return
    runs = []
    for w in (int(x) for x in args.workers.split(",")):
        cmd = [sys.executable, __file__, "--requests", str(args.requests), "--policy", args.policy]
        cmd += ["--seed", str(args.seed), "--one", str(w)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        runs.append(r)
        print(f"{w} workers: {r['wall_s']:.0f} s", flush=True)
    rows = [
        f"| {r['workers']} | {r['executor']} | {r['wall_s']:,.0f} | {r['shard_s']:,.0f} | {r['replay_s']:,.0f} |"
        f" {sum(r['task_s']):,.0f} | {r['driver_rss_mb']:,.0f} | {r['worker_rss_mb']:,.0f} | {r['requests']:,} |"
        f" {r['days']:.2f} | {r['attainment']} |"
        for r in runs
    ]
    ray_overhead = None
    try:
        rx = executor.RayExecutor("auto", 2)
        ray_overhead = executor.overhead(rx, 400)
    except RuntimeError as exc:
        print("no Ray:", exc)
    last = runs[-1]
    pool_s = sorted(last["task_s"], reverse=True)
    lines = [
        "# A synthetic week replayed pool by pool",
        "",
        f"`python benchmarks/week_replay.py --requests {args.requests} --workers {args.workers} --policy {args.policy}`"
        " (its docstring). This machine: 2 cores; each worker count in its own process.",
        "",
        f"Plan: {last['pools']} pools × 10 = {last['replicas']} replicas; trace: {args.requests:,} requests at "
        f"{RATE} req/s ({args.requests / RATE / 86400:.2f} days), policy {args.policy}.",
        "",
        "| workers | executor | wall s | sharding s | replay s | task s (sum) | driver peak RSS MB |"
        " largest worker peak RSS MB | requests | simulated days | attainment |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Merged summaries identical across worker counts (placement timings aside): "
        f"{len({r['summary'] for r in runs}) == 1}.",
        "",
        f"Per-pool task seconds: longest {pool_s[0]:,.1f}, median {pool_s[len(pool_s) // 2]:,.1f}, "
        f"shortest {pool_s[-1]:,.1f}.",
        "",
    ]
    if ray_overhead is not None:
        tasks = [SimpleNamespace(wall_s=s) for s in last["task_s"]]
        lines += [
            f"Ray's overhead per task (no-op tasks on a local 2-CPU cluster): {ray_overhead * 1e3:.2f} ms.",
            "",
            "| Ray workers | projected replay s (pools' task seconds + overhead, longest first) | + sharding s |",
            "|---:|---:|---:|",
        ]
        for w in (1, 2, 4, 8, 16, 20, 40):
            p = projection(tasks, w, ray_overhead)  # type: ignore[arg-type]
            lines.append(f"| {w} | {p:,.0f} | {p + last['shard_s']:,.0f} |")
        lines += [
            "",
            "With 20 pools the projection stops falling at 20 workers (the longest pool); a plan with",
            "more pools spreads further. The sharding pass (one read of the trace) is serial.",
        ]
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
