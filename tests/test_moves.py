"""One test per heuristic move on tiny table-mode instances whose outcome is derived by hand.

Searches stop on iterations or on "no improving move", never on time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from planner.checker import check_plan
from planner.heuristics.construct import construct, migrate, tp_upgrades
from planner.heuristics.search import consolidate, relocate, switch
from planner.heuristics.state import Data, State
from planner.heuristics.stopping import AnyOf, MaxIterations, NoImprovement
from planner.options import build_option_table
from planner.solvers import solve
from tests.conftest import make_instance


def tiny(entries: list[dict[str, Any]], types: list[dict[str, Any]], gpus: list[dict[str, Any]], **kw: Any):
    doc = {
        "period_hours": 1,
        "models": [{"id": "m", "params_b": 1}, {"id": "big", "params_b": 70}],
        "gpus": gpus,
        "query_types": types,
        "performance_mode": "table",
        "performance": entries,
        **kw,
    }
    inst = make_instance(doc)
    table = build_option_table(inst)
    return inst, table, Data.from_table(table)


def col(table, key: str) -> int:  # type: ignore[no-untyped-def]
    return next(k for k, o in enumerate(table.options) if o.key == key)


def test_relocate_frees_a_replica() -> None:
    # Type a (2 req/s) on g1 (thr 4, $1) and on g2 (thr 4, $1.5): split 50/50 it needs one replica of
    # each ($2.5). All of a fits on one g1 replica (2 ≤ 4): relocating g2's share to g1 saves $1.5.
    _inst, table, d = tiny(
        [{"model": "m", "gpu": g, "query_type": "a", "throughput_rps": 4} for g in ("g1", "g2")],
        [{"id": "a", "arrival_rate": 2, "input_tokens": 10, "output_tokens": 10}],
        [{"id": "g1", "price_per_hour": 1.0}, {"id": "g2", "price_per_hour": 1.5}],
    )
    k1, k2 = col(table, "m/g1/tp1/pp1"), col(table, "m/g2/tp1/pp1")
    X = np.zeros((1, d.K + 1))
    X[0, k1] = X[0, k2] = 0.5
    s = State(d, X)
    assert s.cost == pytest.approx(2.5)
    assert relocate(s)
    assert s.cost == pytest.approx(1.0) and s.X[0, k1] == pytest.approx(1.0)
    assert not relocate(s)  # nothing left to improve: the search stops by itself


def test_consolidate_empties_a_light_deployment() -> None:
    # Types a and b (1 req/s each) each alone on their own g1 replica of capacity 4: two replicas
    # ($2). Both fit on one (2 ≤ 4): consolidation empties one deployment → $1.
    entries = [
        {"model": "m", "gpu": "g1", "tp": tp, "query_type": t, "throughput_rps": 4} for tp in (1, 2) for t in ("a", "b")
    ]
    _inst, table, d = tiny(
        entries,
        [{"id": t, "arrival_rate": 1, "input_tokens": 10, "output_tokens": 10} for t in ("a", "b")],
        [{"id": "g1", "price_per_hour": 1.0}],
    )
    k1, k2 = col(table, "m/g1/tp1/pp1"), col(table, "m/g1/tp2/pp1")
    X = np.zeros((2, d.K + 1))
    X[0, k1] = 1.0
    X[1, k2] = 1.0  # a tp2 replica costs 2 GPUs: $2, so the start costs $3
    s = State(d, X)
    assert s.cost == pytest.approx(3.0)
    s, improved = consolidate(s)
    assert improved and s.cost == pytest.approx(1.0)
    assert s.X[:, k1].sum() == pytest.approx(2.0)


def test_switch_moves_a_deployment_to_a_cheaper_tier() -> None:
    # Everything on the $3 tier; the same model on the $1 tier serves both types at the same
    # throughput: switching the whole deployment saves $2.
    entries = [
        {"model": "m", "gpu": g, "query_type": t, "throughput_rps": 4} for g in ("dear", "cheap") for t in ("a", "b")
    ]
    _inst, table, d = tiny(
        entries,
        [{"id": t, "arrival_rate": 1, "input_tokens": 10, "output_tokens": 10} for t in ("a", "b")],
        [{"id": "dear", "price_per_hour": 3.0}, {"id": "cheap", "price_per_hour": 1.0}],
    )
    kd, kc = col(table, "m/dear/tp1/pp1"), col(table, "m/cheap/tp1/pp1")
    X = np.zeros((2, d.K + 1))
    X[:, kd] = 1.0
    s = State(d, X)
    assert switch(s)
    assert s.cost == pytest.approx(1.0) and s.X[:, kc].sum() == pytest.approx(2.0)


def test_tp_upgrade_of_an_open_deployment() -> None:
    # Type a is on m/g/tp1. Type b misses its SLO at tp1 but meets it at tp2, where a is eligible
    # too. GH (M3) moves the open deployment to tp2 and puts b there: one tp2 replica ($2) instead
    # of keeping tp1 ($1) and opening tp2 for b ($2).
    entries = [
        {"model": "m", "gpu": "g", "tp": 1, "query_type": "a", "throughput_rps": 4},
        {"model": "m", "gpu": "g", "tp": 2, "query_type": "a", "throughput_rps": 8},
        {"model": "m", "gpu": "g", "tp": 1, "query_type": "b", "throughput_rps": 4, "ttft_s": 2.0},
        {"model": "m", "gpu": "g", "tp": 2, "query_type": "b", "throughput_rps": 8, "ttft_s": 0.5},
    ]
    _inst, table, d = tiny(
        entries,
        [
            {"id": "a", "arrival_rate": 2, "input_tokens": 10, "output_tokens": 10},
            {"id": "b", "arrival_rate": 2, "input_tokens": 10, "output_tokens": 10, "slo": {"ttft_s": 1.0}},
        ],
        [{"id": "g", "price_per_hour": 1.0}],
    )
    k1, k2 = col(table, "m/g/tp1/pp1"), col(table, "m/g/tp2/pp1")
    X = np.zeros((2, d.K + 1))
    X[0, k1] = 1.0
    s = State(d, X)
    assert tp_upgrades(s, 1) == [(k1, k2)]
    up = migrate(s, k1, k2)
    assert up is not None and up.X[0, k2] == pytest.approx(1.0) and up.y[k1] == 0
    built, why = construct(d, [0, 1])
    assert built is not None, why
    assert built.cost == pytest.approx(2.0)
    assert built.y[k1] == 0 and built.y[k2] == 1


def test_gh_and_agh_on_the_upgrade_instance_pass_the_checker() -> None:
    entries = [
        {"model": "m", "gpu": "g", "tp": 1, "query_type": "a", "throughput_rps": 4},
        {"model": "m", "gpu": "g", "tp": 2, "query_type": "a", "throughput_rps": 8},
        {"model": "m", "gpu": "g", "tp": 2, "query_type": "b", "throughput_rps": 8},
    ]
    inst, table, _ = tiny(
        entries,
        [{"id": t, "arrival_rate": 2, "input_tokens": 10, "output_tokens": 10} for t in ("a", "b")],
        [{"id": "g", "price_per_hour": 1.0}],
    )
    for method in ("gh", "agh"):
        plan = solve(inst, method, table=table)
        assert plan.status == "feasible" and check_plan(inst, plan, table).ok
        assert plan.objective == pytest.approx(2.0)  # one tp2 replica carries both types


def test_stopping_criteria() -> None:
    it = MaxIterations(3)
    assert [it(1.0) for _ in range(3)] == [False, False, True]
    ni = NoImprovement(2)
    assert [ni(c) for c in (5.0, 4.0, 4.0, 4.0)] == [False, False, False, True]
    both = AnyOf([MaxIterations(10), NoImprovement(1)])
    assert [both(c) for c in (3.0, 3.0)] == [False, True]
