"""Split prefill/decode pools in the exact plan (planner.disaggregation): figures by hand, the
MILP choosing a mixed-tier pair where it is cheaper, the checker on unbalanced pairs, the plan's
role and pair keys, and the commands that cannot run split pools yet saying so in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planner.checker import check_plan
from planner.disaggregation import Side, SplitPair, candidate_pairs, figures, side_model
from planner.errors import InputError
from planner.loader import load_instance_data
from planner.options import build_option_table
from planner.plan import Deployment, plan_document, read_plan_for, write_plan
from planner.solvers import solve

INSTANCES = Path(__file__).resolve().parents[1] / "instances"


def _doc(gpus: list[Any], tpot: float = 0.03, split: bool = True, **extra: Any) -> dict[str, Any]:
    doc = {
        "name": "split-demo",
        "period_hours": 24,
        "include": ["../models/llms.yaml", "../models/gpus.yaml"],
        "models": ["llama-3.1-8b"],
        "gpus": gpus,
        "parallelism": {"tp": [1, 2, 4], "pp": [1]},
        "max_utilization": 0.85,
        "slo_attainment": "mean",
        "engine": {"split": split},
        "query_types": [
            # Azure code-like prompts with a tight TPOT: decodes behind 2k-token chunks.
            {"id": "code", "arrival_rate": 20.0, "input_tokens": 2048, "output_tokens": 28,
             "slo": {"ttft_s": 5.0, "tpot_s": tpot, "e2e_s": 60}},
        ],
    }  # fmt: skip
    doc.update(extra)
    return doc


def _load(doc: dict[str, Any]):  # type: ignore[no-untyped-def]
    return load_instance_data(doc, str(INSTANCES / "split-demo.yaml"), INSTANCES)


def test_ttft_on_an_idle_system_is_prefill_plus_transfer_plus_first_decode_step() -> None:
    inst = _load(_doc(["h100-80gb", "l40s"], max_utilization=1e-9))
    pair = SplitPair("llama-3.1-8b", Side("l40s", 1, 1), Side("h100-80gb", 2, 1))
    m = inst.model("llama-3.1-8b")
    p_rm, d_rm = side_model(inst, m, pair.prefill), side_model(inst, m, pair.decode)
    f = figures(inst, pair, 0, p_rm, d_rm)  # type: ignore[arg-type]
    assert f.eligible, f.reason
    # By hand. KV per token: 2 (K and V) · 32 layers · 8 KV heads · 128 head dim · 2 bytes.
    assert (m.layers, m.kv_heads, m.head_dim) == (32, 8, 128)
    kv = 2 * 32 * 8 * 128 * 2.0
    q = inst.performance_params
    l40s = inst.gpu("l40s")
    link = (l40s.internode_gbs or q.default_internode_gbs) * 1e9 * q.internode_efficiency * 1  # one NIC: TP 1
    transfer = q.internode_latency_s + (2048 + 1) * kv / link
    prefill = float(p_rm.prefill_latency(np.array([2048.0]), np.zeros(1), np.array([2048.0]))[0])  # type: ignore[union-attr]
    step = float(d_rm.decode_stage_time(np.array([float(f.batch)]), np.array([2048 + 28 / 2]))[0])  # type: ignore[union-attr]
    assert f.transfer_s == pytest.approx(transfer, rel=1e-12)
    assert f.ttft_s == pytest.approx(prefill + transfer + step, rel=1e-9)  # the queue is empty at U → 0
    assert f.tpot_s == pytest.approx(step, rel=1e-12)
    assert f.e2e_s == pytest.approx(f.ttft_s + 27 * step, rel=1e-12)
    # Per-replica rates: a prefill replica does one prompt per T_pf, a decode replica B per 28 steps.
    t_pf = float(p_rm.prefill_work(np.array([2048.0]))[0])  # type: ignore[union-attr]
    assert f.prefill_rps == pytest.approx(1 / t_pf)
    assert f.decode_rps == pytest.approx(f.batch / (28 * step))


def _long(split: bool = True) -> dict[str, Any]:
    """8k-token prompts, 200-token replies, TPOT 15 ms on L40S and A100."""
    doc = _doc(["l40s", "a100-80gb"], tpot=0.015, split=split)
    doc["query_types"][0].update(input_tokens=8192, output_tokens=200)
    return doc


def test_the_milp_picks_a_mixed_tier_pair_where_it_is_cheaper_and_the_checker_accepts_it(tmp_path: Path) -> None:
    colocated = _load(_long(split=False))
    split = _load(_long())
    a = solve(colocated, "milp")
    table = build_option_table(split)
    b = solve(split, "milp", table=table)
    assert a.status == b.status == "optimal"
    assert b.objective < 0.5 * a.objective  # measured: $713.76 against $1,542.2 per day
    # Prefill on the compute-cheap tier, decode on the bandwidth-rich one, and the figures why:
    # per dollar-hour, an L40S prefills ~2x what an A100 does; an A100 TP4 decodes more than an L40S TP4.
    by_role = {d.role: d for d in b.deployments}
    assert set(by_role) == {"prefill", "decode"}
    assert (by_role["prefill"].gpu, by_role["decode"].gpu) == ("l40s", "a100-80gb")
    assert by_role["prefill"].pair == by_role["decode"].pair is not None

    def per_dollar(role: str, gpu: str, tp: int) -> float:
        sp = table.split
        for s, pair in enumerate(sp.pairs):
            side = pair.prefill if role == "prefill" else pair.decode
            if (side.gpu, side.tp) == (gpu, tp):
                row = table.row((sp.prefill if role == "prefill" else sp.decode)[s], "code")
                assert row is not None and row.throughput_rps
                return row.throughput_rps / (split.gpu(gpu).price_per_hour * tp)
        raise AssertionError(f"no {role} side {gpu} TP{tp}")

    assert per_dollar("prefill", "l40s", 1) > 1.9 * per_dollar("prefill", "a100-80gb", 1)
    assert per_dollar("decode", "a100-80gb", 4) > 1.1 * per_dollar("decode", "l40s", 4)
    assert check_plan(split, b, table).ok
    c = solve(split, "milp", backend="ortools", table=table)  # the second exact backend agrees
    assert c.status == "optimal" and c.objective == pytest.approx(b.objective, rel=1e-6)
    # AGH's moves know colocated options; its last step (the restricted MILP with every split
    # pair, from its plan) finds the pair: the MILP's cost, claimed as a feasible plan only.
    h = solve(split, "agh", table=table)
    assert h.status == "feasible" and h.objective == pytest.approx(b.objective, rel=1e-6)
    assert {d.role for d in h.deployments if d.replicas} == {"prefill", "decode"} and "split polish" in h.message
    assert check_plan(split, h, table).ok
    g = solve(split, "gh", table=table)  # GH plans colocated options only (stated in the README)
    assert g.status == "feasible" and not any(d.role for d in g.deployments) and check_plan(split, g, table).ok
    # Every routed share names a prefill pool; the plan round-trips with its role and pair keys.
    assert all(s.role == "prefill" for shares in b.routing.values() for s in shares)
    path = tmp_path / "plan.yaml"
    write_plan(path, b)
    again = read_plan_for(split, path)
    assert again.deployments == b.deployments and check_plan(split, again).ok
    assert all("role" not in d for d in plan_document(a)["deployments"])  # colocated plans keep the spec's keys


def test_the_checker_rejects_an_unbalanced_pair() -> None:
    inst = _load(_long())
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table)
    decode = next(n for n, d in enumerate(plan.deployments) if d.role == "decode")

    def with_decode(replicas: int):  # type: ignore[no-untyped-def]
        deps = list(plan.deployments)
        d = deps[decode]
        deps[decode] = Deployment(**{**d.model_dump(), "replicas": replicas, "gpus": replicas * d.tp * d.pp})
        return plan.model_copy(update={"deployments": deps})

    short = check_plan(inst, with_decode(plan.deployments[decode].replicas - 1), table)
    assert any(v.family == "capacity" and "decode pool" in v.detail for v in short.violations)
    none = check_plan(inst, with_decode(0), table)
    assert any(v.family == "split" and "no decode replicas" in v.detail for v in none.violations)


def test_candidate_pruning_keeps_a_small_table() -> None:
    inst = _load(_doc(["l40s", "a100-80gb", "h100-80gb", "h200"]))
    pairs, counts = candidate_pairs(inst)
    assert counts["after"] == len(pairs) <= 9 < counts["before"]  # ≤ 3 prefill × 3 decode sides per model


def test_split_needs_model_mode() -> None:
    entry = {"model": "llama-3.1-8b", "gpu": "l40s", "tp": 1, "pp": 1, "query_type": "code", "throughput_rps": 1.0}
    doc = _doc(["l40s"], performance_mode="table", performance=[{**entry, "ttft_s": 1, "tpot_s": 0.02, "e2e_s": 2}])
    with pytest.raises(InputError) as e:
        _load(doc)
    assert "engine.split" in str(e.value)


def test_the_split_plan_replays_within_its_promises() -> None:
    """The mixed-tier plan through the simulator (the pair as one service: JSQ over 17 L40S
    prefill replicas, KV over their NICs, JSQ over the A100 TP4 decode replicas): every request
    served, and the mean latencies (the instance's semantics) within what the plan promised."""
    from planner.sim.cluster import simulator_for_plan
    from planner.sim.engine import SimConfig

    inst = _load(_long())
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table)
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(1 / inst.query_types[0].arrival_rate, 1500))
    sim = simulator_for_plan(inst, plan, SimConfig(policy="jsq"))
    assert [p.spec.role for p in sim.all_pools] == ["prefill", "decode"]
    sim.run((k, 0, float(a), 8192, 200) for k, a in enumerate(arrivals))
    got = sim.summary()["types"]["code"]
    row = table.row(next(d.option for d in plan.deployments if d.role == "prefill"), "code")
    assert row is not None and got["finished"] == 1500 and got["preempted_requests"] == 0
    # Measured: TTFT 1.14 s mean against 3.18 s planned (each prefill replica and its link priced
    # as their own M/D/1 queues; JSQ pools them), TPOT 10.9 ms against 14.5 ms.
    assert got["ttft_s"]["mean"] <= row.ttft_s and got["tpot_s"]["mean"] <= row.tpot_s
    assert got["e2e_s"]["mean"] <= row.e2e_s


def _poisson(rate: float, n: int, inp: int, out: int, seed: int = 0) -> Any:
    from planner.sim.scale import Requests

    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    return Requests(arrivals, np.zeros(n, np.int64), np.full(n, inp), np.full(n, out))


def test_the_validation_loop_replays_a_pair_and_derates_it_where_it_misses() -> None:
    """``--validate`` on the mixed-tier plan: the pair replays as one service (round 1 passes
    on its own traffic). On 1.4× that traffic it misses (0.29); the loop measures the pair's
    shortfall on both pools, derates the pair, and the re-solved plan passes."""
    from planner.validation import validate

    inst = _load(_long())
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table)
    lam = inst.query_types[0].arrival_rate
    ok, _ = validate(inst, table, plan, _poisson(lam, 3000, 8192, 200), lambda t: solve(inst, "milp", table=t), ["x"])
    assert ok.validation is not None and ok.validation.passed and ok.validation.rounds == 1
    assert ok.objective == plan.objective
    more, derated = validate(
        inst, table, plan, _poisson(1.4 * lam, 3000, 8192, 200), lambda t: solve(inst, "milp", table=t), ["x"]
    )
    v = more.validation
    assert v is not None and v.passed and v.rounds > 1 and v.history[0]["code"] < 0.99
    assert v.derating and all(k.endswith("/prefill") for k in v.derating)  # a pair is keyed by its prefill pool
    assert more.objective > plan.objective
    # The derated pair carries less: both pools' capacities scaled by the same factor.
    sp, base = derated.split, table.split
    s = base.pairs.index(sp.pairs[0])
    for pool in (sp.prefill[s], sp.decode[s]):
        assert derated.row(pool, "code").throughput_rps < table.row(pool, "code").throughput_rps
    assert check_plan(inst, more).ok


def test_split_plans_are_refused_where_they_cannot_run_and_in_bad_plans(tmp_path: Path) -> None:
    from planner.export import render_plan

    inst = _load(_doc(["l40s", "a100-80gb"]))
    plan = solve(inst, "milp")
    with pytest.raises(InputError, match="cannot be exported as Helm values"):  # vllm, k8s, router: test_export
        render_plan(plan, inst, "helm")
    # A decode pool is never a routing target; a role needs the instance's engine.split.
    doc = plan_document(plan)
    doc["routing"]["code"][0]["role"] = "decode"
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError, match="prefill pool"):
        read_plan_for(inst, path)
    off = _load(_doc(["l40s", "a100-80gb"], split=False))
    write_plan(path, plan)
    with pytest.raises(InputError, match=r"engine\.split is off"):
        read_plan_for(off, path)


def test_each_pool_has_its_own_bound_under_tier_limits_and_a_tight_budget() -> None:
    """Review finding: one big-M for both pools capped the prefill pool at the decode tier's
    limit (17 L40S prefill replicas cut to 8 // 4 = 2 by the A100 limit)."""
    free = _load(_long())
    best = solve(free, "milp")
    doc = _long()
    doc["gpus"] = ["l40s", {"id": "a100-80gb", "available": 8}]
    doc["budget"] = round(best.objective * 1.001, 2)
    tight = _load(doc)
    plan = solve(tight, "milp")
    assert plan.status == "optimal" and plan.objective == pytest.approx(best.objective, rel=1e-9)
    assert check_plan(tight, plan).ok


def test_split_pools_survive_table_rebuilds_and_carry_their_batches() -> None:
    from planner.options import derate_options

    inst = _load(_long())
    table = build_option_table(inst)
    again = derate_options(table, {"code": 0.99})  # a type's factor follows it onto every pair
    assert again.split.pairs == table.split.pairs and not any(o.role for o in again.options)
    assert again.split.load_p == pytest.approx({k: v / 0.99 for k, v in table.split.load_p.items()})
    assert again.split.link == table.split.link  # the same KV bytes on the link
    plan = solve(inst, "milp", table=table)
    by_role = {d.role: d for d in plan.deployments}
    decode_row = table.row(by_role["decode"].option, "code")
    assert decode_row is not None and by_role["decode"].max_num_seqs == decode_row.batch
    assert by_role["prefill"].max_num_seqs is None  # prompts only: vLLM's default
    # A warm start from the split plan is a feasible first incumbent: the same optimum.
    warm = solve(inst, "milp", table=table, warm_start=plan)
    assert warm.objective == pytest.approx(plan.objective, rel=1e-9)


def test_the_checker_rejects_routing_to_a_decode_pool() -> None:
    inst = _load(_long())
    table = build_option_table(inst)
    plan = solve(inst, "milp", table=table)
    decode = next(d.option for d in plan.deployments if d.role == "decode")
    routing = {
        "code": [plan.routing["code"][0].model_copy(update={"role": "decode", "gpu": decode.gpu, "tp": decode.tp})]
    }
    bad = plan.model_copy(update={"routing": routing})
    rep = check_plan(inst, bad, table)
    assert any(v.family == "eligibility" and "through its prefill pool" in v.detail for v in rep.violations)


def test_attainment_targets_simulate_each_side_of_the_pairs_a_plan_uses() -> None:
    """At a 0.99 attainment target the split pairs start as estimates; the lazy solve simulates
    each side of the pair it routes to (one replica of the side, the other side never binding),
    and the plan's figures are the simulated ones. The split plan ($123.84: 4 L40S prefill
    replicas, 1 L40S TP2 decode replica at batch cap 76) costs less than the colocated one
    ($222.72), and both replay at or above the target on 4,000 Poisson arrivals."""
    from planner.validation import validate

    plans = {}
    for split in (False, True):
        inst = _load(_doc(["l40s", "a100-80gb"], split=split, slo_attainment=0.99, max_utilization=1.0))
        table = build_option_table(inst)
        plan = solve(inst, "milp", table=table)
        assert plan.has_solution and check_plan(inst, plan).ok
        lam = inst.query_types[0].arrival_rate
        reqs = _poisson(lam, 4000, 2048, 28, seed=1)
        out, _ = validate(inst, table, plan, reqs, lambda t: solve(t.instance, "milp", table=t), ["x"])
        assert out.validation is not None and out.validation.rounds == 1 and out.validation.passed
        plans[split] = plan
        if split:
            pools = {d.role: d for d in plan.deployments if d.replicas}
            assert set(pools) == {"prefill", "decode"}
            assert table.split.keys and all(len(k) == 2 for k in table.split.keys.values())
            assert "simulated" in plan.message  # the lazy rounds measured the pair's two sides
    assert plans[True].objective < plans[False].objective
