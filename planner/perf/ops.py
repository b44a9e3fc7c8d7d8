r"""Operator formulas of the replica model: pure functions of arrays and scalars, and their constants.

Each function is the time of one kind of kernel (a GEMM, a bandwidth-bound element-wise op, one
layer's attention, a ring all-reduce, a point-to-point send) from its shapes, the GPU's datasheet
figures and the efficiencies and latencies of :class:`planner.problem.PerfParams`.
:class:`planner.perf.model.ReplicaModel` sums them into an iteration (equations: the docstring of
:mod:`planner.perf.model`), and the calibration (:mod:`planner.perf.fit`) fits exactly these
functions to measured operator, collective and attention times: one implementation of each formula.
"""

from __future__ import annotations

import numpy as np

ACT_BYTES = 2.0  # activations, embedding and LM head are bf16/fp16
GB = 1e9
MS = 1e-3  # seconds per millisecond (measurement files are in ms)
TILE = 128.0  # GEMM output tile edge used by the efficiency ramp (cuBLAS/CUTLASS tiles are 64-256)
PCIE_GEN4_GBS = 64.0  # PCIe Gen4 x16, bidirectional headline (reference for PCIe collectives)
PCIE_GEN5_GBS = 128.0  # PCIe Gen5 x16, bidirectional: a node bandwidth above it is NVLink (or another fabric)


QUANT_BYTES = 2.0 * ACT_BYTES + 1.0  # per activation element of a dynamic per-tensor fp8 quantization


def gemm_time(
    rows: np.ndarray,
    k: np.ndarray | float,
    n_out: np.ndarray | float,
    weight_bytes: np.ndarray | float,
    flops_per_s: np.ndarray | float,
    bytes_per_s: float,
    eff_c: float,
    half_tiles: float,
    overlap: float,
    eff_m: float,
    latency: float,
    quant_eff: np.ndarray | float = 0.0,
) -> np.ndarray:
    """t0 + (Tc^p + Tm^p)^(1/p) of a GEMM with ``rows`` token rows and a K×N weight shard, plus,
    where ``quant_eff`` > 0 (per-tensor fp8), the activations' quantization: rows·K elements read
    twice in 16 bits (absmax, then scale) and written once in 8, at that share of the bandwidth."""
    tc = 2.0 * k * (rows * n_out + half_tiles * TILE * TILE) / (flops_per_s * eff_c)
    tm = (weight_bytes + ACT_BYTES * rows * (k + n_out)) / (bytes_per_s * eff_m)
    hi = np.maximum(tc, tm)
    # Scaled smooth max hi·(1 + (lo/hi)^p)^(1/p): exact, overflow-free for any p in [1, 16].
    t = latency + hi * np.power(1.0 + np.power(np.minimum(tc, tm) / hi, overlap), 1.0 / overlap)
    q = np.asarray(quant_eff, float)
    if not np.any(q > 0):
        return t
    return t + np.where(q > 0, QUANT_BYTES * rows * k / (bytes_per_s * np.where(q > 0, q, 1.0)), 0.0)


def elementwise_time(
    nbytes: np.ndarray, bytes_per_s: float, eff: np.ndarray | float, latency: np.ndarray | float
) -> np.ndarray:
    """A bandwidth-bound op: fixed kernel time plus its bytes at a fraction of memory bandwidth."""
    return latency + nbytes / (bytes_per_s * eff)


def attention_time(
    chunk: np.ndarray,
    cached: np.ndarray,
    decodes: np.ndarray,
    context: np.ndarray,
    nq_gpu: float,
    head_dim: float,
    kv_bytes_tok_l: float,
    flops_per_s: float,
    bytes_per_s: float,
    eff_self: float,
    eff_ctx: float,
    half_blocks: float,
    eff_kv: float,
    latency: float,
    half_blocks_ctx: float | None = None,
) -> np.ndarray:
    """One layer's attention kernel(s) for one prefill chunk over its cache plus decodes (seconds);
    the chunk-over-cache ramp is ``half_blocks_ctx`` (None: the causal prefill's ``half_blocks``)."""
    has_chunk = (chunk > 0).astype(float)
    b_ctx = half_blocks if half_blocks_ctx is None else half_blocks_ctx
    self_flops = nq_gpu * chunk * chunk / 2.0 + 0.5 * half_blocks * TILE * chunk
    ctx_flops = cached * (nq_gpu * chunk + b_ctx * TILE * has_chunk) + nq_gpu * decodes * context
    compute = 4.0 * head_dim / flops_per_s * (self_flops / eff_self + ctx_flops / eff_ctx)
    return latency + compute + decodes * context * kv_bytes_tok_l / (bytes_per_s * eff_kv)


def allreduce_time(nbytes: np.ndarray, workers: int, bus_bytes_per_s: float, latency: float) -> np.ndarray:
    """Ring all-reduce: α + 2(t−1)/t · bytes / bus bandwidth; zero on one GPU."""
    if workers <= 1:
        return np.zeros_like(nbytes)
    return ring_allreduce_time(nbytes, workers, bus_bytes_per_s, latency)


def ring_allreduce_time(
    nbytes: np.ndarray, workers: np.ndarray | float, bus_bytes_per_s: np.ndarray | float, latency: np.ndarray | float
) -> np.ndarray:
    """α + 2(t−1)/t · bytes / bus bandwidth of a ring of t ≥ 2 GPUs (arguments may be arrays: one
    measured message per row)."""
    return latency + 2.0 * (workers - 1) / workers * nbytes / bus_bytes_per_s


def p2p_time(nbytes: np.ndarray, bytes_per_s: float, latency: float) -> np.ndarray:
    """One point-to-point send (a pipeline hop): α + bytes / bandwidth."""
    return latency + nbytes / bytes_per_s


def kv_bytes_per_token(kv_heads: float, head_dim: float, tp: float, kv_bytes: float) -> float:
    """Bytes of K and V one token holds in one layer on one GPU (KV heads are replicated when tp > n_kv)."""
    return 2.0 * max(1.0, kv_heads / tp) * head_dim * kv_bytes


def layer_shapes(
    hidden: np.ndarray | float,
    q_heads: np.ndarray | float,
    kv_heads: np.ndarray | float,
    head_dim: np.ndarray | float,
    ffn: np.ndarray | float,
    tp: np.ndarray | float,
    gated: np.ndarray | bool = True,
    top_k: np.ndarray | float = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-GPU shapes of one layer (arguments may be arrays of one shape S): GEMM K and N of
    (QKV, O, gate+up, down), shape S+(4,), and the element-wise bytes per token of (norm, rope, act,
    add, embed), shape S+(5,). KV heads are replicated when tp > n_kv."""
    hidden, q_heads, kv_heads, head_dim, ffn, tp, top_k = (
        np.asarray(x, float) for x in (hidden, q_heads, kv_heads, head_dim, ffn, tp, top_k)
    )
    nq, nkv = q_heads / tp, np.maximum(1.0, kv_heads / tp)
    up = np.where(gated, 2.0, 1.0) * ffn / tp
    k = np.stack(np.broadcast_arrays(hidden, nq * head_dim, hidden, ffn / tp), axis=-1)
    n = np.stack(np.broadcast_arrays((nq + 2 * nkv) * head_dim, hidden, up, hidden), axis=-1)
    ew = ACT_BYTES * np.stack(
        np.broadcast_arrays(
            2.0 * hidden,  # rmsnorm: read and write the hidden state
            2.0 * (nq + nkv) * head_dim,  # rope: read and write q and k
            (up + ffn / tp) * top_k,  # activation: read gate (and up), write one
            3.0 * hidden,  # residual add: two reads, one write
            1.0 * hidden,  # embedding gather: one row per token
        ),
        axis=-1,
    )
    return k, n, ew
