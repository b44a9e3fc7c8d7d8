"""The problem model: what an instance file means, validated once, never mutated.

Symbols used throughout the package (see ``../shared/spec/formats.md``):

=========  ===============================================================
i          a query type (``QueryType``)
m          a base LLM (``LLM``)
g          a GPU tier (``GPU``)
k          an option: one (model, gpu, tp, pp); a replica uses tp·pp GPUs of tier g
λ_i        arrival rate of type i, requests/s
H          period_hours, the rental period; every cost is $ per period
ε_i, ζ_i   max_error and max_unserved of type i (fractions)
φ_i, ρ_i   unserved_penalty ($/request) and delay_penalty ($/request/s)
=========  ===============================================================

Field-level rules (positivity, ranges, unknown keys) live on the models below. Rules that relate
fields to each other (unknown ids, duplicates, missing error entries) live in
:func:`check_consistency`, one ``_check_*`` per rule, so each failure names one field.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import Strict as StrictType

from planner.errors import InputError

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+\-]*$")]
# Numbers are strict: a bool or a numeric string is the wrong shape, and infinities are refused
# (config below), so every figure that reaches a solver is a finite number. Magnitudes are capped
# too: 10^12 (of $, req/s, seconds, GB...) and 10^9 (of layers, tokens, GPUs) are far beyond any
# real figure, and products of larger ones (3600 · hours · rate · penalty, an arrival_rate of
# 1e308) overflowed to inf and NaN costs.
MAX_FIGURE = 1e12
MAX_COUNT = 1_000_000_000
Fraction = Annotated[float, StrictType(), Field(ge=0.0, le=1.0)]
Positive = Annotated[float, StrictType(), Field(gt=0.0, le=MAX_FIGURE)]
Percentile = Annotated[float, StrictType(), Field(gt=0.0, lt=100.0)]  # a percentile, strictly inside (0, 100)
NonNegative = Annotated[float, StrictType(), Field(ge=0.0, le=MAX_FIGURE)]
Degree = Annotated[int, StrictType(), Field(ge=1, le=1024)]
Count = Annotated[int, StrictType(), Field(ge=1, le=MAX_COUNT)]
Count0 = Annotated[int, StrictType(), Field(ge=0, le=MAX_COUNT)]
Share = Annotated[float, StrictType(), Field(gt=0.0, le=1.0)]


class Strict(BaseModel):
    """Base of every input model: immutable, unknown keys rejected, strings not coerced to numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True)


class LLM(Strict):
    """A base LLM. Architecture fields are needed only by the performance model (``model`` mode)."""

    id: Id
    hf_id: str | None = Field(None, description="Hugging Face repository that vLLM serves")
    params_b: Positive = Field(description="total parameters, billions")
    weight_bytes: Positive = Field(2.0, description="bytes per parameter: 2 bf16/fp16, 1 fp8/int8, 0.5 int4")
    layers: Count | None = None
    hidden_size: Count | None = None
    intermediate_size: Count | None = Field(None, description="FFN size (per expert)")
    attention_heads: Count | None = None
    kv_heads: Count | None = None
    head_dim: Count | None = None
    vocab_size: Count | None = None
    max_context_tokens: Count | None = None
    active_params_b: Positive | None = Field(None, description="parameters used per token (MoE), billions")
    num_experts: Count | None = None
    experts_per_token: Count | None = None
    quantization: str | None = Field(None, description="fp8 | awq | gptq ... (informational, for export)")
    task_errors: dict[str, Fraction] = Field(default_factory=dict, description="error rate per public task")
    sources: dict[str, str] = Field(default_factory=dict)

    @property
    def weights_gb(self) -> float:
        """Stored weight size in GB (spec: weights_gb = params_b · weight_bytes)."""
        return self.params_b * self.weight_bytes

    @property
    def is_moe(self) -> bool:
        return (self.num_experts or 1) > 1


ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "layers",
    "hidden_size",
    "intermediate_size",
    "attention_heads",
    "kv_heads",
    "head_dim",
    "vocab_size",
)


class GPU(Strict):
    """A GPU tier: hardware figures (needed in ``model`` mode), a price and an optional limit."""

    id: Id
    name: str | None = None
    memory_gb: Positive | None = None
    tflops: Positive | None = Field(None, description="dense bf16/fp16 tensor TFLOP/s")
    tflops_fp8: Positive | None = Field(None, description="dense fp8 tensor TFLOP/s, if supported")
    bandwidth_tbs: Positive | None = Field(None, description="memory bandwidth, TB/s")
    interconnect_gbs: Positive | None = Field(
        None, description="per-GPU bandwidth between GPUs of one node, GB/s (vendor headline, bidirectional)"
    )
    internode_gbs: Positive | None = Field(None, description="per-GPU network bandwidth between nodes, GB/s")
    gpus_per_node: Count = 8
    price_per_hour: NonNegative = Field(description="$ per GPU-hour")
    price_source: str | None = None
    available: Count0 | None = Field(None, description="most GPUs of this tier to rent")
    k8s_node_selector: dict[str, str] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)


HARDWARE_FIELDS: tuple[str, ...] = ("memory_gb", "tflops", "bandwidth_tbs", "interconnect_gbs")


class Parallelism(Strict):
    """Allowed tensor- and pipeline-parallel degrees (model mode enumerates their product)."""

    tp: tuple[Degree, ...] = (1, 2, 4, 8)
    pp: tuple[Degree, ...] = (1,)

    @field_validator("tp", "pp")
    @classmethod
    def _non_empty_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("must list at least one degree")
        return tuple(sorted(set(v)))


Attainment = Annotated[float, StrictType(), Field(gt=0.0, lt=1.0)]


class SLO(Strict):
    """Latency objectives; a missing key is no limit."""

    ttft_s: Positive | None = None
    tpot_s: Positive | None = None
    e2e_s: Positive | None = None
    attainment: Attainment | None = Field(
        None, description="share of requests that must meet every limit (overrides the instance's slo_attainment)"
    )


class QueryType(Strict):
    id: Id
    arrival_rate: Positive = Field(description="requests per second")
    input_tokens: Positive = Field(description="mean prompt tokens")
    output_tokens: Positive = Field(description="mean generated tokens")
    slo: SLO = SLO()
    max_error: Fraction | None = Field(None, description="ε: routed-load-weighted error rate limit")
    max_unserved: Fraction = Field(0.0, description="ζ: fraction that may go unserved")
    unserved_penalty: NonNegative = Field(0.0, description="φ: $ per unserved request")
    delay_penalty: NonNegative = Field(0.0, description="ρ: $ per request per second of e2e delay")
    task: str | None = Field(None, description="catalog task whose error rates fill missing `errors` entries")
    # Length percentiles (optional): the attainment model's length distributions (planner.lengths).
    input_tokens_p10: Positive | None = None  # used with a p50 (the lower tail: short replies)
    input_tokens_p50: Positive | None = None
    input_tokens_p90: Positive | None = None
    input_tokens_p99: Positive | None = None
    output_tokens_p10: Positive | None = None
    output_tokens_p50: Positive | None = None
    output_tokens_p90: Positive | None = None
    output_tokens_p99: Positive | None = None
    # The type's shortest and longest lengths (optional): the distributions are clipped to them. A
    # type cut from a trace by prompt length has hard bounds (mooncake-2025's chat-8k: 891..8192);
    # extrapolated past p99 its prompts ran to 9,000+ tokens, and TTFT misses with them.
    input_tokens_min: Positive | None = None
    input_tokens_max: Positive | None = None
    output_tokens_min: Positive | None = None
    output_tokens_max: Positive | None = None
    # More knots of the length distributions (optional): [percentile, tokens] pairs, percentiles
    # in (0, 100) increasing, beside the named p10/p50/p90/p99 (a percentile given both ways must
    # agree). Five figures per side leave the shape between them to interpolation, and the
    # short replies behind a prompt's chunk (TPOT) and the long prompts (TTFT) live there:
    # mooncake-2025's long-32k on llama-3.1-8b/a100/tp4 at an 8192-token budget was planned at
    # 0.60× its replayed capacity from five figures, 0.97× from the trace's own lengths.
    # `planner demand --figures` writes them (planner.review.figures.TABLE_PERCENTILES).
    input_tokens_percentiles: tuple[tuple[Percentile, Positive], ...] | None = None
    output_tokens_percentiles: tuple[tuple[Percentile, Positive], ...] | None = None
    # Correlation of prompt and output lengths (optional; Gaussian copula of their normal scores,
    # i.e. the Pearson correlation of the normal scores of their ranks). Chat traces pair long
    # contexts with short replies (Azure conv, prompts > 1024 tokens: −0.65).
    length_correlation: float | None = Field(None, ge=-1.0, le=1.0)
    # Burstiness (optional): percentiles of the rate over the instance's arrival_window_s windows.
    arrival_rate_p90: Positive | None = Field(None, description="p90 of windowed arrival rates, requests/s")
    arrival_rate_p99: Positive | None = Field(None, description="p99 of windowed arrival rates, requests/s")
    # Slow swings (optional): percentiles of the type's load over the instance's
    # arrival_slow_window_s windows (minutes), as a rate: requests weighted by their tokens (prompt
    # + output) over the type's mean, per second. A surge that lasts minutes builds a queue that
    # 10-s windows drawn independently never do (azure-2023's conv-long: 10 minutes of 1.3× longer
    # prompts at 1.17× the rate); the capacity model weighs the replica's attainment over these
    # slow states (planner.capacity.slow_strata). `planner demand --figures` measures them.
    arrival_rate_slow_p90: Positive | None = Field(
        None, description="p90 of the token-weighted arrival rate over arrival_slow_window_s windows, requests/s"
    )
    arrival_rate_slow_p99: Positive | None = Field(
        None, description="p99 of the token-weighted arrival rate over arrival_slow_window_s windows, requests/s"
    )
    arrival_slow_length_share: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of the slow load swings carried by longer requests rather than more of them "
        "(0: all by the rate; the regression of log tokens per request on log load over the slow windows)",
    )
    # The largest burst (optional, all three or none; `planner demand --figures` measures them):
    # the most requests of the type within arrival_burst_s seconds, as their rate and their share
    # of the type's requests. Percentiles describe typical windows, not the one burst that can
    # decide attainment (azure-2023's code: 268 requests within 5 s, 3% of the hour's); the
    # capacity simulation injects it with its weight (planner.capacity).
    arrival_burst_rate: Positive | None = Field(None, description="rate of the largest burst, requests/s")
    arrival_burst_s: Positive | None = Field(None, description="length of the largest burst, s")
    arrival_burst_share: float | None = Field(
        None, gt=0.0, lt=1.0, description="share of the type's requests in its largest burst"
    )
    # The episode around the largest burst (optional, with the three above): the most requests
    # within wider intervals that contain it, as [seconds, requests/s] pairs, widening. A flood
    # rarely starts and stops within arrival_burst_s (azure-2023's code: 271 requests within 5 s,
    # 415 within 10 s, 500 within 20 s); the capacity simulation injects the whole episode.
    arrival_burst_envelope: tuple[tuple[Positive, Positive], ...] | None = Field(
        None, description="[seconds, requests/s] of wider intervals around the largest burst"
    )
    # Clusters (optional, both or neither; `planner demand --figures` measures them): how many
    # more of the type's requests arrive within ±arrival_cluster_s of one of its requests than
    # Poisson arrivals at its window's rate would put there, apart from the largest burst's
    # episode. Requests fired together (azure-2023's code: 12.3 more within ±2 s than its 10-s
    # windows' Poisson arrivals put there) collide in a replica far more often than those say: a
    # long prompt's prefill lands among a short answer's few decode steps and its TPOT misses.
    # The capacity simulation draws its arrivals in clusters of that size (planner.capacity).
    arrival_cluster_s: Positive | None = Field(None, description="half-width of the cluster interval, s")
    arrival_cluster_excess: float | None = Field(
        None,
        ge=0.0,
        le=1000.0,
        description="mean number of the type's other requests within ±arrival_cluster_s of one of its requests "
        "beyond Poisson arrivals at the window rate, at the type's own rate",
    )

    # Prefix reuse (optional; `planner demand --figures` measures both from a trace's prefix-block
    # ids): the token-weighted share of the type's prompt tokens that an ideal prefix cache holds
    # when the request arrives (vLLM's automatic prefix caching skips their prefill), and the same
    # share for an ideal LRU cache of a given size over the type's whole traffic at arrival_rate,
    # as [cache tokens, ratio] pairs, growing. With the curve the option table bounds the reuse by
    # the KV cache a replica can spare (planner.capacity.prefix_hit); without it the ratio is
    # taken as reached at any cache size. Mooncake's conversation trace: chat-8k 0.39 unbounded,
    # 0.26 in 500k tokens.
    prefix_hit_ratio: Fraction | None = Field(
        None, description="token-weighted share of prompt tokens an ideal, unbounded prefix cache serves"
    )
    prefix_hit_curve: tuple[tuple[Positive, Fraction], ...] | None = Field(
        None, description="[cache tokens, hit ratio] of an ideal LRU prefix cache over the type's traffic"
    )
    # The rate of the traffic the curve was measured on (default arrival_rate): more users of the
    # same kind bring more sessions, so a cache of c tokens over λ requests/s acts as c·λ₀/λ over
    # the curve's. Kept apart so that re-rating a type (growth, review windows) keeps its reuse.
    prefix_hit_rate: Positive | None = Field(None, description="requests/s of the traffic prefix_hit_curve describes")

    @model_validator(mode="after")
    def _percentiles_ordered(self) -> QueryType:
        if (self.arrival_cluster_s is None) != (self.arrival_cluster_excess is None):
            raise ValueError("arrival_cluster_s and arrival_cluster_excess go together")
        burst = (self.arrival_burst_rate, self.arrival_burst_s, self.arrival_burst_share)
        if any(v is not None for v in burst) and any(v is None for v in burst):
            raise ValueError("arrival_burst_rate, arrival_burst_s and arrival_burst_share go together")
        if self.arrival_burst_envelope is not None:
            if self.arrival_burst_rate is None or self.arrival_burst_s is None:
                raise ValueError(
                    "arrival_burst_envelope needs arrival_burst_rate, arrival_burst_s and arrival_burst_share"
                )
            prev_s, prev_n = self.arrival_burst_s, self.arrival_burst_rate * self.arrival_burst_s
            for sec, rate in self.arrival_burst_envelope:
                if sec <= prev_s or rate * sec < prev_n - 1e-6:
                    raise ValueError(
                        "arrival_burst_envelope: intervals must widen beyond arrival_burst_s and hold no fewer "
                        f"requests ([{sec:g}, {rate:g}] after {prev_s:g} s with {prev_n:g} requests)"
                    )
                prev_s, prev_n = sec, rate * sec
        if self.arrival_burst_rate is not None and self.arrival_burst_rate < self.arrival_rate:
            raise ValueError(
                f"arrival_burst_rate ({self.arrival_burst_rate:g}) is below arrival_rate ({self.arrival_rate:g})"
            )
        if self.prefix_hit_curve is not None:
            curve = self.prefix_hit_curve
            if not curve:
                raise ValueError("prefix_hit_curve: give at least one [cache tokens, ratio] pair (or leave it out)")
            for (c1, h1), (c2, h2) in itertools.pairwise(curve):
                if c2 <= c1 or h2 < h1:
                    raise ValueError(
                        f"prefix_hit_curve: cache sizes must grow and ratios not fall ([{c2:g}, {h2:g}] after "
                        f"[{c1:g}, {h1:g}])"
                    )
            if self.prefix_hit_ratio is not None and curve[-1][1] > self.prefix_hit_ratio + 1e-9:
                raise ValueError(
                    f"prefix_hit_curve reaches {curve[-1][1]:g}, above prefix_hit_ratio ({self.prefix_hit_ratio:g}), "
                    "the unbounded cache's"
                )
        for pre in ("arrival_rate", "arrival_rate_slow"):
            rates = [(p, getattr(self, f"{pre}_{p}")) for p in ("p90", "p99")]
            given = [(p, v) for p, v in rates if v is not None]
            for (p1, v1), (p2, v2) in itertools.pairwise(given):
                if v2 < v1:
                    raise ValueError(f"{pre}_{p2} ({v2:g}) is below {pre}_{p1} ({v1:g})")
        for side in ("input", "output"):
            vals = [(p, getattr(self, f"{side}_tokens_{p}")) for p in ("min", "p10", "p50", "p90", "p99", "max")]
            lo, hi = getattr(self, f"{side}_tokens_min"), getattr(self, f"{side}_tokens_max")
            mean = getattr(self, f"{side}_tokens")
            if (lo is not None and mean < lo) or (hi is not None and mean > hi):
                raise ValueError(f"{side}_tokens ({mean:g}) is outside {side}_tokens_min/max")
            given = [(p, v) for p, v in vals if v is not None]
            for (p1, v1), (p2, v2) in itertools.pairwise(given):
                if v2 < v1:
                    raise ValueError(f"{side}_tokens_{p2} ({v2:g}) is below {side}_tokens_{p1} ({v1:g})")
            table = getattr(self, f"{side}_tokens_percentiles")
            if table is not None:
                self._check_percentiles(side, table)
        return self

    def _check_percentiles(self, side: str, table: tuple[tuple[float, float], ...]) -> None:
        """``{side}_tokens_percentiles``: percentiles increasing, and every knot — the table's, the
        named p10..p99 and min/max — in order of percentile (a percentile given twice must agree)."""
        key = f"{side}_tokens_percentiles"
        if not table:
            raise ValueError(f"{key}: give at least one [percentile, tokens] pair (or leave it out)")
        for (p1, _), (p2, _) in itertools.pairwise(table):
            if p2 <= p1:
                raise ValueError(f"{key}: percentiles must increase ({p2:g} after {p1:g})")
        named = {10.0: "p10", 50.0: "p50", 90.0: "p90", 99.0: "p99"}
        knots = [(p, v, f"{key} [{p:g}, {v:g}]") for p, v in table]
        for p, name in named.items():
            v = getattr(self, f"{side}_tokens_{name}")
            if v is None:
                continue
            twin = next((t for t in table if t[0] == p), None)
            if twin is not None and abs(twin[1] - v) > 0.5:
                raise ValueError(f"{key} [{p:g}, {twin[1]:g}] disagrees with {side}_tokens_{name} ({v:g})")
            knots.append((p, v, f"{side}_tokens_{name} ({v:g})"))
        for p, name in ((0.0, "min"), (100.0, "max")):
            v = getattr(self, f"{side}_tokens_{name}")
            if v is not None:
                knots.append((p, v, f"{side}_tokens_{name} ({v:g})"))
        knots.sort(key=lambda k: k[0])
        for (_, v1, w1), (_, v2, w2) in itertools.pairwise(knots):
            if v2 < v1 - 0.5:
                raise ValueError(f"{w2} is below {w1}")


class Engine(Strict):
    """vLLM engine settings the planner may choose per deployment."""

    max_num_batched_tokens: tuple[Annotated[int, StrictType(), Field(ge=16, le=1_048_576)], ...] | None = Field(
        None,
        description="candidate token budgets (Sarathi-Serve's chunk budget); default: "
        "(512, 2048, 8192) with an attainment target, performance_params.prefill_chunk_tokens with `mean`",
    )
    split: bool = Field(
        False,
        description="also consider split prefill/decode pools joined by a KV link (planner.disaggregation); "
        "mean-latency mode (slo_attainment: mean) only for now",
    )

    @field_validator("max_num_batched_tokens")
    @classmethod
    def _non_empty_unique(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and not v:
            raise ValueError("must list at least one token budget")
        return None if v is None else tuple(sorted(set(v)))


DEFAULT_TOKEN_BUDGETS = (512, 2048, 8192)


class PerformanceEntry(Strict):
    """Measured figures for one (option, query type); see the spec for table vs model mode."""

    model: Id
    gpu: Id
    tp: Degree = 1
    pp: Degree = 1
    query_type: Id
    throughput_rps: Positive
    ttft_s: NonNegative | None = None
    tpot_s: NonNegative | None = None
    e2e_s: NonNegative | None = None


class PerfParams(Strict):
    """Named factors of the performance model (``planner.perf.model``; equations in its docstring).

    Resolution, per GPU tier (``planner.perf.calibration.effective_params``): these defaults (priors:
    rounded medians of the A100/H100/A40 fits) < the tier's entry in the calibration file (the
    instance's ``calibration:``, else the shipped ``models/calibration/default.yaml``) < the keys
    the instance sets explicitly under ``performance_params`` (those apply to every tier).
    Efficiencies are fractions of the catalog's datasheet figure; ``*_s`` are seconds.
    """

    # Linear layers (GEMMs, LM head): t = t0 + (Tc^p + Tm^p)^(1/p), Tc with a tile-count ramp.
    compute_efficiency: Share = Field(0.74, description="large-GEMM fraction of dense tensor TFLOP/s")
    gemm_half_tiles: Positive = Field(6.0, description="GEMM size (128x128 output tiles) at half efficiency")
    gemm_overlap: Annotated[float, StrictType(), Field(ge=1.0, le=16.0)] = Field(
        1.5, description="p of the smooth max of compute and memory time (1 = no overlap)"
    )
    memory_efficiency: Share = Field(0.85, description="weight-streaming fraction of memory bandwidth")
    kernel_latency_s: NonNegative = Field(4.7e-6, description="fixed time of one GEMM kernel")
    # Token-parallel element-wise ops, bandwidth-bound on activations: t = t0 + bytes / (B·η).
    norm_efficiency: Share = 0.44
    norm_latency_s: NonNegative = 2.6e-6
    rope_efficiency: Share = 0.52
    rope_latency_s: NonNegative = 1.9e-6
    act_efficiency: Share = 0.59
    act_latency_s: NonNegative = 1.6e-6
    add_efficiency: Share = 1.0
    add_latency_s: NonNegative = 8.0e-7
    embed_efficiency: Share = 0.094
    embed_latency_s: NonNegative = 2.5e-6
    # Attention kernel: prefill FLOPs at a fraction of peak, decode KV reads at a fraction of bandwidth.
    attention_efficiency: Share = Field(0.17, description="causal prefill attention: fraction of dense TFLOP/s")
    context_attention_efficiency: Share = Field(0.47, description="attention over cached tokens: fraction")
    # Per-tensor fp8 GEMMs (vLLM's CUTLASS scaled-mm, activations quantized on the fly) reach a
    # smaller share of their peak and carry more fixed time than bf16 ones. None: the bf16 factor.
    fp8_compute_efficiency: Share | None = Field(None, description="η_c of fp8 GEMMs, share of the fp8 TFLOP/s")
    fp8_memory_efficiency: Share | None = Field(None, description="η_m of fp8 GEMMs")
    fp8_quant_efficiency: Share | None = Field(
        None,
        description="vLLM's dynamic per-tensor quantization of an fp8 GEMM's activations: share of memory "
        "bandwidth over 5 bytes per element (None: not modelled)",
    )
    attention_half_blocks: NonNegative = Field(16.0, description="query blocks (128 tokens x heads) at half efficiency")
    context_attention_half_blocks: NonNegative | None = Field(
        None, description="the same for a chunk over its cache (None: attention_half_blocks)"
    )
    kv_efficiency: Share = Field(0.84, description="decode KV-cache read fraction of memory bandwidth")
    attention_latency_s: NonNegative = 1.6e-5
    # Collectives: all-reduce α + 2(t−1)/t · bytes / (η_n · interconnect/2); send/recv α + bytes / β.
    network_efficiency: Share = Field(0.74, description="all-reduce bus bandwidth / (interconnect_gbs / 2), TP ≤ 2")
    collective_latency_s: NonNegative = Field(4.2e-5, description="all-reduce latency α at TP ≤ 2")
    # Per-TP all-reduce (ring size changes NCCL's protocol and hop count): None = the TP-2 value.
    network_efficiency_tp4: Share | None = Field(None, description="η_n at TP 3-4 (None: network_efficiency)")
    network_efficiency_tp8: Share | None = Field(None, description="η_n at TP > 4 (None: network_efficiency)")
    collective_latency_tp4_s: NonNegative | None = Field(None, description="α_n at TP 3-4 (None: collective_latency_s)")
    collective_latency_tp8_s: NonNegative | None = Field(None, description="α_n at TP > 4 (None: collective_latency_s)")
    # vLLM's custom all-reduce (one CUDA kernel over peer memory, in its CUDA graphs) instead of
    # NCCL for messages up to custom_allreduce_max_bytes within a node whose GPUs are all linked by
    # NVLink, or on two GPUs (vLLM custom_all_reduce.py: "not supported on more than two PCIe-only
    # GPUs"); its latency is ~5 µs where NCCL's is 15-40. None: NCCL for every message.
    custom_allreduce_latency_s: NonNegative | None = Field(None, description="custom all-reduce α at TP ≤ 2")
    custom_allreduce_latency_tp4_s: NonNegative | None = Field(None, description="at TP 3-4 (None: the TP-2 value)")
    custom_allreduce_latency_tp8_s: NonNegative | None = Field(None, description="at TP > 4 (None: the TP-2 value)")
    custom_allreduce_efficiency: Share | None = Field(None, description="its bus bandwidth (None: network_efficiency)")
    custom_allreduce_efficiency_tp4: Share | None = None
    custom_allreduce_efficiency_tp8: Share | None = None
    custom_allreduce_max_bytes: Positive = Field(
        8 * 1024 * 1024, description="largest message on the custom path (vLLM CustomAllreduce max_size, 8 MiB)"
    )
    p2p_efficiency: Share = Field(0.79, description="intra-node send/recv / (interconnect_gbs / 2)")
    p2p_latency_s: NonNegative = 7.7e-6
    internode_efficiency: Share = Field(0.31, description="inter-node send/recv / internode_gbs")
    internode_latency_s: NonNegative = 3.1e-5
    # Host (engine) time per iteration that does not overlap the GPU: c0 + c1·(sequences in the batch).
    iteration_overhead_s: NonNegative = 7.3e-4
    sequence_overhead_s: NonNegative = 1.1e-5
    layer_overhead_s: NonNegative = Field(0.0, description="extra time per layer (kernel latencies are per op)")
    # Serving configuration (vLLM's settings; never calibrated).
    gpu_memory_utilization: Share = 0.90
    runtime_reserve_gb: NonNegative = 1.5
    kv_cache_bytes: Positive = 2.0
    # Iteration times are tabulated up to these (planner.perf.IterationTable): bounded so a typo
    # cannot ask for a table of 10^9 rows.
    max_num_seqs: Annotated[int, StrictType(), Field(ge=1, le=100_000)] = 256
    prefill_chunk_tokens: Annotated[int, StrictType(), Field(ge=16, le=1_048_576)] = 2048
    default_internode_gbs: Positive = 25.0


class DemandWindow(Strict):
    """One window of a demand profile: its length and each query type's arrival rate in it."""

    id: str | None = Field(None, description="label, e.g. '08:00' (default: w1, w2, ...)")
    hours: Positive = Field(description="length of the window, hours")
    rates: dict[Id, NonNegative] = Field(
        default_factory=dict, description="requests/s per query type; a missing type keeps its arrival_rate"
    )


class Scaling(Strict):
    """Multi-period planning: replica counts per demand window (see the spec extension in README).

    The windows form a profile that repeats over the period: window t weighs
    h_t = hours_t · period_hours / Σ hours, and the last window is followed by the first.
    """

    windows: tuple[DemandWindow, ...] = Field((), description="the profile, inline")
    demand_csv: str | None = Field(None, description="or a `planner demand` CSV, relative to the instance")
    base_fleet: bool = Field(False, description="rent a base fleet for the whole period, scale on demand above it")
    on_demand_premium: NonNegative = Field(0.0, description="scaled replicas cost price · (1 + premium)")
    max_change: Count0 | None = Field(None, description="most replicas of one option added or removed between windows")


class Instance(Strict):
    """A complete, validated problem. Models and GPUs are resolved (catalog ids already expanded)."""

    name: str = Field(min_length=1)
    period_hours: Positive = 24.0
    budget: NonNegative | None = Field(None, description="$ per period: rental + storage may not exceed it")
    include: tuple[str, ...] = Field((), description="catalog files, relative to the instance file")
    models: tuple[LLM, ...] = Field(min_length=1)
    gpus: tuple[GPU, ...] = Field(min_length=1)
    parallelism: Parallelism = Parallelism()
    storage_price_per_gb_hour: NonNegative = 0.0
    max_utilization: Share = 1.0
    query_types: tuple[QueryType, ...] = Field(min_length=1)
    errors: dict[str, dict[str, Fraction]] = Field(default_factory=dict)
    performance_mode: Literal["model", "table"] = "model"
    performance: tuple[PerformanceEntry, ...] = ()
    performance_params: PerfParams = PerfParams()
    calibration: str | None = Field(
        None, description="calibration file (path relative to the instance) or shipped id; default: the shipped one"
    )
    notes: str | None = None
    scaling: Scaling | None = Field(None, description="multi-period planning over demand windows")
    slo_attainment: Attainment | Literal["mean"] = Field(
        0.99,
        description="share of each type's requests that must meet all its SLO limits (model mode), "
        "or `mean`: the SLOs bound mean latencies (the paper's semantics)",
    )
    engine: Engine = Engine()
    arrival_window_s: Positive = Field(
        10.0, description="window of the arrival_rate_p90/p99 figures, s (the attainment model's burst scale)"
    )
    arrival_slow_window_s: Positive = Field(
        300.0, description="window of the arrival_rate_slow_p90/p99 figures, s (minutes-long swings)"
    )

    def attainment(self, q: QueryType) -> float | None:
        """The attainment target of type q, or None under mean-latency semantics."""
        if q.slo.attainment is not None:
            return q.slo.attainment
        return None if self.slo_attainment == "mean" else float(self.slo_attainment)

    def token_budgets(self) -> tuple[int, ...]:
        """Candidate max_num_batched_tokens of model mode (the Engine docstring's default)."""
        if self.engine.max_num_batched_tokens is not None:
            return self.engine.max_num_batched_tokens
        if self.slo_attainment == "mean":
            return (self.performance_params.prefill_chunk_tokens,)
        return DEFAULT_TOKEN_BUDGETS

    def model(self, model_id: str) -> LLM:
        return next(m for m in self.models if m.id == model_id)

    def gpu(self, gpu_id: str) -> GPU:
        return next(g for g in self.gpus if g.id == gpu_id)

    def error(self, model_id: str, type_id: str) -> float:
        """e[m][i]; 0 when the type sets no accuracy limit and the entry is absent."""
        return self.errors.get(model_id, {}).get(type_id, 0.0)


# --------------------------------------------------------------------------------------------
# Consistency: rules across fields. Each raises InputError(None, field, message).
# --------------------------------------------------------------------------------------------


def _duplicates(ids: list[str]) -> str | None:
    seen: set[str] = set()
    for x in ids:
        if x in seen:
            return x
        seen.add(x)
    return None


def _check_unique_ids(inst: Instance) -> None:
    for key, items in (("models", inst.models), ("gpus", inst.gpus), ("query_types", inst.query_types)):
        ids = [it.id for it in items]
        dup = _duplicates(ids)
        if dup is not None:
            raise InputError(None, f"{key}[{len(ids) - 1 - ids[::-1].index(dup)}].id", f"duplicate id {dup!r}")


def _check_errors_refs(inst: Instance) -> None:
    model_ids = {m.id for m in inst.models}
    type_ids = {q.id for q in inst.query_types}
    for m, row in inst.errors.items():
        if m not in model_ids:
            raise InputError(None, f"errors.{m}", f"unknown model id {m!r}")
        for t in row:
            if t not in type_ids:
                raise InputError(None, f"errors.{m}.{t}", f"unknown query type id {t!r}")


def _check_errors_complete(inst: Instance) -> None:
    """Every (model, type) needs e[m][i] when type i has an accuracy limit."""
    for idx, q in enumerate(inst.query_types):
        if q.max_error is None:
            continue
        for m in inst.models:
            if q.id not in inst.errors.get(m.id, {}):
                raise InputError(
                    None,
                    f"errors.{m.id}.{q.id}",
                    f"missing error rate of model {m.id!r} on query type {q.id!r} "
                    f"(query_types[{idx}].max_error is set)",
                )


def _check_performance_refs(inst: Instance) -> None:
    model_ids = {m.id for m in inst.models}
    gpu_ids = {g.id for g in inst.gpus}
    type_ids = {q.id for q in inst.query_types}
    seen: set[tuple[str, str, int, int, str]] = set()
    for n, e in enumerate(inst.performance):
        if e.model not in model_ids:
            raise InputError(None, f"performance[{n}].model", f"unknown model id {e.model!r}")
        if e.gpu not in gpu_ids:
            raise InputError(None, f"performance[{n}].gpu", f"unknown gpu id {e.gpu!r}")
        if e.query_type not in type_ids:
            raise InputError(None, f"performance[{n}].query_type", f"unknown query type id {e.query_type!r}")
        key = (e.model, e.gpu, e.tp, e.pp, e.query_type)
        if key in seen:
            raise InputError(None, f"performance[{n}]", "duplicate entry for this (model, gpu, tp, pp, query_type)")
        seen.add(key)
    if inst.performance_mode == "table" and not inst.performance:
        raise InputError(None, "performance", "performance_mode is 'table' but no performance entries are given")


def _check_model_mode_fields(inst: Instance) -> None:
    """The performance model needs architecture and hardware figures; table mode does not."""
    if inst.performance_mode != "model":
        return
    for n, m in enumerate(inst.models):
        for f in ARCHITECTURE_FIELDS:
            if getattr(m, f) is None:
                raise InputError(None, f"models[{n}].{f}", "required when performance_mode is 'model'")
        assert m.attention_heads is not None and m.kv_heads is not None
        if m.attention_heads % m.kv_heads != 0:
            raise InputError(None, f"models[{n}].kv_heads", "must divide attention_heads")
        if m.active_params_b is not None and m.active_params_b > m.params_b:
            raise InputError(None, f"models[{n}].active_params_b", "exceeds params_b")
    for n, g in enumerate(inst.gpus):
        for f in HARDWARE_FIELDS:
            if getattr(g, f) is None:
                raise InputError(None, f"gpus[{n}].{f}", "required when performance_mode is 'model'")


def _check_scaling(inst: Instance) -> None:
    sc = inst.scaling
    if sc is None:
        return
    if not sc.windows:
        raise InputError(None, "scaling.windows", "no demand window (give windows or demand_csv)")
    types = {q.id for q in inst.query_types}
    for n, w in enumerate(sc.windows):
        for t in w.rates:
            if t not in types:
                raise InputError(None, f"scaling.windows[{n}].rates.{t}", f"unknown query type id {t!r}")
    ids = [w.id for w in sc.windows if w.id is not None]
    dup = _duplicates(ids)
    if dup is not None:
        raise InputError(None, "scaling.windows", f"duplicate window id {dup!r}")


def check_consistency(inst: Instance) -> None:
    """Run every cross-field rule; the first failure is raised as an :class:`InputError`."""
    _check_unique_ids(inst)
    _check_errors_refs(inst)
    _check_errors_complete(inst)
    _check_performance_refs(inst)
    _check_model_mode_fields(inst)
    _check_scaling(inst)
    _check_split(inst)


def _check_split(inst: Instance) -> None:
    if not inst.engine.split:
        return
    if inst.performance_mode != "model":
        raise InputError(None, "engine.split", "split prefill/decode pools are priced in model mode only")
    if inst.scaling is not None:
        raise InputError(None, "engine.split", "split pools are not planned over demand windows (scaling) yet")


def instance_json_schema() -> dict[str, Any]:
    """JSON Schema of the instance *file*: models and gpus may also be catalog id strings."""
    schema = Instance.model_json_schema()
    props = schema["properties"]
    for key, ref in (("models", "#/$defs/LLM"), ("gpus", "#/$defs/GPU")):
        props[key]["items"] = {
            "anyOf": [
                {"type": "string", "description": "a catalog id"},
                {"$ref": ref},
            ]
        }
    schema["title"] = "planner instance"
    return schema
