# ruff: noqa: E501  (markdown rows)
"""Capacity-model accuracy: the planner's highest rate at the attainment target vs the simulated one
on the real trace, per (option, type), on azure-2023 (and mooncake-2025 when shipped).

For each pair, three rates at which one replica keeps 0.99 of the type's requests inside its SLOs:
  * estimate   the analytic estimate the option table starts from (planner.capacity.estimate_figures);
  * planner    what plans use: the replica simulated on synthetic traffic from the instance's
               figures (means, length percentiles, burst percentiles; planner.capacity.measure);
  * trace      the reference: the same replica replaying the type's own requests from the trace
               (lengths and arrival clock as recorded) thinned to mean rate r — each request kept
               when its seeded uniform u < r/r₀, so a lower rate keeps a subset (common random
               numbers) — the whole hour, repeated (each repetition with its own uniforms) until
               it holds TRACE_REQUESTS; or, above the trace's own rate r₀, the superposition of
               k − 1 = ⌈r/r₀⌉ − 1 whole copies of the trace and a thinned share r/r₀ − k + 1 of one
               more, each copy circularly shifted by a seeded offset: more users of the same kind,
               each independent of the others (planner.capacity.superposition is the same rule);
               cut after MAX_REQUESTS arrivals; bisected on r to 4%. Thinning is what a pool does
               to a type's traffic (each replica sees its share, on the trace's clock);
               time-scaling the trace instead would stretch or squeeze its bursts, which no plan
               does. The reference is the median over 4 thinning seeds; the spread of single
               thinnings around it is reported as its noise. (Until 2026-12 every replay was cut
               after its first 3,000 arrivals — at 5 req/s the first 10 minutes of the hour,
               missing the swings that last minutes: 70b/a100/tp4 held 0.999 of conv-short at
               4.5 req/s there and 0.964 over the hour — and below 100 arrivals counted as met,
               which floored mooncake-2025's long-context capacities at ≈0.03 req/s.)
Errors are |predicted / trace − 1|. Pairs span prefill-heavy (code), decode-heavy (conv-short,
conv-long outputs) and long-context (conv-long 4–14k prompts; mooncake) types, tiers, TP degrees
and token budgets. Writes results/capacity_accuracy.{md,csv,png}.

    python benchmarks/capacity_accuracy.py [--pairs N] [--workers N]
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
TARGET = 0.99
CEILING_ROOM = 0.995  # idle ceiling that leaves at least half the 1% miss budget to queueing
TRACE_REQUESTS = 3000  # below the trace's rate, hours are repeated until a replay holds this many
MAX_HOURS = 2000  # ... or this many hours
MAX_REQUESTS = 60_000  # a replay is cut after this many arrivals (only above ~17 req/s on azure-2023)
REFERENCE_SEEDS = 4  # thinnings per reference (its median)

from planner import capacity  # noqa: E402
from planner.loader import load_instance  # noqa: E402
from planner.options import build_option_table  # noqa: E402
from planner.sim.cluster import replica_model  # noqa: E402
from planner.sim.mapping import TypeMapper  # noqa: E402
from planner.sim.replay import feed_of  # noqa: E402
from planner.sim.scale import Requests  # noqa: E402
from planner.sim.traces import Trace  # noqa: E402

# Types whose largest burst alone holds more of the requests than the target lets miss
# (planner demand's burst warning, planner/review/figures.py): one event of the hour decides their
# trace capacity, which no burst percentile describes; reported apart as well as in the total.
BURST_DECIDED = {"azure-2023": {"code"}}

INSTANCES = [
    ("azure-2023", ROOT / "instances" / "azure-2023.yaml"),
    ("mooncake-2025", ROOT / "instances" / "mooncake-2025.yaml"),
]


def type_requests(path: Path) -> tuple[Any, dict[int, Any]]:
    inst = load_instance(path)
    mapper = TypeMapper.from_file(path.with_name(path.stem + ".traces.yml"), inst)
    reqs = Requests.collect(feed_of(Trace(list(mapper.trace_paths)), mapper))
    by_type = {}
    for i in range(len(inst.query_types)):
        sub = reqs.subset(reqs.ty == i)
        sub.arrival = sub.arrival - sub.arrival[0]
        by_type[i] = sub
    return inst, by_type


def trace_attainment(inst: Any, option: Any, ty: int, sub: Any, seed: int = 0) -> Callable[[float], float]:
    """Attainment of one replica replaying ``sub`` thinned (or superposed) to mean rate r, as a
    function of r (module docstring)."""
    from planner.sim.cluster import simulator_for_option
    from planner.sim.engine import SimConfig

    q = inst.query_types[ty]
    limits = capacity._limits(q)
    base = len(sub) / max(float(sub.arrival[-1]), 1e-9)
    span = float(sub.arrival[-1]) + 1.0 / base  # the trace's clock wraps here

    @functools.cache
    def stream(s: int, hour: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copy s of the trace with its seeded thinning uniforms (common random numbers: the same
        at every rate): above the trace's rate circularly shifted by a seeded offset (none for
        copy 0); below it (``hour``) the s-th repetition of the hour, at offset s·span."""
        rng = np.random.default_rng([ty, s, seed, int(hour)] if hour and s else [ty, s, seed])
        if hour:
            at = sub.arrival + s * span
            return np.arange(len(sub)), at, rng.random(len(sub))
        shift = 0.0 if s == 0 else float(rng.uniform(0.0, span))
        at = (sub.arrival + shift) % span
        order = np.argsort(at, kind="stable")
        return order, at[order], rng.random(len(sub))

    def scaled(r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if r >= base:  # k − 1 whole copies and a share of one more
            k = max(1, math.ceil(r / base - 1e-9))
            copies = [stream(s) for s in range(k)]
            keep = [1.0] * (k - 1) + [r / base - (k - 1)]
        else:  # the hour thinned, repeated until it holds TRACE_REQUESTS
            hours = min(max(1, math.ceil(TRACE_REQUESTS / (r * span))), MAX_HOURS)
            copies = [stream(h, True) for h in range(hours)]
            keep = [r / base] * hours
        parts = []
        for (order, at, u), keep_p in zip(copies, keep, strict=True):
            m = u < keep_p
            parts.append((at[m], order[m]))
        at = np.concatenate([a for a, _ in parts])
        idx = np.concatenate([i for _, i in parts])
        o = np.argsort(at, kind="stable")
        n = min(len(o), MAX_REQUESTS)
        at, idx = at[o][:n], idx[o][:n]
        return at, sub.inp[idx], sub.out[idx]

    def attain(r: float) -> float:
        at, inp, out = scaled(r)
        if len(at) < 100:  # too few requests to judge a 1% tail
            return 1.0
        sim = simulator_for_option(inst, option, 1, SimConfig(policy="jsq"), [ty])
        res = np.full((len(at), 3), np.nan)

        def rec(req: Any, now: float, pool: str, worker: int) -> None:
            res[req.uid] = (
                req.first - req.arrival,
                (now - req.first) / (req.out - 1) if req.out > 1 else 0.0,
                now - req.arrival,
            )

        sim.metrics.finished = rec  # type: ignore[method-assign]
        sim.run((k, ty, float(at[k]), int(inp[k]), int(out[k])) for k in range(len(at)))
        return float(capacity._met(res[int(capacity.WARMUP * len(at)) :], limits).mean())

    return attain


def trace_capacity(inst: Any, option: Any, ty: int, sub: Any, guess: float, seed: int = 0) -> float:
    """Highest mean rate r at which one replica replaying ``sub`` thinned (or superposed) to rate r
    meets the target (module docstring)."""
    attain = trace_attainment(inst, option, ty, sub, seed)
    lo, hi = guess / 2, guess * 2
    while attain(lo) < TARGET:
        hi, lo = lo, lo / 4
        if lo < guess * 1e-4:
            return 0.0
    while attain(hi) >= TARGET:
        lo, hi = hi, hi * 4
    while hi / lo > capacity.RATE_RESOLUTION:
        mid = math.sqrt(lo * hi)
        if attain(mid) >= TARGET:
            lo = mid
        else:
            hi = mid
    return lo


def job(args: tuple[str, Path, Any, int, Any, list[float] | None]) -> dict[str, Any]:
    name, path, option, ty, sub, known = args
    inst = load_instance(path)
    q = inst.query_types[ty]
    t0 = time.perf_counter()
    engine = capacity.Engine.of(replica_model(inst, option), option)
    est = capacity.estimate(inst, engine, option, ty, TARGET).rate_rps
    sim = capacity.measure_many(inst, [capacity.make_key(inst, option, ty, TARGET)], workers=1)
    cap = next(iter(sim.values()))
    planner_rate = cap.rate_rps
    # The reference is the median over REFERENCE_SEEDS thinnings (other seeded uniforms, other
    # offsets above the trace's rate): one thinning's capacity is noisy (a 1% tail of a few
    # thousand requests), and the thinning is our sampling, not the traffic's.
    refs: list[float] = list(known or [])
    for seed in range(len(refs), REFERENCE_SEEDS):
        refs.append(trace_capacity(inst, option, ty, sub, (refs[0] if refs else 0) or planner_rate or est or 1.0, seed))
    ref = float(np.median(refs))
    return {
        "instance": name,
        "option": option.key,
        "type": q.id,
        "estimate_rps": est,
        "planner_rps": planner_rate,
        "trace_rps": ref,
        "trace_seeds_rps": " ".join(f"{r:.6g}" for r in refs),
        "ceiling": cap.ceiling,
        "seconds": time.perf_counter() - t0,
    }


def pick_pairs(inst: Any, n: int) -> list[tuple[Any, int]]:
    """Eligible pairs spread over models, tiers, TP degrees and budgets (deterministic)."""
    table = build_option_table(inst)
    rows = [r for r in table.rows if r.eligible and r.option.pp == 1]
    rng = np.random.default_rng(0)
    by_type: dict[str, list[Any]] = {}
    for r in rows:
        by_type.setdefault(r.query_type, []).append(r)
    out = []
    per = max(1, n // len(by_type))
    for t, rs in sorted(by_type.items()):
        idx = rng.choice(len(rs), size=min(per, len(rs)), replace=False)
        ti = next(i for i, q in enumerate(inst.query_types) if q.id == t)
        out += [(rs[k].option, ti) for k in sorted(idx)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=33, help="pairs per instance")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--from-csv", action="store_true", help="summarize results/capacity_accuracy.csv again")
    ap.add_argument(
        "--keep-reference",
        action="store_true",
        help="take the trace capacities of pairs already in results/capacity_accuracy.csv (the reference "
        "depends on the trace, the option and the type's SLOs only) and measure the planner again",
    )
    args = ap.parse_args()
    jobs = []
    known: dict[tuple[str, str, str], list[float]] = {}
    if args.keep_reference:
        with open(RESULTS / "capacity_accuracy.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                known[r["instance"], r["option"], r["type"]] = [float(x) for x in r["trace_seeds_rps"].split()]
    demand: dict[tuple[str, str], float] = {}  # each type's own mean rate on its trace, requests/s
    for name, path in INSTANCES:
        if not path.is_file():
            continue
        inst, subs = type_requests(path)
        for ty, sub in subs.items():
            if len(sub) > 1:
                demand[name, inst.query_types[ty].id] = len(sub) / float(sub.arrival[-1])
        if not args.from_csv:
            jobs += [
                (name, path, o, ty, subs[ty], known.get((name, o.key, inst.query_types[ty].id)))
                for o, ty in pick_pairs(inst, args.pairs)
            ]
    t0 = time.perf_counter()
    if args.from_csv:
        with open(RESULTS / "capacity_accuracy.csv", newline="") as fh:
            rows = [
                {
                    k: (v if k in ("instance", "option", "type", "trace_seeds_rps") else float(v))
                    for k, v in r.items()
                    if v != ""
                }
                for r in csv.DictReader(fh)
            ]
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as ex:
            rows = []
            for r in ex.map(job, jobs):
                rows.append(r)
                print(
                    f"[{time.perf_counter() - t0:7.1f} s] {r['instance']} {r['option']} {r['type']}: estimate {r['estimate_rps']:.3f} planner {r['planner_rps']:.3f} trace {r['trace_rps']:.3f}",
                    flush=True,
                )
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(RESULTS / "capacity_accuracy.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    ok = [r for r in rows if r["trace_rps"] > 0]

    def err(key: str) -> np.ndarray:
        return np.array([abs(r[key] / r["trace_rps"] - 1.0) for r in ok])

    lines = [
        "# Capacity model vs simulation on the real traces",
        "",
        "`python benchmarks/capacity_accuracy.py` "
        + ("(summarized again with --from-csv). " if args.from_csv else "")
        + (
            ""
            if args.from_csv
            else f"({time.perf_counter() - t0:.0f} s on {args.workers} workers"
            + (
                f"; the trace references of {sum(1 for j in jobs if j[5])} pairs reused with --keep-reference"
                if known
                else ""
            )
            + "). "
        )
        + f"{len(rows)} (option, type) pairs ({len(ok)} with a trace capacity > 0); target attainment {TARGET}.",
        "",
        "| predictor | median abs error | p90 abs error | bias (median predicted/trace) |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("estimate_rps", "analytic estimate (table before simulation)"),
        ("planner_rps", "planner (simulated on the instance's figures)"),
    ):
        e = err(key)
        bias = float(np.median([r[key] / r["trace_rps"] for r in ok]))
        lines.append(f"| {label} | {np.median(e):.1%} | {np.quantile(e, 0.9):.1%} | {bias:.3f} |")
    one = np.array([abs(x / r["trace_rps"] - 1) for r in ok for x in map(float, r["trace_seeds_rps"].split())])
    lines.append(
        f"| one thinning of the trace vs the reference (median of {REFERENCE_SEEDS}): its noise | "
        f"{np.median(one):.1%} | {np.quantile(one, 0.9):.1%} | 1 |"
    )

    # A replica never receives more than its type's whole traffic, so above the type's own rate a
    # capacity says only "one replica carries it all": both figures capped there are what a plan uses
    # (the reference's superposed copies above it, and the planner's burst scaled past the trace's,
    # are extrapolations no plan meets).
    def capped(r: dict[str, Any], key: str) -> float:
        lam = demand.get((r["instance"], r["type"]), math.inf)
        return min(r[key], lam) / min(r["trace_rps"], lam)

    c = np.array([abs(capped(r, "planner_rps") - 1.0) for r in ok])
    lines.append(
        "| planner, both capacities capped at the type's own trace rate (what a plan can use) | "
        f"{np.median(c):.1%} | {np.quantile(c, 0.9):.1%} | {float(np.median([capped(r, 'planner_rps') for r in ok])):.3f} |"
    )
    # Near its idle ceiling (the share of a type's requests that meet every limit alone on an idle
    # replica) a pair's capacity is the rate at which almost no queueing is left to spend: both
    # figures are near zero and their ratio is ill-conditioned (the reference then rests on the few
    # requests of a thinned hour). Reported apart, not dropped.
    roomy = [r for r in ok if "ceiling" in r and r["ceiling"] >= CEILING_ROOM]
    if roomy and len(roomy) < len(ok):
        e = np.array([abs(r["planner_rps"] / r["trace_rps"] - 1.0) for r in roomy])
        lines.append(
            f"| planner, pairs whose idle ceiling is ≥ {CEILING_ROOM} ({len(roomy)} pairs; "
            f"{len(ok) - len(roomy)} near their ceiling left out) | "
            f"{np.median(e):.1%} | {np.quantile(e, 0.9):.1%} | "
            f"{float(np.median([r['planner_rps'] / r['trace_rps'] for r in roomy])):.3f} |"
        )
    burst = [r for r in ok if not BURST_DECIDED.get(r["instance"], set()) & {r["type"]}]
    if len(burst) < len(ok):
        e = np.array([abs(r["planner_rps"] / r["trace_rps"] - 1.0) for r in burst])
        lines.append(
            f"| planner, leaving out the types whose largest burst decides ({len(burst)} pairs) | "
            f"{np.median(e):.1%} | {np.quantile(e, 0.9):.1%} | "
            f"{float(np.median([r['planner_rps'] / r['trace_rps'] for r in burst])):.3f} |"
        )
    lines += [
        "",
        "By instance and type (planner; noise = median |one thinning / reference − 1|):",
        "",
        "| instance | type | pairs | median abs error | median planner/trace | noise |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key in sorted({(r["instance"], r["type"]) for r in ok}):
        sel = [r for r in ok if (r["instance"], r["type"]) == key]
        v = np.array([r["planner_rps"] / r["trace_rps"] for r in sel])
        noise = np.median([abs(float(x) / r["trace_rps"] - 1) for r in sel for x in r["trace_seeds_rps"].split()])
        lines.append(
            f"| {key[0]} | {key[1]} | {len(v)} | {np.median(np.abs(v - 1)):.1%} | {np.median(v):.3f} | {noise:.1%} |"
        )
    lines += [
        "",
        "| instance | option | type | estimate rps | planner rps | trace rps | planner / trace |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["planner_rps"] / r["trace_rps"] if r["trace_rps"] > 0 else float("nan")
        lines.append(
            f"| {r['instance']} | `{r['option']}` | {r['type']} | {r['estimate_rps']:.3f} | {r['planner_rps']:.3f} | {r['trace_rps']:.3f} | {ratio:.3f} |"
        )
    (RESULTS / "capacity_accuracy.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 5))
        for key, mk in (("estimate_rps", "x"), ("planner_rps", "o")):
            ax.scatter(
                [r["trace_rps"] for r in ok], [r[key] for r in ok], marker=mk, label=key.replace("_rps", ""), alpha=0.7
            )
        lim = [min(r["trace_rps"] for r in ok) / 1.5, max(r["trace_rps"] for r in ok) * 1.5]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="trace capacity (req/s per replica)",
            ylabel="predicted",
            title="capacity at 0.99 attainment",
        )
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "capacity_accuracy.png", dpi=120)
    except ImportError:
        pass
    print("\n".join(lines[:10]))


if __name__ == "__main__":
    main()
