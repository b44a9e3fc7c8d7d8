"""AIConfigurator database reader: layout, versions, units, kernel choice, bad rows (a tiny fixture
database written here in the real layout; neither the network nor the aiconfigurator package)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from planner.errors import InputError
from planner.loader import builtin_catalog
from planner.perf.aiconfigurator import (
    INSTALL_HINT,
    SYSTEM_GPUS,
    UNMAPPED_SYSTEMS,
    compare_with_catalog,
    list_systems,
    load_system,
    locate_database,
    newest_version,
    read_gemm,
    version_key,
)
from planner.problem import GPU

pytest.importorskip("pyarrow")

SYSTEM = "h100_sxm"
SPEC_YAML = """\
data_dir: data/h100_sxm
gpu:
  mem_bw: 3350000000000
  mem_capacity: 85899345920
  bfloat16_tc_flops: 989000000000000
  fp8_tc_flops: 1978000000000000
node:
  num_gpus_per_node: 8
  inter_node_bw: 50000000000
  intra_node_bw: 450000000000
misc:
  nccl_version: '2.9.0'
"""


def _gemm(dtype: str, m: int, n: int, k: int, kernel: str, ms: float) -> dict[str, Any]:
    return {"kernel_source": kernel, "gemm_dtype": dtype, "m": m, "n": n, "k": k, "latency": ms}


def _attn(b: int, isl: int, step: int, kv: str, kernel: str, ms: float, window: int = 0) -> dict[str, Any]:
    return {
        "kernel_source": kernel,
        "batch_size": b,
        "isl": isl,
        "num_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "kv_cache_dtype": kv,
        "step": step,
        "window_size": window,
        "latency": ms,
    }


def _ar(kernel: str, gpus: int, elements: int, ms: float) -> dict[str, Any]:
    return {
        "kernel_source": kernel,
        "allreduce_dtype": "bfloat16",
        "num_gpus": gpus,
        "message_size": elements,
        "latency": ms,
    }


def _nccl(op: str, dtype: str, gpus: int, elements: int, ms: float) -> dict[str, Any]:
    return {
        "op_name": op,
        "kernel_source": "NCCL",
        "nccl_dtype": dtype,
        "num_gpus": gpus,
        "message_size": elements,
        "latency": ms,
    }


# The newer GEMM version (0.14.0) is what must be read; 0.9.0 sorts after it as a string.
GEMM_NEW = [
    _gemm("bfloat16", 16, 4096, 4096, "torch.nn.functional.linear", 0.05),
    _gemm("bfloat16", 1, 4096, 4096, "torch.nn.functional.linear", 0.02),
    _gemm("fp8", 16, 4096, 4096, "CutlassFP8ScaledMMLinearKernel", 0.03),
    # Both block kernels measured this shape: DeepGEMM (vLLM's default) is taken...
    _gemm("fp8_block", 16, 4096, 4096, "CutlassFp8BlockScaledMMKernel", 0.09),
    _gemm("fp8_block", 16, 4096, 4096, "DeepGemmFp8BlockScaledMMKernel", 0.04),
    # ...and CUTLASS where DeepGEMM has no row.
    _gemm("fp8_block", 16, 4096, 2048, "CutlassFp8BlockScaledMMKernel", 0.07),
    _gemm("nvfp4", 16, 4096, 4096, "FlashInferCuteDslNvFp4LinearKernel", 0.01),  # not read
]
GEMM_OLD = [_gemm("bfloat16", 16, 4096, 4096, "vllm_default", 9.0)]
CONTEXT = [
    _attn(1, 2048, 0, "bfloat16", "vllm_flash_attn_fa4", 0.30),
    _attn(1, 2048, 0, "bfloat16", "vllm_flash_attn_fa3", 0.25),
    _attn(1, 2048, 0, "bfloat16", "vllm_flash_attn_fa3", 0.5, window=128),  # sliding window: dropped
    _attn(2, 512, 0, "fp8", "vllm_flash_attn_fa3", 0.08),
]
GENERATION = [
    _attn(8, 1, 1023, "bfloat16", "vllm_flash_attn_fa3", 0.02),
    _attn(8, 1, 1023, "bfloat16", "vllm_flash_attn_fa4", 0.01),
]
CUSTOM = [
    _ar("vLLM_custom_graph", 2, 1024, 0.004),
    _ar("vLLM_custom_eager", 2, 1024, 0.020),  # eager mode: dropped
    _ar("vLLM_custom_graph", 8, 1048576, 0.030),
]
NCCL = [
    # Three runs of one point: their median (0.010 ms) is kept.
    _nccl("all_reduce", "half", 2, 1024, 0.012),
    _nccl("all_reduce", "half", 2, 1024, 0.010),
    _nccl("all_reduce", "half", 2, 1024, 0.009),
    _nccl("all_reduce", "int8", 2, 1024, 0.005),  # int8: dropped
    _nccl("all_gather", "half", 2, 1024, 0.007),  # not an all-reduce: dropped
]
NCCL_OLD = [_nccl("all_reduce", "half", 2, 1024, 0.5)]


def _write(path: Path, rows: list[dict[str, Any]] | pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    df.to_parquet(path, index=False)
    return path


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A systems/ directory with one system, two GEMM versions and two NCCL versions."""
    root = tmp_path / "systems"
    root.mkdir()
    (root / f"{SYSTEM}.yaml").write_text(SPEC_YAML)
    (root / "query_versions.yaml").write_text("schema_version: 1\n")  # not a system: no data dir
    data = root / "data" / SYSTEM
    _write(data / "gemm/vllm/0.14.0/gemm_perf.parquet", GEMM_NEW)
    _write(data / "gemm/vllm/0.9.0/gemm_perf.parquet", GEMM_OLD)
    (data / "gemm/vllm/0.14.0/collection_meta.yaml").write_text("tables:\n  gemm_perf:\n    status: complete\n")
    _write(data / "attention/vllm/0.14.0/context_attention_perf.parquet", CONTEXT)
    _write(data / "attention/vllm/0.14.0/generation_attention_perf.parquet", GENERATION)
    _write(data / "comm/vllm/0.19.0/custom_allreduce_perf.parquet", CUSTOM)
    _write(data / "comm/nccl/2.27.3/nccl_perf.parquet", NCCL)
    _write(data / "comm/nccl/2.9.0/nccl_perf.parquet", NCCL_OLD)
    return root


# ------------------------------------------------------------------------------------------------
def test_version_order_is_release_order() -> None:
    names = ["0.9.0", "0.14.0", "1.3.0rc20", "1.3.0", "1.3.0rc3", "0.5.6.post2", "0.5.6", "2.23", "2.27.3", "0.1.dev5"]
    ordered = sorted(names, key=lambda v: version_key(v))  # type: ignore[arg-type, return-value]
    expected = ["0.1.dev5", "0.5.6", "0.5.6.post2", "0.9.0", "0.14.0", "1.3.0rc3", "1.3.0rc20", "1.3.0", "2.23"]
    assert ordered == [*expected, "2.27.3"]
    assert version_key("2.27") == version_key("2.27.0")
    assert version_key("latest") is None


def test_newest_version_needs_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "0.9.0/t.parquet", GEMM_OLD)
    _write(tmp_path / "0.14.0/other.parquet", GEMM_OLD)  # newer, but without the table
    (tmp_path / "notes").mkdir()
    assert newest_version(tmp_path, "t.parquet") == "0.9.0"
    assert newest_version(tmp_path / "absent", "t.parquet") is None


def test_gemm_newest_version_units_and_kernels(database: Path) -> None:
    data = load_system(database, SYSTEM)
    assert data.sources["gemm"].version == "0.14.0"
    assert data.sources["gemm"].status == "complete"
    g = data.gemm
    assert list(g.columns) == ["dtype", "m", "n", "k", "kernel", "seconds", "source"]
    assert set(g["source"]) == {"h100_sxm/gemm/vllm/0.14.0/gemm_perf.parquet"}
    assert set(g["dtype"]) == {"bfloat16", "fp8", "fp8_block"}  # nvfp4 is not read
    bf16 = g[(g.dtype == "bfloat16") & (g.m == 16)].iloc[0]
    assert bf16.seconds == pytest.approx(5e-5)  # 0.05 ms
    assert bf16.kernel == "torch.nn.functional.linear"
    block = g[g.dtype == "fp8_block"].set_index("k")
    assert block.loc[4096, "kernel"] == "DeepGemmFp8BlockScaledMMKernel"
    assert block.loc[4096, "seconds"] == pytest.approx(4e-5)
    assert block.loc[2048, "kernel"] == "CutlassFp8BlockScaledMMKernel"
    assert block.loc[2048, "seconds"] == pytest.approx(7e-5)
    # Sorted by (dtype, m, n, k).
    assert g[["dtype", "m", "n", "k"]].values.tolist() == [
        ["bfloat16", 1, 4096, 4096],
        ["bfloat16", 16, 4096, 4096],
        ["fp8", 16, 4096, 4096],
        ["fp8_block", 16, 4096, 2048],
        ["fp8_block", 16, 4096, 4096],
    ]


def test_attention_tables(database: Path) -> None:
    data = load_system(database, SYSTEM)
    ctx = data.context_attention
    assert list(ctx.columns) == [
        "batch",
        "isl",
        "heads",
        "kv_heads",
        "head_dim",
        "kv_dtype",
        "kernel",
        "seconds",
        "source",
    ]
    assert len(ctx) == 2  # the sliding-window row is left out, fa3 beats fa4
    row = ctx[ctx.kv_dtype == "bfloat16"].iloc[0]
    assert (row.batch, row.isl, row.heads, row.kv_heads, row.head_dim) == (1, 2048, 32, 8, 128)
    assert row.kernel == "vllm_flash_attn_fa3"
    assert row.seconds == pytest.approx(2.5e-4)
    gen = data.generation_attention.iloc[0]
    assert gen.context == 1023  # the collector's step is the sequence length (isl 1 is inside it)
    assert gen.batch == 8
    assert gen.kernel == "vllm_flash_attn_fa3"
    assert gen.seconds == pytest.approx(2e-5)


def test_allreduce_bytes_graph_mode_and_nccl(database: Path) -> None:
    data = load_system(database, SYSTEM)
    ar = data.allreduce
    assert list(ar.columns) == ["impl", "gpus", "dtype", "elements", "bytes", "kernel", "seconds", "source"]
    custom = ar[ar.impl == "custom"]
    assert custom[["gpus", "elements", "bytes"]].values.tolist() == [[2, 1024, 2048], [8, 1048576, 2097152]]
    assert set(custom["kernel"]) == {"vLLM_custom_graph"}
    assert custom.iloc[0].seconds == pytest.approx(4e-6)
    nccl = ar[ar.impl == "nccl"]
    assert len(nccl) == 1
    assert nccl.iloc[0].bytes == 2048
    assert nccl.iloc[0].seconds == pytest.approx(1e-5)  # median of 0.012, 0.010, 0.009 ms
    assert data.sources["nccl"].version == "2.27.3"  # not 2.9.0
    # The NCCL version AIConfigurator pins in the system file can be asked for.
    pinned = load_system(database, SYSTEM, nccl_version=data.spec.nccl_version)
    assert pinned.sources["nccl"].version == "2.9.0"
    assert pinned.allreduce[pinned.allreduce.impl == "nccl"].iloc[0].seconds == pytest.approx(5e-4)


def test_spec_and_catalog_comparison(database: Path) -> None:
    data = load_system(database, SYSTEM)
    spec = data.spec
    assert spec.memory_bytes_per_s == 3.35e12
    assert spec.fp8_flops == 1.978e15
    assert spec.gpus_per_node == 8
    assert spec.nccl_version == "2.9.0"
    gpu = GPU.model_validate(builtin_catalog().gpus["h100-80gb"])
    cmp = compare_with_catalog(spec, gpu).set_index("figure")
    assert cmp.loc["memory bandwidth", "ratio"] == pytest.approx(1.0)
    assert cmp.loc["bf16 dense", "ratio"] == pytest.approx(989.0 / 989.4)
    # AIC's 450 GB/s is one direction; the catalog's 900 GB/s NVLink4 figure counts both.
    assert cmp.loc["intra-node, both ways", "aic"] == pytest.approx(900.0)
    assert cmp.loc["intra-node, both ways", "ratio"] == pytest.approx(1.0)


def test_same_files_same_output_whatever_the_row_order(database: Path, tmp_path: Path) -> None:
    first = load_system(database, SYSTEM)
    path = database / "data" / SYSTEM / "gemm/vllm/0.14.0/gemm_perf.parquet"
    _write(path, pd.DataFrame(GEMM_NEW).iloc[::-1])
    second = load_system(database, SYSTEM)
    pd.testing.assert_frame_equal(first.gemm, second.gemm)
    pd.testing.assert_frame_equal(first.allreduce, load_system(database, SYSTEM).allreduce)


def test_missing_tables_are_empty_frames(database: Path) -> None:
    (database / "data" / SYSTEM / "attention/vllm/0.14.0/generation_attention_perf.parquet").unlink()
    data = load_system(database, SYSTEM)
    assert data.missing == ("generation_attention",)
    assert data.generation_attention.empty
    assert "context" in data.generation_attention.columns
    assert list_systems(database) == [SYSTEM]


# ------------------------------------------------------------------------------------------------
# Bad rows: one InputError naming the file and the column
# ------------------------------------------------------------------------------------------------
def _set(col: str, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(df: pd.DataFrame) -> pd.DataFrame:
        # A text value makes the whole column text (as a CSV-born parquet would be); a number, float.
        df[col] = df[col].astype(str if isinstance(value, str) or value is None else float)
        df.loc[1, col] = value
        return df

    return apply


@pytest.mark.parametrize(
    ("mutate", "column", "message"),
    [
        (lambda df: df.drop(columns="latency"), "latency", "required column is missing"),
        (lambda df: df.drop(columns="m"), "m", "required column is missing"),
        (_set("latency", "fast"), "latency", "non-numeric value 'fast' in data row 2"),
        (_set("latency", np.nan), "latency", "missing value in data row 2"),
        (_set("latency", np.inf), "latency", "non-numeric value inf in data row 2"),
        (_set("latency", -0.5), "latency", "must be > 0 ms (got -0.5) in data row 2"),
        (_set("latency", 0.0), "latency", "must be > 0 ms (got 0.0) in data row 2"),
        (_set("m", 1.5), "m", "must be a whole number >= 1 (got 1.5) in data row 2"),
        (_set("gemm_dtype", None), "gemm_dtype", "missing value in data row 2"),
    ],
)
def test_bad_gemm_rows(
    database: Path, mutate: Callable[[pd.DataFrame], pd.DataFrame], column: str, message: str
) -> None:
    path = database / "data" / SYSTEM / "gemm/vllm/0.14.0/gemm_perf.parquet"
    _write(path, mutate(pd.DataFrame(GEMM_NEW)))
    with pytest.raises(InputError) as exc:
        load_system(database, SYSTEM)
    assert exc.value.file == str(path)
    assert exc.value.field == column
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("table", "rows", "column"),
    [
        ("attention/vllm/0.14.0/generation_attention_perf.parquet", GENERATION, "step"),
        ("attention/vllm/0.14.0/context_attention_perf.parquet", CONTEXT, "num_key_value_heads"),
        ("comm/vllm/0.19.0/custom_allreduce_perf.parquet", CUSTOM, "message_size"),
        ("comm/nccl/2.27.3/nccl_perf.parquet", NCCL, "nccl_dtype"),
    ],
)
def test_missing_columns_of_each_table(database: Path, table: str, rows: list[dict[str, Any]], column: str) -> None:
    path = _write(database / "data" / SYSTEM / table, pd.DataFrame(rows).drop(columns=column))
    with pytest.raises(InputError, match="required column is missing") as exc:
        load_system(database, SYSTEM)
    assert (exc.value.file, exc.value.field) == (str(path), column)


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "gemm_perf.parquet"
    path.write_text("m,n,k\n1,2,3\n")
    with pytest.raises(InputError, match="not a readable parquet file") as exc:
        read_gemm(path, "x")
    assert (exc.value.file, exc.value.field) == (str(path), "-")


def test_bad_system_file(database: Path) -> None:
    (database / f"{SYSTEM}.yaml").write_text(SPEC_YAML.replace("mem_bw: 3350000000000", "mem_bw: fast"))
    with pytest.raises(InputError) as exc:
        load_system(database, SYSTEM)
    assert exc.value.field == "gpu.mem_bw"
    assert exc.value.file == str(database / f"{SYSTEM}.yaml")


# ------------------------------------------------------------------------------------------------
# Locating the database
# ------------------------------------------------------------------------------------------------
def test_locate_explicit_directory(database: Path) -> None:
    assert locate_database(database) == database
    assert locate_database(database.parent) == database  # the directory holding systems/


def test_locate_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        locate_database(tmp_path / "nowhere", option="--aic")
    assert exc.value.field == "--aic"
    assert "not an AIConfigurator database" in exc.value.message


def test_locate_without_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError) as exc:
        locate_database(None)
    assert exc.value.field == "--aic-systems"
    assert INSTALL_HINT in exc.value.message
    assert "pip install 'planner[calibrate]'" in exc.value.line()


def test_system_map_names_catalog_tiers() -> None:
    gpus = builtin_catalog().gpus
    assert set(SYSTEM_GPUS.values()) <= set(gpus)
    assert not set(SYSTEM_GPUS) & set(UNMAPPED_SYSTEMS)
