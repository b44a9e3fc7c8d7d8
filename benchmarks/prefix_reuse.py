"""Prefix reuse on the Mooncake conversation trace (issue: prefix reuse).

    python benchmarks/prefix_reuse.py [--runs 1200x2] [--types chat-8k,long-32k]

1. The measured prefix-hit ratio per query type of instances/mooncake-2025.yaml (its trace
   mapping), token-weighted, for an ideal LRU cache per type of unbounded, 10M, 2M and 500k tokens
   (:func:`planner.review.demand.measure_prefix`, what ``planner demand --prefix-cache`` prints).
2. Replicas needed at the instance's attainment target (``planner scale``'s search,
   :func:`planner.sim.scale.min_replicas`) on the first seconds of the trace at a compressed clock
   (``--runs``; same requests, same order, so the same reuse), one type at a time
   on one option: prefix caching off (the trace's ids dropped), on with jsq, on with
   prefix-affinity; with the replay's measured hit ratio.

Writes benchmarks/results/prefix_reuse.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from planner.loader import load_instance
from planner.review.demand import demand_from_trace, measure_prefix
from planner.sim.cluster import parse_option, simulator_for_option
from planner.sim.engine import SimConfig
from planner.sim.mapping import TypeMapper
from planner.sim.prefix import PrefixIndex
from planner.sim.replay import feed_of
from planner.sim.scale import Requests, min_replicas
from planner.sim.traces import Trace, TraceOptions

ROOT = Path(__file__).resolve().parents[1]
INSTANCE = ROOT / "instances" / "mooncake-2025.yaml"
OPTIONS = {"chat-8k": "llama-3.1-70b-fp8/h100-80gb/2/1", "long-32k": "llama-3.1-70b-fp8/h100-80gb/4/1"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", default="chat-8k,long-32k")
    ap.add_argument("--runs", default="1200x2", help="DURATIONxRATE,...: trace seconds and time compression")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prefix_reuse.md")
    args = ap.parse_args()
    inst = load_instance(INSTANCE)
    mapper = TypeMapper.from_file(INSTANCE.with_suffix(".traces.yml"), inst)
    ids = [q.id for q in inst.query_types]
    lines = [
        "# Prefix reuse on the Mooncake conversation trace",
        "",
        f"`python benchmarks/prefix_reuse.py` ({__doc__.splitlines()[2].strip()}).",
        "",
    ]

    trace = Trace(list(mapper.trace_paths))
    index = PrefixIndex(trace.paths)
    lines += ["## Measured hit ratio (ideal LRU cache per type, token-weighted, whole trace)", ""]
    lines += ["| cache tokens | " + " | ".join(ids) + " |", "|---|" + "---:|" * len(ids)]
    d = demand_from_trace(trace, mapper.type_of, ids, 900.0)
    for cap, label in ((None, "unbounded"), (10_000_000, "10M"), (2_000_000, "2M"), (500_000, "500k")):
        stream = ((r.arrival_s, mapper.type_of(r), r.input_tokens, index.get(0, r.line)) for r in trace)
        ratios = measure_prefix(d, stream, cap).prefix_ratios()
        lines.append(f"| {label} | " + " | ".join(f"{ratios[t]:.3f}" for t in ids) + " |")

    for run in args.runs.split(","):
        duration, scale = (float(x) for x in run.split("x"))
        window = Trace(list(mapper.trace_paths), TraceOptions(duration_s=duration, time_scale=scale))
        reqs = Requests.collect(feed_of(window, mapper))
        lines += [
            "",
            f"## Replicas at the attainment target, first {duration:g} s of the trace at {scale:g}× its rate",
            "",
        ]
        lines += [
            "| type | option | target | requests | cache | policy | replicas | attainment | replay hit ratio | note |",
            "|---|---|---:|---:|---|---|---:|---:|---:|---|",
        ]
        for name in args.types.split(","):
            ty = ids.index(name)
            sub = reqs.subset(reqs.ty == ty)
            cold = Requests(sub.arrival, sub.ty, sub.inp, sub.out, None)
            opt = parse_option(OPTIONS[name])
            target = inst.attainment(inst.query_types[ty]) or 0.99
            for cache, policy, r in (("off", "jsq", cold), ("on", "jsq", sub), ("on", "prefix-affinity", sub)):
                res = min_replicas(inst, opt, r, policy, target)  # no table: no cold capacity build
                hit = ""
                if res.replicas:
                    sim = simulator_for_option(inst, opt, res.replicas, SimConfig(policy=policy), [ty])
                    sim.run(r.feed())
                    h = sim.summary()["types"][name]["prefix_hit_ratio"]
                    hit = "-" if h is None else f"{h:.3f}"
                att = "-" if res.attainment is None else f"{res.attainment:.4f}"
                lines.append(
                    f"| {name} | {opt.key} | {target} | {len(sub)} | {cache} | {policy} | {res.replicas or '-'} | "
                    f"{att} | {hit} | {res.reason} |"
                )
                print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
