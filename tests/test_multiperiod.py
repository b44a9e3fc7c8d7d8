"""Multi-period planning: the MILP never costs more than the peak plan, every window checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planner.checker import check_plan
from planner.errors import InputError
from planner.loader import load_instance_data
from planner.options import build_option_table
from planner.plan import read_plan, write_plan
from planner.solvers import solve
from planner.solvers.multiperiod import peak_plan
from tests.conftest import ROOT

BASE: dict[str, Any] = {
    "name": "mp",
    "period_hours": 24,
    "include": [str(ROOT / "models" / "llms.yaml"), str(ROOT / "models" / "gpus.yaml")],
    "models": ["llama-3.1-8b", "qwen2.5-7b", "llama-3.1-70b"],
    "gpus": ["l4", "l40s", "a100-80gb", "h100-80gb"],
    "parallelism": {"tp": [1, 2, 4], "pp": [1]},
    "max_utilization": 0.8,
    "slo_attainment": "mean",
    "storage_price_per_gb_hour": 0.0005,
    "query_types": [
        {"id": "chat", "arrival_rate": 4, "input_tokens": 500, "output_tokens": 150,
         "slo": {"ttft_s": 2, "tpot_s": 0.1}, "delay_penalty": 0.00001},
        {"id": "code", "arrival_rate": 2, "input_tokens": 2000, "output_tokens": 40,
         "slo": {"ttft_s": 3, "tpot_s": 0.1, "e2e_s": 10}, "task": "mmlu", "max_error": 0.3,
         "max_unserved": 0.02, "unserved_penalty": 0.001},
    ],
    "scaling": {"windows": [
        {"id": "night", "hours": 8, "rates": {"chat": 1, "code": 0.2}},
        {"id": "day", "hours": 10, "rates": {"chat": 12, "code": 5}},
        {"id": "evening", "hours": 6, "rates": {"chat": 5, "code": 1}},
    ]},
}  # fmt: skip


def instance(**scaling: Any) -> Any:
    doc = copy.deepcopy(BASE)
    doc["scaling"].update(scaling)
    return load_instance_data(doc, "mp.yaml")


def random_profile(seed: int, windows: int) -> Any:
    rng = np.random.default_rng(seed)
    doc = copy.deepcopy(BASE)
    doc["scaling"] = {
        "windows": [
            {
                "hours": float(rng.integers(1, 6)),
                "rates": {"chat": float(rng.uniform(0.2, 15)), "code": float(rng.uniform(0, 6))},
            }
            for _ in range(windows)
        ],
        "base_fleet": bool(seed % 2),
        "on_demand_premium": float(rng.choice([0.0, 0.3, 1.0])),
        "max_change": [None, 1, 2][seed % 3],
    }  # fmt: skip
    return load_instance_data(doc, f"mp-{seed}.yaml")


CASES = [
    pytest.param({}, id="plain"),
    pytest.param({"base_fleet": True, "on_demand_premium": 0.5}, id="base-fleet"),
    pytest.param({"max_change": 1}, id="change-limit"),
    pytest.param({"base_fleet": True, "on_demand_premium": 2.0, "max_change": 1}, id="both"),
]


@pytest.mark.parametrize("scaling", CASES)
def test_milp_never_above_peak_plan_and_every_window_checks(scaling: dict[str, Any]) -> None:
    inst = instance(**scaling)
    table = build_option_table(inst)
    mp = solve(inst, "milp", table=table)
    assert mp.status == "optimal"
    peak = peak_plan(table)
    assert peak.status == "optimal"
    assert mp.objective is not None and peak.objective is not None
    assert mp.objective <= peak.objective + 1e-6
    rep = check_plan(inst, mp, table)
    assert rep.ok, rep.violations
    assert mp.schedule is not None and [w.window for w in mp.schedule] == ["night", "day", "evening"]
    agh = solve(inst, "agh", table=table)
    assert agh.status == "feasible"  # a heuristic never claims optimality
    assert check_plan(inst, agh, table).ok
    assert agh.objective is not None and agh.objective >= mp.objective - 1e-6


@pytest.mark.parametrize("seed", range(8))
def test_random_profiles(seed: int) -> None:
    inst = random_profile(seed, windows=2 + seed % 4)
    table = build_option_table(inst)
    mp = solve(inst, "milp", table=table)
    peak = peak_plan(table)
    if peak.status != "optimal":
        pytest.skip("the peak rates are beyond this fleet")
    assert mp.status == "optimal"
    assert mp.objective <= peak.objective + 1e-6  # type: ignore[operator]
    assert check_plan(inst, mp, table).ok
    agh = solve(inst, "agh", table=table, seed=seed)
    if agh.has_solution:
        assert check_plan(inst, agh, table).ok
        assert agh.objective >= mp.objective - 1e-6  # type: ignore[operator]


def test_scaling_saves_against_the_peak_plan() -> None:
    inst = instance()
    table = build_option_table(inst)
    mp, peak = solve(inst, "milp", table=table), peak_plan(table)
    # Night and evening need far less than the day: per-window replicas cost clearly less.
    assert mp.objective < 0.8 * peak.objective  # type: ignore[operator]
    day = next(w for w in mp.schedule or [] if w.window == "day")
    night = next(w for w in mp.schedule or [] if w.window == "night")
    assert day.cost / day.hours > night.cost / night.hours  # type: ignore[operator]


def test_change_limit_and_base_fleet_hold() -> None:
    inst = instance(base_fleet=True, on_demand_premium=0.5, max_change=1)
    table = build_option_table(inst)
    for method in ("milp", "agh"):
        plan = solve(inst, method, table=table)
        ys = [{d.option: d.replicas for d in w.deployments} for w in plan.schedule or []]
        for t in range(len(ys)):
            for o in set(ys[t]) | set(ys[t - 1]):
                assert abs(ys[t].get(o, 0) - ys[t - 1].get(o, 0)) <= 1
        for b in plan.base_fleet or []:
            assert all(y.get(b.option, 0) >= b.replicas for y in ys)


def test_checker_catches_tampering(tmp_path: Path) -> None:
    inst = instance(max_change=2)
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table)
    path = tmp_path / "p.yaml"
    write_plan(path, plan)
    again = read_plan(path)
    assert again.schedule == plan.schedule and check_plan(inst, again, table).ok

    def with_window(name: str, replicas: int) -> Any:
        sched = []
        for w in again.schedule or []:
            if w.window == name:
                d = w.deployments[0].model_copy(update={"replicas": replicas})
                w = w.model_copy(update={"deployments": [d, *w.deployments[1:]]})
            sched.append(w)
        return again.model_copy(update={"schedule": sched})

    day = next(w for w in again.schedule or [] if w.window == "day")
    families = {v.family for v in check_plan(inst, with_window("day", 0), table).violations}
    assert "capacity" in families
    families = {
        v.family for v in check_plan(inst, with_window("night", day.deployments[0].replicas + 5), table).violations
    }
    assert {"change", "cost", "schedule"} <= families


def test_bad_scaling_input() -> None:
    doc = copy.deepcopy(BASE)
    doc["scaling"]["windows"][1]["rates"]["poetry"] = 1.0
    with pytest.raises(InputError, match=r"scaling.windows\[1\].rates.poetry"):
        load_instance_data(doc, "mp.yaml")
    doc = copy.deepcopy(BASE)
    doc["scaling"]["demand_csv"] = "demand.csv"
    with pytest.raises(InputError, match="not both"):
        load_instance_data(doc, "mp.yaml")
    doc = copy.deepcopy(BASE)
    doc["scaling"]["windows"][0]["hours"] = 0
    with pytest.raises(InputError, match="hours"):
        load_instance_data(doc, "mp.yaml")
