r"""Two-phase (prefill / decode) performance model of one vLLM replica.

One replica of option k = (model m, gpu g, tp t, pp p) runs on t·p GPUs: t-way tensor parallel
within a node, p pipeline stages of ⌈L/p⌉ layers each. Units: seconds, bytes, FLOP, tokens.
Named efficiency factors come from :class:`planner.problem.PerfParams` (η_c compute, η_a
attention, η_m memory, η_n network; α collective latency; o_l per-layer and o_it per-iteration
overheads); calibration against measurements replaces them per tier.

Memory (per GPU, GB = 1e9 bytes)
    W_gpu   = params_b · weight_bytes / (t·p)                                   weights
    A_gpu   = runtime_reserve + C_chunk·(4h + 2·h_ff·k_e/t)·2 / 1e9 + S_max·V/t·4 / 1e9
                                                                                activations, logits
    KV_gpu  = memory_gb · gmu − W_gpu − A_gpu                                   KV budget; fits ⇔ KV_gpu > 0
    b_kv    = 2 · ⌈L/p⌉ · max(1, n_kv/t) · d · kv_bytes                          KV bytes per token per GPU
    N_kv    = ⌊KV_gpu·1e9 / b_kv⌋                                               KV capacity, tokens/replica

Time of one pipeline stage for an iteration that processes n new tokens, attention FLOPs f_a and
reads κ cached tokens (per layer, then ⌈L/p⌉ layers, the LM head and one stage hop):
    τ_lin   = max(n · 2·P_act,l/t / (F·η_c),  P_l(n)·weight_bytes/t / (B·η_m))   roofline of the GEMMs
    τ_att   = f_a / (F_16·η_a) + κ · b_kv,l / (B·η_m)
    τ_ar    = 2 · [α + 2(t−1)/t · n·h·2 / (B_ic·η_n)]                             two all-reduces (t > 1)
    τ_stage = ⌈L/p⌉·(τ_lin + τ_att + τ_ar + o_l) + τ_head + [p > 1]·(α + n·h·2/(B_link·η_n)) + o_it
P_l(n) counts MoE experts touched by n tokens: E·(1 − (1 − k_e/E)^n). F is the fp8 rate for fp8
weights on a GPU that has one; B_ic is half the headline (bidirectional) interconnect figure;
B_link is B_ic inside a node and the inter-node figure across nodes.

Prefill of one request of I tokens, in chunks of c = C_chunk tokens (n_c = ⌈I/c⌉ chunks):
    T_pf    = Σ_chunks τ_stage(chunk)         stage-time of work (what throughput pays), causal
                                               attention 2·(n_q/t)·d·I² FLOP in all
Decode step of a micro-batch of B requests with mean context C = I + O/2:
    t_s(B)  = τ_stage(n = B, f_a = 4·(n_q/t)·d·B·C, κ = B·C)
Continuous batching with p micro-batches in flight (vLLM's virtual engines), B each:
    r_max(B) = 1 / (T_pf + O·t_s(B)/B)        requests/s a replica sustains at batch B
At the planned load r = max_utilization · r_max(B), the running batch B' solves Little's law
    B'·(1 − r·T_pf) = r·O·t_s(B')             (fixed point; B' ≤ B)
and a request sees
    TPOT = p·t_s(B') / (1 − r·T_pf)           decode steps slowed by the prefill share r·T_pf
    TTFT = t_s(B')/2 + ρ·T_pf/(2(1 − ρ)) + (n_c + p − 1)·τ_stage(c + B')     ρ = r·T_pf
           (residual of the running step, M/D/1 wait for the prefill server, then the chunks
           mixed with the running decodes, plus pipeline fill)
    E2E  = TTFT + (O − 1)·TPOT
KV: p·B·(I + O) ≤ N_kv (every request may grow to its full length), and B ≤ max_num_seqs.

The option's figures for type i are taken at the largest batch B (most r_max) whose TTFT, TPOT and
E2E at load max_utilization·r_max(B) meet the type's SLO: ``throughput_rps`` = r_max(B).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.problem import GPU, LLM, PerfParams

ACT_BYTES = 2.0  # activations are bf16/fp16
GB = 1e9


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
    """Closed-form timing of one replica of (model, gpu, tp, pp); see the module docstring."""

    def __init__(self, model: LLM, gpu: GPU, tp: int, pp: int, params: PerfParams) -> None:
        assert model.layers and model.hidden_size and model.intermediate_size and model.attention_heads
        assert model.kv_heads and model.head_dim and model.vocab_size
        assert gpu.memory_gb and gpu.tflops and gpu.bandwidth_tbs and gpu.interconnect_gbs
        self.m, self.g, self.tp, self.pp, self.q = model, gpu, tp, pp, params
        h, d = model.hidden_size, model.head_dim
        self.h = h
        self.layers_per_stage = math.ceil(model.layers / pp)
        self.nq_gpu = model.attention_heads / tp
        self.nkv_gpu = max(1.0, model.kv_heads / tp)
        self.d = d
        self.experts = model.num_experts or 1
        self.top_k = min(model.experts_per_token or 1, self.experts)
        attn = h * model.attention_heads * d * 2 + h * model.kv_heads * d * 2  # Q, O and K, V
        mlp = 3 * h * model.intermediate_size  # gated MLP: gate, up, down
        self.attn_params_l = attn
        self.mlp_params_l = mlp
        self.flops_tok_l = 2.0 * (attn + self.top_k * mlp) / tp
        self.wb = model.weight_bytes
        fp8 = model.weight_bytes <= 1.0 and (model.quantization or "fp8").lower().startswith("fp8")
        self.f_lin = (gpu.tflops_fp8 if (fp8 and gpu.tflops_fp8) else gpu.tflops) * 1e12 * params.compute_efficiency
        self.f_att = gpu.tflops * 1e12 * params.attention_efficiency
        self.bw = gpu.bandwidth_tbs * 1e12 * params.memory_efficiency
        self.ic = gpu.interconnect_gbs / 2 * GB * params.network_efficiency
        internode = gpu.internode_gbs or params.default_internode_gbs
        self.net = internode * GB * params.network_efficiency
        self.kv_tok_l = 2.0 * self.nkv_gpu * d * params.kv_cache_bytes  # bytes per token per layer per GPU
        self.kv_tok = self.kv_tok_l * self.layers_per_stage
        self.head_bytes = model.vocab_size * h * self.wb / tp
        self.head_flops_row = 2.0 * model.vocab_size * h / tp
        gpus = tp * pp
        self.nodes = math.ceil(gpus / gpu.gpus_per_node)

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
    def _allreduce(self, n_tokens: np.ndarray) -> np.ndarray:
        if self.tp == 1:
            return np.zeros_like(n_tokens)
        size = n_tokens * self.h * ACT_BYTES
        return self.q.collective_latency_s + 2 * (self.tp - 1) / self.tp * size / self.ic

    def _hop(self, n_tokens: np.ndarray) -> np.ndarray:
        if self.pp == 1:
            return np.zeros_like(n_tokens)
        link = self.net if self.nodes > 1 else self.ic
        return self.q.collective_latency_s + n_tokens * self.h * ACT_BYTES / link

    def _weights_touched_l(self, n_tokens: np.ndarray) -> np.ndarray:
        if self.experts == 1:
            return np.full_like(n_tokens, self.attn_params_l + self.mlp_params_l)
        frac = 1.0 - np.power(1.0 - self.top_k / self.experts, np.maximum(n_tokens, 1.0))
        return self.attn_params_l + self.experts * frac * self.mlp_params_l

    def stage_time(
        self, n_tokens: np.ndarray, attn_flops_l: np.ndarray, kv_read_tokens: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """τ_stage: one iteration of the slowest (last) stage, seconds."""
        q = self.q
        lin = np.maximum(
            n_tokens * self.flops_tok_l / self.f_lin,
            self._weights_touched_l(n_tokens) * self.wb / self.tp / self.bw,
        )
        att = attn_flops_l / self.f_att + kv_read_tokens * self.kv_tok_l / self.bw
        per_layer = lin + att + 2 * self._allreduce(n_tokens) + q.layer_overhead_s
        head = np.maximum(rows * self.head_flops_row / self.f_lin, self.head_bytes / self.bw)
        return self.layers_per_stage * per_layer + head + self._hop(n_tokens) + q.iteration_overhead_s

    def decode_stage_time(self, batch: np.ndarray, context: np.ndarray) -> np.ndarray:
        """t_s(B): one decode step of a micro-batch of B requests at mean context C, one stage."""
        attn = 4.0 * self.nq_gpu * self.d * batch * context
        return self.stage_time(batch, attn, batch * context, batch)

    def decode_step_time(self, batch: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Latency of one decode step through all p stages (what a token waits), seconds."""
        return self.pp * self.decode_stage_time(batch, context)

    def _chunks(self, prompt: np.ndarray, mixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        budget = self.q.prefill_chunk_tokens - np.minimum(mixed, self.q.prefill_chunk_tokens / 2)
        n_chunks = np.maximum(1.0, np.ceil(prompt / budget))
        return n_chunks, prompt / n_chunks

    def prefill_work(self, prompt: np.ndarray) -> np.ndarray:
        """T_pf: stage-time one prompt of I tokens costs on an otherwise idle replica, seconds."""
        n_chunks, size = self._chunks(prompt, np.zeros_like(prompt))
        attn_total = 2.0 * self.nq_gpu * self.d * prompt * prompt
        kv_read = prompt * (n_chunks + 1) / 2
        per_chunk = self.stage_time(size, attn_total / n_chunks, kv_read / n_chunks, np.ones_like(prompt))
        return n_chunks * per_chunk

    def prefill_latency(self, prompt: np.ndarray, running: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Time from admission to first token for I tokens, mixed with B' running decodes."""
        n_chunks, size = self._chunks(prompt, running)
        attn = 2.0 * self.nq_gpu * self.d * prompt * prompt / n_chunks + 4.0 * self.nq_gpu * self.d * running * context
        kv_read = prompt * (n_chunks + 1) / 2 / n_chunks + running * context
        step = self.stage_time(size + running, attn, kv_read, 1.0 + running)
        return (n_chunks + self.pp - 1) * step

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
        r = max_utilization * r_max
        share = np.clip(r * t_pf, 0.0, 0.999999)
        running = grid * max_utilization
        for _ in range(12):  # B' = r·O·t_s(B')/(1 − r·T_pf): a contraction for these magnitudes
            running = np.minimum(grid, r * O * self.decode_stage_time(running, C) / (1.0 - share))
        t_run = self.decode_stage_time(running, C)
        tpot = self.pp * t_run / (1.0 - share)
        wait = t_run / 2 + share * t_pf / (2 * (1.0 - share))
        ttft = wait + self.prefill_latency(I, running, C)
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
        idle = self.prefill_latency(I, np.zeros_like(I), C)[:, 0]
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


def batch_grid(max_num_seqs: int) -> np.ndarray:
    """Candidate micro-batch sizes: every size to 32, then steps of about 6% up to max_num_seqs."""
    small = np.arange(1, min(32, max_num_seqs) + 1)
    if max_num_seqs <= 32:
        return small.astype(float)
    large = np.unique(np.round(np.geomspace(33, max_num_seqs, 40)))
    return np.unique(np.concatenate([small, large, [max_num_seqs]])).astype(float)


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
