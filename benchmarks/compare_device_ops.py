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
from planner.perf import elementwise_time  # noqa: E402
from planner.perf.aic_fit import predict_attention_rows, predict_gemm  # noqa: E402
from planner.perf.calibration import effective_params  # noqa: E402
from planner.perf.fit import Hardware  # noqa: E402
from planner.perf.ops import ACT_BYTES  # noqa: E402
from planner.problem import GPU, PerfParams  # noqa: E402


def predict(df: pd.DataFrame, gpu: GPU, q: PerfParams) -> np.ndarray:
    """Each row's time under the factors ``q`` (seconds): the GEMM and attention predictions the
    AIConfigurator refit uses (:mod:`planner.perf.aic_fit`), element-wise ops by their bytes."""
    hw, p = Hardware.of(gpu), q.model_dump()
    out = np.full(len(df), np.nan)
    for kind in ("gemm_bf16", "gemm_fp8"):
        sel = (df.kind == kind).to_numpy()
        out[sel] = predict_gemm(df[sel], p, hw, fp8=gpu if kind == "gemm_fp8" else None)
    sel = df.kind.str.endswith("_attention").to_numpy()
    pre = (df.kind[sel] == "prefill_attention").to_numpy()
    att = df[sel]
    rows = pd.DataFrame(
        {
            "chunk": np.where(pre, att.tokens, 0.0),
            "decodes": np.where(pre, 0.0, att.batch),
            "context": np.where(pre, 0.0, att.context),
            "heads": att.heads.to_numpy(float),
            "kv_heads": att.kv_heads.to_numpy(float),
            "prefill": pre,
            "seconds": att.seconds.to_numpy(float),
        }
    )
    out[sel] = predict_attention_rows(rows, p, hw)
    # Element-wise, bytes per token: RMSNorm reads and writes the hidden state, the residual add
    # reads two and writes one, SiLU·mul reads gate and up and writes one.
    bw = hw.bandwidth
    for kind, width, eff, lat in (
        ("rmsnorm", 2, q.norm_efficiency, q.norm_latency_s),
        ("add", 3, q.add_efficiency, q.add_latency_s),
        ("silu_mul", 3, q.act_efficiency, q.act_latency_s),
    ):
        r = df[df.kind == kind]
        out[(df.kind == kind).to_numpy()] = elementwise_time(ACT_BYTES * width * r.m * r.n, bw, eff, lat)
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
