"""Every method returns checker-accepted plans; heuristics never beat the proven optimum."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from planner.checker import check_plan
from planner.generate import paper_instance, random_table_instance
from planner.options import Option, build_option_table
from planner.plan import build_plan, plan_document
from planner.robustness import stress, tightened
from planner.solvers import solve
from tests.conftest import make_instance

HEURISTICS = ("gh", "agh")
BASELINES = ("cheapest-tier", "best-model", "melange")
SEEDS = range(100, 260)  # 160 seeded instances here + 60 hypothesis examples below


def check_all(seed: int, density: float = 0.7) -> None:
    inst = make_instance(random_table_instance(seed, density=density), name=f"r{seed}")
    table = build_option_table(inst)
    exact = solve(inst, "milp", table=table, gap=1e-9)
    for method in (*HEURISTICS, *BASELINES):
        plan = solve(inst, method, table=table, seed=seed)
        assert plan.status in ("optimal", "feasible", "no_solution", "infeasible"), (method, plan.status)
        if method in HEURISTICS:
            # The feasibility repair: a plan exactly where the MILP finds one, "infeasible" only
            # where the MILP proves it (and then with a diagnosis).
            assert plan.has_solution == (exact.status == "optimal"), (method, plan.status, exact.status)
            if plan.status == "infeasible":
                assert exact.status == "infeasible" and plan.diagnosis is not None
        if not plan.has_solution:
            assert plan.status != "infeasible" or exact.status == "infeasible", method
            continue
        report = check_plan(inst, plan, table)
        assert report.ok, (method, report.violations)
        # A heuristic's plan is feasible, so it can never cost less than the proven optimum ...
        assert exact.status == "optimal", (method, "found a plan where the MILP proved infeasibility")
        # ... by more than the checker's own tolerances can buy: a plan within them (1e-6 on a
        # row) may undercut the optimum slightly (seed 10001, density 0.1875: the cheapest-tier
        # plan's accuracy row 3.2e-7 above its limit, which its solver's round-off allows, buys
        # 6.9e-7 of the objective; with its replicas fixed the exact model's routing costs the same
        # as the optimum's).
        assert plan.objective >= exact.objective * (1 - 1e-6) - 1e-6, method
        # ... and it says optimal only with a bound that proves it.
        if plan.status == "optimal":
            assert plan.bound is not None and plan.gap is not None and plan.gap <= 1e-9


@pytest.mark.parametrize("seed", SEEDS)
def test_seeded(seed: int) -> None:
    check_all(seed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(10_000, 10**7), density=st.floats(0.15, 1.0))
@example(seed=540982, density=0.1875)  # the generator once drew no performance entry here
@example(seed=10001, density=0.1875)  # a plan within the checker's tolerance under the optimum
def test_property(seed: int, density: float) -> None:
    check_all(seed, density)


def test_agh_matches_milp_on_most_small_instances() -> None:
    """On the seeded family AGH finds the proven optimum (to 1e-6) on most feasible instances."""
    hits = total = 0
    for seed in range(100, 140):
        inst = make_instance(random_table_instance(seed), name="r")
        table = build_option_table(inst)
        exact = solve(inst, "milp", table=table, gap=1e-9)
        if exact.status != "optimal":
            continue
        total += 1
        agh = solve(inst, "agh", table=table)
        hits += agh.objective is not None and agh.objective <= exact.objective * (1 + 1e-6) + 1e-6
    assert total >= 15 and hits >= 0.8 * total, (hits, total)


def test_deterministic_for_a_seed() -> None:
    inst = make_instance(paper_instance(6, 6, 6, seed=3), name="p")
    table = build_option_table(inst)
    for method in HEURISTICS:
        a, b = (plan_document(solve(inst, method, table=table, seed=7)) for _ in range(2))
        a.pop("solve_seconds")
        b.pop("solve_seconds")
        assert a == b, method


def test_bound_is_reported_and_never_above_the_optimum() -> None:
    inst = make_instance(paper_instance(5, 5, 5, seed=2), name="p")
    table = build_option_table(inst)
    exact = solve(inst, "milp", table=table)
    for method in HEURISTICS:
        plan = solve(inst, method, table=table, bound=True)
        assert plan.bound is not None and plan.bound <= exact.objective * (1 + 1e-7)
        assert plan.gap == pytest.approx((plan.objective - plan.bound) / plan.objective)


def test_warm_start_keeps_the_optimum(backend: str) -> None:
    inst = make_instance(paper_instance(5, 5, 5, seed=1), name="p")
    table = build_option_table(inst)
    cold = solve(inst, "milp", table=table, backend=backend)
    start = solve(inst, "agh", table=table)
    warm = solve(inst, "milp", table=table, backend=backend, warm_start=start)
    assert warm.status == cold.status == "optimal"
    assert warm.objective == pytest.approx(cold.objective, rel=1e-6)


def test_headroom_plans_survive_their_inflation() -> None:
    # Seed 6: the instance stays feasible with SLOs and error limits tightened by 1.2.
    inst = make_instance(paper_instance(6, 6, 6, seed=6), name="p")
    table = build_option_table(inst)
    tight = tightened(inst, 0.2, 0.2)
    plan = solve(tight, "agh", table=build_option_table(tight))
    from planner.robustness import on_original

    plan = on_original(table, plan, 0.2, 0.2)
    assert plan.status == "feasible" and check_plan(inst, plan, table).ok
    (at12,) = stress(table, plan, [1.2])
    assert at12.violating_demand_share == 0.0


def test_stress_by_hand() -> None:
    # One type, SLO ttft 1 s; 40% routed to an option with ttft 0.9 s, 60% to one with 0.5 s.
    # ×1.2: 1.08 s > 1 s breaks the 40%; 0.6 s holds. Errors 0.1 and 0.2 vs max_error 0.2:
    # routed error 0.4·0.1 + 0.6·0.2 = 0.16; ×1.2 → 0.192 ≤ 0.2 holds; ×1.5 → 0.24 breaks, and
    # moving 0.04 / (0.3 − 0.15) = 0.2667 of the type from the worse model restores it.
    doc = {
        "period_hours": 1,
        "models": [{"id": "a", "params_b": 1}, {"id": "b", "params_b": 1}],
        "gpus": [{"id": "g", "price_per_hour": 1.0}],
        "query_types": [
            {
                "id": "t",
                "arrival_rate": 1,
                "input_tokens": 10,
                "output_tokens": 10,
                "slo": {"ttft_s": 1.0},
                "max_error": 0.2,
            }
        ],
        "errors": {"a": {"t": 0.1}, "b": {"t": 0.2}},
        "performance_mode": "table",
        "performance": [
            {"model": "a", "gpu": "g", "query_type": "t", "throughput_rps": 0.4, "ttft_s": 0.9},
            {"model": "b", "gpu": "g", "query_type": "t", "throughput_rps": 0.6, "ttft_s": 0.5},
        ],
    }
    inst = make_instance(doc)
    table = build_option_table(inst)
    oa, ob = (Option(m, "g", 1, 1) for m in ("a", "b"))
    plan = build_plan(
        table,
        method="manual",
        status="feasible",
        replicas={oa: 1, ob: 1},
        routing={"t": {oa: 0.4, ob: 0.6}},
        unserved={"t": 0.0},
    )
    assert check_plan(inst, plan, table).ok
    r1, r12, r15 = stress(table, plan, [1.0, 1.2, 1.5])
    assert r1.violating_demand_share == 0.0
    assert r12.rows[0].slo_share == pytest.approx(0.4) and not r12.rows[0].accuracy_broken
    assert r15.rows[0].accuracy_broken
    assert r15.rows[0].accuracy_share == pytest.approx(0.04 / 0.15)
    assert r15.violating_demand_share == pytest.approx(0.4)


def test_generator_is_deterministic_and_sized() -> None:
    a = paper_instance(7, 8, 9, seed=4)
    b = paper_instance(7, 8, 9, seed=4)
    assert a == b
    assert (len(a["query_types"]), len(a["models"]), len(a["gpus"])) == (7, 8, 9)
    m = paper_instance(5, 5, 5, seed=4, mode="model")
    assert m["performance_mode"] == "model" and "performance" not in m
    for doc in (a, m):
        inst = make_instance(doc, name=doc["name"])
        assert solve(inst, "agh").status in ("feasible", "no_solution", "optimal")


def _fluid_data(seed: int):  # type: ignore[no-untyped-def]
    """A synthetic :class:`Data` for the fluid routing: 12 options over 4 models (an option's
    error is its model's), with ties in error across models and in price across options."""
    import numpy as np

    from planner.heuristics.state import Data

    rng = np.random.default_rng(seed)
    n, K, M = 8, 12, 4
    model_of = rng.integers(0, M, K)
    model_err = rng.choice([0.05, 0.1, 0.1, 0.2], size=(n, M))  # repeated values: ties in error
    ok = np.zeros((n, K + 1), dtype=bool)
    ok[:, :K] = rng.random((n, K)) < 0.7
    L = np.zeros((n, K + 1))
    L[:, :K] = np.where(ok[:, :K], rng.choice([0.5, 1.0, 2.0], size=(n, K)), 0.0)  # repeated: ties in price
    D = np.zeros((n, K + 1))
    D[:, :K] = np.where(ok[:, :K], rng.choice([0.0, 0.1], size=(n, K)), 0.0)
    D[:, K] = 5.0
    E = np.zeros((n, K + 1))
    E[:, :K] = np.where(ok[:, :K], model_err[:, model_of], 0.0)
    zeta = rng.choice([0.0, 0.2, 1.0], size=n)
    ok[:, K] = zeta > 0
    eps = rng.choice([0.08, 0.1, 0.15, np.inf], size=n)
    return Data(
        table=None,  # type: ignore[arg-type]
        n=n,
        K=K,
        L=L,
        D=D,
        E=E,
        ok=ok,
        rental=np.append(rng.choice([1.0, 2.0], size=K), 0.0),
        storage=np.zeros(K + 1),
        gpus=np.append(np.ones(K, dtype=int), 0),
        tier=np.append(np.zeros(K, dtype=int), -1),
        umax=0.8,
        eps=eps,
        zeta=zeta,
        lam=np.ones(n),
        avail=np.array([np.inf]),
        budget=np.inf,
        model_of=model_of,
        upgrades=tuple(() for _ in range(K)),
    )


@pytest.mark.parametrize("seed", range(40))
def test_fluid_routing_over_the_models_is_each_types_lp_optimum(seed: int) -> None:
    """The slope starts' routing (:func:`planner.heuristics.fluid.route`, fronts over models) gives
    each type the optimum of its LP min Σ c_k x_k + ζ·unserved s.t. Σ x_k + u = 1,
    Σ e_k x_k ≤ ε, u ∈ {0, ζ}, found here by brute force over every option and pair of options
    (an optimum of two rows has at most two options)."""
    import itertools
    import math

    import numpy as np

    from planner.heuristics.fluid import route

    d = _fluid_data(seed)
    K = d.K
    slope = np.random.default_rng(seed + 1).choice([1.0, 1.5, 3.0], size=K)
    C = np.where(d.ok[:, :K], slope * d.L[:, :K] + d.D[:, :K], math.inf)
    best = np.full(d.n, math.inf)
    for i in range(d.n):
        for u in {0.0, float(d.zeta[i])}:
            if u >= 1.0:
                best[i] = min(best[i], d.D[i, K])
                continue
            eps = d.eps[i] / (1 - u)
            ks = np.flatnonzero(d.ok[i, :K])
            for a in ks:
                if d.E[i, a] <= eps + 1e-12:
                    best[i] = min(best[i], (1 - u) * C[i, a] + u * d.D[i, K])
            for a, b in itertools.permutations(ks, 2):
                if d.E[i, a] < eps < d.E[i, b]:
                    t = (eps - d.E[i, a]) / (d.E[i, b] - d.E[i, a])
                    best[i] = min(best[i], (1 - u) * ((1 - t) * C[i, a] + t * C[i, b]) + u * d.D[i, K])
    X = route(d, slope)
    if X is None:  # some type has no routing at all
        assert not np.isfinite(best).all()
        return
    for i in range(d.n):
        row = X[i]
        assert row.sum() == pytest.approx(1.0)
        assert np.all(row[:K][~d.ok[i, :K]] == 0)
        assert row[:K] @ d.E[i, :K] <= d.eps[i] + 1e-9
        assert row[K] in (0.0, pytest.approx(d.zeta[i]))
        used = row[:K] > 0
        got = float(row[:K][used] @ C[i, used] + row[K] * d.D[i, K])
        assert got == pytest.approx(best[i], rel=1e-12, abs=1e-12), (i, got, best[i])
