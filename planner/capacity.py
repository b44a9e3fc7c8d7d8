r"""Capacity at an SLO-attainment target: the highest rate one replica sustains, measured.

Model mode with an attainment target (``slo_attainment``, default 0.99; :mod:`planner.problem`)
defines ``throughput_rps[i,k]`` as the highest Poisson arrival rate of type i at which one replica
of option k keeps at least the target share of i's requests inside every SLO limit, and
``ttft_s``/``tpot_s``/``e2e_s`` as the latencies at that quantile at that rate. No closed form
carries what decides these figures — chunked prefill sharing iterations with decodes (so a short
output's TPOT is the few iterations it happened to share with prompt chunks), the token budget
trading prefill throughput against TPOT, length tails, KV-cache preemption — so they are
*measured*: the replica is simulated (:mod:`planner.sim`, whose iterations are exactly the
performance model's, :class:`planner.perf.IterationTable`) under N ≥ 1,200 requests spanning
at least a minute and four request lifetimes, and holding at least 48 requests outside the
target's share (4,800 at 0.99: :func:`sample_size`), with Poisson
arrivals and lengths drawn from the type's distributions (:mod:`planner.lengths`; stratified,
seeded, the same draws at every rate), arrivals Poisson within windows of ``arrival_window_s``
whose rates follow the type's burst profile (``arrival_rate_p90/p99`` with their counting noise
taken out; :func:`rate_factors`) and, where the type states one, its largest burst injected
with its weight (``arrival_burst_*``, the episode around it ``arrival_burst_envelope``;
:func:`burst_arrivals`: attainment is (1 − w)·A(sampled) + w·A(burst) with w the episode's share
of the type's requests; its requests at random instants, a small episode injected several
times over), requests fired together drawn in clusters where the type has them
(``arrival_cluster_*``; :func:`clustered_arrival_times`), the filling of the batch left out as
warm-up (:func:`sample_size`).
Swings that last minutes (``arrival_rate_slow_p90/p99`` over ``arrival_slow_window_s``) are
weighed quasi-statically: one such run per slow state at F_j·r, attainment Σ w_j·F_j·A_j /
Σ w_j·F_j (:func:`slow_strata`). A rate above the type's own is its traffic grown by more users
of the same kind: the profile's relative spread shrinks, the burst keeps its size
(:func:`superposition`). The rate is bracketed around the analytic estimate (the burst's queue
in closed form there; the estimate leaves the episode around the burst, the clusters and the
slow states' length share out) and found by bisection on log r (attainment falls with the rate) to 4%.
A type with prefix reuse (``prefix_hit_ratio``/``prefix_hit_curve``) has a share of its requests
find their prompt cached, as much as the replica's free KV holds at each admission
(:func:`prefix_steps`, :func:`prefix_hit`).
Results are cached in memory and on disk (:func:`_disk_dir`), keyed by everything they depend on.

Before simulation (the solvers' lazy loop, :func:`planner.solvers.solve`)
    Simulating every pair would take minutes to hours, so the option table starts from the
    analytic estimate of :func:`estimate_figures` (``source: model-estimate``) and a solve
    simulates only the pairs its solution uses. The estimate is not a bound: a pair whose estimate
    is too low may never be simulated, so a plan is optimal for the table it was solved on (its
    pairs simulated, the others estimated), not for a fully simulated one. Two cheap figures frame
    it (:func:`bound_figures`): the idle ceiling (share of requests meeting every limit alone on a
    replica; below the target the pair is not eligible) and the rate bound
        r̄ = min( 1 / E[T_pf(I)],  B̄ / (E[O] · t_dec(B̄)) )
    (prefill work alone, and decode-only steps at the largest batch B̄ = min(max_num_seqs,
    KV / E[I + O])), the top of the estimate's and the search's rate range.

Limits (stated, not hidden): arrivals are Poisson within windows, the windows independent but
for the slow states (which are taken as lasting far longer than a queue needs to settle), the
slow and fast factors independent, and lengths stationary over the hour (their pairing drawn by
the Gaussian copula of ``length_correlation``); a pool of y replicas is planned as y times one
replica (JSQ pooling is not credited); types sharing a pool share it in proportion to their loads, each against its
measured rate with its TPOT held to the tightest limit among the pool's types (``Key.tpot_s``;
the rule is :mod:`planner.options`' shared-pool rows). A mixed pool's interference beyond that
(one type's long prompts delaying another's first tokens) is not modelled. Stated prefix reuse
is all-or-nothing per request and presumes prefix-affinity routing (conversations kept on a
replica); a split pair's pools run without it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.lengths import LengthDistribution, norm_ppf
from planner.perf import IterationTable, ReplicaModel

if TYPE_CHECKING:
    from planner.options import Option
    from planner.problem import Instance, QueryType

SIM_REQUESTS = 1200
WARMUP = 0.05
RATE_RESOLUTION = 1.04  # the rate search stops when its bracket is within 4%


@dataclass(frozen=True)
class Capacity:
    """One (option, type) at an attainment target (module docstring); figures in s and req/s."""

    rate_rps: float  # 0 when even an idle replica misses the target
    ttft_s: float
    tpot_s: float
    e2e_s: float
    attainment: float  # measured at rate_rps (the ceiling when rate_rps is 0)
    ceiling: float  # share meeting every limit alone on an idle replica
    max_num_seqs: int
    simulated: bool  # False: the analytic estimate (or the idle ceiling's verdict) of the module docstring
    reason: str = ""
    # share of the type's prompt tokens taken from the prefix cache at rate_rps (its stated reuse
    # as the replica's free KV allowed it, :func:`prefix_steps`); 0 without reuse
    prefix_hit: float = 0.0


@dataclass(frozen=True)
class Key:
    """What a capacity depends on; hashable, picklable."""

    fingerprint: str  # of what the pair's capacity depends on (:func:`fingerprint`)
    option: Option
    type_index: int
    target: float
    # A TPOT limit tighter than the type's own: the type's capacity in a pool shared with a type
    # whose TPOT SLO is tighter (every running decode advances at the pool's iteration pace).
    tpot_s: float | None = None
    # One side of a split prefill/decode pair (:func:`split_keys`): ``option`` is the prefill
    # configuration, ``decode`` the decode one; ``side`` the pool measured (one replica of it),
    # ``helpers`` the other pool's replicas (enough that it never binds), ``batch`` the decode
    # pool's batch cap, ``top`` the search's upper rate and ``guess`` its starting rate.
    decode: Option | None = None
    side: str = ""
    helpers: int = 0
    batch: int | None = None
    top: float = 0.0
    guess: float = 0.0


@dataclass(frozen=True)
class Engine:
    """One replica's engine as the bound needs it: exact iteration times and memory limits."""

    timing: IterationTable
    kv_capacity: int  # tokens per engine (one pipeline stage's virtual engine)
    max_len: int  # vLLM max_model_len: min(model context, engine KV)
    max_num_seqs: int

    @classmethod
    def of(cls, rm: ReplicaModel, option: Option) -> Engine:
        q = rm.q
        kv = rm.fit().kv_capacity_tokens // option.pp
        ctx = min(rm.m.max_context_tokens or kv, kv)
        return cls(rm.iteration_table(q.prefill_chunk_tokens, q.max_num_seqs), kv, ctx, q.max_num_seqs)


def lengths_of(q: QueryType, max_len: int) -> tuple[LengthDistribution, LengthDistribution]:
    """Prompt and output length distributions of a type, prompts capped below ``max_len``."""
    inp = LengthDistribution.of(
        q.input_tokens,
        q.input_tokens_p50,
        q.input_tokens_p90,
        q.input_tokens_p99,
        max_tokens=max(min(max_len - 1, q.input_tokens_max or math.inf), 1),
        p10=q.input_tokens_p10,
        min_tokens=q.input_tokens_min or 1.0,
        percentiles=q.input_tokens_percentiles or (),
    )
    out = LengthDistribution.of(
        q.output_tokens,
        q.output_tokens_p50,
        q.output_tokens_p90,
        q.output_tokens_p99,
        max_tokens=min(max_len, q.output_tokens_max or math.inf),
        p10=q.output_tokens_p10,
        min_tokens=q.output_tokens_min or 1.0,
        percentiles=q.output_tokens_percentiles or (),
    )
    return inp, out


_FINGERPRINTS: dict[tuple[int, str, str, int], tuple[Instance, str]] = {}
_PRICE_FIELDS = {"price_per_hour", "price_source", "available", "k8s_node_selector", "sources"}


def fingerprint(inst: Instance, option: Option, type_index: int) -> str:
    """Hash of what one pair's capacity depends on: the model, the tier's hardware (not its price
    or availability), the performance factors and calibration, and the type's lengths, SLO and
    burst shape (its rate only through the burst ratios and the rounded counting-noise shrink,
    :func:`burst_shrink`) — so re-pricing a tier, re-rating a type
    or adding a model reuses every simulated capacity. Memoised per instance object."""
    memo = (id(inst), option.model, option.gpu, type_index)
    hit = _FINGERPRINTS.get(memo)
    if hit is not None and hit[0] is inst:
        return hit[1]
    q = inst.query_types[type_index]
    bursty = (q.arrival_rate_p90 is not None or q.arrival_rate_p99 is not None) and q.arrival_rate > 0
    type_doc = q.model_dump(
        include={"id", "input_tokens", "output_tokens", "slo", "length_correlation"}
        | {f"{s}_tokens_{p}" for s in ("input", "output") for p in ("min", "p10", "p50", "p90", "p99", "max")}
    )
    for side in ("input", "output"):  # only where given: a type without them keeps its fingerprint
        table = getattr(q, f"{side}_tokens_percentiles")
        if table is not None:
            type_doc[f"{side}_tokens_percentiles"] = [list(k) for k in table]
    if bursty:
        type_doc["burst"] = [
            None if v is None else v / q.arrival_rate for v in (q.arrival_rate_p90, q.arrival_rate_p99)
        ]
        type_doc["window"] = inst.arrival_window_s
        type_doc["shrink"] = burst_shrink(q, inst.arrival_window_s)
    if _has_profile(q, True):
        type_doc["slow"] = [
            None if v is None else v / q.arrival_rate for v in (q.arrival_rate_slow_p90, q.arrival_rate_slow_p99)
        ]
        type_doc["slow_window"] = inst.arrival_slow_window_s
        type_doc["slow_shrink"] = burst_shrink(q, inst.arrival_slow_window_s, True)
        type_doc["slow_length_share"] = q.arrival_slow_length_share
    if q.arrival_burst_rate is not None and q.arrival_rate > 0:
        type_doc["largest_burst"] = [q.arrival_burst_rate / q.arrival_rate, q.arrival_burst_s, q.arrival_burst_share]
        type_doc["burst_envelope"] = [[sec, r / q.arrival_rate] for sec, r in q.arrival_burst_envelope or ()]
    if has_prefix(q):
        # the curve's cache sizes are over the type's traffic at its rate (:func:`prefix_hit`)
        type_doc["prefix"] = [q.prefix_hit_ratio, [list(k) for k in q.prefix_hit_curve or ()]]
        if q.prefix_hit_curve is not None:
            type_doc["prefix_rate"] = prefix_rate(q)
    clustered = q.arrival_cluster_s is not None and q.arrival_rate > 0
    if clustered:
        type_doc["cluster"] = [q.arrival_cluster_s, q.arrival_cluster_excess]
    if (bursty or clustered or q.arrival_burst_rate is not None) and q.arrival_rate > 0:  # all scale against it
        type_doc["own_rate"] = own_rate(q)
    parts = [
        inst.model(option.model).model_dump_json(),
        json.dumps(inst.gpu(option.gpu).model_dump(exclude=_PRICE_FIELDS), sort_keys=True),
        inst.performance_params.model_dump_json(),
        str(inst.calibration),
        json.dumps(type_doc, sort_keys=True),
        str(type_index),
    ]
    fp = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
    if len(_FINGERPRINTS) > 65536:
        _FINGERPRINTS.clear()
    _FINGERPRINTS[memo] = (inst, fp)
    return fp


_CACHE: dict[Key, Capacity] = {}


@functools.lru_cache(maxsize=4096)
def _type_samples(q: QueryType, type_index: int, context: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-rate Poisson gaps and stratified (prompt, output) lengths of a type, seeded by the
    type: the same draws at every rate and on every option (common random numbers)."""
    rng = np.random.default_rng(int(hashlib.sha256(f"{q.id}|{type_index}".encode()).hexdigest()[:8], 16))
    d_in, d_out = lengths_of(q, context)
    gaps = rng.exponential(1.0, n)
    inp, out = d_in.sample(n, rng), d_out.sample(n, rng)
    rho = q.length_correlation or 0.0
    if rho and n > 1:
        # Gaussian copula: the outputs' normal scores are ρ·z_in + √(1−ρ²)·ε, and the (stratified)
        # output sample is handed out in the order of those scores, so both marginals stay
        # exactly as drawn and only the pairing changes.
        z_in = norm_ppf((np.argsort(np.argsort(inp, kind="stable"), kind="stable") + 0.5) / n)
        score = rho * z_in + math.sqrt(1.0 - rho * rho) * rng.standard_normal(n)
        out = np.sort(out)[np.argsort(np.argsort(score, kind="stable"), kind="stable")]
    return gaps, inp, out


NO_CLIP = 10_000_000  # lengths are drawn unclipped: a prompt beyond a model's context is a miss


def samples(inst: Instance, option: Option, type_index: int, n: int = SIM_REQUESTS) -> tuple[np.ndarray, ...]:
    """The type's draws (the same on every option: a model whose context is too short for some
    prompts rejects them, and they count against its attainment, as vLLM would refuse them)."""
    return _type_samples(inst.query_types[type_index], type_index, NO_CLIP, n)


def has_prefix(q: QueryType) -> bool:
    return q.prefix_hit_ratio is not None or q.prefix_hit_curve is not None


def prefix_rate(q: QueryType) -> float:
    """λ₀: the rate of the traffic the type's ``prefix_hit_curve`` describes (default its own)."""
    return q.prefix_hit_rate or q.arrival_rate


def prefix_max(q: QueryType) -> float:
    """The most reuse the type states: the unbounded cache's ratio (else the curve's last)."""
    if q.prefix_hit_ratio is not None:
        return q.prefix_hit_ratio
    return q.prefix_hit_curve[-1][1] if q.prefix_hit_curve else 0.0


def prefix_hit(q: QueryType, kv_capacity: int, rate: float, limits: tuple[float, float, float]) -> float:
    r"""h(r): the share of a type's prompt tokens one replica at rate r takes from its prefix cache.

    vLLM keeps cached blocks in the KV cache the running requests leave free, so the reuse a
    replica reaches is bounded by that space. With the type's ``prefix_hit_curve`` H(c) (an ideal
    LRU cache of c tokens over the type's traffic at ``prefix_hit_rate`` λ₀, default its rate):

        free KV   c_r = max(0, KV − r·life·E[I + O/2])    (Little, at the SLO-bound request life:
                                                         :func:`request_life`, so c_r is low)
        h(r)      = H(c_r · λ₀ / r)                     (H of the largest measured size ≤ that,
                                                         0 below the first)

    λ₀/r: with prefix-affinity routing (:mod:`planner.sim.policies`' ``prefix-affinity``) a
    replica serving r requests/s sees the sessions behind them, whose working set is r/λ₀ of the
    curve's, so its c_r tokens of cache act as c_r·λ₀/r on the curve — whatever the type's rate
    (more users of the same kind: more sessions, not longer ones) and however many replicas the
    type is spread over. Routing that ignores prefixes
    (jsq, round robin) sends each session's next request to any replica: each cache then sees the
    whole working set and reaches about H(c_r), less — the plan assumes affinity routing for types
    with reuse, and its replay measures what the routing reaches. H is taken as a step, not
    interpolated: an LRU cache's hit ratio grows with its size (a stack algorithm: the smaller
    cache's contents are always in the larger's), so a measured point is a lower bound for every
    larger size, while the curve between points may bend either way (Mooncake's long-32k: 0.044 at
    500k tokens, 0.078 at 1M, 0.172 at 2M). Without a curve, h = the stated ratio at any size (no
    KV bound).

    This closed form (in-flight KV at the SLO-bound life) is the analytic estimate's; the
    simulation reads each worker's free KV as each request is admitted (:func:`prefix_steps`) and
    the capacity records the share it reached (``Capacity.prefix_hit``)."""
    if q.prefix_hit_curve is None:
        return q.prefix_hit_ratio or 0.0
    if rate <= 0:
        return q.prefix_hit_curve[-1][1]
    inflight = rate * request_life(q, limits) * (q.input_tokens + q.output_tokens / 2)
    equiv = max(0.0, kv_capacity - inflight) * prefix_rate(q) / rate
    return max((h for c, h in q.prefix_hit_curve if c <= equiv), default=0.0)


def prefix_steps(q: QueryType, rate: float) -> tuple[tuple[float, float], ...]:
    """The type's reuse for a simulated replica at mean rate r (``SimConfig.stated_reuse``): with a
    curve, (c_j·r/λ₀ free KV tokens, H(c_j)) — the free KV a replica at r needs to act as the
    curve's c_j (:func:`prefix_hit`), read at each request's admission from the simulated
    worker's own KV, not estimated; without one, the stated ratio at any free KV."""
    if q.prefix_hit_curve is None:
        return ((0.0, q.prefix_hit_ratio),) if q.prefix_hit_ratio else ()
    base = prefix_rate(q)
    return tuple((c * rate / base, h) for c, h in q.prefix_hit_curve)


@functools.lru_cache(maxsize=4096)
def _prefix_draws(q: QueryType, type_index: int, n: int) -> np.ndarray:
    """Stratified uniforms u_j, one per request, seeded by the type: request j is a cache hit when
    u_j < h (:func:`prefix_cached`), so exactly ⌈h·n⌉ of n are, the same ones at every rate."""
    rng = np.random.default_rng(int(hashlib.sha256(f"prefix|{q.id}|{type_index}".encode()).hexdigest()[:8], 16))
    return (rng.permutation(n) + 0.5) / n


def prefix_cached(q: QueryType, type_index: int, inp: np.ndarray, hit: float) -> np.ndarray:
    r"""Cached prompt tokens per request at reuse h: all-or-nothing — a share h of the requests,
    drawn independently of their lengths, finds its whole prompt cached but vLLM's last block
    (:func:`planner.sim.prefix.hit_cap`), the rest nothing, so the token-weighted share is h (a
    little less: the last block). Traces spread it: Mooncake's chat-8k requests find a median
    0.40 of their prompt cached, 0.08 at p10 and 0.85 at p90. All-or-nothing keeps the same
    prefill work with the widest spread of TTFTs — every uncached prompt pays its whole
    prefill — so the tail it plans for is the worst that share of reuse allows."""
    if hit <= 0:
        return np.zeros(len(inp), np.int64)
    from planner.sim.prefix import VLLM_BLOCK

    u = _prefix_draws(q, type_index, len(inp))
    cap = np.maximum(0, (np.asarray(inp, np.int64) - 1) // VLLM_BLOCK * VLLM_BLOCK)
    return np.where(u < hit, cap, 0)


WINDOWS = 256  # stratified window-rate factors per type (the burst profile's resolution)


SHRINK_STEP = 0.05  # burst_shrink is rounded to this (module docstring of rate_factors)


def _observed_profile(q: QueryType, slow: bool = False) -> LengthDistribution:
    """The window rates' distribution the percentiles describe (``arrival_rate_p90/p99``, or the
    slow windows' ``arrival_rate_slow_p90/p99``), in units where the mean is 1000
    (:mod:`planner.lengths`' quantile form; lengths clip at 1, so rates below 1/1000 of the mean
    are 1/1000)."""
    unit = 1000.0 / q.arrival_rate
    p90, p99 = _profile_figures(q, slow)
    return LengthDistribution.of(
        1000.0, p90=None if p90 is None else p90 * unit, p99=None if p99 is None else p99 * unit
    )


def _profile_figures(q: QueryType, slow: bool) -> tuple[float | None, float | None]:
    """(p90, p99) of the type's window rates: the slow windows' or the burst windows'."""
    return (q.arrival_rate_slow_p90, q.arrival_rate_slow_p99) if slow else (q.arrival_rate_p90, q.arrival_rate_p99)


def _has_profile(q: QueryType, slow: bool = False) -> bool:
    """Whether the type states a rate profile of that kind (and a rate to scale it against)."""
    return any(v is not None for v in _profile_figures(q, slow)) and q.arrival_rate > 0


@functools.lru_cache(maxsize=1024)
def burst_shrink(q: QueryType, window_s: float, slow: bool = False) -> float:
    r"""How much of the observed window-rate spread is the traffic's own, k ∈ [0, 1].

    ``arrival_rate_p90/p99`` are percentiles of *counted* rates: N_j / W with N_j ~
    Poisson(λ·W·f_j) given the window's intensity factor f_j (a Cox process). Counting adds its
    own variance: Var(N/(λW)) = Var(f) + 1/(λW). The simulation draws Poisson arrivals inside each
    window again, so the profile it runs must be the intensity's, not the counts': the observed
    factors g (mean 1) are shrunk towards 1, f = 1 + k·(g − 1), with

        k = √max(0, 1 − 1/(λ·W·Var(g)))        (method of moments on the variance)

    A type at 0.23 req/s in 10-s windows (mooncake-2025's doc-128k: 2.3 requests per window)
    has observed p99/mean 2.6 that is all counting noise, k = 0; azure-2023's code (25.7 per
    window, Var(g) = 1.7) keeps k = 0.99. k is rounded to SHRINK_STEP so that a type re-rated by a
    few percent (a multi-period window) reuses its simulated capacities. ``slow``: the same for
    the slow windows' percentiles (``window_s`` then the slow window)."""
    if not _has_profile(q, slow):
        return 1.0
    g = _observed_profile(q, slow).quantile((np.arange(4001) + 0.5) / 4001) / 1000.0
    var = float(np.var(g / g.mean()))
    if var <= 0:
        return 0.0
    k = math.sqrt(max(0.0, 1.0 - 1.0 / (q.arrival_rate * window_s * var)))
    return round(k / SHRINK_STEP) * SHRINK_STEP


# Quantile strata of the slow profile: the bulk in two, the upper tail finer (the states a 1% miss
# budget is decided in).
SLOW_EDGES = (0.0, 0.5, 0.9, 0.98, 1.0)


@functools.lru_cache(maxsize=1024)
def slow_strata(q: QueryType, slow_window_s: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The type's slow states: intensity factors F_j of minutes-long windows (mean 1 over the
    weights) and their weights w_j (shares of time), one per stratum of SLOW_EDGES; without
    ``arrival_rate_slow_p90/p99`` one state F = 1.

    A surge that lasts minutes outlives a replica's queue by far: over it the replica is in the
    steady state of load F·r, so its attainment over the hour is quasi-static,

        A(r) = Σ_j w_j·F_j·A_fast(F_j·r) / Σ_j w_j·F_j          (requests weighted by load)

    with A_fast the attainment under the fast (window-scale) profile left once the slow one is
    taken out (:func:`rate_factors`). F_j is the mean of the slow profile's quantile function over
    stratum j (counting noise taken out, :func:`burst_shrink` on the slow window).

    F is load (token-weighted, ``arrival_rate_slow_p90/p99``): a share β =
    ``arrival_slow_length_share`` of it is longer requests — the state runs at rate
    F^(1−β)·r with both lengths scaled by F^β — the rest more of them (a stretch of long prompts
    queues more than as many more requests: the M/G/1 wait grows with E[S²])."""
    if not _has_profile(q, True):
        return np.ones(1), np.ones(1)
    u = (np.arange(4000) + 0.5) / 4000
    g = _observed_profile(q, True).quantile(u) / 1000.0
    g = g / g.mean()
    g = 1.0 + burst_shrink(q, slow_window_s, True) * (g - 1.0)
    edges = np.asarray(SLOW_EDGES)
    f = np.array([g[(u >= a) & (u < b)].mean() for a, b in itertools.pairwise(edges)])
    w = np.diff(edges)
    return f / float(w @ f), w


@functools.lru_cache(maxsize=1024)
def rate_factors(
    q: QueryType, type_index: int, windows: int = WINDOWS, window_s: float = 10.0, slow_window_s: float = 300.0
) -> np.ndarray:
    r"""Burst profile of a type: the intensity of each of ``windows`` windows of ``window_s`` as a
    multiple of the mean, f_j ≥ 0 with mean 1, stratified over the distribution that
    ``arrival_rate`` (mean) and ``arrival_rate_p90/p99`` describe (:mod:`planner.lengths`'
    quantile form) with the counting noise taken out (:func:`burst_shrink`), in a seeded random
    order. Without percentiles every f_j = 1: Poisson at the mean rate.

    With slow states (:func:`slow_strata`) the window percentiles hold both the slow swing and
    the fast one; the fast profile is what is left: with independent factors E[(F·f)²] =
    E[F²]·E[f²], so Var(f) = (1 + Var(g))/(1 + Var(F)) − 1 (≥ 0), and f = 1 + c·(g − 1) with
    c = √(Var(f)/Var(g)) keeps the observed shape.

    What it does not carry: bursts below the window's scale, and the order of the slow states.
    A trace whose single largest burst decides attainment (azure-2023's code: 268 requests within
    5 s) is beyond any percentile profile; ``planner demand --figures`` warns about it and writes
    it, and the simulation injects it (:func:`burst_arrivals`). (Until 2026-12 the observed spread was used as the
    intensity's: the double count made low-rate types look 2–3× burstier than they are, and
    mooncake-2025's doc-128k capacities 30% pessimistic.)"""
    if not _has_profile(q):
        return np.ones(1)
    u = (np.arange(windows) + 0.5) / windows
    g = _observed_profile(q).quantile(u)
    g = g / g.mean()
    f = 1.0 + burst_shrink(q, window_s) * (g - 1.0)
    big, wts = slow_strata(q, slow_window_s)
    if len(big) > 1:
        var_f = float(np.var(f))
        var_fast = max(0.0, (1.0 + var_f) / (1.0 + float(wts @ (big - 1.0) ** 2)) - 1.0)
        f = 1.0 + (math.sqrt(var_fast / var_f) if var_f > 0 else 0.0) * (f - 1.0)
    rng = np.random.default_rng(int(hashlib.sha256(f"{q.id}|{type_index}|windows".encode()).hexdigest()[:8], 16))
    return f[rng.permutation(windows)]


def sample_windows(requests: int, rate: float, window_s: float) -> int:
    """How many windows a simulated sample of ``requests`` at mean ``rate`` spans: the profile is
    stratified over exactly those, so every sample meets the whole burst distribution once,
    whatever the rate (a fixed cycle of 256 windows was met only in a rate-dependent prefix: at
    2 req/s 1,200 requests saw 60 of them, at 100 req/s one). At least 1; at most WINDOWS."""
    return int(min(max(requests / max(rate * window_s, 1e-12), 1.0), WINDOWS))


def arrival_times(gaps: np.ndarray, rate: float, factors: np.ndarray, window_s: float) -> np.ndarray:
    """Arrival times at mean ``rate``: the unit-rate points cumsum(gaps) mapped through the
    cumulative intensity of the piecewise-constant profile rate·f_j on windows of ``window_s``
    (cycling through the factors). The same points at every rate: common random numbers."""
    a = np.cumsum(gaps)
    if len(factors) == 1:
        return a / (rate * factors[0])
    mass = rate * factors * window_s  # intensity mass of each window
    cycle = float(mass.sum())
    reps = int(a[-1] // cycle) + 1
    ends = np.cumsum(np.tile(mass, reps))
    j = np.searchsorted(ends, a, side="right")
    start_mass = ends[j] - np.tile(mass, reps)[j]
    f = np.tile(factors, reps)[j]
    return j * window_s + (a - start_mass) / (rate * np.maximum(f, 1e-12))


def cluster_size(q: QueryType, rate: float, window_s: float) -> float:
    r"""Mean companions a per cluster head of the type at one replica fed ``rate`` of it (0 without
    clusters). Clusters of 1 + Geometric(a) requests within s = ``arrival_cluster_s`` of their
    head give each request 2a others nearby; ``planner demand --figures`` counts them against
    each window's own count, which holds the clusters too, so it sees x = 2a·(1 − κ) with
    κ = 2s/W − s²/W² the chance that two requests of a W-s window fall within s (0.36 at 2 s in
    10 s). A replica keeps a share min(r, λ)/λ of a cluster's others (thinning; above λ each copy
    of the traffic keeps its own): a = x·min(r, λ)/λ / (2(1 − κ))."""
    if q.arrival_cluster_s is None or not q.arrival_cluster_excess or q.arrival_rate <= 0:
        return 0.0
    s, w = q.arrival_cluster_s, window_s
    kappa = 2 * s / w - (s / w) ** 2 if s < w else 1.0
    lam = own_rate(q)
    return q.arrival_cluster_excess * min(rate, lam) / lam / (2.0 * max(1.0 - kappa, 0.05))


def clustered_arrival_times(
    q: QueryType, type_index: int, gaps: np.ndarray, rate: float, factors: np.ndarray, window_s: float, mean_rate: float
) -> np.ndarray:
    """Arrival times of ``len(gaps)`` requests at ``rate`` (windows of ``factors``,
    :func:`arrival_times`), drawn in the type's clusters (:func:`cluster_size`) where it has
    them: cluster heads arrive as the Poisson stream at rate r/(1 + a) over the same unit gaps,
    each with G ~ Geometric(a) companions at uniform instants within ``arrival_cluster_s`` after
    it (G by inversion of seeded uniforms, so a larger a grows the same clusters: common random
    numbers across rates); requests in order of their head. Seeded by the type and the count."""
    n = len(gaps)
    a = cluster_size(q, mean_rate, window_s)
    if a <= 0.0 or n < 2:
        return arrival_times(gaps, rate, factors, window_s)
    assert q.arrival_cluster_s is not None
    rng = np.random.default_rng([int(hashlib.sha256(q.id.encode()).hexdigest()[:8], 16), type_index, n, 7])
    u, v = 1.0 - rng.random(n), rng.random(n)  # u in (0, 1]
    companions = np.floor(np.log(u) / math.log(a / (1.0 + a))).astype(np.int64)
    sizes = 1 + companions
    heads = int(np.searchsorted(np.cumsum(sizes), n)) + 1  # enough clusters for n requests
    head_t = arrival_times(gaps[:heads], rate / (1.0 + a), factors, window_s)
    owner = np.repeat(np.arange(heads), sizes[:heads])[:n]  # the cluster of each request
    first = np.r_[0, np.cumsum(sizes[:heads])[:-1]]
    is_head = np.zeros(n, dtype=bool)
    is_head[first[first < n]] = True
    return np.where(is_head, head_t[owner], head_t[owner] + v * q.arrival_cluster_s)


def _limits(q: QueryType, tpot_s: float | None = None) -> tuple[float, float, float]:
    """(ttft, tpot, e2e) limits of type q, its TPOT held to ``tpot_s`` when that is tighter."""
    tpot = min(q.slo.tpot_s or math.inf, tpot_s if tpot_s is not None else math.inf)
    return (q.slo.ttft_s or math.inf, tpot, q.slo.e2e_s or math.inf)


RATE_GRID = 2 ** (1 / 16)  # own_rate is rounded to this geometric grid (4.4% steps)


def own_rate(q: QueryType) -> float:
    """The type's own arrival rate λ as the burst profile is scaled against it: rounded on a
    geometric grid of RATE_GRID so that a type re-rated by a few percent (a multi-period window)
    reuses its simulated capacities; 0 without a rate."""
    if q.arrival_rate <= 0:
        return 0.0
    return float(RATE_GRID ** round(math.log(q.arrival_rate) / math.log(RATE_GRID)))


def superposition(q: QueryType, rate: float | np.ndarray) -> float | np.ndarray:
    r"""How much of the burst profile's relative spread a replica fed ``rate`` of the type sees,
    s ∈ (0, 1]: 1 up to the type's own rate λ (:func:`own_rate`), less above it.

    Below λ a replica sees a thinned share of the type's traffic: each request kept or not,
    independently, so the window intensities keep their relative spread (f_j·r) and the largest
    burst keeps its share. Above λ there is no such traffic to thin: r is the type's traffic
    grown — more users of the same kind, m = r/λ: k − 1 = ⌈m⌉ − 1 whole independent copies of
    what the trace recorded and a share x = m − k + 1 of one more. Intensities add, so the
    relative variance is Σ p_i²·Var(f) / m², and f → 1 + s·(f − 1) with

        s = √(k − 1 + x²) / m          (= 1/√m at whole m; continuous, falling in m)

    Each whole copy carries its own largest burst at full size, so the burst stays ⌈N_b⌉
    requests (:func:`burst_requests`) while the background grows. (Until 2026-12 the relative
    profile and the burst were kept at any rate: code's capacity on mistral-7b/h200/tp8 was 14×
    pessimistic against replay — its 271-request burst scaled to 6,800.)"""
    lam = own_rate(q)
    if lam <= 0:
        return 1.0 if np.isscalar(rate) else np.ones_like(rate)
    s = _spread(np.asarray(rate, dtype=float) / lam)
    return float(s) if np.isscalar(rate) else s


def _spread(m: np.ndarray) -> np.ndarray:
    """√(k − 1 + x²)/m of :func:`superposition` for m = r/λ copies (1 at m ≤ 1)."""
    m = np.maximum(m, 1.0)
    k = np.ceil(m - 1e-9)
    x = m - k + 1.0
    return np.sqrt(k - 1.0 + x * x) / m


def burst_requests(q: QueryType, rate: float) -> tuple[int, float]:
    """(requests, weight) of the type's largest burst at one replica fed ``rate`` of it: the
    burst thinned to the replica's share, ⌈arrival_burst_rate·arrival_burst_s·min(rate, λ)/λ⌉
    requests within ``arrival_burst_s`` (above λ the burst of one copy, :func:`superposition`),
    and its share of the type's requests; (0, 0) without one."""
    if q.arrival_burst_rate is None or q.arrival_burst_s is None or q.arrival_burst_share is None:
        return 0, 0.0
    if q.arrival_rate <= 0:
        return 0, 0.0
    lam = own_rate(q)
    n = math.ceil(q.arrival_burst_rate * q.arrival_burst_s * min(rate, lam) / q.arrival_rate - 1e-9)
    return max(n, 1), float(q.arrival_burst_share)


BURST_SAMPLE = 96  # burst requests per run at least: small episodes are injected this many times over


def burst_copies(b: int) -> int:
    """How many copies of an episode of ``b`` requests a run injects: ⌈BURST_SAMPLE / b⌉ (0 without
    a burst). A replica's share of a flood is a few requests at random instants within it (below),
    and whether two of them collide — a prompt's prefill stalling a short answer's decode — is a
    chance event: one copy decides it for the 5.7% of the weight the episode carries."""
    return 0 if b == 0 else max(1, math.ceil(BURST_SAMPLE / b))


def burst_arrivals(q: QueryType, rate: float, copy: int = 0) -> tuple[np.ndarray, float]:
    """Arrival offsets (s, from the start of the central ``arrival_burst_s``) of the type's largest
    burst episode at one replica fed ``rate`` of it, and its weight: the central burst's
    requests (:func:`burst_requests`) at uniform random instants within ``arrival_burst_s``, and
    for each wider interval of ``arrival_burst_envelope`` the requests it adds (thinned alike,
    the count to ⌈rate_k·s_k·min(rate, λ)/λ⌉) at uniform random instants over the ring it adds,
    half before and half after; the weight is the episode's share of the type's requests (the
    central share scaled by the counts). Empty and 0 without a burst.

    Uniform instants are what thinning a flood leaves: a replica gets a random subset of its
    requests, and the flood's own arrivals are far denser than the subset. (Until 2026-12 they
    were evenly spaced, which kept a thinned episode's few requests from ever colliding: azure-
    2023's code, whose short answers miss their TPOT when a long prompt's prefill lands among
    their few decode steps, was over-predicted 1.7-2.4× on the pairs near their idle ceiling.)
    Seeded by the type, the count and ``copy``: the same instants at every call."""
    b, share = burst_requests(q, rate)
    if b == 0:
        return np.zeros(0), 0.0
    assert q.arrival_burst_s is not None and q.arrival_burst_rate is not None
    rng = np.random.default_rng([int(hashlib.sha256(q.id.encode()).hexdigest()[:8], 16), b, copy])
    span = q.arrival_burst_s
    at = [rng.random(b) * span]
    thin = min(rate, own_rate(q)) / q.arrival_rate
    n_prev, s_prev, total = b, span, q.arrival_burst_rate * span
    for sec, r in q.arrival_burst_envelope or ():
        n = max(math.ceil(r * sec * thin - 1e-9), n_prev)
        add, ring = n - n_prev, (sec - s_prev) / 2  # requests added, and each side's width
        before, after = add // 2, add - add // 2
        lo = -(s_prev - span) / 2  # the previous interval, centred on the central burst
        at.append(lo - rng.random(before) * ring)
        at.append(lo + s_prev + rng.random(after) * ring)
        n_prev, s_prev, total = n, sec, r * sec
    weight = min(float(share) * total / (q.arrival_burst_rate * span), 1.0)
    return np.sort(np.concatenate(at)), weight


def _run(
    inst: Instance,
    key: Key,
    rate: float,
    gaps: np.ndarray,
    inp: np.ndarray,
    out: np.ndarray,
    mean_rate: float | None = None,
    watch: Callable[[int, np.ndarray], None] | None = None,
    reuse: tuple[tuple[float, float], ...] = (),
    stats: dict[str, float] | None = None,
) -> np.ndarray:
    """Simulate one replica at ``rate`` (a slow state's, of a replica fed ``mean_rate`` of the
    type on average: that sets the superposition and the burst; default ``rate``); rows (ttft,
    tpot, e2e) per request, NaN when rejected. With a largest burst, its episode's b requests
    (:func:`burst_arrivals`) follow the n sampled ones in the rows: the central burst starts at
    the middle request's arrival; they have their own stratified lengths (seeded by the type and
    b). ``watch(uid, row)`` sees each finished request's row and may end the run by raising
    :class:`_Verdict`, which reaches the caller. ``reuse``: the type's stated prefix reuse
    (:func:`prefix_steps`), each request with its draw (:func:`_prefix_draws`); ``stats`` gets the
    share of prompt tokens the run took from the cache (``prefix_hit``)."""
    from planner.sim.cluster import simulator_for_option, simulator_for_pair
    from planner.sim.engine import SimConfig

    if key.decode is None:
        config = SimConfig(policy="jsq", stated_reuse=reuse)
        sim = simulator_for_option(inst, key.option, 1, config, [key.type_index])
    else:  # one replica of the measured side, the other side with ``helpers`` replicas
        p, d = (1, key.helpers) if key.side == "prefill" else (key.helpers, 1)
        sim = simulator_for_pair(
            inst, (key.option, p, None), (key.decode, d, key.batch), SimConfig(policy="jsq"), [key.type_index]
        )
    q = inst.query_types[key.type_index]
    n = len(gaps)
    mean_rate = rate if mean_rate is None else mean_rate
    offsets, _ = burst_arrivals(q, mean_rate)
    copies = burst_copies(len(offsets))
    b = len(offsets) * copies
    res = np.full((n + b, 3), np.nan)

    def record(r: Any, now: float, pool: str, worker: int) -> None:
        # The rows are all a measurement reads: the simulator's own metrics are not kept.
        first, arrival, n_out = r.first, r.arrival, r.out
        row = res[r.uid]
        row[:] = (first - arrival, (now - first) / (n_out - 1) if n_out > 1 else 0.0, now - arrival)
        if watch is not None:
            watch(r.uid, row)

    sim.metrics.finished = record  # type: ignore[method-assign]
    w = inst.arrival_window_s
    factors = rate_factors(q, key.type_index, sample_windows(n, rate, w), w, inst.arrival_slow_window_s)
    factors = 1.0 + superposition(q, mean_rate) * (factors - 1.0)  # above λ: independent copies
    t = clustered_arrival_times(q, key.type_index, gaps, rate, factors, w, mean_rate)
    ty = key.type_index
    reqs: list[tuple[Any, ...]] = [(k, ty, float(t[k]), int(inp[k]), int(out[k])) for k in range(n)]
    reuse = reuse if key.decode is None else ()  # a split pair's prefill pool: not modelled
    if reuse:
        u = _prefix_draws(q, ty, n)
        reqs = [(*x, None, 0, float(d)) for x, d in zip(reqs, u, strict=True)]
    if b:
        # copy c of the episode centred on the arrival of sampled request n·(c + ½)/copies
        _, b_in, b_out = _type_samples(q, key.type_index + 1_000_003 * b, NO_CLIP, b)
        b_u = _prefix_draws(q, key.type_index + 1_000_003 * b, b) if reuse else np.ones(b)
        e = len(offsets)
        for c in range(copies):
            at = float(t[int(n * (c + 0.5) / copies)]) + (offsets if c == 0 else burst_arrivals(q, mean_rate, c)[0])
            for j in range(e):
                k = c * e + j
                reqs.append((n + k, ty, float(at[j]), int(b_in[k]), int(b_out[k]), None, 0, float(b_u[k])))
    if b or q.arrival_cluster_s is not None:
        reqs.sort(key=lambda x: x[2])
    sim.run(iter(reqs))  # a _Verdict raised by watch ends it and reaches the caller
    if stats is not None and sim.prefix_tokens[ty]:
        stats["prefix_hit"] = sim.prefix_hits[ty] / sim.prefix_tokens[ty]
    return res


class _Verdict(Exception):
    """A run's misses so far already put its attainment below the target (:func:`measure`)."""


@dataclass
class _MissWatch:
    """Counts one run's misses as its requests finish and raises :class:`_Verdict` once they
    alone put the attainment below the target: with every request not yet finished, and every
    slow state still to run, meeting every limit, the attainment is at most
        (done + w_j·a_j + rest) / total,   a_j = (1 − s)·(1 − m_s/(n − warm)) + s·(1 − m_b/b)
    (:func:`measure`'s weighing: m_s, m_b the sampled and burst misses, s the burst's share)."""

    limits: tuple[float, float, float]
    warm: int
    n: int  # sampled requests; rows from n on are the burst's
    b: int
    share: float
    done: float  # Σ w·F·a over the states already run
    weight: float  # this state's w·F
    rest: float  # Σ w·F over the states still to run
    total: float
    target: float
    missed: list[int] = dataclasses.field(default_factory=lambda: [0, 0])

    def __call__(self, uid: int, row: np.ndarray) -> None:
        l_ttft, l_tpot, l_e2e = self.limits
        if uid < self.warm or (row[0] <= l_ttft and row[1] <= l_tpot and row[2] <= l_e2e):
            return
        self.missed[uid >= self.n] += 1
        a_j = 1.0 - self.missed[0] / (self.n - self.warm)
        if self.b:
            a_j = (1.0 - self.share) * a_j + self.share * (1.0 - self.missed[1] / self.b)
        upper = (self.done + self.weight * a_j + self.rest) / self.total
        if upper < self.target - 1e-12:  # the full run's attainment is at most upper
            raise _Verdict(upper)


def _met(res: np.ndarray, limits: tuple[float, float, float]) -> np.ndarray:
    ok = np.isfinite(res[:, 0])
    for j, lim in enumerate(limits):
        ok &= ~(res[:, j] > lim)
    return ok


HORIZON_LIVES = 4  # a sample spans at least this many request lifetimes (request_life) ...
MIN_HORIZON_S = 60.0  # ... and at least this long
MAX_SAMPLE = 38_400  # requests per run at most (SIM_REQUESTS·2⁵)


def request_life(q: QueryType, limits: tuple[float, float, float]) -> float:
    """How long a request of the type may stay in a replica within its SLOs, s: min(e2e limit,
    TTFT limit + E[O]·TPOT limit); the time a loaded replica takes to fill its batch."""
    l_ttft, l_tpot, l_e2e = limits
    life = l_ttft + q.output_tokens * l_tpot
    life = min(life, l_e2e) if math.isfinite(l_e2e) else life
    return life if math.isfinite(life) else MIN_HORIZON_S


MIN_MISSES = 48  # a run holds at least this many requests outside the target's share (sample_size)


def sample_size(rate: float, life: float, requests: int = SIM_REQUESTS, target: float = 0.0) -> tuple[int, int]:
    r"""(requests n, warm-up w) of one simulated run at ``rate``.

    At a target a the verdict rests on the n·(1 − a) requests that may miss: 12 of 1,200 at
    0.99, and which few long prompts happen to arrive together moves them by half. So n is also
    at least MIN_MISSES / (1 − a) (4,800 at 0.99): the capacity of mooncake-2025's chat-8k on
    llama-3.1-70b-fp8/a100/tp8 at an 8192-token budget ranged 0.46–0.71 req/s over five orders
    of the same 1,200 draws (the trace's replay: 0.68), 0.57–0.66 over orders of 4,800.

    A replica fed beyond what it serves builds its queue only once its batch is full, which takes
    about one request lifetime at rate r (Little: r·life requests in flight): at 180 req/s a
    sample of 1,200 requests (7 s) ends before a replica that serves 127 req/s falls behind, and
    passed it (azure-2023's conv-short on mistral-7b/h100/tp8, 1.4× the replay's capacity). So
    the sample spans at least max(MIN_HORIZON_S, HORIZON_LIVES·life) seconds — n = ``requests``
    ·2^k, the smallest such at least r·horizon, at most MAX_SAMPLE (a few sizes, so that rates
    near each other share their draws) — and the first max(5%, r·life) requests, the filling,
    are left out (at most a third)."""
    need = rate * max(MIN_HORIZON_S, HORIZON_LIVES * life)
    if 0.0 < target < 1.0:
        need = max(need, MIN_MISSES / (1.0 - target))
    n = requests
    while n < need and n < MAX_SAMPLE:
        n *= 2
    warm = min(max(int(WARMUP * n), math.ceil(rate * life)), n // 3)
    return n, warm


def measure(inst: Instance, key: Key, requests: int = SIM_REQUESTS) -> Capacity:
    """Simulated capacity of one pair (module docstring). Deterministic."""
    from planner.sim.cluster import replica_model

    q = inst.query_types[key.type_index]
    engine = Engine.of(replica_model(inst, key.option), key.option)
    limits = _limits(q, key.tpot_s)
    if key.decode is None:
        bound = rate_bound(inst, key.option, key.type_index, key.target, key.tpot_s, requests)
    else:  # a split side: its search range comes with the key (:func:`split_keys`)
        seqs = key.batch if key.side == "decode" and key.batch else engine.max_num_seqs
        bound = Capacity(key.top, math.inf, math.inf, math.inf, 0.0, 1.0, seqs, False)
    if bound.rate_rps <= 0:
        return bound
    big, wts = slow_strata(q, inst.arrival_slow_window_s)
    beta = q.arrival_slow_length_share or 0.0
    life = request_life(q, limits)
    prefix = has_prefix(q) and key.decode is None  # split pairs: reuse is not modelled there

    def attain(rate: float, early: bool = False) -> tuple[float, tuple[np.ndarray, np.ndarray | None, float]]:
        # The sampled requests stand for the type's steady traffic, the burst's (if any) for its
        # largest burst: attainment weighs them (1 − share) and share. With slow states, one run
        # per state at F_j^(1−β)·rate with lengths ×F_j^β, weighed by w_j·F_j (:func:`slow_strata`);
        # the rows of every state come back with their weights per row, for the latency quantiles.
        # ``early``: a run ends once its misses alone put the attainment below the target — even
        # if every request still running and every later state met every limit — and the
        # attainment returned is that upper bound (< target; the verdict is the full run's, the
        # figure and rows are not, so only callers that keep nothing but the verdict ask for it).
        # The third item of the rows' tuple: the share of prompt tokens the runs took from the
        # prefix cache (weighed as the attainment).
        n, warm = sample_size(rate, life, requests, key.target)
        gaps, inp, out = samples(inst, key.option, key.type_index, n)
        reuse = prefix_steps(q, rate) if prefix else ()
        states = 1.0 + superposition(q, rate) * (big - 1.0)
        offsets, share = burst_arrivals(q, rate)
        b = len(offsets) * burst_copies(len(offsets))
        total = float(wts @ states)
        a, rows_all, row_w = 0.0, [], []
        hits: list[tuple[float, float]] = []
        for j, (f, wt) in enumerate(zip(states, wts, strict=True)):
            # a share β of the state's load is longer requests, the rest more of them
            grow = f**beta
            i_f = inp if grow == 1.0 else np.maximum(np.round(inp * grow), 1).astype(inp.dtype)
            o_f = out if grow == 1.0 else np.maximum(np.round(out * grow), 1).astype(out.dtype)
            watch = None
            if early:  # the states still to run count at attainment 1
                rest = float(wts[j + 1 :] @ states[j + 1 :])
                watch = _MissWatch(limits, warm, n, b, share, a, wt * f, rest, total, key.target)
            try:
                stats: dict[str, float] = {}
                rows = _run(inst, key, rate * f / grow, gaps, i_f, o_f, rate, watch, reuse, stats)
                hits.append((wt * f, stats.get("prefix_hit", 0.0)))
            except _Verdict as v:
                return float(v.args[0]), (np.zeros((0, 3)), None, 0.0)
            res, burst = rows[warm:n], rows[n:]
            a_j = float(_met(res, limits).mean())
            if len(burst):
                a_j = (1.0 - share) * a_j + share * float(_met(burst, limits).mean())
            a += wt * f * a_j
            rows_all.append(res)
            row_w.append(np.full(len(res), wt * f / len(res)))
        a /= float(wts @ states)
        hit = sum(w * h for w, h in hits) / sum(w for w, _ in hits) if hits else 0.0
        if len(rows_all) == 1:
            return a, (rows_all[0], None, hit)
        return a, (np.concatenate(rows_all), np.concatenate(row_w), hit)

    # Bracket around the analytic estimate (×½ … ×2), widened by ×4 steps when it is off, then
    # bisection on log r to RATE_RESOLUTION.
    if key.decode is None:
        est = estimate(inst, engine, key.option, key.type_index, key.target, key.tpot_s).rate_rps
    else:
        est = key.guess
    top = bound.rate_rps
    guess = est if est > 0 else top / 64
    lo, hi = min(guess / 2, top), min(guess * 2, top)
    a_lo, r_lo = attain(lo)
    while a_lo < key.target and lo > top * 1e-6:  # heavier than estimated: go lower
        hi, lo = lo, lo / 4
        a_lo, r_lo = attain(lo)
    seqs = bound.max_num_seqs if key.decode is not None else engine.max_num_seqs
    if a_lo < key.target:
        return Capacity(
            0.0,
            *_quantiles(r_lo[0], key.target, r_lo[1]),
            a_lo,
            bound.ceiling,
            seqs,
            True,
            "below target at any rate",
            r_lo[2],
        )
    # Above here a run's rows are kept only when it meets the target: a run that misses may end
    # as soon as that is certain (``early``), with the same verdict.
    while True:
        a_hi, r_hi = attain(hi, early=True)
        if a_hi < key.target:
            break
        lo, a_lo, r_lo = hi, a_hi, r_hi
        if hi >= top:
            return Capacity(lo, *_quantiles(r_lo[0], key.target, r_lo[1]), a_lo, bound.ceiling, seqs, True, "", r_lo[2])
        hi = min(hi * 4, top)
    while hi / lo > RATE_RESOLUTION:
        mid = math.sqrt(lo * hi)
        a_mid, r_mid = attain(mid, early=True)
        if a_mid >= key.target:
            lo, a_lo, r_lo = mid, a_mid, r_mid
        else:
            hi = mid
    return Capacity(lo, *_quantiles(r_lo[0], key.target, r_lo[1]), a_lo, bound.ceiling, seqs, True, "", r_lo[2])


def _quantiles(res: np.ndarray, target: float, weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """Per-metric latency at the target quantile (rejected requests count as infinitely slow),
    rows weighted by ``weights`` when given (the slow states'): the smallest value whose
    cumulative weight reaches the target."""
    vals = np.where(np.isfinite(res), res, np.inf)
    if weights is None:
        q = [float(np.quantile(vals[:, j], target, method="higher")) for j in range(3)]
        return q[0], q[1], q[2]
    out = []
    for j in range(3):
        o = np.argsort(vals[:, j], kind="stable")
        cum = np.cumsum(weights[o]) / weights.sum()
        out.append(float(vals[o[min(int(np.searchsorted(cum, target - 1e-12)), len(o) - 1)], j]))
    return out[0], out[1], out[2]


def bound_figures(
    engine: Engine,
    inp: np.ndarray,
    out: np.ndarray,
    limits: tuple[float, float, float],
    target: float,
    cached: np.ndarray | None = None,
) -> Capacity:
    """The idle ceiling and rate bound of the module docstring (no simulation); a pair whose
    ceiling misses the target gets rate 0 and the reason. ``cached``: prompt tokens found in the
    prefix cache (:func:`prefix_cached`), whose prefill is skipped (its attention over them too:
    the bound stays a bound)."""
    tab = engine.timing
    max_len = engine.max_len
    ok_len = (inp < max_len) & (inp + 1 <= engine.kv_capacity)
    i = np.minimum(inp, max_len - 1)
    o = np.minimum(out, np.maximum(max_len - i, 1))
    ttft, dec = tab.idle_request(i, o)
    if cached is not None and cached.any():
        ttft = np.asarray(tab.prefill_time(np.maximum(i - cached, 1)), float)
    steps = np.maximum(o - 1, 0)
    tpot = np.where(steps > 0, dec / np.maximum(steps, 1), 0.0)
    res = np.stack([np.where(ok_len, ttft, np.nan), tpot, ttft + dec], axis=1)
    ceiling = float(_met(res, limits).mean())
    seqs = engine.max_num_seqs
    figures = _quantiles(res, target)
    if ceiling < target:
        why = f"alone on an idle replica only {ceiling:.3f} of requests meet every SLO limit (target {target:g})"
        return Capacity(0.0, *figures, ceiling, ceiling, seqs, False, why)
    batch = int(max(1, min(seqs, engine.kv_capacity // max(float(np.mean(i + o)), 1.0))))
    t_dec = float(tab.decode_time(batch, batch * float(np.mean(i + o / 2))))
    rate = min(1.0 / float(np.mean(ttft)), batch / (float(np.mean(o)) * t_dec))
    return Capacity(rate, *figures, ceiling, ceiling, seqs, False)


def rate_bound(
    inst: Instance,
    option: Option,
    type_index: int,
    target: float,
    tpot_s: float | None = None,
    requests: int = SIM_REQUESTS,
) -> Capacity:
    """The rate bound r̄ and idle ceiling of a pair (:func:`bound_figures` on its ``requests``
    samples): the top of :func:`measure`'s search, which takes it from here, so a simulated
    capacity is at most r̄ and a pair is simulated eligible only if this ceiling meets the target.
    Memoised."""
    memo = (make_key(inst, option, type_index, target, tpot_s), requests)
    if (hit := _BOUNDS.get(memo)) is None:
        from planner.sim.cluster import replica_model

        if len(_BOUNDS) > 65536:
            _BOUNDS.clear()
        engine = Engine.of(replica_model(inst, option), option)
        _, inp, out = samples(inst, option, type_index, requests)
        q = inst.query_types[type_index]
        cached = prefix_cached(q, type_index, inp, prefix_max(q)) if has_prefix(q) else None
        hit = _BOUNDS[memo] = bound_figures(engine, inp, out, _limits(q, tpot_s), target, cached)
    return hit


_BOUNDS: dict[tuple[Key, int], Capacity] = {}


ESTIMATE_REQUESTS = 240  # samples for the analytic estimate (stratified, so the shape is kept)
ESTIMATE_RATES = 32  # log-spaced rates evaluated at once, from r̄/1024 to r̄


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x), vectorised (Abramowitz & Stegun 7.1.26 for erf, |error| < 1.5e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.where(x >= 0, erf, -erf))


def estimate_figures(
    engine: Engine,
    inp: np.ndarray,
    out: np.ndarray,
    limits: tuple[float, float, float],
    target: float,
    factors: np.ndarray | None = None,
    burst: tuple[float, float, float] | None = None,
    own: float = math.inf,
    weights: np.ndarray | None = None,
    cached: np.ndarray | None = None,
) -> Capacity:
    r"""Analytic estimate of the capacity at the target (what the option table holds for a pair
    until a solution uses it and it is simulated). At rate r, with D running decodes at mean
    context C̄, budget b and the exact iteration times t_d = T(D decodes), t_c = T(a chunk of
    b − D prompt tokens + D decodes):

        chunk iterations/s   N_c = r·E[m],  m = ⌈I / (b − D)⌉ chunks per prompt
        decode-only iter./s  N_d = (1 − N_c·t_c) / t_d          (the rest of each second)
        running decodes      D = r·E[O − 1] / (N_c + N_d)       (Little; fixed point, D ≤ seats, KV)
        share of iterations carrying a chunk   q = N_c / (N_c + N_d)

    A request with n = O − 1 decode steps shares K ~ Binomial(n, q) of them with chunks, so its
    TPOT is ((n − K)·t_d + K·t_c)/n: it meets the limit L when K ≤ n(L − t_d)/(t_c − t_d) (this
    is what sinks short outputs behind long prompts). Its TTFT is the wait W of an M/G/1 queue of
    prefills (service S = m·t_c, load ρ = r·E[S], P(W > t) = ρ·e^(−ρt/E[W]),
    E[W] = r·E[S²]/(2(1 − ρ))) plus its own S; e2e adds n·E[TPOT]. Attainment(r) = the mean over
    the length samples of P(TPOT ok)·P(TTFT and e2e ok); the estimate is the largest r with
    attainment ≥ target. With the type's largest burst (``burst``: requests per unit rate, its
    length T, its weight w) the attainment is (1 − w)·A + w·A_burst, A_burst the share of the
    burst's b prompts whose queue behind the ones before it (S̄ − T/b each) leaves its limit met.
    Above the type's own rate ``own`` the profile's spread shrinks (≈ √(own/r)) and the burst
    stays that of rate ``own`` (:func:`superposition`, :func:`_spread`). ``weights``: the factors' shares of time (the
    slow states' times the fast windows'; default equal). ``cached``: prompt tokens per sample
    taken from the prefix cache (:func:`prefix_cached`): prefills are of the rest (I − cached),
    decodes attend to the whole prompt."""
    tab = engine.timing
    max_len = engine.max_len
    ok_len = (inp < max_len) & (inp + 1 <= engine.kv_capacity)
    i = np.minimum(inp, max_len - 1).astype(float)
    o = np.minimum(out, np.maximum(max_len - i, 1)).astype(float)
    bnd = bound_figures(engine, inp, out, limits, target, cached)
    if bnd.rate_rps <= 0:
        return bnd
    i_pf = i if cached is None else np.maximum(i - np.minimum(cached, i - 1), 1.0)  # prompt tokens computed
    b = tab.budget
    seats = min(engine.max_num_seqs, max(1, int(engine.kv_capacity // max(float(np.mean(i + o)), 1.0))))
    rates = bnd.rate_rps * np.geomspace(1.0 / 1024, 1.0, ESTIMATE_RATES)[:, None]  # (R, 1)
    n = np.maximum(o - 1.0, 0.0)[None, :]
    ctx = float(np.mean(i + o / 2))
    top = len(tab.token_s) - 1

    def service(dd: np.ndarray, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunks m, service S = Σ chunk iterations, decode-only step t_d) with dd decodes."""
        per = np.maximum(b - dd, b // 2)  # prompt tokens a chunk iteration carries
        m = np.ceil(prompts[None, :] / per)
        c = prompts[None, :] / m  # the prompt's mean chunk (attention is linear in the cache)
        t_each = tab.time(
            np.minimum(np.round(c).astype(int) + dd, top),
            np.minimum(dd + 1, len(tab.seq_s) - 1),
            c * c,
            c,
            c * (prompts[None, :] - c) / 2,
            (prompts[None, :] - c) / 2,
            dd * ctx,
        )
        return m, m * t_each, tab.decode_time(dd, dd * ctx)

    # Fixed point of D on a thinned sample (means only), then everything once on all samples.
    thin = i_pf[:: max(1, len(i_pf) // 48)]
    d = np.ones_like(rates)
    mean_n = float(np.mean(n))
    for _ in range(10):
        dd = np.clip(np.round(d), 1, seats).astype(int)
        m, s_req, t_d = service(dd, thin)
        n_c = rates * np.mean(m, axis=1, keepdims=True)
        busy = np.minimum(rates * np.mean(s_req, axis=1, keepdims=True), 0.999999)
        n_d = (1.0 - busy) / t_d
        d = 0.5 * d + 0.5 * np.minimum(rates * mean_n / (n_c + n_d), seats)
    dd = np.clip(np.round(d), 1, seats).astype(int)
    m, s_req, t_d = service(dd, i_pf)
    n_c = rates * np.mean(m, axis=1, keepdims=True)
    t_c = np.mean(s_req, axis=1, keepdims=True) / np.mean(m, axis=1, keepdims=True)
    n_d = (1.0 - np.minimum(n_c * t_c, 0.999999)) / t_d
    q = n_c / (n_c + n_d)
    rho = rates * np.mean(s_req, axis=1, keepdims=True)
    stable = rho < 1.0
    # TPOT: K ~ Binomial(n, q) chunk steps among n (normal approximation with continuity correction)
    l_ttft, l_tpot, l_e2e = limits
    k_star = np.where(t_c > t_d, n * (l_tpot - t_d) / np.maximum(t_c - t_d, 1e-12), np.inf)
    var = np.maximum(n * q * (1 - q), 1e-12)
    p_binom = _norm_cdf((np.floor(k_star) + 0.5 - n * q) / np.sqrt(var))
    # A request's decode steps start where its prefill ends: with probability ρ (an M/G/1
    # departure leaves a queue behind as often as the server is busy) other prompts are waiting,
    # and its first steps carry their chunks: R iterations of min(budget, backlog) tokens, R
    # geometric with mean backlog/chunk, backlog = E[I]·(1 + r·E[W]) prompt tokens.
    es2 = np.mean(s_req * s_req, axis=1, keepdims=True)
    w_mean = rates * es2 / (2 * np.maximum(1 - rho, 1e-9))
    backlog = float(np.mean(i_pf)) * (1.0 + rates * w_mean)  # prompt tokens queued when busy
    # backlog iterations are full: the whole budget of prompt tokens rides with the decodes
    full = np.maximum(np.minimum(np.maximum(b - dd, b // 2), np.round(backlog)), 1).astype(int)
    mu_r = np.maximum(backlog / full, 1.0)
    t_full = tab.time(
        np.minimum(full + dd, top), np.minimum(dd + 2, len(tab.seq_s) - 1), full * full, full, 0.0, 0.0, dd * ctx
    )
    k_res = np.where(t_full > t_d, n * (l_tpot - t_d) / np.maximum(t_full - t_d, 1e-12), np.inf)
    stay = np.clip(1.0 - 1.0 / mu_r, 0.0, 1.0)
    p_res = np.where(k_res >= 1, 1.0 - np.power(stay, np.floor(np.clip(k_res, 0, 1e6))), 0.0)
    p_res = np.where(k_res >= n, 1.0, p_res)  # a request has only n steps to share
    p_tpot = np.where(n > 0, np.where(t_d <= l_tpot, p_binom * (1.0 - rho * (1.0 - p_res)), 0.0), 1.0)
    tpot_mean = np.where(n > 0, (1 - q) * t_d + q * t_c, 0.0)
    # TTFT: M/G/1 wait (exponential tail matched to its mean) + own service
    slack = np.minimum(l_ttft, l_e2e - n * tpot_mean) - s_req - t_d / 2
    p_wait = np.where(slack >= 0, 1.0 - rho * np.exp(-rho * np.maximum(slack, 0) / np.maximum(w_mean, 1e-12)), 0.0)
    att = np.mean(np.where(ok_len[None, :], p_tpot * np.clip(p_wait, 0.0, 1.0), 0.0), axis=1)
    att = np.where(stable[:, 0], att, 0.0)
    if factors is not None and len(factors) > 1:
        # Bursts: a request arriving in a window at f·r sees (about) the steady state at f·r, and
        # windows carry requests in proportion to f: A(r) = Σ f_j·A_steady(f_j·r) / Σ f_j.
        # Above the type's own rate the spread shrinks (independent copies, :func:`superposition`).
        f = 1.0 + _spread(rates / own) * (factors[None, :] - 1.0)  # (R, W)
        lr = np.log(rates[:, 0])
        at = np.interp(np.log(rates * f), lr, att, left=float(att[0]), right=0.0)
        wf = f if weights is None else f * weights[None, :]
        att = (at * wf).sum(axis=1) / wf.sum(axis=1)
    if burst is not None:
        # The largest burst (nb = per_rate·r requests within T, weight w). TTFT: its prompts
        # queue when a prefill S̄ takes longer than their spacing T/nb; the j-th waits
        # ≈ j·(S̄ − T/nb) and meets the TTFT (or e2e) limit L while j ≤ (L − S̄)/(S̄ − T/nb).
        # TPOT: the j-th's decode steps ride with the full-budget chunks of the prompts queued
        # behind it when its prefill ends (those arrived by (j + 1)·S̄ less the j + 1 done), E[I]/chunk
        # iterations each (at most its n steps); it meets its limit when
        # that is within the K = n·(L_tpot − t_d)/(t_chunk − t_d) chunk steps it can absorb.
        per_rate, span, w = burst
        nb = np.maximum(np.ceil(per_rate * np.minimum(rates[:, 0], own) - 1e-9), 1.0)  # (R,)
        s_bar = np.mean(s_req, axis=1)
        lim = min(l_ttft, l_e2e)
        gap = s_bar - span / nb
        jmax = np.where(gap > 0, (lim - s_bar) / np.maximum(gap, 1e-12), np.inf)
        jmax = np.where(lim >= s_bar, jmax, -1.0)
        chunk = np.maximum(b - dd, b // 2)  # (R, 1) prompt tokens per full iteration
        t_chunk = tab.time(
            np.minimum(chunk + dd, top), np.minimum(dd + 2, len(tab.seq_s) - 1), chunk * chunk, chunk, 0, 0, dd * ctx
        )
        k_b = np.where(t_chunk > t_d, n * (l_tpot - t_d) / np.maximum(t_chunk - t_d, 1e-12), np.inf)  # (R, N)
        m_bar = float(np.mean(i_pf)) / chunk[:, 0]  # full chunks per queued prompt (chunks carry several short ones)
        j = np.arange(int(nb.max()))[None, :]  # (1, J)
        live = j < nb[:, None]
        ok_ttft = j <= jmax[:, None]
        # prompts queued when the j-th's prefill ends, ≈ (j + 1)·S̄ after the burst starts
        arrived = np.minimum(nb[:, None], (j + 1) * (s_bar * nb / span)[:, None])
        behind = np.clip(arrived - (j + 1), 0.0, None) * m_bar[:, None]  # (R, J) chunk iterations
        ok_tpot = np.mean(
            (n[None, :, :] == 0) | (np.minimum(behind[:, :, None], n[None, :, :]) <= k_b[:, None, :]), axis=2
        )
        ok_b = np.sum(np.where(live, ok_ttft * ok_tpot, 0.0), axis=1) / nb
        att = (1.0 - w) * att + w * ok_b
    good = np.nonzero(att >= target)[0]
    if good.size == 0:
        return Capacity(
            0.0,
            bnd.ttft_s,
            bnd.tpot_s,
            bnd.e2e_s,
            float(att[0]),
            bnd.ceiling,
            engine.max_num_seqs,
            False,
            "estimate below target at any rate",
        )
    k = int(good[-1])  # the highest rate of the grid that holds (attainment falls with r)
    r = float(rates[k, 0])
    ttft = float(np.quantile(np.where(ok_len, s_req[k] + w_mean[k, 0], np.inf), target, method="higher"))
    tpot = float(
        tpot_mean[k, 0]
        + 2 * math.sqrt(float(q[k, 0] * (1 - q[k, 0])) / max(float(np.mean(n)), 1.0)) * (t_c[k, 0] - t_d[k, 0])
    )
    e2e = float(
        np.quantile(np.where(ok_len, s_req[k] + w_mean[k, 0] + n[0] * tpot_mean[k, 0], np.inf), target, method="higher")
    )
    return Capacity(
        r,
        ttft,
        min(tpot, l_tpot),
        min(e2e, l_e2e) if math.isfinite(l_e2e) else e2e,
        float(att[k]),
        bnd.ceiling,
        engine.max_num_seqs,
        False,
    )


def estimate(
    inst: Instance, engine: Engine, option: Option, type_index: int, target: float, tpot_s: float | None = None
) -> Capacity:
    """The analytic estimate of a pair on its type's estimate samples and burst profile (its TPOT
    held to ``tpot_s`` when that is tighter than its own limit). Memoised by :class:`Key` (it is
    a function of what the key fingerprints): an option table is 2,000 estimates on azure-2023,
    7 s, and a session builds the table of one instance many times (solve, validate, review)."""
    key = make_key(inst, option, type_index, target, tpot_s)
    if (hit := _ESTIMATES.get(key)) is None:
        if len(_ESTIMATES) > 65536:
            _ESTIMATES.clear()
        hit = _ESTIMATES[key] = _estimate(inst, engine, option, type_index, target, tpot_s)
    return hit


_ESTIMATES: dict[Key, Capacity] = {}


def _estimate(
    inst: Instance, engine: Engine, option: Option, type_index: int, target: float, tpot_s: float | None
) -> Capacity:
    q = inst.query_types[type_index]
    _, inp, out = samples(inst, option, type_index, ESTIMATE_REQUESTS)
    factors = rate_factors(q, type_index, WINDOWS, inst.arrival_window_s, inst.arrival_slow_window_s)
    big, wts = slow_strata(q, inst.arrival_slow_window_s)
    weights = None
    if len(big) > 1:  # slow states times fast windows (:func:`slow_strata`)
        weights = np.repeat(wts, len(factors))
        factors = (big[:, None] * factors[None, :]).ravel()
    burst = None
    if q.arrival_burst_rate is not None and q.arrival_burst_s is not None and q.arrival_burst_share is not None:
        burst = (q.arrival_burst_rate * q.arrival_burst_s / q.arrival_rate, q.arrival_burst_s, q.arrival_burst_share)
    own = own_rate(q) or math.inf
    limits = _limits(q, tpot_s)
    if not has_prefix(q):
        return estimate_figures(engine, inp, out, limits, target, factors, burst, own, weights)

    # With prefix reuse h(r) falls with the rate (:func:`prefix_hit`): estimate at the most reuse,
    # then once more at the reuse of the rate found.
    def at(h: float) -> Capacity:
        cached = prefix_cached(q, type_index, inp, h)
        return estimate_figures(engine, inp, out, limits, target, factors, burst, own, weights, cached)

    est = at(prefix_max(q))
    if est.rate_rps > 0 and q.prefix_hit_curve is not None:
        est = at(prefix_hit(q, engine.kv_capacity, est.rate_rps, limits))
    return est


def make_key(inst: Instance, option: Option, type_index: int, target: float, tpot_s: float | None = None) -> Key:
    return Key(fingerprint(inst, option, type_index), option, type_index, float(target), tpot_s)


def _measure_job(args: tuple[Instance, Key]) -> tuple[Key, Capacity]:
    inst, key = args
    return key, measure(inst, key)


def _disk_dir() -> Path | None:
    """``$PLANNER_CACHE_DIR`` (default ``~/.cache/planner``)/capacity, or None when
    ``PLANNER_NO_CACHE`` is set. Entries are keyed by everything a capacity depends on, including
    the calibration file's bytes and this package's source, so a stale entry cannot be read."""
    if os.environ.get("PLANNER_NO_CACHE"):
        return None
    root = os.environ.get("PLANNER_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "planner")
    return Path(root) / "capacity"


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for rel in (
        "capacity.py",
        "lengths.py",
        "perf/ops.py",
        "perf/iteration.py",
        "perf/model.py",
        "perf/calibration.py",
        "sim/engine.py",
        "sim/cluster.py",
        "sim/policies.py",
        "sim/state.py",
        "sim/metrics.py",
    ):
        f = here / rel
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _disk_name(inst: Instance, key: Key) -> str:
    from planner.perf.calibration import _locate

    where = _locate(inst.calibration)
    cal = Path(where[0]).read_bytes() if where is not None else b""
    text = f"{_code_version()}|{hashlib.sha256(cal).hexdigest()[:16]}|{key!r}|{SIM_REQUESTS}"
    return hashlib.sha256(text.encode()).hexdigest()[:32] + ".json"


def _disk_get(inst: Instance, key: Key) -> Capacity | None:
    d = _disk_dir()
    if d is None:
        return None
    try:
        doc = json.loads((d / _disk_name(inst, key)).read_text())
        return Capacity(**doc)
    except (OSError, ValueError, TypeError):
        return None


def _disk_put(inst: Instance, key: Key, cap: Capacity) -> None:
    d = _disk_dir()
    if d is None:
        return
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{_disk_name(inst, key)}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(cap)))
        os.replace(tmp, d / _disk_name(inst, key))
    except OSError:  # a cache that cannot be written is only slower
        pass


def measure_many(inst: Instance, keys: Iterable[Key], workers: int | None = None) -> dict[Key, Capacity]:
    """Simulated capacities of several pairs (cached in memory and on disk, :func:`_disk_dir`; new
    ones as tasks of the executor in force, :mod:`planner.executor`)."""
    keys = list(dict.fromkeys(keys))
    for k in keys:
        if k not in _CACHE and (hit := _disk_get(inst, k)) is not None:
            _CACHE[k] = hit
    todo = [k for k in keys if k not in _CACHE]
    from planner import executor

    ex = executor.current(workers)
    names = [f"{k.option.key} × {inst.query_types[k.type_index].id}" for k in todo]
    for key, cap in ex.map(_measure_job, [(inst, k) for k in todo], names):
        _CACHE[key] = cap
    for k in todo:
        _disk_put(inst, k, _CACHE[k])
    return {k: _CACHE[k] for k in keys}
