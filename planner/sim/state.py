"""What the replica engine publishes and the placement policies read.

A pool's settings (:class:`PoolSpec`), the load arrays its workers publish and the router-side
predicted load (:class:`PoolState`), the router's live or stale view of them (:class:`LoadView`),
and the fields of a request a policy may read (:class:`Placed`). The engine
(:mod:`planner.sim.engine`) writes all of it; the policies (:mod:`planner.sim.policies`) only read
it. This module imports neither, which is what keeps the simulator's modules free of import
cycles: engine → policies → state, engine → state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from planner.perf import IterationTable


@dataclass
class PoolSpec:
    """Everything a pool's workers need, computed once from the option (see :mod:`planner.sim.cluster`)."""

    key: str  # option key, with a /prefill or /decode suffix for split pools
    option: Any  # planner.options.Option
    replicas: int
    engines_per_replica: int  # pp virtual engines
    gpus_per_replica: int
    kv_capacity: int  # tokens per engine
    max_num_seqs: int  # per engine
    token_budget: int  # vLLM max_num_batched_tokens
    max_context: int | None
    timing: IterationTable  # the replica model's exact iteration times at this pool's settings
    role: str = "mixed"  # mixed | prefill | decode
    kv_bytes_per_token: float = 0.0  # whole model, for split-phase transfers
    network_bytes_per_s: float = 0.0
    network_latency_s: float = 0.0
    tpot_slo: float = math.inf  # strictest TPOT SLO of the types routed here (Aladdin's ATGT bound)


class Placed(Protocol):
    """A request as a placement policy sees it (:class:`planner.sim.engine.Req` is one)."""

    ty: int  # query type index
    inp: int  # input tokens
    pred: float  # predicted output tokens
    prompt: int  # tokens its next prefill computes
    done: int  # of which already prefilled (a split request arrives at its decode pool prefilled)
    hashes: tuple[int, ...] | None  # prefix-block ids (planner.sim.prefix), where the trace has them


def prefill_share(m: IterationTable, inp: int, pred: float) -> float:
    """Prefill seconds per decode step a request brings to its worker's batch (Aladdin's ATGT)."""
    return m.prefill_time(int(inp)) / max(pred, 1.0)


class PoolState:
    """One pool's workers as the router sees them: one slot per worker in each array.

    The engine's :class:`~planner.sim.engine.Pool` extends this with the workers themselves;
    each worker writes its slots whenever its state changes.
    """

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        n = spec.replicas * spec.engines_per_replica
        self.size = n
        self.queued = np.zeros(n, np.int64)
        self.active = np.zeros(n, np.int64)
        self.kv = np.zeros(n, np.int64)
        self.n_dec = np.zeros(n, np.int64)
        self.qtok = np.zeros(n, np.int64)
        # Each worker's decode run (start, step time a, growth b, iterations j; j = 0 while it
        # prefills or idles): KV at any instant follows from them without an event (kv_now).
        self.run_start = np.zeros(n)
        self.run_a = np.ones(n)
        self.run_b = np.zeros(n)
        self.run_j = np.zeros(n, np.int64)
        # Router-side predicted load (Aladdin): requests placed and not finished on each worker.
        self.a_n = np.zeros(n, np.int64)
        self.a_peak = np.zeros(n)  # Σ input + predicted output
        self.a_ctx = np.zeros(n)  # Σ input + predicted output / 2 (mean context over a decode)
        self.a_pf = np.zeros(n)  # Σ prefill seconds per decode step the requests bring
        # Each worker's prefix cache (planner.sim.prefix.PrefixCache, None with caching off), live:
        # a cache-aware router follows the engines' block events (Dynamo's KV events, llm-d's).
        self.caches: list[Any] = [None] * n
        self.view = LoadView(self)

    def kv_now(self, now: float) -> np.ndarray:
        """KV tokens in use at ``now``: the last boundary plus the decode run's progress since."""
        t = np.maximum(now - self.run_start, 0.0)
        a, b = self.run_a, self.run_b
        h = a - b / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            j = np.where(b > 0, (-h + np.sqrt(h * h + 2 * b * t)) / np.where(b > 0, b, 1.0), t / a)
        j = np.clip(np.floor(j), 0, np.maximum(self.run_j - 1, 0))
        return self.kv + self.n_dec * j

    def account(self, i: int, r: Placed, sign: int) -> None:
        """Add (sign 1) or remove (−1) a request's predicted load from worker i's router-side sums."""
        self.a_n[i] += sign
        self.a_peak[i] += sign * (r.inp + r.pred)
        self.a_ctx[i] += sign * (r.inp + r.pred / 2)
        if self.spec.role == "mixed":
            self.a_pf[i] += sign * prefill_share(self.spec.timing, r.inp, r.pred)


class LoadView:
    """What the router knows: live arrays, or a snapshot every ``staleness_s`` plus its own sends."""

    def __init__(self, pool: PoolState) -> None:
        self.pool = pool
        self.stale = False
        n = pool.size
        self.s_queued = np.zeros(n, np.int64)
        self.s_active = np.zeros(n, np.int64)
        self.s_qtok = np.zeros(n, np.int64)
        self.s_kv = np.zeros(n)
        self.sent = np.zeros(n, np.int64)
        self.sent_tok = np.zeros(n, np.int64)

    def snapshot(self, now: float) -> None:
        p = self.pool
        self.s_queued[:] = p.queued
        self.s_active[:] = p.active
        self.s_qtok[:] = p.qtok
        self.s_kv[:] = p.kv_now(now)
        self.sent[:] = 0
        self.sent_tok[:] = 0

    def outstanding(self) -> np.ndarray:
        """Requests queued or running on each worker (JSQ's queue length)."""
        p = self.pool
        if self.stale:
            return self.s_queued + self.s_active + self.sent
        return p.queued + p.active

    def queued_tokens(self) -> np.ndarray:
        if self.stale:
            return self.s_qtok + self.sent_tok
        return self.pool.qtok

    def kv_load(self, now: float) -> np.ndarray:
        """KV tokens in use plus tokens already queued for the worker, as a share of capacity."""
        kv = self.s_kv + self.s_qtok + self.sent_tok if self.stale else self.pool.kv_now(now) + self.pool.qtok
        return kv / self.pool.spec.kv_capacity

    def note_sent(self, w: int, tokens: int) -> None:
        if self.stale:
            self.sent[w] += 1
            self.sent_tok[w] += tokens
