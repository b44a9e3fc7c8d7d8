r"""Refitting tiers to NVIDIA AIConfigurator's measured vLLM operator tables
(``planner calibrate --aiconfigurator``; the tables are read by :mod:`planner.perf.aiconfigurator`).

Per GPU tier that AIConfigurator measures (``SYSTEM_GPUS``), on top of a base calibration (the
Vidur fit, :func:`planner.perf.fit.calibrate_vidur`), these factors are refitted; everything else
(element-wise ops, host time, send/recv) stays the base's, which for a tier Vidur does not measure
is its donor's (:data:`planner.perf.calibration.DONORS`):

================================  ==========================================================
GEMM (bf16, m ≤ 8192 token rows)  η_c, w½, p, η_m, t0 by Levenberg–Marquardt on
                                  log(predicted/measured) (:func:`planner.perf.fit.fit_gemm_rows`)
GEMM (per-tensor fp8)             η8 and the activation quantization's η_q jointly, then η_m8
                                  (``fp8_*``); ramp, roofline shape and t0 as bf16's. Both GEMM
                                  fits take the grid shapes the catalog's models run (n, k nearest
                                  their layers at TP 1-8: ``catalog_shapes``), not the whole grid
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
from collections.abc import Iterable, Mapping, Sequence
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
from planner.perf.ops import gemm_time, kv_bytes_per_token, layer_shapes
from planner.perf.vidur import AttentionData, Collective
from planner.problem import GPU, LLM, PerfParams

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
def nearest(points: pd.DataFrame, cols: Sequence[str], target: Sequence[float]) -> tuple[pd.Series, bool]:
    """The row of ``points`` nearest ``target`` in Σ |log ratio| over ``cols`` (ties: the first in
    the frame's order, so the choice is deterministic), and whether it is the target exactly."""
    dist = sum(np.abs(np.log(points[c].to_numpy(float) / t)) for c, t in zip(cols, target, strict=True))
    i = int(np.argmin(dist))
    return points.iloc[i], bool(dist[i] < 1e-12)


def gemm_shapes(model: LLM, tp: int) -> list[tuple[float, float]]:
    """(k, n) of the layer GEMMs (QKV, O, gate+up, down) of a dense ``model`` on one of ``tp`` GPUs."""
    assert model.hidden_size and model.attention_heads and model.kv_heads and model.intermediate_size
    k_l, n_l, _ = layer_shapes(
        model.hidden_size, model.attention_heads, model.kv_heads, model.head_dim, model.intermediate_size, tp
    )
    return [(float(k), float(n)) for k, n in zip(k_l, n_l, strict=True)]


def catalog_shapes(gemm: pd.DataFrame, models: Iterable[LLM]) -> set[tuple[int, int]]:
    """The measured (n, k) nearest each layer GEMM (QKV, O, gate+up, down) that ``models`` run at
    TP 1, 2, 4, 8 (where the TP divides the heads): the part of AIConfigurator's grid a replica runs.
    The grid also spans shapes no transformer has (n = 32 × k = 65536, …), where fp8's on-the-fly
    activation quantization dominates; fitted on them, η8 came out 30–40% slow on real prefills."""
    grid = gemm[["n", "k"]].drop_duplicates().sort_values(["n", "k"]).reset_index(drop=True)
    out: set[tuple[int, int]] = set()
    if grid.empty:
        return out
    for m in models:
        if not (m.hidden_size and m.attention_heads and m.kv_heads and m.head_dim and m.intermediate_size):
            continue
        for tp in (1, 2, 4, 8):
            if m.attention_heads % tp or (m.kv_heads % tp and tp % m.kv_heads):
                continue
            for k, n in gemm_shapes(m, tp):
                row, _ = nearest(grid, ("n", "k"), (n, k))
                out.add((int(row["n"]), int(row["k"])))
    return out


def _on_shapes(g: pd.DataFrame, shapes: set[tuple[int, int]] | None) -> pd.DataFrame:
    if shapes is None:
        return g
    keep = [(int(n), int(k)) in shapes for n, k in zip(g.n.to_numpy(), g.k.to_numpy(), strict=True)]
    return g[np.asarray(keep, bool)]


def gemm_rows(data: SystemData, shapes: set[tuple[int, int]] | None = None) -> pd.DataFrame:
    """The bf16 GEMMs a replica runs: m ≤ MAX_GEMM_ROWS token rows (at ``shapes`` where given)."""
    g = data.gemm
    return _on_shapes(g[(g.dtype == "bfloat16") & (g.m <= MAX_GEMM_ROWS)], shapes)


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
        float(q.get("fp8_quant_efficiency") or 0.0) if fp8 is not None else 0.0,
    )


def fit_fp8(rows: pd.DataFrame, q: Mapping[str, float], gpu: GPU) -> dict[str, float]:
    """η8, η_q and η_m8 of per-tensor fp8 GEMMs (vLLM's CUTLASS scaled-mm after a dynamic
    quantization of the activations), each where it decides the time, as the all-reduce fit does:
    η8 with the quantization's η_q jointly on prefill-sized GEMMs (m ≥ 512: the GEMM's FLOPs grow
    with n·k, the quantization with k only, so the two are told apart across shapes), then η_m8 on
    decode-sized ones (m ≤ 64: weight streaming), twice round; the bf16 fit's ramp, roofline shape
    and kernel latency kept. Levenberg–Marquardt on log ratios (one joint fit of everything trades
    one regime against the other: 45% median error at both)."""
    hw = Hardware.of(gpu)
    m = rows.m.to_numpy()
    out = {
        "fp8_compute_efficiency": q["compute_efficiency"],
        "fp8_memory_efficiency": q["memory_efficiency"],
        "fp8_quant_efficiency": 0.5,
    }
    parts = (
        (("fp8_compute_efficiency", 1.0), ("fp8_quant_efficiency", MAX_STREAM_EFFICIENCY)),
        (("fp8_memory_efficiency", MAX_STREAM_EFFICIENCY),),
    )
    for _ in range(2):
        for keys, sel in zip(parts, (m >= 512, m <= 64), strict=True):
            part = rows[sel]
            if part.empty:
                continue
            target = np.log(part.seconds.to_numpy())

            def residual(
                x: np.ndarray,
                part: pd.DataFrame = part,
                keys: tuple[tuple[str, float], ...] = keys,
                target: np.ndarray = target,
            ) -> np.ndarray:
                trial = {**q, **out, **{k: cap * sigmoid(v) for (k, cap), v in zip(keys, x, strict=True)}}
                return np.log(predict_gemm(part, trial, hw, fp8=gpu)) - target

            x0 = [logit(min(out[k] / cap, 0.95)) for k, cap in keys]
            x = levenberg_marquardt(residual, x0)
            out.update({k: cap * sigmoid(v) for (k, cap), v in zip(keys, x, strict=True)})
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
def nccl_curves(data: SystemData, max_tp: int = 8) -> dict[str, list[tuple[float, float]]]:
    """The measured NCCL all-reduce per TP degree (2 … ``max_tp``), [[bytes, seconds], ...] ascending."""
    a = data.allreduce
    out: dict[str, list[tuple[float, float]]] = {}
    for tp in sorted(int(t) for t in a[a.impl == "nccl"].gpus.unique()):
        if 2 <= tp <= max_tp:
            rows = a[(a.impl == "nccl") & (a.gpus == tp)].sort_values("bytes")
            pts = [(float(b), float(s)) for b, s in zip(rows.bytes, rows.seconds, strict=True)]
            if len(pts) >= 2:
                out[str(tp)] = pts
    return out


def calibrate_tier(
    data: SystemData, gpu: GPU, base: Mapping[str, float], shapes: set[tuple[int, int]] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """(params, quality) of one tier: the base's factors with GEMM, attention and all-reduce
    refitted; the GEMMs on ``shapes`` (:func:`catalog_shapes`) where given, else on the whole grid."""
    assert gpu.interconnect_gbs
    hw = Hardware.of(gpu)
    params = dict(base)
    quality: dict[str, float] = {}
    g = gemm_rows(data, shapes)
    if len(g):
        k, n = g.k.to_numpy(float), g.n.to_numpy(float)
        params.update(fit_gemm_rows(g.m.to_numpy(float), k, n, k * n * 2.0, g.seconds.to_numpy(float), hw))
        err = ape(predict_gemm(g, params, hw), g.seconds.to_numpy())
        quality["gemm_ape_median"], quality["gemm_ape_p90"] = stats(err)
    g8 = _on_shapes(data.gemm[(data.gemm.dtype == "fp8") & (data.gemm.m <= MAX_GEMM_ROWS)], shapes)
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


def calibrate_aiconfigurator(
    base: Calibration, root: Path, gpus: Mapping[str, GPU], models: Iterable[LLM] = ()
) -> Calibration:
    """``base`` with every tier AIConfigurator measures refitted (module docstring); the GEMMs on
    the grid shapes ``models`` run (:func:`catalog_shapes`; the whole grid when none are given)."""
    models = list(models)
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
        shapes = catalog_shapes(data.gemm, models) if models else None
        params, quality = calibrate_tier(data, gpus[tier], old.params if old else {}, shapes)
        versions = ", ".join(f"{name} {src.framework} {src.version}" for name, src in sorted(data.sources.items()))
        rest = old.source if old else "PerfParams defaults"
        tiers[tier] = TierCalibration(
            nccl_curves=nccl_curves(data, gpus[tier].gpus_per_node),
            source=f"measured: GEMM, attention and all-reduce from AIConfigurator {system} ({versions}"
            + (f"; GEMMs on the {len(shapes)} grid shapes the catalog's models run" if shapes else "")
            + f"); the rest as before ({rest})",
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
