"""Whole prefill and decode steps against AIConfigurator's measured vLLM operators, held out.

A step of a model on a GPU tier at TP t is composed the way AIConfigurator composes it, from its
measured tables: per transformer layer the four GEMMs (QKV, O, gate+up, down; bf16, or per-tensor
fp8), the attention kernel (causal prefill of one prompt, or a decode batch over its KV cache), and
two all-reduces of the layer's activations over the TP ring (vLLM's custom all-reduce where vLLM
sends it — one node, NVLink or two GPUs, ≤ 8 MiB — NCCL otherwise), times the layer count. The
same parts are predicted with :mod:`planner.perf`'s formulas at the SAME measured shapes (a model
shape off AIConfigurator's grid takes its nearest measured shape on both sides), so the error is
the model's and not the grid's. What AIConfigurator does not measure for vLLM (element-wise ops,
the LM head, host time) is left out of both sides.

Shapes: single-request prefill of 512 … 8192 tokens; decode steps of batch 1 … 128 over 1,023 and
4,095 cached tokens; Llama-3.1-8B/70B and Qwen2.5-7B/72B; bf16 and fp8 weights; TP 1, 2, 4, 8 where
vLLM runs it and the weights fit.

Calibrations compared:
``lomo``    leave one model out: the tier's GEMM, attention and all-reduce factors refitted
            (:func:`planner.perf.aic_fit.calibrate_tier`, from the Vidur base) with EVERY measured
            row the held-out model's steps are composed of withheld, then that model predicted.
``logo``    leave one GPU out: the tier predicted with another tier's fit (``HELD_OUT_DONORS``)
            applied to its own datasheet figures — how an unmeasured tier is extrapolated.
``shipped`` the shipped calibration (in-sample for the measured tiers).
``before``  the calibration before the v2 model (``git show c42f53d^:models/calibration/default.yaml``,
            ``--baseline``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from perf_vs_aiconfigurator import HELD_OUT_DONORS, TPS, predict_attention, tp_allowed

from planner.perf import ReplicaModel
from planner.perf.aic_fit import (
    HEAD_DIM,
    calibrate_tier,
    catalog_shapes,
    gemm_shapes,
    nccl_curves,
    nearest,
    predict_gemm,
)
from planner.perf.aiconfigurator import SYSTEM_GPUS, SystemData
from planner.perf.calibration import Calibration, TierCalibration, write_calibration
from planner.perf.fit import Hardware
from planner.perf.model import vllm_custom_allreduce
from planner.problem import GPU, LLM, PerfParams

PROMPTS = (512, 1024, 2048, 4096, 8192)
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
CONTEXTS = (1024, 4096)  # AIConfigurator's grid holds 2^k − 1: 1,023 and 4,095
DTYPES = ("bf16", "fp8")
ACT_BYTES = 2


@dataclasses.dataclass(frozen=True)
class Step:
    """One step: which measured rows (index labels into the system's tables) it is made of."""

    gpu: str
    model: str
    dtype: str
    tp: int
    phase: str  # prefill | decode
    tokens: int  # prompt tokens (prefill) or decodes (decode)
    context: int  # cached tokens of each decode (0 for prefill)
    layers: int
    gemm: tuple[int, ...]  # data.gemm labels, one per GEMM of a layer
    attention: int  # context_attention (prefill) or generation_attention (decode) label
    allreduce: int | None  # data.allreduce label, None at TP 1
    allreduce_tokens: float  # the measured message in the model's tokens (elements / hidden)

    def measured(self, data: SystemData) -> float:
        att = data.context_attention if self.phase == "prefill" else data.generation_attention
        per_layer = float(data.gemm.loc[list(self.gemm), "seconds"].sum()) + float(att.loc[self.attention, "seconds"])
        if self.allreduce is not None:
            per_layer += 2.0 * float(data.allreduce.loc[self.allreduce, "seconds"])
        return self.layers * per_layer


def _fp8_variant(model: LLM) -> LLM:
    return model.model_copy(update={"weight_bytes": 1.0, "quantization": "fp8"})


def steps(data: SystemData, gpu: GPU, models: Mapping[str, LLM], cal: str | None) -> Iterator[Step]:
    """Every step of every model, dtype and TP this tier runs (weights fit, vLLM allows the TP)."""
    gpu_id = SYSTEM_GPUS[data.system]
    g = data.gemm
    for mid, model in models.items():
        assert model.attention_heads and model.kv_heads and model.layers and model.hidden_size
        for dtype in DTYPES:
            gd = g[g.dtype == ("bfloat16" if dtype == "bf16" else "fp8")]
            if gd.empty or (dtype == "fp8" and not gpu.tflops_fp8):
                continue
            shapes = gd[["n", "k"]].drop_duplicates().sort_values(["n", "k"]).reset_index(drop=True)
            variant = model if dtype == "bf16" else _fp8_variant(model)
            for tp in TPS:
                if (
                    not tp_allowed(model, tp, gpu)
                    or not ReplicaModel(variant, gpu, tp, 1, PerfParams(), cal).fit().fits
                ):
                    continue
                nk = [nearest(shapes, ("n", "k"), (n_w, k_w))[0] for k_w, n_w in gemm_shapes(model, tp)]
                want = (model.attention_heads / tp, max(1.0, model.kv_heads / tp))
                for phase, sizes in (
                    ("prefill", [(p, 0) for p in PROMPTS]),
                    ("decode", [(b, c) for c in CONTEXTS for b in BATCHES]),
                ):
                    att = _attention_table(data, phase, model)
                    if att.empty:
                        continue
                    for tokens, context in sizes:
                        gemm = []
                        for shape in nk:
                            rows = gd[(gd.n == shape["n"]) & (gd.k == shape["k"])]
                            row, _ = nearest(rows, ("m",), (float(tokens),))
                            gemm.append(int(row.name))
                        a = _attention_row(att, phase, want, tokens, context)
                        ar, ar_tokens = _allreduce_row(data, gpu, tp, tokens, model.hidden_size)
                        yield Step(
                            gpu_id, mid, dtype, tp, phase, tokens, context, model.layers, tuple(gemm), a, ar, ar_tokens
                        )


def _attention_table(data: SystemData, phase: str, model: LLM) -> pd.DataFrame:
    t = data.context_attention if phase == "prefill" else data.generation_attention
    t = t[(t.kv_dtype == "bfloat16") & (t.head_dim == model.head_dim)]
    return t[t.batch == 1] if phase == "prefill" else t


def _attention_row(att: pd.DataFrame, phase: str, want: tuple[float, float], tokens: int, context: int) -> int:
    heads = att[["heads", "kv_heads"]].drop_duplicates().sort_values(["heads", "kv_heads"]).reset_index(drop=True)
    shape, _ = nearest(heads, ("heads", "kv_heads"), want)
    rows = att[(att.heads == shape["heads"]) & (att.kv_heads == shape["kv_heads"])]
    if phase == "prefill":
        row, _ = nearest(rows, ("isl",), (float(tokens),))
    else:
        row, _ = nearest(rows, ("batch", "context"), (float(tokens), float(context - 1)))
    return int(row.name)


def _allreduce_row(data: SystemData, gpu: GPU, tp: int, tokens: int, hidden: int) -> tuple[int | None, float]:
    """The all-reduce vLLM runs for ``tokens`` rows of activations (its rule, not a calibration's)."""
    if tp == 1:
        return None, 0.0
    nbytes = tokens * hidden * ACT_BYTES
    custom = vllm_custom_allreduce(gpu, tp) and nbytes <= PerfParams().custom_allreduce_max_bytes
    a = data.allreduce
    rows = a[(a.gpus == tp) & (a.impl == ("custom" if custom else "nccl"))]
    if rows.empty:  # no custom table for this ring: vLLM's NCCL fallback
        rows = a[(a.gpus == tp) & (a.impl == "nccl")]
    row, _ = nearest(rows, ("elements",), (float(tokens * hidden),))
    return int(row.name), float(row["elements"]) / hidden


def predict(step: Step, data: SystemData, gpu: GPU, model: LLM, cal: str | None) -> float:
    """The step's parts by the planner's formulas at the measured shapes, with calibration ``cal``."""
    variant = model if step.dtype == "bf16" else _fp8_variant(model)
    rm = ReplicaModel(variant, gpu, step.tp, 1, PerfParams(), cal)
    q = rm.q.model_dump()
    rows = data.gemm.loc[list(step.gemm), ["m", "n", "k"]].astype(float)
    gemm = float(predict_gemm(rows, q, Hardware.of(gpu), fp8=gpu if step.dtype == "fp8" else None).sum())
    if step.phase == "prefill":
        r = data.context_attention.loc[step.attention]
        chunk, decodes, ctx = np.array([float(r.isl)]), np.zeros(1), np.zeros(1)
    else:
        r = data.generation_attention.loc[step.attention]
        chunk, decodes, ctx = np.zeros(1), np.array([float(r.batch)]), np.array([float(r.context)])
    att = float(predict_attention(rm, float(HEAD_DIM), float(r.heads), float(r.kv_heads), chunk, decodes, ctx)[0])
    ar = 0.0 if step.allreduce is None else 2.0 * float(rm._allreduce(np.array([step.allreduce_tokens]))[0])
    return step.layers * (gemm + att + ar)


def withhold(data: SystemData, used: list[Step]) -> SystemData:
    """``data`` without any row the steps in ``used`` are made of."""
    gemm = {i for s in used for i in s.gemm}
    ctx = {s.attention for s in used if s.phase == "prefill"}
    gen = {s.attention for s in used if s.phase == "decode"}
    ar = {s.allreduce for s in used if s.allreduce is not None}
    return dataclasses.replace(
        data,
        gemm=data.gemm.drop(index=sorted(gemm)),
        context_attention=data.context_attention.drop(index=sorted(ctx)),
        generation_attention=data.generation_attention.drop(index=sorted(gen)),
        allreduce=data.allreduce.drop(index=sorted(ar)),
    )


def _scratch(
    path: Path, tier: str, params: dict[str, float], source: str, curves: dict[str, list[tuple[float, float]]]
) -> str:
    tc = TierCalibration(source=source, params=params, nccl_curves=curves)
    write_calibration(path, Calibration(tiers={tier: tc}))
    return str(path)


def run(
    loaded: Mapping[str, SystemData],
    gpus: Mapping[str, GPU],
    models: Mapping[str, LLM],
    base: Calibration,
    baseline: str | None,
    scratch: Path,
    catalog: Iterable[LLM] = (),
) -> pd.DataFrame:
    """One row per step: measured and predicted seconds under each calibration. The refits take
    their GEMMs on the shapes the ``catalog`` models run (:func:`planner.perf.aic_fit.catalog_shapes`),
    as ``planner calibrate --aiconfigurator`` does."""
    by_gpu = {SYSTEM_GPUS[s]: d for s, d in loaded.items()}
    catalog = list(catalog)

    def shapes(data: SystemData) -> set[tuple[int, int]] | None:
        return catalog_shapes(data.gemm, catalog) if catalog else None

    scratch.mkdir(parents=True, exist_ok=True)
    logo: dict[str, str] = {}
    for tier, donor in HELD_OUT_DONORS.items():
        if tier in by_gpu and donor in by_gpu:
            params, _ = calibrate_tier(by_gpu[donor], gpus[donor], base.tiers[donor].params, shapes(by_gpu[donor]))
            # no curve: a donor's NCCL measurements are of its own fabric, as in extrapolation
            logo[tier] = _scratch(scratch / f"logo-{tier}.yaml", tier, params, f"fitted on {donor}", {})
    out: list[dict[str, object]] = []
    for tier, data in sorted(by_gpu.items()):
        gpu = gpus[tier]
        all_steps = list(steps(data, gpu, models, None))
        for mid in models:
            mine = [s for s in all_steps if s.model == mid]
            if not mine:
                continue
            rest = withhold(data, mine)
            params, _ = calibrate_tier(rest, gpu, base.tiers[tier].params, shapes(data))
            curves = nccl_curves(rest, gpu.gpus_per_node)
            lomo = _scratch(scratch / f"lomo-{tier}-{mid}.yaml", tier, params, f"{tier} without {mid}", curves)
            for s in mine:
                row: dict[str, object] = {**dataclasses.asdict(s), "measured_s": s.measured(data)}
                ar = 0.0 if s.allreduce is None else 2.0 * s.layers * float(data.allreduce.loc[s.allreduce, "seconds"])
                row["allreduce_share"] = ar / float(row["measured_s"])  # type: ignore[arg-type]
                for name, cal in (("shipped", None), ("lomo", lomo), ("logo", logo.get(tier)), ("before", baseline)):
                    if name in ("logo", "before") and cal is None:
                        continue
                    row[f"{name}_s"] = predict(s, data, gpu, models[mid], cal)
                for k in ("gemm", "attention", "allreduce", "allreduce_tokens", "layers"):
                    row.pop(k)
                out.append(row)
    df = pd.DataFrame(out)
    for name in ("shipped", "lomo", "logo", "before"):
        if f"{name}_s" in df:
            df[f"{name}_ratio"] = df[f"{name}_s"] / df["measured_s"]
    return df


def summary(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Median and p90 APE (%) per group for each calibration, and whether LOMO meets 10 / 20."""
    g = df.groupby(by, sort=True)
    cols: dict[str, pd.Series] = {"steps": g.size()}
    for name in ("lomo", "logo", "shipped", "before"):
        if f"{name}_ratio" not in df:
            continue
        err = (df[f"{name}_ratio"] - 1.0).abs() * 100
        eg = err.groupby([df[c] for c in by], sort=True)
        cols[f"{name}_median"] = eg.median()
        cols[f"{name}_p90"] = eg.quantile(0.9)
        if name in ("lomo", "logo"):
            cols[f"{name}_bias"] = df[f"{name}_ratio"].groupby([df[c] for c in by], sort=True).median()
    return pd.DataFrame(cols).reset_index()
