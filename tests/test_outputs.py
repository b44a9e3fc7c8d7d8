"""The output conventions (README, "Command-line conventions"): outputs checked before any work
and written whole, Ctrl-C, file modes, stdout for documents only, progress on terminals only.

Unwritable outputs run in-process (each fails before any work, in milliseconds); the interrupt,
banner and progress tests need real processes and signals.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from planner import fileio
from planner.cli import INTERRUPTED, app
from planner.console import EXIT_INFEASIBLE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NO_SOLUTION
from tests.conftest import INSTANCES, ROOT

runner = CliRunner()
TABLE = INSTANCES / "table-demo.yaml"
QUICK = INSTANCES / "quickstart.yaml"
TABLE_PLAN = ROOT / "tests" / "golden" / "table-demo.yaml"
QUICK_PLAN = ROOT / "tests" / "golden" / "quickstart.yaml"
SERVING = ROOT / "tests" / "data" / "vllm_bench_rate4.json"


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under ``directory``, dot-files included."""
    return {str(p.relative_to(directory)): None if p.is_dir() else p.read_bytes() for p in directory.rglob("*")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trace and a mapping (every request is `chat`) for the quick-start instance."""
    from planner.sim.traces import synthetic_trace, write_trace_csv

    d = tmp_path_factory.mktemp("inputs")
    write_trace_csv(synthetic_trace(200, 4.0, seed=0), d / "trace.csv")
    (d / "map.yml").write_text("rules:\n  - type: chat\n    source: '*'\n", encoding="utf-8")
    return d


# --------------------------------------------------------------------------------------------
# Unwritable outputs: refused first, in one line, with nothing written
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    id: str
    option: str
    name: str  # the output's file name (its suffix is the one the command asks for)
    kind: str  # file | dir (a directory the command writes into or replaces)
    argv: Callable[[Path, Path], list[str]]  # (inputs, out) -> arguments


def _sim(i: Path) -> list[str]:
    return ["--trace", str(i / "trace.csv"), "--mapping", str(i / "map.yml")]


def _review(i: Path) -> list[str]:
    return ["review", "--instance", str(QUICK), "--current", str(QUICK_PLAN), "--trace", str(i / "trace.csv")]


OUTPUTS = [
    Output("solve", "--out", "plan.yaml", "file", lambda i, o: ["solve", str(TABLE), "--out", str(o)]),
    Output(
        "solve-export", "--export-dir", "deploy", "dir",
        lambda i, o: ["solve", str(TABLE), "--export", "router", "--export-dir", str(o)],
    ),
    Output("options", "--csv", "options.csv", "file", lambda i, o: ["options", str(TABLE), "--csv", str(o)]),
    Output(
        "generate", "--out", "inst.yaml", "file",
        lambda i, o: ["generate", "--types", "2", "--models", "2", "--tiers", "2", "--out", str(o)],
    ),
    Output(
        "calibrate", "--out", "cal.yaml", "file",
        lambda i, o: ["calibrate", "--serving", str(SERVING), "--out", str(o)],
    ),
    Output(
        "export", "--out", "deploy", "dir",
        lambda i, o: ["export", str(TABLE_PLAN), "--format", "router", "--out", str(o)],
    ),
    Output(
        "simulate", "--out", "s.json", "file",
        lambda i, o: ["simulate", str(QUICK), str(QUICK_PLAN), *_sim(i), "--out", str(o)],
    ),
    Output(
        "simulate-requests", "--requests", "r.csv", "file",
        lambda i, o: ["simulate", str(QUICK), str(QUICK_PLAN), *_sim(i), "--requests", str(o)],
    ),
    Output(
        "simulate-plots", "--plots", "plots", "dir",
        lambda i, o: ["simulate", str(QUICK), str(QUICK_PLAN), *_sim(i), "--plots", str(o)],
    ),
    Output(
        "scale", "--out", "scale.json", "file",
        lambda i, o: ["scale", str(QUICK), *_sim(i), "--option", "qwen2.5-7b/l4/2/1", "--policy=jsq", "--out", str(o)],
    ),
    Output(
        "demand", "--out", "demand.csv", "file",
        lambda i, o: ["demand", str(i / "trace.csv"), f"--instance={QUICK}", f"--types={i / 'map.yml'}", f"--out={o}"],
    ),
    Output("review", "--out", "review", "dir", lambda i, o: [*_review(i), "--out", str(o)]),
    Output(
        "review-screenshot", "--screenshot", "review.png", "file",
        lambda i, o: [*_review(i), "--out", str(i / "fresh-review"), "--screenshot", str(o)],
    ),
    Output(
        "bench", "--out", "bench", "dir",
        lambda i, o: ["bench", "--families", "table-5x5x5", "--methods", "gh", "--seeds", "1", "--out", str(o)],
    ),
]  # fmt: skip


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory nobody may write to. Root writes through file modes, so for root the check
    itself is told (the kernel's own refusal is tested on /proc below)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        real = fileio._dir_writable
        monkeypatch.setattr(fileio, "_dir_writable", lambda d: Path(d).resolve() != ro.resolve() and real(d))
    yield ro
    ro.chmod(0o755)  # so that pytest can remove it


@pytest.mark.parametrize("case", ["read_only", "under_a_file", "wrong_kind"])
@pytest.mark.parametrize("output", OUTPUTS, ids=[o.id for o in OUTPUTS])
def test_unwritable_output_is_refused_first(
    output: Output, case: str, inputs: Path, tmp_path: Path, read_only: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if case == "read_only":
        # An output that exists already (a file, or a directory with a file in it) in a
        # directory that cannot be written: the file, or a new directory, must stay as it was.
        out = read_only / output.name
        if output.kind == "file":
            out.write_bytes(b"previous\n")
        read_only.chmod(0o555)
        watched = read_only
    elif case == "under_a_file":
        (work / "a-file").write_bytes(b"not a directory\n")
        out = work / "a-file" / "sub" / output.name
        watched = work
    else:  # a directory where a file goes, or a file where a directory goes
        out = work / output.name
        if output.kind == "file":
            out.mkdir()
            (out / "inside.txt").write_bytes(b"keep\n")
        else:
            out.write_bytes(b"a file, not a directory\n")
        watched = work
    before = snapshot(watched)
    res = runner.invoke(app, output.argv(inputs, out))
    assert res.exit_code == EXIT_INPUT, (res.exit_code, res.output)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert output.option in lines[0] and str(out) in lines[0], lines[0]
    assert "Traceback" not in res.output and (res.exception is None or isinstance(res.exception, SystemExit))
    assert snapshot(watched) == before  # nothing new (no temporary file), nothing changed


def test_the_kernel_refusal_is_seen_even_by_root() -> None:
    """access() says yes to root everywhere; creating a file in /proc still fails."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    with pytest.raises(fileio.InputError, match=r"directory /proc is not writable"):
        fileio.check_writable("/proc/planner-test-plan.yaml", "--out")


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "plan.yaml"
    out.write_bytes(b"previous\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    res = runner.invoke(app, ["solve", str(TABLE), "--out", str(out), "--quiet"])
    assert res.exit_code == EXIT_INPUT, res.output
    assert res.stderr.splitlines() == [f"error: {out}: cannot write: No space left on device"]
    assert snapshot(tmp_path) == {"plan.yaml": b"previous\n"}


def test_solve_validate_reads_traces_before_solving(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,10\n1.0,abc,10\n", encoding="utf-8")
    out = tmp_path / "plan.yaml"
    out.write_bytes(b"previous\n")
    res = runner.invoke(app, ["solve", str(INSTANCES / "azure-2023.yaml"), "--validate", str(bad), "--out", str(out)])
    assert res.exit_code == EXIT_INPUT and "bad.csv: line 3" in res.stderr, res.output
    assert out.read_bytes() == b"previous\n"


# --------------------------------------------------------------------------------------------
# Ctrl-C: the work stops, a previous output survives byte for byte, one line, exit 130
# --------------------------------------------------------------------------------------------


def _interrupt(args: list[str], cwd: Path, after_s: float) -> subprocess.CompletedProcess[str]:
    """Run ``planner ARGS``, send SIGINT after ``after_s`` seconds, and wait for it to stop."""
    p = subprocess.Popen(
        [sys.executable, "-m", "planner.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job starts with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: give the child the default a terminal's foreground job has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(after_s)
    assert p.poll() is None, "finished before the interrupt: the test needs a longer job"
    p.send_signal(signal.SIGINT)
    t0 = time.perf_counter()
    out, err = p.communicate(timeout=60)
    assert time.perf_counter() - t0 < 20, "the interrupt did not stop the work"
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_ctrl_c_mid_solve_keeps_the_previous_plan(tmp_path: Path) -> None:
    from planner.fileio import write_document
    from planner.generate import paper_instance

    # 40 types x 6 models x 10 tiers, seed 2: about 17 s on 2 cores (11 s building the option
    # table, 6 s in HiGHS), so a signal after 3 s comes mid-solve on any machine up to ~3x faster
    # (a smaller instance finished before the signal on a quiet machine); the time limit bounds a
    # failure. The signal inside HiGHS itself is exercised by test_interrupt_stops_highs below.
    write_document(tmp_path / "inst.yaml", paper_instance(40, 6, 10, 2))
    out = tmp_path / "plan.yaml"
    out.write_bytes(b"previous plan\n")
    res = _interrupt(["solve", "inst.yaml", "--out", "plan.yaml", "--time-limit", "120"], tmp_path, 3.0)
    assert res.returncode == EXIT_INTERRUPTED, (res.returncode, res.stderr[-2000:])
    assert res.stderr.splitlines() == [INTERRUPTED] and res.stdout == ""
    assert snapshot(tmp_path).keys() == {"inst.yaml", "plan.yaml"}
    assert out.read_bytes() == b"previous plan\n"


def test_interrupt_stops_highs() -> None:
    """The mechanism behind Ctrl-C mid-solve: the solve runs in a worker thread, a
    KeyboardInterrupt in the main thread calls cancel until the worker has stopped, then
    propagates (the caller never sees a cut-short result)."""
    import _thread
    import signal
    import threading
    import time

    from planner.solvers.backends import _interruptible

    stop = threading.Event()
    cancels = []
    deadline = time.monotonic() + 30.0

    def work() -> str:
        # a HiGHS solve that only ends when cancelled (or, should the interrupt never come,
        # after 30 s: the test then fails instead of hanging the suite)
        while not stop.wait(0.01) and time.monotonic() < deadline:
            pass
        return "cut short"

    def cancel() -> None:
        cancels.append(1)
        stop.set()

    # interrupt_main runs the main thread's SIGINT handler and does nothing where SIGINT is
    # ignored (a test worker may run so; one suite run hung here): Python's own handler, restored after.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            _interruptible(work, cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cancels and stop.is_set()


def test_staged_outputs_land_together_or_not_at_all(tmp_path: Path) -> None:
    from planner.fileio import staged_outputs, write_atomic

    (tmp_path / "a.json").write_text("previous\n")
    before = snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt), staged_outputs():
        write_atomic(tmp_path / "a.json", "new\n")
        write_atomic(tmp_path / "plots" / "x.png", "png")
        named = {k: v for k, v in snapshot(tmp_path).items() if not Path(k).name.startswith(".")}
        assert named == before  # nothing under a real name yet (only temporary files), no new directory
        raise KeyboardInterrupt
    assert snapshot(tmp_path) == before and not (tmp_path / "plots").exists()
    with staged_outputs():
        write_atomic(tmp_path / "a.json", "first\n")
        write_atomic(tmp_path / "a.json", "new\n")  # written twice: the last one lands
        write_atomic(tmp_path / "plots" / "x.png", "png")
    assert snapshot(tmp_path) == {"a.json": b"new\n", "plots": None, "plots/x.png": b"png"}


def test_ctrl_c_mid_simulate_keeps_the_previous_outputs(tmp_path: Path, inputs: Path) -> None:
    from planner.sim.traces import synthetic_trace, write_trace_csv

    # 400,000 requests: about 14 s to replay, write and plot on 2 cores (150,000 took 5.6 s once the
    # simulator got faster, and the signal at 5 s then found the plots being drawn), so a signal
    # after 3 s comes mid-work on any machine up to ~4x faster.
    write_trace_csv(synthetic_trace(400_000, 8.0, seed=1), tmp_path / "long.csv")
    for name in ("s.json", "r.csv"):
        (tmp_path / name).write_bytes(b"previous\n")
    before = snapshot(tmp_path)
    args = [
        "simulate", str(QUICK), str(QUICK_PLAN), "--trace", "long.csv", "--mapping", str(inputs / "map.yml"),
        "--out", "s.json", "--requests", "r.csv", "--plots", "plots",
    ]  # fmt: skip
    res = _interrupt(args, tmp_path, 3.0)
    assert res.returncode == EXIT_INTERRUPTED, (res.returncode, res.stderr[-2000:])
    assert res.stderr.splitlines() == [INTERRUPTED]
    assert snapshot(tmp_path) == before  # --out and --requests unchanged, no plots, no temporary files


# --------------------------------------------------------------------------------------------
# Modes, streams, banners, flags, progress
# --------------------------------------------------------------------------------------------


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path: Path, umask_027: None) -> None:
    inst = tmp_path / "inst.yaml"
    args = ["generate", "--types", "2", "--models", "2", "--tiers", "2", "--out", str(inst)]
    assert runner.invoke(app, args).exit_code == 0
    assert _mode(inst) == 0o640
    inst.chmod(0o604)
    assert runner.invoke(app, args).exit_code == 0
    assert _mode(inst) == 0o604
    deploy = tmp_path / "deploy"
    res = runner.invoke(app, ["export", str(TABLE_PLAN), "--format", "router", "--out", str(deploy)])
    assert res.exit_code == 0, res.output
    assert _mode(deploy) == 0o750 and {_mode(p) for p in deploy.iterdir()} == {0o640}


def test_the_plan_alone_goes_to_stdout() -> None:
    res = runner.invoke(app, ["solve", str(TABLE)])
    assert res.exit_code == 0
    assert yaml.safe_load(res.stdout)["status"] == "optimal"
    assert "status optimal" in res.stderr and "deployments" in res.stderr  # the summary
    quiet = runner.invoke(app, ["solve", str(TABLE), "--quiet"])
    assert quiet.stderr == ""
    plain, alone = yaml.safe_load(res.stdout), yaml.safe_load(quiet.stdout)
    assert {**alone, "solve_seconds": 0} == {**plain, "solve_seconds": 0}  # --quiet: the same plan, alone


def test_solve_redirected_to_a_file_is_a_plan_without_a_banner(tmp_path: Path) -> None:
    """A real process: `planner solve X --method agh > plan.yaml` (AGH's polish makes a highspy
    object, whose first construction prints HiGHS's banner on fd 1)."""
    with (tmp_path / "plan.yaml").open("w") as fh:
        p = subprocess.run(
            [sys.executable, "-m", "planner.cli", "solve", str(TABLE), "--method", "agh"],
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "plan.yaml").read_text()
    assert yaml.safe_load(text)["status"] == "feasible"
    assert "HiGHS" not in text and "HiGHS" not in p.stderr
    assert "status feasible" in p.stderr


def test_flags_come_in_pairs_without_a_value() -> None:
    res = runner.invoke(app, ["solve", "--help"], env={"COLUMNS": "200"})
    assert "--no-bound" in res.stdout and "--no-quiet" in res.stdout
    assert "<bool>" not in res.stdout
    for cmd, flag in (("simulate", "--no-strict"), ("scale", "--no-tp-sweep"), ("export", "--no-force")):
        assert flag in runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"}).stdout


_PROGRESS = """
import time
from planner.progress import progress
with progress("bench") as p:
    p.update("step one")
    time.sleep(0.5)
"""


def test_progress_shows_on_a_terminal_only() -> None:
    piped = subprocess.run([sys.executable, "-c", _PROGRESS], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == "" and piped.stderr == ""
    master, slave = pty.openpty()
    try:
        env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
        p = subprocess.Popen([sys.executable, "-c", _PROGRESS], stdout=subprocess.DEVNULL, stderr=slave, env=env)
        os.close(slave)
        shown = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert p.wait(timeout=30) == 0
    finally:
        os.close(master)
    assert b"bench: step one" in shown


# --------------------------------------------------------------------------------------------
# The README states these conventions
# --------------------------------------------------------------------------------------------


def _readme_conventions() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Command-line conventions\n(.*?)(?=^## |^<!--)", text, re.S | re.M)
    assert m, "README has no 'Command-line conventions' section"
    return " ".join(m.group(1).split())


def test_readme_states_the_conventions_that_the_code_follows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from planner.heuristics.cli import bench

    doc = _readme_conventions()
    for code, words in (
        (EXIT_INPUT, "bad input"),
        (EXIT_INFEASIBLE, "`solve` proved the instance infeasible"),
        (EXIT_NO_SOLUTION, "`solve` stopped without a solution"),
        (EXIT_INTERRUPTED, "interrupted by Ctrl-C"),
    ):
        assert f"{code} {words}" in doc, (code, words)
    assert INTERRUPTED in doc
    assert "`0666 & ~umask`" in doc and "keeps its own mode" in doc
    assert "stdout" in doc and "stderr" in doc and "is a terminal" in doc
    # The example error line has the shape check_writable gives.
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setattr(fileio, "_dir_writable", lambda d: Path(d) != data)
    with pytest.raises(fileio.InputError) as exc:
        fileio.check_writable(data / "plan.yaml", "--out")
    shown = f"error: {exc.value.line()}".replace(str(tmp_path), "")
    assert f"`{shown}`" in doc
    # `planner bench` never writes over the committed results by default.
    assert "benchmarks/results" not in str(bench.__defaults__)
