"""Seeded random table-mode instances: both exact backends agree and the checker accepts both."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.checker import check_plan
from planner.generate import random_table_instance
from planner.options import build_option_table
from planner.solvers import solve
from tests.conftest import make_instance

SEEDS = range(36)


@pytest.mark.parametrize("seed", SEEDS)
def test_backends_agree(seed: int) -> None:
    inst = make_instance(random_table_instance(seed), name=f"random-{seed}")
    table = build_option_table(inst)
    plans = {b: solve(inst, "milp", table=table, backend=b, gap=1e-9) for b in ("highs", "ortools")}
    statuses = {b: p.status for b, p in plans.items()}
    assert statuses["highs"] == statuses["ortools"], statuses
    for plan in plans.values():
        assert plan.status in ("optimal", "infeasible")
        if plan.status == "optimal":
            report = check_plan(inst, plan, table)
            assert report.ok, report.violations
            assert plan.bound is not None and plan.bound <= plan.objective * (1 + 1e-9) + 1e-9
    if statuses["highs"] == "optimal":
        a, b = plans["highs"].objective, plans["ortools"].objective
        assert a == pytest.approx(b, rel=1e-6, abs=1e-6)
    else:
        assert plans["highs"].diagnosis, "an infeasible plan must carry a diagnosis"


def test_random_family_is_mixed() -> None:
    """The seeds above cover both feasible and infeasible instances (else the test proves less)."""
    statuses = set()
    for seed in SEEDS:
        inst = make_instance(random_table_instance(seed), name=f"random-{seed}")
        statuses.add(solve(inst, "milp", backend="highs").status)
    assert statuses == {"optimal", "infeasible"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=1000, max_value=10**6), density=st.floats(0.2, 1.0))
def test_every_plan_passes_the_checker(seed: int, density: float) -> None:
    inst = make_instance(random_table_instance(seed, density=density), name="prop")
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table, backend="highs")
    if plan.has_solution:
        report = check_plan(inst, plan, table)
        assert report.ok, report.violations
        # The MILP's own objective equals the checker's independent recomputation.
        assert report.cost is not None
        assert plan.objective == pytest.approx(report.cost.total, rel=1e-6, abs=1e-6)
    else:
        assert plan.status == "infeasible" and plan.diagnosis
