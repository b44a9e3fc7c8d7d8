"""`planner simulate` and `planner scale` from the command line (`solve --validate`: test_instances)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from planner.cli import app
from tests.conftest import INSTANCES, SHARED

runner = CliRunner()
AZURE = SHARED / "data" / "azure"
CONV = AZURE / "AzureLLMInferenceTrace_conv.csv"
CODE = AZURE / "AzureLLMInferenceTrace_code.csv"
INSTANCE = INSTANCES / "azure-2023.yaml"

pytestmark = pytest.mark.skipif(not CONV.is_file(), reason="../shared/data is not beside the repository")


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def plan(golden_capacities: None) -> Path:
    """azure-2023's golden plan (test_golden proves it is what `planner solve` gives today)."""
    return Path(__file__).parent / "golden" / "azure-2023.yaml"


def test_simulate_writes_summary_requests_and_plots(plan: Path, tmp_path: Path) -> None:
    summary, reqs, plots = tmp_path / "s.json", tmp_path / "r.csv", tmp_path / "plots"
    res = run(
        "simulate", INSTANCE, plan, "--trace", CONV, "--trace", CODE, "--limit", "1500",
        "--out", summary, "--requests", reqs, "--plots", plots,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = json.loads(summary.read_text())
    c = s["conservation"]
    assert c["arrived"] == 3000
    assert (
        c["arrived"]
        == c["finished"] + c["rejected_context"] + c["rejected_kv"] + c["rejected_unserved"] + c["unmapped"]
    )
    assert set(s["types"]) == {"conv-short", "conv-long", "code"}
    with reqs.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == c["finished"]
    met = sum(int(r["met_slo"]) for r in rows)
    served = sum(t["served"] for t in s["types"].values())
    assert s["attainment"] == pytest.approx(met / served, abs=1e-6)
    for name in ("sim-latency.png", "sim-attainment.png", "sim-load.png"):
        assert (plots / name).stat().st_size > 1000


def test_strict_turns_a_miss_into_exit_1(plan: Path, tmp_path: Path) -> None:
    # Ten times the trace's rate on the same plan cannot hold the SLOs.
    args = ["simulate", INSTANCE, plan, "--trace", CONV, "--limit", "2000", "--time-scale", "10", "--quiet"]
    assert run(*args).exit_code == 0
    assert run(*args, "--strict").exit_code == 1


def test_bad_trace_line_names_file_and_line(plan: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,10\n1.0,abc,10\n2.0,100,10\n")
    out = tmp_path / "s.json"
    res = run("simulate", INSTANCE, plan, "--trace", bad, "--out", out)
    assert res.exit_code == 2
    assert "bad.csv" in res.output and "line 3" in res.output
    assert "Traceback" not in res.output
    assert not out.exists()
    res = run("simulate", INSTANCE, plan, "--trace", bad, "--skip-bad", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["requests"] == 2


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (["--policy", "fastest"], "--policy"),
        (["--out", "x.yaml"], "--out"),
        (["--target", "1.5"], "--target"),
        (["--split", "nonsense"], "--split"),
    ],
)
def test_bad_options_exit_2(plan: Path, tmp_path: Path, extra: list[str], field: str) -> None:
    res = run("simulate", INSTANCE, plan, "--trace", CONV, "--limit", "10", *extra)
    assert res.exit_code == 2, res.output
    assert field in res.output


def test_simulate_split_phase(plan: Path, tmp_path: Path) -> None:
    from planner.plan import read_plan

    d = next(d for d in read_plan(plan).deployments if d.replicas > 0)
    split = f"{d.model}/{d.gpu}/{d.tp}/{d.pp}=1:{d.gpu}/{d.tp}/{d.pp}:1"
    out = tmp_path / "s.json"
    res = run("simulate", INSTANCE, plan, "--trace", CONV, "--limit", "300", "--split", split, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    roles = {p["role"] for p in json.loads(out.read_text())["pools"]}
    assert {"prefill", "decode"} <= roles


def test_scale_option_and_tp_sweep(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    res = run(
        "scale", INSTANCE, "--trace", CODE, "--limit", "600", "--option", "llama-3.1-70b/h100-80gb/4/1",
        "--tp-sweep", "--policy", "jsq,round-robin", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    # tp1 and tp2 do not hold the 141 GB of bf16 weights on 80 GB GPUs
    assert {r["option"] for r in rows} == {"llama-3.1-70b/h100-80gb/tp4/pp1", "llama-3.1-70b/h100-80gb/tp8/pp1"}
    for r in rows:
        if r["replicas"] is not None:
            assert r["attainment"] >= 0.99
            assert r["gpus"] == r["replicas"] * int(r["option"].split("/tp")[1].split("/")[0])
    assert "most goodput per GPU" in res.output


def test_scale_plan_lists_milp_counts(plan: Path, tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    res = run("scale", INSTANCE, "--trace", CONV, "--limit", "800", "--plan", plan, "--policy", "jsq", "--out", out)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert rows and all("planned_replicas" in r for r in rows)
    # Every request reaches a pool, except the share the plan leaves unserved (its `unserved:`).
    dropped = max(yaml.safe_load(plan.read_text())["unserved"].values())
    total = sum(r["requests"] for r in rows)
    assert total == 800 if dropped == 0 else 800 * (1 - dropped) - 3 <= total < 800
