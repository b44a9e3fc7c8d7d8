"""Demand per query type and window (`planner.review.demand`) and `planner demand`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import InputError
from planner.loader import load_instance
from planner.review.demand import COLUMNS, Demand, demand_from_trace, parse_window, read_demand_csv
from planner.sim.mapping import TypeMapper
from planner.sim.traces import Trace, TraceRequest
from tests.conftest import INSTANCES, SHARED

AZURE = SHARED / "data" / "azure"
CONV = AZURE / "AzureLLMInferenceTrace_conv.csv"
CODE = AZURE / "AzureLLMInferenceTrace_code.csv"
INSTANCE = INSTANCES / "azure-2023.yaml"
MAPPING = INSTANCES / "azure-2023.traces.yml"
TYPES = ["conv-short", "conv-long", "code"]
needs_azure = pytest.mark.skipif(not (CONV.is_file() and CODE.is_file()), reason="../shared/data is not there")
runner = CliRunner()


def req(t: float, n_in: int = 10, n_out: int = 5, source: str = "s") -> TraceRequest:
    return TraceRequest(t, n_in, n_out, source, 0, 2)


def by_len(r: TraceRequest) -> str | None:
    return None if r.input_tokens == 0 else ("short" if r.input_tokens <= 100 else "long")


# --------------------------------------------------------------------------------------------
# The Azure 2023 traces
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azure() -> Demand:
    inst = load_instance(INSTANCE)
    mapper = TypeMapper.from_file(MAPPING, inst)
    return demand_from_trace(Trace([CONV, CODE]), mapper.type_of, [q.id for q in inst.query_types], 900.0)


@pytest.fixture(scope="module")
def conv_rows() -> pd.DataFrame:
    df = pd.read_csv(CONV)
    ts = pd.to_datetime(df["TIMESTAMP"])
    df["t"] = (ts - ts.iloc[0]).dt.total_seconds()
    return df


@needs_azure
def test_azure_grid_counts_and_conservation(azure: Demand) -> None:
    assert azure.type_ids == TYPES
    assert azure.windows == 4  # conv spans 3501.7 s: three whole 15-minute windows and a partial one
    assert len(azure.rows) == 4 * 3
    assert [(r.window, r.query_type) for r in azure.rows] == [(w, t) for w in range(4) for t in TYPES]
    assert azure.unmapped == 0 and azure.outside == 0
    counts = azure.count_matrix().sum(axis=0)
    assert counts.tolist() == [9838, 9528, 8819]
    lengths = azure.lengths_s()
    assert lengths[:3].tolist() == [900.0, 900.0, 900.0]
    assert lengths[3] == pytest.approx(801.72, abs=0.01)  # ends at the last arrival, not at 3600 s
    assert azure.full().tolist() == [True, True, True, False]
    # Σ_w rate · window length = requests, per type and per window
    np.testing.assert_allclose(azure.rate_matrix() * lengths[:, None], azure.count_matrix(), rtol=1e-12)


@needs_azure
def test_azure_rates_match_the_instance(azure: Demand) -> None:
    inst = load_instance(INSTANCE)
    expected = {q.id: q.arrival_rate for q in inst.query_types}
    mean = azure.mean_rates()  # requests over the covered span
    for t in TYPES:
        assert mean[t] == pytest.approx(expected[t], rel=0.05)
    # conv's two buckets use conv's own span, which is the merged span: equal to 3 digits
    assert mean["conv-short"] == pytest.approx(2.809, abs=1e-3)
    assert mean["conv-long"] == pytest.approx(2.721, abs=1e-3)
    # The instance divides code by code's own span (3435.9 s); over code alone it matches exactly.
    inst_code = demand_from_trace(Trace(CODE), lambda r: "code", ["code"], 900.0)
    assert inst_code.mean_rates()["code"] == pytest.approx(2.567, abs=1e-3)
    # The trace is not stationary: whole windows run above the hour's mean (the last minutes are
    # quiet, code's especially), so the peak is what a fixed fleet must be sized for.
    full = azure.rate_matrix()[azure.full()].mean(axis=0)
    for k, t in enumerate(TYPES):
        assert full[k] > expected[t]
        assert azure.peak()[t] >= full[k]
    assert azure.peak()["conv-short"] == pytest.approx(3336 / 900)


@needs_azure
def test_azure_lengths_are_right_skewed_and_match_pandas(azure: Demand, conv_rows: pd.DataFrame) -> None:
    skewed = [r.input_p90 >= r.input_mean and r.output_p90 >= r.output_mean for r in azure.rows if r.requests]
    assert sum(skewed) >= 0.9 * len(skewed)
    # hand check: conv-short in window 1 ([900, 1800) s on conv's own clock), and conv-long in the last
    df = conv_rows
    sel = df[(df.t >= 900) & (df.t < 1800) & (df.ContextTokens <= 1024)]
    row = azure.rows[1 * 3 + 0]
    assert (row.window, row.query_type, row.start_s, row.end_s) == (1, "conv-short", 900.0, 1800.0)
    assert row.requests == len(sel) == 2953
    assert row.arrival_rate == pytest.approx(len(sel) / 900)
    assert row.input_mean == pytest.approx(sel.ContextTokens.mean())
    assert row.input_p90 == pytest.approx(np.percentile(sel.ContextTokens, 90))
    assert row.output_mean == pytest.approx(sel.GeneratedTokens.mean())
    assert row.output_p90 == pytest.approx(sel.GeneratedTokens.quantile(0.9))
    last = df[(df.t >= 2700) & (df.ContextTokens > 1024)]
    row = azure.rows[3 * 3 + 1]
    assert row.requests == len(last)
    assert row.end_s == pytest.approx(df.t.max())
    assert row.arrival_rate == pytest.approx(len(last) / (df.t.max() - 2700))
    assert row.input_p90 == pytest.approx(np.percentile(last.ContextTokens, 90))
    # whole-trace p90 (from the streamed length counters) equals pandas on every conv-short row
    short = df[df.ContextTokens <= 1024]
    stats = azure.type_stats()["conv-short"]
    assert stats["requests"] == len(short)
    assert stats["input_p90"] == pytest.approx(short.ContextTokens.quantile(0.9))
    assert stats["output_p90"] == pytest.approx(short.GeneratedTokens.quantile(0.9))
    assert stats["input_mean"] == pytest.approx(short.ContextTokens.mean())


@needs_azure
def test_csv_round_trip(azure: Demand, tmp_path: Path) -> None:
    path = tmp_path / "demand.csv"
    azure.write_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1].startswith("0,0,900,conv-short,")
    back = read_demand_csv(path, TYPES)
    assert back.type_ids == TYPES and back.windows == azure.windows and back.window_s == 900.0
    for a, b in zip(azure.rows, back.rows, strict=True):
        assert (a.window, a.query_type, a.requests) == (b.window, b.query_type, b.requests)
        for name in COLUMNS:
            if name == "query_type":  # compared exactly above (approx refuses strings in pytest ≥ 9.2)
                continue
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=5e-6, abs=1e-6), name
    again = tmp_path / "again.csv"
    back.write_csv(again)
    assert again.read_text() == path.read_text()  # written rows are a fixed point
    assert read_demand_csv(again).rows == back.rows
    frame = back.to_frame()
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 12
    assert frame.groupby("query_type")["requests"].sum().to_dict() == {
        "code": 8819,
        "conv-long": 9528,
        "conv-short": 9838,
    }


# --------------------------------------------------------------------------------------------
# Windows on small streams
# --------------------------------------------------------------------------------------------


def test_full_grid_with_zero_rows_and_a_partial_last_window() -> None:
    reqs = [req(1, 50), req(2, 200), req(3, 0), req(25, 60, 7), req(31, 70)]
    d = demand_from_trace(reqs, by_len, ["short", "long"], 10.0)
    assert d.windows == 4 and d.unmapped == 1
    grid = d.count_matrix()
    assert grid.tolist() == [[1, 1], [0, 0], [1, 0], [1, 0]]
    empty = d.rows[2 * 1 + 1]  # window 1, long: present with zeros
    assert (empty.requests, empty.arrival_rate, empty.input_mean, empty.output_p90) == (0, 0.0, 0.0, 0.0)
    last = d.rows[-2]
    assert (last.start_s, last.end_s, last.arrival_rate) == (30.0, 31.0, 1.0)  # cut at the last arrival
    assert d.peak() == {"short": 0.1, "long": 0.1}  # whole windows only: the 1 s tail is not a peak
    assert d.peak(full_only=False)["short"] == 1.0
    assert d.mean_rates()["short"] == pytest.approx(3 / 31)


def test_last_arrival_on_a_boundary_closes_the_window_before() -> None:
    d = demand_from_trace([req(1), req(5), req(20), req(20)], by_len, ["short"], 10.0)
    assert d.windows == 2
    assert d.lengths_s().tolist() == [10.0, 10.0]
    assert d.count_matrix()[:, 0].tolist() == [2, 2]
    # ... but a later arrival makes the boundary open the next window
    d = demand_from_trace([req(1), req(20), req(20), req(21)], by_len, ["short"], 10.0)
    assert d.count_matrix()[:, 0].tolist() == [1, 0, 3]
    assert d.lengths_s().tolist() == [10.0, 10.0, 1.0]


def test_start_and_end_bound_the_grid() -> None:
    reqs = [req(1), req(12), req(15), req(29), req(30), req(31)]
    d = demand_from_trace(reqs, by_len, ["short"], 10.0, start_s=10.0, end_s=30.0)
    assert d.windows == 2 and d.outside == 2  # 1 s before, 31 s after
    assert d.count_matrix()[:, 0].tolist() == [2, 2]  # 30 s is the end: the last window is closed
    d = demand_from_trace(reqs[:2], by_len, ["short"], 10.0, end_s=45.0)  # runs on past the traffic
    assert d.windows == 5 and d.lengths_s()[-1] == 5.0
    assert d.count_matrix()[:, 0].tolist() == [1, 1, 0, 0, 0]


def test_bad_streams() -> None:
    with pytest.raises(InputError, match="time order"):
        demand_from_trace([req(5), req(4)], by_len, ["short"], 10.0)
    with pytest.raises(InputError, match="same instant"):
        demand_from_trace([req(0), req(0)], by_len, ["short"], 10.0)
    with pytest.raises(InputError, match="no requests"):
        demand_from_trace([], by_len, ["short"], 10.0)
    with pytest.raises(InputError, match="not one of"):
        demand_from_trace([req(1), req(2)], lambda r: "other", ["short"], 10.0)
    with pytest.raises(InputError, match="window_s"):
        demand_from_trace([req(1)], by_len, ["short"], 0.0)
    with pytest.raises(InputError, match="windows"):
        demand_from_trace([req(1), req(1e9)], by_len, ["short"], 1.0)  # a runaway grid is refused


# --------------------------------------------------------------------------------------------
# read_demand_csv errors
# --------------------------------------------------------------------------------------------

GOOD = """window,start_s,end_s,query_type,requests,arrival_rate,input_mean,input_p90,output_mean,output_p90
0,0,60,a,6,0.1,10,12,5,6
0,0,60,b,0,0,0,0,0,0
1,60,120,a,12,0.2,11,13,5,7
1,60,120,b,3,0.05,30,40,8,9
2,120,150,a,3,0.1,9,9,4,4
2,120,150,b,0,0,0,0,0,0
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "demand.csv"
    p.write_text(text)
    return p


def test_read_good_file_in_any_row_order(tmp_path: Path) -> None:
    lines = GOOD.splitlines()
    d = read_demand_csv(write(tmp_path, "\n".join([lines[0], *reversed(lines[1:])]) + "\n"), ["a", "b"])
    assert d.window_s == 60.0 and d.windows == 3 and d.type_ids == ["a", "b"]
    assert d.rate_matrix().tolist() == [[0.1, 0.0], [0.2, 0.05], [0.1, 0.0]]
    assert d.full().tolist() == [True, True, False]
    assert d.type_stats()["a"]["input_p90"] is None  # per-window p90s only


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (lambda s: s.replace(",arrival_rate", ",rate"), "line 1, arrival_rate", "missing column"),
        (lambda s: s.replace("1,60,120,b,3,0.05", "1,60,120,b,3,-0.05"), "line 5, arrival_rate", ">= 0"),
        (lambda s: s.replace("0,0,60,b,0,0,0", "0,0,60,b,x,0,0"), "line 3, requests", "whole number"),
        (lambda s: s.replace("1,60,120,", "1,65,120,"), "line 4, start_s", "gap"),
        (lambda s: s.replace("1,60,120,", "1,55,120,"), "line 4, start_s", "overlap"),
        (lambda s: s.replace("1,60,120,b", "1,60,121,b"), "line 5, end_s", "window 1 runs"),
        (lambda s: s.replace("0,0,60,b,0", "0,0,60,c,0"), "line 3, query_type", "unknown query type 'c'"),
        (lambda s: s.replace("1,60,120,a", "0,0,60,a"), "line 4", "second 'a' row"),
        (lambda s: s.replace("2,120,150,", "3,180,210,"), "line 6, window", "window 2 has no rows"),
        (lambda s: s.replace("1,60,120,b,3", "1,60,120,a,3"), "line 5", "second 'a' row"),
        (lambda s: s.replace("1,60,120,", "1,60,130,").replace("2,120,", "2,130,"), "line 4, end_s", "only the last"),
        (lambda s: s.replace("2,120,150,a,3,0.1,9,9,4,4\n", ""), "window 2", "no row for query type 'a'"),
        (lambda s: s.replace("0,0,60,a,6,0.1,10,12,5,6", "0,0,60,a,6,0.1,10"), "line 2", "fields"),
        (lambda s: s.replace("0,0,60,a,6,0.1,10,12", "0,0,60,a,6,0.1,nan,12"), "line 2, input_mean", "finite"),
    ],
)  # fmt: skip
def test_read_errors_name_file_and_line(tmp_path: Path, edit, field: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(InputError) as info:
        read_demand_csv(path, ["a", "b"])
    e = info.value
    assert e.file == str(path)
    assert e.field == field, e.line()
    assert message in e.message


def test_read_file_problems(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_demand_csv(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="empty file"):
        read_demand_csv(write(tmp_path, ""))
    with pytest.raises(InputError, match="no demand rows"):
        read_demand_csv(write(tmp_path, GOOD.splitlines()[0] + "\n"))


# --------------------------------------------------------------------------------------------
# parse_window and the command line
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("900s", 900), ("1h", 3600), ("5min", 300), ("30", 30), ("1.5h", 5400), (" 2 MIN ", 120),
     ("0.5", 0.5), ("1d", 86400), (60, 60)],
)  # fmt: skip
def test_parse_window(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0m", "-5m", "15q", "m", "1e3", "nan", "inf", "15 m m", "1h30m"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_window(text)
    assert info.value.field == "--window"


def cli(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["demand", *(str(a) for a in args)])


@needs_azure
def test_cli_writes_the_csv(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "demand.csv"
    res = cli(CONV, CODE, "--instance", INSTANCE, "--types", MAPPING, "--window", "15m", "--out", out)
    assert res.exit_code == 0, res.output
    assert "conv-short" in res.output and "9,838" in res.output and "4 windows" in res.output
    d = read_demand_csv(out, TYPES)
    assert d.count_matrix().sum(axis=0).tolist() == [9838, 9528, 8819]
    assert [p.name for p in out.parent.iterdir()] == ["demand.csv"]  # no temporary file left
    # the mapping beside the instance and its default traces; time compressed ×2 halves the span
    res = cli("--instance", INSTANCE, "--window", "900", "--time-scale", "2", "--limit", "1000", "--out", out)
    assert res.exit_code == 0, res.output
    d = read_demand_csv(out, TYPES)
    assert d.count_matrix().sum() == 2000


@needs_azure
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--window", "15q"], "--window"),
        (["--window", "0"], "--window"),
        (["--out", "{dir}/demand.txt"], "--out"),
        (["--types", "{dir}/none.yml"], "none.yml"),
        (["{dir}/missing.csv"], "missing.csv"),
        (["--rate-scale", "0"], "--rate-scale"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "demand.csv"
    base = {"--instance": str(INSTANCE), "--out": str(out)}
    extra = [a.format(dir=tmp_path) for a in args]
    for k in list(base):
        if k in extra:
            base.pop(k)
    res = cli(*[x for kv in base.items() for x in kv], *extra)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_needs_instance_and_out(tmp_path: Path) -> None:
    res = cli(CONV, "--out", tmp_path / "d.csv")
    assert res.exit_code == 2 and "--instance" in res.output
    res = cli(CONV, "--instance", INSTANCE)
    assert res.exit_code == 2 and "--out" in res.output
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Instance figures (planner.review.figures, planner demand --figures)
# --------------------------------------------------------------------------------------------


def test_weighted_quantile_and_correlation_equal_the_expanded_sample() -> None:
    from planner.review.figures import length_correlation, weighted_quantile

    rng = np.random.default_rng(3)
    vals = np.sort(rng.choice(np.arange(1, 400), size=60, replace=False)).astype(float)
    counts = rng.integers(1, 9, size=60)
    expanded = np.repeat(vals, counts)
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert weighted_quantile(vals, counts, q) == pytest.approx(float(np.quantile(expanded, q)))
    a = rng.integers(1, 50, 300)
    b = a * 3 + rng.integers(0, 40, 300)
    pairs, inv = np.unique(np.stack([a, b], 1), axis=0, return_inverse=True)
    w = np.bincount(inv.ravel())
    assert length_correlation(pairs[:, 0], pairs[:, 1], w) == pytest.approx(length_correlation(a, b))
    assert length_correlation(np.arange(10), np.arange(10) ** 2) == pytest.approx(1.0)
    assert length_correlation(np.arange(10), -np.arange(10)) == pytest.approx(-1.0)
    assert length_correlation([5, 5, 5, 5], [1, 2, 3, 4]) == 0.0  # a constant length
    assert length_correlation([1, 2], [2, 1]) == 0.0  # too few requests


def test_figures_by_hand_and_the_largest_burst() -> None:
    from planner.review.figures import FiguresBuilder

    # Type a: one request per second for 100 s, then a clump of 30 within 2 s at 100..102 s.
    # Type b: one request every 4 s. Windows of 10 s over a 110-s span.
    reqs = [req(float(t), 100 + t, 10) for t in range(100)]
    reqs += [req(100 + k / 15, 1000, 20) for k in range(30)]
    reqs += [req(4.0 * k + 0.5, 50, 5, source="b") for k in range(27)]
    reqs.sort(key=lambda r: r.arrival_s)
    fb = FiguresBuilder(["a", "b"], 10.0)
    for r in reqs:
        fb.add("a" if r.source == "s" else "b", r.arrival_s, r.input_tokens, r.output_tokens)
    figs = fb.finish(110.0)
    a, b = figs["a"], figs["b"]
    assert a.requests == 130 and a.arrival_rate == pytest.approx(130 / 110)
    # windows 0..9 hold 10 each, window 10 holds the 30-request clump: p90 over 11 windows
    assert a.arrival_rate_p90 == pytest.approx(float(np.quantile([1.0] * 10 + [3.0], 0.9)))
    # the clump ends at 101.93 s; within 5 s of it also the requests at 97, 98 and 99 s
    assert a.burst_requests == 30 + 3
    assert a.burst_share == pytest.approx(33 / 130)
    assert a.input_tokens["mean"] == pytest.approx((sum(100 + t for t in range(100)) + 30_000) / 130)
    assert a.input_tokens["p50"] == pytest.approx(float(np.quantile([100 + t for t in range(100)] + [1000] * 30, 0.5)))
    assert a.burst_warning(0.99) is not None and "33 requests within 5 s" in a.burst_warning(0.99)
    assert b.burst_requests == 2 and b.burst_warning(0.99) is None
    assert b.length_correlation == 0.0  # constant lengths
    doc = a.query_type_doc()
    assert doc["id"] == "a" and doc["input_tokens"] == round(a.input_tokens["mean"])
    # with the burst written, the percentiles leave its episode out (97, 98, 99 s and the clump)
    quiet = np.array([1.0] * 9 + [0.7, 0.0])
    assert doc["arrival_rate_p99"] == pytest.approx(float(np.quantile(quiet, 0.99)), abs=1e-4)
    assert doc["arrival_rate_p99"] < a.arrival_rate_p99
    assert {"arrival_rate_p90", "input_tokens_p10", "output_tokens_p99", "length_correlation"} <= set(doc)
    # slow windows of 30 s slide by one 10-s window: 9 of them; their load is requests weighted by
    # tokens over the mean (the clump's 1,020-token requests weigh about 6 of the others)
    slow = FiguresBuilder(["a", "b"], 10.0, slow_window_s=30.0)
    for r in reqs:
        slow.add("a" if r.source == "s" else "b", r.arrival_s, r.input_tokens, r.output_tokens)
    sa = slow.finish(110.0)["a"]
    tok = [sum(100 + t + 10 for t in range(10 * w, 10 * w + 10)) for w in range(10)] + [30 * 1020]
    mean = sum(tok) / 130
    load = [sum(tok[w : w + 3]) / mean / 30 for w in range(9)]
    assert sa.arrival_rate_slow_p90 == pytest.approx(float(np.quantile(load, 0.9)))
    assert sa.arrival_rate_slow_p99 == pytest.approx(float(np.quantile(load, 0.99)))
    assert {"arrival_rate_slow_p90", "arrival_rate_slow_p99"} <= set(sa.query_type_doc())


def test_burst_envelope_against_brute_force() -> None:
    """The envelope around the largest burst, streamed, equals a brute-force count over every
    interval of each ENVELOPE_S length that contains the burst's; it stops widening where the
    added requests come no faster than the p90 window rate."""
    from planner.review.figures import BURST_S, ENVELOPE_S, FiguresBuilder

    rng = np.random.default_rng(5)
    # background 2 req/s over 600 s; a flood ramping up for 12 s, a 5-s peak, ramping down for 18 s
    t = np.sort(np.concatenate([rng.uniform(0, 600, 1200), rng.uniform(288, 300, 60), rng.uniform(300, 305, 150),
                                rng.uniform(305, 323, 50)]))  # fmt: skip
    fb = FiguresBuilder(["a"], 10.0)
    for x in t:
        fb.add("a", float(x), 100, 10)
    f = fb.finish(600.0)["a"]
    ends = np.searchsorted(t, t + BURST_S, side="right") - np.arange(len(t))
    k = int(ends.argmax())
    assert f.burst_requests == ends[k]
    lo_peak, hi_peak = t[k], t[k + ends[k] - 1]  # the burst's first and last arrival
    p90 = float(np.quantile(np.bincount((t // 10).astype(int), minlength=60)[:60] / 10.0, 0.9))
    want, n_prev, s_prev = [], f.burst_requests, BURST_S
    for d in ENVELOPE_S:
        starts = np.arange(hi_peak - d, lo_peak + 1e-9, 0.01)
        n = max(int(max(((t >= x) & (t <= x + d)).sum() for x in starts)), n_prev)
        if (n - n_prev) / (d - s_prev) <= p90:
            break
        want.append(n)
        n_prev, s_prev = n, d
    got = [round(r * d) for d, r in f.burst_envelope]
    assert len(want) >= 2 and got == pytest.approx(want, abs=1)


def test_cluster_excess_is_zero_on_poisson_and_counts_companions() -> None:
    """arrival_cluster_excess: about 0 on Poisson arrivals whatever their window rates (not
    written), and on clusters of 1 + Geometric(a) requests within CLUSTER_S about 2a(1 − κ)
    (written; planner.capacity.cluster_size)."""
    from planner.review.figures import CLUSTER_S, MIN_CLUSTER, FiguresBuilder

    rng = np.random.default_rng(3)
    # Poisson at 2 req/s for 1,000 s, then 8 req/s for 1,000 s: window rates differ, no clusters
    t = np.sort(np.concatenate([rng.uniform(0, 1000, 2000), rng.uniform(1000, 2000, 8000)]))
    fb = FiguresBuilder(["a"], 10.0)
    for x in t:
        fb.add("a", float(x), 100, 10)
    f = fb.finish(2000.0)["a"]
    assert abs(f.cluster_excess) < 0.15
    assert "arrival_cluster_excess" not in f.query_type_doc()
    # cluster heads Poisson at 1 req/s; each with Geometric(a = 1.5) companions within CLUSTER_S after it
    a = 1.5
    heads = np.sort(rng.uniform(0, 4000, 4000))
    sizes = rng.geometric(1.0 / (1.0 + a), len(heads)) - 1
    t = np.sort(np.concatenate([heads] + [h + rng.uniform(0, CLUSTER_S, k) for h, k in zip(heads, sizes, strict=True)]))
    fb = FiguresBuilder(["a"], 10.0)
    for x in t:
        fb.add("a", float(x), 100, 10)
    f = fb.finish(4010.0)["a"]
    # 2a others nearby, of which the windows' own counts (which hold the clusters) explain κ
    kappa = 2 * CLUSTER_S / 10.0 - (CLUSTER_S / 10.0) ** 2
    assert f.cluster_excess == pytest.approx(2 * a * (1 - kappa), rel=0.1)
    doc = f.query_type_doc()
    assert doc["arrival_cluster_s"] == CLUSTER_S and doc["arrival_cluster_excess"] >= MIN_CLUSTER


@needs_azure
def test_cli_figures_match_the_shipped_instance(tmp_path: Path) -> None:
    import yaml

    out, figs = tmp_path / "d.csv", tmp_path / "f.yaml"
    res = cli("--instance", INSTANCE, "--window", "15m", "--out", out, "--figures", figs)
    assert res.exit_code == 0, res.output
    assert "warning: code: its largest burst" in res.output  # the Azure code trace's 5-s burst
    doc = yaml.safe_load(figs.read_text())
    assert doc["arrival_window_s"] == 10.0
    got = {q["id"]: q for q in doc["query_types"]}
    inst = load_instance(INSTANCE)
    for q in inst.query_types:
        g = got[q.id]
        keys = [f"{s}_tokens{p}" for s in ("input", "output") for p in ("", "_p10", "_p50", "_p90", "_p99")]
        assert {k: g[k] for k in keys} == {k: getattr(q, k) for k in keys}, q.id
        for side in ("input", "output"):  # the length tables the instance carries, knot for knot
            assert [tuple(k) for k in g[f"{side}_tokens_percentiles"]] == list(getattr(q, f"{side}_tokens_percentiles"))
        assert g["length_correlation"] == q.length_correlation
        # clusters: the code trace's requests come in clusters; the conversation traces' do not
        assert (g.get("arrival_cluster_s"), g.get("arrival_cluster_excess")) == (
            q.arrival_cluster_s,
            q.arrival_cluster_excess,
        ), q.id
        if q.id != "code":  # the instance's code figures use the code trace's own span (derive script)
            assert g["arrival_rate"] == pytest.approx(q.arrival_rate, abs=1e-3)
            assert (g["arrival_rate_p90"], g["arrival_rate_p99"]) == (q.arrival_rate_p90, q.arrival_rate_p99)
            assert g["arrival_rate_slow_p90"] == pytest.approx(q.arrival_rate_slow_p90, abs=1e-3)
            assert g["arrival_rate_slow_p99"] == pytest.approx(q.arrival_rate_slow_p99, abs=1e-3)
    # the fragment merges into a loadable instance
    merged = yaml.safe_load(INSTANCE.read_text())
    for q in merged["query_types"]:
        q.update(got[q["id"]])
    path = tmp_path / "merged.yaml"
    merged["include"] = [str((INSTANCE.parent / p).resolve()) for p in merged["include"]]
    path.write_text(yaml.safe_dump(merged))
    assert [q.id for q in load_instance(path).query_types] == TYPES


def test_cli_figures_bad_path_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    res = cli(
        CONV, "--instance", INSTANCE, "--types", MAPPING, "--out", tmp_path / "d.csv", "--figures", tmp_path / "f.txt"
    )
    assert res.exit_code == 2 and "--figures" in res.output
    res = cli(
        CONV, "--instance", INSTANCE, "--types", MAPPING, "--out", tmp_path / "d.csv", "--figures", tmp_path / "d.csv"
    )
    assert res.exit_code == 2 and "--figures" in res.output
    assert list(tmp_path.iterdir()) == []
