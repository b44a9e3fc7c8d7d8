"""Request traces (planner.sim.traces) and the trace → query type mapping (planner.sim.mapping)."""

from __future__ import annotations

import math
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from planner.errors import InputError
from planner.loader import load_instance
from planner.sim.mapping import TypeMapper, mapping_file_for
from planner.sim.traces import (
    BLOCK,
    Trace,
    TraceOptions,
    TraceRequest,
    TraceStats,
    read_trace,
    synthetic_trace,
    write_trace_csv,
)
from tests.conftest import INSTANCES, SHARED, make_instance

DATA = SHARED / "data"
AZURE_CONV = DATA / "azure" / "AzureLLMInferenceTrace_conv.csv"
AZURE_CODE = DATA / "azure" / "AzureLLMInferenceTrace_code.csv"
SPLITWISE_CONV = DATA / "traces" / "splitwise_conv.csv"
MOONCAKE_CONV = DATA / "traces" / "mooncake_conversation_trace.jsonl"

needs_data = pytest.mark.skipif(not AZURE_CONV.exists(), reason="shared trace data not available")


def arrays(requests: list[TraceRequest]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([r.arrival_s for r in requests]),
        np.array([r.input_tokens for r in requests]),
        np.array([r.output_tokens for r in requests]),
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ real traces


@needs_data
@pytest.mark.parametrize(
    ("path", "rows"),
    [
        (AZURE_CONV, 19366),
        (AZURE_CODE, 8819),
        (SPLITWISE_CONV, 19366),
        (DATA / "traces" / "splitwise_code.csv", 8819),
        (MOONCAKE_CONV, 12031),
    ],
    ids=lambda v: v.stem if isinstance(v, Path) else str(v),
)
def test_real_formats_read_every_row(path: Path, rows: int) -> None:
    trace = Trace(path)
    reqs = list(trace)
    assert len(reqs) == rows
    assert trace.stats.rows_read == rows and trace.stats.emitted == rows and trace.stats.skipped_bad == 0
    assert reqs[0].arrival_s == 0.0 and reqs[0].line == (1 if path.suffix == ".jsonl" else 2)
    assert [r.index for r in reqs[:3]] == [0, 1, 2] and reqs[-1].index == rows - 1
    assert all(r.source == path.stem for r in reqs[:10])
    t, n_in, n_out = arrays(reqs)
    assert np.all(np.diff(t) >= 0) and n_in.min() >= 1 and n_out.min() >= 1


@needs_data
def test_azure_and_splitwise_conv_agree() -> None:
    azure = arrays(list(read_trace(AZURE_CONV)))
    splitwise = arrays(list(read_trace(SPLITWISE_CONV)))
    assert np.max(np.abs((azure[0] - azure[0][0]) - (splitwise[0] - splitwise[0][0]))) < 1e-3
    assert np.array_equal(azure[1], splitwise[1]) and np.array_equal(azure[2], splitwise[2])


@needs_data
def test_azure_summary_matches_the_instance_derivation() -> None:
    s = Trace(AZURE_CONV).summary()
    assert s["requests"] == 19366
    assert s["span_s"] == pytest.approx(3501.7, abs=0.05)
    assert s["mean_rate_rps"] == pytest.approx(5.530, abs=1e-3)
    assert s["input_tokens_mean"] == pytest.approx(1155, abs=1) and s["output_tokens_mean"] == pytest.approx(211, abs=1)


@needs_data
def test_azure_2023_mapping_gives_the_instance_buckets() -> None:
    inst = load_instance(INSTANCES / "azure-2023.yaml")
    mapping = mapping_file_for(INSTANCES / "azure-2023.yaml")
    assert mapping is not None
    mapper = TypeMapper.from_file(mapping, inst)
    assert tuple(p.resolve() for p in mapper.trace_paths) == (AZURE_CONV.resolve(), AZURE_CODE.resolve())
    trace = Trace(mapper.trace_paths)
    counts = Counter(mapper.type_of(r) for r in trace)
    assert counts == {"conv-short": 9838, "conv-long": 9528, "code": 8819}
    assert trace.stats.per_source == {"AzureLLMInferenceTrace_conv": 19366, "AzureLLMInferenceTrace_code": 8819}


@needs_data
def test_mooncake_mapping_spreads_its_coarse_clock() -> None:
    """Mooncake's conversation trace ticks in ~3 s steps; its mapping spreads each tick's group
    up to the next tick at seeded uniform positions: same requests, same order, distinct
    arrivals, same span, deterministic, and counts in 1-s bins about as variable as Poisson's
    (even spreading, the other mode, is far more regular)."""
    from planner.sim.replay import feed_of

    path = INSTANCES / "mooncake-2025.yaml"
    inst = load_instance(path)
    mapper = TypeMapper.from_file(path.with_name("mooncake-2025.traces.yml"), inst)
    assert mapper.spread_ties
    raw = [r.arrival_s for r in Trace(mapper.trace_paths)]
    fed = list(feed_of(Trace(mapper.trace_paths), mapper))
    t = np.array([row[2] for row in fed])
    assert [row[0] for row in fed] == list(range(len(raw))) and np.all(np.diff(t) > 0)
    assert np.mean(np.diff(raw) == 0) > 0.8  # the raw clock: mostly ties
    assert t[0] == raw[0] and t[-1] < raw[-1] + 3.5
    assert np.all(t >= np.array(raw)) and np.all(t - np.array(raw) < 3.5)  # within its tick
    assert mapper.spread_ties == "random"
    assert [row[2] for row in feed_of(Trace(mapper.trace_paths), mapper)] == t.tolist()  # deterministic

    def dispersion(x: np.ndarray) -> float:
        c = np.bincount(x.astype(int))
        c = c[: len(c) // 10 * 10].reshape(-1, 10)  # 1-s bins, against each 10-s window's mean
        return float(((c - c.mean(axis=1, keepdims=True)) ** 2).sum() / (c.size - len(c)) / c.mean())

    from planner.sim.mapping import spread_ties

    rows = [(n, 0, float(a), 1, 1) for n, a in enumerate(raw)]
    even = np.array([row[2] for row in spread_ties(iter(rows), "even")])
    assert 0.85 < dispersion(t) < 1.3 and dispersion(even) < 0.7


@needs_data
def test_merged_order_is_sorted_with_running_index() -> None:
    reqs = list(Trace([AZURE_CONV, AZURE_CODE]))
    assert len(reqs) == 19366 + 8819
    keys = [(r.arrival_s, r.source != AZURE_CONV.stem, r.line) for r in reqs]
    assert keys == sorted(keys)  # arrival, then file order, then line
    assert [r.index for r in reqs] == list(range(len(reqs)))


@needs_data
def test_time_scale_halves_the_span() -> None:
    base = Trace(AZURE_CODE).summary()
    fast = Trace(AZURE_CODE, TraceOptions(time_scale=2.0)).summary()
    assert fast["requests"] == base["requests"]
    assert fast["span_s"] == pytest.approx(base["span_s"] / 2)
    assert fast["mean_rate_rps"] == pytest.approx(base["mean_rate_rps"] * 2)


@needs_data
def test_rate_scale_thins_deterministically() -> None:
    half = [(r.arrival_s, r.line) for r in read_trace(AZURE_CONV, TraceOptions(rate_scale=0.5, seed=3))]
    again = [(r.arrival_s, r.line) for r in read_trace(AZURE_CONV, TraceOptions(rate_scale=0.5, seed=3))]
    other = [(r.arrival_s, r.line) for r in read_trace(AZURE_CONV, TraceOptions(rate_scale=0.5, seed=4))]
    assert half == again and half != other
    assert abs(len(half) - 19366 / 2) < 4 * math.sqrt(19366 * 0.25)


@needs_data
def test_rate_scale_replicates_with_sorted_arrivals() -> None:
    trace = Trace(AZURE_CONV, TraceOptions(rate_scale=2.5, seed=1))
    reqs = list(trace)
    assert abs(len(reqs) - 2.5 * 19366) < 4 * math.sqrt(19366 * 0.25)
    t = np.array([r.arrival_s for r in reqs])
    assert np.all(np.diff(t) >= 0)
    assert t[-1] == pytest.approx(3501.72, abs=5.0)  # the span is kept
    per_line = Counter(r.line for r in reqs)
    assert set(per_line.values()) == {2, 3}


def test_window_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_trace_csv(synthetic_trace(1000, rate=10.0, seed=2), path)
    reqs = list(read_trace(path, TraceOptions(start_s=20.0, duration_s=30.0)))
    original = {r.line: r.arrival_s for r in read_trace(path)}
    assert reqs and all(0 <= r.arrival_s < 30.0 for r in reqs)
    assert all(20.0 <= original[r.line] < 50.0 for r in reqs)
    assert sum(20.0 <= t < 50.0 for t in original.values()) == len(reqs)
    assert len(list(read_trace(path, TraceOptions(limit=7)))) == 7
    assert len(list(read_trace(path, TraceOptions(limit=7, rate_scale=3.0)))) == 7
    # copies in the window stay inside it
    copies = [r.arrival_s for r in read_trace(path, TraceOptions(start_s=20.0, duration_s=30.0, rate_scale=2.0))]
    assert len(copies) == 2 * len(reqs) and max(copies) < 30.0


# ------------------------------------------------------------------------------ bad input

BAD_CASES = {
    "truncated-azure": (
        "x.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
        "2023-11-16 18:15:51.1",
        4,
        "3 comma-separated fields",
        2,
    ),
    "non-numeric": (
        "x.csv",
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n0.5,abc,109\n1.0,20,3\n",
        3,
        "not a number",
        2,
    ),
    "negative": (
        "x.csv",
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n0.5,20,-3\n1.0,20,3\n",
        3,
        "negative",
        2,
    ),
    "backwards": (
        "x.csv",
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n5.0,20,3\n4.0,20,3\n6.0,20,3\n",
        4,
        "goes back",
        3,
    ),
    "bad-json": (
        "x.jsonl",
        '{"timestamp": 0, "input_length": 10, "output_length": 5}\n'
        '{"timestamp": 10, "input_length": 10, "output_len\n'
        '{"timestamp": 20, "input_length": 10, "output_length": 5}\n',
        2,
        "not valid JSON",
        2,
    ),
    "missing-key": (
        "x.jsonl",
        '{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"timestamp": 10, "input_length": 10}\n',
        2,
        "missing key 'output_length'",
        1,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_line_names_file_and_line(tmp_path: Path, case: str) -> None:
    name, text, line, message, n_good = BAD_CASES[case]
    path = write(tmp_path / name, text)
    with pytest.raises(InputError) as exc:
        list(read_trace(path))
    assert exc.value.line().startswith(f"{path}: line {line}: ")
    assert message in exc.value.message
    stats = TraceStats()
    good = list(read_trace(path, TraceOptions(skip_bad=True), stats))
    assert stats.skipped_bad == 1 and len(good) == n_good and stats.rows_read == n_good + 1
    assert line not in [r.line for r in good]


def test_bad_line_in_a_big_block_still_names_its_line(tmp_path: Path) -> None:
    rows = [f"{k * 0.01!r},{k % 50 + 1},{k % 7}" for k in range(BLOCK + 500)]
    rows[BLOCK + 123] = "655.0,12,oops"
    path = write(tmp_path / "big.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=f"line {BLOCK + 125}: num_decode_tokens 'oops' is not a number"):
        list(read_trace(path))
    stats = TraceStats()
    assert sum(1 for _ in read_trace(path, TraceOptions(skip_bad=True), stats)) == BLOCK + 499
    assert stats.zero_output == sum(1 for k in range(BLOCK + 500) if k % 7 == 0 and k != BLOCK + 123)
    # a limit that stops before the bad line never reads it
    assert len(list(read_trace(path, TraceOptions(limit=BLOCK + 100)))) == BLOCK + 100


def test_zero_output_becomes_one_and_small_jitter_is_clamped(tmp_path: Path) -> None:
    path = write(
        tmp_path / "z.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        "2023-11-16 18:15:46.6805900,374,0\r\n"
        "2023-11-16 18:15:46.6801900,10,2\r\n"  # 0.4 ms earlier: jitter
        "2023-11-16 18:15:47.0000000,10,2\r\n",
    )
    trace = Trace(path)
    reqs = list(trace)
    assert [r.output_tokens for r in reqs] == [1, 2, 2] and trace.stats.zero_output == 1
    assert [r.arrival_s for r in reqs] == pytest.approx([0.0, 0.0, 0.31941])


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="trace file not found"):
        Trace(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="unknown trace format") as exc:
        list(read_trace(write(tmp_path / "u.csv", "a,b,c\n1,2,3\n")))
    assert exc.value.line().startswith(f"{tmp_path / 'u.csv'}: line 1:")
    with pytest.raises(InputError, match="empty trace"):
        list(read_trace(write(tmp_path / "e.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n")))
    with pytest.raises(InputError, match="empty trace"):
        list(read_trace(write(tmp_path / "e2.jsonl", "")))
    with pytest.raises(InputError, match="format"):
        TraceOptions(format="parquet")
    with pytest.raises(InputError, match="rate_scale"):
        TraceOptions(rate_scale=0.0)


def test_forced_format_reads_a_headerless_file(tmp_path: Path) -> None:
    path = write(tmp_path / "raw.txt", "0.0,10,2\n1.5,20,3\n")
    reqs = list(read_trace(path, TraceOptions(format="splitwise")))
    assert [(r.arrival_s, r.input_tokens, r.line) for r in reqs] == [(0.0, 10, 1), (1.5, 20, 2)]


def test_azure_iso_timestamps_with_offsets(tmp_path: Path) -> None:
    """The 2024 week-long traces: UTC offset, fraction sometimes missing."""
    path = write(
        tmp_path / "week.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,10,2\n"
        "2024-05-10 00:00:01+00:00,10,2\n"
        "2024-05-10 02:00:02.5+02:00,10,2\n",
    )
    assert [r.arrival_s for r in read_trace(path)] == pytest.approx([0.0, 0.99007, 2.49007])


# ------------------------------------------------------------------------------ streaming, synthetic, writing


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    write_trace_csv(synthetic_trace(3 * BLOCK, rate=100.0), path)
    stats = TraceStats()
    first = list(islice(read_trace(path, stats=stats), 5))
    assert len(first) == 5 and stats.rows_read <= BLOCK


def test_synthetic_trace_is_deterministic_with_requested_rate_and_means() -> None:
    a = list(synthetic_trace(100_000, rate=20.0, seed=5))
    assert a == list(synthetic_trace(100_000, rate=20.0, seed=5))
    assert a != list(synthetic_trace(100_000, rate=20.0, seed=6))
    t, n_in, n_out = arrays(a)
    assert len(a) == 100_000 and np.all(np.diff(t) >= 0)
    assert len(a) / t[-1] == pytest.approx(20.0, rel=0.02)
    assert n_in.mean() == pytest.approx(1155, rel=0.05) and n_out.mean() == pytest.approx(211, rel=0.05)
    assert n_in.max() <= 8192 and n_out.max() <= 2048 and min(n_in.min(), n_out.min()) >= 1
    assert [r.index for r in a[:3]] == [0, 1, 2] and a[0].source == "synthetic"


def test_write_trace_csv_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out" / "syn.csv"
    reqs = list(synthetic_trace(2000, rate=3.0, seed=9))
    assert write_trace_csv(reqs, path) == 2000
    back = list(read_trace(path))
    assert [(r.arrival_s, r.input_tokens, r.output_tokens, r.line) for r in back] == [
        (r.arrival_s, r.input_tokens, r.output_tokens, r.line) for r in reqs
    ]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ mapping

THREE_TYPES = {
    "models": ["llama-3.1-8b"],
    "gpus": ["a100-80gb"],
    "query_types": [
        {"id": "short", "arrival_rate": 1.0, "input_tokens": 100, "output_tokens": 50},
        {"id": "long", "arrival_rate": 1.0, "input_tokens": 2000, "output_tokens": 50},
        {"id": "code", "arrival_rate": 1.0, "input_tokens": 2000, "output_tokens": 20},
    ],
}


def req(source: str, n_in: int) -> TraceRequest:
    return TraceRequest(0.0, n_in, 10, source, 0, 2)


def test_mapping_rules_first_match_wins_and_default() -> None:
    inst = make_instance(THREE_TYPES)
    doc = {
        "rules": [
            {"type": "code", "source": "*code*"},
            {"type": "short", "input_tokens": [None, 512]},
            {"type": "long", "source": "conv*", "input_tokens": [513, None]},
        ],
        "default": "short",
    }
    m = TypeMapper.from_data(doc, inst)
    assert m.type_of(req("my_code_trace", 10)) == "code"
    assert m.type_of(req("conv_a", 512)) == "short"
    assert m.type_of(req("conv_a", 513)) == "long"
    assert m.type_of(req("other", 5000)) == "short"  # default
    assert m.index_of(req("conv_a", 513)) == 1
    assert TypeMapper.from_data({"rules": doc["rules"][:1]}, inst).type_of(req("x", 1)) is None


def test_single_type_mapper() -> None:
    inst = make_instance({**THREE_TYPES, "query_types": THREE_TYPES["query_types"][:1]})
    assert TypeMapper.single(inst).type_of(req("anything", 1)) == "short"
    with pytest.raises(InputError, match="3 query types"):
        TypeMapper.single(make_instance(THREE_TYPES))


@pytest.mark.parametrize(
    ("rules", "field", "message"),
    [
        ([{"type": "short"}, {"type": "medium"}], "rules[1].type", "unknown query type 'medium'"),
        ([{"type": "short", "output_tokens": [1, 100]}], "rules[0].output_tokens", "unknown when the request arrives"),
        ([{"type": "short", "input_tokens": [100, 10]}], "rules[0].input_tokens", "below min"),
        ([{"type": "short", "input_tokens": [1]}], "rules[0].input_tokens", "[min, max]"),
        ([{"type": "short", "input_tokens": [1.5, 10]}], "rules[0].input_tokens", "whole token counts"),
        ([{"type": "short", "source": ""}], "rules[0].source", "non-empty glob"),
        ([{"type": "short", "weight": 2}], "rules[0].weight", "unknown key"),
        ([{"source": "*"}], "rules[0].type", "required"),
    ],
)
def test_mapping_validation_names_the_field(tmp_path: Path, rules: list, field: str, message: str) -> None:
    import yaml

    path = write(tmp_path / "m.traces.yml", yaml.safe_dump({"rules": rules}))
    with pytest.raises(InputError) as exc:
        TypeMapper.from_file(path, make_instance(THREE_TYPES))
    assert exc.value.file == str(path) and exc.value.field == field
    assert message in exc.value.message


def test_mapping_file_level_validation(tmp_path: Path) -> None:
    inst = make_instance(THREE_TYPES)
    with pytest.raises(InputError, match="unknown key"):
        TypeMapper.from_data({"rules": [{"type": "short"}], "extra": 1}, inst)
    with pytest.raises(InputError, match="every request would be unmapped"):
        TypeMapper.from_data({"rules": []}, inst)
    with pytest.raises(InputError, match="unknown query type"):
        TypeMapper.from_data({"rules": [], "default": "nope"}, inst)
    with pytest.raises(InputError, match="duplicate key"):
        TypeMapper.from_file(write(tmp_path / "d.yaml", "rules: []\nrules: []\n"), inst)
    m = TypeMapper.from_file(write(tmp_path / "t.yaml", "traces: [data/a.csv]\ndefault: long\n"), inst)
    assert m.trace_paths == (tmp_path.resolve() / "data" / "a.csv",)


@pytest.mark.parametrize(
    "options",
    [
        TraceOptions(skip_bad=True),
        TraceOptions(skip_bad=True, rate_scale=2.7, seed=3),
        TraceOptions(skip_bad=True, rate_scale=0.3),
        TraceOptions(skip_bad=True, rate_scale=1.7, start_s=10.0, duration_s=50.0),
        TraceOptions(skip_bad=True, rate_scale=1.7, start_s=10.0, duration_s=50.0, limit=33),
    ],
)
def test_results_do_not_depend_on_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: TraceOptions
) -> None:
    """Block boundaries (and the one-row lookahead carried across them) must not show in the output."""
    import planner.sim.traces as traces

    path = tmp_path / "a.csv"
    write_trace_csv(synthetic_trace(300, rate=5.0, seed=1), path)
    lines = path.read_text().splitlines()
    lines[40], lines[41], lines[200] = "x,1,2", "", "1,2"
    write(path, "\n".join(lines) + "\n\n")
    results = []
    for block in (1, 3, 64, 65_536):
        monkeypatch.setattr(traces, "BLOCK", block)
        stats = TraceStats()
        reqs = [(r.arrival_s, r.line, r.input_tokens) for r in read_trace(path, options, stats)]
        results.append((reqs, stats.skipped_bad, stats.zero_output))
    assert all(r == results[0] for r in results)
    assert all(a[0] <= b[0] for a, b in zip(results[0][0], results[0][0][1:], strict=False))
