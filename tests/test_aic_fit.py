"""Refitting to AIConfigurator tables (planner.perf.aic_fit) and vLLM's custom all-reduce path in the
model: a synthetic database made here from the model's own formulas at known factors must give
those factors back; the custom path is taken exactly where vLLM takes it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.errors import InputError
from planner.loader import builtin_catalog
from planner.perf import ReplicaModel
from planner.perf.aic_fit import calibrate_aiconfigurator, calibrate_tier, catalog_shapes
from planner.perf.aiconfigurator import load_system
from planner.perf.calibration import (
    Calibration,
    TierCalibration,
    load_calibration,
    read_calibration,
    write_calibration,
)
from planner.perf.fit import Hardware
from planner.perf.ops import allreduce_time, attention_time, gemm_time, kv_bytes_per_token
from planner.problem import GPU, LLM, PerfParams

pytest.importorskip("pyarrow")

CAT = builtin_catalog()
H100 = GPU.model_validate(CAT.gpus["h100-80gb"])
L40S = GPU.model_validate(CAT.gpus["l40s"])
LLAMA8 = LLM.model_validate(CAT.models["llama-3.1-8b"])
TRUE = {
    "compute_efficiency": 0.8,
    "gemm_half_tiles": 4.0,
    "gemm_overlap": 2.0,
    "memory_efficiency": 0.85,
    "kernel_latency_s": 4e-6,
    "attention_efficiency": 0.55,
    "context_attention_efficiency": 0.6,
    "attention_half_blocks": 40.0,
    "kv_efficiency": 0.8,
    "attention_latency_s": 1.2e-5,
}
ATT = tuple(TRUE[f] for f in ("attention_efficiency", "context_attention_efficiency", "attention_half_blocks",
                               "kv_efficiency", "attention_latency_s"))  # fmt: skip
AR = {2: (8e-6, 0.6), 4: (1.1e-5, 0.7), 8: (1.8e-5, 0.8)}  # NCCL α, η per ring size
CUSTOM = {2: (4e-6, 0.45), 4: (5e-6, 0.55), 8: (6e-6, 0.7)}


def _database(tmp_path: Path) -> Path:
    """h100_sxm tables computed by the model's formulas at TRUE, AR and CUSTOM (latency in ms)."""
    hw = Hardware.of(H100)
    root = tmp_path / "systems"
    data = root / "data" / "h100_sxm"
    root.mkdir(parents=True)
    (root / "h100_sxm.yaml").write_text(
        "gpu: {mem_bw: 3350000000000, mem_capacity: 85000000000, bfloat16_tc_flops: 989000000000000}\n"
        "node: {num_gpus_per_node: 8, intra_node_bw: 450000000000, inter_node_bw: 50000000000}\n"
    )
    g = []
    for m in (1, 4, 16, 64, 256, 1024, 4096, 8192):
        for n, k in ((4096, 4096), (14336, 4096), (4096, 14336), (6144, 4096), (1024, 8192)):
            t = gemm_time(np.array(float(m)), k, n, k * n * 2.0, hw.flops, hw.bandwidth, *(
                TRUE[f] for f in ("compute_efficiency", "gemm_half_tiles", "gemm_overlap", "memory_efficiency",
                                  "kernel_latency_s")))  # fmt: skip
            g.append({"kernel_source": "torch.nn.functional.linear", "gemm_dtype": "bfloat16", "m": m, "n": n,
                      "k": k, "latency": float(t) * 1e3})  # fmt: skip
    ctx, gen = [], []
    for heads, kvh in ((8, 2), (32, 8), (64, 8)):
        kv = kv_bytes_per_token(kvh, 128, 1, 2.0)

        def att(chunk: float, dec: float, context: float, h: int = heads, kvb: float = kv) -> float:
            x = (np.array(v) for v in (chunk, 0.0, dec, context))
            return float(attention_time(*x, h, 128, kvb, hw.flops, hw.bandwidth, *ATT))

        common = {"kernel_source": "vllm_flash_attn_fa3", "num_heads": heads, "num_key_value_heads": kvh,
                  "head_dim": 128, "kv_cache_dtype": "bfloat16", "window_size": 0}  # fmt: skip
        for isl in (128, 512, 1024, 2048, 4096, 8192, 16384):
            ctx.append({**common, "batch_size": 1, "isl": isl, "step": 0, "latency": att(isl, 0, 0) * 1e3})
        for b in (1, 8, 64, 256):
            for step in (511, 2047, 8191, 32767):
                gen.append({**common, "batch_size": b, "isl": 1, "step": step, "latency": att(0, b, step) * 1e3})
    ar, nccl = [], []
    ref = H100.interconnect_gbs / 2 * 1e9  # type: ignore[operator]
    for w in (2, 4, 8):
        for e in 2 ** np.arange(8, 28, 2):
            b = 2.0 * e
            nccl.append({"op_name": "all_reduce", "kernel_source": "NCCL", "nccl_dtype": "half", "num_gpus": w,
                         "message_size": int(e), "latency": float(allreduce_time(np.array(b), w, AR[w][1] * ref,
                                                                                 AR[w][0])) * 1e3})  # fmt: skip
            ar.append({"kernel_source": "vLLM_custom_graph", "allreduce_dtype": "bfloat16", "num_gpus": w,
                       "message_size": int(e), "latency": float(allreduce_time(np.array(b), w, CUSTOM[w][1] * ref,
                                                                               CUSTOM[w][0])) * 1e3})  # fmt: skip
    for rel, rows in (
        ("gemm/vllm/0.24.0/gemm_perf.parquet", g),
        ("attention/vllm/0.24.0/context_attention_perf.parquet", ctx),
        ("attention/vllm/0.24.0/generation_attention_perf.parquet", gen),
        ("comm/vllm/0.24.0/custom_allreduce_perf.parquet", ar),
        ("comm/nccl/2.27.3/nccl_perf.parquet", nccl),
    ):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(data / rel, index=False)
    return root


def test_refit_recovers_the_factors_the_tables_were_made_with(tmp_path: Path) -> None:
    root = _database(tmp_path)
    params, quality = calibrate_tier(load_system(root, "h100_sxm"), H100, {"context_attention_efficiency": 0.6})
    for key in ("compute_efficiency", "memory_efficiency", "attention_efficiency", "kv_efficiency"):
        assert params[key] == pytest.approx(TRUE[key], rel=0.02), key
    assert params["context_attention_efficiency"] == 0.6  # not measured: kept (≥ η_a)
    for w, suffix in ((2, ""), (4, "_tp4"), (8, "_tp8")):
        lat = "_s" if not suffix else f"{suffix}_s"
        assert params[f"collective_latency{lat}"] == pytest.approx(AR[w][0], rel=0.02)
        assert params[f"network_efficiency{suffix}"] == pytest.approx(AR[w][1], rel=0.02)
        assert params[f"custom_allreduce_latency{lat}"] == pytest.approx(CUSTOM[w][0], rel=0.02)
        assert params[f"custom_allreduce_efficiency{suffix}"] == pytest.approx(CUSTOM[w][1], rel=0.02)
    assert quality["gemm_ape_median"] < 1.0 and quality["attention_ape_median_prefill"] < 1.0
    PerfParams.model_validate(params)  # every refitted value is a valid factor


def test_refit_keeps_the_rest_and_is_deterministic(tmp_path: Path) -> None:
    root = _database(tmp_path)
    base = Calibration(
        description="base.",
        tiers={"h100-80gb": TierCalibration(source="measured: vidur", params={"norm_efficiency": 0.5})},
    )
    gpus = {"h100-80gb": H100}
    a, b = (calibrate_aiconfigurator(base, root, gpus) for _ in range(2))
    assert a == b
    tier = a.tiers["h100-80gb"]
    assert tier.params["norm_efficiency"] == 0.5  # element-wise stays the base's
    assert tier.source.startswith("measured: GEMM, attention and all-reduce from AIConfigurator h100_sxm")
    assert any(k.startswith("aiconfigurator/h100_sxm/gemm/vllm/0.24.0/") for k in a.inputs)


def test_custom_allreduce_where_vllm_uses_it() -> None:
    custom = PerfParams(custom_allreduce_latency_s=5e-6, custom_allreduce_efficiency=0.5)
    nccl = PerfParams()
    one = np.array([1.0, 64.0])
    h100 = ReplicaModel(LLAMA8, H100, 8, 1, custom, "none")
    ref = H100.interconnect_gbs / 2 * 1e9  # type: ignore[operator]
    bytes_ = one * LLAMA8.hidden_size * 2
    assert np.allclose(h100._allreduce(one), allreduce_time(bytes_, 8, 0.5 * ref, 5e-6))
    assert np.all(h100._allreduce(one) < ReplicaModel(LLAMA8, H100, 8, 1, nccl, "none")._allreduce(one))
    # PCIe: vLLM disables the custom kernel beyond two GPUs ("not supported on more than two
    # PCIe-only GPUs"), so L40S TP4 all-reduces through NCCL even with custom factors set.
    assert np.array_equal(
        ReplicaModel(LLAMA8, L40S, 4, 1, custom, "none")._allreduce(one),
        ReplicaModel(LLAMA8, L40S, 4, 1, nccl, "none")._allreduce(one),
    )
    assert ReplicaModel(LLAMA8, L40S, 2, 1, custom, "none").car is not None
    # Past 8 MiB NCCL carries it, and the time never drops at the switch.
    tokens = np.arange(1, 4096, dtype=float)
    t = h100._allreduce(tokens)
    assert np.all(np.diff(t) >= 0)
    big = tokens * LLAMA8.hidden_size * 2 > custom.custom_allreduce_max_bytes
    assert big.any() and np.all(t[big] >= ReplicaModel(LLAMA8, H100, 8, 1, nccl, "none")._allreduce(tokens)[big])


def test_refit_records_the_measured_nccl_curves(tmp_path: Path) -> None:
    root = _database(tmp_path)
    cal = calibrate_aiconfigurator(Calibration(), root, {"h100-80gb": H100})
    curves = cal.tiers["h100-80gb"].nccl_curves
    data = load_system(root, "h100_sxm")
    for tp in (2, 4, 8):
        rows = data.allreduce[(data.allreduce.impl == "nccl") & (data.allreduce.gpus == tp)].sort_values("bytes")
        assert [b for b, _ in curves[str(tp)]] == rows.bytes.tolist()
        assert np.allclose([s for _, s in curves[str(tp)]], rows.seconds.to_numpy())


def _curve_file(tmp_path: Path, points: list[tuple[float, float]]) -> str:
    path = tmp_path / "curve.yaml"
    tc = TierCalibration(source="test", params={}, nccl_curves={"8": points})
    write_calibration(path, Calibration(tiers={"l40s": tc}))
    return str(path)


def test_nccl_curve_is_interpolated_in_log_log_and_scaled_beyond(tmp_path: Path) -> None:
    """A replica's NCCL all-reduce reads the tier's measured curve: the points themselves, the
    log-log line between two points, the smallest point below, and size-proportional beyond."""
    points = [(1e4, 2e-5), (1e5, 1.6e-4), (1e6, 4e-4), (1e7, 3.2e-3)]
    rm = ReplicaModel(LLAMA8, L40S, 8, 1, PerfParams(), _curve_file(tmp_path, points))
    b = np.array([1e4, 1e5, 1e6, 1e7])
    assert np.allclose(rm.nccl_allreduce(b), [s for _, s in points])
    mid = math.sqrt(1e5 * 1e6)
    assert math.isclose(float(rm.nccl_allreduce(np.array([mid]))[0]), math.sqrt(1.6e-4 * 4e-4), rel_tol=1e-12)
    assert float(rm.nccl_allreduce(np.array([10.0]))[0]) == pytest.approx(2e-5)
    assert float(rm.nccl_allreduce(np.array([4e7]))[0]) == pytest.approx(4 * 3.2e-3)
    # more bytes never take less time, through the whole range (tokens: the replica's own path)
    tokens = np.geomspace(1, 8192, 200)
    assert np.all(np.diff(rm._allreduce(tokens)) >= 0)
    # other TP degrees have no curve: α + s/β as before
    rm4 = ReplicaModel(LLAMA8, L40S, 4, 1, PerfParams(), _curve_file(tmp_path, points))
    assert rm4.nccl_curve is None
    # an instance's own all-reduce figures win over the calibration's curve
    own = ReplicaModel(LLAMA8, L40S, 8, 1, PerfParams(network_efficiency=0.5), _curve_file(tmp_path, points))
    assert own.nccl_curve is None


@pytest.mark.parametrize(
    "points",
    [[(1e4, 2e-5)], [(1e5, 2e-5), (1e4, 3e-5)], [(1e4, 0.0), (1e5, 1e-4)]],
    ids=["one-point", "descending", "zero-time"],
)
def test_bad_nccl_curve_is_one_clear_line(tmp_path: Path, points: list[tuple[float, float]]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "format: planner-calibration/1\ntiers:\n  l40s:\n    source: x\n    params: {}\n"
        f"    nccl_curves: {{'8': {[list(p) for p in points]}}}\n"
    )
    with pytest.raises(InputError) as exc:
        read_calibration(path)
    assert exc.value.field.startswith("tiers.l40s.nccl_curves") and "bytes ascending" in exc.value.message


def test_fp8_gemm_adds_the_activation_quantization() -> None:
    """Per-tensor fp8 GEMMs pay 5 bytes per activation element at η_q of the bandwidth, on the
    layer GEMMs only (the LM head stays 16-bit); without η_q the time is the roofline's alone."""
    rows, k, n = np.array([1.0, 512.0, 4096.0]), 4096.0, 6144.0
    args = (rows, k, n, k * n, 1.0e15, 3.35e12, 0.7, 4.0, 2.0, 0.8, 3e-6)
    plain = gemm_time(*args)
    assert np.allclose(gemm_time(*args, quant_eff=0.4) - plain, 5.0 * rows * k / (3.35e12 * 0.4))
    fp8 = LLM.model_validate(CAT.models["llama-3.1-8b-fp8"])
    q = PerfParams(fp8_compute_efficiency=0.6, fp8_quant_efficiency=0.4)
    with_q = ReplicaModel(fp8, H100, 1, 1, q, "none")
    without = ReplicaModel(fp8, H100, 1, 1, PerfParams(fp8_compute_efficiency=0.6), "none")
    assert list(with_q.g_quant) == [0.4, 0.4, 0.4, 0.4, 0.0]
    t = np.array([1.0, 2048.0])
    extra = with_q.components(t, 0 * t, 0 * t, 0 * t)["gemm"] - without.components(t, 0 * t, 0 * t, 0 * t)["gemm"]
    assert np.allclose(extra, with_q.layers_per_stage * 5.0 * t * with_q.g_k[:4].sum() / (with_q.bw * 0.4))
    bf16 = ReplicaModel(LLAMA8, H100, 1, 1, q, "none")
    assert not bf16.g_quant.any()


def test_catalog_shapes_are_the_grid_points_nearest_the_models_layers(tmp_path: Path) -> None:
    data = load_system(_database(tmp_path), "h100_sxm")
    shapes = catalog_shapes(data.gemm, [LLAMA8])
    # Llama-3.1-8B at TP 1: QKV 6144×4096, O 4096×4096, gate+up 28672×4096, down 4096×14336
    assert {(6144, 4096), (4096, 4096), (14336, 4096), (4096, 14336)} <= shapes
    assert shapes <= set(map(tuple, data.gemm[["n", "k"]].drop_duplicates().to_numpy().tolist()))


def test_extrapolated_tiers_say_low_confidence() -> None:
    cal = load_calibration(None)
    assert cal is not None
    for tier, tc in cal.tiers.items():
        assert (tc.confidence == "low") == tc.source.startswith("extrapolated"), tier
    assert cal.tiers["l40s"].confidence == "high" and cal.tiers["l4"].confidence == "low"
