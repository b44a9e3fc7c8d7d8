r"""Reader of NVIDIA AIConfigurator's measured operator database (vLLM tables), in SI units.

What it is
    AIConfigurator (``aiconfigurator-core`` on PyPI, github.com/ai-dynamo/aiconfigurator, licence
    Apache-2.0) ships per-GPU tables of operator latencies that NVIDIA measured by running the
    serving frameworks' own kernels on real hardware: GEMMs over a grid of (m, n, k), attention
    over (batch, sequence length, heads, KV heads, head_dim), and all-reduce over (GPUs, message
    size). The wheel carries them as parquet files under its ``systems/`` directory::

        systems/<system>.yaml                                          datasheet figures
        systems/data/<system>/<family>/<framework>/<version>/<table>.parquet
        systems/data/<system>/comm/nccl/<nccl version>/nccl_perf.parquet

    Only the tables are read here (pandas + pyarrow); the package itself is never imported, so its
    compiled engine is not needed. Install it with ``pip install 'planner[calibrate]'``.

Units (checked against the aiconfigurator-core 0.12.0 sdk, see the notes at each reader)
    latency      milliseconds in every table (``sdk/performance_result.py``: "latency:
                 milliseconds (ms)") → ``seconds``.
    gemm m/n/k   m = token rows, n = output features, k = input features: the sdk builds
                 ``GEMM(name, scale, n, k, quant)`` with n the layer's output width and k = hidden
                 for QKV (``sdk/models/llama.py``) and queries it at m = tokens.
    message_size an ELEMENT count, not bytes: the comm ops take ``num_elements_per_token`` (the
                 model passes the hidden size h, ``sdk/models/gpt.py``: ``CustomAllReduce(...,
                 h, tp_size)``) and ``sdk/perf_database.py`` factors "an element count into x *
                 per_token_elements". ``bytes`` = elements · dtype size (bfloat16/half: 2). The
                 bus bandwidths this gives (H100 SXM, 8 GPUs, NCCL 512 MiB: ≈ 445 GB/s) are
                 NVLink4's; reading it as bytes would halve them.
    generation   one new token per sequence over a KV cache. The collector
                 (``collector/vllm/collect_attn.py`` of github.com/ai-dynamo/aiconfigurator) builds
                 sequences of ``input_len`` tokens, the last one the query, and logs isl = 1,
                 step = input_len; its grid passes input_len = s − 1 for s = 2, 4, … 131072 (hence
                 steps 1, 3, 7, …). So ``context`` = step is the number of KV tokens each query
                 attends, its own included; isl + step would count the new token twice.

Which rows are taken
    * Versions: the newest ``<version>`` directory holding the table, by release ordering
      (0.14.0 > 0.9.0; 1.3.0rc20 < 1.3.0; 2.27.3 > 2.23) — never string order. Each table is
      picked on its own (the comm tables are often newer than the GEMM ones); the chosen
      file is recorded in a ``source`` column (``system/family/framework/version/file``). NCCL
      tables are versioned by NCCL, not by vLLM; the newest is taken unless ``nccl_version`` says
      otherwise (AIConfigurator itself reads the system yaml's ``misc.nccl_version``, kept in
      :class:`SystemSpec`).
    * Kernels: one per row key, the first of the lists below that measured that key, i.e. the
      kernel vLLM runs by default on that GPU:
        - bf16 GEMM: ``torch.nn.functional.linear`` (vLLM's unquantized linear layer, cuBLAS);
          older tables call it ``vllm_default``.
        - fp8 GEMM (per-tensor scales, the checkpoints in the catalog): ``CutlassFP8ScaledMM``
          (vLLM's ``cutlass_scaled_mm`` on sm89+).
        - fp8_block GEMM (128×128 block scales): DeepGEMM (vLLM's default on Hopper/Blackwell
          where the shape suits it), then CUTLASS, FlashInfer, Triton (the fallbacks).
        - attention: FlashAttention 3 on Hopper (vLLM's default there; FA4 rows are a few
          experimental shapes), FlashAttention 2 on Ampere/Ada/Blackwell-workstation for a bf16
          cache, FlashInfer (TRT-LLM-gen kernels on B200-class GPUs; its prefill kernel for
          context attention, its decode kernel for generation) where FlashAttention has no row,
          e.g. an fp8 KV cache on Ada, and Triton last.
        - all-reduce: vLLM's custom all-reduce in CUDA-graph mode (``vLLM_custom_graph``, what
          decode steps replay), and NCCL ``all_reduce`` on 16-bit data. Eager-mode custom rows
          and int8 NCCL rows are dropped.
      A kernel no list names ranks after the listed ones (by name), so a new label is not lost.
      Other GEMM dtypes (nvfp4, ...) and sliding-window attention (``window_size`` > 0) are
      left out.
    * Repeated measurements of one key (some NCCL files hold three runs) are merged by their
      median. Rows are sorted by their key, so the output is the same for the same files.

Bad rows — a missing column, a non-numeric, NaN, infinite or non-positive latency, a shape
that is not a positive whole number — raise one :class:`~planner.errors.InputError` naming the
file and the column.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import InputError
from planner.fileio import read_document
from planner.problem import GPU

PACKAGE = "aiconfigurator_core"
FRAMEWORK = "vllm"
INSTALL_HINT = "pip install 'planner[calibrate]'"
MS = 1e-3

# AIConfigurator system → catalog GPU id, only where the hardware is the same part (memory size
# and form factor included). Systems without a catalog tier, and why, are in UNMAPPED_SYSTEMS.
SYSTEM_GPUS: dict[str, str] = {
    "a100_sxm": "a100-80gb",  # A100-SXM4-80GB (the table's device column)
    "h100_sxm": "h100-80gb",  # H100 80GB HBM3 (SXM5)
    "h200_sxm": "h200",
    "b200_sxm": "b200",
    "l40s": "l40s",
    "l4": "l4",  # no measurements in aiconfigurator-core 0.12.0 (empty data directory)
}
UNMAPPED_SYSTEMS: dict[str, str] = {
    "a100_pcie": "A100 80GB PCIe: the catalog's a100-80gb is the SXM4 part (NVLink, 2.039 TB/s)",
    "a30": "A30: no catalog tier",
    "b300_sxm": "B300: no catalog tier",
    "gb200": "GB200 (Grace-Blackwell, NVL72 rack): differs from the HGX B200 tier (clocks, 4 GPUs/node)",
    "gb300": "GB300: no catalog tier",
    "h100_pcie": "H100 PCIe: the catalog's h100-80gb is the SXM5 part",
    "rtx_pro_6000_server": "RTX PRO 6000 Blackwell Server: no catalog tier",
    "b60": "Intel Arc Pro B60 (XPU, oneCCL): no catalog tier",
}

# Kernels in order of preference per GEMM dtype (module docstring: vLLM's defaults first).
GEMM_KERNELS: dict[str, tuple[str, ...]] = {
    "bfloat16": ("torch.nn.functional.linear", "vllm_default"),
    "fp8": ("CutlassFP8ScaledMMLinearKernel", "vllm_default"),
    "fp8_block": (
        "DeepGemmFp8BlockScaledMMKernel",
        "CutlassFp8BlockScaledMMKernel",
        "FlashInferFp8BlockScaledMMKernel",
        "TritonFp8BlockScaledMMKernel",
        "vllm_default",
    ),
}
_FLASH_ATTN = ("vllm_flash_attn_fa3", "vllm_flash_attn", "vllm_flash_attn_fa2")
CONTEXT_KERNELS: tuple[str, ...] = (
    *_FLASH_ATTN,
    "vllm_flashinfer_trtllmprefill",
    "vllm_flashinfer_fiprefill",
    "vllm_flashinfer",
    "vllm_flashinfer_trtllmdecode",
    "vllm_flashinfer_fidecode",
    "vllm_triton_attn",
    "vllm_flash_attn_fa4",
)
GENERATION_KERNELS: tuple[str, ...] = (
    *_FLASH_ATTN,
    "vllm_flashinfer_trtllmdecode",
    "vllm_flashinfer_fidecode",
    "vllm_flashinfer",
    "vllm_triton_attn",
    "vllm_flash_attn_fa4",
)
CUSTOM_ALLREDUCE_KERNEL = "vLLM_custom_graph"
# Element sizes of the comm dtypes; only 16-bit all-reduces are kept (vLLM reduces bf16 activations).
DTYPE_BYTES: dict[str, int] = {"bfloat16": 2, "half": 2, "float16": 2, "fp16": 2, "float": 4, "float32": 4}
ALLREDUCE_DTYPES = ("bfloat16", "half", "float16", "fp16")

# Table file names by (family, framework directory).
TABLES: dict[str, tuple[str, str, str]] = {
    "gemm": ("gemm", FRAMEWORK, "gemm_perf.parquet"),
    "context_attention": ("attention", FRAMEWORK, "context_attention_perf.parquet"),
    "generation_attention": ("attention", FRAMEWORK, "generation_attention_perf.parquet"),
    "custom_allreduce": ("comm", FRAMEWORK, "custom_allreduce_perf.parquet"),
    "nccl": ("comm", "nccl", "nccl_perf.parquet"),
}

GEMM_COLUMNS = ("dtype", "m", "n", "k", "kernel", "seconds", "source")
CONTEXT_COLUMNS = ("batch", "isl", "heads", "kv_heads", "head_dim", "kv_dtype", "kernel", "seconds", "source")
GENERATION_COLUMNS = ("batch", "context", "heads", "kv_heads", "head_dim", "kv_dtype", "kernel", "seconds", "source")
ALLREDUCE_COLUMNS = ("impl", "gpus", "dtype", "elements", "bytes", "kernel", "seconds", "source")


# ------------------------------------------------------------------------------------------------
# Locating the database and its versions
# ------------------------------------------------------------------------------------------------
def _is_systems_dir(path: Path) -> bool:
    return path.is_dir() and (path / "data").is_dir() and any(path.glob("*.yaml"))


def locate_database(root: Path | None = None, option: str = "--aic-systems") -> Path:
    """The ``systems`` directory of AIConfigurator's database: ``root`` (that directory, or one
    holding it, e.g. the unpacked package), else the installed ``aiconfigurator_core`` package's.
    The package is only located (``importlib.util.find_spec``), never imported: importing it loads
    its compiled engine, which reading parquet files does not need."""
    if root is not None:
        root = Path(root)
        for candidate in (root, root / "systems", root / PACKAGE / "systems"):
            if _is_systems_dir(candidate):
                return candidate
        raise InputError(
            None,
            option,
            f"{root}: not an AIConfigurator database (expected <system>.yaml files and a data/ directory)",
        )
    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "systems"
        if _is_systems_dir(candidate):
            return candidate
    raise InputError(
        None,
        option,
        f"AIConfigurator's database was not found: {INSTALL_HINT}, or pass {option} DIR "
        "(the systems/ directory of an unpacked aiconfigurator-core wheel)",
    )


_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?:[.-]?(a|b|rc)(\d+))?(?:[.-]?post(\d+))?(?:[.-]?dev(\d+))?$")
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}


def version_key(version: str) -> tuple[Any, ...] | None:
    """A sort key giving release order (PEP 440's for the forms the database uses: 0.24.0, 2.23,
    1.3.0rc20, 0.5.6.post2, 0.1.dev19262); None when ``version`` is not a version number.
    Trailing zeros do not count (2.27 == 2.27.0); dev < a < b < rc < release < post."""
    m = _VERSION.match(version.strip().lower())
    if m is None:
        return None
    release = [int(x) for x in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre, pre_n, post, dev = m.group(2), m.group(3), m.group(4), m.group(5)
    # A bare .devN sorts before every pre-release of its release; a release with no pre-release
    # after all of them (rank 3).
    if pre is not None:
        pre_key: tuple[int, int] = (_PRE_RANK[pre], int(pre_n))
    elif dev is not None and post is None:
        pre_key = (-1, 0)
    else:
        pre_key = (3, 0)
    post_key = -1 if post is None else int(post)
    dev_key = math.inf if dev is None else int(dev)
    return (tuple(release), pre_key, post_key, dev_key)


def newest_version(base: Path, filename: str) -> str | None:
    """The newest version directory under ``base`` that holds ``filename`` (None if there is none).
    Directories whose name is not a version number are ignored."""
    if not base.is_dir():
        return None
    found = [(key, d.name) for d in base.iterdir() if (d / filename).is_file() and (key := version_key(d.name))]
    return max(found)[1] if found else None


def list_systems(root: Path) -> list[str]:
    """Systems with a datasheet (``<system>.yaml``) and a data directory, sorted."""
    return sorted(p.stem for p in root.glob("*.yaml") if (root / "data" / p.stem).is_dir())


# ------------------------------------------------------------------------------------------------
# Datasheet figures of a system
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SystemSpec:
    """The ``<system>.yaml`` datasheet figures, SI units (bytes, bytes/s, FLOP/s)."""

    system: str
    memory_bytes: float
    memory_bytes_per_s: float
    bf16_flops: float
    fp8_flops: float | None
    intra_node_bytes_per_s: float  # per GPU, one direction (AIConfigurator's convention)
    inter_node_bytes_per_s: float  # per GPU, one direction
    gpus_per_node: int
    nccl_version: str | None
    data_dir: str  # relative to the systems directory
    file: str


def _optional(doc: Mapping[str, Any], path: str, file: str) -> float | None:
    """The number at dotted ``path`` (None when absent); it must be finite and > 0."""
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if node is None:
        return None
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node) or node <= 0:
        raise InputError(file, path, f"must be a number > 0 (got {node!r})")
    return float(node)


def _required(doc: Mapping[str, Any], path: str, file: str) -> float:
    value = _optional(doc, path, file)
    if value is None:
        raise InputError(file, path, "required field is missing")
    return value


def read_system_spec(root: Path, system: str) -> SystemSpec:
    """Datasheet figures of ``system`` from ``<root>/<system>.yaml``."""
    path = root / f"{system}.yaml"
    file = str(path)
    doc = read_document(path)
    if not isinstance(doc, Mapping):
        raise InputError(file, "-", "a system file must be a mapping with gpu: and node: sections")
    misc = doc.get("misc")
    nccl = misc.get("nccl_version") if isinstance(misc, Mapping) else None
    per_node = _required(doc, "node.num_gpus_per_node", file)
    if per_node != int(per_node):
        raise InputError(file, "node.num_gpus_per_node", f"must be a whole number (got {per_node!r})")
    return SystemSpec(
        system=system,
        memory_bytes=_required(doc, "gpu.mem_capacity", file),
        memory_bytes_per_s=_required(doc, "gpu.mem_bw", file),
        bf16_flops=_required(doc, "gpu.bfloat16_tc_flops", file),
        fp8_flops=_optional(doc, "gpu.fp8_tc_flops", file),
        intra_node_bytes_per_s=_required(doc, "node.intra_node_bw", file),
        inter_node_bytes_per_s=_required(doc, "node.inter_node_bw", file),
        gpus_per_node=int(per_node),
        nccl_version=None if nccl is None else str(nccl),
        data_dir=str(doc.get("data_dir") or f"data/{system}"),
        file=file,
    )


def compare_with_catalog(spec: SystemSpec, gpu: GPU) -> pd.DataFrame:
    """AIConfigurator's datasheet figures next to the catalog's, in the catalog's units, with the
    ratio AIC / catalog. AIConfigurator counts the intra-node link one way; the catalog's
    ``interconnect_gbs`` is the bidirectional headline, so the AIC figure is doubled for it."""
    rows: list[tuple[str, str, float | None, float | None]] = [
        ("memory", "GB", spec.memory_bytes / 1e9, gpu.memory_gb),
        ("memory bandwidth", "TB/s", spec.memory_bytes_per_s / 1e12, gpu.bandwidth_tbs),
        ("bf16 dense", "TFLOP/s", spec.bf16_flops / 1e12, gpu.tflops),
        ("fp8 dense", "TFLOP/s", None if spec.fp8_flops is None else spec.fp8_flops / 1e12, gpu.tflops_fp8),
        ("intra-node, both ways", "GB/s", 2 * spec.intra_node_bytes_per_s / 1e9, gpu.interconnect_gbs),
        ("inter-node per GPU", "GB/s", spec.inter_node_bytes_per_s / 1e9, gpu.internode_gbs),
        ("GPUs per node", "", float(spec.gpus_per_node), float(gpu.gpus_per_node)),
    ]
    out = pd.DataFrame(rows, columns=["figure", "unit", "aic", "catalog"])
    out["ratio"] = out["aic"] / out["catalog"]
    return out


# ------------------------------------------------------------------------------------------------
# Reading one table
# ------------------------------------------------------------------------------------------------
def _read_parquet(path: Path, label: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(label, "-", "file not found" if not path.exists() else "is not a file")
    try:
        df = pd.read_parquet(path)
    except ImportError:
        raise InputError(label, "-", f"reading parquet needs pyarrow: {INSTALL_HINT}") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(label, "-", f"not a readable parquet file: {str(exc).splitlines()[0]}") from None
    if df.empty:
        raise InputError(label, "-", "no data rows")
    # Row numbers in messages and the row masks below are positions: drop any stored index.
    return df.reset_index(drop=True)


def _require(df: pd.DataFrame, label: str, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in df.columns:
            raise InputError(label, col, "required column is missing")


def _first_bad(bad: np.ndarray) -> int:
    return int(np.argmax(bad))


def _numeric(df: pd.DataFrame, col: str, label: str) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = _first_bad(bad)
        raw = df[col].iloc[row]
        raw = raw.item() if isinstance(raw, np.generic) else raw  # 'inf', not np.float64(inf)
        what = "missing value" if pd.isna(raw) else f"non-numeric value {raw!r}"
        raise InputError(label, col, f"{what} in data row {row + 1}")
    return values


def _latency_seconds(df: pd.DataFrame, label: str) -> np.ndarray:
    ms = _numeric(df, "latency", label)
    bad = ms <= 0
    if bad.any():
        row = _first_bad(bad)
        raise InputError(label, "latency", f"must be > 0 ms (got {float(ms[row])!r}) in data row {row + 1}")
    return ms * MS


def _whole(df: pd.DataFrame, col: str, label: str, minimum: int = 1) -> np.ndarray:
    values = _numeric(df, col, label)
    bad = (values < minimum) | (values != np.round(values))
    if bad.any():
        row = _first_bad(bad)
        raise InputError(
            label, col, f"must be a whole number >= {minimum} (got {float(values[row])!r}) in data row {row + 1}"
        )
    return values.astype(np.int64)


def _text(df: pd.DataFrame, col: str, label: str) -> np.ndarray:
    bad = df[col].isna().to_numpy()
    if bad.any():
        raise InputError(label, col, f"missing value in data row {_first_bad(bad) + 1}")
    return df[col].astype(str).to_numpy()


def _choose_kernel(
    df: pd.DataFrame, key: Sequence[str], order: Mapping[str, Sequence[str]] | Sequence[str]
) -> pd.DataFrame:
    """Per key, the rows of the most preferred kernel that measured it (``order``: one list, or one
    per value of the ``dtype`` column), its repeats merged by their median. A kernel no list names
    ranks after the named ones, by name, so the choice never depends on row order."""
    if df.empty:
        return df
    dtypes = df["dtype"] if isinstance(order, Mapping) else pd.Series("", index=df.index)
    ranks = []
    for kernel, dtype in zip(df["kernel"], dtypes, strict=True):
        prefs = order.get(dtype, ()) if isinstance(order, Mapping) else order
        ranks.append(prefs.index(kernel) if kernel in prefs else len(prefs))
    df = df.assign(_rank=ranks)
    cols = [*key, "_rank", "kernel"]
    chosen = df.sort_values(cols, kind="mergesort").drop_duplicates(list(key))[cols]
    df = df.merge(chosen, on=cols).drop(columns="_rank")
    rest = [c for c in df.columns if c not in (*key, "seconds")]
    return df.groupby([*key, *rest], as_index=False, sort=True)["seconds"].median()


def _finish(df: pd.DataFrame, columns: Sequence[str], key: Sequence[str]) -> pd.DataFrame:
    return df.loc[:, list(columns)].sort_values(list(key), kind="mergesort").reset_index(drop=True)


def read_gemm(path: Path, source: str, label: str | None = None) -> pd.DataFrame:
    """``gemm_perf.parquet``: one row per (dtype, m, n, k) with vLLM's default kernel. Columns
    ``dtype`` (bfloat16 | fp8 | fp8_block), ``m`` token rows, ``n`` output features, ``k`` input
    features, ``kernel``, ``seconds``, ``source``."""
    label = label or str(path)
    raw = _read_parquet(path, label)
    _require(raw, label, ("kernel_source", "gemm_dtype", "m", "n", "k", "latency"))
    df = pd.DataFrame(
        {
            "dtype": _text(raw, "gemm_dtype", label),
            "m": _whole(raw, "m", label),
            "n": _whole(raw, "n", label),
            "k": _whole(raw, "k", label),
            "kernel": _text(raw, "kernel_source", label),
            "seconds": _latency_seconds(raw, label),
        }
    )
    df = df[df["dtype"].isin(list(GEMM_KERNELS))]
    key = ["dtype", "m", "n", "k"]
    df = _choose_kernel(df, key, GEMM_KERNELS)
    df["source"] = source
    return _finish(df.reindex(columns=GEMM_COLUMNS), GEMM_COLUMNS, key)


def _attention_frame(raw: pd.DataFrame, label: str, generation: bool) -> pd.DataFrame:
    cols = ["kernel_source", "batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "kv_cache_dtype"]
    _require(raw, label, [*cols, *(["step"] if generation else []), "latency"])
    # Tables collected before sliding windows were measured have no window_size: all full attention.
    window = _whole(raw, "window_size", label, minimum=0) if "window_size" in raw.columns else np.zeros(len(raw))
    isl = _whole(raw, "isl", label)
    df = pd.DataFrame(
        {
            "batch": _whole(raw, "batch_size", label),
            "heads": _whole(raw, "num_heads", label),
            "kv_heads": _whole(raw, "num_key_value_heads", label),
            "head_dim": _whole(raw, "head_dim", label),
            "kv_dtype": _text(raw, "kv_cache_dtype", label),
            "kernel": _text(raw, "kernel_source", label),
            "seconds": _latency_seconds(raw, label),
        }
    )
    if generation:
        # step is the sequence length the kernel ran (module docstring), the new token included.
        df.insert(1, "context", _whole(raw, "step", label))
    else:
        df.insert(1, "isl", isl)
    return df[window == 0]


def read_context_attention(path: Path, source: str, label: str | None = None) -> pd.DataFrame:
    """``context_attention_perf.parquet``, full attention (window 0): ``batch`` sequences of ``isl``
    tokens each, causal, no cached prefix; ``heads``/``kv_heads`` per GPU, ``head_dim``,
    ``kv_dtype``, ``kernel``, ``seconds``, ``source``."""
    label = label or str(path)
    df = _attention_frame(_read_parquet(path, label), label, generation=False)
    key = ["kv_dtype", "heads", "kv_heads", "head_dim", "batch", "isl"]
    df = _choose_kernel(df, key, CONTEXT_KERNELS)
    df["source"] = source
    return _finish(df, CONTEXT_COLUMNS, key)


def read_generation_attention(path: Path, source: str, label: str | None = None) -> pd.DataFrame:
    """``generation_attention_perf.parquet``, full attention: ``batch`` decodes, one new token
    each, over ``context`` KV tokens (the table's step); other columns as :func:`read_context_attention`."""
    label = label or str(path)
    df = _attention_frame(_read_parquet(path, label), label, generation=True)
    key = ["kv_dtype", "heads", "kv_heads", "head_dim", "batch", "context"]
    df = _choose_kernel(df, key, GENERATION_KERNELS)
    df["source"] = source
    return _finish(df, GENERATION_COLUMNS, key)


def _allreduce_frame(raw: pd.DataFrame, label: str, impl: str, dtype_col: str) -> pd.DataFrame:
    dtype = _text(raw, dtype_col, label)
    elements = _whole(raw, "message_size", label)
    df = pd.DataFrame(
        {
            "impl": impl,
            "gpus": _whole(raw, "num_gpus", label),
            "dtype": dtype,
            "elements": elements,
            # message_size counts elements (module docstring): bytes = elements · element size.
            "bytes": elements * np.array([DTYPE_BYTES.get(d, 0) for d in dtype], np.int64),
            "kernel": _text(raw, "kernel_source", label),
            "seconds": _latency_seconds(raw, label),
        }
    )
    return df


def read_custom_allreduce(path: Path, source: str, label: str | None = None) -> pd.DataFrame:
    """``custom_allreduce_perf.parquet``: vLLM's custom all-reduce in CUDA-graph mode. Columns
    ``impl`` ("custom"), ``gpus``, ``dtype``, ``elements``, ``bytes``, ``kernel``, ``seconds``,
    ``source``."""
    label = label or str(path)
    raw = _read_parquet(path, label)
    _require(raw, label, ("kernel_source", "allreduce_dtype", "num_gpus", "message_size", "latency"))
    df = _allreduce_frame(raw, label, "custom", "allreduce_dtype")
    df = df[df["dtype"].isin(ALLREDUCE_DTYPES) & (df["kernel"] == CUSTOM_ALLREDUCE_KERNEL)]
    key = ["impl", "gpus", "bytes"]
    df = _choose_kernel(df, key, (CUSTOM_ALLREDUCE_KERNEL,))
    df["source"] = source
    return _finish(df, ALLREDUCE_COLUMNS, key)


def read_nccl_allreduce(path: Path, source: str, label: str | None = None) -> pd.DataFrame:
    """``nccl_perf.parquet``, its ``all_reduce`` rows on 16-bit data; columns as
    :func:`read_custom_allreduce` with ``impl`` "nccl"."""
    label = label or str(path)
    raw = _read_parquet(path, label)
    _require(raw, label, ("op_name", "kernel_source", "nccl_dtype", "num_gpus", "message_size", "latency"))
    op = _text(raw, "op_name", label)
    df = _allreduce_frame(raw, label, "nccl", "nccl_dtype")
    df = df[df["dtype"].isin(ALLREDUCE_DTYPES) & (op == "all_reduce")]
    key = ["impl", "gpus", "bytes"]
    df = _choose_kernel(df, key, ("NCCL",))
    df["source"] = source
    return _finish(df, ALLREDUCE_COLUMNS, key)


# ------------------------------------------------------------------------------------------------
# One system
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableSource:
    """Where one table came from (``path`` is relative to the systems directory's ``data``)."""

    system: str
    family: str
    framework: str
    version: str
    file: str
    status: str = ""  # collection_meta.yaml's status of the table (complete, partial, ...), if any

    @property
    def path(self) -> str:
        return f"{self.system}/{self.family}/{self.framework}/{self.version}/{self.file}"


@dataclass(frozen=True)
class SystemData:
    """One system's vLLM operator tables in SI units (empty frames where a table is missing)."""

    system: str
    spec: SystemSpec
    gemm: pd.DataFrame
    context_attention: pd.DataFrame
    generation_attention: pd.DataFrame
    allreduce: pd.DataFrame  # custom (graph) and NCCL rows, told apart by ``impl``
    sources: dict[str, TableSource] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # the tables' ``device`` column values (which part was measured)

    @property
    def gpu_id(self) -> str | None:
        """The catalog tier this system is, or None (see :data:`UNMAPPED_SYSTEMS`)."""
        return SYSTEM_GPUS.get(self.system)


def _table_status(version_dir: Path, file: str) -> str:
    """``tables.<table>.status`` of the version's ``collection_meta.yaml``; "" when it says nothing.
    Provenance only: a malformed metadata file must not stop the measurements being read."""
    meta = version_dir / "collection_meta.yaml"
    if not meta.is_file():
        return ""
    try:
        doc = read_document(meta)
    except InputError:
        return ""
    tables = doc.get("tables") if isinstance(doc, Mapping) else None
    entry = tables.get(Path(file).stem) if isinstance(tables, Mapping) else None
    status = entry.get("status") if isinstance(entry, Mapping) else None
    return "" if status is None else str(status)


def _devices(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as pq

        if "device" not in pq.read_schema(path).names:
            return []
        return [str(d) for d in pd.read_parquet(path, columns=["device"])["device"].dropna().unique()]
    except (ImportError, OSError, ValueError):
        return []  # the table reader reports an unreadable file; the device name is a by-product


def load_system(root: Path, system: str, nccl_version: str | None = None) -> SystemData:
    """Every vLLM table of ``system`` under the systems directory ``root`` (see
    :func:`locate_database`), each from its newest version (NCCL: ``nccl_version`` if given)."""
    spec = read_system_spec(root, system)
    data_root = root / spec.data_dir
    readers = {
        "gemm": read_gemm,
        "context_attention": read_context_attention,
        "generation_attention": read_generation_attention,
        "custom_allreduce": read_custom_allreduce,
        "nccl": read_nccl_allreduce,
    }
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, TableSource] = {}
    missing: list[str] = []
    devices: set[str] = set()
    for name, (family, framework, file) in TABLES.items():
        base = data_root / family / framework
        if name == "nccl" and nccl_version is not None:
            version: str | None = nccl_version if (base / nccl_version / file).is_file() else None
        else:
            version = newest_version(base, file)
        if version is None:
            missing.append(name)
            continue
        src = TableSource(system, family, framework, version, file, _table_status(base / version, file))
        path = base / version / file
        frames[name] = readers[name](path, src.path, str(path))
        sources[name] = src
        devices.update(_devices(path))

    def frame(name: str, columns: Sequence[str]) -> pd.DataFrame:
        return frames.get(name, pd.DataFrame(columns=list(columns)))

    comm = [f for f in (frames.get("custom_allreduce"), frames.get("nccl")) if f is not None and not f.empty]
    allreduce = (
        pd.concat(comm, ignore_index=True).sort_values(["impl", "gpus", "bytes"], kind="mergesort", ignore_index=True)
        if comm
        else pd.DataFrame(columns=list(ALLREDUCE_COLUMNS))
    )
    return SystemData(
        system=system,
        spec=spec,
        gemm=frame("gemm", GEMM_COLUMNS),
        context_attention=frame("context_attention", CONTEXT_COLUMNS),
        generation_attention=frame("generation_attention", GENERATION_COLUMNS),
        allreduce=allreduce,
        sources=sources,
        missing=tuple(missing),
        devices=tuple(sorted(devices)),
    )
