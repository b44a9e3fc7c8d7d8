"""Prefix reuse (planner.sim.prefix): hit ratios known by construction, LRU eviction order, a
cached prompt's TTFT in the simulator, prefix-affinity placement, the trace's ids reaching the
replay, and `planner demand` reporting the ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import InputError
from planner.loader import load_instance
from planner.perf import ReplicaModel
from planner.problem import Instance
from planner.sim.cluster import parse_option, replica_model, simulator_for_option
from planner.sim.engine import SimConfig
from planner.sim.mapping import TypeMapper
from planner.sim.prefix import PrefixCache, PrefixIndex, ideal_hit_ratio
from planner.sim.replay import feed_of
from planner.sim.traces import Trace
from tests.conftest import ROOT
from tests.test_sim import A100_8B, CONV_LONG, capture


@pytest.fixture(scope="module")
def inst() -> Instance:
    return load_instance(ROOT / "instances" / "azure-2023.yaml").model_copy(update={"slo_attainment": "mean"})


def test_hit_ratio_of_a_stream_with_known_reuse() -> None:
    prompts = [
        (1536, [0, 1, 2]),  # cold: 0
        (1536, [0, 1, 3]),  # shares blocks 0, 1: 1024
        (2000, [0, 1, 2, 4]),  # shares 0, 1, 2: 1536
        (100, [5]),  # nothing: 0
        (1536, [0, 1, 2]),  # all cached, but vLLM computes the last token: ⌊1535/16⌋·16 = 1520
        (700, [6, 7]),  # cold: 0
        (700, [6, 7]),  # 512 + a partial block of 188, capped at ⌊699/16⌋·16 = 688
        (900, None),  # no ids: 0
    ]
    hit, total = ideal_hit_ratio(prompts)
    assert total == 1536 * 3 + 2000 + 100 + 700 * 2 + 900
    assert hit == 1024 + 1536 + 1520 + 688
    # A cache of one block keeps the last prompt's head (inserted last): the shared block 0 hits
    # for prompts 2 and 3 but is evicted by the 100-token block 5 before prompt 5, and block 6
    # hits for prompt 7 without its partial tail.
    assert ideal_hit_ratio(prompts, capacity=600)[0] == 512 * 3


def test_lru_evicts_tails_first_and_keeps_shared_heads() -> None:
    c = PrefixCache(capacity=1536)
    c.insert([1, 2], 1024)  # tail first: 2, then 1 (the head is the most recent)
    c.insert([3], 512)
    assert list(c.blocks) == [2, 1, 3] and c.tokens == 1536
    c.insert([4], 512)  # one block must go: A's tail
    assert list(c.blocks) == [1, 3, 4] and c.evicted == 1
    assert c.match([1, 2], 1024) == 512  # the head still hits, and becomes the most recent
    c.insert([5], 512)
    assert list(c.blocks) == [4, 1, 5]
    c.trim(512)
    assert list(c.blocks) == [5] and c.tokens == 512


def _iteration(rm: ReplicaModel, chunk: int, cached: int) -> float:
    return float(rm.iteration_time(chunk, 0, 0, cached))


def test_a_cached_prompt_costs_only_its_uncached_suffix(inst: Instance) -> None:
    opt = parse_option(A100_8B)
    rm = replica_model(inst, opt)
    ids = (10, 11, 12, 13)
    reqs = [(0, CONV_LONG, 0.0, 2048, 2, ids), (1, CONV_LONG, 100.0, 2000, 2, (10, 11, 12, 99))]
    sim = simulator_for_option(inst, opt, 1, SimConfig())
    rows = capture(sim)
    sim.run(reqs)
    assert rows[0].ttft == pytest.approx(_iteration(rm, 2048, 0), rel=1e-9)  # cold: one 2048-token chunk
    # 1536 tokens cached: one chunk of the 464 left, attending to the cached 1536.
    assert rows[1].ttft == pytest.approx(_iteration(rm, 464, 1536), rel=1e-9)
    assert sim.summary()["types"]["conv-long"]["prefix_hit_ratio"] == pytest.approx(1536 / 4048)
    off = simulator_for_option(inst, opt, 1, SimConfig(prefix_caching=False))
    rows_off = capture(off)
    off.run(reqs)
    assert rows_off[1].ttft == pytest.approx(_iteration(rm, 2000, 0), rel=1e-9)


def test_cached_blocks_yield_to_running_requests(inst: Instance) -> None:
    """The cache lives in free KV: a worker's cached tokens never exceed capacity − in use."""
    opt = parse_option(A100_8B)
    sim = simulator_for_option(inst, opt, 1, SimConfig())
    w = sim.all_pools[0].workers[0]
    cap = w.cap
    n = cap // 4000 + 4  # more 4000-token prompts than the KV holds at once
    reqs = [(k, CONV_LONG, 0.05 * k, 4000, 300, tuple(range(10 * k, 10 * k + 8))) for k in range(n)]
    seen: list[int] = []
    start = type(w).start

    def spy(self, now: float) -> None:  # type: ignore[no-untyped-def]
        start(self, now)
        seen.append(self.cache.tokens + self.kv_used() - self.cap)

    type(w).start = spy  # type: ignore[method-assign]
    try:
        sim.run(reqs)
    finally:
        type(w).start = start  # type: ignore[method-assign]
    assert max(seen) <= 0 and w.cache.evicted > 0


@pytest.mark.parametrize(("policy", "worker"), [("prefix-affinity", 1), ("jsq", 0)])
def test_prefix_affinity_routes_to_the_replica_holding_the_prefix(inst: Instance, policy: str, worker: int) -> None:
    opt = parse_option(A100_8B)
    sim = simulator_for_option(inst, opt, 2, SimConfig(policy=policy))
    rows = capture(sim)
    sim.run(
        [
            (0, CONV_LONG, 0.0, 2048, 2, (1, 2, 3, 4)),
            (1, CONV_LONG, 0.0, 2048, 2, (5, 6, 7, 8)),  # the other replica: the first is busy
            (2, CONV_LONG, 50.0, 2048, 2, (5, 6, 7, 9)),  # both idle again: only the cache differs
        ]
    )
    assert (rows[0].worker, rows[1].worker) == (0, 1)
    assert rows[2].worker == worker


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_trace_ids_reach_the_replay_and_bad_ids_name_the_line(inst: Instance, tmp_path: Path) -> None:
    rows = [
        {"timestamp": 0, "input_length": 1024, "output_length": 2, "hash_ids": [0, 1]},
        {"timestamp": 30000, "input_length": 1500, "output_length": 2, "hash_ids": [0, 1, 2]},
    ]
    trace = Trace([_jsonl(tmp_path / "t.jsonl", rows)])
    feed = list(feed_of(trace, TypeMapper.single(inst.model_copy(update={"query_types": inst.query_types[:1]}))))
    assert [f[5] for f in feed] == [(0, 1), (0, 1, 2)]
    sim = simulator_for_option(inst, parse_option(A100_8B), 1, SimConfig(), types=[0])
    sim.run(feed)
    assert sim.prefix_hits[0] == 1024
    bad = _jsonl(tmp_path / "bad.jsonl", [{**rows[0], "hash_ids": [0, "x"]}])
    with pytest.raises(InputError) as exc:
        PrefixIndex([bad])
    assert exc.value.file == str(bad) and exc.value.field == "line 1"


def test_demand_reports_the_prefix_hit_ratio(tmp_path: Path) -> None:
    # Two conversations of chat-8k size (mooncake-2025's types split by prompt length) whose second
    # turn re-sends the first turn's prompt: it reuses 2048 of its 3000 tokens.
    rows = []
    for conv in range(2):
        base = 100 * conv
        rows += [
            {
                "timestamp": 1000 * conv,
                "input_length": 2048,
                "output_length": 10,
                "hash_ids": [base + j for j in range(4)],
            },
        ]
    for conv in range(2):
        base = 100 * conv
        rows.append(
            {"timestamp": 60000 + conv, "input_length": 3000, "output_length": 10,
             "hash_ids": [base + j for j in range(6)]}
        )  # fmt: skip
    trace = _jsonl(tmp_path / "conv.jsonl", rows)
    out = tmp_path / "demand.csv"
    inst = ROOT / "instances" / "mooncake-2025.yaml"
    res = CliRunner().invoke(app, ["demand", str(trace), "--instance", str(inst), "--out", str(out), "--window", "1h"])
    assert res.exit_code == 0, res.output
    ratio = 2 * 2048 / (2 * 2048 + 2 * 3000)
    assert f"chat-8k {ratio:.3f}" in res.output
    header, first = out.read_text().splitlines()[:2]
    assert header.endswith(",prefix_hit_ratio") and first.startswith("0,0,") and first.split(",")[3] == "chat-8k"
    assert float(first.split(",")[-1]) == pytest.approx(ratio, abs=1e-6)
    res = CliRunner().invoke(
        app, ["demand", str(trace), "--instance", str(inst), "--out", str(out), "--prefix-cache", "lots"]
    )
    assert res.exit_code == 2 and "--prefix-cache" in res.output
