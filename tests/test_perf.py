"""Physical sanity of the performance model and its use by the option table."""

from __future__ import annotations

import numpy as np
import pytest

from planner.loader import builtin_catalog
from planner.options import build_option_table
from planner.perf import ReplicaModel, structural_reason
from planner.problem import GPU, LLM, PerfParams
from tests.conftest import make_instance

P = PerfParams()


def llm(mid: str) -> LLM:
    return LLM.model_validate(builtin_catalog().models[mid])


def gpu(gid: str) -> GPU:
    return GPU.model_validate(builtin_catalog().gpus[gid])


def test_memory_fit_by_hand() -> None:
    # Llama-3.1-70B bf16: 70.6 B × 2 bytes = 141 GB. One 80 GB H100 (72 GB usable at 0.9): no.
    # TP2: 70.6 GB of weights + reserve > 72 GB: no. TP4: 35.3 GB + reserve: yes.
    m, g = llm("llama-3.1-70b"), gpu("h100-80gb")
    assert not ReplicaModel(m, g, 1, 1, P).fit().fits
    assert not ReplicaModel(m, g, 2, 1, P).fit().fits
    assert ReplicaModel(m, g, 4, 1, P).fit().fits
    assert ReplicaModel(m, g, 2, 2, P).fit().fits  # same 4 GPUs, split by pipeline


def test_kv_capacity_formula() -> None:
    # Llama-3.1-8B on one H100: KV bytes/token = 2 × 32 layers × 8 KV heads × 128 × 2 B = 131,072 B.
    m, g = llm("llama-3.1-8b"), gpu("h100-80gb")
    fit = ReplicaModel(m, g, 1, 1, P).fit()
    expected = int((fit.usable_gb_per_gpu - fit.weights_gb_per_gpu - fit.reserve_gb_per_gpu) * 1e9 / 131_072)
    assert fit.kv_capacity_tokens == expected
    assert 300_000 < fit.kv_capacity_tokens < 500_000


def test_fp8_halves_weights() -> None:
    g = gpu("h100-80gb")
    bf16 = ReplicaModel(llm("llama-3.1-70b"), g, 2, 1, P).fit()
    fp8 = ReplicaModel(llm("llama-3.1-70b-fp8"), g, 2, 1, P).fit()
    assert fp8.weights_gb_per_gpu == pytest.approx(bf16.weights_gb_per_gpu / 2, rel=0.02)
    assert fp8.fits and not bf16.fits


def test_monotone_in_batch_and_tokens() -> None:
    rm = ReplicaModel(llm("llama-3.1-8b"), gpu("a100-80gb"), 1, 1, P)
    b = np.array([1.0, 8.0, 32.0, 128.0])
    steps = rm.decode_step_time(b, np.full(4, 1000.0))
    assert np.all(np.diff(steps) > 0)
    # Memory-bound decode: 32 requests cost far less than 32 single steps.
    assert steps[2] < 4 * steps[0]
    prompts = np.array([128.0, 512.0, 2048.0, 8192.0])
    pre = rm.prefill_work(prompts)
    assert np.all(np.diff(pre) > 0)
    # Compute-bound prefill of 2048 tokens ≈ 2 · 8 B · 2048 FLOP / (312 TFLOP/s · η): tens of ms.
    assert 0.03 < pre[2] < 0.5


def test_tp_speeds_up_large_model_prefill() -> None:
    m, g = llm("llama-3.1-70b"), gpu("h100-80gb")
    t4 = ReplicaModel(m, g, 4, 1, P).prefill_work(np.array([2048.0]))[0]
    t8 = ReplicaModel(m, g, 8, 1, P).prefill_work(np.array([2048.0]))[0]
    assert t8 < t4 < 2 * t8 * 1.5


def test_pp_does_not_shorten_one_request() -> None:
    m, g = llm("llama-3.1-70b"), gpu("h100-80gb")
    ctx = np.array([[1000.0]])
    tp4 = ReplicaModel(m, g, 4, 1, P).decode_step_time(np.array([[1.0]]), ctx)[0, 0]
    pp2 = ReplicaModel(m, g, 2, 2, P).decode_step_time(np.array([[1.0]]), ctx)[0, 0]
    assert pp2 >= tp4  # same 4 GPUs: a pipeline adds hops and does not split a step's weights reads


def test_tp_must_divide_heads() -> None:
    assert "does not divide" in structural_reason(llm("qwen2.5-7b"), gpu("h100-80gb"), 8, 1)
    assert structural_reason(llm("qwen2.5-7b"), gpu("h100-80gb"), 4, 1) == ""


def quick_doc(**over: object) -> dict:
    doc = {
        "models": ["llama-3.1-8b", "qwen2.5-7b"],
        "gpus": ["l4", "h100-80gb"],
        "parallelism": {"tp": [1, 2, 8], "pp": [1]},
        "max_utilization": 0.85,
        "query_types": [
            {
                "id": "chat",
                "arrival_rate": 5,
                "input_tokens": 1000,
                "output_tokens": 200,
                "slo": {"ttft_s": 2.0, "tpot_s": 0.08, "e2e_s": 25},
            }
        ],
    }
    doc.update(over)
    return doc


def test_table_rows_meet_slo_when_eligible() -> None:
    table = build_option_table(make_instance(quick_doc()))
    assert table.pairs, "some option must be eligible"
    for r in table.rows:
        if r.eligible:
            assert r.throughput_rps and r.throughput_rps > 0
            assert r.ttft_s <= 2.0 and r.tpot_s <= 0.08 and r.e2e_s <= 25
        elif r.candidate:
            assert r.reason.startswith("misses SLO")
    reasons = {r.reason for r in table.rows if not r.candidate}
    assert any("does not divide 28 attention heads" in x for x in reasons)  # qwen2.5-7b at tp 8


def test_tighter_slo_lowers_throughput() -> None:
    loose = build_option_table(make_instance(quick_doc()))
    tight_doc = quick_doc()
    tight_doc["query_types"] = [{**tight_doc["query_types"][0], "slo": {"tpot_s": 0.02}}]
    tight = build_option_table(make_instance(tight_doc))
    for r in tight.rows:
        other = loose.row(r.option, r.query_type)
        if r.eligible and other is not None and other.eligible:
            assert r.throughput_rps <= other.throughput_rps * (1 + 1e-9)


def test_performance_entry_overrides_prediction() -> None:
    entry = {
        "model": "llama-3.1-8b",
        "gpu": "l4",
        "tp": 1,
        "pp": 1,
        "query_type": "chat",
        "throughput_rps": 0.123,
        "ttft_s": 0.5,
    }
    table = build_option_table(make_instance(quick_doc(performance=[entry])))
    row = next(r for r in table.rows if r.option.key == "llama-3.1-8b/l4/tp1/pp1")
    assert row.source == "measured" and row.throughput_rps == 0.123 and row.ttft_s == 0.5
    predicted = build_option_table(make_instance(quick_doc())).row(row.option, "chat")
    assert predicted is not None and row.tpot_s == predicted.tpot_s  # omitted figures keep the model's


def test_table_mode_uses_only_the_table() -> None:
    entry = {
        "model": "llama-3.1-8b",
        "gpu": "l4",
        "query_type": "chat",
        "throughput_rps": 2.0,
        "ttft_s": 0.5,
        "tpot_s": 0.05,
        "e2e_s": 10.5,
    }
    table = build_option_table(make_instance(quick_doc(performance_mode="table", performance=[entry])))
    assert [(r.option.key, r.eligible) for r in table.rows] == [("llama-3.1-8b/l4/tp1/pp1", True)]
