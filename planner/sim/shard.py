"""Replaying a long trace pool by pool: stream it once, shard it by pool, one task per pool, merge.

A plan's pools share nothing once each request's pool is chosen, and the router's choice depends
on the request stream alone (:class:`planner.sim.engine.Router`: each type's shares, a
conversation kept where its history is). So a replay of a plan is the union of its pools'
replays:

1. **Shard.** The trace is read once, each request routed and appended to its pool's shard:
   columns of fixed-size chunks written to a scratch directory as they fill (28 bytes a request;
   a chunk is BUFFER / pools requests, at least MIN_CHUNK), so the driver holds one chunk per
   pool — about 120 MB whatever the number of pools —, never the trace. Requests of no type
   or routed to no pool are counted here (``unmapped``, ``unserved``).
2. **Replay.** One task per pool (:mod:`planner.executor`: in process, a process pool, or Ray)
   streams its chunks into a simulator of that pool alone — a split pair is one task, both its
   pools — and returns its metrics and counters.
3. **Merge.** Counts add; latency histograms add bin by bin, so every percentile is the one a
   single replay gives; each pool keeps its own counters; simulated time is the latest pool's.

Time is *not* sharded: a pool's queue, batch and prefix cache carry from one minute to the next,
so cutting a pool's week into days would need that state carried across the cut; the unit of
work is a pool (a week of one pool is one task), and a plan with fewer pools than workers leaves
workers idle. With Ray on a cluster of several machines the scratch directory must be shared
storage (``--shard-dir``). Policies that correct predictions on a heartbeat (``aladdin``) take it
at the first event after each period, which differs between one pool's events and the whole
plan's, so their figures may differ from the single-process replay in the last digits; the other
policies give the same numbers (a test checks jsq).
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.sim.engine import Router, SimConfig
from planner.sim.metrics import Metrics
from planner.sim.state import PoolSpec

BUFFER = 1 << 22  # requests the driver buffers over all pools (28 bytes each: 117 MB)
MIN_CHUNK = 1 << 14  # requests per chunk file at least


@dataclass
class Shard:
    """One pool's share of the trace: its chunk files, in arrival order."""

    index: int  # the service (deployment) index of the plan's routing
    files: list[Path] = field(default_factory=list)
    requests: int = 0


class _Buffer:
    """A pool's chunk being filled: uid, type, arrival, input, output (and prefix ids)."""

    def __init__(self, size: int) -> None:
        self.uid = np.empty(size, np.int64)
        self.ty = np.empty(size, np.int32)
        self.t = np.empty(size, np.float64)
        self.inp = np.empty(size, np.int32)
        self.out = np.empty(size, np.int32)
        self.hashes: list[tuple[int, ...] | None] = []
        self.n = 0


def shard_trace(
    feed: Iterable[tuple[Any, ...]],
    router: Router,
    services: int,
    metrics: Metrics,
    out_dir: Path,
    chunk: int | None = None,
) -> list[Shard]:
    """Route every request of ``feed`` (the simulator's rows, :func:`planner.sim.replay.feed_of`)
    to its service and write each service's requests to chunk files under ``out_dir``; requests
    that reach no service are counted in ``metrics`` as the simulator counts them."""
    if chunk is None:
        chunk = max(MIN_CHUNK, BUFFER // max(services, 1))
    shards = [Shard(k) for k in range(services)]
    bufs = [_Buffer(chunk) for _ in range(services)]

    def flush(k: int) -> None:
        b = bufs[k]
        if b.n == 0:
            return
        path = out_dir / f"pool{k}-{len(shards[k].files):05d}.npz"
        cols = {"uid": b.uid[: b.n], "ty": b.ty[: b.n], "t": b.t[: b.n], "inp": b.inp[: b.n], "out": b.out[: b.n]}
        np.savez(path, **cols)
        if any(h is not None for h in b.hashes):
            path.with_suffix(".ids").write_bytes(pickle.dumps(b.hashes, protocol=pickle.HIGHEST_PROTOCOL))
        shards[k].files.append(path)
        shards[k].requests += b.n
        b.n = 0
        b.hashes = []

    for row in feed:
        uid, ty, t, inp, out = row[:5]
        ids = row[5] if len(row) > 5 else None
        if ty is None:
            metrics.arrived(None)
            metrics.unmapped += 1
            continue
        k = router.pick(ty, ids)
        if k is None:
            metrics.arrived(ty)
            metrics.rejected(ty, "unserved")
            continue
        b = bufs[k]
        j = b.n
        b.uid[j], b.ty[j], b.t[j], b.inp[j], b.out[j] = uid, ty, t, inp, out
        b.hashes.append(ids)
        b.n = j + 1
        if b.n == chunk:
            flush(k)
    for k in range(services):
        flush(k)
    return shards


def read_shard(files: Iterable[Path]) -> Iterator[tuple[Any, ...]]:
    """A shard's requests as the simulator's rows, one chunk in memory at a time."""
    for path in files:
        with np.load(path) as z:
            uid, ty, t, inp, out = (z[c] for c in ("uid", "ty", "t", "inp", "out"))
        ids_path = path.with_suffix(".ids")
        ids = pickle.loads(ids_path.read_bytes()) if ids_path.exists() else None
        uid_l, ty_l, t_l, inp_l, out_l = uid.tolist(), ty.tolist(), t.tolist(), inp.tolist(), out.tolist()
        if ids is None:
            yield from zip(uid_l, ty_l, t_l, inp_l, out_l, strict=True)
        else:
            yield from zip(uid_l, ty_l, t_l, inp_l, out_l, ids, strict=True)


@dataclass
class WorkerCounters:
    busy_s: float
    peak_kv: int
    preemptions: int
    finished: int
    iterations: int


@dataclass
class PoolCounters:
    spec: PoolSpec
    workers: list[WorkerCounters]


@dataclass
class PoolResult:
    """What one pool's task sends back: enough to report it (:class:`planner.sim.report.Replay`)."""

    name: str
    metrics: Metrics
    now: float
    n_events: int
    preemptions: int
    prefix_hits: list[int]
    prefix_tokens: list[int]
    placement_ns: np.ndarray
    pools: list[PoolCounters]
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0


def replay_pool(job: tuple[Any, ...]) -> PoolResult:
    """One task: a service of the plan (a pool, or a split pair's two) on its shard."""
    import resource

    from planner.sim.cluster import simulator_for_service

    inst, d, dec, types, config, files = job
    t0 = time.perf_counter()
    sim = simulator_for_service(inst, d, dec, config, types)
    sim.run(read_shard(files))
    counters = [
        PoolCounters(
            p.spec, [WorkerCounters(w.busy_s, w.peak_kv, w.preemptions, w.finished, w.iterations) for w in p.workers]
        )
        for p in sim.all_pools
    ]
    sim.metrics.writer = None
    return PoolResult(
        sim.services[0].key,
        sim.metrics,
        sim.now,
        sim.n_events,
        sim.preemptions,
        list(sim.prefix_hits),
        list(sim.prefix_tokens),
        sim.placement_ns,
        counters,
        time.perf_counter() - t0,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


@dataclass
class MergedReplay:
    """The pools' results as one replay (:class:`planner.sim.report.Replay`)."""

    metrics: Metrics
    slos: list[tuple[float, float, float]]
    now: float
    placement_ns: np.ndarray
    n_events: int
    preemptions: int
    prefix_hits: list[int]
    prefix_tokens: list[int]
    config: SimConfig
    all_pools: list[PoolCounters]
    results: list[PoolResult]
    shard_s: float = 0.0  # wall seconds of the sharding pass (reading and routing the trace)
    replay_s: float = 0.0  # wall seconds of the pools' tasks, all of them
    samples_t: list[float] = field(default_factory=list)  # load over time is not merged
    samples: list[list[np.ndarray]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        from planner.sim.report import summarize

        return summarize(self)


def merge_metrics(into: Metrics, other: Metrics) -> None:
    """Add ``other``'s counts and histograms to ``into`` (exact: histograms add bin by bin)."""
    into.total += other.total
    into.unmapped += other.unmapped
    into.truncated += other.truncated
    for a, b in zip(into.types, other.types, strict=True):
        a.arrived += b.arrived
        a.finished += b.finished
        a.met += b.met
        a.met_ttft += b.met_ttft
        a.met_tpot += b.met_tpot
        a.met_e2e += b.met_e2e
        a.preempted += b.preempted
        for k, v in b.rejected.items():
            a.rejected[k] += v
        a.ttft.merge(b.ttft)
        a.tpot.merge(b.tpot)
        a.e2e.merge(b.e2e)
        a.queue.merge(b.queue)


def replay_sharded(
    inst: Any,
    plan: Any,
    feed: Iterable[tuple[Any, ...]],
    config: SimConfig,
    executor: Any = None,
    shard_dir: Path | None = None,
    chunk: int | None = None,
    progress: Any = None,
    plan_label: str = "plan",
) -> MergedReplay:
    """The plan replayed on ``feed`` pool by pool (module docstring), the pools as tasks of
    ``executor`` (default: the one in force). ``shard_dir``: where the chunks go (default a
    temporary directory, removed after)."""
    from planner import executor as ex_mod
    from planner.sim.cluster import _slos, decode_pools, plan_routing

    ex = executor or ex_mod.current()
    deployed, routing, routed = plan_routing(inst, plan, plan_label)
    decoders = decode_pools(plan, plan_label)
    type_ids = [q.id for q in inst.query_types]
    slos = _slos(inst)
    front = Metrics(type_ids, slos, None)
    scratch = Path(tempfile.mkdtemp(prefix="planner-shards-", dir=shard_dir))
    t0 = time.perf_counter()
    try:
        shards = shard_trace(feed, Router(routing), len(deployed), front, scratch, chunk)
        t1 = time.perf_counter()
        jobs, names = [], []
        for d, sh in zip(deployed, shards, strict=True):
            if not sh.files:
                continue
            dec = decoders[d.option.pair] if d.role == "prefill" else None
            jobs.append((inst, d, dec, sorted(routed[d.option]), config, sh.files))
            names.append(f"{d.option.pair if dec else d.option.key} ({sh.requests:,} requests)")
        results: list[PoolResult] = ex.map(replay_pool, jobs, names, progress)
        t2 = time.perf_counter()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for r in results:
        merge_metrics(front, r.metrics)
    placement = np.concatenate([r.placement_ns for r in results]) if results else np.zeros(0, np.int64)
    n_types = len(type_ids)
    return MergedReplay(
        front,
        slos,
        max((r.now for r in results), default=0.0),
        placement,
        sum(r.n_events for r in results),
        sum(r.preemptions for r in results),
        [sum(r.prefix_hits[k] for r in results) for k in range(n_types)],
        [sum(r.prefix_tokens[k] for r in results) for k in range(n_types)],
        config,
        [p for r in results for p in r.pools],
        results,
        t1 - t0,
        t2 - t1,
    )


def projection(results: list[PoolResult], workers: int, overhead_s: float) -> float:
    """Wall seconds for these tasks on ``workers`` (longest-first list scheduling of the measured
    per-task seconds, each plus the executor's measured per-task overhead)."""
    loads = [0.0] * max(1, workers)
    for w in sorted((r.wall_s + overhead_s for r in results), reverse=True):
        k = min(range(len(loads)), key=loads.__getitem__)
        loads[k] += w
    return max(loads) if loads else 0.0
