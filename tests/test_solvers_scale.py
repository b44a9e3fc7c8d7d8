"""Solvers at fleet scale: feasibility repair, dominance pruning, the matrix form of the model.

The fixtures ``tests/data/paper-10x10x10-s{0,6}.json.gz`` are the benchmark's table-10×10×10 seeds 0
and 6 as generated when GH and AGH returned no plan on them although the MILP proved an optimum
(``benchmarks/results/bench.md`` before the repair): a budget binding across types leaves the
greedy's last types nothing affordable.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from planner.checker import check_plan
from planner.gcpause import paused_gc
from planner.generate import random_table_instance
from planner.heuristics.construct import construct
from planner.heuristics.fluid import slope_scaling
from planner.heuristics.methods import fewest_choices_first, orders
from planner.heuristics.repair import repair
from planner.heuristics.state import Data
from planner.loader import load_instance_data
from planner.options import Option, build_option_table
from planner.solvers import solve
from planner.solvers.backends import SolveOptions, solve_highs
from planner.solvers.matrix import build_matrix
from planner.solvers.milp import ModelScope, build_model, dominated

DATA = Path(__file__).parent / "data"


def _table(doc: dict):  # type: ignore[no-untyped-def]
    inst = load_instance_data(doc, f"{doc['name']}.yaml")
    return inst, build_option_table(inst)


def _stalls(table) -> bool:  # type: ignore[no-untyped-def]
    """Do both greedy orders and the fluid start all fail on this table?"""
    d = Data.from_table(table)
    return (
        construct(d, orders(d, 0, 0)[0])[0] is None
        and construct(d, fewest_choices_first(d))[0] is None
        and slope_scaling(d) is None
    )


@pytest.mark.parametrize("seed", [0, 6])
def test_repair_finds_a_plan_where_the_greedy_stalls_on_todays_failing_seeds(seed: int) -> None:
    doc = json.loads(gzip.decompress((DATA / f"paper-10x10x10-s{seed}.json.gz").read_bytes()))
    inst, table = _table(doc)
    assert _stalls(table)  # the case the repair exists for
    exact = solve(inst, "milp", table=table)
    assert exact.status == "optimal"
    for method in ("gh", "agh"):
        plan = solve(inst, method, table=table, seed=seed)
        assert plan.status == "feasible", plan.message
        assert check_plan(inst, plan, table).ok
        assert plan.objective >= exact.objective * (1 - 1e-6)  # never better than the proven optimum


def test_heuristics_find_a_plan_exactly_where_the_milp_does() -> None:
    """On 150 seeded random instances (5 of them stall every greedy and fluid start, with a
    budget or availability limit binding), GH and AGH return a plan the checker accepts whenever
    the MILP finds one, and say "infeasible" only where the MILP proves it."""
    stalled = 0
    for seed in range(150):
        inst, table = _table(random_table_instance(seed))
        exact = solve(inst, "milp", table=table)
        stalled += exact.status == "optimal" and bool(table.pairs) and _stalls(table)
        for method in ("gh", "agh"):
            plan = solve(inst, method, table=table, seed=seed)
            if exact.status == "optimal":
                assert plan.has_solution, (seed, method, plan.message)
                assert check_plan(inst, plan, table).ok, (seed, method)
                assert plan.objective >= exact.objective * (1 - 1e-6) - 1e-9
            else:
                assert exact.status == "infeasible"
                assert plan.status == "infeasible", (seed, method, plan.status)
                assert plan.diagnosis is not None
    assert stalled >= 5


def test_repair_proves_infeasibility_by_the_lp_relaxation() -> None:
    doc = random_table_instance(1)  # proven infeasible by the MILP (a budget below any plan)
    inst, table = _table(doc)
    assert solve(inst, "milp", table=table).status == "infeasible"
    fixed = repair(Data.from_table(table))
    assert fixed.state is None and fixed.status == "infeasible"


def test_dominance_pruning_never_changes_the_optimum() -> None:
    """Pruned vs unpruned MILP on 50 seeded instances: equal status and optimum; options pruned.
    (The matrix form, for speed; both forms prune with the same :func:`dominated`, and the Pyomo
    form's own switch is checked on a few.)"""
    pruned = 0
    for seed in range(50):
        _, table = _table(random_table_instance(seed, n_types=5, n_models=3, n_tiers=4))
        pruned += len(dominated(table, table.pairs))
        a = build_matrix(table).solve()
        b = build_matrix(table, prune=False).solve()
        assert a.status == b.status, seed
        if b.objective is not None:
            assert a.objective == pytest.approx(b.objective, rel=2e-6, abs=1e-6), seed
    assert pruned >= 100
    for seed in range(3):
        _, table = _table(random_table_instance(seed, n_types=5, n_models=3, n_tiers=4))
        a = solve_highs(build_model(table), SolveOptions())
        b = solve_highs(build_model(table, ModelScope(prune=False)), SolveOptions())
        assert a.status == b.status and (b.objective is None or a.objective == pytest.approx(b.objective, rel=2e-6))


def test_dominance_needs_the_price_to_cover_the_capacity_gap() -> None:
    """Hand-checkable: b (dear tier, unlimited) is dominated by a of the same model on a cheap
    tier when ⌈ρ⌉·rental[a] ≤ rental[b]; not when a's tier is limited, nor when a is too slow."""

    def doc(price_b: float, thr_a: float, available: int | None) -> dict:
        gpu_a = {"id": "cheap", "price_per_hour": 1.0, **({"available": available} if available else {})}
        perf = [
            {"model": "m", "gpu": g, "tp": 1, "pp": 1, "query_type": "t", "throughput_rps": thr,
             "ttft_s": 0.1, "tpot_s": 0.01, "e2e_s": 1.0}
            for g, thr in (("cheap", thr_a), ("dear", 1.0))
        ]  # fmt: skip
        return {
            "name": "dom",
            "period_hours": 1,
            "models": [{"id": "m", "params_b": 7, "weight_bytes": 2}],
            "gpus": [gpu_a, {"id": "dear", "price_per_hour": price_b}],
            "parallelism": {"tp": [1], "pp": [1]},
            "query_types": [{"id": "t", "arrival_rate": 3, "input_tokens": 100, "output_tokens": 10}],
            "errors": {"m": {"t": 0.1}},
            "performance_mode": "table",
            "performance": perf,
        }

    def dropped(d: dict) -> set[str]:
        _, table = _table(d)
        return {table.options[k].gpu for k in dominated(table, table.pairs)}

    assert dropped(doc(price_b=2.0, thr_a=0.6, available=None)) == {"dear"}  # ρ = 1/0.6, ⌈ρ⌉ = 2: 2·1 ≤ 2
    assert dropped(doc(price_b=1.9, thr_a=0.6, available=None)) == set()  # 2·1 > 1.9
    assert dropped(doc(price_b=2.0, thr_a=0.6, available=64)) == set()  # a's tier has a limit
    assert len(dropped(doc(price_b=1.0, thr_a=1.0, available=None))) == 1  # equal: one of the two stays
    assert dropped(doc(price_b=1.0, thr_a=1.0, available=64)) == {"cheap"}  # the unlimited twin serves all


def test_matrix_form_has_the_pyomo_models_optimum_with_or_without_link_rows() -> None:
    for seed in range(20):
        _, table = _table(random_table_instance(seed))
        if not table.pairs:
            continue
        a = build_matrix(table).solve()
        b = solve_highs(build_model(table), SolveOptions())
        # Without link_route rows (solve --backend highs-arrays): implied at integrality, so the
        # same optimum; the LP relaxation may only be weaker.
        c = build_matrix(table, route_links=False)
        assert a.status == b.status == c.solve().status, seed
        if b.objective is not None:
            assert a.objective == pytest.approx(b.objective, rel=2e-6, abs=1e-6), seed
            assert c.solve().objective == pytest.approx(b.objective, rel=2e-6, abs=1e-6), seed
            assert c.solve(relax=True).objective <= build_matrix(table).solve(relax=True).objective + 1e-6, seed


def test_open_covers_cut_off_no_plan_and_lift_the_lp_bound() -> None:
    """The open_cover rows (:func:`planner.solvers.milp._open_covers`) on 40 seeded instances: the
    same status and optimum with and without them; the LP relaxation's bound never lower and
    higher on some; the Pyomo form writes as many rows as the matrix form, with the same optimum."""
    lifted = 0
    for seed in range(40):
        _, table = _table(random_table_instance(seed, n_types=6, n_models=3, n_tiers=4))
        if not table.pairs:
            continue
        covered, bare = build_matrix(table), build_matrix(table, covers=False)
        a, b = covered.solve(), bare.solve()
        assert a.status == b.status, seed
        if b.objective is None:
            continue
        assert a.objective == pytest.approx(b.objective, rel=2e-6, abs=1e-6), seed
        lp_a, lp_b = covered.solve(relax=True).objective, bare.solve(relax=True).objective
        assert lp_a >= lp_b - 1e-6, seed
        lifted += lp_a > lp_b * (1 + 1e-6) + 1e-6
        if seed < 5:
            m = build_model(table)
            assert len(m.open_cover) == len(covered.row_lo) - len(bare.row_lo), seed
            pyomo = solve_highs(m, SolveOptions())
            assert pyomo.objective == pytest.approx(a.objective, rel=2e-6, abs=1e-6), seed
            assert solve_highs(build_model(table, ModelScope(covers=False)), SolveOptions()).objective == (
                pytest.approx(a.objective, rel=2e-6, abs=1e-6)
            ), seed
    assert lifted >= 5, lifted


def test_pair_arrays_line_up_with_the_coefficient_dicts() -> None:
    """The one-pass read of every pair's coefficients (what the heuristics' arrays, the matrix
    model, big-M and dominance read) gives each pair its own figures, for every pair, for a
    subset, in another order, and after the pairs were replaced by hand; the cache is not
    pickled."""
    _, table = _table(random_table_instance(3))
    P, load, delay, error = table.pair_arrays()
    assert [tuple(p) for p in P.tolist()] == table.pairs
    for n, (i, k) in enumerate(table.pairs):
        assert (load[n], delay[n], error[n]) == (table.load[i, k], table.delay[i, k], table.error[i, k])
    assert table.pair_arrays()[1] is load  # read once per table
    with pytest.raises(ValueError):
        load[0] = 1.0  # read-only: shared by every caller
    some = table.pairs[::-3]
    Q, lq, dq, eq = table.pair_arrays(some)
    assert [tuple(p) for p in Q.tolist()] == some
    assert list(lq) == [table.load[p] for p in some] and list(eq) == [table.error[p] for p in some]
    assert list(dq) == [table.delay[p] for p in some]
    edited = copy.copy(table)
    edited.pairs = table.pairs[:5]  # a hand-made subset, as a study might do
    assert list(edited.pair_arrays()[1]) == [table.load[p] for p in table.pairs[:5]]
    again = pickle.loads(pickle.dumps(table))
    assert again._pair_cache is None and list(again.pair_arrays()[2]) == list(delay)


def test_options_keep_their_hash_only_within_a_process() -> None:
    """Option caches its hash (the fleet tables look options up ~10⁷ times); string hashes
    differ between processes, so a pickled option (plans and tables go to worker processes)
    must not carry it: one pickled here is found in a dict built in a fresh interpreter."""
    o = Option("m", "g", 2, 1)
    assert hash(o) == hash(Option("m", "g", 2, 1)) and o == Option("m", "g", 2, 1)
    assert "_hash" not in pickle.loads(pickle.dumps(o)).__dict__
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.tp = 4  # type: ignore[misc]
    code = (
        "import pickle, sys; from planner.options import Option; "
        "o = pickle.loads(sys.stdin.buffer.read()); print({Option('m', 'g', 2, 1): 1}.get(o))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(o), capture_output=True, env=env, check=True)
    assert out.stdout.decode().strip() == "1"


def test_the_collector_pause_leaves_the_collector_as_it_found_it() -> None:
    """Loading and the option table pause the cyclic collector (planner.gcpause); afterwards
    it is on again, also after a failure, and stays off where the caller had turned it off."""
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
    _table(random_table_instance(1))
    assert gc.isenabled()
    gc.disable()
    try:
        _table(random_table_instance(1))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_restricted_models_above_the_size_limit_leave_out_the_route_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ROUTE_LINKS_MAX columns the heuristics' restricted models have no link_route rows
    (x ≤ z, one per pair, implied at integrality). Forced on every model of 30 seeded instances
    (on the stalling fixtures too, where the repair's restricted MILPs run): exactly one row per
    pair fewer, and AGH still gives a plan the checker accepts wherever the MILP finds one, never
    below its optimum, and the same plan status."""
    import planner.heuristics.polish as polish

    docs = [random_table_instance(seed) for seed in range(28)]
    docs += [json.loads(gzip.decompress((DATA / f"paper-10x10x10-s{s}.json.gz").read_bytes())) for s in (0, 6)]
    for n, doc in enumerate(docs):
        inst, table = _table(doc)
        if not table.pairs:
            continue
        scope = set(range(len(table.options)))
        linked = polish.scoped_matrix(table, scope)
        with monkeypatch.context() as m:
            m.setattr(polish, "ROUTE_LINKS_MAX", 0)
            bare = polish.scoped_matrix(table, scope)
            plan = solve(inst, "agh", table=table, seed=n)
        assert linked.columns == bare.columns and len(linked.row_lo) - len(bare.row_lo) == len(linked.P)
        exact = solve(inst, "milp", table=table)
        if exact.status == "optimal":
            assert plan.has_solution and check_plan(inst, plan, table).ok, (n, plan.message)
            assert plan.objective >= exact.objective * (1 - 1e-6) - 1e-9
        else:
            assert plan.status == exact.status == "infeasible", (n, plan.status)


def test_freeze_heap_takes_the_live_objects_out_of_the_collectors_walks() -> None:
    """freeze_heap (planner.gcpause) moves every object alive into the permanent generation, which
    no later collection walks; they stay alive and are still freed by reference counting."""
    from planner.gcpause import freeze_heap

    before = gc.get_freeze_count()
    built = [[i] for i in range(10_000)]  # container objects the collector tracks
    try:
        freeze_heap()
        assert gc.get_freeze_count() >= before + len(built)
        assert built[-1] == [9_999]
    finally:
        gc.unfreeze()  # the test process goes on as it was


def test_solve_and_the_bench_freeze_after_their_table_and_before_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """`planner solve` and the bench's instances freeze the heap once the table is built (the
    solver's first arrays otherwise paid for walks over the build's objects: 2.9 s at fleet-200),
    and only then solve."""
    from typer.testing import CliRunner

    import planner.bench as bench
    import planner.cli as cli

    events: list[str] = []
    real_table = cli.build_option_table
    monkeypatch.setattr(cli, "build_option_table", lambda inst: events.append("table") or real_table(inst))
    monkeypatch.setattr(cli, "freeze_heap", lambda: events.append("freeze"))
    import planner.solvers as solvers

    real_solve = solvers.solve
    monkeypatch.setattr(solvers, "solve", lambda *a, **k: events.append("solve") or real_solve(*a, **k))
    res = CliRunner().invoke(cli.app, ["solve", str(Path(__file__).parents[1] / "instances" / "table-demo.yaml")])
    assert res.exit_code == 0, res.output
    assert events == ["table", "freeze", "solve"]

    events.clear()
    monkeypatch.setattr(bench, "freeze_heap", lambda: events.append("freeze"))
    _, table, _ = bench.timed_instance(bench.FAMILIES["table-5x5x5"], 0)
    assert events == ["freeze"] and table.pairs


def test_fleet_instances_are_deterministic_with_spot_and_region_tiers() -> None:
    from planner.generate import paper_instance

    a = paper_instance(12, 8, 30, seed=3, fleet=True)
    assert a == paper_instance(12, 8, 30, seed=3, fleet=True)
    assert len(a["gpus"]) == 30 and len({g["id"] for g in a["gpus"]}) == 30
    spot = [g for g in a["gpus"] if g["id"].endswith("-spot")]
    assert spot and all("available" in g for g in spot)  # spot capacity always has a limit
    _, table = _table(a)
    assert table.pairs
    # A GPU's tiers share the hardware's figures: same (model, tp, type) → same throughput.
    by_hw: dict[tuple, set[float]] = {}
    hw = {g["id"]: g["price_source"].split(":")[1].split(" at ")[0].strip() for g in a["gpus"]}
    for e in a["performance"]:
        by_hw.setdefault((e["model"], hw[e["gpu"]], e["tp"], e["query_type"]), set()).add(e["throughput_rps"])
    assert all(len(v) == 1 for v in by_hw.values())
    assert any(len([g for g in a["gpus"] if hw[g["id"]] == h]) > 1 for h in set(hw.values()))


def test_generate_cli_needs_fleet_beyond_the_provider_pairs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from planner.cli import app

    out = tmp_path / "fleet.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--types", "3", "--models", "3", "--tiers", "30", "--out", str(out)])
    assert res.exit_code == 2 and "--tiers" in res.output and not out.exists()
    args = ["generate", "--types", "3", "--models", "3", "--tiers", "30", "--fleet", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert out.exists() and "fleet-3x3x30" in out.read_text()


def test_agh_gives_each_phase_what_is_left_of_its_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every restricted MILP (polish rounds, repair) gets what is left of AGH's own time limit,
    not the whole of it: the second polish once got the first's limit again, so a solve under
    ``--time-limit 5`` ran 7.3–8.3 s on fleet-100x30x30."""
    import time

    from planner.generate import paper_instance
    from planner.heuristics import polish
    from planner.heuristics.methods import solve_agh

    real = polish.solve_scope
    calls: list[tuple[float, float]] = []

    def spy(data, scope, time_limit, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((time.perf_counter(), time_limit))
        return real(data, scope, time_limit, *args, **kwargs)

    monkeypatch.setattr(polish, "solve_scope", spy)
    inst, table = _table(paper_instance(12, 10, 10, 0))
    limit = 30.0  # not binding: AGH ends on its work limits, the polish limits still shrink
    t0 = time.perf_counter()
    plan = solve_agh(table, seed=0, time_limit=limit)
    assert len(calls) >= 2, "the instance should take two polish rounds"
    for at, given in calls:
        assert at + given <= t0 + limit + 0.2  # the limit is taken a moment before the call (a loaded CI)
    assert plan.has_solution and check_plan(inst, plan, table).ok
    assert "time limit" not in plan.message

    # A limit spent by the starts: the best start is the plan, and the plan says why.
    calls.clear()
    plan = solve_agh(table, seed=0, time_limit=1e-3)
    assert not calls and plan.has_solution and check_plan(inst, plan, table).ok
    assert "time limit ended the search before the polish" in plan.message


def test_agh_under_a_time_limit_builds_the_slope_start_and_rens_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a time limit AGH's first start is the plain slope-scaling one and RENS runs right
    after it; its answer is a start, and no GH pass follows (each ~0.5 s at fleet-200x40x40, where
    a 5-s limit used to end among them, 37–54% above the bound). Without a limit the order is GH
    first, as before, except on a compact table (methods.COMPACT_PAIRS), where the slope starts
    come first and the GH passes run only if neither finds a plan; every slope start keeps its
    seed either way."""
    from planner.generate import paper_instance
    from planner.heuristics import methods

    events: list[tuple[str, object]] = []
    real = (methods.construct, methods.slope_scaling, methods.rens)
    answers: list[float] = []

    def construct_spy(data, order):  # type: ignore[no-untyped-def]
        events.append(("gh", None))
        return real[0](data, order)

    def slope_spy(data, **kw):  # type: ignore[no-untyped-def]
        events.append(("slope", kw["seed"]))
        return real[1](data, **kw)

    def rens_spy(data, scope, time_limit, start=None):  # type: ignore[no-untyped-def]
        events.append(("rens", None))
        state = real[2](data, scope, time_limit, start)
        answers.append(state.cost if state is not None else float("inf"))
        return state

    monkeypatch.setattr(methods, "construct", construct_spy)
    monkeypatch.setattr(methods, "slope_scaling", slope_spy)
    monkeypatch.setattr(methods, "rens", rens_spy)
    _, table = _table(paper_instance(12, 10, 10, 0))
    data = Data.from_table(table)
    assert methods.compact(data)
    methods.starts(data, 0)
    assert [e[0] for e in events] == ["slope", "slope"]  # both found plans: no GH pass
    slope_seeds = list(events)
    events.clear()
    monkeypatch.setattr(methods, "slope_scaling", lambda data, **kw: slope_spy(data, **kw) and None)
    found, _, _, _ = methods.starts(data, 0)
    assert [e[0] for e in events[:3]] == ["slope", "slope", "gh"] and found  # no slope plan: GH runs
    events.clear()
    monkeypatch.setattr(methods, "slope_scaling", slope_spy)
    monkeypatch.setattr(methods, "COMPACT_PAIRS", 0)  # as on a fleet table
    methods.starts(data, 0)
    free = list(events)
    assert free[0][0] == "gh" and ("rens", None) not in free
    assert [e for e in free if e[0] == "slope"] == slope_seeds
    events.clear()
    found_limited, _, _, _ = methods.starts(data, 0, deadline=methods.MaxRuntime(60.0))
    assert [e[0] for e in events[:2]] == ["slope", "rens"]
    assert answers[0] < float("inf") and ("gh", None) not in events  # no GH pass after RENS's plan
    assert [e for e in events if e[0] == "slope"] == [e for e in free if e[0] == "slope"]
    assert answers and found_limited[0].cost <= answers[0] + 1e-9  # RENS's answer was one of the starts
    assert all(s.feasible() for s in found_limited)


def test_a_crowded_limit_leaves_out_the_slope_start_that_cannot_end_in_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Under a limit of which the first slope start and RENS use more than CROWDED_AT (half the
    constructions' share, STARTS_SHARE), on a table that is not compact, the second slope start
    is left out and ``starts`` says the limit is crowded (CROWDED_RENS); with time to spare, or
    without a limit, or on a compact table, both slope starts run and it is not."""
    import time

    from planner.generate import paper_instance
    from planner.heuristics import methods

    slopes: list[int] = []
    real = methods.slope_scaling

    def slow_slope(data, **kw):  # type: ignore[no-untyped-def]
        slopes.append(kw["seed"])
        time.sleep(0.5)  # as at fleet scale, where a slope start and RENS take 1.2-2.8 s of a 5-s limit
        return real(data, **kw)

    monkeypatch.setattr(methods, "slope_scaling", slow_slope)
    _, table = _table(paper_instance(12, 10, 10, 0))
    data = Data.from_table(table)
    assert methods.compact(data)
    _, _, _, crowded = methods.starts(data, 0, deadline=methods.MaxRuntime(1.6))
    assert not crowded  # compact: never crowded
    monkeypatch.setattr(methods, "COMPACT_PAIRS", 0)  # as on a fleet table
    for limit, want in ((1.6, True), (60.0, False), (float("inf"), False)):
        slopes.clear()
        found, _, _, crowded = methods.starts(data, 0, deadline=methods.MaxRuntime(limit))
        assert crowded is want and len(slopes) == (1 if want else 2), limit
        assert found and all(s.feasible() for s in found)
    # AGH then runs RENS once more before the polish, over the second polish's scope
    scopes: list[set[int]] = []
    real_rens = methods.rens

    def rens_spy(data, scope, time_limit, start=None):  # type: ignore[no-untyped-def]
        scopes.append(set(scope))
        return real_rens(data, scope, time_limit, start)

    monkeypatch.setattr(methods, "rens", rens_spy)
    plan = methods.solve_agh(table, seed=0, time_limit=1.6)
    assert plan.has_solution and check_plan(table.instance, plan, table).ok
    assert any(methods.cheapest_per_type(data, 2) <= sc for sc in scopes)
    monkeypatch.setattr(methods, "CROWDED_RENS", False)
    slopes.clear()
    scopes.clear()
    _, _, _, crowded = methods.starts(data, 0, deadline=methods.MaxRuntime(1.6))
    assert not crowded
    methods.solve_agh(table, seed=0, time_limit=1.6)
    assert not any(methods.cheapest_per_type(data, 2) <= sc for sc in scopes)


def test_rens_falls_back_on_a_box_that_holds_its_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where neither RENS box holds a plan (⌊y_LP⌋..⌈y_LP⌉, then 0..⌈y_LP⌉), RENS with a start
    solves 0 ≤ y ≤ max(⌈y_LP⌉, y_start), which holds the start: it returns a feasible state no
    dearer than the start; without a start it returns None. The boxes that exclude the start are
    made infeasible here (as fleet-200x40x40 seed 9's were, by its GPU limits); the last one is
    solved for real."""
    from planner.generate import paper_instance
    from planner.heuristics import methods, polish
    from planner.solvers.backends import BackendResult
    from planner.solvers.matrix import MatrixModel

    _, table = _table(paper_instance(12, 10, 10, 0))
    data = Data.from_table(table)
    found, touched, _, _ = methods.starts(data, 0)
    start = found[0]
    scope = polish.scope_of(data, [start], methods.top_touched(touched))
    boxes: list[bool] = []  # per MILP solve: did its box hold the start's counts?
    real = MatrixModel.solve

    def solve(self, **kw):  # type: ignore[no-untyped-def]
        if kw.get("relax") or kw.get("bounds") is None:
            return real(self, **kw)
        lo, hi = kw["bounds"]
        ys = start.y[self.K]
        holds = bool(np.all(lo[self.col["y"]] <= ys) and np.all(ys <= hi[self.col["y"]]))
        boxes.append(holds)
        return real(self, **kw) if holds else BackendResult("infeasible", None, None, 0.0, "INFEASIBLE")

    monkeypatch.setattr(MatrixModel, "solve", solve)
    got = polish.rens(data, scope, 60.0, start)
    assert got is not None and got.feasible() and got.cost <= start.cost + 1e-6
    assert boxes == [False, False, True]  # the LP boxes leave the start out on this table
    boxes.clear()
    assert polish.rens(data, scope, 60.0) is None or boxes[-1]  # without a start: two boxes at most
    assert len(boxes) <= 2


def test_lp_neighbourhood_holds_the_scope_lp_optimum_and_the_start() -> None:
    """The LP neighbourhood (polish.lp_neighbourhood) holds the scope LP's support and the
    start's open options: the restricted LP over it has the whole scope's LP optimum, and a
    polish over it starts from the start and ends no dearer."""
    from planner.generate import paper_instance
    from planner.heuristics import methods, polish

    _, table = _table(paper_instance(12, 10, 10, 0))
    data = Data.from_table(table)
    found, touched, _, _ = methods.starts(data, 0)
    first, extra = methods.polish_scope(found, touched)
    scope = polish.scope_of(data, first, extra)
    nb = polish.lp_neighbourhood(data, scope, first[0])
    start_open = {int(k) for k in np.flatnonzero(first[0].y[: data.K] > 0)}
    assert start_open <= nb <= scope and len(nb) < len(scope)

    def lp(options: set[int]) -> float:
        res = polish.scoped_matrix(table, options, data.twin_class).solve(relax=True)
        assert res.objective is not None
        return res.objective

    assert lp(nb) == pytest.approx(lp(scope), rel=1e-7)
    state = polish.polish(data, first, extra=extra, neighbourhood_from=0)
    assert state is not None and state.feasible() and state.cost <= first[0].cost + 1e-9
    # Without a start (every start stalled) the scope is not cut: the LP's support alone may
    # hold no plan, or a dear one.
    cut: list[set[int]] = []
    real = polish.lp_neighbourhood
    try:
        polish.lp_neighbourhood = lambda *a, **k: cut.append(set()) or real(*a, **k)  # type: ignore[assignment]
        alone = polish.polish(data, [], extra=scope, neighbourhood_from=0)
    finally:
        polish.lp_neighbourhood = real
    whole = polish.polish(data, [], extra=scope)
    assert not cut and alone is not None and whole is not None and alone.cost == pytest.approx(whole.cost)


def test_agh_over_lp_neighbourhoods_finds_checked_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every polish over its LP neighbourhood (NEIGHBOURHOOD_PAIRS = 0: the bench's small
    families never reach the threshold), AGH still finds a plan exactly where the MILP does, the
    checker accepts it, and it never undercuts the proven optimum."""
    from planner.heuristics import methods
    from tests.conftest import make_instance

    monkeypatch.setattr(methods, "NEIGHBOURHOOD_PAIRS", 0)
    for seed in range(100, 115):
        inst = make_instance(random_table_instance(seed), name=f"r{seed}")
        table = build_option_table(inst)
        exact = solve(inst, "milp", table=table, gap=1e-9)
        plan = solve(inst, "agh", table=table, seed=seed)
        assert plan.has_solution == (exact.status == "optimal"), seed
        if plan.has_solution:
            assert check_plan(inst, plan, table).ok, seed
            assert plan.objective >= exact.objective * (1 - 1e-6) - 1e-6, seed


def test_rens_plans_are_plans_of_the_full_model() -> None:
    """RENS (AGH's quick step under a time limit) answers with plans the checker accepts and
    never below the proven optimum, over the whole table and over a small scope."""
    from planner.heuristics.methods import _plan
    from planner.heuristics.polish import rens
    from planner.heuristics.repair import cheapest_per_type

    found = 0
    for seed in range(200, 210):
        inst, table = _table(random_table_instance(seed))
        exact = solve(inst, "milp", table=table, gap=1e-9)
        data = Data.from_table(table)
        for scope in (set(range(data.K)), cheapest_per_type(data, 2)):
            state = rens(data, scope, 30.0)
            if state is None:
                continue
            found += 1
            assert exact.status == "optimal" and state.feasible()
            plan = _plan(table, "agh", state, "", 0.0, seed, False)
            assert check_plan(inst, plan, table).ok
            assert plan.objective >= exact.objective * (1 - 1e-7) - 1e-7
    assert found >= 10


def test_twin_classes_route_twins_together_with_the_same_optimum() -> None:
    """Twin classes (build_matrix's ``classes``: options with the same pairs and figures, one GPU's
    deployment on several tiers) on small fleet instances: the same status and optimum as the
    model with one routing column per option, fewer x columns, and the class routing split over
    the twins (MatrixModel.routing) is a plan the checker accepts at the same cost."""
    from planner.generate import paper_instance
    from planner.plan import build_plan
    from planner.solvers.matrix import solution_of, twin_classes

    merged = 0
    for seed in range(5):
        _, table = _table(paper_instance(6, 3, 10, seed, fleet=True))
        if not table.pairs:
            continue
        labels = twin_classes(table)
        plain, twins = build_matrix(table), build_matrix(table, classes=labels)
        a, b = plain.solve(), twins.solve()
        assert a.status == b.status, seed
        assert len(twins.P) <= len(plain.P), seed
        merged += len(plain.P) - len(twins.P)
        if a.objective is None:
            continue
        assert b.objective == pytest.approx(a.objective, rel=2e-6, abs=1e-6), seed
        replicas, routing, unserved = solution_of(twins, b.values)
        plan = build_plan(
            table, method="milp", status="feasible", replicas=replicas, routing=routing, unserved=unserved
        )
        report = check_plan(table.instance, plan)
        assert report.ok, (seed, report)
        assert plan.objective == pytest.approx(a.objective, rel=1e-6, abs=1e-6), seed
        # a start given per option sums over each class: the plain optimum is a feasible start
        start = twins.start_of(plain.replicas(a.values), plain.routing(a.values))
        c = twins.solve(start=start)
        assert c.objective == pytest.approx(a.objective, rel=2e-6, abs=1e-6), seed
        # the exact method's arrays backend (which routes twins as classes)
        exact = solve(table.instance, "milp", table=table, backend="highs-arrays")
        assert exact.objective == pytest.approx(a.objective, rel=2e-6, abs=1e-6), seed
        assert check_plan(table.instance, exact).ok, seed
        # restricted to a scope, as the heuristics' RENS and polishes solve it
        scope = np.flatnonzero(table.tier % 3 != 0)
        r1 = build_matrix(table, options=scope).solve()
        r2 = build_matrix(table, options=scope, classes=labels).solve()
        assert r1.status == r2.status, seed
        if r1.objective is not None:
            assert r2.objective == pytest.approx(r1.objective, rel=2e-6, abs=1e-6), seed
    assert merged > 0  # the instances have twins at all
