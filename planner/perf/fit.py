r"""Fitting the performance model's factors to the Vidur measurements (``planner calibrate --vidur``).

Sources of ``planner calibrate`` and what each fits, per GPU tier (formulas: :mod:`planner.perf.ops`;
the Vidur files and their readers: :mod:`planner.perf.vidur`; the last row: :mod:`planner.perf.serving`):

=========================================  =====================================================
Vidur ``compute/<gpu>/<org>/<model>/       GEMM factors (η_c, w½, p, η_m, t0) by Levenberg–Marquardt
mlp.csv`` (per-layer op medians, ms)       on log(predicted/measured) of QKV, O, gate+up and down over
                                           every model, TP degree and token count ≤ 4096; each
                                           element-wise op's (t0, η) by least relative squares
Vidur ``legacy-2024-05/a100/attention.csv``  attention factors (η_a, η_ctx, b, η_kv, α_a) on the
                                           prefill and decode rows, each kind half the weight; other
                                           tiers take A100's fractions
Vidur ``network/<node>/all_reduce.csv``    α_n(t) and η_n(t) per intra-node TP degree t (ring:
(``num_workers == devices_per_node``)       α + 2(t−1)/t·s/(η_n·I/2)), two regimes: α from decode-sized
                                           messages (≤ 4 MB), η from prefill-sized ones (≥ 8 MB)
Vidur ``network/<node>/send_recv.csv``     intra-node (devices_per_node 2) α_p2p, η_p2p and
                                           inter-node (devices_per_node 1) α_in, η_in
Vidur ``legacy-2024-05/<gpu>/cpu_overheads.csv``  host time o_it + o_seq·B from the engine's
                                           prepare_inputs + sampler medians (scheduling and output
                                           processing overlap the GPU in current vLLM: left out)
vLLM serving benchmark result (JSON)       two scale factors on a tier's compute-side and memory-side
                                           efficiencies so the model's mean TTFT and TPOT at the
                                           measured request rate match the measured ones
=========================================  =====================================================

Node types: A100-80GB ← ``a100_dgx``, H100-80GB ← ``h100_dgx``, A40 ← ``a40_pairwise_nvlink``
(send/recv only). A40 has no all-reduce file: its all-reduce is the PCIe fit of
``a100_pairwise_nvlink`` at 4 GPUs (a 4-way ring there crosses PCIe Gen4), relative to the PCIe
Gen4 x16 figure. Every fit is deterministic: same files, same bytes out.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from planner.errors import InputError
from planner.perf.calibration import Calibration, TierCalibration, extrapolate
from planner.perf.lsq import ape, levenberg_marquardt, logit, sigmoid, stats
from planner.perf.ops import (
    MS,
    PCIE_GEN4_GBS,
    attention_time,
    elementwise_time,
    gemm_time,
    layer_shapes,
    p2p_time,
    ring_allreduce_time,
)
from planner.perf.vidur import (
    ATTENTION_FILE,
    ATTENTION_TIER,
    CPU_FILES,
    GEMM_OPS,
    LAYER_OPS,
    PCIE_NODE,
    PCIE_WORKERS,
    VIDUR_GPUS,
    VIDUR_NODES,
    AttentionData,
    Collective,
    load_vidur_gpu,
    read_attention,
    read_collective,
    read_table,
    vidur_compute_files,
)
from planner.problem import GPU, PerfParams

HOST_DONOR = "a100-80gb"  # host (CPU) time is a property of the serving host, not of the GPU

# Streaming weights never reaches the datasheet bandwidth (copy kernels top out near 90-93%). Left
# free, the H100 fit trades kernel latency for 100% bandwidth: small GEMMs pull t0 up and the
# bandwidth with it, and decode of large models comes out ~10% fast. The cap keeps the fit physical.
MAX_STREAM_EFFICIENCY = 0.92

EW_FIELDS = {  # Vidur op -> the PerfParams prefix of its efficiency and latency
    "input_layernorm": "norm",
    "post_attention_layernorm": "norm",
    "attn_rope": "rope",
    "mlp_act": "act",
    "add": "add",
    "emb": "embed",
}
EW_INDEX = {"input_layernorm": 0, "post_attention_layernorm": 0, "attn_rope": 1, "mlp_act": 2, "add": 3, "emb": 4}


# ------------------------------------------------------------------------------------------------
# Operator predictions for Vidur rows (the same formulas ReplicaModel uses)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hardware:
    flops: float  # dense bf16 FLOP/s
    bandwidth: float  # bytes/s

    @classmethod
    def of(cls, gpu: GPU) -> Hardware:
        assert gpu.tflops and gpu.bandwidth_tbs
        return cls(gpu.tflops * 1e12, gpu.bandwidth_tbs * 1e12)


def _shapes(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = df.n_embd.to_numpy(float)
    return layer_shapes(
        h,
        df.n_head.to_numpy(float),
        df.n_kv_head.to_numpy(float),
        h / df.n_head.to_numpy(float),
        df.n_expanded_embd.to_numpy(float),
        df.num_tensor_parallel_workers.to_numpy(float),
        df.gated.to_numpy(bool),
    )


def _gemm_seconds(
    rows: np.ndarray, k: np.ndarray, n: np.ndarray, weight_bytes: np.ndarray, q: Mapping[str, float], hw: Hardware
) -> np.ndarray:
    """:func:`gemm_time` of K×N weight shards of ``weight_bytes`` at ``rows`` token rows under the factors ``q``."""
    return gemm_time(
        rows,
        k,
        n,
        weight_bytes,
        hw.flops,
        hw.bandwidth,
        q["compute_efficiency"],
        q["gemm_half_tiles"],
        q["gemm_overlap"],
        q["memory_efficiency"],
        q["kernel_latency_s"],
    )


def predict_gemms(df: pd.DataFrame, q: Mapping[str, float], hw: Hardware) -> np.ndarray:
    """Seconds of QKV, O, gate+up, down per row (shape rows × 4); weights in bf16."""
    k, n, _ = _shapes(df)
    rows = df.num_tokens.to_numpy(float)[:, None]
    return _gemm_seconds(rows, k, n, k * n * 2.0, q, hw)


def predict_ops(df: pd.DataFrame, q: Mapping[str, float], hw: Hardware) -> dict[str, np.ndarray]:
    """Seconds of every Vidur op per row, predicted from the shapes and the factors ``q``."""
    g = predict_gemms(df, q, hw)
    out = {op: g[:, j] for j, op in enumerate(GEMM_OPS)}
    _, _, ew = _shapes(df)
    n = df.num_tokens.to_numpy(float)
    for op, prefix in EW_FIELDS.items():
        nbytes = n * ew[:, EW_INDEX[op]]
        out[op] = elementwise_time(nbytes, hw.bandwidth, q[f"{prefix}_efficiency"], q[f"{prefix}_latency_s"])
    return out


def layer_total(ops: Mapping[str, np.ndarray], measured: pd.DataFrame) -> np.ndarray:
    """Σ of the nine per-layer ops, over the ops the measurement has (NaN columns are absent ops)."""
    return np.sum([np.where(measured[op].notna(), ops[op], 0.0) for op in LAYER_OPS], axis=0)


def measured_layer_total(df: pd.DataFrame) -> np.ndarray:
    return np.nansum([df[op].to_numpy(float) for op in LAYER_OPS], axis=0)


# ------------------------------------------------------------------------------------------------
# Fits
# ------------------------------------------------------------------------------------------------
GEMM_START = {
    "compute_efficiency": 0.7,
    "gemm_half_tiles": 6.0,
    "gemm_overlap": 1.5,
    "memory_efficiency": 0.8,
    "kernel_latency_s": 5e-6,
}


MIN_HALF_TILES = 1e-3  # a ramp this short is no ramp: every GEMM at its full tile efficiency


def _gemm_params(x: np.ndarray) -> dict[str, float]:
    return {
        "compute_efficiency": sigmoid(x[0]),
        # floored: a fit that finds no ramp drives it to 0, which the schema (and a division) refuse
        "gemm_half_tiles": math.exp(max(x[1], math.log(MIN_HALF_TILES))),
        "gemm_overlap": 1.0 + min(math.exp(x[2]), 15.0),
        "memory_efficiency": MAX_STREAM_EFFICIENCY * sigmoid(x[3]),
        "kernel_latency_s": math.exp(x[4]),
    }


def fit_gemm(df: pd.DataFrame, hw: Hardware) -> dict[str, float]:
    """GEMM factors minimising Σ log²(predicted/measured) over the four GEMM ops of every row."""
    k, n, _ = _shapes(df)
    rows = df.num_tokens.to_numpy(float)[:, None]
    return fit_gemm_rows(rows, k, n, k * n * 2.0, df[list(GEMM_OPS)].to_numpy(float), hw)


def fit_gemm_rows(
    rows: np.ndarray, k: np.ndarray, n: np.ndarray, weight_bytes: np.ndarray, seconds: np.ndarray, hw: Hardware
) -> dict[str, float]:
    """GEMM factors minimising Σ log²(predicted/measured) over measured GEMMs (arrays broadcast):
    ``rows`` token rows through K×N weights of ``weight_bytes``, in ``seconds``."""
    measured = np.log(np.broadcast_to(seconds, np.broadcast_shapes(rows.shape, k.shape, seconds.shape))).ravel()

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(_gemm_seconds(rows, k, n, weight_bytes, _gemm_params(x), hw)).ravel() - measured

    s = GEMM_START
    x0 = [
        logit(s["compute_efficiency"]),
        math.log(s["gemm_half_tiles"]),
        math.log(s["gemm_overlap"] - 1.0),
        logit(s["memory_efficiency"] / MAX_STREAM_EFFICIENCY),
        math.log(s["kernel_latency_s"]),
    ]
    return _gemm_params(levenberg_marquardt(residual, x0))


def _fit_latency_bandwidth(nbytes: np.ndarray, seconds: np.ndarray, bandwidth: float) -> tuple[float, float]:
    """(t0, η) of t = t0 + bytes/(B·η) by least relative squares, with t0 ≥ 0 and η ≤ 1."""
    x = np.stack([1.0 / seconds, nbytes / seconds], axis=1)
    t0, slope = np.linalg.lstsq(x, np.ones_like(seconds), rcond=None)[0]
    floor = 1.0 / bandwidth  # η = 1
    if slope < floor:
        slope = floor
        t0 = float(np.sum((1.0 - slope * nbytes / seconds) / seconds) / np.sum(1.0 / seconds**2))
    if t0 < 0:
        t0 = 0.0
        slope = max(float(np.sum(nbytes / seconds) / np.sum((nbytes / seconds) ** 2)), floor)
    return float(t0), float(1.0 / (slope * bandwidth))


def fit_elementwise(df: pd.DataFrame, hw: Hardware) -> dict[str, float]:
    """(latency, efficiency) per element-wise op kind; both layer norms share one pair."""
    _, _, ew = _shapes(df)
    n = df.num_tokens.to_numpy(float)
    out: dict[str, float] = {}
    for prefix in ("norm", "rope", "act", "add", "embed"):
        ops = [op for op, p in EW_FIELDS.items() if p == prefix]
        nbytes = np.concatenate([n * ew[:, EW_INDEX[op]] for op in ops])
        secs = np.concatenate([df[op].to_numpy(float) for op in ops])
        nbytes, secs = nbytes[np.isfinite(secs)], secs[np.isfinite(secs)]
        t0, eff = _fit_latency_bandwidth(nbytes, secs, hw.bandwidth)
        out[f"{prefix}_latency_s"], out[f"{prefix}_efficiency"] = t0, eff
    return out


def fit_compute(df: pd.DataFrame, hw: Hardware) -> dict[str, float]:
    """GEMM and element-wise factors from Vidur ``mlp.csv`` rows of one GPU."""
    return {**fit_gemm(df, hw), **fit_elementwise(df, hw)}


def predict_attention(a: AttentionData, q: Mapping[str, float], hw: Hardware) -> np.ndarray:
    return attention_time(
        a.chunk,
        a.cached,
        a.decodes,
        a.context,
        a.nq_gpu,
        a.head_dim,
        a.kv_bytes_tok_l,
        hw.flops,
        hw.bandwidth,
        q["attention_efficiency"],
        q["context_attention_efficiency"],
        q["attention_half_blocks"],
        q["kv_efficiency"],
        q["attention_latency_s"],
    )


def _attention_params(x: np.ndarray) -> dict[str, float]:
    return {
        "attention_efficiency": sigmoid(x[0]),
        "context_attention_efficiency": sigmoid(x[1]),
        "attention_half_blocks": math.exp(x[2]),
        "kv_efficiency": sigmoid(x[3]),
        "attention_latency_s": math.exp(x[4]),
    }


def fit_attention(a: AttentionData, hw: Hardware) -> dict[str, float]:
    """Attention factors minimising Σ w·log²(predicted/measured), prefill and decode rows each half
    of the weight (the measured grid has 2.3 decode rows per prefill row; the fit should not lean on
    whichever kind the profiler swept more densely)."""
    target = np.log(a.seconds)
    n_pre = max(int(a.is_prefill.sum()), 1)
    n_dec = max(int((~a.is_prefill).sum()), 1)
    sw = np.sqrt(np.where(a.is_prefill, 0.5 / n_pre, 0.5 / n_dec) * a.seconds.size)

    def residual(x: np.ndarray) -> np.ndarray:
        return sw * (np.log(predict_attention(a, _attention_params(x), hw)) - target)

    x0 = [logit(0.3), logit(0.4), math.log(10.0), logit(0.7), math.log(1e-5)]
    return _attention_params(levenberg_marquardt(residual, x0))


def predict_collective(c: Collective, latency: float, bytes_per_s: float, ring: bool) -> np.ndarray:
    """Each row's time as a ring all-reduce over its workers (``ring``) or as one send."""
    if ring:
        return ring_allreduce_time(c.size, c.workers, bytes_per_s, latency)
    return p2p_time(c.size, bytes_per_s, latency)


def fit_collective(c: Collective, reference_bytes_per_s: float, ring: bool) -> tuple[float, float]:
    """(α, η): latency and the fraction of ``reference_bytes_per_s`` reached, by log least squares."""
    target = np.log(c.seconds)

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(predict_collective(c, math.exp(x[0]), reference_bytes_per_s * sigmoid(x[1]), ring)) - target

    x = levenberg_marquardt(residual, [math.log(2e-5), logit(0.5)])
    return math.exp(x[0]), sigmoid(x[1])


# Message sizes that set each all-reduce parameter: a decode step all-reduces tokens·h·2 bytes
# (8 kB-4 MB for batches up to 256 of h ≤ 8192), a prefill chunk 16-33 MB.
LATENCY_MAX_BYTES = 4 * 2**20
BANDWIDTH_MIN_BYTES = 8 * 2**20


def _fit_ring_regimes(c: Collective, reference_bytes_per_s: float) -> tuple[float, float]:
    """(α, η) of one worker count's ring: α the median excess over the bandwidth term of the
    messages ≤ 4 MB given η, η the median bandwidth of the messages ≥ 8 MB given α, alternated to
    their fixed point."""
    w = float(c.workers[0])
    per_byte = 2.0 * (w - 1.0) / w / reference_bytes_per_s  # seconds per byte at η = 1
    small, large = c.size <= LATENCY_MAX_BYTES, c.size >= BANDWIDTH_MIN_BYTES
    b_small, t_small = per_byte * c.size[small], c.seconds[small]
    b_large, t_large = per_byte * c.size[large], c.seconds[large]
    alpha, eta = 0.0, 1.0
    for _ in range(100):
        a_new = max(float(np.median(t_small - b_small / eta)), 0.0)
        inv = float(np.median((t_large - a_new) / b_large))  # 1/η
        e_new = 1.0 / inv if inv > 1.0 else 1.0
        done = abs(a_new - alpha) <= 1e-12 and abs(e_new - eta) <= 1e-12
        alpha, eta = a_new, e_new
        if done:
            break
    return alpha, eta


def fit_allreduce(c: Collective, reference_bytes_per_s: float) -> dict[int, tuple[float, float]]:
    """(α_n, η_n) of a ring all-reduce per worker count, each fitted where the model uses it.

    One joint fit over the size grid (linear in size, so ~70% of the rows are ≥ 8 MB) gets the
    bandwidth right and the latency of decode-sized messages wrong. Here α sees only the messages
    ≤ 4 MB and η only those ≥ 8 MB (:func:`_fit_ring_regimes`), per worker count. Medians, because
    small-message times are bimodal (A100 TP4 ≤ 1 MB runs at ~20 or ~60 µs from one repetition to
    the next): they put α at the typical latency. Log least squares in each regime instead, or one
    fit with log-size-balanced weights, give a lower p90 but a higher median error. A worker count
    without both regimes falls back to the joint fit (:func:`fit_collective`)."""
    out: dict[int, tuple[float, float]] = {}
    for w in np.unique(c.workers):
        sel = c.workers == w
        cw = Collective(c.size[sel], c.workers[sel], c.seconds[sel])
        if (cw.size <= LATENCY_MAX_BYTES).any() and (cw.size >= BANDWIDTH_MIN_BYTES).any():
            out[int(w)] = _fit_ring_regimes(cw, reference_bytes_per_s)
        else:
            out[int(w)] = fit_collective(cw, reference_bytes_per_s, ring=True)
    return out


def allreduce_by_tp(fits: Mapping[int, tuple[float, float]]) -> dict[str, float]:
    """PerfParams fields from per-worker-count fits: TP ≤ 2 ← 2 workers, TP 3-4 ← 4, TP > 4 ← 8;
    a missing count takes the nearest measured one below it (else the smallest measured)."""
    counts = sorted(fits)

    def pick(n: int) -> tuple[float, float]:
        below = [k for k in counts if k <= n]
        return fits[below[-1] if below else counts[0]]

    out: dict[str, float] = {}
    for n, lat, eff in (
        (2, "collective_latency_s", "network_efficiency"),
        (4, "collective_latency_tp4_s", "network_efficiency_tp4"),
        (8, "collective_latency_tp8_s", "network_efficiency_tp8"),
    ):
        out[lat], out[eff] = pick(n)
    return out


def predict_allreduce(
    c: Collective, fits: Mapping[int, tuple[float, float]], reference_bytes_per_s: float
) -> np.ndarray:
    """Each row's time under its own worker count's (α, η)."""
    alpha = np.array([fits[int(w)][0] for w in c.workers])
    eta = np.array([fits[int(w)][1] for w in c.workers])
    return ring_allreduce_time(c.size, c.workers, eta * reference_bytes_per_s, alpha)


def fit_host(path: Path, label: str | None = None) -> dict[str, float]:
    """o_it + o_seq·B from the prepare_inputs + sampler medians (ms) by least squares.

    Input preparation and sampling sit on every step's critical path. Scheduling and output
    processing are left out: vLLM overlaps them with the GPU (async output processing since 0.6,
    the V1 engine's scheduler); the legacy file measured an engine that did not. Only TP-1 rows are
    used: with several GPUs the sampler's timer also waits for the model's collectives (A40 TP8
    rows show 7 ms "sampling" at batch 8), which is GPU time the model counts elsewhere."""
    cols = ("sampler_e2e_median", "prepare_inputs_e2e_median", "batch_size", "tensor_parallel_degree")
    df = read_table(path, cols, label)
    df = df[df.tensor_parallel_degree == 1]
    if df.empty:
        raise InputError(label or str(path), "tensor_parallel_degree", "no rows with tensor_parallel_degree 1")
    y = (df.sampler_e2e_median + df.prepare_inputs_e2e_median).to_numpy(float) * MS
    x = np.stack([np.ones(len(df)), df.batch_size.to_numpy(float)], axis=1)
    c0, c1 = np.linalg.lstsq(x, y, rcond=None)[0]
    return {"iteration_overhead_s": max(float(c0), 0.0), "sequence_overhead_s": max(float(c1), 0.0)}


# ------------------------------------------------------------------------------------------------
# The Vidur calibration
# ------------------------------------------------------------------------------------------------
@dataclass
class _Inputs:
    root: Path
    hashes: dict[str, str] = field(default_factory=dict)

    def use(self, rel: str) -> Path:
        p = self.root / rel
        if p.is_file():
            self.hashes[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        return p


def calibrate_vidur(data_dir: Path, gpus: Mapping[str, GPU], all_tiers: Sequence[str] = ()) -> Calibration:
    """Fit every tier the Vidur data measures, then extrapolate to ``all_tiers`` (see DONORS)."""
    if not data_dir.is_dir():
        raise InputError(str(data_dir), "-", "Vidur profiling directory not found")
    inputs = _Inputs(data_dir)
    files = vidur_compute_files(data_dir)
    measured = [g for g in sorted(files) if g in VIDUR_GPUS and VIDUR_GPUS[g] in gpus]
    if not measured:
        raise InputError(str(data_dir), "-", "no compute/{a100,h100,a40}/*/*/mlp.csv files to calibrate from")
    tiers: dict[str, TierCalibration] = {}
    params: dict[str, dict[str, float]] = {}
    quality: dict[str, dict[str, float]] = {}
    notes: dict[str, list[str]] = {}
    for gdir in measured:
        tier = VIDUR_GPUS[gdir]
        for p in files[gdir]:
            inputs.use(str(p.relative_to(data_dir)))
        df = load_vidur_gpu(data_dir, gdir)
        hw = Hardware.of(gpus[tier])
        q = fit_compute(df, hw)
        tot_pred, tot_meas = layer_total(predict_ops(df, q, hw), df), measured_layer_total(df)
        n = df.num_tokens.to_numpy()
        err = ape(tot_pred, tot_meas)
        quality[tier] = {
            "layer_ape_median_prefill": stats(err[n >= 128])[0],
            "layer_ape_p90_prefill": stats(err[n >= 128])[1],
            "layer_ape_median_decode": stats(err[n <= 64])[0],
            "layer_ape_p90_decode": stats(err[n <= 64])[1],
        }
        params[tier] = q
        notes[tier] = [f"GEMM and element-wise ops from compute/{gdir} ({df.model.nunique()} models, TP 1-8)"]

    # Attention: one measured shape on A100; other tiers take A100's fractions of their own peak.
    att_path = inputs.use(ATTENTION_FILE)
    att: dict[str, float] | None = None
    if att_path.is_file() and ATTENTION_TIER in params:
        data = read_attention(att_path, ATTENTION_FILE)
        hw = Hardware.of(gpus[ATTENTION_TIER])
        att = fit_attention(data, hw)
        err = ape(predict_attention(data, att, hw), data.seconds)
        quality[ATTENTION_TIER]["attention_ape_median"] = stats(err)[0]
        quality[ATTENTION_TIER]["attention_ape_p90"] = stats(err)[1]
    for tier in params:
        if att is not None:
            params[tier].update(att)
            notes[tier].append(
                "attention from legacy a100/attention.csv"
                + ("" if tier == ATTENTION_TIER else " (A100's fractions of peak, not measured here)")
            )

    # Collectives.
    pcie_path = inputs.use(f"network/{PCIE_NODE}/all_reduce.csv")
    pcie: dict[str, float] | None = None
    if pcie_path.is_file():
        c = read_collective(pcie_path, "all_reduce", None, f"network/{PCIE_NODE}/all_reduce.csv")
        c = Collective(*(a[c.workers == PCIE_WORKERS] for a in (c.size, c.workers, c.seconds)))
        if c.size.size:
            # Every TP degree of a PCIe card crosses PCIe: the 4-GPU fit stands for all of them.
            one = fit_allreduce(c, PCIE_GEN4_GBS / 2 * 1e9)[PCIE_WORKERS]
            pcie = allreduce_by_tp({2: one})
    for tier in params:
        g = gpus[tier]
        assert g.interconnect_gbs
        node = VIDUR_NODES.get(tier)
        ar_rel, sr_rel = f"network/{node}/all_reduce.csv", f"network/{node}/send_recv.csv"
        ar_path, sr_path = inputs.use(ar_rel), inputs.use(sr_rel)
        if node and ar_path.is_file():
            c = read_collective(ar_path, "all_reduce", None, ar_rel)
            ref = g.interconnect_gbs / 2 * 1e9
            fits = fit_allreduce(c, ref)
            err = ape(predict_allreduce(c, fits, ref), c.seconds)
            quality[tier]["allreduce_ape_median"], quality[tier]["allreduce_ape_p90"] = stats(err)
            small = c.size <= LATENCY_MAX_BYTES
            q_small = stats(err[small])
            quality[tier]["allreduce_ape_median_small"], quality[tier]["allreduce_ape_p90_small"] = q_small
            params[tier].update(allreduce_by_tp(fits))
            degrees = "/".join(str(w) for w in sorted(fits))
            notes[tier].append(f"all-reduce from {node} (TP {degrees})")
        elif pcie is not None:
            params[tier].update(pcie)
            notes[tier].append(f"all-reduce: PCIe fit of {PCIE_NODE} at {PCIE_WORKERS} GPUs (no all-reduce data)")
        if node and sr_path.is_file():
            for dpn, (lat, eff), ref in (
                (2, ("p2p_latency_s", "p2p_efficiency"), g.interconnect_gbs / 2),
                (
                    1,
                    ("internode_latency_s", "internode_efficiency"),
                    g.internode_gbs or PerfParams().default_internode_gbs,
                ),
            ):
                c = read_collective(sr_path, "send_recv", dpn, sr_rel)
                if c.size.size:
                    alpha, eta = fit_collective(c, ref * 1e9, ring=False)
                    params[tier].update({lat: alpha, eff: eta})
                    if dpn == 2:
                        err = ape(predict_collective(c, alpha, eta * ref * 1e9, False), c.seconds)
                        quality[tier]["send_recv_ape_median"], quality[tier]["send_recv_ape_p90"] = stats(err)
            notes[tier].append(f"send/recv from {node}")

    # Host overheads.
    host: dict[str, dict[str, float]] = {}
    for tier, rel in sorted(CPU_FILES.items()):
        path = inputs.use(rel)
        if path.is_file() and tier in params:
            host[tier] = fit_host(path, rel)
    for tier in params:
        src = tier if tier in host else HOST_DONOR if HOST_DONOR in host else None
        if src is not None:
            params[tier].update(host[src])
            notes[tier].append(f"host time from {CPU_FILES[src]}")

    for tier in sorted(params):
        tiers[tier] = TierCalibration(
            source="measured: " + "; ".join(notes[tier]), params=params[tier], quality=quality[tier]
        )
    cal = Calibration(
        description=(
            "Fitted by `planner calibrate --vidur` from the Vidur profiling data (microsoft/vidur, MIT): "
            "per-operator GPU times, NCCL collectives, legacy A100 attention and CPU overheads. "
            "Efficiencies are fractions of each tier's catalog datasheet figures."
        ),
        inputs=inputs.hashes,
        tiers=tiers,
    )
    return extrapolate(cal, list(all_tiers))
