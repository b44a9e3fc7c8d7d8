"""`planner generate`, `solve --method gh|agh`, `stress` and `bench` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from planner.cli import app

runner = CliRunner()


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def test_generate_solve_stress(tmp_path: Path) -> None:
    inst, plan = tmp_path / "g.yaml", tmp_path / "p.yaml"
    res = run("generate", "--types", "5", "--models", "5", "--tiers", "5", "--seed", "1", "--out", str(inst))
    assert res.exit_code == 0, res.output
    for method in ("gh", "agh"):
        res = run("solve", str(inst), "--method", method, "--bound", "--out", str(plan), "--quiet")
        assert res.exit_code == 0, res.output
        assert run("check", str(inst), str(plan)).exit_code == 0
    res = run("stress", str(inst), str(plan), "--inflate", "1.2,1.5", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["factor"] for r in data] == [1.0, 1.2, 1.5]
    assert data[0]["violating_demand_share"] == 0.0


def test_bench_writes_results(tmp_path: Path) -> None:
    res = run("bench", "--families", "table-5x5x5", "--methods", "milp,gh,agh", "--seeds", "1", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    for name in ("bench.csv", "bench.md", "bench_gap.png", "bench_runtime.png"):
        assert (tmp_path / name).is_file(), name


def test_bench_of_heuristics_alone_has_no_gap_plot(tmp_path: Path) -> None:
    """Without an exact method no bound is proved, so there is no gap to plot (this crashed on a
    log scale with nothing above 0 after writing the tables)."""
    res = run("bench", "--families", "table-5x5x5", "--methods", "gh", "--seeds", "1", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.csv", "bench.md", "bench_runtime.png"]


def test_bad_options_exit_2(tmp_path: Path) -> None:
    inst = tmp_path / "g.yaml"
    assert run("generate", "--mode", "bogus", "--out", str(inst)).exit_code == 2
    assert not inst.exists()
    assert run("bench", "--families", "nope", "--out", str(tmp_path)).exit_code == 2
    args = ("--types", "5", "--models", "5", "--tiers", "5", "--seed", "1")
    assert run("generate", *args, "--out", str(inst)).exit_code == 0
    plan = tmp_path / "p.yaml"
    assert run("solve", str(inst), "--method", "agh", "--out", str(plan), "--quiet").exit_code == 0
    res = run("stress", str(inst), str(plan), "--inflate", "abc")
    assert res.exit_code == 2 and "--inflate" in res.stderr
    res = run("solve", str(inst), "--method", "gh", "--warm-start", "agh", "--out", str(tmp_path / "x.yaml"))
    assert res.exit_code == 2 and "--warm-start" in res.stderr
