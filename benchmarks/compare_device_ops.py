"""The performance model's operator formulas beside operator times measured on a real GPU.

    python benchmarks/compare_device_ops.py [--csv benchmarks/data/h200_ops.csv] [--tier h200]
                                            [--baseline OLD_CALIBRATION.yaml]

Reads the raw timings of ``benchmarks/device_ops.py`` (PyTorch kernels at real model shapes, random
weights), predicts each row with the tier's factors as a replica uses them (the shipped
calibration, or ``--baseline`` beside it) and writes ``results/device_ops_<tier>.md``: per operator
kind, median and p90 of |predicted/measured − 1| and the median ratio (> 1: the model is slower).
PyTorch's kernels are not vLLM's (cuBLAS for GEMMs, no paged KV in SDPA, no CUDA graphs: every
timing carries one kernel launch), so this is a check of the formulas on the silicon, not of vLLM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.loader import builtin_catalog  # noqa: E402
from planner.perf import attention_time, elementwise_time, gemm_time  # noqa: E402
from planner.perf.calibration import effective_params  # noqa: E402
from planner.perf.ops import ACT_BYTES, kv_bytes_per_token  # noqa: E402
from planner.problem import GPU, PerfParams  # noqa: E402


def predict(df: pd.DataFrame, gpu: GPU, q: PerfParams) -> np.ndarray:
    """Each row's time under the factors ``q`` (seconds)."""
    f16, bw = (gpu.tflops or 0) * 1e12, (gpu.bandwidth_tbs or 0) * 1e12
    f8 = (gpu.tflops_fp8 or gpu.tflops or 0) * 1e12
    out = np.full(len(df), np.nan)
    for i, r in enumerate(df.itertuples()):
        if r.kind in ("gemm_bf16", "gemm_fp8"):
            fp8 = r.kind == "gemm_fp8"
            out[i] = gemm_time(
                np.array(r.m), r.k, r.n, r.k * r.n * (1.0 if fp8 else 2.0), f8 if fp8 else f16, bw,
                (q.fp8_compute_efficiency or q.compute_efficiency) if fp8 else q.compute_efficiency,
                q.gemm_half_tiles, q.gemm_overlap,
                (q.fp8_memory_efficiency or q.memory_efficiency) if fp8 else q.memory_efficiency,
                q.kernel_latency_s,
            )  # fmt: skip
        elif r.kind in ("prefill_attention", "decode_attention"):
            pre = r.kind == "prefill_attention"
            chunk = r.tokens if pre else 0.0
            dec, ctx = (0.0, 0.0) if pre else (r.batch, r.context)
            kv = kv_bytes_per_token(r.kv_heads, 128, 1, q.kv_cache_bytes)
            out[i] = attention_time(
                np.array(chunk), np.array(0.0), np.array(dec), np.array(ctx), r.heads, 128, kv, f16, bw,
                q.attention_efficiency, q.context_attention_efficiency, q.attention_half_blocks,
                q.kv_efficiency, q.attention_latency_s, q.context_attention_half_blocks,
            )  # fmt: skip
        elif r.kind == "rmsnorm":  # read and write the hidden state
            out[i] = elementwise_time(np.array(ACT_BYTES * 2 * r.m * r.n), bw, q.norm_efficiency, q.norm_latency_s)
        elif r.kind == "add":  # two reads, one write
            out[i] = elementwise_time(np.array(ACT_BYTES * 3 * r.m * r.n), bw, q.add_efficiency, q.add_latency_s)
        elif r.kind == "silu_mul":  # read gate and up, write one
            out[i] = elementwise_time(np.array(ACT_BYTES * 3 * r.m * r.n), bw, q.act_efficiency, q.act_latency_s)
    return out


def summary(df: pd.DataFrame, pred: np.ndarray) -> pd.DataFrame:
    ratio = pred / df.seconds.to_numpy()
    d = pd.DataFrame({"kind": df.kind, "ratio": ratio, "ape": np.abs(ratio - 1)})
    g = d.groupby("kind", sort=True)
    return pd.DataFrame(
        {"count": g.size(), "median_ape": g.ape.median(), "p90_ape": g.ape.quantile(0.9), "ratio": g.ratio.median()}
    ).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=ROOT / "benchmarks" / "data" / "h200_ops.csv")
    ap.add_argument("--tier", default="h200")
    ap.add_argument("--baseline", default=None, help="a calibration file whose errors are shown beside")
    args = ap.parse_args()
    df = pd.read_csv(args.csv)
    gpu = GPU.model_validate(builtin_catalog().gpus[args.tier])
    now = summary(df, predict(df, gpu, effective_params(args.tier, PerfParams())))
    if args.baseline:
        before = summary(df, predict(df, gpu, effective_params(args.tier, PerfParams(), args.baseline)))
        now = now.merge(before.rename(columns={"median_ape": "before_median", "p90_ape": "before_p90",
                                               "ratio": "before_ratio"}).drop(columns="count"), on="kind")  # fmt: skip
    # Large shapes only (GEMMs of ≥ 512 token rows, attention over ≥ 2048 tokens): launch time out.
    big = ((df.kind.str.startswith("gemm")) & (df.m >= 512)) | (df.kind.str.endswith("attention") & (
        (df.tokens >= 2048) | (df.context >= 2048)))  # fmt: skip
    large = summary(df[big], predict(df[big], gpu, effective_params(args.tier, PerfParams())))
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731

    def table(t: pd.DataFrame) -> list[str]:
        cols = list(t.columns)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in t.itertuples(index=False):
            cells = [
                pct(v) if c.endswith(("ape", "median", "p90")) else f"{v:.2f}" if isinstance(v, float) else str(v)
                for c, v in zip(cols, r, strict=True)
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    lines = [
        f"# Operator formulas vs timings on {df.device.iloc[0]} (PyTorch {df.torch.iloc[0]})",
        "",
        "`python benchmarks/compare_device_ops.py"
        + (f" --baseline {Path(args.baseline).name}" if args.baseline else "")
        + f"` on `{args.csv.relative_to(ROOT) if args.csv.is_relative_to(ROOT) else args.csv}` (raw rows: "
        "`benchmarks/device_ops.py` on a lent GPU). Predictions: the shipped calibration's "
        f"`{args.tier}` factors"
        + (" (`before_*`: the baseline calibration)" if args.baseline else "")
        + ". Ratio = predicted/measured (> 1: the model is slower). PyTorch's kernels, not vLLM's: cuBLAS "
        "GEMMs, `torch._scaled_mm` fp8 without activation quantization, SDPA without paged KV, one "
        "kernel launch in every timing (vLLM's CUDA graphs hide most of it).",
        "",
        "## Every row",
        "",
        *table(now),
        "",
        "## Large shapes only (GEMMs of ≥ 512 token rows, attention over ≥ 2048 tokens)",
        "",
        *table(large),
        "",
    ]
    out = ROOT / "benchmarks" / "results" / f"device_ops_{args.tier}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
