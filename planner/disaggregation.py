r"""Prefill/decode disaggregation: split serving options, their KV link and their figures.

A **split option** serves one model with two pools joined by a KV-transfer link (Splitwise,
DistServe, vLLM's disaggregated prefill with the NIXL connector): *prefill* replicas (tier P, TP
t_P, PP p_P) run prompts only; the KV cache of the prompt (I + 1 tokens) then moves over the link
and *decode* replicas (tier D, TP t_D, PP p_D) run decode steps only, no prefill chunk riding with
them. The two tiers may differ (prefill on a compute-rich GPU, decode on a bandwidth-rich one).

**Figures of a split pair s for a type i** (mean-latency semantics, the same quantities as
:meth:`planner.perf.ReplicaModel.figures` for a colocated replica; seconds, requests/s):

===================  =======================================================================
T_pf(I)              stage-time one prompt costs an idle prefill replica (``prefill_work``)
r_P                  1 / T_pf                       prefill requests/s per prefill replica
wait_P               U·T_pf / (2(1 − U))            M/D/1 queue at max_utilization U
bytes(I)             (I + 1) · 2·layers·kv_heads·head_dim·kv_cache_bytes      KV moved
t_x(I)               α_link + bytes / β_link        transfer on an idle link
B                    decode micro-batch: the grid value ≤ the KV room kv/(p_D(I + O)) that
                     maximises r_D with TPOT, TTFT and e2e met
t_s(B)               decode stage-time at B with mean context I + O/2 (no prefill chunk)
r_D                  B / (O · t_s(B))               decode requests/s per decode replica
wait_x               U·(bytes/β) / (2(1 − U))       M/D/1 queue on the prefill replica's link
TTFT                 wait_P + wait_x + prefill latency (pipeline fill) + t_x + p_D·t_s(B)
TPOT                 p_D · t_s(B)
e2e                  TTFT + (O − 1) · TPOT
link_P               bytes(I) / β_link              link-seconds per request (the link row)
===================  =======================================================================

The first token reaches the client from the decode server (vLLM's disaggregated proxy sends the
prompt to the prefill server with max_tokens = 1, then to the decode server, which streams every
token): TTFT on an idle system is prefill + transfer + one decode step.

**Link** (:func:`kv_link`): prefill and decode replicas sit on different nodes whenever their
tiers differ, and the planner places a pair's replicas independently, so every pair is priced
across nodes: each GPU of the prefill replica sends its shard over its own NIC,
β = t_P·p_P · internode_gbs · internode_efficiency (``default_internode_gbs`` where the tier has
no figure), α = internode_latency_s; the same figures the simulator's split pools use
(:func:`planner.sim.cluster.pool_spec`). Same-node pairs (NVLink transfer) would need a
placement rule that co-locates a pair's replicas; they are not priced, which is conservative.

**Candidates** (:func:`candidate_pairs`): for each model, the prefill configurations (tier, TP,
PP) are ranked per type by dollars per prefill (rental / r_P) and the decode configurations by
dollars per decode (rental / r_D); a pair is kept when its prefill side is among the
``PREFILL_KEEP`` cheapest for some type and its decode side among the ``DECODE_KEEP`` cheapest for
some type. A pair outside both lists is never cheaper for a type than the pair of that type's
cheapest sides, up to the TTFT its slower sides add; the rule is a heuristic bound on the table's
size, not a dominance proof, and says so in the plan's message.

**Attainment** (a type with an attainment target a, :mod:`planner.capacity`): the figures above
are then an estimate, at utilization ESTIMATE_UTILIZATION (the M/D/1 waits are infinite at
U = 1), and the lazy solve (:func:`planner.solvers.solve`) simulates the pairs a plan routes to,
each side on its own (:func:`split_keys`, :func:`planner.capacity.measure`): r_P is the highest
rate at which one prefill replica, with enough decode replicas behind it that they never bind
(HELPER_MARGIN × its top rate over the idle r_D, at most MAX_HELPERS), still has a' = 1 − (1 − a)/2
of the type's requests meet every SLO under its bursts, slow swings and length tails; r_D the
same for one decode replica (its batch cap the idle figures' B) behind enough prefill replicas.
Each side may miss half of the type's share (a union bound: a request that misses misses on one
side or the other, as each side's run holds the other side idle enough). The searches stay below
PREFILL_TOP/T_pf(E[I]) and DECODE_TOP·r_D(idle), so :func:`planner.options.relaxed` puts an
estimated pair at those tops for the bound on a fully simulated table. A pair that serves several
types is simulated per type alone (the colocated pools' shared-TPOT rows have no split
counterpart); ``solve --validate`` replays the mix.

Limits (stated where the model is built): model mode only (table mode has no split figures); the
link is priced across nodes; the pools' token budget is the instance's ``prefill_chunk_tokens``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.perf import GB, ReplicaModel, structural_reason
from planner.perf.model import batch_grid
from planner.perf.ops import kv_bytes_per_token as kv_bytes_per_layer
from planner.problem import GPU, LLM, Instance, PerfParams

PREFILL_KEEP = 3  # cheapest prefill configurations kept per (model, type)
DECODE_KEEP = 3  # cheapest decode configurations kept per (model, type)
# Attainment targets (module docstring, "Attainment"): the estimate's utilization, each side's
# search range around its estimate, and the other side's replicas in a side's simulation.
ESTIMATE_UTILIZATION = 0.7
PREFILL_TOP = 1.25  # × 1/T_pf(E[I]): prefill work is convex in I, so E[T_pf] ≥ T_pf(E[I]) (Jensen)
DECODE_TOP = 2.0  # × the estimate's r_D (its batch at the mean context)
HELPER_MARGIN = 1.5  # the other side carries this × the measured side's top rate
MAX_HELPERS = 64


@dataclass(frozen=True, order=True)
class Side:
    """One pool's configuration: a GPU tier with TP × PP GPUs per replica."""

    gpu: str
    tp: int
    pp: int

    @property
    def key(self) -> str:
        return f"{self.gpu}/tp{self.tp}/pp{self.pp}"


@dataclass(frozen=True, order=True)
class SplitPair:
    """A model served split-phase: prefill replicas on ``prefill``, decode replicas on ``decode``."""

    model: str
    prefill: Side
    decode: Side

    @property
    def key(self) -> str:
        """The pair id a plan records on both deployments (``role: prefill|decode``, ``pair``)."""
        return f"{self.model}/{self.prefill.key}>{self.decode.key}"


@dataclass(frozen=True)
class Link:
    """A KV-transfer link: t = latency_s + bytes / bytes_per_s."""

    latency_s: float
    bytes_per_s: float
    kind: str  # "across nodes" (the only kind priced; module docstring)


def kv_bytes_per_token(model: LLM, params: PerfParams) -> float:
    """Bytes of KV cache one token holds over all layers of the whole model (what a split request
    moves): the per-layer figure of :func:`planner.perf.ops.kv_bytes_per_token` at TP 1, × layers."""
    assert model.layers and model.kv_heads and model.head_dim
    return model.layers * kv_bytes_per_layer(model.kv_heads, model.head_dim, 1, params.kv_cache_bytes)


def kv_link(prefill_gpu: GPU, side: Side, params: PerfParams) -> Link:
    """The link a prefill replica on ``side`` sends KV over (module docstring)."""
    per_gpu = prefill_gpu.internode_gbs or params.default_internode_gbs
    return Link(
        params.internode_latency_s,
        per_gpu * GB * params.internode_efficiency * side.tp * side.pp,
        "across nodes",
    )


@dataclass(frozen=True)
class SplitFigures:
    """Figures of one split pair for one type (module docstring's table)."""

    eligible: bool
    reason: str
    prefill_rps: float  # r_P per prefill replica
    decode_rps: float  # r_D per decode replica
    link_s: float  # link-seconds per request, bytes/β (the link row's coefficient per unit rate)
    ttft_s: float
    tpot_s: float
    e2e_s: float
    batch: int
    transfer_s: float  # t_x on an idle link
    prefill_s: float  # prefill latency on an idle prefill replica
    decode_step_s: float  # p_D·t_s(B): one decode step at the planned batch


def side_model(inst: Instance, model: LLM, side: Side) -> ReplicaModel | str:
    """The replica model of one pool, or why it cannot run (memory, structure)."""
    gpu = inst.gpu(side.gpu)
    why = structural_reason(model, gpu, side.tp, side.pp)
    if why:
        return why
    rm = ReplicaModel(model, gpu, side.tp, side.pp, inst.performance_params, inst.calibration)
    return rm if rm.fit().fits else rm.fit().reason


def prefill_side(rm: ReplicaModel, prompt: float) -> tuple[float, float]:
    """(T_pf, prefill latency on an idle replica) for one prompt, seconds."""
    i = np.array([float(prompt)])
    return float(rm.prefill_work(i)[0]), float(rm.prefill_latency(i, np.zeros(1), i)[0])


def decode_grid(
    rm: ReplicaModel,
    prompt: np.ndarray,
    output: np.ndarray,
    step_limit: np.ndarray,
    decode_budget_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For n types at once, over the batch grid G of a decode-only replica: (grid (G,), t_s (n, G),
    room (n, G): the batch fits the KV, rate (n, G): r_D = B/(O·t_s(B)) where the batch fits and
    p·t_s(B) ≤ ``step_limit`` and max(O, 1)·p·t_s(B) ≤ ``decode_budget_s``, else −1)."""
    grid = batch_grid(rm.q.max_num_seqs)
    room = grid[None, :] <= np.floor(rm.fit().kv_capacity_tokens / (rm.pp * (prompt + output)))[:, None]
    t_s = rm.decode_stage_time(grid[None, :], (prompt + output / 2)[:, None])
    steps = np.maximum(output, 1.0)[:, None]
    step = rm.pp * t_s
    ok = room & (step <= step_limit[:, None] + 1e-12) & (steps * step <= decode_budget_s[:, None] + 1e-12)
    return grid, t_s, room, np.where(ok, grid[None, :] / (steps * t_s), -1.0)


def decode_side(
    rm: ReplicaModel,
    prompt: float,
    output: float,
    tpot_limit: float,
    decode_budget_s: float,
    first_step_s: float = math.inf,
) -> tuple[int, float, float] | str:
    """(B, r_D, t_s(B)) of a decode-only replica for one type (:func:`decode_grid`): the batch
    maximising r_D with p·t_s(B) ≤ the TPOT limit and ≤ ``first_step_s`` (the TTFT limit less what
    precedes the first decode step) and max(O, 1)·p·t_s(B) ≤ ``decode_budget_s`` (the e2e limit
    less the same); or why no batch does."""
    one = np.array([float(prompt)]), np.array([float(output)])
    grid, t_s, room, rate = decode_grid(
        rm, *one, np.array([min(tpot_limit, first_step_s)]), np.array([decode_budget_s])
    )
    if not room[0, 0]:
        return f"KV cache holds {rm.fit().kv_capacity_tokens} tokens < {rm.pp}×{prompt + output:.0f} for one request"
    if not (rate[0] > 0).any():
        return f"decode step {rm.pp * t_s[0, 0]:.3g} s at batch 1 misses the TPOT, TTFT or e2e limit"
    k = int(np.argmax(rate[0]))
    return int(grid[k]), float(rate[0, k]), float(t_s[0, k])


def figures(
    inst: Instance,
    pair: SplitPair,
    type_index: int,
    prefill_rm: ReplicaModel,
    decode_rm: ReplicaModel,
    utilization: float | None = None,
) -> SplitFigures:
    """The module docstring's figures of ``pair`` for one type, at ``utilization`` (default the
    instance's max_utilization; an attainment target's estimate uses :data:`ESTIMATE_UTILIZATION`)."""
    q = inst.query_types[type_index]
    model = inst.model(pair.model)
    params = inst.performance_params
    inp, out = float(q.input_tokens), float(q.output_tokens)  # I and O of the module docstring
    nan = math.nan
    if model.max_context_tokens is not None and inp + out > model.max_context_tokens:
        why = f"input+output {inp + out:.0f} tokens > max context {model.max_context_tokens}"
        return SplitFigures(False, why, nan, nan, nan, nan, nan, nan, 0, nan, nan, nan)
    if inp + 1 > prefill_rm.fit().kv_capacity_tokens / prefill_rm.pp:
        why = "the prefill replica's KV cache cannot hold one prompt"
        return SplitFigures(False, why, nan, nan, nan, nan, nan, nan, 0, nan, nan, nan)
    link = kv_link(inst.gpu(pair.prefill.gpu), pair.prefill, params)
    nbytes = (inp + 1.0) * kv_bytes_per_token(model, params)
    transfer = link.latency_s + nbytes / link.bytes_per_s
    t_pf, latency = prefill_side(prefill_rm, inp)
    u = inst.max_utilization if utilization is None else utilization
    # M/D/1 waits at utilization U: for the prefill replica, and for its link (the link row lets
    # it run U busy too).
    t_link = nbytes / link.bytes_per_s
    wait = u * (t_pf + t_link) / (2.0 * (1.0 - u)) if u < 1.0 else math.inf
    before_decode = wait + latency + transfer
    s = q.slo
    ttft_lim = s.ttft_s if s.ttft_s is not None else math.inf
    tpot_lim = s.tpot_s if s.tpot_s is not None else math.inf
    e2e_lim = s.e2e_s if s.e2e_s is not None else math.inf
    # The e2e left for decoding: out steps (the first is part of TTFT) after the transfer.
    dec = decode_side(decode_rm, inp, out, tpot_lim, e2e_lim - before_decode, ttft_lim - before_decode)
    if isinstance(dec, str):
        return SplitFigures(
            False, dec, 1.0 / t_pf, nan, nbytes / link.bytes_per_s, nan, nan, nan, 0, transfer, latency, nan
        )
    batch, r_d, t_s = dec
    step = decode_rm.pp * t_s
    ttft = before_decode + step
    e2e = ttft + max(out - 1.0, 0.0) * step
    missed = [
        f"{name} {val:.3g} s > SLO {lim:.3g} s"
        for name, val, lim in (("ttft", ttft, ttft_lim), ("tpot", step, tpot_lim), ("e2e", e2e, e2e_lim))
        if val > lim + 1e-12
    ]
    return SplitFigures(
        not missed,
        "misses SLO split: " + ", ".join(missed) if missed else "",
        1.0 / t_pf,
        r_d,
        nbytes / link.bytes_per_s,
        ttft,
        step,
        e2e,
        batch,
        transfer,
        latency,
        step,
    )


def sides(inst: Instance) -> list[Side]:
    """Every (tier, TP, PP) the instance's parallelism lists."""
    return [Side(g.id, tp, pp) for g in inst.gpus for tp in inst.parallelism.tp for pp in inst.parallelism.pp]


def candidate_pairs(inst: Instance) -> tuple[list[SplitPair], dict[str, int]]:
    """The pruned candidate pairs (module docstring) and the counts before and after. Each side's
    prefill and decode costs are computed for every type at once (T_pf, and :func:`decode_grid`
    without the TTFT and e2e bounds)."""
    pairs: list[SplitPair] = []
    before = 0
    all_sides = sides(inst)
    types = inst.query_types
    inp = np.array([float(q.input_tokens) for q in types])
    out = np.array([float(q.output_tokens) for q in types])
    tpot = np.array([q.slo.tpot_s if q.slo.tpot_s is not None else math.inf for q in types])
    for m in inst.models:
        models = {sd: side_model(inst, m, sd) for sd in all_sides}
        runs = [sd for sd in all_sides if isinstance(models[sd], ReplicaModel)]
        before += len(runs) ** 2
        p_cost = np.full((len(types), len(runs)), np.inf)  # $/h per prefill per second
        d_cost = np.full((len(types), len(runs)), np.inf)  # $/h per decode per second
        for c, sd in enumerate(runs):
            rm = models[sd]
            assert isinstance(rm, ReplicaModel)
            price = inst.gpu(sd.gpu).price_per_hour * sd.tp * sd.pp
            p_cost[:, c] = price * rm.prefill_work(inp)
            rate = decode_grid(rm, inp, out, tpot, np.full(len(types), np.inf))[3].max(axis=1)
            d_cost[:, c] = np.where(rate > 0, price / np.maximum(rate, 1e-300), np.inf)
        keep_p: set[Side] = set()
        keep_d: set[Side] = set()
        order = np.arange(len(runs))
        for j in range(len(types)):  # ties by the side's order, as sorting (cost, side) did
            keep_p.update(runs[c] for c in np.lexsort((order, p_cost[j]))[:PREFILL_KEEP] if np.isfinite(p_cost[j, c]))
            keep_d.update(runs[c] for c in np.lexsort((order, d_cost[j]))[:DECODE_KEEP] if np.isfinite(d_cost[j, c]))
        pairs += [SplitPair(m.id, p, d) for p in sorted(keep_p) for d in sorted(keep_d)]
    return pairs, {"before": before, "after": len(pairs)}


@dataclass
class SplitTable:
    """The split pairs of an option table and their MILP coefficients (per period H, $ unless
    stated; s indexes ``pairs``, i the instance's types):

    ==============  =====================================================  ==================
    rental_p[s]     H · price(P) · t_P·p_P                                  $ per prefill replica
    rental_d[s]     H · price(D) · t_D·p_D                                  $ per decode replica
    storage[s]      the model's weights stored for both pools               $ when s is used
    load_p[i,s]     λ_i / r_P                                               prefill replicas per unit x
    load_d[i,s]     λ_i / r_D                                               decode replicas per unit x
    link[i,s]       λ_i · bytes(I_i) / β_link                               link-seconds/s per unit x
    delay[i,s]      3600 · H · λ_i · delay_penalty_i · e2e[i,s]             $ per unit x
    error[i,s]      e[model(s)][i]                                          error rate
    ==============  =====================================================  ==================
    """

    pairs: list[SplitPair]
    prefill: list[Any]  # Option of each pair's prefill pool (role "prefill")
    decode: list[Any]  # Option of each pair's decode pool (role "decode")
    rental_p: np.ndarray
    rental_d: np.ndarray
    storage: np.ndarray
    gpus_p: np.ndarray
    gpus_d: np.ndarray
    tier_p: np.ndarray
    tier_d: np.ndarray
    routes: list[tuple[int, int]]  # eligible (type, pair)
    load_p: dict[tuple[int, int], float]
    load_d: dict[tuple[int, int], float]
    link: dict[tuple[int, int], float]
    delay: dict[tuple[int, int], float]
    error: dict[tuple[int, int], float]
    rows: list[Any]  # the Rows of both pools (OptionTable.row and deployable look them up here)
    counts: dict[str, int]
    # Attainment targets: each (type, pair)'s capacity keys (prefill side, decode side), simulated
    # lazily (planner.options.check_pairs); rows still estimated have source "model-estimate".
    keys: dict[tuple[int, int], tuple[Any, Any]] = field(default_factory=dict)
    link_s: dict[tuple[int, str], float] = field(default_factory=dict)  # bytes/β per (pair, type id)
    # Attainment: each keyed (type, pair)'s analytic estimate (r_P, r_D), and per (type, side) the
    # smallest simulated/estimated ratio seen so far, which scales the estimates still standing.
    estimate: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    correction: dict[tuple[int, str], float] = field(default_factory=dict)
    by_key: dict[tuple[Any, str], Any] = field(default_factory=dict)
    by_option: dict[Any, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.rows:
            self.by_key[r.option, r.query_type] = r
            self.by_option.setdefault(r.option, []).append(r)

    def __len__(self) -> int:
        return len(self.pairs)

    def derated(
        self,
        type_ids: list[str],
        factors: Mapping[Any, float],
        old: Mapping[Any, float],
        dropped: set[tuple[Any, str]],
    ) -> SplitTable:
        """The pairs with the validation loop's capacity factors (:func:`planner.options.derate_options`):
        a pair is keyed by its prefill pool (what routing names), and a factor f scales both
        pools' capacities (load_p, load_d ÷ f; the replay measures the pair as one service); the
        KV bytes on the link do not change. ``dropped`` (prefill option, type) routes go."""
        from planner.options import derate_factor

        routes, load_p, load_d, scale = [], dict(self.load_p), dict(self.load_d), {}
        for j, s in self.routes:
            po, t = self.prefill[s], type_ids[j]
            if (po, t) in dropped:
                scale[s, t] = 0.0
                continue
            f = derate_factor(factors, po, t) / derate_factor(old, po, t)
            routes.append((j, s))
            if f != 1.0:
                load_p[j, s] /= f
                load_d[j, s] /= f
                scale[s, t] = f
        rows = []
        for r in self.rows:
            s = self.index(r.option)
            f = scale.get((s, r.query_type))
            if f == 0.0:
                r = replace(r, eligible=False, reason="validation: misses its target at any replica count")
            elif f is not None and r.throughput_rps is not None:
                r = replace(r, throughput_rps=r.throughput_rps * f)
            rows.append(r)
        keep = set(routes)
        return replace(
            self,
            routes=routes,
            load_p={k: v for k, v in load_p.items() if k in keep},
            load_d={k: v for k, v in load_d.items() if k in keep},
            link={k: v for k, v in self.link.items() if k in keep},
            delay={k: v for k, v in self.delay.items() if k in keep},
            error={k: v for k, v in self.error.items() if k in keep},
            rows=rows,
            by_key={},
            by_option={},
        )

    def estimated(self, s: int, type_id: str) -> bool:
        """Is the pair's row for the type still the analytic estimate?"""
        r = self.by_key.get((self.prefill[s], type_id))
        return r is not None and r.source == "model-estimate"

    def with_capacities(
        self,
        inst: Instance,
        caps: Mapping[tuple[int, int], tuple[Any, Any]],
        derate: Mapping[Any, float],
        dropped: set[tuple[Any, str]],
        source: str = "simulated",
    ) -> SplitTable:
        """The pairs with (prefill, decode) capacities per (type, pair) in place of their figures:
        r_P, r_D the sides' rates (0: the side misses its target at any rate, the route goes),
        each latency the worse side's at its quantile; under the table's derating and dropped
        routes (:meth:`derated`). ``source`` "rate-bound" is the relaxation's (:func:`relaxed`)."""
        from planner.options import delay_cost, derate_factor

        routes = set(self.routes)
        load_p, load_d, delay = dict(self.load_p), dict(self.load_d), dict(self.delay)
        link, error = dict(self.link), dict(self.error)
        fresh: dict[tuple[Any, str], Any] = {}

        def loads(j: int, s: int, r_p: float, r_d: float) -> float:
            """Both pools' loads per unit share at these rates (derated); the derating factor."""
            q = inst.query_types[j]
            f = derate_factor(derate, self.prefill[s], q.id)
            load_p[j, s] = q.arrival_rate / (r_p * f)
            load_d[j, s] = q.arrival_rate / (r_d * f)
            return f

        for (j, s), (cp, cd) in caps.items():
            q = inst.query_types[j]
            po, do = self.prefill[s], self.decode[s]
            f = derate_factor(derate, po, q.id)
            ok = cp.rate_rps > 0 and cd.rate_rps > 0 and (po, q.id) not in dropped
            lat = (max(cp.ttft_s, cd.ttft_s), max(cp.tpot_s, cd.tpot_s), max(cp.e2e_s, cd.e2e_s))
            why = "" if ok else (cp.reason or cd.reason or "misses its target at any rate")
            for o, cap in ((po, cp), (do, cd)):
                old = self.by_key[o, q.id]
                thr = cap.rate_rps * f if ok else None
                batch = cap.max_num_seqs if o.role == "decode" else None  # the cap it was simulated with
                fresh[o, q.id] = replace(
                    old, eligible=ok, reason=why, source=source, throughput_rps=thr,
                    ttft_s=lat[0], tpot_s=lat[1], e2e_s=lat[2], batch=batch,
                )  # fmt: skip
            if ok:
                routes.add((j, s))
                loads(j, s, cp.rate_rps, cd.rate_rps)
                delay[j, s] = 0.0 if source == "rate-bound" else delay_cost(inst, q, lat[2])
                link.setdefault((j, s), q.arrival_rate * self.link_s[s, q.id])  # a route the estimate left out
                error.setdefault((j, s), inst.error(self.pairs[s].model, q.id))
            else:
                routes.discard((j, s))
        correction = dict(self.correction)
        if source == "simulated":
            # The estimate (mean lengths, no bursts, M/D/1 at 0.7) is optimistic for bursty, long-
            # tailed types: each lazy round would pick the next estimated pair, find it slower,
            # and go on (azure-2023: 60 rounds without settling). So the estimates still standing
            # are scaled by the worst simulated/estimated ratio of their type and side so far.
            for (j, s), (cp, cd) in caps.items():
                est = self.estimate.get((j, s))
                if est is None:
                    continue
                for side, cap, e in (("prefill", cp, est[0]), ("decode", cd, est[1])):
                    if cap.rate_rps > 0 and e > 0 and math.isfinite(e):
                        key = (j, side)
                        correction[key] = min(correction.get(key, 1.0), cap.rate_rps / e)
            for (j, s), (e_p, e_d) in self.estimate.items():
                q = inst.query_types[j]
                if (j, s) in caps or (j, s) not in routes or not self.estimated(s, q.id):
                    continue
                c_p, c_d = correction.get((j, "prefill"), 1.0), correction.get((j, "decode"), 1.0)
                if c_p == 1.0 and c_d == 1.0:
                    continue
                f = loads(j, s, e_p * c_p, e_d * c_d)
                for o, thr in ((self.prefill[s], e_p * c_p * f), (self.decode[s], e_d * c_d * f)):
                    fresh[o, q.id] = replace(self.by_key[o, q.id], throughput_rps=thr)
        rows = [fresh.get((r.option, r.query_type), r) for r in self.rows]
        return replace(
            self,
            correction=correction,
            routes=sorted(routes),
            load_p={k: v for k, v in load_p.items() if k in routes},
            load_d={k: v for k, v in load_d.items() if k in routes},
            link={k: v for k, v in link.items() if k in routes},
            delay={k: v for k, v in delay.items() if k in routes},
            error={k: v for k, v in error.items() if k in routes},
            rows=rows,
            by_key={},
            by_option={},
        )

    def index(self, option: Any) -> int | None:
        """The pair of a prefill- or decode-role option, or None."""
        pools = self.prefill if option.role == "prefill" else self.decode
        try:
            return pools.index(option)
        except ValueError:
            return None


def split_table(inst: Instance) -> SplitTable:
    """Every candidate pair's figures and coefficients (module docstring)."""
    from planner.options import Option, Row, delay_cost, rental_per_replica, storage_per_option

    pairs, counts = candidate_pairs(inst)
    tier_index = {g.id: n for n, g in enumerate(inst.gpus)}
    kept: list[SplitPair] = []
    prefill: list[Option] = []  # each kept pair's pools, as the plan names them
    decode: list[Option] = []
    rows: list[Any] = []
    figs: dict[tuple[int, int], SplitFigures] = {}
    sides_of: dict[tuple[str, Side], ReplicaModel | str] = {}  # a side serves many pairs: build it once
    attain = any(inst.attainment(q) is not None for q in inst.query_types)
    u_est = ESTIMATE_UTILIZATION if attain else None
    keys: dict[tuple[int, int], tuple[Any, Any]] = {}
    estimate: dict[tuple[int, int], tuple[float, float]] = {}

    def side(model: LLM, sd: Side) -> ReplicaModel | str:
        if (model.id, sd) not in sides_of:
            sides_of[model.id, sd] = side_model(inst, model, sd)
        return sides_of[model.id, sd]

    for pair in pairs:
        m = inst.model(pair.model)
        p_rm, d_rm = side(m, pair.prefill), side(m, pair.decode)
        assert isinstance(p_rm, ReplicaModel) and isinstance(d_rm, ReplicaModel)  # candidates run
        per_type = [figures(inst, pair, j, p_rm, d_rm, u_est) for j in range(len(inst.query_types))]
        idle: list[SplitFigures | None] = [None] * len(per_type)
        if attain:  # the simulations' batch caps and search ranges come from the idle figures
            idle = [figures(inst, pair, j, p_rm, d_rm, 0.0) for j in range(len(inst.query_types))]
        if not any(f.eligible for f in per_type) and not any(f is not None and f.eligible for f in idle):
            continue
        s = len(kept)
        for j, f0 in enumerate(idle):
            if f0 is not None and f0.eligible:
                keys[j, s] = split_keys(inst, pair, j, f0)
                if per_type[j].eligible:
                    estimate[j, s] = (per_type[j].prefill_rps, per_type[j].decode_rps)
        kept.append(pair)
        po = Option(pair.model, pair.prefill.gpu, pair.prefill.tp, pair.prefill.pp, None, "prefill", pair.key)
        do = Option(pair.model, pair.decode.gpu, pair.decode.tp, pair.decode.pp, None, "decode", pair.key)
        prefill.append(po)
        decode.append(do)
        for j, (q, f) in enumerate(zip(inst.query_types, per_type, strict=True)):
            figs[j, s] = f
            for o, thr, rm in ((po, f.prefill_rps, p_rm), (do, f.decode_rps, d_rm)):
                ok = f.eligible and math.isfinite(thr)
                rows.append(
                    Row(
                        o,
                        q.id,
                        True,
                        f.eligible,
                        f.reason,
                        "model-estimate" if (j, s) in keys else "model",
                        thr if ok else None,
                        f.ttft_s if ok else None,
                        f.tpot_s if ok else None,
                        f.e2e_s if ok else None,
                        f.batch if ok and o.role == "decode" else None,  # the decode micro-batch
                        kv_capacity_tokens=rm.fit().kv_capacity_tokens,  # the export's --max-model-len
                    )
                )
    counts["eligible"] = len(kept)
    routes = sorted((j, s) for (j, s), f in figs.items() if f.eligible)
    lam = {j: q.arrival_rate for j, q in enumerate(inst.query_types)}
    return SplitTable(
        pairs=kept,
        prefill=prefill,
        decode=decode,
        rental_p=np.array([rental_per_replica(inst, o) for o in prefill]),
        rental_d=np.array([rental_per_replica(inst, o) for o in decode]),
        storage=np.array([2.0 * storage_per_option(inst, o) for o in prefill]),
        gpus_p=np.array([o.gpus_per_replica for o in prefill], dtype=int),
        gpus_d=np.array([o.gpus_per_replica for o in decode], dtype=int),
        tier_p=np.array([tier_index[o.gpu] for o in prefill], dtype=int),
        tier_d=np.array([tier_index[o.gpu] for o in decode], dtype=int),
        routes=routes,
        load_p={(j, s): lam[j] / figs[j, s].prefill_rps for j, s in routes},
        load_d={(j, s): lam[j] / figs[j, s].decode_rps for j, s in routes},
        link={(j, s): lam[j] * figs[j, s].link_s for j, s in routes},
        delay={(j, s): delay_cost(inst, inst.query_types[j], figs[j, s].e2e_s) for j, s in routes},
        error={(j, s): inst.error(kept[s].model, inst.query_types[j].id) for j, s in routes},
        rows=rows,
        counts=counts,
        keys=keys,
        estimate=estimate,
        link_s={(s, inst.query_types[j].id): f.link_s for (j, s), f in figs.items() if math.isfinite(f.link_s)},
    )


def split_keys(inst: Instance, pair: SplitPair, type_index: int, idle: SplitFigures) -> tuple[Any, Any]:
    """The capacity keys of a pair's two sides for one type (module docstring, "Attainment"), from
    its figures on an idle system (``idle``: the decode batch cap, r_P and r_D)."""
    import hashlib

    from planner.capacity import Key, fingerprint
    from planner.options import Option

    q = inst.query_types[type_index]
    target = inst.attainment(q)
    assert target is not None
    side_target = 1.0 - (1.0 - target) / 2.0  # each side may miss half the type's share
    po = Option(pair.model, pair.prefill.gpu, pair.prefill.tp, pair.prefill.pp)
    do = Option(pair.model, pair.decode.gpu, pair.decode.tp, pair.decode.pp)
    both = fingerprint(inst, po, type_index) + fingerprint(inst, do, type_index)
    fp = hashlib.sha256(both.encode()).hexdigest()[:32]
    top_p, top_d = PREFILL_TOP * idle.prefill_rps, DECODE_TOP * idle.decode_rps
    d_for_p = min(MAX_HELPERS, math.ceil(HELPER_MARGIN * top_p / idle.decode_rps) + 1)
    p_for_d = min(MAX_HELPERS, math.ceil(HELPER_MARGIN * top_d / idle.prefill_rps) + 1)
    return (
        Key(fp, po, type_index, side_target, None, do, "prefill", d_for_p, idle.batch, top_p, 0.6 * idle.prefill_rps),
        Key(fp, po, type_index, side_target, None, do, "decode", p_for_d, idle.batch, top_d, 0.6 * idle.decode_rps),
    )
