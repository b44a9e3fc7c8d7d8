"""Planning with prefix reuse (planner.capacity.prefix_hit): the instance keys, the reuse a
replica's free KV bounds, stated cached tokens in the simulator, the capacity they buy, and
`planner demand --figures` writing the keys from a trace with known reuse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from planner import capacity as C
from planner.cli import app
from planner.loader import load_instance
from planner.problem import Instance, QueryType
from planner.review.demand import measure_prefix_curve
from planner.sim.cluster import parse_option, replica_model, simulator_for_option
from planner.sim.engine import SimConfig
from tests.conftest import ROOT
from tests.test_sim import A100_8B, CONV_LONG, capture

CURVE = ((100_000.0, 0.10), (500_000.0, 0.20), (2_000_000.0, 0.30))


def _type(**extra: object) -> QueryType:
    doc = {"id": "chat", "arrival_rate": 2.0, "input_tokens": 3000, "output_tokens": 300}
    doc["slo"] = {"ttft_s": 2.0, "tpot_s": 0.1, "e2e_s": 60.0}
    return QueryType.model_validate({**doc, **extra})


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"prefix_hit_curve": [[500_000.0, 0.2], [100_000.0, 0.3]]}, "cache sizes must grow"),
        ({"prefix_hit_curve": [[100_000.0, 0.3], [500_000.0, 0.2]]}, "ratios not fall"),
        ({"prefix_hit_ratio": 0.25, "prefix_hit_curve": [[100_000.0, 0.3]]}, "above prefix_hit_ratio"),
        ({"prefix_hit_ratio": 1.5}, "less than or equal to 1"),
    ],
)
def test_query_type_rejects_inconsistent_reuse(extra: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        _type(**extra)


def test_reuse_is_the_measured_step_at_the_free_kv_a_replica_spares() -> None:
    q = _type(prefix_hit_ratio=0.35, prefix_hit_curve=CURVE)
    limits = C._limits(q)
    life = C.request_life(q, limits)  # 2 + 300·0.1 = 32 s
    assert life == pytest.approx(32.0)
    kv, r = 400_000, 1.0
    inflight = r * life * (3000 + 150)  # 100,800 tokens running: 299,200 free
    equiv = (kv - inflight) * q.arrival_rate / r  # as a cache over the whole traffic: 598,400
    assert 500_000 < equiv < 2_000_000
    assert C.prefix_hit(q, kv, r, limits) == 0.20  # the step below, never interpolated up
    assert C.prefix_hit(q, kv, 4.0, limits) == 0.0  # running requests fill the KV: no cache
    assert C.prefix_hit(q, 40_000_000, 1.0, limits) == 0.30  # flat beyond the last point, not 0.35
    assert C.prefix_hit(_type(prefix_hit_ratio=0.35), kv, 4.0, limits) == 0.35  # no curve: no bound
    # Twice the traffic of the same kind (more users) is twice the sessions: a replica at the same
    # rate sees the same reuse; a curve measured on half the traffic counts half the cache.
    twice = _type(arrival_rate=4.0, prefix_hit_ratio=0.35, prefix_hit_curve=CURVE, prefix_hit_rate=2.0)
    assert C.prefix_hit(twice, kv, 1.0, limits) == 0.20
    assert C.prefix_hit(_type(prefix_hit_curve=CURVE, prefix_hit_rate=1.0), kv, 1.0, limits) == 0.10


def test_cached_requests_are_all_or_nothing_and_the_same_at_every_rate() -> None:
    q = _type(prefix_hit_ratio=0.35)
    inp = np.arange(3, 2003) * 7  # every prompt longer than a block: a hit caches something
    c = C.prefix_cached(q, 0, inp, 0.35)
    hit = c > 0
    assert hit.sum() == math.ceil(0.35 * len(inp))
    assert np.array_equal(c[hit], (inp[hit] - 1) // 16 * 16)  # vLLM computes the last token
    assert set(np.nonzero(C.prefix_cached(q, 0, inp, 0.2))[0]) <= set(np.nonzero(hit)[0])
    assert c.sum() / inp.sum() == pytest.approx(0.35, abs=0.03)


def test_stated_cached_tokens_cost_like_a_cache_hit() -> None:
    inst = load_instance(ROOT / "instances" / "azure-2023.yaml")
    opt = parse_option(A100_8B)
    rm = replica_model(inst, opt)
    reqs = [(0, CONV_LONG, 0.0, 2000, 2, None, 1536), (1, CONV_LONG, 50.0, 2000, 2, None, 2000)]
    sim = simulator_for_option(inst, opt, 1, SimConfig())
    rows = capture(sim)
    sim.run(reqs)
    assert rows[0].ttft == pytest.approx(float(rm.iteration_time(464, 0, 0, 1536)), rel=1e-9)
    # a whole prompt stated cached still computes its last block: ⌊1999/16⌋·16 = 1984 cached
    assert rows[1].ttft == pytest.approx(float(rm.iteration_time(16, 0, 0, 1984)), rel=1e-9)
    off = simulator_for_option(inst, opt, 1, SimConfig(prefix_caching=False))
    rows_off = capture(off)
    off.run(reqs)
    assert rows_off[0].ttft == pytest.approx(float(rm.iteration_time(2000, 0, 0, 0)), rel=1e-9)


def _with(inst: Instance, ti: int, **extra: object) -> Instance:
    qs = list(inst.query_types)
    qs[ti] = type(qs[ti]).model_validate({**qs[ti].model_dump(), **extra})
    return inst.model_copy(update={"query_types": qs})


def test_reuse_buys_capacity_bounded_by_the_kv_cache() -> None:
    inst = load_instance(ROOT / "instances" / "mooncake-2025.yaml")
    ti = [q.id for q in inst.query_types].index("chat-8k")
    opt = parse_option("llama-3.1-70b-fp8/h100-80gb/2/1")
    eng = C.Engine.of(replica_model(inst, opt), opt)
    free = _with(inst, ti, prefix_hit_ratio=0.4)
    small = _with(inst, ti, prefix_hit_ratio=0.4, prefix_hit_curve=[[1000.0, 0.05], [1e9, 0.4]])
    rates = [C.estimate(i, eng, opt, ti, 0.99).rate_rps for i in (inst, free, small)]
    assert rates[0] < rates[2] < rates[1]  # the KV bound takes most of the reuse back
    assert len({C.fingerprint(i, opt, ti) for i in (inst, free, small)}) == 3
    # the curve's rate is part of the reuse (prefix_hit_rate, default the type's rate)
    assert C.fingerprint(_with(small, ti, prefix_hit_rate=1.872), opt, ti) == C.fingerprint(small, opt, ti)
    assert C.fingerprint(_with(small, ti, prefix_hit_rate=3.0), opt, ti) != C.fingerprint(small, opt, ti)
    # simulated: reuse 0.4 at any free KV serves more than none, and the run took 0.4 of the
    # prompt tokens from the cache (less vLLM's last blocks)
    cap = {name: C.measure(i, C.make_key(i, opt, ti, 0.99)) for name, i in (("none", inst), ("free", free))}
    assert cap["free"].simulated and cap["free"].rate_rps > 1.2 * cap["none"].rate_rps
    assert cap["free"].attainment >= 0.99 and 0.36 < cap["free"].prefix_hit <= 0.4
    assert cap["none"].prefix_hit == 0.0
    # a curve whose one point needs more free KV than the replica has reaches nothing
    tight = _with(inst, ti, prefix_hit_ratio=0.4, prefix_hit_curve=[[1e9, 0.4]])
    need, share = C.prefix_steps(tight.query_types[ti], cap["none"].rate_rps)[0]
    assert need > eng.kv_capacity and share == 0.4


def test_curve_of_a_stream_with_known_reuse() -> None:
    ids = ["a", "b", "c"]
    blocks = lambda k, n: tuple(range(k, k + n))  # noqa: E731
    stream = [
        (0.0, "a", 2048, blocks(0, 4)),
        (1.0, "a", 2048, blocks(10, 4)),
        (2.0, "a", 2048, blocks(0, 4)),  # hits 2048 if 4096 tokens fit, else 0 (LRU)
        (3.0, "b", 1000, None),  # no ids: left out
        (4.0, None, 500, blocks(0, 1)),
    ]
    reuse = measure_prefix_curve(ids, stream, sizes=(2048, 4096, 8192))
    assert set(reuse) == {"a"}
    ratio, curve = reuse["a"]
    hit = (2048 - 1) // 16 * 16
    assert ratio == pytest.approx(hit / (3 * 2048))
    assert curve == ((2048, 0.0), (4096, pytest.approx(ratio)))  # stops where it reaches the unbounded


def test_demand_figures_write_the_reuse_keys(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 1000 * k, "input_length": 2048, "output_length": 10, "hash_ids": [100 * k + j for j in range(4)]}
        for k in range(2)
    ]
    rows += [
        {"timestamp": 60000 + k, "input_length": 3000, "output_length": 10, "hash_ids": [100 * k + j for j in range(6)]}
        for k in range(2)
    ]
    trace = tmp_path / "conv.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inst = ROOT / "instances" / "mooncake-2025.yaml"
    figs = tmp_path / "types.yaml"
    res = CliRunner().invoke(
        app,
        ["demand", str(trace), "--instance", str(inst), "--out", str(tmp_path / "d.csv"), "--figures", str(figs)],
    )
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(figs.read_text())
    chat = next(t for t in doc["query_types"] if t["id"] == "chat-8k")
    ratio = math.floor(2 * 2048 / (2 * 2048 + 2 * 3000) * 1000) / 1000
    assert chat["prefix_hit_ratio"] == ratio
    assert chat["prefix_hit_curve"] == [[100000, ratio]] and chat["prefix_hit_rate"] == chat["arrival_rate"]
    # the fragment is valid instance input (with an SLO added by hand, as its header says)
    keys = ("prefix_hit_ratio", "prefix_hit_curve", "prefix_hit_rate")
    assert _type(**{k: chat[k] for k in keys}).prefix_hit_curve == ((100000.0, ratio),)


def test_conversations_stay_on_the_pool_that_holds_their_history() -> None:
    """The replay deals new sessions by the plan's shares and sends a turn whose prompt is mostly
    an earlier prompt to that prompt's pool; a shared system-prompt block alone does not bind."""
    from planner.plan import Plan
    from planner.sim.scale import Requests
    from planner.validation import split_by_plan

    inst = load_instance(ROOT / "instances" / "azure-2023.yaml")
    t = inst.query_types[0].id
    opts = [{"model": "llama-3.1-8b", "gpu": g, "tp": 1, "pp": 1} for g in ("a100-80gb", "h100-80gb")]
    plan = Plan.model_validate(
        {
            "instance": inst.name,
            "method": "milp",
            "status": "optimal",
            "deployments": [{**o, "replicas": 1, "gpus": 1} for o in opts],
            "routing": {t: [{**o, "fraction": 0.5} for o in opts]},
        }
    )
    n_conv, turns = 41, 3  # odd: plain round-robin would move every conversation at each turn
    hashes: list[tuple[int, ...] | None] = []
    for turn in range(turns):  # each turn re-sends the last one's blocks and adds two
        for c in range(n_conv):
            hashes.append((0, *range(1000 * c + 1, 1000 * c + 3 + 2 * turn)))  # block 0: a system prompt
    k = len(hashes)
    reqs = Requests(np.arange(k, dtype=float), np.zeros(k, np.int64), np.full(k, 2048), np.full(k, 10), hashes)

    def pools_of(split: list) -> dict[int, set[int]]:
        where: dict[int, set[int]] = {}
        for pool, (_, sub) in enumerate(split):
            for n in np.nonzero(np.isin(reqs.arrival, sub.arrival))[0]:
                where.setdefault(int(n) % n_conv, set()).add(pool)
        return where

    split = split_by_plan(inst, plan, reqs)
    assert all(len(p) == 1 for p in pools_of(split).values())  # every conversation on one pool
    assert [len(sub) for _, sub in split] == [21 * turns, 20 * turns]  # first turns by the shares
    plain = split_by_plan(inst, plan, Requests(reqs.arrival, reqs.ty, reqs.inp, reqs.out, None))
    assert [len(sub) for _, sub in plain] == [62, 61]
    assert sum(len(p) == 2 for p in pools_of(plain).values()) == n_conv  # round-robin scatters them


@pytest.mark.parametrize(("need", "hits"), [(0.0, 1984), (1e12, 0)])
def test_stated_reuse_holds_only_with_the_free_kv_it_needs(need: float, hits: int) -> None:
    """A draw below the share hits (its whole prompt but the last block) when the worker has the
    free KV the step names at admission; the draw above never does."""
    inst = load_instance(ROOT / "instances" / "azure-2023.yaml")
    sim = simulator_for_option(inst, parse_option(A100_8B), 1, SimConfig(stated_reuse=((need, 0.5),)))
    sim.run([(0, CONV_LONG, 0.0, 2000, 2, None, 0, 0.1), (1, CONV_LONG, 50.0, 2000, 2, None, 0, 0.9)])
    assert sim.prefix_hits[CONV_LONG] == hits and sim.prefix_tokens[CONV_LONG] == 4000  # both looked up
