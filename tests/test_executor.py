"""Fan-out (planner.executor) and the sharded replay (planner.sim.shard): the same results from
every executor, a failed task retried once and then named, a plan's pools replayed one by one
equal to the whole replay; Ray where it is installed (a local cluster started here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from planner import executor
from planner.cli import app
from planner.loader import load_instance
from planner.options import build_option_table
from planner.plan import Plan
from planner.sim.cluster import simulator_for_plan
from planner.sim.engine import SimConfig
from planner.sim.mapping import TypeMapper
from planner.sim.replay import feed_of
from planner.sim.scale import Requests
from planner.sim.shard import replay_sharded
from planner.sim.traces import Trace
from planner.solvers import solve
from tests.conftest import ROOT

MOONCAKE = ROOT / "instances" / "mooncake-2025.yaml"


def _square(x: int) -> int:
    return x * x


def _flaky(arg: tuple[str, int]) -> int:
    """Fails the first time it runs for a given marker file, then succeeds; ``-1`` always fails."""
    marker, x = arg
    if x < 0:
        raise ValueError(f"bad task {x}")
    path = Path(marker)
    if not path.exists():
        path.write_text("tried")
        raise RuntimeError("transient")
    return x + 1


@pytest.mark.parametrize("ex", [executor.InProcess(), executor.LocalPool(2)], ids=["in-process", "pool"])
def test_every_executor_returns_the_results_in_order_and_reports_progress(ex: executor.Executor) -> None:
    seen: list[tuple[int, int, str]] = []
    out = ex.map(_square, list(range(7)), [f"n{k}" for k in range(7)], lambda d, t, n: seen.append((d, t, n)))
    assert out == [k * k for k in range(7)]
    assert [d for d, _, _ in seen] == list(range(1, 8)) and {n for _, _, n in seen} == {f"n{k}" for k in range(7)}


@pytest.mark.parametrize("ex", [executor.InProcess(), executor.LocalPool(2)], ids=["in-process", "pool"])
def test_a_failed_task_is_retried_once_then_named_without_losing_the_others(
    ex: executor.Executor, tmp_path: Path
) -> None:
    args = [(str(tmp_path / f"m{k}"), k) for k in range(4)] + [(str(tmp_path / "bad"), -1)]
    with pytest.raises(executor.FanOutError) as exc:
        ex.map(_flaky, args, ["a", "b", "c", "d", "broken"])
    err = exc.value
    assert [f.name for f in err.failures] == ["broken"] and "ValueError: bad task -1" in err.failures[0].error
    assert err.results == [1, 2, 3, 4, None]  # each of the others failed once (transient) and was rerun
    assert "broken" in str(err)


def test_cli_options_are_checked_up_front() -> None:
    plan = "/nonexistent-plan.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["simulate", str(MOONCAKE), plan, "--workers", "2"])
    assert res.exit_code == 2 and "--workers" in res.output and "goes with --shard" in res.output
    res = runner.invoke(app, ["bench", "--families", "table-5x5x5", "--seeds", "1", "--workers", "0"])
    assert res.exit_code == 2 and "--workers" in res.output


def _pool(model: str, gpu: str, tp: int, replicas: int) -> dict[str, Any]:
    return {"model": model, "gpu": gpu, "tp": tp, "pp": 1, "replicas": replicas, "gpus": replicas * tp}


@pytest.fixture(scope="module")
def mooncake() -> tuple[Any, Plan, Any]:
    """mooncake-2025 with a hand-made plan of four pools (types spread over two each): no solve."""
    inst = load_instance(MOONCAKE)
    pools = [
        _pool("llama-3.1-8b", "h100-80gb", 1, 2),
        _pool("llama-3.1-70b-fp8", "h200", 2, 1),
        _pool("llama-3.1-70b-fp8", "h100-80gb", 8, 1),
        _pool("llama-3.1-8b", "h100-80gb", 2, 1),
    ]
    ref = [{k: v for k, v in p.items() if k not in ("replicas", "gpus")} for p in pools]
    routing = {
        "chat-8k": [{**ref[0], "fraction": 0.7}, {**ref[1], "fraction": 0.3}],
        "long-32k": [{**ref[2], "fraction": 0.5}, {**ref[3], "fraction": 0.5}],
        "doc-128k": [{**ref[2], "fraction": 1.0}],
    }
    plan = Plan.model_validate(
        {"instance": inst.name, "method": "manual", "status": "feasible", "deployments": pools, "routing": routing}
    )
    return inst, plan, TypeMapper.from_file(MOONCAKE.with_suffix(".traces.yml"), inst)


def _whole(inst: Any, plan: Plan, mapper: Any) -> dict[str, Any]:
    sim = simulator_for_plan(inst, plan, SimConfig(policy="jsq"))
    sim.run(feed_of(Trace(list(mapper.trace_paths)), mapper))
    s = sim.summary()
    s.pop("placement_us")
    return s


def test_the_pools_replayed_one_by_one_are_the_whole_replay(mooncake: tuple[Any, Plan, Any], tmp_path: Path) -> None:
    inst, plan, mapper = mooncake
    whole = _whole(inst, plan, mapper)
    for ex in (executor.InProcess(), executor.LocalPool(2)):
        feed = feed_of(Trace(list(mapper.trace_paths)), mapper)
        merged = replay_sharded(inst, plan, feed, SimConfig(policy="jsq"), ex, tmp_path, chunk=2000)
        s = merged.summary()
        s.pop("placement_us")
        assert json.dumps(s, sort_keys=True) == json.dumps(whole, sort_keys=True)  # prefix ids and all
        assert len(merged.results) == len(plan.deployments) and not list(tmp_path.iterdir())  # scratch removed
    assert whole["types"]["chat-8k"]["prefix_hit_ratio"] > 0.1


def test_simulate_shard_writes_the_same_summary(mooncake: tuple[Any, Plan, Any], tmp_path: Path) -> None:
    _, plan, _ = mooncake
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(json.dumps(plan.model_dump(mode="json", exclude_none=True)))
    outs = []
    for extra in ([], ["--shard", "--workers", "2"]):
        out = tmp_path / f"s{len(outs)}.json"
        res = CliRunner().invoke(app, ["simulate", str(MOONCAKE), str(plan_file), "--out", str(out), "--quiet", *extra])
        assert res.exit_code == 0, res.output
        s = json.loads(out.read_text())
        s.pop("placement_us")
        outs.append(s)
    assert outs[0] == outs[1]
    res = CliRunner().invoke(
        app, ["simulate", str(MOONCAKE), str(plan_file), "--shard", "--requests", str(tmp_path / "r.csv")]
    )
    assert res.exit_code == 2 and "--requests" in res.output and not (tmp_path / "r.csv").exists()


# ---------------------------------------------------------------- Ray (optional extra)


@pytest.fixture(scope="module")
def ray_executor() -> Any:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'planner[ray]'")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's workers import this module's task functions by name, as pytest imported it.
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield executor.RayExecutor("auto")
    finally:
        ray.shutdown()


def test_ray_gives_what_the_process_pool_gives(
    ray_executor: Any, mooncake: tuple[Any, Plan, Any], tmp_path: Path
) -> None:
    assert ray_executor.workers == 2
    assert ray_executor.map(_square, list(range(5))) == [0, 1, 4, 9, 16]
    args = [(str(tmp_path / "m0"), 0), (str(tmp_path / "bad"), -1)]
    with pytest.raises(executor.FanOutError) as exc:
        ray_executor.map(_flaky, args, ["ok", "broken"])
    assert exc.value.results == [1, None] and exc.value.failures[0].name == "broken"
    # a plan's pools as Ray tasks: the whole replay, to the digit
    inst, plan, mapper = mooncake
    feed = feed_of(Trace(list(mapper.trace_paths)), mapper)
    s = replay_sharded(inst, plan, feed, SimConfig(policy="jsq"), ray_executor, chunk=4000).summary()
    s.pop("placement_us")
    assert json.dumps(s, sort_keys=True) == json.dumps(_whole(inst, plan, mapper), sort_keys=True)


def test_validation_and_bench_under_ray_are_byte_identical(ray_executor: Any, mooncake: tuple[Any, Plan, Any]) -> None:
    from planner.bench import run
    from planner.validation import validate

    inst, plan, mapper = mooncake
    table = build_option_table(inst)
    reqs = Requests.collect(feed_of(Trace(list(mapper.trace_paths)), mapper))
    docs = []
    for ex in (executor.LocalPool(2), ray_executor):
        with executor.use(ex):
            # one round: the replay and its record (a re-solve would simulate capacities: minutes)
            vplan, _ = validate(inst, table, plan, reqs, lambda t: solve(t.instance, "milp", table=t), ["t"], rounds=1)
            bench = run(["table-5x5x5"], ["milp", "gh", "agh"], [0, 1], progress=False)
        timing = [c for c in bench.columns if c.endswith("seconds")]
        docs.append((vplan.model_dump_json(exclude={"solve_seconds"}), bench.drop(columns=timing).to_csv(index=False)))
    assert docs[0] == docs[1]
