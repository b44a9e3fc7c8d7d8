"""Refitting to AIConfigurator tables (planner.perf.aic_fit) and vLLM's custom all-reduce path in the
model: a synthetic database made here from the model's own formulas at known factors must give
those factors back; the custom path is taken exactly where vLLM takes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.loader import builtin_catalog
from planner.perf import ReplicaModel
from planner.perf.aic_fit import calibrate_aiconfigurator, calibrate_tier
from planner.perf.aiconfigurator import load_system
from planner.perf.calibration import Calibration, TierCalibration
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
