"""The fewest replicas of one option that keep SLO attainment at a target, per placement policy.

Attainment grows with the replica count (more workers never make a queue longer under these
policies, up to noise), so the search gallops from the fluid estimate — work per second over one
replica's capacity at the option table's operating point — to a bracket [fail, pass] and bisects
it. Each probe replays the whole trace. Before searching, the *ceiling* is computed: the share of
requests that meet their SLOs alone on an idle replica; a target above it is unreachable at any
count and is reported as such instead of searched for.

Split phase: prefill and decode counts are found by coordinate descent (prefill with a generous
decode pool, decode with that prefill pool, prefill once more), minimizing GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.errors import InputError
from planner.options import Option, OptionTable
from planner.problem import Instance
from planner.sim.cluster import SplitSpec, planned_batch, pool_spec, simulator_for_option
from planner.sim.engine import SimConfig

MAX_REPLICAS = 4096
HEADROOMS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


@dataclass
class Requests:
    """A trace held as arrays so it can be replayed for every probe (type −1: unmapped)."""

    arrival: np.ndarray
    ty: np.ndarray
    inp: np.ndarray
    out: np.ndarray
    hashes: list[tuple[int, ...] | None] | None = None  # prefix-block ids per request, where the trace has them

    @classmethod
    def collect(cls, tuples: Iterator[tuple[Any, ...]]) -> Requests:
        a, t, i, o, h = [], [], [], [], []
        for row in tuples:
            _, ty, arr, inp, out = row[:5]
            a.append(arr)
            t.append(-1 if ty is None else ty)
            i.append(inp)
            o.append(out)
            h.append(row[5] if len(row) > 5 else None)
        hashes = h if any(x is not None for x in h) else None
        return cls(
            np.asarray(a, float), np.asarray(t, np.int64), np.asarray(i, np.int64), np.asarray(o, np.int64), hashes
        )

    def __len__(self) -> int:
        return len(self.arrival)

    def subset(self, mask: np.ndarray) -> Requests:
        hashes = None if self.hashes is None else [h for h, m in zip(self.hashes, mask.tolist(), strict=True) if m]
        return Requests(self.arrival[mask], self.ty[mask], self.inp[mask], self.out[mask], hashes)

    def feed(self) -> Iterator[tuple[Any, ...]]:
        rows = zip(self.arrival.tolist(), self.ty.tolist(), self.inp.tolist(), self.out.tolist(), strict=True)
        if self.hashes is None:
            for n, (a, t, i, o) in enumerate(rows):
                yield n, (None if t < 0 else t), a, i, o
        else:
            for n, ((a, t, i, o), h) in enumerate(zip(rows, self.hashes, strict=True)):
                yield n, (None if t < 0 else t), a, i, o, h

    @property
    def span(self) -> float:
        return float(self.arrival[-1] - self.arrival[0]) if len(self) > 1 else 1.0


@dataclass
class Probe:
    replicas: int
    attainment: float
    summary: dict[str, Any]


@dataclass
class ScaleResult:
    option: str
    policy: str
    target: float
    replicas: int | None  # None: the target is not reached (see ceiling)
    gpus: int | None
    attainment: float | None
    goodput_rps_per_gpu: float | None
    ceiling: float
    fluid_estimate: int
    probes: list[tuple[int | str, float]] = field(default_factory=list)
    decode_option: str | None = None
    prefill_replicas: int | None = None
    decode_replicas: int | None = None
    reason: str = ""
    headroom: float | None = None  # Aladdin's packing headroom at the answer

    def row(self) -> dict[str, Any]:
        return {
            "option": self.option,
            "policy": self.policy,
            "target": self.target,
            "replicas": self.replicas,
            "gpus": self.gpus,
            "attainment": self.attainment,
            "goodput_rps_per_gpu": self.goodput_rps_per_gpu,
            "ceiling": round(self.ceiling, 6),
            "fluid_estimate": self.fluid_estimate,
            "probes": [[n, round(a, 6)] for n, a in self.probes],
            **(
                {
                    "decode_option": self.decode_option,
                    "prefill_replicas": self.prefill_replicas,
                    "decode_replicas": self.decode_replicas,
                }
                if self.decode_option
                else {}
            ),
            **({"reason": self.reason} if self.reason else {}),
            **({"headroom": self.headroom} if self.headroom is not None else {}),
        }


def ceiling(inst: Instance, option: Option, reqs: Requests, max_num_seqs: int | None = None) -> float:
    """Share of served requests that meet every SLO alone on an idle replica (the best any count
    of replicas can do); rejected requests (context, KV) count as misses."""
    spec = pool_spec(inst, option, 1, max_num_seqs, [])
    tab = spec.timing
    slos = [(q.slo.ttft_s or math.inf, q.slo.tpot_s or math.inf, q.slo.e2e_s or math.inf) for q in inst.query_types]
    served = reqs.ty >= 0
    if not served.any():
        return 0.0
    inp, out, ty = reqs.inp[served], reqs.out[served], reqs.ty[served]
    ctx = spec.max_context or np.iinfo(np.int64).max
    ok_len = (inp < ctx) & (inp + 1 <= spec.kv_capacity)
    out = np.minimum(out, np.maximum(ctx - inp, 1))
    ttft, dec = tab.idle_request(inp, out)
    steps = np.maximum(out - 1, 0)
    tpot = np.where(steps > 0, dec / np.maximum(steps, 1), 0.0)
    lim = np.asarray(slos)[ty]
    meets = ok_len & (ttft <= lim[:, 0]) & (tpot <= lim[:, 1]) & (ttft + dec <= lim[:, 2])
    return float(meets.sum() / served.sum())


def fluid_estimate(table: OptionTable | None, option: Option, reqs: Requests, type_ids: list[str]) -> int:
    """Σ_i (rate of type i in the trace) / throughput_rps[i, option]: the planner's replica count
    for this stream at its operating point (1 when the table has no row)."""
    if table is None or len(reqs) == 0:
        return 1
    total = 0.0
    for i, t in enumerate(type_ids):
        n = int((reqs.ty == i).sum())
        row = table.row(option, t)
        if n and row is not None and row.throughput_rps:
            total += n / reqs.span / row.throughput_rps
    return max(1, math.ceil(total))


def _probe(
    inst: Instance,
    option: Option,
    reqs: Requests,
    config: SimConfig,
    n: int,
    max_num_seqs: int | None,
    types: list[int],
    split: SplitSpec | None = None,
) -> Probe:
    sim = simulator_for_option(inst, option, n, config, types, max_num_seqs, split)
    sim.run(reqs.feed())
    s = sim.summary()
    return Probe(n, float(s["attainment"] or 0.0), s)


def _search(
    attain: Callable[[int], float], target: float, start: int, cap: int
) -> tuple[int | None, list[tuple[int, float]]]:
    """Smallest n in [1, cap] with attain(n) ≥ target, by galloping from ``start`` then bisection."""
    seen: dict[int, float] = {}

    def f(n: int) -> float:
        if n not in seen:
            seen[n] = attain(n)
        return seen[n]

    n = max(1, min(start, cap))
    if f(n) >= target:
        hi, step = n, 1
        lo = 0
        while hi - step >= 1:
            m = hi - step
            if f(m) >= target:
                hi, step = m, step * 2
            else:
                lo = m
                break
    else:
        lo, step = n, 1
        hi = None
        while hi is None:
            m = min(lo + step, cap)
            if f(m) >= target:
                hi = m
            elif m >= cap or (step >= 2 and f(m) <= f(lo) + 1e-9):
                # cap reached, or doubling the workers changed nothing: a plateau below target
                return None, sorted(seen.items())
            else:
                lo, step = m, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if f(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi, sorted(seen.items())


def min_replicas(
    inst: Instance,
    option: Option,
    reqs: Requests,
    policy: str,
    target: float,
    table: OptionTable | None = None,
    seed: int = 0,
    staleness_s: float = 0.0,
    decode_option: Option | None = None,
    cap: int = MAX_REPLICAS,
) -> ScaleResult:
    type_ids = [q.id for q in inst.query_types]
    types = sorted({int(t) for t in np.unique(reqs.ty) if t >= 0})
    if not types:
        raise InputError("--trace", "-", "no request of the trace maps to a query type of the instance")
    batch = planned_batch(table, option, [type_ids[i] for i in types])
    config = SimConfig(policy=policy, seed=seed, staleness_s=staleness_s)
    top = ceiling(inst, option, reqs, batch)
    est = fluid_estimate(table, option, reqs, type_ids)
    base = ScaleResult(option.key, policy, target, None, None, None, None, top, est)
    if top < target:
        base.reason = f"unreachable: only {top:.4f} of requests meet their SLOs even alone on an idle replica"
        return base
    if policy != "aladdin":
        return _scale_at(inst, option, decode_option, reqs, config, target, batch, types, est, cap, base)
    # Best fit packs each worker up to h × its SLO bounds, so past some count extra workers stay
    # empty and attainment plateaus: the packing headroom h is searched with the count. n(h) is
    # U-shaped (high h: plateau below target; low h: spread thin), so the walk stops when it rises.
    best: ScaleResult | None = None
    for h in HEADROOMS:
        cfg = SimConfig(policy=policy, seed=seed, staleness_s=staleness_s, headroom=h)
        res = _scale_at(
            inst, option, decode_option, reqs, cfg, target, batch, types, est, cap, replace(base, probes=[])
        )
        res.headroom = h
        if res.gpus is None:
            continue
        if best is not None and res.gpus > best.gpus:  # type: ignore[operator]
            break
        if best is None or res.gpus < best.gpus:  # type: ignore[operator]
            best = res
        est = res.replicas or est
    if best is None:
        base.reason = f"not reached at any packing headroom in {HEADROOMS} with up to {cap} replicas"
        return base
    return best


def _scale_at(
    inst: Instance,
    option: Option,
    decode_option: Option | None,
    reqs: Requests,
    config: SimConfig,
    target: float,
    batch: int | None,
    types: list[int],
    est: int,
    cap: int,
    base: ScaleResult,
) -> ScaleResult:
    if decode_option is not None:
        return _min_split(inst, option, decode_option, reqs, config, target, batch, types, est, cap, base)
    probes: dict[int, Probe] = {}

    def attain(n: int) -> float:
        probes[n] = _probe(inst, option, reqs, config, n, batch, types)
        return probes[n].attainment

    n, seen = _search(attain, target, est, cap)
    base.probes = list(seen)
    if n is None:
        base.reason = f"not reached with {cap} replicas"
        return base
    return _answer(base, probes[n], n, n * option.gpus_per_replica)


def _answer(base: ScaleResult, probe: Probe, replicas: int, gpus: int) -> ScaleResult:
    """Fill ``base`` with the count found and its probe's attainment and goodput per GPU."""
    base.replicas, base.gpus = replicas, gpus
    base.attainment = probe.attainment
    base.goodput_rps_per_gpu = round((probe.summary["goodput_rps"] or 0.0) / gpus, 6)
    return base


def _min_split(
    inst: Instance,
    option: Option,
    decode_option: Option,
    reqs: Requests,
    config: SimConfig,
    target: float,
    batch: int | None,
    types: list[int],
    est: int,
    cap: int,
    base: ScaleResult,
) -> ScaleResult:
    probes: dict[tuple[int, int], Probe] = {}

    def run(p: int, d: int) -> float:
        if (p, d) not in probes:
            split = SplitSpec(option, p, decode_option, d)
            probes[(p, d)] = _probe(inst, option, reqs, config, p, batch, types, split)
        return probes[(p, d)].attainment

    # Both pools grown together find a feasible pair; then each shrinks with the other fixed.
    s_n, _ = _search(lambda s: run(s, s), target, max(1, est), cap)
    if s_n is None:
        base.reason = f"not reached with {cap} prefill and {cap} decode replicas"
        return base
    p_n, _ = _search(lambda p: run(p, s_n), target, s_n, cap)
    assert p_n is not None
    d_n, _ = _search(lambda d: run(p_n, d), target, s_n, cap)
    assert d_n is not None
    base.decode_option = decode_option.key
    base.prefill_replicas, base.decode_replicas = p_n, d_n
    base.probes = [(f"{p}p+{d}d", a.attainment) for (p, d), a in sorted(probes.items())]
    gpus = p_n * option.gpus_per_replica + d_n * decode_option.gpus_per_replica
    return _answer(base, probes[(p_n, d_n)], p_n + d_n, gpus)
