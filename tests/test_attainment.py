"""Attainment targets (model mode): length distributions, measured capacity, the token budget as a
planned knob, the lazy solve, and table / mean modes unchanged."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planner import capacity
from planner.checker import check_plan
from planner.errors import InputError
from planner.lengths import LengthDistribution
from planner.loader import load_instance, load_instance_data
from planner.options import build_option_table, check_pairs, needs_checks
from planner.plan import plan_pairs, read_plan, write_plan
from planner.sim.cluster import parse_option, replica_model, simulator_for_option, simulator_for_plan
from planner.sim.engine import SimConfig
from planner.solvers import solve
from tests.conftest import INSTANCES

AZURE = INSTANCES / "azure-2023.yaml"


def _small_doc(**extra: Any) -> dict[str, Any]:
    """One cheap model on two tiers, two types with length percentiles, budgets 512 and 2048."""
    return {
        "name": "attain-small",
        "include": [str(INSTANCES.parent / "models" / "llms.yaml"), str(INSTANCES.parent / "models" / "gpus.yaml")],
        "models": ["qwen2.5-7b"],
        "gpus": ["l4", "a100-80gb"],
        "parallelism": {"tp": [1], "pp": [1]},
        "max_utilization": 0.9,
        "engine": {"max_num_batched_tokens": [512, 2048]},
        "query_types": [
            {
                "id": "chat",
                "arrival_rate": 3.0,
                "input_tokens": 800,
                "input_tokens_p50": 600,
                "input_tokens_p90": 1800,
                "output_tokens": 150,
                "output_tokens_p50": 110,
                "output_tokens_p90": 330,
                "slo": {"ttft_s": 2.0, "tpot_s": 0.1, "e2e_s": 40},
            },
            {
                "id": "code",
                "arrival_rate": 1.0,
                "input_tokens": 2000,
                "input_tokens_p90": 5000,
                "output_tokens": 30,
                "output_tokens_p90": 60,
                "output_tokens_p99": 150,
                "slo": {"ttft_s": 4.0, "tpot_s": 0.1, "e2e_s": 20},
            },
        ],
        **extra,
    }


def small_instance(**extra: Any) -> Any:
    return load_instance_data(_small_doc(**extra), "attain-small.yaml")


# ------------------------------------------------------------------------------ lengths


def test_length_distribution_matches_its_figures() -> None:
    d = LengthDistribution.of(2048, p50=1469, p90=5188, p99=7436, max_tokens=7437)
    x = d.sample(4000, np.random.default_rng(0))
    assert np.median(x) == pytest.approx(1469, rel=0.02)
    assert np.quantile(x, 0.9) == pytest.approx(5188, rel=0.02)
    assert np.quantile(x, 0.99) == pytest.approx(7436, rel=0.02)
    assert x.max() <= 7437 and x.min() >= 1
    # median solved from the mean when not given
    e = LengthDistribution.of(460, p90=991, max_tokens=1024)
    y = e.sample(4000, np.random.default_rng(1))
    assert y.mean() == pytest.approx(460, rel=0.02) and abs(e.mean_error) < 0.01
    assert np.quantile(y, 0.9) == pytest.approx(991, rel=0.02)
    # no percentile: the mean itself (the mean-latency model's assumption)
    assert set(LengthDistribution.of(300).sample(50, np.random.default_rng(2))) == {300}


def test_percentiles_out_of_order_are_bad_input() -> None:
    with pytest.raises(InputError) as err:
        small_instance(
            query_types=[
                {
                    "id": "a",
                    "arrival_rate": 1.0,
                    "input_tokens": 100,
                    "output_tokens": 10,
                    "input_tokens_p50": 90,
                    "input_tokens_p90": 80,
                }
            ]
        )
    assert "input_tokens_p90" in str(err.value)


def test_slo_attainment_keys() -> None:
    inst = small_instance(slo_attainment=0.95)
    assert inst.attainment(inst.query_types[0]) == 0.95
    mean = small_instance(slo_attainment="mean")
    assert mean.attainment(mean.query_types[0]) is None
    with pytest.raises(InputError):
        small_instance(slo_attainment=1.5)


# ------------------------------------------------------------------------------ capacity


def test_attainment_falls_with_the_rate_and_the_capacity_is_its_edge() -> None:
    inst = small_instance()
    opt = parse_option("qwen2.5-7b/a100-80gb/1/1/2048")
    key = capacity.make_key(inst, opt, 0, 0.99)
    cap = capacity.measure(inst, key)
    assert cap.simulated and cap.rate_rps > 0 and cap.attainment >= 0.99
    gaps, inp, out = capacity.samples(inst, opt, 0)
    limits = (2.0, 0.1, 40.0)
    warm = int(capacity.WARMUP * len(gaps))

    def attain(rate: float) -> float:
        return float(capacity._met(capacity._run(inst, key, rate, gaps, inp, out)[warm:], limits).mean())

    rates = cap.rate_rps * np.array([0.25, 0.5, 1.0, 1.5, 3.0])
    got = [attain(r) for r in rates]
    assert all(a >= b - 0.002 for a, b in itertools.pairwise(got))  # monotone (same draws)
    assert got[2] >= 0.99 and got[-1] < 0.99
    # the table's latencies at the target quantile respect the SLO at that rate
    assert cap.ttft_s <= 2.0 and cap.tpot_s <= 0.1 and cap.e2e_s <= 40.0
    # the analytic estimate is in the right range (the lazy loop corrects it when used)
    engine = capacity.Engine.of(replica_model(inst, opt), opt)
    _, i2, o2 = capacity.samples(inst, opt, 0, capacity.ESTIMATE_REQUESTS)
    est = capacity.estimate_figures(engine, i2, o2, limits, 0.99)
    assert 0.5 < est.rate_rps / cap.rate_rps < 2.0


def test_chunk_saturated_pool_tpot_is_the_chunk_iteration_time() -> None:
    """A prompt backlog keeps every iteration full: a long decode's TPOT is then exactly the
    iteration with a full chunk (budget − 1 prompt tokens + itself), as the performance model
    times it (hand-computable: replay the schedule with ReplicaModel.batch_time)."""
    inst = small_instance()
    opt = parse_option("qwen2.5-7b/a100-80gb/1/1/512")
    rm = replica_model(inst, opt)
    b = 512
    sim = simulator_for_option(inst, opt, 1, SimConfig(policy="jsq"), [0])
    done: dict[int, tuple[float, float]] = {}
    orig = sim.metrics.finished

    def hook(r: Any, now: float, pool: str, worker: int) -> None:
        done[r.uid] = (r.first, now)
        orig(r, now, pool, worker)

    sim.metrics.finished = hook  # type: ignore[method-assign]
    out = 40
    # request 0 (16 tokens, 40 out) first, then 50 prompts of exactly 5·511 tokens behind it
    reqs = [(0, 0, 0.0, 16, out)] + [(k, 0, 1e-6 * k, 5 * (b - 1), 1) for k in range(1, 51)]
    sim.run(reqs)
    first, end = done[0]
    # expected: after its prefill, each of its 39 decode steps rides with a 511-token chunk of the
    # backlog; chunk j of a prompt sits over j·511 cached tokens (prompts go one after another)
    total, ctx = 0.0, 16 + 1
    for step in range(out - 1):
        j = step % 5
        total += rm.batch_time([(b - 1, j * (b - 1))], 1, ctx)
        ctx += 1
    assert (end - first) / (out - 1) == pytest.approx(total / (out - 1), rel=1e-9)
    full = rm.batch_time([(b - 1, 0)], 1, 17)
    assert (end - first) / (out - 1) >= full * (1 - 1e-9)


# ------------------------------------------------------------------------------ token budget


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    inst = small_instance()
    plan = solve(inst, "milp")
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    write_plan(path, plan)
    return inst, plan, path


def test_lazy_solve_uses_only_simulated_pairs(small_plan: tuple[Any, Any, Path]) -> None:
    inst, plan, _ = small_plan
    assert plan.status == "optimal" and plan.deployments
    table = check_pairs(build_option_table(inst), plan_pairs(plan))
    for o, t in plan_pairs(plan):
        row = table.row(o, t)
        assert row is not None and row.source == "simulated" and row.eligible
    assert check_plan(inst, plan).ok, check_plan(inst, plan).violations


def test_solve_does_not_depend_on_what_the_process_simulated_before(small_plan: tuple[Any, Any, Path]) -> None:
    """A table starts from the estimates even when this process has simulated pairs already (the
    plan's, and here every pair of the first option): the lazy loop takes the same path and the
    plan is the same, however warm the in-memory cache is."""
    inst, plan, _ = small_plan
    table = build_option_table(inst)
    first = table.options[0]
    warm = check_pairs(table, [(first, q.id) for q in inst.query_types])
    assert any(r.source == "simulated" for r in warm.rows)
    fresh = build_option_table(inst)
    assert {r.source for r in fresh.rows if r.eligible} == {"model-estimate"}
    again = solve(inst, "milp")
    assert again.objective == plan.objective
    assert again.deployments == plan.deployments


def test_prove_finds_the_optimum_of_the_fully_simulated_table(small_plan: tuple[Any, Any, Path]) -> None:
    """The lazy plan carries a lower bound valid for the fully simulated table; prove=True returns
    that table's optimum — the same objective as the MILP on every pair simulated up front."""
    inst, lazy, _ = small_plan
    full = build_option_table(inst)
    full = check_pairs(full, [(r.option, r.query_type) for r in full.rows if r.source == "model-estimate"])
    assert not needs_checks(full)
    best = solve(inst, "milp", table=full)
    assert best.status == "optimal"
    assert lazy.simulated_bound is not None and lazy.simulated_bound <= best.objective + 1e-6 <= lazy.objective + 1e-6
    proven = solve(inst, "milp", prove=True)
    assert proven.status == "optimal"
    assert proven.objective == pytest.approx(best.objective, rel=1e-6)
    assert proven.simulated_bound == pytest.approx(proven.objective, rel=1e-6)
    assert "every pair simulated" in (proven.message or "")
    assert check_plan(inst, proven, full).ok


def test_token_budget_round_trips_through_plan_and_simulator(small_plan: tuple[Any, Any, Path]) -> None:
    inst, plan, path = small_plan
    text = path.read_text()
    assert "max_num_batched_tokens:" in text
    back = read_plan(path)
    assert back == plan
    for d in back.deployments:
        assert d.max_num_batched_tokens in (512, 2048)
        assert d.option.budget == d.max_num_batched_tokens
    for shares in back.routing.values():
        assert all(s.max_num_batched_tokens in (512, 2048) for s in shares)
    sim = simulator_for_plan(inst, back, SimConfig(policy="jsq"))
    budgets = {p.spec.option.budget: p.spec.token_budget for p in sim.all_pools}
    assert all(k == v for k, v in budgets.items())
    # the budget changes the replica: a bigger one reserves more activation memory
    a, b = (replica_model(inst, parse_option(f"qwen2.5-7b/a100-80gb/1/1/{n}")) for n in (512, 2048))
    assert a.q.prefill_chunk_tokens == 512 and b.q.prefill_chunk_tokens == 2048
    assert a.fit().kv_capacity_tokens > b.fit().kv_capacity_tokens


def test_checker_rejects_an_overloaded_pool(small_plan: tuple[Any, Any, Path]) -> None:
    inst, plan, _ = small_plan
    heavier = inst.model_copy(
        update={
            "query_types": tuple(q.model_copy(update={"arrival_rate": q.arrival_rate * 4}) for q in inst.query_types)
        }
    )
    rep = check_plan(heavier, plan.model_copy(update={"instance": heavier.name}))
    assert any(v.family == "capacity" for v in rep.violations)


# ------------------------------------------------------------------------------ shared pools


def mixed_tpot_instance() -> Any:
    """small_instance with chat's TPOT limit tightened to 0.04 s (code keeps 0.1 s): a pool serving
    both holds code to 0.04 s. Chat may go unserved, so a test can route part of it."""
    base = small_instance()
    chat, code = (q.model_dump(exclude_none=True) for q in base.query_types)
    chat = chat | {"arrival_rate": 8.0, "slo": {"ttft_s": 2.0, "tpot_s": 0.04, "e2e_s": 40}}
    chat |= {"max_unserved": 1.0, "unserved_penalty": 1.0}
    return small_instance(query_types=[chat, code])


def test_shared_pool_is_held_to_its_tightest_tpot() -> None:
    inst = mixed_tpot_instance()
    table = build_option_table(inst)
    opt = parse_option("qwen2.5-7b/a100-80gb/1/1/512")
    assert (opt, "code", 0.04) in table.tight  # code's row at chat's limit, for pools serving both
    table = check_pairs(table, [(opt, "chat"), (opt, "code")])
    own, held = table.row(opt, "code"), table.tight[opt, "code", 0.04]
    chat = table.row(opt, "chat")
    assert held.source == "simulated" and own.source == "simulated" and chat.eligible
    assert 0 < held.throughput_rps < own.throughput_rps  # a tighter limit admits less load
    lam_chat, lam_code = (q.arrival_rate for q in inst.query_types)
    u = inst.max_utilization
    # One replica, all of code and the share a of chat that fills it at code's own capacity:
    # feasible by the per-type rule, beyond the replica at the pool's tightest TPOT.
    a = (u - lam_code / own.throughput_rps - 1e-3) * chat.throughput_rps / lam_chat
    assert 0 < a < 1 and a * lam_chat / chat.throughput_rps + lam_code / held.throughput_rps > u
    from planner.plan import build_plan

    def plan_with(replicas: int) -> Any:
        return build_plan(
            table,
            method="manual",
            status="feasible",
            replicas={opt: replicas},
            routing={"chat": {opt: a}, "code": {opt: 1.0}},
            unserved={"chat": 1 - a, "code": 0.0},
        )

    rep = check_plan(inst, plan_with(1), table)
    assert [v.family for v in rep.violations] == ["capacity"], rep.violations
    assert "TPOT limit 0.04" in rep.violations[0].detail and "code" not in rep.violations[0].detail.split(":")[0]
    need = a * lam_chat / chat.throughput_rps + lam_code / held.throughput_rps
    assert check_plan(inst, plan_with(math.ceil(need / u)), table).ok
    # every solver's plan passes the same rule
    for method in ("milp", "gh", "agh"):
        plan = solve(inst, method, table)
        assert plan.has_solution and check_plan(inst, plan).ok, (method, check_plan(inst, plan).violations)


# ------------------------------------------------------------------------------ other modes


def test_table_mode_is_unchanged() -> None:
    inst = load_instance(INSTANCES / "table-demo.yaml")
    table = build_option_table(inst)
    assert all(r.source == "table" and r.option.budget is None for r in table.rows)
    entries = {(e.model, e.gpu, e.tp, e.pp, e.query_type): e for e in inst.performance}
    for r in table.rows:
        e = entries[r.option.model, r.option.gpu, r.option.tp, r.option.pp, r.query_type]
        assert r.throughput_rps == e.throughput_rps and r.ttft_s == e.ttft_s
    plan = solve(inst, "milp")
    assert "max_num_batched_tokens" not in str(plan.model_dump(exclude_none=True))


def test_mean_mode_keeps_the_paper_semantics() -> None:
    inst = small_instance(slo_attainment="mean", engine={})
    table = build_option_table(inst)
    assert all(r.source == "model" for r in table.rows)
    assert all(r.option.budget is None for r in table.rows)
    assert math.isfinite(sum(r.throughput_rps or 0 for r in table.rows))


def test_azure_instance_carries_length_tails() -> None:
    inst = load_instance(AZURE)
    code = next(q for q in inst.query_types if q.id == "code")
    assert code.input_tokens_p90 == 5188 and code.output_tokens_p99 == 251
    assert inst.attainment(code) == 0.99 and inst.token_budgets() == (512, 2048, 8192)


def test_burst_profile_takes_the_counting_noise_out() -> None:
    """Window rates counted from a Cox process (Poisson counts around a known intensity) carry
    counting noise; the profile the simulator runs keeps the intensity's spread only."""
    from planner.problem import QueryType

    rng = np.random.default_rng(11)

    def counted(rate: float, sd: float, window: float = 10.0, n: int = 20_000) -> Any:
        f = np.exp(rng.normal(-sd * sd / 2, sd, n))  # intensity factors, mean 1, CV ≈ sd
        c = rng.poisson(rate * window * f) / window
        q = QueryType(
            id="t",
            arrival_rate=rate,
            arrival_rate_p90=float(np.quantile(c, 0.9)),
            arrival_rate_p99=float(np.quantile(c, 0.99)),
            input_tokens=100,
            output_tokens=10,
        )
        return q, float(np.std(f))

    for rate, sd in ((3.0, 0.3), (3.0, 0.8), (30.0, 0.3), (50.0, 1.0)):
        q, true_sd = counted(rate, sd)
        prof = capacity.rate_factors(q, 0, 256, 10.0)
        assert prof.mean() == pytest.approx(1.0) and (prof >= 0).all()
        # the intensity's spread, not the counts' (within the lognormal fit's and the rounding's error)
        assert np.std(prof) == pytest.approx(true_sd, abs=0.02 + 0.1 * true_sd), (rate, sd, np.std(prof))
    # At 2 requests per window an intensity CV of 0.3 is a sixth of the counts' variance: p90/p99
    # cannot resolve it and the profile is flat, where the counts' own spread (0.77) was used before.
    q, true_sd = counted(0.2, 0.3)
    assert np.std(capacity.rate_factors(q, 0, 256, 10.0)) <= true_sd
    q, _ = counted(0.05, 0.0)  # pure Poisson counts at 0.5 per window: no burst at all
    assert capacity.burst_shrink(q, 10.0) <= 0.1
    q, _ = counted(50.0, 1.0)  # 500 per window: the counts are the intensity
    assert capacity.burst_shrink(q, 10.0) >= 0.95
    # the shrink is part of what a pair's capacity depends on; a re-rate by 2% reuses it
    assert capacity.burst_shrink(q, 10.0) == capacity.burst_shrink(
        q.model_copy(update={"arrival_rate": 51.0, "arrival_rate_p90": q.arrival_rate_p90 * 1.02,
                             "arrival_rate_p99": q.arrival_rate_p99 * 1.02}), 10.0)  # fmt: skip


# ------------------------------------------------------------------------------ the validation loop


def _traffic(inst: Any, rates: dict[int, float], seconds: float, seed: int) -> Any:
    """Poisson arrivals of each type at ``rates`` for ``seconds``, lengths from its distributions."""
    from planner.sim.scale import Requests

    rng = np.random.default_rng(seed)
    cols: list[tuple[float, int, int, int]] = []
    for ti, r in rates.items():
        n = rng.poisson(r * seconds)
        _, inp, out = capacity.samples(inst, None, ti, max(n, 1))  # type: ignore[arg-type]
        at = np.sort(rng.uniform(0, seconds, n))
        cols += [(float(a), ti, int(i), int(o)) for a, i, o in zip(at, inp[rng.permutation(n)], out, strict=False)]
    cols.sort()
    a, t, i, o = (np.array(x) for x in zip(*cols, strict=True))
    return Requests(a.astype(float), t.astype(np.int64), i.astype(np.int64), o.astype(np.int64))


def _resolver(inst: Any) -> Any:
    return lambda derated: solve(derated.instance, "milp", table=derated)


def test_validation_loop_derates_a_plan_that_misses_and_re_solves(small_plan: tuple[Any, Any, Path]) -> None:
    """Traffic at 3× the planned rates: the first replay misses, the loop derates the types by the
    measured shortfall and re-solves until the replay meets the target; the final plan is one the
    checker accepts on the instance's own table (derating only lowers capacities)."""
    from planner.validation import validate

    inst, plan, _ = small_plan
    reqs = _traffic(inst, {i: 3 * q.arrival_rate for i, q in enumerate(inst.query_types)}, 900.0, 1)
    table = build_option_table(inst)
    final, _ = validate(inst, table, plan, reqs, _resolver(inst), ["synthetic"], rounds=3)
    v = final.validation
    assert v is not None and v.rounds >= 2 and len(v.history) == v.rounds
    assert min(x for x in v.history[0].values() if x is not None) < 0.99  # the plan missed at first
    # The small plan's pool is mixed (chat and code on one option): its miss derates that pool's
    # pairs, not the types on every option (their factor would follow them to unshared pools).
    assert v.derating and all(0 < f < 1 for f in v.derating.values()) and not v.derating_by_type
    assert sum(d.gpus for d in final.deployments) > sum(d.gpus for d in plan.deployments)
    assert v.passed == all(x is None or x >= 0.99 for x in v.attainment.values())
    assert check_plan(inst, final).ok, check_plan(inst, final).violations
    # at a quarter of the planned rates the plan holds: one round, nothing derated
    calm = _traffic(inst, {i: q.arrival_rate / 4 for i, q in enumerate(inst.query_types)}, 900.0, 2)
    same, _ = validate(inst, table, plan, calm, _resolver(inst), ["synthetic"])
    assert same.validation is not None and same.validation.rounds == 1 and same.validation.passed
    assert same.deployments == plan.deployments and not same.validation.derating_by_type


def test_validation_derates_a_type_that_misses_alone_on_every_option() -> None:
    """One type, traffic at 6× its rate: its pool serves it alone, so the miss says the type's
    traffic is harder than its figures, on any option: the factor is the type's, not the pair's."""
    from planner.validation import validate

    doc = _small_doc()
    inst = load_instance_data({**doc, "query_types": doc["query_types"][:1]}, "attain-one.yaml")
    plan = solve(inst, "milp")
    reqs = _traffic(inst, {0: 6 * inst.query_types[0].arrival_rate}, 900.0, 3)
    final, _ = validate(inst, build_option_table(inst), plan, reqs, _resolver(inst), ["synthetic"], rounds=3)
    v = final.validation
    assert v is not None and v.history[0]["chat"] < 0.99 and v.passed
    assert set(v.derating_by_type) == {"chat"} and 0 < v.derating_by_type["chat"] < 1
    assert sum(d.gpus for d in final.deployments) > sum(d.gpus for d in plan.deployments)


def test_validation_grows_a_pool_planned_below_its_cap(small_plan: tuple[Any, Any, Path]) -> None:
    """At its planned rates the small plan's mixed replica (chat and code, below its cap) misses
    a type by a little (on this seed: one type's prompts delay the other's tokens, which the
    per-type capacities do not see). The measured share s alone would leave the pool within
    its cap round after round; with the pool's utilization u the pair ends at s·u and the
    re-solved pool has more replicas."""
    from planner.validation import validate

    inst, plan, _ = small_plan
    reqs = _traffic(inst, {i: q.arrival_rate for i, q in enumerate(inst.query_types)}, 900.0, 3)
    final, _ = validate(inst, build_option_table(inst), plan, reqs, _resolver(inst), ["synthetic"])
    v = final.validation
    assert v is not None and v.passed
    missed = [t for t, a in v.history[0].items() if a is not None and a < 0.99]
    assert missed and all(v.attainment[t] >= 0.99 for t in missed)
    assert sum(d.replicas for d in final.deployments) > sum(d.replicas for d in plan.deployments)


def test_validation_loop_replays_a_schedule_window_by_window() -> None:
    """A multi-period plan is replayed window by window (each window's plan on its own traffic):
    the window whose traffic is 3× its planned rate is the one that is re-provisioned."""
    from planner.validation import validate

    windows = [{"id": "calm", "hours": 12, "rates": {"chat": 1.0, "code": 0.3}},
               {"id": "busy", "hours": 12, "rates": {"chat": 3.0, "code": 1.0}}]  # fmt: skip
    inst = small_instance(scaling={"windows": windows})
    plan = solve(inst, "milp")
    assert plan.schedule is not None and len(plan.schedule) == 2
    reqs = [_traffic(inst, {0: 1.0, 1: 0.3}, 900.0, 3), _traffic(inst, {0: 9.0, 1: 3.0}, 900.0, 4)]
    table = build_option_table(inst)
    with pytest.raises(ValueError, match="one request set per window"):
        validate(inst, table, plan, reqs[0], _resolver(inst), ["synthetic"])
    final, _ = validate(inst, table, plan, reqs, _resolver(inst), ["synthetic"], rounds=3)
    v = final.validation
    assert v is not None and v.rounds >= 2 and min(x for x in v.history[0].values() if x is not None) < 0.99
    assert final.schedule is not None
    gpus = [sum(d.gpus for d in w.deployments) for w in final.schedule]
    before = [sum(d.gpus for d in w.deployments) for w in plan.schedule]
    assert gpus[1] > before[1]
    assert check_plan(inst, final).ok, check_plan(inst, final).violations


def test_largest_burst_is_injected_with_its_weight() -> None:
    """A type whose largest burst holds 3% of its requests (more than the 1% a 0.99 target lets
    miss) gets a lower capacity than the same type without it, and its burst requests at a rate
    follow the thinning rule ⌈burst_rate·burst_s·r/λ⌉; the three keys go together."""
    from planner.multiperiod import with_rate

    base = small_instance()
    q = base.query_types[1]  # code: 2k-token prompts
    bursty = q.model_copy(update={"arrival_burst_rate": 40.0, "arrival_burst_s": 5.0, "arrival_burst_share": 0.03})
    inst = base.model_copy(update={"query_types": (base.query_types[0], bursty)})
    assert capacity.burst_requests(bursty, 0.5) == (math.ceil(40 * 5 * 0.5 / 1.0), 0.03)
    assert capacity.burst_requests(q, 0.5) == (0, 0.0)
    option = parse_option("qwen2.5-7b/a100-80gb/1/1/2048")
    plain = capacity.measure(base, capacity.make_key(base, option, 1, 0.99))
    with_burst = capacity.measure(inst, capacity.make_key(inst, option, 1, 0.99))
    assert capacity.fingerprint(base, option, 1) != capacity.fingerprint(inst, option, 1)
    assert 0 < with_burst.rate_rps < plain.rate_rps / 1.5
    assert with_burst.attainment >= 0.99
    # re-rating scales the burst with the type (its shape is the traffic's)
    assert with_rate(bursty, 2.0).arrival_burst_rate == pytest.approx(80.0)
    with pytest.raises(InputError, match="go together"):
        load_instance_data(
            {**_small_doc(), "query_types": [{**_small_doc()["query_types"][1], "arrival_burst_rate": 40.0}]}, "x.yaml"
        )


def test_superposition_above_the_types_own_rate() -> None:
    """Below its own rate λ a replica sees a thinned share (full relative spread, the burst
    thinned); above it m = r/λ copies: spread √(k − 1 + x²)/m (1/√m at whole m, continuous and
    falling), the largest burst at full size."""
    q = (
        small_instance()
        .query_types[1]
        .model_copy(update={"arrival_burst_rate": 40.0, "arrival_burst_s": 5.0, "arrival_burst_share": 0.03})
    )
    lam = capacity.own_rate(q)
    assert lam == pytest.approx(1.0, rel=0.03)
    assert capacity.superposition(q, 0.3 * lam) == 1.0 and capacity.superposition(q, lam) == 1.0
    for m in (2, 3, 9):
        assert capacity.superposition(q, m * lam) == pytest.approx(1 / math.sqrt(m))
    grid = np.linspace(1.0, 6.0, 501) * lam
    s = np.array([capacity.superposition(q, r) for r in grid])
    assert (np.diff(s) <= 1e-12).all() and np.abs(np.diff(s)).max() < 0.01  # falling, no jumps
    # 1.4 copies: one whole and 0.4 of another, relative variance (1 + 0.16)/1.96
    assert capacity.superposition(q, 1.4 * lam) == pytest.approx(math.sqrt(1.16) / 1.4)
    n_full = math.ceil(40 * 5 * lam / 1.0 - 1e-9)
    assert capacity.burst_requests(q, 5 * lam)[0] == n_full == capacity.burst_requests(q, 50 * lam)[0]
    assert capacity.burst_requests(q, 0.5 * lam)[0] < n_full


def test_slow_states_are_weighed_quasi_statically() -> None:
    """Minutes-long swings (``arrival_rate_slow_p90/p99``): the states' factors have mean 1 over
    their weights; the fast profile keeps only what the slow one leaves,
    (1 + Var f)(1 + Var F) = 1 + Var g; and a type with slow states but Poisson windows has a
    capacity between the Poisson one divided by the top state's factor and the Poisson one."""
    base = small_instance()
    q = base.query_types[0]
    assert len(capacity.slow_strata(q, 300.0)[0]) == 1  # no slow figures: one state
    slow = q.model_copy(update={"arrival_rate_slow_p90": 4.5, "arrival_rate_slow_p99": 5.4})
    big, w = capacity.slow_strata(slow, 300.0)
    assert w.sum() == pytest.approx(1.0) and float(w @ big) == pytest.approx(1.0)
    assert (np.diff(big) > 0).all() and big[-1] > 1.6
    both = slow.model_copy(update={"arrival_rate_p90": 5.0, "arrival_rate_p99": 7.5})
    g = capacity.rate_factors(both.model_copy(update={"arrival_rate_slow_p90": None, "arrival_rate_slow_p99": None}), 0)
    f = capacity.rate_factors(both, 0)
    var_big = float(w @ (capacity.slow_strata(both, 300.0)[0] - 1) ** 2)
    assert (1 + np.var(f)) * (1 + var_big) == pytest.approx(1 + np.var(g), rel=1e-6)
    with pytest.raises(ValueError, match="arrival_rate_slow_p99"):
        type(q).model_validate(q.model_dump() | {"arrival_rate_slow_p90": 5.0, "arrival_rate_slow_p99": 4.0})

    option = parse_option("qwen2.5-7b/a100-80gb/1/1/2048")
    inst = base.model_copy(update={"query_types": (slow, base.query_types[1])})
    assert capacity.fingerprint(base, option, 0) != capacity.fingerprint(inst, option, 0)
    plain = capacity.measure(base, capacity.make_key(base, option, 0, 0.99))
    swung = capacity.measure(inst, capacity.make_key(inst, option, 0, 0.99))
    assert plain.rate_rps / big[-1] / capacity.RATE_RESOLUTION <= swung.rate_rps < plain.rate_rps
    assert swung.attainment >= 0.99


def test_burst_envelope_injects_the_whole_episode() -> None:
    """``arrival_burst_envelope``: the requests each wider interval adds arrive evenly over the ring
    it adds, half before and half after, thinned like the central burst; the episode's weight is
    the central share scaled by the counts; wider intervals with fewer requests are refused."""
    from planner.multiperiod import with_rate

    q = (
        small_instance()
        .query_types[1]
        .model_copy(
            update={
                "arrival_rate": 2.0,
                "arrival_burst_rate": 54.0,
                "arrival_burst_s": 5.0,
                "arrival_burst_share": 0.03,
                "arrival_burst_envelope": ((10.0, 41.5), (20.0, 25.0)),
            }
        )
    )
    lam = capacity.own_rate(q)
    at, w = capacity.burst_arrivals(q, lam)
    central = math.ceil(54 * 5 * lam / 2.0 - 1e-9)
    n10, n20 = math.ceil(415 * lam / 2.0 - 1e-9), math.ceil(500 * lam / 2.0 - 1e-9)
    assert len(at) == n20 and (np.diff(at) >= 0).all()
    assert ((at >= 0) & (at < 5)).sum() == central
    assert ((at >= -2.5) & (at < 7.5)).sum() == n10
    assert at.min() >= -7.5 and at.max() <= 12.5
    assert w == pytest.approx(0.03 * 500 / 270)
    half, _ = capacity.burst_arrivals(q, lam / 2)  # thinned to half
    assert len(half) == pytest.approx(n20 / 2, abs=3)
    assert len(capacity.burst_arrivals(q, 4 * lam)[0]) == n20  # above λ: one whole copy's episode
    scaled = with_rate(q, 4.0)
    assert scaled.arrival_burst_envelope == ((10.0, 83.0), (20.0, 50.0))
    with pytest.raises(ValueError, match="arrival_burst_envelope"):
        type(q).model_validate(q.model_dump() | {"arrival_burst_envelope": [[10.0, 20.0]]})  # 200 < 270
    with pytest.raises(ValueError, match="arrival_burst_envelope"):
        type(q).model_validate(q.model_dump() | {"arrival_burst_envelope": [[4.0, 80.0]]})  # not wider


def test_burst_envelope_widens_the_measured_burst() -> None:
    """The same central burst with a flood around it costs capacity."""
    base = small_instance()
    q = base.query_types[1]
    burst = {"arrival_burst_rate": 40.0, "arrival_burst_s": 5.0, "arrival_burst_share": 0.03}
    central = q.model_copy(update=burst)
    flood = q.model_copy(update=burst | {"arrival_burst_envelope": ((10.0, 34.0), (20.0, 24.0))})
    option = parse_option("qwen2.5-7b/a100-80gb/1/1/2048")
    caps = []
    for t in (central, flood):
        inst = base.model_copy(update={"query_types": (base.query_types[0], t)})
        caps.append(capacity.measure(inst, capacity.make_key(inst, option, 1, 0.99)).rate_rps)
    assert 0 < caps[1] < caps[0]


def test_clustered_arrivals_carry_the_measured_excess() -> None:
    """The simulation's clustered arrivals, measured as `planner demand --figures` measures a
    trace, give back the type's arrival_cluster_excess thinned to the replica's share (at its own
    rate and above it, the whole), at the rate asked; without clusters the times are the plain ones."""
    from planner.review.figures import FiguresBuilder

    q = small_instance().query_types[1].model_copy(update={"arrival_cluster_s": 2.0, "arrival_cluster_excess": 8.0})
    lam = capacity.own_rate(q)
    gaps = np.random.default_rng(1).exponential(1.0, 30_000)
    for r in (0.2 * lam, lam, 2 * lam):
        t = np.sort(capacity.clustered_arrival_times(q, 1, gaps, r, np.ones(1), 10.0, r))
        assert len(t) / t[-1] == pytest.approx(r, rel=0.03)
        fb = FiguresBuilder([q.id], 10.0)
        for x in t:
            fb.add(q.id, float(x), 1, 1)
        got = fb.finish(float(t[-1]) + 1.0)[q.id].cluster_excess
        assert got == pytest.approx(8.0 * min(r, lam) / lam, rel=0.15), r
    plain = small_instance().query_types[1]
    assert (capacity.clustered_arrival_times(plain, 1, gaps, 1.0, np.ones(1), 10.0, 1.0) == np.cumsum(gaps)).all()


def test_clusters_cost_capacity() -> None:
    """The same type with its requests fired in clusters sustains a lower rate on one replica."""
    base = small_instance()
    option = parse_option("qwen2.5-7b/a100-80gb/1/1/2048")
    caps = []
    for extra in ({}, {"arrival_cluster_s": 2.0, "arrival_cluster_excess": 6.0}):
        t = base.query_types[1].model_copy(update=extra)
        inst = base.model_copy(update={"query_types": (base.query_types[0], t)})
        caps.append(capacity.measure(inst, capacity.make_key(inst, option, 1, 0.99)).rate_rps)
    assert 0 < caps[1] < caps[0]
    with pytest.raises(ValueError, match="arrival_cluster_s and arrival_cluster_excess go together"):
        type(base.query_types[1]).model_validate(base.query_types[1].model_dump() | {"arrival_cluster_s": 2.0})


def test_lengths_bend_between_knots_to_carry_the_mean() -> None:
    """A mean that log-linear interpolation misses is reached by bending the segments between
    the knots — every stated percentile kept, the lower tail at its natural slope — before the
    lower tail moves (mooncake-2025's chat-8k outputs: p10 24, p50 336, p90 594, p99 995, mean 330)."""
    d = LengthDistribution.of(330, p50=336, p90=594, p99=995, p10=24)
    assert d.bend < 1.0 and abs(d.mean_error) <= 0.005
    got = [float(d.quantile(np.array([u]))[0]) for u in (0.1, 0.5, 0.9, 0.99)]
    assert got == pytest.approx([24, 336, 594, 995], rel=1e-5)
    # the lower tail extends the p10–p50 segment's slope: some replies under 10 tokens remain
    z10, z01 = -1.2815515655446004, -2.3263478740408408
    slope = (math.log(336) - math.log(24)) / -z10
    assert float(d.quantile(np.array([0.01]))[0]) == pytest.approx(24 * math.exp(-slope * (z10 - z01)), rel=1e-3)
    assert float(d.quantile(np.array([0.02]))[0]) < 10
    # a mean far below the median sags the lower segment (azure-2023's conv-long outputs)
    sag = LengthDistribution.of(266, p10=49, p50=374, p90=440, p99=636)
    assert sag.bend > 1.0 and abs(sag.mean_error) <= 0.005
    assert float(sag.quantile(np.array([0.25]))[0]) < 100  # the trace's p25 is 83


def test_length_table_keeps_every_knot_and_the_mean() -> None:
    """``*_tokens_percentiles`` are knots like the named figures: the distribution passes through
    every one (mooncake-2025's long-32k outputs: 1% at 3 tokens, 5% at 10, a median of 362) and
    the mean is carried by a bend."""
    table = (
        (1.0, 3.0), (2.0, 3.0), (5.0, 10.0), (20.0, 120.0), (30.0, 239.0), (40.0, 311.0), (60.0, 404.0),
        (70.0, 448.0), (80.0, 501.0), (95.0, 692.0), (98.0, 897.0), (99.5, 1457.0), (99.9, 2000.0),
    )  # fmt: skip
    named = {"p10": 25.0, "p50": 362.0, "p90": 589.0, "p99": 1104.0}
    d = LengthDistribution.of(350, **named, max_tokens=2000, percentiles=table)
    assert abs(d.mean_error) <= 0.005
    knots = [*table, (10.0, 25.0), (50.0, 362.0), (90.0, 589.0), (99.0, 1104.0)]
    got = d.quantile(np.array([p / 100 for p, _ in knots]))
    assert got == pytest.approx([v for _, v in knots], rel=1e-4)
    u = (np.arange(20000) + 0.5) / 20000
    assert np.mean(d.quantile(u) < 10) == pytest.approx(0.05, abs=0.003)
    # a table alone (no named figure) is enough, and the clip still holds
    alone = LengthDistribution.of(400, max_tokens=900, percentiles=((5.0, 20.0), (50.0, 380.0), (95.0, 850.0)))
    assert alone.quantile(np.array([0.5]))[0] == pytest.approx(380, rel=1e-4) and abs(alone.mean_error) <= 0.005
    assert alone.quantile(np.array([0.9999]))[0] <= 900


def test_length_table_validation_and_fingerprint() -> None:
    """The tables are checked against themselves and the named figures (one line naming the key),
    and enter a pair's fingerprint only where given (a type without them keeps its cached capacities)."""
    import yaml

    data = yaml.safe_load((INSTANCES / "quickstart.yaml").read_text())

    def load_instance_data_checked(doc: dict[str, Any]) -> Any:
        return load_instance_data(doc, "t.yaml", INSTANCES)

    q0 = dict(data["query_types"][0])
    base = {**q0, "input_tokens": 500, "input_tokens_p50": 400, "input_tokens_max": 4000}
    for table, needle in (
        ([[20, 100], [10, 300]], "percentiles must increase"),
        ([[50, 410]], "disagrees with input_tokens_p50"),
        ([[60, 300]], "is below input_tokens_p50"),
        ([[99.9, 5000]], "input_tokens_max (4000) is below"),
        ([], "at least one"),
        ([[100, 300]], "less than 100"),
    ):
        bad = {**data, "query_types": [{**base, "input_tokens_percentiles": table}, *data["query_types"][1:]]}
        with pytest.raises(InputError, match=re.escape(needle)):
            load_instance_data_checked(bad)
    good = {
        **data,
        "query_types": [{**base, "input_tokens_percentiles": [[5, 50], [95, 2000]]}, *data["query_types"][1:]],
    }
    plain = {**data, "query_types": [base, *data["query_types"][1:]]}
    a, b = load_instance_data_checked(good), load_instance_data_checked(plain)
    opt = build_option_table(b).rows[0].option
    assert capacity.fingerprint(a, opt, 0) != capacity.fingerprint(b, opt, 0)
    assert capacity.fingerprint(a, opt, 1) == capacity.fingerprint(b, opt, 1)


def test_slow_length_share() -> None:
    """β: swings made of longer requests give 1, of more requests 0 (planner demand --figures);
    azure-2023's conv-long, whose slow swings are stretches of long prompts, sustains less on a
    small replica than the same swings made of more requests would allow."""
    from planner.review.figures import _length_share

    load = np.array([1.0, 2.0, 1.0, 0.5, 1.5])
    window = 300.0
    longer = load * window / np.full(5, 300.0)  # the same 300 requests each time
    assert _length_share(load, np.full(5, 300.0), window) == pytest.approx(1.0)
    assert _length_share(load, load * window, window) == pytest.approx(0.0)  # 1 mean-size request per unit load
    assert _length_share(np.ones(5), np.full(5, 300.0), window) is None  # no swing
    assert longer.shape == (5,)

    base = load_instance(AZURE)
    ti = next(i for i, q in enumerate(base.query_types) if q.id == "conv-long")
    assert base.query_types[ti].arrival_slow_length_share == pytest.approx(0.55)
    option = parse_option("qwen2.5-7b/a10g/2/1/512")
    caps = []
    for beta in (0.0, 0.55):
        types = list(base.query_types)
        types[ti] = types[ti].model_copy(update={"arrival_slow_length_share": beta})
        inst = base.model_copy(update={"query_types": tuple(types)})
        caps.append(capacity.measure(inst, capacity.make_key(inst, option, ti, 0.99)).rate_rps)
    assert 0 < caps[1] < caps[0]


def test_validation_keeps_the_best_round_when_none_passes() -> None:
    """A re-solve that makes things worse (here: the plan of a 512-token budget, which misses
    chat at 4× its rate more than the 2048-token one) is not what the loop returns when no round
    passes: the best replayed round's plan is kept, and the record says so."""
    from planner.validation import validate

    doc = _small_doc()
    inst = load_instance_data({**doc, "query_types": doc["query_types"][:1]}, "attain-one.yaml")
    plan = solve(inst, "milp")
    small_budget = {**doc, "engine": {"max_num_batched_tokens": [512]}, "query_types": doc["query_types"][:1]}
    worse = solve(load_instance_data(small_budget, "attain-one.yaml"), "milp")
    assert worse.deployments != plan.deployments
    reqs = _traffic(inst, {0: 4 * inst.query_types[0].arrival_rate}, 900.0, 3)
    final, _ = validate(inst, build_option_table(inst), plan, reqs, _resolver(inst), ["synthetic"], rounds=1)
    assert final.validation is not None and not final.validation.passed
    first = final.validation.attainment["chat"]
    kept, _ = validate(inst, build_option_table(inst), plan, reqs, lambda table: worse, ["synthetic"], rounds=2)
    v = kept.validation
    assert v is not None and not v.passed and v.rounds == 2
    assert v.history[1]["chat"] < v.history[0]["chat"] == first
    assert kept.deployments == plan.deployments and v.attainment["chat"] == first
    assert v.message is not None and "round 1 is kept" in v.message
