"""The performance model's operator formulas against NVIDIA AIConfigurator's measured vLLM tables.

For every AIConfigurator system that is a catalog GPU tier (``planner.perf.aiconfigurator.SYSTEM_GPUS``)
and has measurements, each operator family is predicted with the formulas of :mod:`planner.perf`
(``gemm_time``, ``attention_time``, ``allreduce_time``, shapes from ``layer_shapes``) and the tier's
factors as a replica uses them (``ReplicaModel(...).q``: the shipped calibration), and compared with
the measured time:

* GEMMs of Llama-3.1-8B/70B and Qwen2.5-7B/72B (QKV, O, gate+up, down) at TP 1, 2, 4, 8 and token
  counts 1, 2, 4, … 8192, bf16 and — where the GPU has fp8 tensor cores and the table fp8 rows —
  fp8 with per-tensor scales (weights 1 byte at the fp8 TFLOP/s figure: what ``ReplicaModel`` does
  for an fp8 checkpoint).
* Context attention (one sequence of 512 … 8192 tokens, causal, no cache) and generation attention
  (batch 1 … 128 decodes over the measured contexts nearest 512 … 8192 tokens, i.e. 511 … 8191)
  at those models' per-GPU head counts, head_dim 128, bf16 KV cache.
* All-reduce over TP 2, 4, 8 GPUs of decode messages (1 … 256 tokens · hidden · 2 bytes) and of a
  prefill chunk (2048 · hidden · 2 bytes), for vLLM's custom all-reduce (CUDA-graph mode) and NCCL.

AIConfigurator measures a grid (GEMM n and k, attention head counts from fixed lists; all-reduce
sizes in powers of two), so a model shape is matched to the NEAREST measured one (log distance) and
the formula is evaluated AT THAT MEASURED SHAPE: the comparison is exact, the model shapes only
choose which part of the grid counts. A measured point several model shapes map to is counted once
(the CSV lists who uses it; ``exact`` says whether one of them is that shape exactly).

Error: APE = |predicted/measured − 1|; bias = median of predicted/measured (> 1: the model is slow).
Writes ``benchmarks/results/perf_vs_aiconfigurator.md`` and ``.csv``.
Usage: ``python benchmarks/perf_vs_aiconfigurator.py [--systems DIR] [--out DIR]`` (DIR: the
``systems/`` directory of an unpacked aiconfigurator-core wheel; default: the installed package).
About 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.errors import InputError  # noqa: E402
from planner.loader import builtin_catalog  # noqa: E402
from planner.perf import ReplicaModel, allreduce_time  # noqa: E402
from planner.perf.aic_fit import calibrate_tier, gemm_shapes, nearest, predict_gemm  # noqa: E402
from planner.perf.aiconfigurator import (  # noqa: E402
    SYSTEM_GPUS,
    UNMAPPED_SYSTEMS,
    SystemData,
    compare_with_catalog,
    list_systems,
    load_system,
    locate_database,
)
from planner.perf.calibration import Calibration, TierCalibration, load_calibration, write_calibration  # noqa: E402
from planner.perf.fit import Hardware  # noqa: E402
from planner.perf.fit import predict_attention as predict_attention_rows_of  # noqa: E402
from planner.perf.ops import kv_bytes_per_token  # noqa: E402
from planner.perf.vidur import AttentionData  # noqa: E402
from planner.problem import GPU, LLM, PerfParams  # noqa: E402

# Leave one GPU out: each measured tier predicted with the factors fitted on another one (the
# nearest part: same die or the same memory/fabric class), applied to its own datasheet figures,
# as an unmeasured tier is extrapolated from its donor.
HELD_OUT_DONORS = {
    "h100-80gb": "h200",
    "h200": "h100-80gb",
    "b200": "h100-80gb",
    "a100-80gb": "h100-80gb",
    "l40s": "a100-80gb",
}

MODELS = ("llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b", "qwen2.5-72b")
TPS = (1, 2, 4, 8)
TOKENS = tuple(2**i for i in range(14))  # 1 … 8192
GEMM_OPS = ("qkv", "o", "gate_up", "down")  # the order of layer_shapes' columns
GEMM_DTYPES = ("bfloat16", "fp8")  # per-tensor fp8 (vLLM's CUTLASS scaled-mm); fp8_block is not read
PROMPTS = (512, 1024, 2048, 4096, 8192)
DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
CONTEXTS = (512, 1024, 2048, 4096, 8192)
DECODE_TOKENS = tuple(2**i for i in range(9))  # 1 … 256 decodes per step
PREFILL_TOKENS = 2048
DECODE_MAX_ROWS = 64  # GEMM regime split: m ≤ 64 is decode-like (weight-streaming)
ACT_BYTES = 2
KV_BYTES = 2.0  # bf16 KV cache (PerfParams.kv_cache_bytes default)


def tp_allowed(model: LLM, tp: int, gpu: GPU) -> bool:
    """vLLM's conditions: TP divides the query heads, and the KV heads divide or are divided by it."""
    assert model.attention_heads and model.kv_heads
    kv_ok = model.kv_heads % tp == 0 or tp % model.kv_heads == 0
    return model.attention_heads % tp == 0 and kv_ok and tp <= gpu.gpus_per_node


def _rows(
    records: list[dict[str, object]], base: dict[str, object], measured: pd.DataFrame, predicted: np.ndarray
) -> None:
    for (_, row), pred in zip(measured.iterrows(), predicted, strict=True):
        records.append({**base, **row.to_dict(), "predicted_s": float(pred)})


# ------------------------------------------------------------------------------------------------
# Per family: measured rows at the models' shapes, with the formula's prediction
# ------------------------------------------------------------------------------------------------
def gemm_rows(data: SystemData, gpu: GPU, models: dict[str, LLM], cal: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for dtype in GEMM_DTYPES:
        flops = gpu.tflops if dtype == "bfloat16" else gpu.tflops_fp8
        table = data.gemm[(data.gemm["dtype"] == dtype) & data.gemm["m"].isin(TOKENS)]
        if flops is None or table.empty:
            continue
        shapes = table[["n", "k"]].drop_duplicates().sort_values(["n", "k"]).reset_index(drop=True)
        for mid, model in models.items():
            for tp in TPS:
                if not tp_allowed(model, tp, gpu):
                    continue
                q = ReplicaModel(model, gpu, tp, 1, PerfParams(), cal).q.model_dump()
                for op, (k_want, n_want) in zip(GEMM_OPS, gemm_shapes(model, tp), strict=True):
                    shape, exact = nearest(shapes, ("n", "k"), (n_want, k_want))
                    rows = table[(table["n"] == shape["n"]) & (table["k"] == shape["k"])]
                    n, k, m = float(shape["n"]), float(shape["k"]), rows["m"].to_numpy(float)
                    shard = pd.DataFrame({"m": m, "k": k, "n": n})
                    pred = predict_gemm(shard, q, Hardware.of(gpu), fp8=gpu if dtype == "fp8" else None)
                    base = {
                        "family": f"gemm_{'bf16' if dtype == 'bfloat16' else dtype}",
                        "used_by": f"{mid}/tp{tp}/{op}",
                        "want": f"n={n_want:.0f} k={k_want:.0f}",
                        "exact": exact,
                    }
                    measured = rows[["m", "n", "k", "kernel", "seconds", "source"]].rename(
                        columns={"seconds": "measured_s"}
                    )
                    _rows(out, base, measured, pred)
    for r in out:
        r["regime"] = "decode" if int(r["m"]) <= DECODE_MAX_ROWS else "prefill"  # type: ignore[call-overload]
    return out


def near_contexts(table: pd.DataFrame) -> pd.Series:
    """Rows at the measured context nearest each of CONTEXTS (the grid holds 2^k − 1 tokens)."""
    measured = np.unique(table["context"].to_numpy(float))
    if measured.size == 0:
        return table["context"] == -1
    picks = {measured[np.argmin(np.abs(np.log(measured / c)))] for c in CONTEXTS}
    return table["context"].isin(sorted(picks))


def predict_attention(
    rm: ReplicaModel,
    head_dim: float,
    heads: float,
    kv_heads: float,
    chunk: np.ndarray,
    decodes: np.ndarray,
    context: np.ndarray,
) -> np.ndarray:
    """One attention kernel as the replica times it, at a measured shape (heads per GPU): a prompt of
    ``chunk`` tokens with no cache, or ``decodes`` decodes over ``context`` cached tokens."""
    none = np.zeros_like(chunk)
    rows = AttentionData(
        chunk,
        none,
        decodes,
        context,
        none,
        chunk > 0,
        heads,
        head_dim,
        kv_bytes_per_token(kv_heads, head_dim, 1, KV_BYTES),
    )
    return predict_attention_rows_of(rows, rm.q.model_dump(), Hardware(rm.f16, rm.bw))


def attention_rows(data: SystemData, gpu: GPU, models: dict[str, LLM], cal: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    ctx = data.context_attention
    gen = data.generation_attention
    for mid, model in models.items():
        assert model.head_dim and model.attention_heads and model.kv_heads
        d = float(model.head_dim)
        for tp in TPS:
            if not tp_allowed(model, tp, gpu):
                continue
            rm = ReplicaModel(model, gpu, tp, 1, PerfParams(), cal)
            want = (model.attention_heads / tp, max(1.0, model.kv_heads / tp))

            for family, table, select in (
                ("context_attention", ctx, lambda t: (t["batch"] == 1) & t["isl"].isin(PROMPTS)),
                ("generation_attention", gen, lambda t: t["batch"].isin(DECODE_BATCHES) & near_contexts(t)),
            ):
                table = table[(table["kv_dtype"] == "bfloat16") & (table["head_dim"] == model.head_dim)]
                table = table[select(table)]
                if table.empty:
                    continue
                heads_grid = table[["heads", "kv_heads"]].drop_duplicates().sort_values(["heads", "kv_heads"])
                shape, exact = nearest(heads_grid.reset_index(drop=True), ("heads", "kv_heads"), want)
                rows = table[(table["heads"] == shape["heads"]) & (table["kv_heads"] == shape["kv_heads"])]
                h, kv = float(shape["heads"]), float(shape["kv_heads"])
                if family == "context_attention":
                    chunk = rows["isl"].to_numpy(float)
                    pred = predict_attention(rm, d, h, kv, chunk, np.zeros_like(chunk), np.zeros_like(chunk))
                    cols = ["batch", "isl", "heads", "kv_heads", "kernel", "seconds", "source"]
                else:
                    b = rows["batch"].to_numpy(float)
                    pred = predict_attention(rm, d, h, kv, np.zeros_like(b), b, rows["context"].to_numpy(float))
                    cols = ["batch", "context", "heads", "kv_heads", "kernel", "seconds", "source"]
                base = {
                    "family": family,
                    "used_by": f"{mid}/tp{tp}",
                    "want": f"heads={want[0]:g} kv={want[1]:g}",
                    "exact": exact,
                    "regime": "prefill" if family == "context_attention" else "decode",
                }
                _rows(out, base, rows[cols].rename(columns={"seconds": "measured_s"}), pred)
    return out


def allreduce_rows(data: SystemData, gpu: GPU, models: dict[str, LLM], cal: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    hidden = sorted({int(m.hidden_size or 0) for m in models.values()})
    wanted = [("decode", t * h) for t in DECODE_TOKENS for h in hidden] + [
        ("prefill", PREFILL_TOKENS * h) for h in hidden
    ]
    # The all-reduce factors depend on the tier and the TP degree only; any model builds the replica.
    probe = models["llama-3.1-70b"]
    for impl in ("custom", "nccl"):
        for tp in (2, 4, 8):
            table = data.allreduce[(data.allreduce["impl"] == impl) & (data.allreduce["gpus"] == tp)]
            if table.empty or tp > gpu.gpus_per_node:
                continue
            rm = ReplicaModel(probe, gpu, tp, 1, PerfParams(), cal)
            sizes = table.sort_values("elements").reset_index(drop=True)
            for regime, elements in wanted:
                row, exact = nearest(sizes, ("elements",), (float(elements),))
                nbytes = float(row["bytes"])
                if impl == "nccl":
                    pred = rm.nccl_allreduce(np.array([nbytes]))
                elif rm.car is not None and nbytes <= rm.car[2]:  # the model's custom path
                    pred = allreduce_time(np.array([nbytes]), tp, rm.car[1], rm.car[0])
                elif cal is None or rm.car is not None:
                    continue  # vLLM sends this message through NCCL: its custom time is not used
                else:  # a calibration without the custom path: its NCCL time stands for every call
                    pred = rm.nccl_allreduce(np.array([nbytes]))
                measured = pd.DataFrame([row])[["gpus", "elements", "bytes", "kernel", "seconds", "source"]]
                base = {
                    "family": f"allreduce_{impl}",
                    "used_by": f"{elements * ACT_BYTES} B",
                    "want": f"{elements} elements",
                    "exact": exact,
                    "regime": regime,
                }
                _rows(out, base, measured.rename(columns={"seconds": "measured_s"}), pred)
    return out


# ------------------------------------------------------------------------------------------------
# Collecting, merging and summarising
# ------------------------------------------------------------------------------------------------
KEYS = ["gpu", "family", "regime", "m", "n", "k", "batch", "isl", "context", "heads", "kv_heads", "gpus", "bytes"]


def merge_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measured point: its users joined, ``exact`` if any user is exact."""
    keys = [c for c in KEYS if c in df.columns]
    filled = df.assign(**{c: df[c].fillna(-1) for c in keys})
    agg = filled.groupby(keys, sort=True).agg(
        system=("system", "first"),
        kernel=("kernel", "first"),
        source=("source", "first"),
        measured_s=("measured_s", "first"),
        predicted_s=("predicted_s", "first"),
        exact=("exact", "any"),
        used_by=("used_by", lambda s: " ".join(sorted(set(s)))),
        want=("want", lambda s: " | ".join(sorted(set(s)))),
    )
    out = agg.reset_index().replace({c: {-1: np.nan} for c in keys})
    out["ratio"] = out["predicted_s"] / out["measured_s"]
    out["ape"] = (out["ratio"] - 1.0).abs()
    return out


def summary(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    g = df.groupby(list(by), sort=True)
    return pd.DataFrame(
        {
            "count": g.size(),
            "exact": g["exact"].sum().astype(int),
            "median_ape": g["ape"].median(),
            "p90_ape": g["ape"].quantile(0.9),
            "median_ratio": g["ratio"].median(),
        }
    ).reset_index()


def md_table(df: pd.DataFrame, formats: dict[str, Callable[[object], str]] | None = None) -> str:
    formats = formats or {}
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = [formats[c](row[c]) if c in formats else str(row[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pct(x: object) -> str:
    return f"{100 * float(x):.0f}%"  # type: ignore[arg-type]


def ratio(x: object) -> str:
    return f"{float(x):.2f}"  # type: ignore[arg-type]


def custom_vs_nccl(loaded: dict[str, SystemData], hidden: Sequence[int]) -> pd.DataFrame:
    """Measured per-call latency (µs) of custom (graph) and NCCL all-reduce at decode and prefill sizes."""
    rows = []
    sizes = [("1 token", 1), ("64 tokens", 64), (f"{PREFILL_TOKENS} tokens", PREFILL_TOKENS)]
    h = max(hidden)
    for system, data in loaded.items():
        ar = data.allreduce
        for tp in sorted(ar["gpus"].unique()):
            if tp > 8:
                continue
            row: dict[str, object] = {"gpu": SYSTEM_GPUS[system], "tp": int(tp)}
            for label, tokens in sizes:
                for impl in ("custom", "nccl"):
                    t = ar[(ar["impl"] == impl) & (ar["gpus"] == tp) & (ar["elements"] == tokens * h)]
                    row[f"{impl} {label}"] = f"{t['seconds'].iloc[0] * 1e6:.1f}" if len(t) else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", type=Path, default=None, help="AIConfigurator systems/ directory")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--baseline", default=None, help="a calibration file whose errors are shown beside")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp"), help="where the held-out calibrations go")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        root = locate_database(args.systems, option="--systems")
    except InputError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return 2
    cat = builtin_catalog()
    models = {m: LLM.model_validate(cat.models[m]) for m in MODELS}
    records: list[dict[str, object]] = []
    baseline_records: list[dict[str, object]] = []
    loaded: dict[str, SystemData] = {}
    mapping_rows = []
    spec_rows = []
    for system in list_systems(root):
        gpu_id = SYSTEM_GPUS.get(system)
        if gpu_id is None:
            continue
        data = load_system(root, system)
        gpu = GPU.model_validate(cat.gpus[gpu_id])
        mapping_rows.append(
            {
                "system": system,
                "gpu": gpu_id,
                "device": ", ".join(data.devices) or "–",
                "tables (newest version)": ", ".join(f"{k} {v.version}" for k, v in data.sources.items()) or "none",
                "pinned NCCL": data.spec.nccl_version or "–",
            }
        )
        cmp = compare_with_catalog(data.spec, gpu)
        cmp.insert(0, "gpu", gpu_id)
        spec_rows.append(cmp)
        if not data.sources:
            continue
        loaded[system] = data
        for rows in (
            gemm_rows(data, gpu, models, None),
            attention_rows(data, gpu, models, None),
            allreduce_rows(data, gpu, models, None),
        ):
            records.extend({"system": system, "gpu": gpu_id, **r} for r in rows)
        if args.baseline:
            for rows in (
                gemm_rows(data, gpu, models, args.baseline),
                attention_rows(data, gpu, models, args.baseline),
                allreduce_rows(data, gpu, models, args.baseline),
            ):
                baseline_records.extend({"system": system, "gpu": gpu_id, **r} for r in rows)

    # Leave one GPU out (HELD_OUT_DONORS): the donor's AIConfigurator fit on the held-out tier.
    shipped = load_calibration(None) or Calibration()
    by_gpu = {SYSTEM_GPUS[s]: (s, d) for s, d in loaded.items()}
    held: list[dict[str, object]] = []
    for tier, donor in HELD_OUT_DONORS.items():
        if tier not in by_gpu or donor not in by_gpu:
            continue
        _, ddata = by_gpu[donor]
        dgpu = GPU.model_validate(cat.gpus[donor])
        base = shipped.tiers[donor].params if donor in shipped.tiers else {}
        params, _ = calibrate_tier(ddata, dgpu, base)
        path = args.scratch / f"held-out-{tier}.yaml"
        write_calibration(path, Calibration(tiers={tier: TierCalibration(source=f"fitted on {donor}", params=params)}))
        system, data = by_gpu[tier]
        gpu = GPU.model_validate(cat.gpus[tier])
        for rows in (
            gemm_rows(data, gpu, models, str(path)),
            attention_rows(data, gpu, models, str(path)),
            allreduce_rows(data, gpu, models, str(path)),
        ):
            held.extend({"system": system, "gpu": tier, **r} for r in rows)

    points = merge_points(pd.DataFrame(records))
    args.out.mkdir(parents=True, exist_ok=True)
    csv_cols = [
        "gpu",
        "system",
        "family",
        "regime",
        "m",
        "n",
        "k",
        "batch",
        "isl",
        "context",
        "heads",
        "kv_heads",
        "gpus",
        "bytes",
        "kernel",
        "measured_s",
        "predicted_s",
        "ratio",
        "ape",
        "exact",
        "used_by",
        "want",
        "source",
    ]
    out_csv = points[csv_cols].copy()
    for col in ("m", "n", "k", "batch", "isl", "context", "heads", "kv_heads", "gpus", "bytes"):
        out_csv[col] = out_csv[col].astype("Int64")  # shapes are whole numbers; empty where n/a
    out_csv.to_csv(args.out / "perf_vs_aiconfigurator.csv", index=False, float_format="%.6g")

    by_family = summary(points, ["gpu", "family"])
    by_regime = summary(points, ["gpu", "family", "regime"])
    fmt = {"median_ape": pct, "p90_ape": pct, "median_ratio": ratio}
    if baseline_records:
        before = merge_points(pd.DataFrame(baseline_records))
        for name, keys in (("by_family", ["gpu", "family"]), ("by_regime", ["gpu", "family", "regime"])):
            b = summary(before, keys).rename(
                columns={"median_ape": "before_median", "p90_ape": "before_p90", "median_ratio": "before_ratio"}
            )
            b = b[[*keys, "before_median", "before_p90", "before_ratio"]]
            merged = (by_family if name == "by_family" else by_regime).merge(b, on=keys, how="left")
            if name == "by_family":
                by_family = merged
            else:
                by_regime = merged
        fmt.update({"before_median": pct, "before_p90": pct, "before_ratio": ratio})
    held_table = pd.DataFrame()
    if held:
        h = summary(merge_points(pd.DataFrame(held)), ["gpu", "family"])
        h.insert(1, "fitted on", h["gpu"].map(HELD_OUT_DONORS))
        held_table = h[["gpu", "fitted on", "family", "count", "median_ape", "p90_ape", "median_ratio"]]
    specs = pd.concat(spec_rows, ignore_index=True)
    specs = specs[specs["catalog"].notna() | specs["aic"].notna()]
    spec_fmt = {
        "aic": lambda x: "–" if pd.isna(x) else f"{float(x):.4g}",  # type: ignore[arg-type]
        "catalog": lambda x: "–" if pd.isna(x) else f"{float(x):.4g}",  # type: ignore[arg-type]
        "ratio": lambda x: "–" if pd.isna(x) else f"{float(x):.3f}",  # type: ignore[arg-type]
    }
    hidden = sorted({int(m.hidden_size or 0) for m in models.values()})
    lines = [
        "# Performance-model operators vs AIConfigurator's measured vLLM tables",
        "",
        "Generated by `benchmarks/perf_vs_aiconfigurator.py` from the aiconfigurator-core database "
        "(NVIDIA, Apache-2.0; read by `planner/perf/aiconfigurator.py`, newest version of each table, "
        "vLLM's default kernel per shape). Predictions: `planner.perf` formulas with each tier's "
        "shipped calibration (`ReplicaModel(...).q`). APE = |predicted/measured − 1|; ratio = "
        "predicted/measured (> 1: the model is slower than measured). Each measured point counts once; "
        "`exact` = points that are a model shape exactly (others are the nearest measured shape, the "
        "formula evaluated there)."
        + (
            f" `before_*`: the same with the calibration `{Path(args.baseline).name}` (`--baseline`)."
            if args.baseline
            else ""
        ),
        "",
        f"Models: {', '.join(MODELS)}; TP {', '.join(map(str, TPS))}; GEMM token counts 1-8192 "
        f"(decode: m ≤ {DECODE_MAX_ROWS}); context attention batch 1 × {PROMPTS[0]}-{PROMPTS[-1]} tokens; "
        f"generation batch {DECODE_BATCHES[0]}-{DECODE_BATCHES[-1]} × context {CONTEXTS[0] - 1}-{CONTEXTS[-1] - 1}; "
        f"all-reduce of {DECODE_TOKENS[0]}-{DECODE_TOKENS[-1]} decode tokens and one {PREFILL_TOKENS}-token "
        f"prefill chunk × hidden ({', '.join(map(str, hidden))}) × 2 bytes.",
        "",
        "## Error per GPU and operator family",
        "",
        md_table(by_family, fmt),
        "",
        "## By regime (GEMM decode m ≤ 64 / prefill; all-reduce decode / prefill message)",
        "",
        md_table(by_regime, fmt),
        "",
        "## Measured all-reduce per call, µs (custom = vLLM custom all-reduce, CUDA-graph mode)",
        "",
        f"Message = tokens × {max(hidden)} (hidden of the 70B/72B models) × 2 bytes.",
        "",
        md_table(custom_vs_nccl(loaded, hidden)),
        "",
        "vLLM takes its custom all-reduce only for messages under its size limit (8 MiB by default in "
        "the versions read for this note) and, on GPUs without NVLink, only for 2 GPUs; otherwise NCCL. "
        "So the prefill-sized rows and L40S at TP 4/8 are NCCL's in a real deployment; the custom "
        "table measures them anyway.",
        "",
        "## Leave one GPU out",
        "",
        "Each tier predicted with the AIConfigurator factors fitted on another tier (`fitted on`), "
        "applied to its own datasheet figures: how far an extrapolated tier may be off.",
        "",
        md_table(held_table, fmt) if not held_table.empty else "(no pair of measured tiers)",
        "",
        "## Systems read",
        "",
        md_table(pd.DataFrame(mapping_rows)),
        "",
        "Not mapped to a catalog tier: "
        + "; ".join(f"`{s}` ({why})" for s, why in sorted(UNMAPPED_SYSTEMS.items()) if s in list_systems(root))
        + ".",
        "",
        "## Datasheet figures: AIConfigurator system file vs catalog",
        "",
        "AIC's intra-node bandwidth is one direction, doubled here to compare with the catalog's "
        "bidirectional `interconnect_gbs`; its memory capacity is in GiB-based bytes (80 GiB = 85.9 GB).",
        "",
        md_table(specs, spec_fmt),
        "",
        f"{len(points)} measured points, one per row of `benchmarks/results/perf_vs_aiconfigurator.csv`.",
        "",
    ]
    (args.out / "perf_vs_aiconfigurator.md").write_text("\n".join(lines))
    print(md_table(by_family, fmt))
    print(f"{len(points)} points in {time.perf_counter() - t0:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
