"""Reading the Vidur profiling data (microsoft/vidur): which files measure which tier, and the readers.

Layout under the data directory: ``compute/<gpu>/<org>/<model>/mlp.csv`` (per-layer operator
medians, ms), ``legacy-2024-05/a100/attention.csv``, ``network/<node>/all_reduce.csv`` and
``send_recv.csv``, ``legacy-2024-05/<gpu>/cpu_overheads.csv``. Every failure is one
:class:`~planner.errors.InputError` naming the file and the column. The fits: :mod:`planner.perf.fit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from planner.errors import InputError
from planner.perf.ops import MS, kv_bytes_per_token

VIDUR_GPUS: dict[str, str] = {"a100": "a100-80gb", "h100": "h100-80gb", "a40": "a40"}
VIDUR_NODES: dict[str, str] = {"a100-80gb": "a100_dgx", "h100-80gb": "h100_dgx", "a40": "a40_pairwise_nvlink"}
PCIE_NODE, PCIE_WORKERS = "a100_pairwise_nvlink", 4
ATTENTION_FILE, ATTENTION_TIER = "legacy-2024-05/a100/attention.csv", "a100-80gb"
CPU_FILES: dict[str, str] = {
    "a100-80gb": "legacy-2024-05/a100/cpu_overheads.csv",
    "a40": "legacy-2024-05/a40/cpu_overheads.csv",
}
MAX_FIT_TOKENS = 4096  # compute rows above this token count are not read (load_vidur_gpu)

GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = ("input_layernorm", "attn_rope", "mlp_act", "add", "emb")  # order of layer_shapes' ew
LAYER_OPS = (  # the nine per-layer ops Vidur measures (the embedding is once per forward pass)
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
SHAPE_COLS = (
    "n_head",
    "n_kv_head",
    "n_embd",
    "n_expanded_embd",
    "vocab_size",
    "num_tokens",
    "num_tensor_parallel_workers",
)


def read_table(
    path: Path, required: Sequence[str], label: str | None = None, may_be_empty: Sequence[str] = ()
) -> pd.DataFrame:
    """A CSV whose ``required`` columns exist, are numeric and finite; at least one row. Cells of the
    ``may_be_empty`` columns may be empty (NaN), never text."""
    name = label or str(path)
    if not path.is_file():
        raise InputError(name, "-", "file not found" if not path.exists() else "is not a file")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(name, "-", "empty file (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(name, "-", f"not a valid CSV file: {str(exc).splitlines()[0]}") from None
    for col in required:
        if col not in df.columns:
            raise InputError(name, col, "required column is missing")
    if df.empty:
        raise InputError(name, "-", "no data rows")
    for col in required:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(float, na_value=np.nan))
        if col in may_be_empty:
            bad &= df[col].notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise InputError(name, col, f"non-numeric value {df[col].iloc[row]!r} in data row {row + 1}")
        df[col] = values.astype(float)
    return df


def _bool_column(df: pd.DataFrame, col: str, name: str) -> np.ndarray:
    raw = df[col].astype(str).str.strip().str.lower()
    ok = raw.isin(["true", "false", "1", "0", "1.0", "0.0"])
    if not ok.all():
        row = int(np.argmax(~ok.to_numpy()))
        raise InputError(name, col, f"not a boolean: {df[col].iloc[row]!r} in data row {row + 1}")
    return raw.isin(["true", "1", "1.0"]).to_numpy()


def read_vidur_compute(path: Path, label: str | None = None) -> pd.DataFrame:
    """One ``mlp.csv``: shape columns plus one column per op (median seconds), duplicates merged."""
    name = label or str(path)
    read_table(path, (), name)  # existence, emptiness and CSV syntax first
    ops = (*LAYER_OPS, "emb")
    # The GEMMs are required; an architecture may lack an element-wise op (phi-2 has one norm).
    present = ("emb", *(op for op in LAYER_OPS if f"time_stats.{op}.median" in pd.read_csv(path, nrows=0).columns))
    df = read_table(path, (*SHAPE_COLS, *(f"time_stats.{op}.median" for op in (*GEMM_OPS, *present))), name)
    if "use_gated_mlp" not in df.columns:
        raise InputError(name, "use_gated_mlp", "required column is missing")
    out = pd.DataFrame({c: df[c] for c in SHAPE_COLS})
    out["gated"] = _bool_column(df, "use_gated_mlp", name)
    for op in ops:
        out[op] = df[f"time_stats.{op}.median"] * MS if op in present else np.nan
    if (out[list(ops)] <= 0).any().any():
        raise InputError(name, "-", "operator times must be > 0 ms")
    keys = [*SHAPE_COLS, "gated"]
    return out.groupby(keys, as_index=False, sort=True).median()


def vidur_compute_files(data_dir: Path) -> dict[str, list[Path]]:
    """``compute/<gpu>/<org>/<model>/mlp.csv`` files by GPU directory, sorted."""
    out: dict[str, list[Path]] = {}
    for p in sorted((data_dir / "compute").glob("*/*/*/mlp.csv")):
        out.setdefault(p.parts[-4], []).append(p)
    return out


def load_vidur_gpu(data_dir: Path, gpu_dir: str) -> pd.DataFrame:
    """Every model of one GPU directory, with a ``model`` column (the file's model directory)."""
    frames = []
    for p in vidur_compute_files(data_dir).get(gpu_dir, []):
        df = read_vidur_compute(p, str(p.relative_to(data_dir)))
        df.insert(0, "model", p.parts[-2])
        frames.append(df)
    if not frames:
        raise InputError(str(data_dir), "-", f"no compute/{gpu_dir}/*/*/mlp.csv files")
    df = pd.concat(frames, ignore_index=True)
    return df[df.num_tokens <= MAX_FIT_TOKENS].reset_index(drop=True)


@dataclass(frozen=True)
class AttentionData:
    """Legacy Vidur attention rows as model inputs (per GPU: n_q/t heads, n_kv/t KV heads)."""

    chunk: np.ndarray
    cached: np.ndarray
    decodes: np.ndarray
    context: np.ndarray
    seconds: np.ndarray
    is_prefill: np.ndarray
    nq_gpu: float
    head_dim: float
    kv_bytes_tok_l: float


def read_attention(path: Path, label: str | None = None) -> AttentionData:
    name = label or str(path)
    cols = (
        "time_stats.attn_prefill.median",
        "time_stats.attn_decode.median",
        "n_embd",
        "n_q_head",
        "n_kv_head",
        "num_tensor_parallel_workers",
        "batch_size",
        "prefill_chunk_size",
        "kv_cache_size",
    )
    df = read_table(path, cols, name, may_be_empty=cols[:2])
    if "is_prefill" not in df.columns:
        raise InputError(name, "is_prefill", "required column is missing")
    pre = _bool_column(df, "is_prefill", name)
    shape = df[["n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers"]].drop_duplicates()
    if len(shape) != 1:
        raise InputError(name, "n_embd", "expected one attention shape per file")
    h, nq, nkv, tp = (float(v) for v in shape.iloc[0])
    d = h / nq
    secs = np.where(pre, df["time_stats.attn_prefill.median"], df["time_stats.attn_decode.median"]) * MS
    keep = np.isfinite(secs) & (secs > 0)
    f = df[keep]
    p = pre[keep]
    return AttentionData(
        chunk=np.where(p, f.prefill_chunk_size, 0.0),
        cached=np.where(p, f.kv_cache_size, 0.0),
        decodes=np.where(p, 0.0, f.batch_size),
        context=np.where(p, 0.0, f.kv_cache_size),
        seconds=secs[keep],
        is_prefill=p,
        nq_gpu=nq / tp,
        head_dim=d,
        kv_bytes_tok_l=kv_bytes_per_token(nkv, d, tp, 2.0),  # the profiled runs' KV cache is 16-bit
    )


@dataclass(frozen=True)
class Collective:
    """Measured collective times: bytes, workers, seconds."""

    size: np.ndarray
    workers: np.ndarray
    seconds: np.ndarray


def read_collective(path: Path, kind: str, devices_per_node: int | None, label: str | None = None) -> Collective:
    """Rows of ``all_reduce.csv`` (intra-node: workers == devices_per_node) or ``send_recv.csv``."""
    name = label or str(path)
    df = read_table(path, (f"time_stats.{kind}.median", "num_workers", "size", "devices_per_node"), name)
    if devices_per_node is None:
        df = df[(df.num_workers == df.devices_per_node) & (df.num_workers > 1)]
    else:
        df = df[(df.devices_per_node == devices_per_node) & (df.num_workers == 2)]
    df = df.groupby(["num_workers", "size"], as_index=False, sort=True)[f"time_stats.{kind}.median"].median()
    secs = df[f"time_stats.{kind}.median"].to_numpy(float) * MS
    keep = (secs > 0) & (df["size"].to_numpy(float) > 0)
    return Collective(df["size"].to_numpy(float)[keep], df.num_workers.to_numpy(float)[keep], secs[keep])
