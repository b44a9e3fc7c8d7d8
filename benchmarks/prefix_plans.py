"""Planning with prefix reuse: mooncake-2025 solved with and without its measured reuse, replayed.

    python benchmarks/prefix_plans.py [--policies prefix-affinity,jsq]

1. The reuse per type as ``planner demand --figures`` measures it on the instance's trace
   (:func:`planner.review.demand.measure_prefix_curve`: the unbounded ideal cache's token-weighted
   hit ratio and the curve over cache sizes), written into the instance's query types
   (``prefix_hit_ratio``, ``prefix_hit_curve``).
2. The MILP plan of the instance as shipped (no reuse) and of the instance with the reuse
   (the option table discounts prefill by h(r) = H(c_r·λ/r): :func:`planner.capacity.prefix_hit`).
3. Both plans replayed on the whole trace (prefix caching on, as vLLM runs by default) under each
   placement policy: attainment per type, the replay's hit ratio per type, GPUs and rental; then
   ``solve --validate``'s loop (replay with prefix-affinity, derate the pools that miss,
   re-solve) and its plan replayed the same way.
4. Per pool and type: the reuse the capacity simulation reached (``Capacity.prefix_hit``) beside
   the replay's.

Writes benchmarks/results/prefix_plans.md (minutes cold: every capacity the solves use is
simulated; the cache keeps them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.capacity import make_key, measure_many  # noqa: E402
from planner.loader import load_instance  # noqa: E402
from planner.options import build_option_table, rental_per_replica  # noqa: E402
from planner.problem import Instance  # noqa: E402
from planner.review.demand import measure_prefix_curve  # noqa: E402
from planner.sim.mapping import TypeMapper  # noqa: E402
from planner.sim.prefix import PrefixIndex  # noqa: E402
from planner.sim.replay import feed_of  # noqa: E402
from planner.sim.scale import Requests  # noqa: E402
from planner.sim.traces import Trace  # noqa: E402
from planner.solvers import solve  # noqa: E402
from planner.validation import replay, split_by_plan, type_attainment, type_prefix_ratio, validate  # noqa: E402

INSTANCE = ROOT / "instances" / "mooncake-2025.yaml"
VALIDATE_POLICY = "prefix-affinity"


def with_reuse(inst: Instance, reuse: dict[str, tuple[float, tuple[tuple[int, float], ...]]]) -> Instance:
    """The instance with each measured type's reuse, rounded down as ``demand --figures`` writes it."""
    qs = []
    for q in inst.query_types:
        if q.id in reuse:
            ratio, curve = reuse[q.id]
            top = int(ratio * 1000) / 1000
            doc = q.model_dump()
            doc["prefix_hit_ratio"] = top
            doc["prefix_hit_curve"] = [[float(c), min(int(h * 1000) / 1000, top)] for c, h in curve]
            q = type(q).model_validate(doc)
        qs.append(q)
    return inst.model_copy(update={"query_types": qs})


def pool_rows(label: str, inst: Instance, plan: Any, shares: list, pools: list) -> list[str]:
    """Per pool and type: the reuse its capacity was simulated with (``Capacity.prefix_hit`` at the
    table's rate) beside the reuse the replay reached on the pool's share of the trace."""
    ids = [q.id for q in inst.query_types]
    out = []
    for (d, _), p in zip(shares, pools, strict=True):
        for i, served in sorted(p.served.items()):
            if not served:
                continue
            q = inst.query_types[i]
            key = make_key(inst, d.option, i, inst.attainment(q) or 0.99)
            cap = measure_many(inst, [key])[key]
            hits, tokens = p.prefix.get(i, (0, 0))
            replayed = hits / tokens if tokens else 0.0
            x = sum(s.fraction for s in plan.routing.get(ids[i], []) if s.option == d.option)
            out.append(
                f"| {label} | {d.option.key} ×{d.replicas} | {ids[i]} | {x:.3f} | {cap.rate_rps:.3f} | "
                f"{cap.prefix_hit:.3f} | {replayed:.3f} | {p.attainment(i):.4f} |"
            )
    return out


def alone(inst: Instance, reqs: Requests, t: str) -> tuple[Instance, Requests]:
    """The instance with only type ``t`` and the trace's requests of that type (the others
    unmapped): one type's plan, without the other types' prompts in its pools."""
    ti = [q.id for q in inst.query_types].index(t)
    single = inst.model_copy(update={"query_types": [inst.query_types[ti]]})
    ty = np.where(reqs.ty == ti, 0, -1)
    keep = ty == 0
    hashes = None if reqs.hashes is None else [h for h, k in zip(reqs.hashes, keep, strict=True) if k]
    return single, Requests(reqs.arrival[keep], ty[keep], reqs.inp[keep], reqs.out[keep], hashes)


def study(
    title: str, base: Instance, reqs: Requests, reuse: dict[str, Any], traces: list[str], policies: list[str]
) -> list[str]:
    """One section: the instance's MILP plan without and with its measured reuse, each replayed
    under ``policies`` and then validated (``solve --validate``) and replayed again."""
    ids = [q.id for q in base.query_types]
    lines = [
        f"## {title}",
        "",
        f"{len(reqs):,} requests. Attainment and prefix-hit ratio per type in replay; `--validate` replays with"
        f" {VALIDATE_POLICY}.",
        "",
        "| instance | plan | $ rental | GPUs | s | policy | "
        + " | ".join(f"{t} attainment | {t} hit" for t in ids)
        + " | deployments |",
        "|---|---|---:|---:|---:|---|" + "---:|---:|" * len(ids) + "---|",
    ]
    detail: list[str] = []
    for label, inst in (("as shipped", base), ("with reuse", with_reuse(base, reuse))):
        table = build_option_table(inst)
        t0 = time.perf_counter()
        plan = solve(inst, "milp", table=table)
        took = time.perf_counter() - t0

        def resolve(derated: Any) -> Any:
            return solve(derated.instance, "milp", table=derated)

        t0 = time.perf_counter()
        vplan, _ = validate(inst, table, plan, reqs, resolve, traces, VALIDATE_POLICY)
        took_v = time.perf_counter() - t0
        v = vplan.validation
        assert v is not None
        for kind, pl, secs in (("solve", plan, took), (f"solve --validate ({v.rounds} rounds)", vplan, took_v)):
            rent = sum(rental_per_replica(inst, d.option) * d.replicas for d in pl.deployments)
            gpus = sum(d.gpus for d in pl.deployments)
            deps = ", ".join(f"{d.option.key} ×{d.replicas}" for d in pl.deployments)
            shares = split_by_plan(inst, pl, reqs)
            for policy in policies:
                pools = replay(inst, shares, policy)
                att, hit = type_attainment(inst, pools), type_prefix_ratio(inst, pools)
                cells = []
                for t in ids:
                    a, h = att.get(t), hit.get(t)
                    cells += ["-" if a is None else f"{a:.4f}", "-" if h is None else f"{h:.3f}"]
                lines.append(
                    f"| {label} | {kind} | {rent:,.2f} | {gpus} | {secs:.0f} | {policy} | "
                    + " | ".join(cells)
                    + f" | {deps} |"
                )
                print(lines[-1], flush=True)
                if policy == VALIDATE_POLICY:
                    detail += pool_rows(f"{label}, {kind}", inst, pl, shares, pools)
    return [
        *lines,
        "",
        "Reuse per pool: the capacity of each (pool, type) was simulated with the type's reuse as the",
        "replica's free KV allowed it (h sim, at that capacity); h replay is the pool's own on its share",
        f"of the trace ({VALIDATE_POLICY}).",
        "",
        "| plan | pool | type | share x | capacity req/s | h sim | h replay | attainment |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *detail,
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", default="prefix-affinity,jsq")
    ap.add_argument("--alone", default="chat-8k,long-32k", help="types also planned alone ('' for none)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prefix_plans.md")
    args = ap.parse_args()
    base = load_instance(INSTANCE)
    mapper = TypeMapper.from_file(INSTANCE.with_suffix(".traces.yml"), base)
    trace = Trace(list(mapper.trace_paths))
    index = PrefixIndex(trace.paths)
    ids = [q.id for q in base.query_types]
    stream = ((r.arrival_s, mapper.type_of(r), r.input_tokens, index.get(0, r.line)) for r in trace)
    reuse = measure_prefix_curve(ids, stream)
    reqs = Requests.collect(feed_of(trace, mapper))
    traces = [str(p) for p in mapper.trace_paths]
    policies = args.policies.split(",")
    lines = [
        "# Planning with prefix reuse: mooncake-2025",
        "",
        f"`python benchmarks/prefix_plans.py` (its docstring). Trace: {trace.paths[0].name}; replays with",
        "prefix caching on, every pool its share of the requests (the plan's routing, conversations kept",
        "on one pool: planner.validation.split_by_plan).",
        "",
        "## Measured reuse (planner demand --figures)",
        "",
        "| type | unbounded | curve [cache tokens, ratio] |",
        "|---|---:|---|",
    ]
    for t, (ratio, curve) in reuse.items():
        lines.append(f"| {t} | {ratio:.3f} | " + ", ".join(f"[{c:,}, {h:.3f}]" for c, h in curve) + " |")
    lines.append("")
    lines += study("All three types", base, reqs, reuse, traces, policies)
    for t in filter(None, args.alone.split(",")):
        inst, sub = alone(base, reqs, t)
        lines += study(f"{t} alone", inst, sub, reuse, traces, policies)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
