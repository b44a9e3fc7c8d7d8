r"""Refitting tiers to NVIDIA AIConfigurator's measured vLLM operator tables
(``planner calibrate --aiconfigurator``; the tables are read by :mod:`planner.perf.aiconfigurator`).

Per GPU tier that AIConfigurator measures (``SYSTEM_GPUS``), on top of a base calibration (the
Vidur fit, :func:`planner.perf.fit.calibrate_vidur`), these factors are refitted; everything else
(element-wise ops, host time, send/recv) stays the base's, which for a tier Vidur does not measure
is its donor's (:data:`planner.perf.calibration.DONORS`):

================================  ==========================================================
GEMM (bf16, m ≤ 8192 token rows)  η_c, w½, p, η_m, t0 by Levenberg–Marquardt on
                                  log(predicted/measured) (:func:`planner.perf.fit.fit_gemm_rows`)
GEMM (per-tensor fp8)             η8, η_m8, t0_8 (``fp8_*``); ramp and roofline shape as bf16's
context attention (batch 1,       η_a, w_b (attention_half_blocks), η_kv, α_a on log ratios,
head_dim 128, bf16 KV) and        prefill and decode rows each half of the weight; a chunk over its
generation attention (head_dim    cache is not measured by AIConfigurator: its ramp stays the base's
128, bf16 KV, batch ≤ 256)        (Vidur's chunked-prefill rows), its η_ctx at least the causal
                                  prefill's η_a (both are the same flash kernel over dense tiles;
                                  the causal one also skips half of them)
NCCL all_reduce                   α_n(t), η_n(t) per ring size (:func:`planner.perf.fit.fit_allreduce`)
vLLM custom all-reduce (graph     α_c(t), η_c(t) on messages up to ``custom_allreduce_max_bytes``
mode, the path of decode steps)   (the only ones vLLM sends it)
================================  ==========================================================

Every fit is deterministic: same tables, same bytes out.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from planner.errors import InputError
from planner.perf.aiconfigurator import SYSTEM_GPUS, SystemData, list_systems, load_system
from planner.perf.calibration import Calibration, TierCalibration, extrapolate
from planner.perf.fit import (
    MAX_STREAM_EFFICIENCY,
    Hardware,
    allreduce_by_tp,
    fit_allreduce,
    fit_gemm_rows,
    predict_allreduce,
    predict_attention,
)
from planner.perf.lsq import ape, levenberg_marquardt, logit, sigmoid, stats
from planner.perf.ops import gemm_time, kv_bytes_per_token
from planner.perf.vidur import AttentionData, Collective
from planner.problem import GPU, PerfParams

MAX_GEMM_ROWS = 8192  # the largest token budget an instance plans: bigger GEMMs are not run
HEAD_DIM = 128  # every dense catalog model's head size
MAX_DECODE_BATCH = 256  # vLLM's default max_num_seqs
CUSTOM_PREFIX = {
    "collective_latency_s": "custom_allreduce_latency_s",
    "collective_latency_tp4_s": "custom_allreduce_latency_tp4_s",
    "collective_latency_tp8_s": "custom_allreduce_latency_tp8_s",
    "network_efficiency": "custom_allreduce_efficiency",
    "network_efficiency_tp4": "custom_allreduce_efficiency_tp4",
    "network_efficiency_tp8": "custom_allreduce_efficiency_tp8",
}


# ------------------------------------------------------------------------------------------------
# GEMM
# ------------------------------------------------------------------------------------------------
def gemm_rows(data: SystemData) -> pd.DataFrame:
    """The bf16 GEMMs a replica runs: m ≤ MAX_GEMM_ROWS token rows."""
    g = data.gemm
    return g[(g.dtype == "bfloat16") & (g.m <= MAX_GEMM_ROWS)]


def predict_gemm(rows: pd.DataFrame, q: Mapping[str, float | None], hw: Hardware, fp8: GPU | None = None) -> np.ndarray:
    """GEMMs of ``m`` token rows through k×n weights: bf16, or (``fp8``: the tier) per-tensor fp8
    ones, 1-byte weights at the fp8 rate with the fp8 factors where ``q`` has them (the bf16 ones
    where it does not, as a replica runs them)."""

    def factor(name: str) -> float:
        v = q.get(f"fp8_{name}") if fp8 is not None else None
        return float(q[name] if v is None else v)  # type: ignore[arg-type]

    k, n = rows.k.to_numpy(float), rows.n.to_numpy(float)
    flops = hw.flops if fp8 is None else float(fp8.tflops_fp8 or 0.0) * 1e12
    return gemm_time(
        rows.m.to_numpy(float),
        k,
        n,
        k * n * (2.0 if fp8 is None else 1.0),
        flops,
        hw.bandwidth,
        factor("compute_efficiency"),
        q["gemm_half_tiles"],  # type: ignore[arg-type]
        q["gemm_overlap"],  # type: ignore[arg-type]
        factor("memory_efficiency"),
        q["kernel_latency_s"],  # type: ignore[arg-type]
    )


def fit_fp8(rows: pd.DataFrame, q: Mapping[str, float], gpu: GPU) -> dict[str, float]:
    """η_m8 and η8 of per-tensor fp8 GEMMs (vLLM's CUTLASS scaled-mm, activations quantized on the
    fly), each where it decides the time, as the all-reduce fit does: η_m8 on decode-sized GEMMs
    (m ≤ 64: weight streaming), then η8 on prefill-sized ones (m ≥ 1024); the bf16 fit's ramp,
    roofline shape and kernel latency kept. One parameter each, Levenberg–Marquardt on log ratios
    (one joint fit trades one regime against the other: 45% median error at both)."""
    hw = Hardware.of(gpu)
    m = rows.m.to_numpy()
    out = {"fp8_compute_efficiency": q["compute_efficiency"], "fp8_memory_efficiency": q["memory_efficiency"]}
    for key, sel, cap in (
        ("fp8_memory_efficiency", m <= 64, MAX_STREAM_EFFICIENCY),
        ("fp8_compute_efficiency", m >= 1024, 1.0),
    ):
        part = rows[sel]
        if part.empty:
            continue
        target = np.log(part.seconds.to_numpy())

        def residual(
            x: np.ndarray, part: pd.DataFrame = part, key: str = key, cap: float = cap, target: np.ndarray = target
        ) -> np.ndarray:
            trial = {**q, **out, key: cap * sigmoid(x[0])}
            return np.log(predict_gemm(part, trial, hw, fp8=gpu)) - target

        out[key] = cap * sigmoid(levenberg_marquardt(residual, [logit(0.6)])[0])
    return out


# ------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------
def attention_rows(data: SystemData) -> pd.DataFrame:
    """Prefill (one sequence of ``isl`` tokens, no cache) and decode rows (``batch`` sequences over
    ``context`` cached tokens) at head_dim 128 with a bf16 KV cache, as one frame with model inputs."""
    c, g = data.context_attention, data.generation_attention
    c = c[(c.batch == 1) & (c.head_dim == HEAD_DIM) & (c.kv_dtype == "bfloat16")]
    g = g[(g.head_dim == HEAD_DIM) & (g.kv_dtype == "bfloat16") & (g.batch <= MAX_DECODE_BATCH)]
    pre = pd.DataFrame(
        {"chunk": c.isl, "decodes": 0, "context": 0, "heads": c.heads, "kv_heads": c.kv_heads, "seconds": c.seconds}
    )
    dec = pd.DataFrame(
        {
            "chunk": 0,
            "decodes": g.batch,
            "context": g.context,
            "heads": g.heads,
            "kv_heads": g.kv_heads,
            "seconds": g.seconds,
        }
    )
    out = pd.concat([pre.assign(prefill=True), dec.assign(prefill=False)], ignore_index=True)
    return out.astype({"chunk": float, "decodes": float, "context": float, "heads": float, "kv_heads": float})


def predict_attention_rows(rows: pd.DataFrame, q: Mapping[str, float], hw: Hardware) -> np.ndarray:
    """:func:`planner.perf.fit.predict_attention` on these rows (heads and KV bytes per row)."""
    kv = np.array([kv_bytes_per_token(h, HEAD_DIM, 1, 2.0) for h in rows.kv_heads.to_numpy()])
    data = AttentionData(
        chunk=rows.chunk.to_numpy(),
        cached=np.zeros(len(rows)),
        decodes=rows.decodes.to_numpy(),
        context=rows.context.to_numpy(),
        seconds=rows.seconds.to_numpy(),
        is_prefill=rows.prefill.to_numpy(),
        nq_gpu=rows.heads.to_numpy(),  # type: ignore[arg-type]  # per-row heads broadcast like a scalar
        head_dim=HEAD_DIM,
        kv_bytes_tok_l=kv,  # type: ignore[arg-type]
    )
    return predict_attention(data, q, hw)


def fit_attention_rows(rows: pd.DataFrame, hw: Hardware, context_efficiency: float) -> dict[str, float]:
    """η_a, w_b, η_kv, α_a by Levenberg–Marquardt on log ratios, prefill and decode rows each half of
    the weight; η_ctx fixed (module docstring): ``context_efficiency``, raised to η_a if below it."""
    target = np.log(rows.seconds.to_numpy())
    pre = rows.prefill.to_numpy()
    n_pre, n_dec = max(int(pre.sum()), 1), max(int((~pre).sum()), 1)
    sw = np.sqrt(np.where(pre, 0.5 / n_pre, 0.5 / n_dec) * len(rows))

    def params(x: np.ndarray, eta_ctx: float) -> dict[str, float]:
        return {
            "attention_efficiency": sigmoid(x[0]),
            "context_attention_efficiency": eta_ctx,
            "attention_half_blocks": math.exp(x[1]),
            "kv_efficiency": sigmoid(x[2]),
            "attention_latency_s": math.exp(x[3]),
        }

    x0 = [logit(0.4), math.log(10.0), logit(0.7), math.log(1e-5)]
    eta_ctx = context_efficiency
    for _ in range(2):  # η_ctx ≥ η_a: a second pass when the first raised it

        def residual(x: np.ndarray, e: float = eta_ctx) -> np.ndarray:
            return sw * (np.log(predict_attention_rows(rows, params(x, e), hw)) - target)

        x = levenberg_marquardt(residual, x0)
        fitted = params(x, eta_ctx)
        if fitted["attention_efficiency"] <= eta_ctx:
            return fitted
        eta_ctx, x0 = fitted["attention_efficiency"], list(x)
    return params(x, eta_ctx)


# ------------------------------------------------------------------------------------------------
# All-reduce
# ------------------------------------------------------------------------------------------------
def collective(data: SystemData, impl: str, max_bytes: float | None = None) -> Collective:
    a = data.allreduce
    a = a[(a.impl == impl) & ((a.bytes <= max_bytes) if max_bytes is not None else True)]
    return Collective(a.bytes.to_numpy(float), a.gpus.to_numpy(int), a.seconds.to_numpy(float))


# ------------------------------------------------------------------------------------------------
# The calibration
# ------------------------------------------------------------------------------------------------
def calibrate_tier(data: SystemData, gpu: GPU, base: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(params, quality) of one tier: the base's factors with GEMM, attention and all-reduce refitted."""
    assert gpu.interconnect_gbs
    hw = Hardware.of(gpu)
    params = dict(base)
    quality: dict[str, float] = {}
    g = gemm_rows(data)
    if len(g):
        k, n = g.k.to_numpy(float), g.n.to_numpy(float)
        params.update(fit_gemm_rows(g.m.to_numpy(float), k, n, k * n * 2.0, g.seconds.to_numpy(float), hw))
        err = ape(predict_gemm(g, params, hw), g.seconds.to_numpy())
        quality["gemm_ape_median"], quality["gemm_ape_p90"] = stats(err)
    g8 = data.gemm[(data.gemm.dtype == "fp8") & (data.gemm.m <= MAX_GEMM_ROWS)]
    if len(g) and len(g8) and gpu.tflops_fp8:
        params.update(fit_fp8(g8, params, gpu))
        err = ape(predict_gemm(g8, params, hw, fp8=gpu), g8.seconds.to_numpy())
        quality["gemm_fp8_ape_median"], quality["gemm_fp8_ape_p90"] = stats(err)
    a = attention_rows(data)
    if a.prefill.any() and (~a.prefill).any():
        eta_ctx = base.get("context_attention_efficiency", PerfParams().context_attention_efficiency)
        params.update(fit_attention_rows(a, hw, eta_ctx))
        # A chunk over its cache is not in AIConfigurator's tables; Vidur's chunked-prefill rows
        # measured its ramp (the base's attention_half_blocks), which the causal prefill's fitted
        # ramp (10× larger on H100: few query blocks of a short prompt) must not replace.
        params["context_attention_half_blocks"] = base.get(
            "context_attention_half_blocks", base.get("attention_half_blocks", PerfParams().attention_half_blocks)
        )
        err = ape(predict_attention_rows(a, params, hw), a.seconds.to_numpy())
        pre = a.prefill.to_numpy()
        quality["attention_ape_median_prefill"], quality["attention_ape_p90_prefill"] = stats(err[pre])
        quality["attention_ape_median_decode"], quality["attention_ape_p90_decode"] = stats(err[~pre])
    ref = gpu.interconnect_gbs / 2 * 1e9
    for impl, max_bytes, rename in (
        ("nccl", None, None),
        ("custom", PerfParams().custom_allreduce_max_bytes, CUSTOM_PREFIX),
    ):
        c = collective(data, impl, max_bytes)
        if not c.size.size:
            continue
        fits = fit_allreduce(c, ref)
        by_tp = allreduce_by_tp(fits)
        params.update({rename[k]: v for k, v in by_tp.items()} if rename else by_tp)
        err = ape(predict_allreduce(c, fits, ref), c.seconds)
        quality[f"allreduce_{impl}_ape_median"], quality[f"allreduce_{impl}_ape_p90"] = stats(err)
    return params, quality


def calibrate_aiconfigurator(base: Calibration, root: Path, gpus: Mapping[str, GPU]) -> Calibration:
    """``base`` with every tier AIConfigurator measures refitted (module docstring)."""
    tiers = dict(base.tiers)
    inputs = dict(base.inputs)
    done: list[str] = []
    for system in list_systems(root):
        tier = SYSTEM_GPUS.get(system)
        if tier is None or tier not in gpus:
            continue
        data = load_system(root, system)
        if data.gemm.empty and data.context_attention.empty and data.allreduce.empty:
            continue  # an empty directory (AIConfigurator ships l4 without data)
        old = tiers.get(tier)
        params, quality = calibrate_tier(data, gpus[tier], old.params if old else {})
        versions = ", ".join(f"{name} {src.framework} {src.version}" for name, src in sorted(data.sources.items()))
        rest = old.source if old else "PerfParams defaults"
        tiers[tier] = TierCalibration(
            source=f"measured: GEMM, attention and all-reduce from AIConfigurator {system} ({versions}); "
            f"the rest as before ({rest})",
            params=params,
            quality={**(old.quality if old else {}), **quality},
        )
        for src in data.sources.values():
            path = root / "data" / src.path
            inputs[f"aiconfigurator/{src.path}"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        done.append(tier)
    if not done:
        raise InputError(str(root), "systems", "no AIConfigurator system with vLLM tables maps to a catalog tier")
    # Tiers extrapolated from a donor take the donor's refitted factors.
    kept = {t: tc for t, tc in tiers.items() if not tc.source.startswith("extrapolated")}
    out = base.model_copy(update={"tiers": kept})
    tiers = extrapolate(out, sorted(tiers)).tiers
    return base.model_copy(
        update={
            "description": base.description
            + " GEMM, attention and all-reduce of "
            + ", ".join(sorted(done))
            + " refitted to NVIDIA AIConfigurator's measured vLLM operator tables (aiconfigurator-core, Apache-2.0).",
            "tiers": tiers,
            "inputs": dict(sorted(inputs.items())),
        }
    )
