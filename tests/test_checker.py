"""The checker flags each constraint family when a good plan is tampered with."""

from __future__ import annotations

from typing import Any

import pytest

from planner.checker import check_plan
from planner.loader import load_instance
from planner.options import build_option_table
from planner.plan import Plan
from planner.solvers import solve
from tests.conftest import INSTANCES, make_instance
from tests.test_milp_tiny import base


@pytest.fixture(scope="module")
def solved() -> tuple[Any, Any, Plan]:
    doc = base(
        budget=10.0,
        gpus=[{"id": "g1", "price_per_hour": 1.0, "available": 4}, {"id": "g2", "price_per_hour": 2.5}],
        query_types=[
            {
                "id": "t",
                "arrival_rate": 10,
                "input_tokens": 100,
                "output_tokens": 100,
                "slo": {"ttft_s": 1.0},
                "max_error": 0.3,
                "max_unserved": 0.1,
                "unserved_penalty": 0.0001,
            }
        ],
        errors={"m": {"t": 0.2}},
    )
    inst = make_instance(doc)
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table)
    assert check_plan(inst, plan, table).ok
    return inst, table, plan


def tamper(plan: Plan, **changes: Any) -> Plan:
    return Plan.model_validate({**plan.model_dump(), **changes})


def families(inst: Any, table: Any, plan: Plan) -> set[str]:
    return {v.family for v in check_plan(inst, plan, table).violations}


def test_good_plan_has_no_violation(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    assert families(inst, table, plan) == set()


def test_capacity(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    deps = [{**d.model_dump(), "replicas": 0, "gpus": 0} for d in plan.deployments]
    assert "capacity" in families(inst, table, tamper(plan, deployments=deps))


def test_gpus_bookkeeping(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    deps = [{**d.model_dump(), "gpus": d.gpus + 1} for d in plan.deployments]
    assert "gpus" in families(inst, table, tamper(plan, deployments=deps))


def test_coverage(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    routing = {
        t: [{**s.model_dump(), "fraction": s.fraction * 0.5} for s in shares] for t, shares in plan.routing.items()
    }
    assert "coverage" in families(inst, table, tamper(plan, routing=routing))


def test_max_unserved(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    routing = {
        t: [{**s.model_dump(), "fraction": s.fraction * 0.5} for s in shares] for t, shares in plan.routing.items()
    }
    fams = families(inst, table, tamper(plan, routing=routing, unserved={"t": 0.5}))
    assert "max_unserved" in fams


def test_eligibility_unknown_option(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    routing = {"t": [{"model": "m", "gpu": "g1", "tp": 8, "pp": 1, "fraction": 1.0}]}
    assert "eligibility" in families(inst, table, tamper(plan, routing=routing))


def test_accuracy() -> None:
    doc = base(
        query_types=[{"id": "t", "arrival_rate": 10, "input_tokens": 100, "output_tokens": 100, "max_error": 0.1}],
        errors={"m": {"t": 0.2}},
    )
    inst = make_instance({**doc, "query_types": [{**doc["query_types"][0], "max_error": 0.5}]})
    plan = solve(inst, "milp")
    strict = make_instance(doc)
    assert "accuracy" in families(strict, build_option_table(strict), plan)


def test_availability(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    deps = [{"model": "m", "gpu": "g1", "tp": 1, "pp": 1, "replicas": 5, "gpus": 5}] + [
        d.model_dump() for d in plan.deployments if d.gpu != "g1"
    ]
    assert "availability" in families(inst, table, tamper(plan, deployments=deps))


def test_budget_and_cost(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    deps = [d.model_dump() for d in plan.deployments] + [
        {"model": "m", "gpu": "g2", "tp": 1, "pp": 1, "replicas": 3, "gpus": 3}
    ]
    fams = families(inst, table, tamper(plan, deployments=deps))
    assert {"budget", "cost"} <= fams or {"budget", "reference"} <= fams


def test_cost_and_objective(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    assert plan.cost is not None
    cost = {**plan.cost.model_dump(), "rental": plan.cost.rental - 1}
    assert "cost" in families(inst, table, tamper(plan, cost=cost))
    assert "objective" in families(inst, table, tamper(plan, objective=(plan.objective or 0) + 1))


def test_bound_above_objective(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    assert "bound" in families(inst, table, tamper(plan, bound=(plan.objective or 0) * 2, gap=0.0))


def test_wrong_instance(solved) -> None:  # type: ignore[no-untyped-def]
    inst, table, plan = solved
    assert "reference" in families(inst, table, tamper(plan, instance="other"))


def test_model_mode_plan_checks() -> None:
    inst = load_instance(INSTANCES / "quickstart.yaml")
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table, backend="highs")
    assert plan.status == "optimal"
    assert check_plan(inst, plan, table).ok
