"""Infeasible instances name the constraint that blocks each query type."""

from __future__ import annotations

from planner.solvers import solve
from tests.conftest import make_instance
from tests.test_milp_tiny import base


def blockers(doc: dict, backend: str = "highs") -> set[tuple[str, str]]:
    plan = solve(make_instance(doc), "milp", backend=backend)
    assert plan.status == "infeasible"
    return {(b.query_type, b.constraint) for b in plan.diagnosis or []}


def test_memory(backend: str) -> None:
    # Llama-3.1-405B in bf16 (810 GB) cannot fit on one 24 GB L4, whatever the batch.
    doc = {
        "models": ["llama-3.1-405b"],
        "gpus": ["l4"],
        "parallelism": {"tp": [1, 2], "pp": [1]},
        "query_types": [{"id": "chat", "arrival_rate": 1, "input_tokens": 500, "output_tokens": 100}],
    }
    assert ("chat", "memory") in blockers(doc, backend)


def test_context() -> None:
    # Llama-2 serves 4096 tokens; a 6000-token prompt cannot be a candidate anywhere.
    doc = {
        "models": ["llama-2-7b"],
        "gpus": ["h100-80gb"],
        "parallelism": {"tp": [1], "pp": [1]},
        "query_types": [{"id": "long", "arrival_rate": 1, "input_tokens": 6000, "output_tokens": 100}],
    }
    assert ("long", "context") in blockers(doc)


def test_budget_alone(backend: str) -> None:
    # The cheapest plan costs $3.5 per period (see test_milp_tiny.test_mixed_tiers).
    assert ("t", "budget") in blockers(base(budget=3.0), backend)


def test_budget_jointly() -> None:
    # Each type alone costs $3.5 (10 req/s); together 20 req/s cost $7 (2 g2 + 2 g1 = 22 req/s).
    # A $5 budget serves either type alone but not both: the joint budget blocks both.
    doc = base(budget=5.0)
    doc["query_types"] = [
        {"id": "a", "arrival_rate": 10, "input_tokens": 100, "output_tokens": 100},
        {"id": "b", "arrival_rate": 10, "input_tokens": 100, "output_tokens": 100},
    ]
    doc["performance"] = [{**e, "query_type": t} for t in ("a", "b") for e in doc["performance"]]
    assert {("a", "budget"), ("b", "budget")} <= blockers(doc)


def test_unserved_allowance_avoids_infeasibility() -> None:
    # The same budget-blocked type with max_unserved 1 is feasible: it is left unserved.
    doc = base(budget=3.0)
    doc["query_types"] = [{**doc["query_types"][0], "max_unserved": 1.0, "unserved_penalty": 0.0001}]
    plan = solve(make_instance(doc), "milp")
    assert plan.status == "optimal" and plan.unserved["t"] > 0
