"""Bad input never crashes the CLI (spec, command-line conventions).

The contract: bad input anywhere (a missing file, not YAML, the wrong shape, unknown ids, negative
rates, an SLO of zero, ...) gets ONE clear line on stderr naming the file and the field, exit code
2, no traceback, and no partial output file.

Every case takes a small valid base instance (table mode with inline specs, or model mode with
catalog ids) and breaks exactly one thing. Most cases run in-process through ``CliRunner`` (fast);
the ones marked ``sub=True`` run through a real ``python -m planner.cli`` subprocess. Cases the code
does not yet handle are ``xfail(strict=True)``: the test keeps the contract, the code must change.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from planner.cli import app

ROOT = Path(__file__).resolve().parents[1]
CATALOGS = ROOT / "models"
EXIT_INPUT = 2

# --------------------------------------------------------------------------------------------
# Valid base instances
# --------------------------------------------------------------------------------------------

# Table mode, everything inline: no performance model, solves instantly.
TABLE_BASE: dict[str, Any] = {
    "name": "tiny-table",
    "period_hours": 24,
    "budget": 1000,
    "models": [{"id": "m1", "params_b": 8.0}, {"id": "m2", "params_b": 13.0, "weight_bytes": 2}],
    "gpus": [{"id": "g1", "price_per_hour": 1.0}, {"id": "g2", "price_per_hour": 2.0, "available": 8}],
    "parallelism": {"tp": [1, 2], "pp": [1]},
    "max_utilization": 0.9,
    "query_types": [
        {
            "id": "chat",
            "arrival_rate": 2.0,
            "input_tokens": 500,
            "output_tokens": 100,
            "slo": {"ttft_s": 2.0, "tpot_s": 0.1, "e2e_s": 30},
            "max_error": 0.3,
            "max_unserved": 0.0,
            "unserved_penalty": 0.01,
        },
        {
            "id": "code",
            "arrival_rate": 1.0,
            "input_tokens": 2000,
            "output_tokens": 30,
            "slo": {"ttft_s": 3.0, "tpot_s": 0.1},
            "max_error": 0.3,
        },
    ],
    "errors": {"m1": {"chat": 0.2, "code": 0.25}, "m2": {"chat": 0.15, "code": 0.2}},
    "performance_mode": "table",
    "performance": [
        {
            "model": "m1",
            "gpu": "g1",
            "tp": 1,
            "pp": 1,
            "query_type": "chat",
            "throughput_rps": 1.0,
            "ttft_s": 0.5,
            "tpot_s": 0.05,
            "e2e_s": 5.5,
        },
        {
            "model": "m1",
            "gpu": "g1",
            "tp": 1,
            "pp": 1,
            "query_type": "code",
            "throughput_rps": 2.0,
            "ttft_s": 0.8,
            "tpot_s": 0.04,
            "e2e_s": 2.0,
        },
        {
            "model": "m2",
            "gpu": "g2",
            "tp": 2,
            "pp": 1,
            "query_type": "chat",
            "throughput_rps": 3.0,
            "ttft_s": 0.4,
            "tpot_s": 0.04,
            "e2e_s": 4.4,
        },
    ],
}

# Model mode with catalog ids, like instances/quickstart.yaml (absolute include paths).
MODEL_BASE: dict[str, Any] = {
    "name": "tiny-model",
    "period_hours": 24,
    "include": [str(CATALOGS / "llms.yaml"), str(CATALOGS / "gpus.yaml")],
    "models": ["llama-3.1-8b", "qwen2.5-7b"],
    "gpus": ["l4", {"id": "a100-80gb", "available": 8}],
    "parallelism": {"tp": [1, 2], "pp": [1]},
    "max_utilization": 0.85,
    "query_types": [
        {
            "id": "chat",
            "arrival_rate": 2.0,
            "input_tokens": 1000,
            "output_tokens": 200,
            "slo": {"ttft_s": 2.0, "tpot_s": 0.1, "e2e_s": 30},
            "max_error": 0.35,
        }
    ],
    "errors": {"llama-3.1-8b": {"chat": 0.333}, "qwen2.5-7b": {"chat": 0.258}},
}

BASES = {"table": TABLE_BASE, "model": MODEL_BASE}

# A GPU spec complete enough for model mode except for the one field a case removes.
INLINE_GPU = {
    "id": "my-gpu",
    "memory_gb": 24,
    "tflops": 121,
    "bandwidth_tbs": 0.3,
    "interconnect_gbs": 64,
    "gpus_per_node": 8,
    "price_per_hour": 0.8,
}
INLINE_GPU_NO_TFLOPS = {k: v for k, v in INLINE_GPU.items() if k != "tflops"}


# --------------------------------------------------------------------------------------------
# Edits: ("set", path, value) | ("del", path) | ("append", path, value); path is a tuple of keys
# --------------------------------------------------------------------------------------------


def S(path: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    return ("set", path, value)


def D(path: tuple[Any, ...]) -> tuple[Any, ...]:
    return ("del", path)


def A(path: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    return ("append", path, value)


def apply_edits(doc: dict[str, Any], edits: tuple[tuple[Any, ...], ...]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for op, path, *rest in edits:
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if op == "set":
            parent[last] = copy.deepcopy(rest[0])
        elif op == "del":
            del parent[last]
        elif op == "append":
            parent[last].append(copy.deepcopy(rest[0]))
        else:  # pragma: no cover
            raise ValueError(op)
    return doc


def dump(doc: Any, suffix: str) -> str:
    if suffix == ".json":
        return json.dumps(doc, indent=2)
    return yaml.safe_dump(doc, sort_keys=False)


# --------------------------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    crashed: str = ""  # an exception that escaped the CLI (CliRunner only)


def run_cli(args: list[str], cwd: Path, sub: bool, monkeypatch: pytest.MonkeyPatch) -> Run:
    if sub:
        p = subprocess.run(
            [sys.executable, "-m", "planner.cli", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Run(p.returncode, p.stdout, p.stderr)
    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(app, args)
    crashed = ""
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        crashed = f"{type(res.exception).__name__}: {res.exception}"
    return Run(res.exit_code, res.stdout, res.stderr, crashed)


def assert_one_line_error(run: Run, file: Path | str, fld: str | None, words: tuple[str, ...] = ()) -> str:
    """Exit 2, one non-empty stderr line naming ``file`` and ``fld``, no traceback."""
    assert not run.crashed, f"exception escaped the CLI: {run.crashed}"
    assert "Traceback" not in run.stderr, run.stderr
    assert "Traceback" not in run.stdout, run.stdout
    assert run.code == EXIT_INPUT, f"exit {run.code}; stderr={run.stderr!r}; stdout={run.stdout[-500:]!r}"
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not exactly one line: {run.stderr!r}"
    line = lines[0]
    assert str(file) in line, f"file {str(file)!r} not named in {line!r}"
    # The tmp path holds the test's name (which may contain the field); judge the rest of the line.
    rest = line.replace(str(file), "")
    if fld is not None:
        assert fld in rest, f"field {fld!r} not named in {line!r}"
    for w in words:
        assert w.lower() in rest.lower(), f"{w!r} not in {line!r}"
    return line


def assert_nothing_written(directory: Path, out: Path) -> None:
    assert not out.exists(), f"{out} was written despite bad input"
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, f"temporary output files left behind: {leftovers}"


# --------------------------------------------------------------------------------------------
# Instance cases for `planner solve`
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    fld: str | None  # expected field path in the error line; None for a whole-file problem
    base: str = "table"
    edits: tuple[tuple[Any, ...], ...] = ()
    text: str | None = None  # raw file content instead of the edited base
    suffix: str = ".yaml"
    kind: str = "file"  # file | missing | directory
    words: tuple[str, ...] = ()
    sub: bool = False  # through a real subprocess
    xfail: str = ""  # reason, when the code does not yet meet the contract
    marks: tuple[Any, ...] = field(default=())


QT0 = ("query_types", 0)
QT1 = ("query_types", 1)

CASES: list[Case] = [
    # ---- the file as a whole
    Case("missing_file", None, kind="missing", words=("not found",), sub=True),
    Case("directory_not_file", None, kind="directory", words=("directory",)),
    Case("wrong_suffix_txt", None, suffix=".txt", words=(".txt",)),
    Case("no_suffix", None, suffix="", words=("unsupported",)),
    Case("invalid_yaml", "line", text="name: tiny\nmodels: [m1, {id: m2\nquery_types: [\n", sub=True),
    Case("invalid_json", "line", text='{"name": "tiny", "models": [,]}', suffix=".json", sub=True),
    Case("json_top_level_string", None, text='"just a string"', suffix=".json", words=("mapping",)),
    Case("top_level_list", None, text="- name: tiny\n- models: [m1]\n", words=("mapping",), sub=True),
    Case("empty_file", None, text="", words=("mapping",)),
    Case("not_utf8", None, text="name: caf\udce9\n", words=("utf-8",)),
    # YAML requires unique mapping keys; PyYAML silently keeps the last one (the first budget is lost).
    Case(
        "yaml_duplicate_key",
        "budget",
        text=dump(TABLE_BASE, ".yaml") + "budget: 2000\n",
    ),
    # ---- top-level shape
    Case("unknown_top_level_key", "colour", edits=(S(("colour",), "red"),)),
    Case("missing_query_types", "query_types", edits=(D(("query_types",)),)),
    Case("query_types_not_a_list", "query_types", edits=(S(("query_types",), {"chat": 1}),)),
    Case("query_type_not_a_mapping", "query_types[1]", edits=(S(QT1, 42),)),
    Case(
        "models_empty",
        "models",
        edits=(S(("models",), []), S(("errors",), {}), S(("performance",), []), S(("performance_mode",), "model")),
    ),
    Case("period_hours_string", "period_hours", edits=(S(("period_hours",), "abc"),)),
    Case("period_hours_zero", "period_hours", edits=(S(("period_hours",), 0),)),
    Case("budget_negative", "budget", edits=(S(("budget",), -5),)),
    Case("budget_infinite", "budget", edits=(S(("budget",), float("inf")),)),
    Case("max_utilization_zero", "max_utilization", edits=(S(("max_utilization",), 0),)),
    Case("max_utilization_above_one", "max_utilization", edits=(S(("max_utilization",), 1.5),)),
    Case("storage_price_negative", "storage_price_per_gb_hour", edits=(S(("storage_price_per_gb_hour",), -0.1),)),
    # ---- models and gpus
    Case("unknown_model_id", "models[1]", base="model", edits=(S(("models", 1), "no-such-llm"),), sub=True),
    Case("unknown_gpu_id", "gpus[1]", base="model", edits=(S(("gpus", 1), "no-such-gpu"),)),
    Case("model_entry_not_id_or_mapping", "models[0]", base="model", edits=(S(("models", 0), 7),)),
    Case("duplicate_model_id", "models[1]", edits=(S(("models", 1, "id"), "m1"),)),
    Case("duplicate_gpu_id", "gpus[1]", edits=(S(("gpus", 1, "id"), "g1"),)),
    Case("model_id_bad_characters", "models[0].id", edits=(S(("models", 0, "id"), "bad id!"),)),
    Case("model_params_negative", "models[1].params_b", edits=(S(("models", 1, "params_b"), -13),)),
    Case("gpu_missing_price", "gpus[0].price_per_hour", edits=(D(("gpus", 0, "price_per_hour")),)),
    Case("gpu_available_negative", "gpus[1].available", edits=(S(("gpus", 1, "available"), -1),)),
    Case(
        "model_mode_gpu_missing_tflops",
        "gpus[2].tflops",
        base="model",
        edits=(A(("gpus",), INLINE_GPU_NO_TFLOPS),),
        sub=True,
    ),
    Case(
        "model_mode_inline_model_missing_layers",
        "models[2].layers",
        base="model",
        edits=(
            A(
                ("models",),
                {
                    "id": "my-13b",
                    "params_b": 13.0,
                    "hidden_size": 5120,
                    "intermediate_size": 13824,
                    "attention_heads": 40,
                    "kv_heads": 40,
                    "head_dim": 128,
                    "vocab_size": 32000,
                },
            ),
            S(("query_types", 0, "max_error"), None),
        ),
    ),
    Case(
        "catalog_override_bad_price",
        "gpus[1].price_per_hour",
        base="model",
        edits=(S(("gpus", 1, "price_per_hour"), -2.0),),
    ),
    # ---- parallelism
    Case("tp_degree_zero", "parallelism.tp", edits=(S(("parallelism", "tp"), [0, 1]),)),
    Case("pp_degree_negative", "parallelism.pp", edits=(S(("parallelism", "pp"), [1, -1]),)),
    Case("tp_not_a_number", "parallelism.tp", edits=(S(("parallelism", "tp"), ["two"]),)),
    Case("parallelism_unknown_key", "parallelism.dp", edits=(S(("parallelism", "dp"), [1]),)),
    # ---- query types
    Case("duplicate_query_type_id", "query_types[1]", edits=(S((*QT1, "id"), "chat"),)),
    Case("arrival_rate_negative", "query_types[0].arrival_rate", edits=(S((*QT0, "arrival_rate"), -1.0),), sub=True),
    Case("arrival_rate_zero", "query_types[1].arrival_rate", edits=(S((*QT1, "arrival_rate"), 0),)),
    Case("arrival_rate_string", "query_types[0].arrival_rate", edits=(S((*QT0, "arrival_rate"), "fast"),)),
    Case("arrival_rate_bool", "query_types[0].arrival_rate", edits=(S((*QT0, "arrival_rate"), True),)),
    Case(
        "arrival_rate_infinite",
        "query_types[0].arrival_rate",
        edits=(S((*QT0, "arrival_rate"), float("inf")),),
        sub=True,
    ),
    Case(
        "input_tokens_infinite",
        "query_types[0].input_tokens",
        base="model",
        edits=(S((*QT0, "input_tokens"), float("inf")),),
        marks=(pytest.mark.filterwarnings("ignore::RuntimeWarning"),),
    ),
    Case(
        "output_tokens_infinite",
        "query_types[1].output_tokens",
        edits=(S((*QT1, "output_tokens"), float("inf")),),
    ),
    Case(
        "period_hours_infinite",
        "period_hours",
        edits=(S(("period_hours",), float("inf")),),
    ),
    Case(
        "performance_throughput_infinite",
        "performance[0].throughput_rps",
        edits=(S(("performance", 0, "throughput_rps"), float("inf")),),
    ),
    Case(
        "gpu_memory_infinite",
        "gpus[1].memory_gb",
        base="model",
        edits=(S(("gpus", 1, "memory_gb"), float("inf")),),
    ),
    Case("arrival_rate_nan", "query_types[0].arrival_rate", edits=(S((*QT0, "arrival_rate"), float("nan")),)),
    Case("input_tokens_zero", "query_types[0].input_tokens", edits=(S((*QT0, "input_tokens"), 0),)),
    Case("output_tokens_missing", "query_types[1].output_tokens", edits=(D((*QT1, "output_tokens")),)),
    Case("ttft_zero", "query_types[0].slo.ttft_s", edits=(S((*QT0, "slo", "ttft_s"), 0),), sub=True),
    Case("tpot_negative", "query_types[1].slo.tpot_s", edits=(S((*QT1, "slo", "tpot_s"), -0.1),)),
    Case("slo_unknown_key", "query_types[0].slo.ttfb_s", edits=(S((*QT0, "slo", "ttfb_s"), 1.0),)),
    Case("slo_not_a_mapping", "query_types[0].slo", edits=(S((*QT0, "slo"), 2.0),)),
    Case("max_error_above_one", "query_types[0].max_error", edits=(S((*QT0, "max_error"), 1.5),)),
    Case("max_unserved_negative", "query_types[1].max_unserved", edits=(S((*QT1, "max_unserved"), -0.1),)),
    Case("unserved_penalty_negative", "query_types[0].unserved_penalty", edits=(S((*QT0, "unserved_penalty"), -1),)),
    Case("query_type_unknown_key", "query_types[0].priority", edits=(S((*QT0, "priority"), 1),)),
    # ---- errors
    Case("error_rate_above_one", "errors.m1.chat", edits=(S(("errors", "m1", "chat"), 2.0),)),
    Case("error_rate_negative", "errors.m2.code", edits=(S(("errors", "m2", "code"), -0.2),)),
    Case("missing_error_entry", "errors.m2.code", edits=(D(("errors", "m2", "code")),)),
    Case(
        "missing_error_entry_model_mode", "errors.qwen2.5-7b.chat", base="model", edits=(D(("errors", "qwen2.5-7b")),)
    ),
    Case("errors_unknown_model", "errors.ghost", edits=(S(("errors", "ghost"), {"chat": 0.1}),), sub=True),
    Case("errors_unknown_query_type", "errors.m1.poetry", edits=(S(("errors", "m1", "poetry"), 0.1),)),
    Case("errors_not_a_mapping", "errors", edits=(S(("errors",), [0.1, 0.2]),)),
    Case("errors_row_not_a_mapping", "errors.m1", edits=(S(("errors", "m1"), 0.2),)),
    # ---- performance
    Case("performance_unknown_gpu", "performance[0].gpu", edits=(S(("performance", 0, "gpu"), "g9"),)),
    Case("performance_unknown_model", "performance[2].model", edits=(S(("performance", 2, "model"), "m9"),)),
    Case(
        "performance_unknown_query_type",
        "performance[1].query_type",
        edits=(S(("performance", 1, "query_type"), "poetry"),),
    ),
    Case("duplicate_performance_entry", "performance[3]", edits=(A(("performance",), TABLE_BASE["performance"][0]),)),
    Case("performance_tp_zero", "performance[2].tp", edits=(S(("performance", 2, "tp"), 0),)),
    Case(
        "performance_throughput_zero",
        "performance[0].throughput_rps",
        edits=(S(("performance", 0, "throughput_rps"), 0),),
    ),
    Case("performance_not_a_list", "performance", edits=(S(("performance",), {"m1": 1}),)),
    Case("table_mode_without_entries", "performance", edits=(S(("performance",), []),)),
    Case("performance_mode_bogus", "performance_mode", edits=(S(("performance_mode",), "guess"),)),
    # ---- include
    Case(
        "include_file_missing", "include[0]", base="model", edits=(S(("include", 0), "no-such-catalog.yaml"),), sub=True
    ),
    Case("include_not_a_list", "include", base="model", edits=(S(("include",), 5),)),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "case ids must be distinct"


def _param(c: Case) -> Any:
    marks = list(c.marks)
    if c.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=c.xfail))
    return pytest.param(c, id=c.id, marks=marks)


def write_case(c: Case, tmp: Path) -> Path:
    inst = tmp / f"inst{c.suffix}"
    if c.kind == "missing":
        return inst
    if c.kind == "directory":
        inst.mkdir()
        return inst
    if c.text is not None:
        if "\udce9" in c.text:  # a latin-1 byte that is not UTF-8
            inst.write_bytes(c.text.encode("utf-8", "surrogateescape"))
        else:
            inst.write_text(c.text, encoding="utf-8")
        return inst
    suffix = c.suffix if c.suffix in (".yaml", ".yml", ".json") else ".yaml"
    inst.write_text(dump(apply_edits(BASES[c.base], c.edits), suffix), encoding="utf-8")
    return inst


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_solve_rejects_bad_instance(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = write_case(case, tmp_path)
    out = tmp_path / "plan.yaml"
    run = run_cli(["solve", str(inst), "--out", str(out)], tmp_path, case.sub, monkeypatch)
    assert_one_line_error(run, inst, case.fld, case.words)
    assert_nothing_written(tmp_path, out)


def test_enough_distinct_cases() -> None:
    assert len(CASES) >= 25
    assert sum(c.sub for c in CASES) >= 5


# --------------------------------------------------------------------------------------------
# Positive controls: the bases are valid, so each case fails only because of its one edit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["table", "model"])
def test_bases_are_valid(base: str, tmp_path: Path) -> None:
    inst = tmp_path / "inst.yaml"
    inst.write_text(dump(BASES[base], ".yaml"), encoding="utf-8")
    out = tmp_path / "plan.json"
    p = subprocess.run(
        [sys.executable, "-m", "planner.cli", "solve", str(inst), "--out", str(out), "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert json.loads(out.read_text())["status"] == "optimal"


# --------------------------------------------------------------------------------------------
# Other commands and arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", [False, True], ids=["runner", "subprocess"])
def test_solve_out_with_bad_suffix(sub: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = tmp_path / "inst.yaml"
    inst.write_text(dump(TABLE_BASE, ".yaml"), encoding="utf-8")
    out = tmp_path / "plan.txt"
    run = run_cli(["solve", str(inst), "--out", str(out)], tmp_path, sub, monkeypatch)
    assert_one_line_error(run, out, "--out")
    assert_nothing_written(tmp_path, out)


def test_solve_out_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = tmp_path / "inst.yaml"
    inst.write_text(dump(TABLE_BASE, ".yaml"), encoding="utf-8")
    out = tmp_path / "plan.yaml"
    out.mkdir()
    run = run_cli(["solve", str(inst), "--out", str(out)], tmp_path, False, monkeypatch)
    assert_one_line_error(run, out, "--out")
    assert out.is_dir() and not any(out.iterdir())
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".plan.yaml.")]


@pytest.mark.parametrize(
    "edits, fld",
    [
        pytest.param((S((*QT0, "slo", "ttft_s"), 0),), "query_types[0].slo.ttft_s", id="ttft_zero"),
        pytest.param((S(("models", 1), "no-such-llm"),), "models[1]", id="unknown_model"),
    ],
)
def test_options_rejects_bad_instance(edits: Any, fld: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = tmp_path / "inst.yaml"
    inst.write_text(dump(apply_edits(MODEL_BASE, edits), ".yaml"), encoding="utf-8")
    csv = tmp_path / "rows.csv"
    run = run_cli(["options", str(inst), "--csv", str(csv)], tmp_path, False, monkeypatch)
    assert_one_line_error(run, inst, fld)
    assert_nothing_written(tmp_path, csv)


def test_options_bad_instance_subprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = tmp_path / "inst.yaml"
    inst.write_text(dump(apply_edits(TABLE_BASE, (S((*QT1, "arrival_rate"), -3),)), ".yaml"), encoding="utf-8")
    run = run_cli(["options", str(inst)], tmp_path, True, monkeypatch)
    assert_one_line_error(run, inst, "query_types[1].arrival_rate")


def test_options_csv_with_bad_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = tmp_path / "inst.yaml"
    inst.write_text(dump(TABLE_BASE, ".yaml"), encoding="utf-8")
    csv = tmp_path / "rows.txt"
    run = run_cli(["options", str(inst), "--csv", str(csv)], tmp_path, False, monkeypatch)
    assert_one_line_error(run, csv, "--csv")
    assert_nothing_written(tmp_path, csv)


@pytest.fixture
def solved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Any]]:
    """A valid table-mode instance and the plan `planner solve` writes for it (in-process)."""
    inst = tmp_path / "inst.yaml"
    inst.write_text(dump(TABLE_BASE, ".yaml"), encoding="utf-8")
    out = tmp_path / "good-plan.yaml"
    run = run_cli(["solve", str(inst), "--out", str(out), "--quiet"], tmp_path, False, monkeypatch)
    assert run.code == 0 and not run.crashed, run
    plan = yaml.safe_load(out.read_text())
    assert plan["deployments"], plan
    return inst, plan


def test_check_accepts_the_good_plan(
    solved: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst, _ = solved
    run = run_cli(["check", str(inst), str(tmp_path / "good-plan.yaml")], tmp_path, False, monkeypatch)
    assert run.code == 0 and not run.crashed and run.stderr == "", run


PLAN_CASES = [
    # id, how to write the plan (edits on the good plan | raw text | None = missing), suffix, field, words, sub
    ("plan_missing", None, ".yaml", None, ("not found",), True),
    ("plan_not_yaml", "instance: x\ndeployments: [ {model: m1\n", ".yaml", "line", (), True),
    ("plan_not_json", "{deployments: ]", ".json", "line", (), False),
    ("plan_wrong_suffix", (), ".txt", None, (".txt",), False),
    ("plan_top_level_list", "- 1\n- 2\n", ".yaml", None, ("mapping",), False),
    ("plan_deployments_not_a_list", (S(("deployments",), "three replicas"),), ".yaml", "deployments", (), True),
    ("plan_replicas_negative", (S(("deployments", 0, "replicas"), -1),), ".yaml", "deployments[0].replicas", (), False),
    ("plan_status_bogus", (S(("status",), "great"),), ".yaml", "status", (), False),
    ("plan_missing_method", (D(("method",)),), ".yaml", "method", (), False),
]


@pytest.mark.parametrize(
    "how, suffix, fld, words, sub",
    [pytest.param(*c[1:], id=c[0]) for c in PLAN_CASES],
)
def test_check_rejects_bad_plan(
    how: Any,
    suffix: str,
    fld: str | None,
    words: tuple[str, ...],
    sub: bool,
    solved: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inst, good = solved
    plan = tmp_path / f"plan{suffix}"
    if isinstance(how, str):
        plan.write_text(how, encoding="utf-8")
    elif isinstance(how, tuple):
        plan.write_text(dump(apply_edits(good, how), suffix if suffix == ".json" else ".yaml"), encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    run = run_cli(["check", str(inst), str(plan)], tmp_path, sub, monkeypatch)
    assert_one_line_error(run, plan, fld, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "check wrote files"


def test_check_rejects_bad_instance(
    solved: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = tmp_path / "bad-inst.yaml"
    inst.write_text(dump(apply_edits(TABLE_BASE, (S(("errors", "m1", "chat"), 2.0),)), ".yaml"), encoding="utf-8")
    plan = tmp_path / "good-plan.yaml"
    run = run_cli(["check", str(inst), str(plan)], tmp_path, False, monkeypatch)
    assert_one_line_error(run, inst, "errors.m1.chat")
