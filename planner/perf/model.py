r"""Calibrated operator-level performance model of one vLLM replica.

One replica of option k = (model m, gpu g, tp t, pp p) runs on t·p GPUs: t-way tensor parallel
within a node, p pipeline stages of L = ⌈layers/p⌉ layers each. Units: seconds, bytes, FLOP,
tokens. Hardware figures are the catalog's datasheet values (F dense bf16 TFLOP/s, F8 fp8,
B memory bandwidth, I interconnect, N inter-node); every efficiency η and latency below is a
field of :class:`planner.problem.PerfParams`, set per GPU tier by the calibration
(:mod:`planner.perf.calibration`, fitted by :mod:`planner.perf.fit` to measured operator and
collective timings and by :mod:`planner.perf.serving` to serving benchmarks). Nothing is keyed on a
model name: every time follows from the architecture (h hidden, n_q / n_kv heads, d head_dim,
f FFN, V vocab, w weight bytes, E / k experts). The operator formulas below (GEMM, element-wise,
attention, collectives) are the functions of :mod:`planner.perf.ops`; the iteration-time forms a
simulator uses are in :mod:`planner.perf.iteration`.

Memory (per GPU, GB = 1e9 bytes)
    W_gpu   = params_b · w / (t·p)                                              weights
    A_gpu   = runtime_reserve + C_chunk·(4h + 2·f·k/t)·2/1e9 + S_max·V/t·4/1e9  activations, logits
    KV_gpu  = memory_gb · gmu − W_gpu − A_gpu                                   KV budget; fits ⇔ KV_gpu > 0
    b_kv    = 2 · L · max(1, n_kv/t) · d · kv_bytes                              KV bytes per token per GPU
    N_kv    = ⌊KV_gpu·1e9 / b_kv⌋                                               KV capacity, tokens/replica

GEMM (each linear layer, per GPU, for n token rows, K×N weight shard of W bytes):
    Tc      = 2·n·K·N / (F·η_c) · (1 + w½·128² / (n·N))    compute; η ramps with output tiles n·N/128²
    Tm      = (W + 2·n·(K + N)) / (B·η_m)                  weights + activations streamed once
    t_gemm  = t0 + (Tc^p + Tm^p)^(1/p)                     smooth roofline (p = gemm_overlap)
  per layer: QKV (K=h, N=(n_q/t + 2·max(1, n_kv/t))·d), O (n_q·d/t, h), gate+up (h, 2f/t),
  down (f/t, h); MoE gate+up/down run n·k rows over E·(1 − (1 − k/E)^n) experts' weights;
  LM head (h, V/t) on one row per sequence. F is the fp8 rate for fp8 weights on a GPU that has
  one, with its own η_c and η_m where the calibration has them (fp8_*), plus vLLM's dynamic
  quantization of the activations, t_q = 5·n·K / (B·η_q) (fp8_quant_efficiency: absmax and scale
  passes over 16-bit activations, one 8-bit write); embedding and LM head stay 16-bit.
Element-wise (bandwidth-bound on activations), t = t0_op + bytes / (B·η_op):
    norm ×2: 4·n·h   rope: 4·n·(n_q/t + n_kv,gpu)·d   act: 2·n·k·3f/t   add: 6·n·h   embed: 2·n·h
Attention, per layer, for a prefill chunk of c tokens over k cached ones plus D decodes at mean
context C (n_q,gpu = n_q/t, b = attention_half_blocks, b_ctx = context_attention_half_blocks or b):
    t_att   = α_a + 4d/F · [ (n_q,gpu·c²/2 + 64·b·c)/η_a + k·(n_q,gpu·c + 128·b_ctx·[c>0])/η_ctx
                            + n_q,gpu·D·C/η_ctx ] + D·C·b_kv,l / (B·η_kv)
  (causal self-attention of the chunk with a block-count ramp; the chunk against its cache and the
  decodes against theirs at the context efficiency; decode reads every cached K/V once)
Collectives: all-reduce of s bytes over t GPUs, and one pipeline hop (intra- or inter-node)
    t_ar    = α_n(t) + 2(t−1)/t · s / (η_n(t) · I/2)   two per layer + one for the vocab-parallel embedding
  (NCCL; where the calibration holds the tier's measured NCCL curve at t, t_ar interpolates it in
  log-log instead, and beyond its largest message scales that point by size)
              (α_n, η_n per ring size: t ≤ 2, 3–4, > 4; an unset 3–4 or > 4 value is the t ≤ 2 one)
    vLLM's custom all-reduce replaces NCCL for s ≤ S_c (8 MiB) where vLLM enables it (one node,
    t ∈ {2, 4, 6, 8}, NVLink between every pair or t = 2), in the same form with its own α_c(t),
    η_c(t); past S_c, max(t_ar(s), t_c(S_c)) so the time never drops at the switch
    t_hop   = α_p2p + s / (η_p2p · I/2)   or   α_in + s / (η_in · N)       s = n·h·2
Host: o_it + o_seq·(sequences in the batch) per iteration (engine time that does not overlap).

Stage time of one iteration (the last stage; n = c + D tokens):
    τ(c, k, D, C) = L·(Σ_gemm + Σ_elementwise + t_att + 2·t_ar + o_l) + head + embed + t_ar
                    + [p > 1]·t_hop + o_it + o_seq·(D + [c > 0])
Prefill of I tokens as vLLM cuts it: n_f = ⌊I/b⌋ full chunks of the budget b and a remainder
r = I − n_f·b (chunk j sees j·b cached tokens; attention is linear in k, so the mean full chunk is
exact), b = prefill_chunk_tokens − min(B', prefill_chunk_tokens/2) with B' running decodes:
    T_pf    = n_f · τ(b, (n_f − 1)·b/2, 0, 0) + [r > 0]·τ(r, n_f·b, 0, 0)   stage-time of work
Decode step of a micro-batch of B requests with mean context C = I + O/2:
    t_s(B)  = τ(0, 0, B, C)
Continuous batching with p micro-batches in flight (vLLM's virtual engines), B each:
    r_max(B) = 1 / (T_pf + O·t_s(B)/B)        requests/s a replica sustains at batch B
At the planned load r = max_utilization · r_max(B), the running batch B' solves Little's law
    B'·(1 − r·T_pf) = r·O·t_s(B')             (fixed point; B' ≤ B)
and a request sees
    TPOT = p·t_s(B') / (1 − r·T_pf)           decode steps slowed by the prefill share r·T_pf
    TTFT = t_s(B')/2 + ρ·T_pf/(2(1 − ρ)) + Σ_chunks τ(·, ·, B', C) + (p − 1)·τ(last chunk)   ρ = r·T_pf
           (residual of the running step, M/D/1 wait for the prefill server, then the chunks
           mixed with the running decodes, plus pipeline fill)
    E2E  = TTFT + (O − 1)·TPOT
KV: p·B·(I + O) ≤ N_kv (every request may grow to its full length), and B ≤ max_num_seqs.

The option's figures for type i are taken at the largest batch B (most r_max) whose TTFT, TPOT and
E2E at load max_utilization·r_max(B) meet the type's SLO: ``throughput_rps`` = r_max(B).

Iteration model (for simulators, Aladdin's linear form plus its small quadratic prefill term): over
a grid of mixed batches,
    p·τ ≈ c0 + c1·P + c2·D + c3·ΣC + c4·A
    P = prefill tokens, D = decode requests, ΣC = Σ decode context tokens,
    A = Σ over prefill chunks of c·(k + c/2) (a chunk of c tokens attends its k cached ones and,
        causally, itself: the attention work that makes long prompts super-linear)
fitted by least relative squares (:meth:`ReplicaModel.iteration_model`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.perf.iteration import IterationModel, IterationTable
from planner.perf.ops import (
    ACT_BYTES,
    GB,
    PCIE_GEN5_GBS,
    allreduce_time,
    attention_time,
    elementwise_time,
    gemm_time,
    kv_bytes_per_token,
    layer_shapes,
    p2p_time,
)
from planner.problem import GPU, LLM, PerfParams


@dataclass(frozen=True)
class Fit:
    """Whether the weights and runtime reserve fit, and the KV capacity left."""

    fits: bool
    weights_gb_per_gpu: float
    reserve_gb_per_gpu: float
    usable_gb_per_gpu: float
    kv_capacity_tokens: int
    reason: str = ""


@dataclass(frozen=True)
class TypeFigures:
    """Figures of one option for one query type (arrays are per type)."""

    candidate: np.ndarray  # bool: fits this type (memory, context) — may still miss an SLO
    eligible: np.ndarray  # bool: candidate and every SLO met
    reason: list[str]
    batch: np.ndarray  # planned micro-batch B (requests per pipeline stage)
    throughput_rps: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    prefill_s: np.ndarray  # latency of one prefill on an idle replica
    decode_step_s: np.ndarray  # pipeline traverse of one decode step at the planned batch


class ReplicaModel:
    """Timing and memory of one replica of (model, gpu, tp, pp); see the module docstring.

    ``params`` are the instance's :class:`PerfParams`; ``calibration`` is the instance's
    ``calibration`` reference (None: the shipped default). The tier's calibrated factors apply
    unless ``params`` sets them explicitly (:func:`planner.perf.calibration.effective_params`).
    """

    def __init__(
        self, model: LLM, gpu: GPU, tp: int, pp: int, params: PerfParams, calibration: str | None = None
    ) -> None:
        from planner.perf.calibration import effective_params, nccl_curve

        assert model.layers and model.hidden_size and model.intermediate_size and model.attention_heads
        assert model.kv_heads and model.head_dim and model.vocab_size
        assert gpu.memory_gb and gpu.tflops and gpu.bandwidth_tbs and gpu.interconnect_gbs
        q = effective_params(gpu.id, params, calibration)
        self.m, self.g, self.tp, self.pp, self.q = model, gpu, tp, pp, q
        h, d, ff, vocab = model.hidden_size, model.head_dim, model.intermediate_size, model.vocab_size
        self.h, self.d = h, d
        self.layers_per_stage = math.ceil(model.layers / pp)
        self.nq_gpu = model.attention_heads / tp
        self.experts = model.num_experts or 1
        self.top_k = min(model.experts_per_token or 1, self.experts)
        self.wb = model.weight_bytes
        fp8 = model.weight_bytes <= 1.0 and (model.quantization or "fp8").lower().startswith("fp8")
        f16 = gpu.tflops * 1e12
        f_lin = (gpu.tflops_fp8 if (fp8 and gpu.tflops_fp8) else gpu.tflops) * 1e12
        self.f16 = f16
        self.bw = gpu.bandwidth_tbs * 1e12
        L = self.layers_per_stage
        # GEMM stack: QKV, O, gate+up, down (per layer, × L) and the LM head (× 1).
        k_l, n_l, self.e_bytes = layer_shapes(h, model.attention_heads, model.kv_heads, d, ff, tp, True, self.top_k)
        self.g_k = np.append(k_l, h)
        self.g_n = np.append(n_l, vocab / tp)
        bytes_w = np.array([self.wb] * 4 + [ACT_BYTES])
        self.g_w = self.g_k * self.g_n * bytes_w
        self.g_f = np.array([f_lin] * 4 + [f16])
        # GEMM factors per column: the layer GEMMs of fp8 weights on an fp8 GPU take the fp8 ones
        # where the calibration has them (η8, η_m8); everything else the bf16 ones.
        f8 = fp8 and gpu.tflops_fp8 is not None
        c8, m8 = (q.fp8_compute_efficiency, q.fp8_memory_efficiency) if f8 else (None, None)
        self.g_eff_c = np.array([q.compute_efficiency if c8 is None else c8] * 4 + [q.compute_efficiency])
        self.g_eff_m = np.array([q.memory_efficiency if m8 is None else m8] * 4 + [q.memory_efficiency])
        q8 = (q.fp8_quant_efficiency or 0.0) if f8 else 0.0
        self.g_quant = np.array([q8] * 4 + [0.0])  # activation quantization of the fp8 layer GEMMs
        self.g_mult = np.array([L, L, L, L, 1], float)
        self.g_layer = np.array([1, 1, 1, 1, 0], float)
        self.g_head = 1.0 - self.g_layer
        self.g_moe = np.array([False, False, True, True, False]) if self.experts > 1 else None
        # Element-wise stack: multiplicity per stage (two norms per layer; one embedding).
        self.e_mult = np.array([2 * L, L, L, L, 1], float)
        self.e_eff = np.array(
            [q.norm_efficiency, q.rope_efficiency, q.act_efficiency, q.add_efficiency, q.embed_efficiency]
        )
        self.e_lat = np.array([q.norm_latency_s, q.rope_latency_s, q.act_latency_s, q.add_latency_s, q.embed_latency_s])
        self.kv_tok_l = kv_bytes_per_token(model.kv_heads, d, tp, q.kv_cache_bytes)  # per token, layer and GPU
        self.kv_tok = self.kv_tok_l * L
        eta_n = _per_tp(tp, q.network_efficiency, q.network_efficiency_tp4, q.network_efficiency_tp8)
        self.ar_lat = _per_tp(tp, q.collective_latency_s, q.collective_latency_tp4_s, q.collective_latency_tp8_s)
        self.ar_bus = gpu.interconnect_gbs / 2 * GB * eta_n
        # A measured NCCL curve of this tier and TP, where the calibration has one (log-log
        # interpolation inside it; beyond it, its end point scaled by size, the bandwidth-bound limit).
        curve = nccl_curve(gpu.id, tp, params, calibration) if tp > 1 else None
        self.nccl_curve = None if curve is None else (np.log(curve[0]), np.log(np.maximum.accumulate(curve[1])))
        self.car: tuple[float, float, float] | None = None
        if q.custom_allreduce_latency_s is not None and vllm_custom_allreduce(gpu, tp):
            lat_c = _per_tp(
                tp, q.custom_allreduce_latency_s, q.custom_allreduce_latency_tp4_s, q.custom_allreduce_latency_tp8_s
            )
            eta_c = _per_tp(
                tp, q.custom_allreduce_efficiency, q.custom_allreduce_efficiency_tp4, q.custom_allreduce_efficiency_tp8
            )
            bus = gpu.interconnect_gbs / 2 * GB * (eta_n if eta_c is None else eta_c)
            self.car = (lat_c, bus, q.custom_allreduce_max_bytes)
        self.nodes = math.ceil(tp * pp / gpu.gpus_per_node)
        if self.nodes > 1:
            internode = gpu.internode_gbs or q.default_internode_gbs
            self.hop_bw, self.hop_lat = internode * GB * q.internode_efficiency, q.internode_latency_s
        else:
            self.hop_bw, self.hop_lat = gpu.interconnect_gbs / 2 * GB * q.p2p_efficiency, q.p2p_latency_s

    # ---------------------------------------------------------------- memory
    def fit(self) -> Fit:
        q, m = self.q, self.m
        weights = m.params_b * 1e9 * self.wb / (self.tp * self.pp) / GB
        act = (
            q.runtime_reserve_gb
            + q.prefill_chunk_tokens * (4 * self.h + 2 * m.intermediate_size * self.top_k / self.tp) * ACT_BYTES / GB
            + q.max_num_seqs * m.vocab_size / self.tp * 4 / GB
        )
        usable = self.g.memory_gb * q.gpu_memory_utilization
        kv_gb = usable - weights - act
        if kv_gb <= 0:
            return Fit(
                False,
                weights,
                act,
                usable,
                0,
                f"does not fit: weights {weights:.1f} GB + reserve {act:.1f} GB per GPU > {usable:.1f} GB usable",
            )
        return Fit(True, weights, act, usable, int(kv_gb * GB / self.kv_tok))

    # ---------------------------------------------------------------- timing
    def _gemms(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Σ over the stage's GEMMs (L layers + LM head) for ``tokens`` new tokens, ``rows`` logits rows."""
        q = self.q
        t = tokens[..., None]
        n = t * self.g_layer + rows[..., None] * self.g_head  # rows of each GEMM: tokens, or sequences
        w = self.g_w
        if self.g_moe is not None:  # experts: k rows per token, weights of the experts touched
            frac = 1.0 - np.power(1.0 - self.top_k / self.experts, np.maximum(t, 1.0))
            n = np.where(self.g_moe, n * self.top_k, n)
            w = np.where(self.g_moe, self.experts * frac * w, w)
        per = gemm_time(
            n,
            self.g_k,
            self.g_n,
            w,
            self.g_f,
            self.bw,
            self.g_eff_c,  # type: ignore[arg-type]  # per GEMM column (bf16 or fp8 factors)
            q.gemm_half_tiles,
            q.gemm_overlap,
            self.g_eff_m,  # type: ignore[arg-type]
            q.kernel_latency_s,
            self.g_quant,
        )
        # A GEMM with no rows is not launched (a stage with no sequences has no LM head).
        return np.sum(np.where(n > 0, per, 0.0) * self.g_mult, axis=-1)

    def _elementwise(self, tokens: np.ndarray) -> np.ndarray:
        per = elementwise_time(tokens[..., None] * self.e_bytes, self.bw, self.e_eff, self.e_lat)
        return np.sum(per * self.e_mult, axis=-1)

    def _attention(self, chunk: np.ndarray, cached: np.ndarray, decodes: np.ndarray, context: np.ndarray) -> np.ndarray:
        q = self.q
        return attention_time(
            chunk,
            cached,
            decodes,
            context,
            self.nq_gpu,
            self.d,
            self.kv_tok_l,
            self.f16,
            self.bw,
            q.attention_efficiency,
            q.context_attention_efficiency,
            q.attention_half_blocks,
            q.kv_efficiency,
            q.attention_latency_s,
            q.context_attention_half_blocks,
        )

    def nccl_allreduce(self, nbytes: np.ndarray) -> np.ndarray:
        """One NCCL all-reduce of ``nbytes`` over the TP ring: the measured curve, or α + s/β."""
        if self.nccl_curve is None:
            return allreduce_time(nbytes, self.tp, self.ar_bus, self.ar_lat)
        ls, lt = self.nccl_curve
        x = np.log(np.maximum(nbytes, 1.0))
        inside = np.exp(np.interp(x, ls, lt))  # flat below the smallest measured message
        return np.where(x > ls[-1], np.exp(lt[-1] + x - ls[-1]), inside)

    def _allreduce(self, n_tokens: np.ndarray) -> np.ndarray:
        nbytes = n_tokens * self.h * ACT_BYTES
        nccl = self.nccl_allreduce(nbytes)
        if self.car is None:
            return nccl
        lat, bus, top = self.car
        # Custom kernel up to its size limit, NCCL beyond; never faster past the switch than at
        # it, so more tokens never take less time (a real switch may, by a few µs).
        custom = allreduce_time(np.minimum(nbytes, top), self.tp, bus, lat)
        return np.where(nbytes <= top, custom, np.maximum(nccl, custom))

    def _hop(self, n_tokens: np.ndarray) -> np.ndarray:
        if self.pp == 1:
            return np.zeros_like(n_tokens)
        return p2p_time(n_tokens * self.h * ACT_BYTES, self.hop_bw, self.hop_lat)

    def components(
        self,
        chunk: np.ndarray | float,
        cached: np.ndarray | float,
        decodes: np.ndarray | float,
        context: np.ndarray | float,
    ) -> dict[str, np.ndarray]:
        """τ split by kind (gemm, elementwise, attention, communication, host), seconds per stage."""
        c, k, b, ctx = (np.asarray(x, float) for x in (chunk, cached, decodes, context))
        shape = np.broadcast_shapes(c.shape, k.shape, b.shape, ctx.shape)
        q = self.q
        tokens = np.broadcast_to(c + b, shape)
        seqs = np.broadcast_to(b + (c > 0), shape)
        L = self.layers_per_stage
        return {
            "gemm": self._gemms(tokens, seqs),
            "elementwise": self._elementwise(tokens) + L * q.layer_overhead_s,
            "attention": L * self._attention(c, k, b, ctx),
            # two all-reduces per layer, one for the vocab-parallel embedding, and the stage hop
            "communication": (2 * L + 1) * self._allreduce(tokens) + self._hop(tokens),
            "host": q.iteration_overhead_s + q.sequence_overhead_s * seqs,
        }

    def stage_time(
        self,
        chunk: np.ndarray | float,
        cached: np.ndarray | float,
        decodes: np.ndarray | float,
        context: np.ndarray | float,
    ) -> np.ndarray:
        """τ: one iteration of the slowest (last) stage for one prefill chunk of ``chunk`` tokens over
        ``cached`` cached ones plus ``decodes`` decode requests at mean context ``context``, seconds."""
        parts = self.components(chunk, cached, decodes, context)
        return parts["gemm"] + parts["elementwise"] + parts["attention"] + parts["communication"] + parts["host"]

    def decode_stage_time(self, batch: np.ndarray, context: np.ndarray) -> np.ndarray:
        """t_s(B): one decode step of a micro-batch of B requests at mean context C, one stage."""
        return self.stage_time(0.0, 0.0, batch, context)

    def decode_step_time(self, batch: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Latency of one decode step through all p stages (what a token waits), seconds."""
        return self.pp * self.decode_stage_time(batch, context)

    def _chunked(self, prompt: np.ndarray, running: np.ndarray, context: np.ndarray, fill: int) -> np.ndarray:
        """Σ over vLLM's chunks of τ, plus ``fill`` more stage-times of the longest chunk (pipeline fill).

        vLLM's scheduler gives a prompt the token budget left after the running decodes,
        b = budget − min(B', budget/2), every iteration: ⌊I/b⌋ full chunks (chunk j over j·b cached
        tokens; attention is linear in the cache, so their mean cache is exact) and a remainder
        chunk over all of them. A longer prompt is never faster: a token grows the remainder or
        starts a new chunk."""
        prompt, running, context = np.broadcast_arrays(*(np.asarray(x, float) for x in (prompt, running, context)))
        b = self.q.prefill_chunk_tokens - np.minimum(running, self.q.prefill_chunk_tokens / 2)
        full = np.floor(prompt / b)
        rest = prompt - full * b
        both = self.stage_time(
            np.stack([b, rest]),
            np.stack([np.maximum(full - 1.0, 0.0) * b / 2.0, full * b]),
            running[None],
            context[None],
        )
        total = full * both[0] + np.where(rest > 0, both[1], 0.0)
        if not fill:
            return total
        # Pipeline of identical stages: chunks t_j end after Σ t_j + (p − 1)·max t_j. The longest
        # full chunk is the last one, over (⌊I/b⌋ − 1)·b cached tokens, not the mean chunk above:
        # with the mean, a prompt that completes a chunk could come out faster than a shorter one.
        last = self.stage_time(b, np.maximum(full - 1.0, 0.0) * b, running, context)
        longest = np.maximum(np.where(full > 0, last, 0.0), np.where(rest > 0, both[1], 0.0))
        return total + fill * longest

    def prefill_work(self, prompt: np.ndarray) -> np.ndarray:
        """T_pf: stage-time one prompt of I tokens costs on an otherwise idle replica, seconds."""
        prompt = np.asarray(prompt, float)
        return self._chunked(prompt, np.zeros_like(prompt), np.zeros_like(prompt), 0)

    def prefill_latency(self, prompt: np.ndarray, running: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Time from admission to first token for I tokens, mixed with B' running decodes."""
        return self._chunked(prompt, running, context, self.pp - 1)

    def max_rate(self, prompt: np.ndarray, output: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """r_max(B) = 1 / (T_pf + O·t_s(B)/B): requests/s at micro-batch B (context I + O/2)."""
        prompt, output, batch = (np.asarray(x, float) for x in (prompt, output, batch))
        t_s = self.decode_stage_time(batch, prompt + output / 2)
        return 1.0 / (self.prefill_work(prompt) + output * t_s / batch)

    def running_batch(
        self, a: np.ndarray, context: np.ndarray, cap: np.ndarray, t_cap: np.ndarray | None = None
    ) -> np.ndarray:
        """B' ∈ (0, cap] solving Little's law B' = a·t_s(B') (a = r·O/(1 − r·T_pf)); cap when
        a·t_s(cap) ≥ cap. Illinois regula falsi on the bracket (0, cap]: t_s is nearly affine in B,
        so a few evaluations reach 1e-8 where plain fixed-point iteration needs a dozen."""
        a, context, cap = np.broadcast_arrays(*(np.asarray(x, float) for x in (a, context, cap)))
        t_cap = self.decode_stage_time(cap, context) if t_cap is None else t_cap
        g_hi = a * t_cap - cap
        saturated = g_hi >= 0
        lo, hi = np.zeros_like(cap), cap.copy()
        g_lo = a * self.decode_stage_time(lo, context)
        g_hi = np.where(saturated, -1.0, g_hi)
        x, side = hi, np.zeros(cap.shape, int)
        for _ in range(10):
            x = (lo * g_hi - hi * g_lo) / (g_hi - g_lo)
            gx = a * self.decode_stage_time(x, context) - x
            if np.all(saturated | (np.abs(gx) <= 1e-8 * np.maximum(x, 1e-9))):
                break
            right = gx > 0  # the root lies in (x, hi]
            lo, g_lo_new = np.where(right, x, lo), np.where(right, gx, g_lo)
            hi, g_hi_new = np.where(right, hi, x), np.where(right, g_hi, gx)
            g_hi = np.where(right & (side == 1), 0.5 * g_hi_new, g_hi_new)  # Illinois: halve a kept end
            g_lo = np.where(~right & (side == -1), 0.5 * g_lo_new, g_lo_new)
            side = np.where(right, 1, -1)
        return np.where(saturated, cap, x)

    def load_point(
        self,
        prompt: np.ndarray,
        output: np.ndarray,
        rate: np.ndarray,
        cap: np.ndarray,
        t_pf: np.ndarray | None = None,
        t_cap: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(running batch B', TPOT, TTFT) at arrival rate r, the running batch capped at ``cap``
        (``t_pf`` = T_pf(I) and ``t_cap`` = t_s(cap) when the caller has them)."""
        I, O, r = (np.asarray(x, float) for x in (prompt, output, rate))  # noqa: E741
        C = I + O / 2
        t_pf = self.prefill_work(I) if t_pf is None else t_pf
        share = np.clip(r * t_pf, 0.0, 0.999999)
        running = self.running_batch(r * O / (1.0 - share), C, cap, t_cap)
        t_run = self.decode_stage_time(running, C)
        tpot = self.pp * t_run / (1.0 - share)
        wait = t_run / 2 + share * t_pf / (2 * (1.0 - share))
        ttft = wait + self.prefill_latency(I, running, C)
        return running, tpot, ttft

    # ---------------------------------------------------------------- simulator interface
    def iteration_time(
        self,
        prefill_tokens: np.ndarray | float,
        decode_requests: np.ndarray | float,
        decode_context_tokens: np.ndarray | float,
        prefill_cached: np.ndarray | float = 0.0,
    ) -> np.ndarray:
        """Latency of one iteration through all stages: one prefill chunk of ``prefill_tokens`` over
        ``prefill_cached`` cached tokens plus ``decode_requests`` decodes whose contexts sum to
        ``decode_context_tokens``."""
        d = np.asarray(decode_requests, float)
        ctx = np.where(d > 0, np.asarray(decode_context_tokens, float) / np.maximum(d, 1.0), 0.0)
        return self.pp * self.stage_time(prefill_tokens, prefill_cached, d, ctx)

    def iteration_table(self, budget: int | None = None, max_num_seqs: int | None = None) -> IterationTable:
        """:class:`IterationTable` of this replica for a token budget and sequence cap (default: the
        serving configuration's). The attention coefficients are read off :func:`attention_time`
        by probes: it is linear in each feature, so two probes per pair give them exactly."""
        budget = int(budget or self.q.prefill_chunk_tokens)
        seqs = int(max_num_seqs or self.q.max_num_seqs)
        L, pp, q = self.layers_per_stage, self.pp, self.q
        n = np.arange(max(budget, seqs) + seqs + 1, dtype=float)
        zero = np.zeros_like(n)
        per_tok = (
            self._gemms(n, zero)
            + self._elementwise(n)
            + L * q.layer_overhead_s
            + (2 * L + 1) * self._allreduce(n)
            + self._hop(n)
        )
        s = np.arange(seqs + 2, dtype=float)
        per_seq = self._gemms(np.zeros_like(s), s) + q.sequence_overhead_s * s

        def att(c: float, k: float, d: float, ctx: float) -> float:
            return float(self._attention(*(np.asarray(x, float) for x in (c, k, d, ctx))))

        alpha = att(0, 0, 0, 0)
        c1, c2 = 1024.0, 2048.0
        f1, f2 = att(c1, 0, 0, 0) - alpha, att(c2, 0, 0, 0) - alpha
        a_sq = (f2 / c2 - f1 / c1) / (c2 - c1)  # f(c) = a₂c² + a₁c
        a_c = f1 / c1 - a_sq * c1
        k = 4096.0
        g1, g2 = att(c1, k, 0, 0) - att(c1, 0, 0, 0), att(c2, k, 0, 0) - att(c2, 0, 0, 0)
        a_kc = (g2 - g1) / (k * (c2 - c1))  # g(c) = k·(a_kc·c + a_k)
        a_k = g1 / k - a_kc * c1
        a_ctx = (att(0, 0, 1, 4096) - alpha) / 4096
        per_tok[0] = 0.0  # no iteration runs without a token
        scale = L * pp
        return IterationTable(
            token_s=pp * per_tok,
            seq_s=pp * per_seq,
            const_s=pp * (q.iteration_overhead_s + L * alpha),
            chunk_sq_s=scale * a_sq,
            chunk_s=scale * a_c,
            cached_chunk_s=scale * a_kc,
            cached_s=scale * a_k,
            context_s=scale * a_ctx,
            budget=budget,
        )

    def batch_time(self, chunks: list[tuple[int, int]], decodes: int, context_sum: float) -> float:
        """Reference latency of one iteration through all stages with several prefill chunks
        ``[(c, k), …]`` and ``decodes`` decodes whose contexts sum to ``context_sum``: τ with the
        chunks' attention work summed under one kernel latency (what :class:`IterationTable`
        computes; with one chunk this is :meth:`iteration_time`)."""
        ctx = context_sum / decodes if decodes else 0.0
        tokens = sum(c for c, _ in chunks) + decodes
        seqs = decodes + len(chunks)
        q = self.q
        zero = np.asarray(0.0)
        base = self._attention(zero, zero, np.asarray(float(decodes)), np.asarray(ctx))
        extra = sum(
            float(
                self._attention(np.asarray(float(c)), np.asarray(float(k)), zero, zero)
                - self._attention(zero, zero, zero, zero)
            )
            for c, k in chunks
        )
        L = self.layers_per_stage
        t = np.asarray(float(tokens))
        tau = (
            self._gemms(t, np.asarray(float(seqs)))
            + self._elementwise(t)
            + L * q.layer_overhead_s
            + L * (base + extra)
            + (2 * L + 1) * self._allreduce(t)
            + self._hop(t)
            + q.iteration_overhead_s
            + q.sequence_overhead_s * seqs
        )
        return float(self.pp * tau)

    def iteration_model(self) -> IterationModel:
        """Least-relative-squares fit of c0 + c1·P + c2·D + c3·ΣC + c4·A over a grid of mixed
        batches (chunks over 0 to 16k cached tokens, so long prompts' attention is in the fit)."""
        q = self.q
        chunks = np.array([0, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192], float)
        chunks = chunks[chunks <= q.prefill_chunk_tokens]
        dec = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512], float)
        dec = dec[dec <= q.max_num_seqs]
        ctx = np.array([128, 512, 1024, 2048, 4096, 8192], float)
        cached = np.array([0, 2048, 6144, 16384], float)
        P, D, C, K = (a.ravel() for a in np.meshgrid(chunks, dec, ctx, cached, indexing="ij"))
        keep = (P + D > 0) & ~((D == 0) & (ctx[0] != C))  # context is irrelevant without decodes
        keep &= (P > 0) | (K == 0)  # cached tokens only matter to a chunk
        kv = self.fit().kv_capacity_tokens
        keep &= max(kv, 1) * self.pp >= D * C + K + P  # only batches whose KV fits
        if self.m.max_context_tokens:
            keep &= self.m.max_context_tokens >= K + P
        P, D, C, K = P[keep], D[keep], C[keep], K[keep]
        y = self.iteration_time(P, D, D * C, K)
        X = np.stack([np.ones_like(P), P, D, D * C, P * (K + P / 2)], axis=1)
        coef = np.linalg.lstsq(X / y[:, None], np.ones_like(y), rcond=None)[0]
        coef = np.maximum(coef, 0.0)  # a negative slope would make bigger batches faster
        err = np.abs(X @ coef / y - 1.0)
        c0, c1, c2, c3, c4 = (float(c) for c in coef)
        return IterationModel(c0, c1, c2, c3, float(err.max()), len(y), c4)

    # ---------------------------------------------------------------- per query type
    def figures(
        self,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
        ttft_slo: np.ndarray,
        tpot_slo: np.ndarray,
        e2e_slo: np.ndarray,
        max_utilization: float,
        max_context: int | None,
    ) -> TypeFigures:
        """Figures for n query types at once (SLO arrays use +inf for "no limit")."""
        n = len(input_tokens)
        fit = self.fit()
        I = np.asarray(input_tokens, float)[:, None]  # noqa: E741 - I is the symbol of the docstring
        O = np.asarray(output_tokens, float)[:, None]  # noqa: E741
        C = I + O / 2
        grid = batch_grid(self.q.max_num_seqs)[None, :]
        kv_room = fit.kv_capacity_tokens / (self.pp * (I + O))
        allowed = grid <= np.floor(kv_room)

        t_pf = self.prefill_work(I)
        t_s = self.decode_stage_time(grid, C)
        r_max = 1.0 / (t_pf + O * t_s / grid)
        _, tpot, ttft = self.load_point(I, O, max_utilization * r_max, grid, t_pf, t_s)
        e2e = ttft + np.maximum(O - 1, 0) * tpot

        meets = (ttft <= ttft_slo[:, None]) & (tpot <= tpot_slo[:, None]) & (e2e <= e2e_slo[:, None])
        ok = allowed & meets
        score = np.where(ok, r_max, -1.0)
        best = np.argmax(score, axis=1)
        any_ok = ok[np.arange(n), best]
        pick = np.where(any_ok, best, 0)
        rows = np.arange(n)

        candidate = np.full(n, fit.fits)
        reasons: list[str] = []
        for j in range(n):
            total = float(input_tokens[j] + output_tokens[j])
            if not fit.fits:
                reasons.append(fit.reason)
                candidate[j] = False
            elif max_context is not None and total > max_context:
                reasons.append(f"input+output {total:.0f} tokens > max context {max_context}")
                candidate[j] = False
            elif not allowed[j, 0]:
                reasons.append(
                    f"KV cache holds {fit.kv_capacity_tokens} tokens < {self.pp}×{total:.0f} for one request per stage"
                )
                candidate[j] = False
            elif not any_ok[j]:
                missed = [
                    f"{name} {val[j, 0]:.3g} s > SLO {slo[j]:.3g} s"
                    for name, val, slo in (
                        ("ttft", ttft, ttft_slo),
                        ("tpot", tpot, tpot_slo),
                        ("e2e", e2e, e2e_slo),
                    )
                    if val[j, 0] > slo[j]
                ]
                reasons.append("misses SLO at batch 1: " + ", ".join(missed))
            else:
                reasons.append("")
        eligible = candidate & any_ok
        # Idle replica: no decodes ride along, so with one stage this is T_pf itself.
        idle = (t_pf if self.pp == 1 else self.prefill_latency(I, np.zeros_like(I), C))[:, 0]
        return TypeFigures(
            candidate=candidate,
            eligible=eligible,
            reason=reasons,
            batch=grid[0, pick].astype(int),
            throughput_rps=r_max[rows, pick],
            ttft_s=ttft[rows, pick],
            tpot_s=tpot[rows, pick],
            e2e_s=e2e[rows, pick],
            prefill_s=idle,
            decode_step_s=self.pp * t_s[rows, pick],
        )


def _per_tp(tp: int, two: float | None, four: float | None, eight: float | None) -> float | None:
    """A collective factor by ring size: the TP ≤ 2 value, or the TP 3-4 / > 4 one where it is set."""
    pick = None if tp <= 2 else four if tp <= 4 else eight
    return two if pick is None else pick


def batch_grid(max_num_seqs: int) -> np.ndarray:
    """Candidate micro-batch sizes: every size to 32, then steps of about 6% up to max_num_seqs."""
    small = np.arange(1, min(32, max_num_seqs) + 1)
    if max_num_seqs <= 32:
        return small.astype(float)
    large = np.unique(np.round(np.geomspace(33, max_num_seqs, 40)))
    return np.unique(np.concatenate([small, large, [max_num_seqs]])).astype(float)


def vllm_custom_allreduce(gpu: GPU, tp: int) -> bool:
    """Whether vLLM sends a TP ring's all-reduces through its custom kernel (messages up to
    ``custom_allreduce_max_bytes``; NCCL beyond): within one node, TP in {2, 4, 6, 8}, and every GPU
    pair on NVLink or only two GPUs. A tier is taken as NVLink-connected when its node bandwidth
    exceeds a PCIe Gen5 x16 link (the catalog gives PCIe cards their PCIe figure)."""
    nvlink = gpu.interconnect_gbs > PCIE_GEN5_GBS
    return tp in (2, 4, 6, 8) and tp <= gpu.gpus_per_node and (nvlink or tp == 2)


def structural_reason(model: LLM, gpu: GPU, tp: int, pp: int) -> str:
    """Why (model, gpu, tp, pp) cannot be deployed at all, or "" when it can."""
    assert model.attention_heads is not None and model.kv_heads is not None and model.layers is not None
    if model.attention_heads % tp != 0:
        return f"tp {tp} does not divide {model.attention_heads} attention heads"
    if model.kv_heads % tp != 0 and tp % model.kv_heads != 0:
        return f"tp {tp} and {model.kv_heads} KV heads: neither divides the other"
    if tp > gpu.gpus_per_node:
        return f"tp {tp} exceeds {gpu.gpus_per_node} GPUs per node"
    if pp > model.layers:
        return f"pp {pp} exceeds {model.layers} layers"
    return ""
