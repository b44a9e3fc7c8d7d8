"""`planner demand`, demand CSVs in instances, and `planner review` rendered in headless Chromium."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import InputError
from planner.loader import load_instance
from planner.review.demand import parse_window, read_demand_csv
from planner.review.report import SECTIONS
from tests.conftest import INSTANCES, SHARED

runner = CliRunner()
AZURE = SHARED / "data" / "azure"
CONV, CODE = AZURE / "AzureLLMInferenceTrace_conv.csv", AZURE / "AzureLLMInferenceTrace_code.csv"
INSTANCE = INSTANCES / "azure-2023.yaml"
pytestmark = pytest.mark.skipif(not CONV.is_file(), reason="../shared/data is not beside the repository")


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def demand_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demand") / "demand.csv"
    res = run("demand", CONV, CODE, "--instance", INSTANCE, "--window", "15m", "--out", path)
    assert res.exit_code == 0, res.output
    return path


def test_demand_counts_rates_and_round_trip(demand_csv: Path) -> None:
    d = read_demand_csv(demand_csv, ["conv-short", "conv-long", "code"])
    assert d.windows == 4 and d.window_s == 900
    per_type = {t: sum(r.requests for r in d.rows if r.query_type == t) for t in d.type_ids}
    assert per_type == {"conv-short": 9838, "conv-long": 9528, "code": 8819}  # the instance's own split
    for r in d.rows:
        assert r.arrival_rate * (r.end_s - r.start_s) == pytest.approx(r.requests, rel=1e-5)  # 6 significant digits
        if r.requests > 20:
            assert r.input_p90 >= r.input_mean  # right-skewed prompt lengths
    # A hand check: window 1 of code from the raw CSV.
    import pandas as pd

    raw = pd.read_csv(CODE)
    t = pd.to_datetime(raw["TIMESTAMP"].str.slice(0, 26))
    sec = (t - t.iloc[0]).dt.total_seconds()
    sel = raw[(sec >= 900) & (sec < 1800)]
    row = next(r for r in d.rows if r.window == 1 and r.query_type == "code")
    assert row.requests == len(sel)
    assert row.input_mean == pytest.approx(sel["ContextTokens"].mean(), rel=1e-5)  # CSV: 6 significant digits


def test_demand_bad_input(tmp_path: Path, demand_csv: Path) -> None:
    assert parse_window("15m") == 900 and parse_window("1h") == 3600 and parse_window("90") == 90
    for bad in ("0m", "fast", "-5s"):
        with pytest.raises(InputError):
            parse_window(bad)
    out = tmp_path / "d.csv"
    assert run("demand", CONV, "--instance", INSTANCE, "--window", "soon", "--out", out).exit_code == 2
    assert run("demand", CONV, "--instance", INSTANCE, "--out", tmp_path / "d.json").exit_code == 2
    assert not out.exists()
    lines = demand_csv.read_text().splitlines()
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join([lines[0], lines[1], lines[2].replace(",2.", ",-2.", 1)]) + "\n")
    with pytest.raises(InputError, match="line 3"):
        read_demand_csv(broken)
    gap = tmp_path / "gap.csv"
    gap.write_text("\n".join([lines[0], *lines[1:4], *lines[7:10]]) + "\n")
    with pytest.raises(InputError, match=r"holes|gap"):
        read_demand_csv(gap)
    with pytest.raises(InputError, match="unknown query type"):
        read_demand_csv(demand_csv, ["conv-short"])


def test_instance_with_demand_csv_plans_per_window(tmp_path: Path, demand_csv: Path) -> None:
    doc = yaml.safe_load(INSTANCE.read_text())
    doc["include"] = [str((INSTANCES / p).resolve()) for p in doc["include"]]
    doc["slo_attainment"] = "mean"  # multi-period mechanics; attainment per window: test_attainment.py
    doc["scaling"] = {"demand_csv": "demand.csv", "max_change": 2}
    shutil.copy(demand_csv, tmp_path / "demand.csv")
    path = tmp_path / "mp.yaml"
    path.write_text(yaml.safe_dump(doc))
    inst = load_instance(path)
    assert inst.scaling is not None and len(inst.scaling.windows) == 4
    assert [w.hours for w in inst.scaling.windows][:3] == [0.25, 0.25, 0.25]
    out = tmp_path / "plan.yaml"
    res = run("solve", path, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert run("check", path, out).exit_code == 0
    assert run("solve", path, "--method", "gh").exit_code == 2  # gh has no multi-period form
    bad = copy.deepcopy(doc)
    bad["scaling"]["demand_csv"] = "missing.csv"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert run("solve", tmp_path / "bad.yaml").exit_code == 2


def mean_copy(tmp_path: Path) -> Path:
    """azure-2023 under mean-latency SLOs: the review's mechanics at the old speed (its per-window
    plans, stress runs and what-ifs each solve a lazy attainment loop otherwise; see the note in
    planner/review/report.py)."""
    doc = yaml.safe_load(INSTANCE.read_text())
    doc["include"] = [str((INSTANCES / p).resolve()) for p in doc["include"]]
    doc["slo_attainment"] = "mean"
    path = tmp_path / "azure-2023.yaml"
    path.write_text(yaml.safe_dump(doc))
    mapping = yaml.safe_load(INSTANCE.with_name("azure-2023.traces.yml").read_text())
    mapping["traces"] = [str((INSTANCES / p).resolve()) for p in mapping["traces"]]
    (tmp_path / "azure-2023.traces.yml").write_text(yaml.safe_dump(mapping))
    return path


def test_review_end_to_end_renders_in_chromium(tmp_path: Path) -> None:
    from planner.review.browser import find_chromium, render

    instance = mean_copy(tmp_path)
    current = tmp_path / "current.yaml"
    assert run("solve", instance, "--out", current, "--quiet").exit_code == 0
    out = tmp_path / "review"
    res = run("review", "--instance", instance, "--current", current, "--out", out)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "review.json").read_text())
    assert [r["type"] for r in data["slo"]] == ["conv-short", "conv-long", "code"]
    for x in data["slo"]:  # a plan that misses a type's target in replay is flagged, and only then
        for plan in ("current", "recommended"):
            a = x[f"{plan}_attainment"]
            flagged = any(f.startswith(f"{plan} plan misses {x['type']}:") for f in data["flags"])
            assert flagged == (a is not None and a < x["target"]), (plan, x, data["flags"])
    assert set(data["stress"]) == {"1.0", "1.2", "1.5"}
    assert len(data["schedule"]) == 4 and not data["recommended"]["check"]
    assert {w["scenario"] for w in data["what_if"]} >= {"demand +20%", "prices −10%"}
    html = (out / "review.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert (out / "review.md").read_text().startswith("# Capacity review")
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "review.png"
    r = render(out / "review.html", shot)
    assert r.console_errors == [], r.console_errors
    assert r.section_ids == [sid for sid, _ in SECTIONS]
    assert {title for _, title in SECTIONS} <= set(r.headings)
    assert shot.stat().st_size > 50_000 and r.page_height > 2000


def test_review_bad_input(tmp_path: Path) -> None:
    current = tmp_path / "current.yaml"
    assert run("solve", mean_copy(tmp_path), "--out", current, "--quiet").exit_code == 0
    res = run("review", "--instance", INSTANCE, "--current", current, "--out", tmp_path / "r", "--window", "x")
    assert res.exit_code == 2 and "--window" in res.output
    assert not (tmp_path / "r").exists()
    res = run("review", "--instance", INSTANCE, "--current", tmp_path / "none.yaml", "--out", tmp_path / "r")
    assert res.exit_code == 2


def test_review_validates_its_schedule_on_an_attainment_instance(tmp_path: Path) -> None:
    """Attainment targets (not mean semantics): the review replays its recommended schedule window
    by window and records the validation (the call once got the single-period instance, whose
    missing windows raised). Small instance, 30 minutes of synthetic Azure-format traffic."""
    import numpy as np

    from tests.test_attainment import _small_doc

    doc = _small_doc()
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(doc))
    rng = np.random.default_rng(5)
    for stem, rate, (i_med, o_med) in (("chat_conv", 3.0, (600, 110)), ("code_code", 1.0, (1500, 25))):
        n = rng.poisson(rate * 1800)
        at = np.sort(rng.uniform(0, 1800, n))
        lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
        for a, i, o in zip(at, rng.lognormal(np.log(i_med), 0.6, n), rng.lognormal(np.log(o_med), 0.6, n), strict=True):
            stamp = f"2023-11-16 18:{int(a // 60):02d}:{a % 60:09.6f}"
            lines.append(f"{stamp},{min(int(i) + 1, 7000)},{min(int(o) + 1, 400)}")
        (tmp_path / f"{stem}.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "small.traces.yml").write_text(
        yaml.safe_dump(
            {
                "traces": ["chat_conv.csv", "code_code.csv"],
                "rules": [{"type": "chat", "source": "chat*"}, {"type": "code", "source": "code*"}],
                "default": None,
            }
        )
    )
    current = tmp_path / "current.yaml"
    assert run("solve", path, "--out", current, "--quiet").exit_code == 0
    out = tmp_path / "review"
    res = run("review", "--instance", path, "--current", current, "--out", out, "--time-limit", "20")
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "review.json").read_text())["recommended"]
    v = rec["validation"]
    assert v is not None and v["rounds"] >= 1 and set(v["attainment"]) == {"chat", "code"}
    assert v["passed"] == all(x is None or x >= 0.99 for x in v["attainment"].values())
    assert "Validated by replay, window by window" in (out / "review.md").read_text()
