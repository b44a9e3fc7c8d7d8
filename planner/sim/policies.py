"""Placement policies: which worker of an option's pool gets a request.

Every policy implements ``choose(pool, request, now) -> worker index`` on the pool's
:class:`~planner.sim.state.LoadView` (live, or stale by ``staleness_s``) and the router-side
predicted load; it reads only :mod:`planner.sim.state`, never the engine that calls it. Numpy over
the pool's arrays keeps a decision at tens of microseconds with a thousand workers.

Policies are registered by name where they are defined (``@register("jsq")``);
:func:`make_policy` builds one by name and :func:`policy_names` lists them, in definition order,
for the command line. A new policy is one decorated class here.

=================  ==============================================================================
round-robin        next worker in turn (no load information)
jsq                join the shortest queue: fewest requests queued or running (vLLM production
                   stacks' default); ties go to the lower KV load
power-of-two       two workers drawn at random (seeded), the one with fewer outstanding requests
least-kv           lowest KV load: tokens in use plus tokens already queued, share of capacity
aladdin            best fit (Aladdin, Nie et al. 2024): predicted output Ô (historical mean of the
                   input-length bucket); a worker is feasible when
                     seats                  n + 1 ≤ max_num_seqs (n: its unfinished requests)
                     KV at predicted peak   Σ(I + Ô) + I + Ô ≤ KV capacity
                     decode headroom        T_dec(n + 1, Σ(I + Ô/2) + I + Ô/2)
                                            + Σ T_pf(I)/Ô ≤ h·min(TPOT, (e2e − TTFT)/(Ô − 1))
                                            (T_dec: the pool's exact decode iteration time; the
                                            sum: prefill work per decode step that the batch's
                                            requests bring, one prefill per Ô steps)
                     TTFT queue             ⌊Q/b⌋·T(b + D) + T(Q mod b + D) ≤ h·TTFT
                                            (b = max(budget − D, budget/2) prefill tokens per
                                            iteration, T(n) the iteration time at n tokens)
                   (Q = queued prefill tokens + I, D = running decodes, h = headroom); the
                   request goes to the feasible worker with the least leftover room in its
                   binding dimension, else to the one that misses least. Predictions of requests
                   that outlive them are corrected on heartbeats (no migration).
prefix-affinity    cache-aware (Dynamo's KV router, llm-d's prefix scorer): each worker's cost is
                     (queued prefill tokens + the prompt's tokens not in its prefix cache)
                     + KV tokens in use
                   i.e. the prefill work it would still have to do plus its decode load, both in
                   tokens (Dynamo's cost with overlap weight 1); the longest cached prefix wins
                   unless that worker is loaded by more than the prefill it saves (the load
                   guard); ties go to the lower index. Without prefix ids it is least work.
=================  ==============================================================================
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np

from planner.sim.state import Placed, PoolState, prefill_share


@dataclass(frozen=True)
class PolicySettings:
    """What any policy may be built with; each takes what it uses (most take nothing)."""

    seed: int = 0  # power-of-two's draws
    headroom: float = 1.0  # aladdin: share of each SLO bound it packs to
    slos: Sequence[tuple[float, float, float]] = ()  # aladdin: (TTFT, TPOT, e2e) per query type


class Policy:
    """A placement policy, built by :func:`make_policy`; ``name`` is set by :func:`register`."""

    name: ClassVar[str]
    # The engine keeps per-request overrun bookkeeping and re-predicts, on heartbeats, requests
    # that outlived their predicted length only for a policy that reads the predicted load.
    corrects_predictions: ClassVar[bool] = False

    def __init__(self, settings: PolicySettings) -> None:
        pass

    def choose(self, pool: PoolState, r: Placed, now: float) -> int:
        raise NotImplementedError


P = TypeVar("P", bound=type[Policy])
_REGISTRY: dict[str, type[Policy]] = {}


def register(name: str) -> Callable[[P], P]:
    """Class decorator: make a policy known to :func:`make_policy` and the command line as ``name``."""

    def add(cls: P) -> P:
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def policy_names() -> tuple[str, ...]:
    """The registered policies' names, in the order they were registered."""
    return tuple(_REGISTRY)


def make_policy(
    name: str, seed: int = 0, headroom: float = 1.0, slos: Sequence[tuple[float, float, float]] = ()
) -> Policy:
    """The policy registered as ``name``, with the run's seed, packing headroom and SLOs per type."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown policy {name!r} (one of {', '.join(_REGISTRY)})")
    return cls(PolicySettings(seed, headroom, slos))


@register("round-robin")
class RoundRobin(Policy):
    def __init__(self, settings: PolicySettings) -> None:
        self.next: dict[int, int] = {}

    def choose(self, pool: PoolState, r: Placed, now: float) -> int:
        k = self.next.get(id(pool), 0)
        self.next[id(pool)] = (k + 1) % pool.size
        return k


@register("jsq")
class JoinShortestQueue(Policy):
    def choose(self, pool: PoolState, r: Placed, now: float) -> int:
        if pool.size == 1:  # the argmin of one (a capacity measurement's every placement)
            return 0
        v = pool.view
        score = v.outstanding() + 0.5 * np.clip(v.kv_load(now), 0.0, 1.0)
        return int(np.argmin(score))


@register("power-of-two")
class PowerOfTwo(Policy):
    def __init__(self, settings: PolicySettings) -> None:
        self.rng = random.Random(settings.seed)

    def choose(self, pool: PoolState, r: Placed, now: float) -> int:
        if pool.size == 1:
            return 0
        a, b = self.rng.sample(range(pool.size), 2)
        out = pool.view.outstanding()
        if out[a] != out[b]:
            return a if out[a] < out[b] else b
        kv = pool.view.kv_load(now)
        return a if kv[a] <= kv[b] else b


@register("least-kv")
class LeastKV(Policy):
    def choose(self, pool: PoolState, r: Placed, now: float) -> int:
        if pool.size == 1:
            return 0
        return int(np.argmin(pool.view.kv_load(now)))


@register("aladdin")
class Aladdin(Policy):
    corrects_predictions = True

    def __init__(self, settings: PolicySettings) -> None:
        self.headroom = settings.headroom
        self.slos = list(settings.slos)

    def choose(self, pool: PoolState, r: Placed, now: float) -> int:
        spec = pool.spec
        m = spec.timing
        h = self.headroom
        inp, pred = r.inp, r.pred
        role = spec.role
        left = []
        feasible = np.ones(pool.size, bool)
        if role != "prefill":
            # Seats: vLLM runs at most max_num_seqs; a request beyond them waits for a completion.
            seats_left = 1.0 - (pool.a_n + 1) / spec.max_num_seqs
            feasible &= seats_left >= 0
            left.append(seats_left)
            peak = pool.a_peak + (inp + pred)
            kv_left = 1.0 - peak / spec.kv_capacity
            feasible &= kv_left >= 0
            left.append(kv_left)
            ttft_s, tpot_s, e2e_s = self.slos[r.ty]
            limit = min(spec.tpot_slo, tpot_s, (e2e_s - min(ttft_s, e2e_s / 2)) / max(pred - 1, 1.0))
            if np.isfinite(limit):
                # ATGT = decode step at the predicted mean context + the prefill work the batch's
                # requests bring per decode step (each brings one prefill per Ô steps).
                seats = np.minimum(pool.a_n + 1, len(m.seq_s) - 1)
                t_dec = m.decode_time(seats, pool.a_ctx + (inp + pred / 2))
                if role == "mixed":
                    t_dec = t_dec + pool.a_pf + prefill_share(m, inp, pred)
                dec_left = 1.0 - t_dec / (h * limit)
                feasible &= dec_left >= 0
                left.append(dec_left)
        ttft = self.slos[r.ty][0] if role != "decode" else np.inf
        if np.isfinite(ttft):
            q = pool.view.queued_tokens() + (r.prompt - r.done)
            d = pool.n_dec
            per_iter = np.maximum(spec.token_budget - d, spec.token_budget // 2)
            top = len(m.token_s) - 1
            step = m.seq_s[np.minimum(d + 1, len(m.seq_s) - 1)] + m.const_s
            full = m.token_s[np.minimum(per_iter + d, top)] + step
            rest = q % per_iter
            wait = (q // per_iter) * full + np.where(rest > 0, m.token_s[np.minimum(rest + d, top)] + step, 0.0)
            q_left = 1.0 - wait / (h * ttft)
            feasible &= q_left >= 0
            left.append(q_left)
        if not left:
            return int(np.argmin(pool.view.outstanding()))
        room = left[0] if len(left) == 1 else np.minimum.reduce(left)
        if feasible.any():
            return int(np.argmin(np.where(feasible, room, np.inf)))
        return int(np.argmax(room))


@register("prefix-affinity")
class PrefixAffinity(Policy):
    def choose(self, pool: PoolState, r: Placed, now: float) -> int:
        if pool.size == 1:
            return 0
        # kv_load is (KV in use + queued prefill tokens) / capacity: the worker's load in tokens.
        cost = pool.view.kv_load(now) * pool.spec.kv_capacity + (r.prompt - r.done)
        if r.hashes is not None and r.done == 0:
            saved = [0 if c is None else min(c.peek(r.hashes, r.inp), r.prompt - 1) for c in pool.caches]
            cost = cost - np.asarray(saved, dtype=float)
        return int(np.argmin(cost))
