r"""Discrete-event simulator of a vLLM cluster serving a plan, replaying a request trace.

Workers
    One *worker* is one vLLM engine: a replica with pp pipeline stages runs pp virtual engines
    (vLLM's scheduling of pp micro-batches), each with 1/pp of the replica's KV capacity, so a
    replica of pp = 1 is one worker. A worker holds a FIFO waiting queue, the requests it is
    prefilling, and a running decode batch. Each iteration (vLLM's scheduler step):
      1. every running decode contributes one token;
      2. the token budget left, ``prefill_chunk_tokens − decodes`` (vLLM's max_num_batched_tokens
         with decodes first), goes to prefill chunks: partially prefilled requests first, then
         waiting ones admitted in order while running sequences < max_num_seqs and the KV cache
         holds their prompt (head-of-line blocking, as FCFS does);
      3. the iteration lasts exactly what the performance model says it does:
         T = T_tok[P + D] + T_seq[D + chunks] + T_0 + a₂·Σc² + a₁·Σc + a_kc·Σk·c + a_k·Σk + a_C·ΣC
         (:class:`planner.perf.IterationTable`: P prefill tokens in chunks c over k cached tokens,
         D decodes whose contexts sum to ΣC; the tabulated terms are the replica's GEMMs,
         element-wise ops, collectives and host time at that many tokens and sequences);
      4. a request whose last prefill chunk ends samples its first token (TTFT) and joins the
         decode batch; a decode that produced its last token finishes (e2e), freeing its KV.
    KV in tokens: prompt tokens are reserved at admission; a decode holds input + generated
    tokens. When the next step's tokens do not fit, the most recently admitted request is
    preempted and recomputed, as vLLM does: its KV is freed and it goes back to the front of the
    queue with prompt = input + generated so far.

Fast-forward
    Between events nothing changes but the context length, so a run of j pure-decode iterations
    starting at iteration i0 with D decodes lasts (ΣC grows by D each step and enters T linearly)
        T(j) = j·a + b·j(j−1)/2,   a = T_tok[D] + T_seq[D] + T_0 + a_C·(ΣC at i0),  b = a_C·D
    and is simulated as one event, ending at the first completion, the first KV shortfall, or the
    iteration boundary after a new request reaches the worker. Cost is per event, not per token.

Routing and placement
    The plan's routing fractions send each request of type i to an option (or to unserved) by
    smooth weighted round-robin (deterministic, exact shares over every prefix). Inside the
    option's pool a :mod:`planner.sim.policies` policy picks the worker from a load view that is
    either live or a snapshot refreshed every ``staleness_s`` seconds plus the router's own
    dispatches since then. Workers publish their load into the arrays of
    :class:`planner.sim.state.PoolState`, which is all a policy reads: the policies never import
    this module.

Split phase
    A pool may be served by a prefill pool and a decode pool (different tiers allowed): prefill
    workers run chunks only (vLLM's prefill server with max_tokens = 1); the KV of input + 1
    tokens then moves over the network, t = α + bytes/bandwidth, and a decode pool worker (chosen
    by the policy) admits it straight into its decode batch and streams every output token, the
    first at the end of its first step there: TTFT = queue + prefill + transfer + that step, as
    :mod:`planner.disaggregation` prices it.

Prefix caching
    With ``SimConfig.prefix_caching`` (vLLM's default) each worker keeps the blocks of the prompts
    it prefilled in an LRU cache in its free KV (:mod:`planner.sim.prefix`: block mapping, eviction
    order, memory accounting). A request whose trace gives prefix-block ids starts its prefill at
    the longest cached prefix: its first chunk runs with k = the cached tokens (the chunks attend
    to them, T's a_kc and a_k terms), so a fully cached prompt but its last block costs only that
    block. Hits are counted per type (``prefix_hits`` / ``prefix_tokens``). A request may instead
    arrive with a stated number of cached tokens (``arrive(..., cached=k)``), or with a draw u
    against a reuse stated per amount of free KV (``SimConfig.stated_reuse``; the capacity model's,
    :mod:`planner.capacity`): its whole prompt is cached when u is below the share stated for the
    free KV its worker has when it is admitted.

Metrics stream into fixed-size histograms, so memory does not grow with the trace.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.gcpause import paused_gc
from planner.sim.metrics import Metrics
from planner.sim.policies import make_policy
from planner.sim.predict import LengthPredictor
from planner.sim.prefix import PrefixCache, hit_cap
from planner.sim.report import summarize
from planner.sim.state import PoolSpec, PoolState

WAITING, PREFILL, DECODE, TRANSFER, DONE = range(5)


class Req:
    """One request in flight (slots: millions of these are created and dropped)."""

    __slots__ = (
        "arrival",
        "cached",
        "done",
        "draw",
        "first",
        "g",
        "hashes",
        "inp",
        "out",
        "pred",
        "preempted",
        "prompt",
        "s",
        "seq",
        "service",
        "state",
        "ty",
        "uid",
        "ver",
        "worker",
    )

    def __init__(self, uid: int, ty: int, arrival: float, inp: int, out: int) -> None:
        self.uid, self.ty, self.arrival, self.inp, self.out = uid, ty, arrival, inp, out
        self.prompt = inp  # tokens the next prefill computes (input + generated after a preemption)
        self.done = 0  # prompt tokens prefilled so far
        self.g = 0  # tokens generated when the current decode stint began
        self.s = 0  # worker iteration at which the current decode stint began
        self.ver = 0
        self.seq = 0
        self.state = WAITING
        self.first = -1.0
        self.pred = 0.0
        self.worker: Worker | None = None
        self.preempted = 0
        self.service: Service | None = None
        self.hashes: tuple[int, ...] | None = None  # prefix-block ids (planner.sim.prefix), if the trace has them
        self.cached = 0  # prompt tokens stated cached (no ids; taken once)
        self.draw = 1.0  # uniform draw against SimConfig.stated_reuse (1: no stated reuse)


class Worker:
    """One vLLM engine: queue, KV cache and continuous batch (module docstring)."""

    __slots__ = (
        "a_c",
        "a_ctx",
        "a_k",
        "a_kc",
        "a_sq",
        "admit_seq",
        "budget",
        "busy",
        "busy_s",
        "cache",
        "cap",
        "dec_base",
        "finished",
        "fresh",
        "heap",
        "idx",
        "it",
        "iterations",
        "kv_res",
        "max_seqs",
        "n_dec",
        "overrun",
        "peak_kv",
        "pool",
        "preemptions",
        "prefilling",
        "run_a",
        "run_b",
        "run_chunks",
        "run_end",
        "run_j",
        "run_start",
        "run_ver",
        "sim",
        "t0",
        "t_seq",
        "t_tok",
        "waiting",
    )

    def __init__(self, pool: Pool, idx: int, sim: Simulator) -> None:
        spec = pool.spec
        self.pool, self.idx, self.sim = pool, idx, sim
        m = spec.timing
        # Plain Python lists and floats: the hot loop indexes them once per iteration.
        self.t_tok, self.t_seq = m.token_s.tolist(), m.seq_s.tolist()
        self.t0, self.a_sq, self.a_c = m.const_s, m.chunk_sq_s, m.chunk_s
        self.a_kc, self.a_k, self.a_ctx = m.cached_chunk_s, m.cached_s, m.context_s
        self.cap, self.max_seqs, self.budget = spec.kv_capacity, spec.max_num_seqs, spec.token_budget
        self.waiting: deque[Req] = deque()
        self.prefilling: list[Req] = []
        self.heap: list[tuple[int, int, int, Req]] = []  # (finish iteration, uid, ver, req)
        self.n_dec = 0
        self.dec_base = 0  # Σ over decodes of (input + g − s): their KV is dec_base + n_dec·it
        self.kv_res = 0  # tokens reserved by admitted requests not yet decoding here
        self.it = 0
        self.busy = False
        self.run_j = 0
        self.run_start = 0.0
        self.run_a = 0.0
        self.run_b = 0.0
        self.run_end = 0.0
        self.run_ver = 0
        self.run_chunks: list[tuple[Req, int]] = []
        self.busy_s = 0.0
        self.iterations = 0
        self.peak_kv = 0
        self.preemptions = 0
        self.finished = 0
        self.overrun: list[tuple[float, int, int, Req]] = []  # (iteration at which g reaches pred, ...)
        self.admit_seq = 0
        self.fresh: list[Req] = []  # split requests admitted to decode here before their first token
        # vLLM's automatic prefix caching (on by default): an LRU of prompt blocks in free KV.
        self.cache = PrefixCache() if sim.config.prefix_caching else None

    # ------------------------------------------------------------------ state the router sees
    def kv_used(self) -> int:
        return self.kv_res + self.dec_base + self.n_dec * self.it

    def _publish(self) -> None:
        p, i = self.pool, self.idx
        p.queued[i] = len(self.waiting)
        p.active[i] = self.n_dec + len(self.prefilling)
        p.kv[i] = self.kv_used()
        p.n_dec[i] = self.n_dec

    def iters_done(self, now: float) -> int:
        """Iterations of the current decode run completed by ``now`` (0 when not in a run)."""
        if not self.busy or self.run_chunks or self.run_j <= 1:
            return 0
        return min(_iterations_within(self.run_a, self.run_b, now - self.run_start), self.run_j - 1)

    # ------------------------------------------------------------------ arrivals
    def enqueue(self, r: Req, now: float) -> None:
        r.worker, r.state = self, WAITING
        was_empty = not self.waiting
        self.waiting.append(r)
        self.pool.qtok[self.idx] += r.prompt - r.done
        if not self.busy:
            self.start(now)  # publishes the new state
            return
        if was_empty and not self.run_chunks and self.run_j > 1:
            self._cut_run(now)
        self._publish()

    def _cut_run(self, now: float) -> None:
        """End the running decode run at the first iteration boundary at or after ``now``."""
        k = _iterations_within(self.run_a, self.run_b, now - self.run_start)
        k = min(k + 1, self.run_j)
        if k >= self.run_j:
            return
        self.run_j = k
        self.run_end = self.run_start + k * self.run_a + self.run_b * k * (k - 1) / 2
        self.run_ver += 1
        self.sim.push(self.run_end, self, self.run_ver)

    def _stated_share(self) -> float:
        """The stated reuse at this worker's free KV now (``SimConfig.stated_reuse``: the share of
        the most free tokens it asks for that are free, 0 below the first)."""
        free = self.cap - self.kv_used() - self.n_dec
        return max((h for need, h in self.sim.config.stated_reuse if need <= free), default=0.0)

    # ------------------------------------------------------------------ one scheduler step
    def start(self, now: float) -> None:
        """Compose the next iteration (or decode run) and schedule its end; idle when no work."""
        n = self.n_dec
        if n:
            # Decodes need one more KV slot each; preempt the newest until they fit.
            while n and self.kv_used() + n > self.cap:
                self._preempt_newest(now)
                n = self.n_dec
        cache = self.cache
        if cache is not None:  # cached blocks live in free KV: they yield to what runs
            cache.trim(max(0, self.cap - self.kv_used() - n))
        budget = self.budget - n
        chunks: list[tuple[Req, int]] = []
        p_tok, c_sq, kc, k_sum = 0, 0, 0, 0  # Σc, Σc², Σk·c, Σk over this iteration's chunks
        if budget > 0:
            for r in self.prefilling:
                if budget <= 0:
                    break
                c = min(budget, r.prompt - r.done)
                chunks.append((r, c))
                p_tok += c
                c_sq += c * c
                kc += c * r.done
                k_sum += r.done
                budget -= c
            seqs = n + len(self.prefilling)
            while self.waiting and seqs < self.max_seqs:
                r = self.waiting[0]
                need = r.prompt if r.done < r.prompt else r.prompt + 1
                if self.kv_used() + n + need > self.cap:
                    break
                if r.done < r.prompt and budget <= 0:
                    break
                self.waiting.popleft()
                self.admit_seq += 1
                r.seq = self.admit_seq
                seqs += 1
                if r.done >= r.prompt:  # handed over with its KV (split phase): decode right away
                    self._join_decode(r)
                    if r.first < 0:  # its first token is this server's first step for it
                        self.fresh.append(r)
                    n = self.n_dec
                    continue
                r.state = PREFILL
                self.kv_res += r.prompt
                if cache is not None and r.done == 0 and (r.hashes is not None or r.cached or r.draw < 1.0):
                    # The cached head of the prompt is not computed again; its chunks attend to it.
                    # A stated hit (no ids) holds for the first prefill only: after a preemption
                    # its blocks may be gone.
                    found = cache.match(r.hashes, r.inp) if r.hashes is not None else 0
                    if r.draw < 1.0 and r.draw < self._stated_share():
                        found = r.prompt
                    hit = min(max(found, r.cached), hit_cap(r.prompt))
                    r.cached, r.draw = 0, 1.0
                    r.done = hit
                    self.pool.qtok[self.idx] -= hit
                    self.sim.prefix_hits[r.ty] += hit
                    self.sim.prefix_tokens[r.ty] += r.prompt
                self.prefilling.append(r)
                c = min(budget, r.prompt - r.done)
                chunks.append((r, c))
                p_tok += c
                c_sq += c * c
                kc += c * r.done
                k_sum += r.done
                budget -= c
        n = self.n_dec
        if cache is not None:
            cache.trim(max(0, self.cap - self.kv_used() - n))
        if not chunks and n == 0:
            self.busy = False
            self._publish()
            return
        self.busy = True
        ctx = self.dec_base + n * self.it
        if chunks:
            dt = (
                self.t_tok[p_tok + n]
                + self.t_seq[n + len(chunks)]
                + self.t0
                + self.a_sq * c_sq
                + self.a_c * p_tok
                + self.a_kc * kc
                + self.a_k * k_sum
                + self.a_ctx * ctx
            )
            self.run_j, self.run_chunks = 1, chunks
            self.run_start, self.run_a, self.run_b = now, dt, 0.0
        else:
            while self.heap and not _valid(self.heap[0]):
                heapq.heappop(self.heap)
            j = self.heap[0][0] - self.it
            j = min(j, (self.cap - self.kv_used()) // n)
            j = max(j, 1) if self.sim.config.fast_forward else 1
            a = self.t_tok[n] + self.t_seq[n] + self.t0 + self.a_ctx * ctx
            b = self.a_ctx * n
            self.run_j, self.run_chunks = j, []
            self.run_start, self.run_a, self.run_b = now, a, b
            dt = j * a + b * j * (j - 1) / 2
        self.run_end = now + dt
        self.run_ver += 1
        self.sim.push(self.run_end, self, self.run_ver)
        if self.fresh:  # the first iteration of this run (or the chunked one) emits their first token
            first = now + (dt if chunks else self.run_a)
            for r in self.fresh:
                r.first = first
            self.fresh = []
        self._publish()
        pool = self.pool
        pool.run_start[self.idx], pool.run_a[self.idx], pool.run_b[self.idx] = now, self.run_a, self.run_b
        pool.run_j[self.idx] = 0 if chunks else self.run_j

    def end(self, now: float) -> None:
        """The scheduled iteration (or run) ended at ``now``: advance tokens, finish, restart."""
        j = self.run_j
        self.busy_s += now - self.run_start
        self.iterations += j
        self.it += j
        kv = self.kv_used()
        if kv > self.peak_kv:
            self.peak_kv = kv
        self.pool.run_j[self.idx] = 0
        for r, c in self.run_chunks:
            r.done += c
            self.pool.qtok[self.idx] -= c
            if r.done >= r.prompt:
                self.prefilling.remove(r)
                self.kv_res -= r.prompt
                if self.cache is not None and r.hashes is not None:
                    self.cache.insert(r.hashes, r.inp)  # its blocks are computed: later prompts may share them
                r.g += 1  # the last chunk's step samples a token
                split = self.pool.spec.role == "prefill"
                if r.first < 0 and not split:
                    r.first = now
                if r.g >= r.out and not split:
                    self._finish(r, now)
                elif split:
                    self.kv_res += r.prompt  # held until the transfer completes
                    r.state = TRANSFER
                    self.sim.transfer(r, self, now)
                else:
                    self._join_decode(r)
        self.run_chunks = []
        heap = self.heap
        while heap and heap[0][0] <= self.it:
            item = heapq.heappop(heap)
            if _valid(item):
                r = item[3]
                self.n_dec -= 1
                self.dec_base -= r.inp + r.g - r.s
                r.g = r.out
                self._finish(r, now)
        self.busy = False
        self.start(now)

    # ------------------------------------------------------------------ transitions
    def _join_decode(self, r: Req) -> None:
        r.state = DECODE
        r.s = self.it
        r.ver += 1
        self.n_dec += 1
        self.dec_base += r.inp + r.g - r.s
        heapq.heappush(self.heap, (r.s + r.out - r.g, r.uid, r.ver, r))
        if self.sim.track_overrun:  # only a policy that corrects predictions needs it; else it only grows
            heapq.heappush(self.overrun, (r.s + r.pred - r.g, r.uid, r.ver, r))

    def release_transfer(self, r: Req, now: float) -> None:
        """The KV of ``r`` has left this (prefill) worker."""
        self.kv_res -= r.prompt
        if not self.busy:
            self.start(now)
        self._publish()

    def _finish(self, r: Req, now: float) -> None:
        r.state = DONE
        self.finished += 1
        self.sim.finish(r, now)

    def _preempt_newest(self, now: float) -> None:
        newest: Req | None = None
        for item in self.heap:
            if _valid(item) and (newest is None or item[3].seq > newest.seq):
                newest = item[3]
        assert newest is not None
        r = newest
        gen = r.g + self.it - r.s
        self.n_dec -= 1
        self.dec_base -= r.inp + r.g - r.s
        r.ver += 1  # invalidates its heap entries
        r.g = gen
        r.prompt, r.done = r.inp + gen, 0
        r.state = WAITING
        r.preempted += 1
        self.preemptions += 1
        self.sim.preemptions += 1
        self.waiting.appendleft(r)
        self.pool.qtok[self.idx] += r.prompt

    def current_iteration(self, now: float) -> int:
        return self.it + self.iters_done(now)


def _valid(item: tuple[int, int, int, Req]) -> bool:
    r = item[3]
    return r.state == DECODE and r.ver == item[2]


def _iterations_within(a: float, b: float, t: float) -> int:
    """Largest j ≥ 0 with j·a + b·j(j−1)/2 ≤ t."""
    if t <= 0:
        return 0
    if b <= 0:
        return int(t // a) if a > 0 else 1 << 30
    # b/2·j² + (a − b/2)·j − t = 0
    h = a - b / 2
    j = int((-h + math.sqrt(h * h + 2 * b * t)) / b)
    while j > 0 and j * a + b * j * (j - 1) / 2 > t:
        j -= 1
    while (j + 1) * a + b * (j + 1) * j / 2 <= t:
        j += 1
    return j


class Pool(PoolState):
    """The workers of one option (or one phase of a split option), with the arrays the router
    reads (:class:`~planner.sim.state.PoolState`) that they publish into."""

    def __init__(self, spec: PoolSpec, sim: Simulator) -> None:
        super().__init__(spec)
        self.workers = [Worker(self, i, sim) for i in range(self.size)]
        self.caches = [w.cache for w in self.workers]


@dataclass
class Service:
    """An option as the router sees it: one mixed pool, or a prefill pool and a decode pool."""

    key: str
    pools: list[Pool]  # [mixed] or [prefill, decode]
    max_context: int | None

    @property
    def split(self) -> bool:
        return len(self.pools) == 2


@dataclass
class SimConfig:
    policy: str = "aladdin"
    staleness_s: float = 0.0
    heartbeat_s: float = 1.0
    seed: int = 0
    sample_s: float = 10.0
    max_samples: int = 720
    headroom: float = 0.7  # Aladdin: fraction of each SLO bound the packing may fill
    fast_forward: bool = True  # False: one event per iteration (the reference the tests compare to)
    prefix_caching: bool = True  # vLLM's --enable-prefix-caching (its default); hits need hash ids
    # Reuse stated rather than traced (planner.capacity.prefix_hit): (free KV tokens, share h)
    # steps; a request arriving with draw u < h at the free KV of its admission finds its prompt
    # cached (all but vLLM's last block).
    stated_reuse: tuple[tuple[float, float], ...] = ()


class Simulator:
    """Event loop; see the module docstring. Build with :func:`planner.sim.cluster.build_simulator`."""

    def __init__(
        self,
        services: list[tuple[str, list[PoolSpec]]],
        routing: dict[int, list[tuple[int | None, float]]],
        type_ids: list[str],
        slos: list[tuple[float, float, float]],
        prior_output: list[float],
        config: SimConfig,
        per_request: Any = None,
    ) -> None:
        self.config = config
        self.events: list[tuple[float, int, Worker | Req, int]] = []
        self.counter = 0
        self.services: list[Service] = []
        for key, specs in services:
            pools = [Pool(s, self) for s in specs]
            # A split request ends on the decode pool: its whole length must fit that pool too.
            limits = [c for s in specs for c in (s.max_context, s.kv_capacity) if c is not None]
            self.services.append(Service(key, pools, min(limits) if len(specs) > 1 else specs[0].max_context))
        self.type_ids = type_ids
        self.slos = slos
        self.router = Router(routing)
        self.predictors = [LengthPredictor(p) for p in prior_output]
        self.policy = make_policy(config.policy, config.seed, config.headroom, slos)
        self.track_overrun = self.policy.corrects_predictions
        self.metrics = Metrics(type_ids, slos, per_request)
        self.preemptions = 0
        self.prefix_hits = [0] * len(type_ids)  # prompt tokens taken from a prefix cache, per type
        self.prefix_tokens = [0] * len(type_ids)  # prompt tokens of the prefills those were looked up for
        self.placement_ns = np.zeros(0, np.int64)
        self._place_times: list[int] = []
        self.now = 0.0
        self.n_events = 0
        for svc in self.services:
            for p in svc.pools:
                p.view.stale = config.staleness_s > 0
        self.all_pools = [p for svc in self.services for p in svc.pools]
        self.samples_t: list[float] = []
        self.samples: list[list[np.ndarray]] = [[] for _ in self.all_pools]
        self.sample_s = config.sample_s

    # ------------------------------------------------------------------ events
    def push(self, t: float, w: Worker | Req, ver: int) -> None:
        self.counter += 1
        heapq.heappush(self.events, (t, self.counter, w, ver))

    def transfer(self, r: Req, src: Worker, now: float) -> None:
        spec = src.pool.spec
        nbytes = (r.inp + r.g) * spec.kv_bytes_per_token
        dt = spec.network_latency_s + nbytes / spec.network_bytes_per_s
        self.push(now + dt, r, -1)

    def finish(self, r: Req, now: float) -> None:
        w = r.worker
        assert w is not None
        pool = w.pool
        if r.pred > 0:
            pool.account(w.idx, r, -1)
        if self.track_overrun:  # the predictor learns only for a policy that reads it
            self.predictors[r.ty].observe(r.inp, r.out)
        self.metrics.finished(r, now, w.pool.spec.key, w.idx)

    # ------------------------------------------------------------------ placement
    def _place(self, r: Req, pool: Pool, now: float) -> None:
        t0 = time.perf_counter_ns()
        # Predicted lengths and the router-side load they make are kept only for a policy that
        # reads them (Aladdin); the others place on what the workers publish.
        predicting = self.track_overrun
        if predicting and r.pred <= 0:
            r.pred = self.predictors[r.ty].predict(r.inp)
        w = self.policy.choose(pool, r, now)
        self._place_times.append(time.perf_counter_ns() - t0)
        if len(self._place_times) >= 65536:
            self._flush_place_times()
        if predicting:
            pool.account(w, r, 1)
        pool.view.note_sent(w, r.prompt - r.done)
        pool.workers[w].enqueue(r, now)

    def _flush_place_times(self) -> None:
        # Keep a bounded reservoir of placement timings: every decision of the first 64k, then
        # a uniform thinning so memory stays flat.
        arr = np.asarray(self._place_times, np.int64)
        self._place_times = []
        self.placement_ns = np.concatenate([self.placement_ns, arr])
        if len(self.placement_ns) > 262144:
            self.placement_ns = self.placement_ns[::2]

    def arrive(
        self,
        uid: int,
        ty: int | None,
        arrival: float,
        inp: int,
        out: int,
        hashes: tuple[int, ...] | None = None,
        cached: int = 0,
        draw: float = 1.0,
    ) -> None:
        """One request: ``hashes`` its prefix-block ids (matched against the worker's cache),
        ``cached`` the prompt tokens to take as cached without ids (at most vLLM's cap, once),
        ``draw`` its uniform against ``SimConfig.stated_reuse``."""
        self.metrics.arrived(ty)
        if ty is None:
            self.metrics.unmapped += 1
            return
        s = self.router.pick(ty, hashes)
        if s is None:
            self.metrics.rejected(ty, "unserved")
            return
        svc = self.services[s]
        if svc.max_context is not None and inp >= svc.max_context:
            self.metrics.rejected(ty, "context")
            return
        if svc.max_context is not None and inp + out > svc.max_context:
            out = svc.max_context - inp  # vLLM stops at max_model_len
            self.metrics.truncated += 1
        first = svc.pools[0]
        if inp + 1 > first.spec.kv_capacity or (svc.split and inp + 2 > svc.pools[1].spec.kv_capacity):
            self.metrics.rejected(ty, "kv")
            return
        r = Req(uid, ty, arrival, inp, out)
        r.service = svc
        r.hashes = hashes
        r.cached, r.draw = cached, draw
        self._place(r, first, arrival)

    def handoff(self, r: Req, now: float) -> None:
        """A split request's KV arrived: free the prefill worker, place on the decode pool."""
        src = r.worker
        assert src is not None and r.service is not None
        pool = src.pool
        if r.pred > 0:
            pool.account(src.idx, r, -1)
        src.release_transfer(r, now)
        r.prompt = r.done = r.inp + r.g  # KV present: the decode worker admits it straight to decode
        # vLLM's disaggregated serving: the prefill server ran with max_tokens = 1; the decode
        # server streams every token, the first one after its first step (TTFT = prefill +
        # transfer + that step), so it runs all `out` steps.
        r.g = 0
        self._place(r, r.service.pools[1], now)

    # ------------------------------------------------------------------ heartbeat
    def heartbeat(self, now: float) -> None:
        """Aladdin's correction: requests that outlived their predicted length get E[O | O > g]."""
        for pool in self.all_pools:
            for w in pool.workers:
                if not w.overrun:
                    continue
                cur = w.current_iteration(now)
                while w.overrun and w.overrun[0][0] <= cur:
                    _, _, ver, r = heapq.heappop(w.overrun)
                    if r.state != DECODE or r.ver != ver or r.worker is not w:
                        continue
                    gen = r.g + cur - r.s
                    new = self.predictors[r.ty].outlived(r.inp, gen)
                    pool.account(w.idx, r, -1)
                    r.pred = new
                    pool.account(w.idx, r, 1)
                    heapq.heappush(w.overrun, (r.s + new - r.g, r.uid, r.ver, r))

    def sample(self, now: float) -> None:
        self.samples_t.append(now)
        for k, pool in enumerate(self.all_pools):
            kv = pool.kv_now(now) / pool.spec.kv_capacity
            self.samples[k].append(np.stack([pool.queued + pool.active, kv]).astype(np.float32))
        if len(self.samples_t) > self.config.max_samples:  # halve the resolution, keep memory flat
            self.samples_t = self.samples_t[::2]
            self.samples = [s[::2] for s in self.samples]
            self.sample_s *= 2

    # ------------------------------------------------------------------ main loop
    def run(self, requests: Iterable[tuple[int, int | None, float, int, int]]) -> None:
        """Replay ``(uid, type index or None, arrival s, input tokens, output tokens)`` in arrival order."""
        # The loop makes no reference cycles, and a full collection over millions of live
        # objects stalls placement for seconds: pause the cyclic collector for the run.
        with paused_gc():
            self._loop(requests)

    def _loop(self, requests: Iterable[tuple[int, int | None, float, int, int]]) -> None:
        cfg = self.config
        events = self.events
        hb = cfg.heartbeat_s
        st = cfg.staleness_s
        next_hb = hb
        next_snap = st if st > 0 else math.inf
        next_sample = 0.0
        corrects = self.policy.corrects_predictions
        it: Iterator[tuple[int, int | None, float, int, int]] = iter(requests)
        nxt = next(it, None)
        while nxt is not None or events:
            t_arr = nxt[2] if nxt is not None else math.inf
            t_ev = events[0][0] if events else math.inf
            t = min(t_arr, t_ev)
            if t >= next_sample:
                while next_sample <= t:
                    self.sample(next_sample)
                    next_sample += self.sample_s
            if corrects and t >= next_hb:
                self.heartbeat(t)
                next_hb = (math.floor(t / hb) + 1) * hb
            if t >= next_snap:
                snap_t = math.floor(t / st) * st
                for p in self.all_pools:
                    p.view.snapshot(snap_t)
                next_snap = snap_t + st
            if t_ev <= t_arr:
                tt, _, obj, ver = heapq.heappop(events)
                self.now = tt
                self.n_events += 1
                if ver == -1:
                    assert isinstance(obj, Req)
                    self.handoff(obj, tt)
                else:
                    assert isinstance(obj, Worker)
                    if ver == obj.run_ver and obj.busy and obj.run_end == tt:
                        obj.end(tt)
            else:
                assert nxt is not None
                self.now = t_arr
                self.arrive(*nxt)
                nxt = next(it, None)
        self.sample(self.now)
        self._flush_place_times()

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        return summarize(self)


class Router:
    """The plan's router in front of its services: each type's shares by smooth weighted
    round-robin, except that a request whose prompt is mostly a prefix already sent to one service
    goes there (:meth:`follow`): a conversation stays on the model and pool that hold its history,
    as a prefix-aware gateway keeps it (llm-d's prefix scorer, Dynamo's KV router), and as the
    planner's reuse assumes (:func:`planner.capacity.prefix_hit`). The shares then hold per new
    conversation, not per request. Deterministic: the picks depend on the request stream only,
    so a pool replayed on its own share (:func:`planner.validation.split_by_plan`) sees what it
    sees in the whole plan's replay."""

    def __init__(self, routing: dict[int, list[tuple[int | None, float]]]) -> None:
        self.routes = {ty: _SmoothWRR(shares) for ty, shares in routing.items()}
        self.serves = {ty: {k for k, w in shares if k is not None and w > 0} for ty, shares in routing.items()}
        self.owner: dict[int, int] = {}  # prefix block id → the service its last request went to

    def pick(self, ty: int, hashes: tuple[int, ...] | None = None) -> int | None:
        """The service of a request of type ``ty`` (None: unserved, or a type without routes)."""
        route = self.routes.get(ty)
        if route is None:
            return None
        k = self.follow(hashes, self.serves[ty]) if hashes else None
        if k is None:
            k = route.pick()
        if hashes and k is not None:
            owner = self.owner
            for h in hashes:
                owner[h] = k
        return k

    def follow(self, ids: tuple[int, ...], allowed: set[int]) -> int | None:
        """The service that received the longest prefix of these block ids, when that prefix is at
        least half the prompt's blocks (a conversation's next turn re-sends the last one's prompt
        and reply; a shared system prompt alone is not a conversation) and it serves the type."""
        k, m = None, 0
        owner = self.owner
        for h in ids:
            o = owner.get(h)
            if o is None:
                break
            k, m = o, m + 1
        return k if k is not None and 2 * m >= len(ids) and k in allowed else None


class _SmoothWRR:
    """Smooth weighted round-robin (nginx): exact shares over every prefix, no randomness."""

    def __init__(self, shares: list[tuple[int | None, float]]) -> None:
        self.targets = [s for s, _ in shares]
        self.w = np.array([w for _, w in shares], float)
        self.total = float(self.w.sum())
        self.cur = np.zeros(len(shares))

    def pick(self) -> int | None:
        if self.total <= 0:
            return None
        if len(self.targets) == 1:
            return self.targets[0]
        self.cur += self.w
        k = int(np.argmax(self.cur))
        self.cur[k] -= self.total
        return self.targets[k]
