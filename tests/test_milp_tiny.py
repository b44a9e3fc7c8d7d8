"""Tiny table-mode instances whose optimum is derived by hand in each test's comment."""

from __future__ import annotations

from typing import Any

import pytest

from planner.checker import check_plan
from planner.options import build_option_table
from planner.solvers import solve
from tests.conftest import make_instance


def base(**over: Any) -> dict[str, Any]:
    """One type (10 req/s), one 10B model, two tiers: g1 $1/h at 3 req/s, g2 $2.5/h at 8 req/s."""
    doc: dict[str, Any] = {
        "period_hours": 1,
        "models": [{"id": "m", "params_b": 10}],
        "gpus": [{"id": "g1", "price_per_hour": 1.0}, {"id": "g2", "price_per_hour": 2.5}],
        "query_types": [
            {"id": "t", "arrival_rate": 10, "input_tokens": 100, "output_tokens": 100, "slo": {"ttft_s": 1.0}}
        ],
        "performance_mode": "table",
        "performance": [
            {
                "model": "m",
                "gpu": "g1",
                "query_type": "t",
                "throughput_rps": 3,
                "ttft_s": 0.5,
                "tpot_s": 0.05,
            },
            {
                "model": "m",
                "gpu": "g2",
                "query_type": "t",
                "throughput_rps": 8,
                "ttft_s": 0.2,
                "tpot_s": 0.02,
            },
        ],
    }
    doc.update(over)
    return doc


def run(doc: dict[str, Any], backend: str, **kw: Any):  # type: ignore[no-untyped-def]
    inst = make_instance(doc)
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table, backend=backend, gap=1e-9, **kw)
    if plan.has_solution:
        report = check_plan(inst, plan, table)
        assert report.ok, report.violations
    return plan


def test_mixed_tiers(backend: str) -> None:
    # 10 req/s: g1 only needs ⌈10/3⌉ = 4 replicas = $4; g2 only ⌈10/8⌉ = 2 = $5;
    # one g2 (8) + one g1 (3) = 11 ≥ 10 for $3.5, and nothing cheaper reaches 10 (3 g1 = 9).
    plan = run(base(), backend)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(3.5, rel=1e-9)
    assert {(d.gpu, d.replicas) for d in plan.deployments} == {("g1", 1), ("g2", 1)}


def test_availability_binds(backend: str) -> None:
    # g2 unavailable: ⌈10/3⌉ = 4 replicas of g1 = $4.
    plan = run(
        base(gpus=[{"id": "g1", "price_per_hour": 1.0}, {"id": "g2", "price_per_hour": 2.5, "available": 0}]),
        backend,
    )
    assert plan.objective == pytest.approx(4.0, rel=1e-9)


def test_tp_counts_gpus(backend: str) -> None:
    # g2's entry at tp 2: a replica takes 2 GPUs, so it costs 2 × $2.5 = $5 for 8 req/s.
    # 1 g2 + 1 g1 = $6 and 2 g2 = $10 lose to 4 g1 = $4 (3 g1 = 9 req/s < 10).
    doc = base()
    doc["performance"][1] = {**doc["performance"][1], "tp": 2}
    plan = run(doc, backend)
    assert plan.objective == pytest.approx(4.0, rel=1e-9)
    assert all(d.gpus == d.replicas * d.tp * d.pp for d in plan.deployments)


def test_storage_term(backend: str) -> None:
    # storage $0.01/GB-h × 20 GB (10B × 2 bytes) = $0.2 per option used.
    # mixed: 3.5 + 2 × 0.2 = 3.9; g1 only: 4 + 0.2 = 4.2; g2 only: 5 + 0.2 → 3.9.
    plan = run(base(storage_price_per_gb_hour=0.01), backend)
    assert plan.objective == pytest.approx(3.9, rel=1e-9)
    assert plan.cost is not None and plan.cost.storage == pytest.approx(0.4, rel=1e-9)


def test_max_utilization(backend: str) -> None:
    # At 50% utilization capacities halve: g1 1.5, g2 4 req/s. Options for 10 req/s:
    # 3 g2 = $7.5 (12); 2 g2 + 2 g1 = $7 (11); 1 g2 + 4 g1 = $6.5 (10); 7 g1 = $7 → $6.5.
    plan = run(base(max_utilization=0.5), backend)
    assert plan.objective == pytest.approx(6.5, rel=1e-9)


def test_budget_infeasible_and_exact(backend: str) -> None:
    # The cheapest plan costs $3.5, so a $3.4 budget is infeasible and $3.5 is exactly enough.
    assert run(base(budget=3.4), backend).status == "infeasible"
    assert run(base(budget=3.5), backend).objective == pytest.approx(3.5, rel=1e-9)


def test_accuracy_forces_better_model(backend: str) -> None:
    # Type 4 req/s. Model c (error 0.2) on g1 at 4 req/s for $1; model d (error 0.05) on g2 at 2 req/s
    # for $3. max_error 0.1 ⇒ 0.2 x_c + 0.05 x_d ≤ 0.1, x_c + x_d = 1 ⇒ x_c ≤ 1/3.
    # All d: ⌈4/2⌉ = 2 replicas = $6. Mixed: x_d ≥ 2/3 needs 8/3 req/s ⇒ 2 d replicas ($6) + 1 c ($1) = $7.
    # Without the limit: 1 replica of c = $1.
    doc = {
        "period_hours": 1,
        "models": [{"id": "c", "params_b": 7}, {"id": "d", "params_b": 70}],
        "gpus": [{"id": "g1", "price_per_hour": 1.0}, {"id": "g2", "price_per_hour": 3.0}],
        "query_types": [{"id": "t", "arrival_rate": 4, "input_tokens": 10, "output_tokens": 10, "max_error": 0.1}],
        "errors": {"c": {"t": 0.2}, "d": {"t": 0.05}},
        "performance_mode": "table",
        "performance": [
            {"model": "c", "gpu": "g1", "query_type": "t", "throughput_rps": 4},
            {"model": "d", "gpu": "g2", "query_type": "t", "throughput_rps": 2},
        ],
    }
    assert run(doc, backend).objective == pytest.approx(6.0, rel=1e-9)
    loose = {**doc, "query_types": [{**doc["query_types"][0], "max_error": 0.2}]}
    assert run(loose, backend).objective == pytest.approx(1.0, rel=1e-9)


def test_unserved_is_cheaper_than_a_replica(backend: str) -> None:
    # 1 req/s for 1 h at φ = $0.001/request: leaving all unserved costs 3600 × 0.001 = $3.6 < $5 replica.
    # With max_unserved 0.5: serve half (one $5 replica) + 0.5 × 3.6 = $6.8 vs serve all $5 → $5.
    def doc(zeta: float) -> dict[str, Any]:
        return {
            "period_hours": 1,
            "models": [{"id": "m", "params_b": 1}],
            "gpus": [{"id": "g", "price_per_hour": 5.0}],
            "query_types": [
                {
                    "id": "t",
                    "arrival_rate": 1,
                    "input_tokens": 10,
                    "output_tokens": 10,
                    "max_unserved": zeta,
                    "unserved_penalty": 0.001,
                }
            ],
            "performance_mode": "table",
            "performance": [{"model": "m", "gpu": "g", "query_type": "t", "throughput_rps": 2}],
        }

    full = run(doc(1.0), backend)
    assert full.objective == pytest.approx(3.6, rel=1e-9)
    assert full.unserved["t"] == pytest.approx(1.0)
    assert run(doc(0.5), backend).objective == pytest.approx(5.0, rel=1e-9)


def test_delay_penalty_prefers_fast_option(backend: str) -> None:
    # ρ = $0.001 per request-second, 1 req/s, 1 h: fast (e2e 2 s, $2) costs 2 + 3600×0.001×2 = 9.2;
    # slow (e2e 10 s, $1) costs 1 + 36 = 37.
    doc = {
        "period_hours": 1,
        "models": [{"id": "m", "params_b": 1}],
        "gpus": [{"id": "fast", "price_per_hour": 2.0}, {"id": "slow", "price_per_hour": 1.0}],
        "query_types": [
            {"id": "t", "arrival_rate": 1, "input_tokens": 10, "output_tokens": 10, "delay_penalty": 0.001}
        ],
        "performance_mode": "table",
        "performance": [
            {"model": "m", "gpu": "fast", "query_type": "t", "throughput_rps": 1, "e2e_s": 2},
            {"model": "m", "gpu": "slow", "query_type": "t", "throughput_rps": 1, "e2e_s": 10},
        ],
    }
    plan = run(doc, backend)
    assert plan.objective == pytest.approx(9.2, rel=1e-9)
    assert plan.cost is not None and plan.cost.delay_penalty == pytest.approx(7.2, rel=1e-9)


def test_slo_makes_entry_ineligible(backend: str) -> None:
    # g2's ttft 0.2 s misses a 0.1 s SLO, g1's 0.5 s too: nothing eligible, max_unserved 0 ⇒ infeasible
    # with an `slo` diagnosis; with ttft SLO 0.3 s only g2 is eligible ⇒ ⌈10/8⌉ = 2 × $2.5 = $5.
    tight = base(
        query_types=[{"id": "t", "arrival_rate": 10, "input_tokens": 100, "output_tokens": 100, "slo": {"ttft_s": 0.1}}]
    )
    plan = run(tight, backend)
    assert plan.status == "infeasible"
    assert plan.diagnosis and {(b.query_type, b.constraint) for b in plan.diagnosis} >= {("t", "slo")}
    mid = base(
        query_types=[{"id": "t", "arrival_rate": 10, "input_tokens": 100, "output_tokens": 100, "slo": {"ttft_s": 0.3}}]
    )
    assert run(mid, backend).objective == pytest.approx(5.0, rel=1e-9)


def test_diagnosis_names_each_blocker(backend: str) -> None:
    # Three types: a needs error ≤ 0.01 but the only model has 0.2 (accuracy); b's only entry misses
    # its ttft SLO (slo); c fits alone only on g, which has 1 GPU while c needs 2 replicas (availability).
    doc = {
        "period_hours": 1,
        "models": [{"id": "m", "params_b": 1}],
        "gpus": [{"id": "g", "price_per_hour": 1.0, "available": 1}],
        "query_types": [
            {"id": "a", "arrival_rate": 1, "input_tokens": 10, "output_tokens": 10, "max_error": 0.01},
            {"id": "b", "arrival_rate": 1, "input_tokens": 10, "output_tokens": 10, "slo": {"ttft_s": 0.1}},
            {"id": "c", "arrival_rate": 2, "input_tokens": 10, "output_tokens": 10},
        ],
        "errors": {"m": {"a": 0.2}},
        "performance_mode": "table",
        "performance": [
            {"model": "m", "gpu": "g", "query_type": "a", "throughput_rps": 5},
            {"model": "m", "gpu": "g", "query_type": "b", "throughput_rps": 5, "ttft_s": 0.5},
            {"model": "m", "gpu": "g", "query_type": "c", "throughput_rps": 1},
        ],
    }
    plan = run(doc, backend)
    assert plan.status == "infeasible"
    found = {(b.query_type, b.constraint) for b in plan.diagnosis or []}
    assert {("a", "accuracy"), ("b", "slo"), ("c", "availability")} <= found
