"""Exact backends for the Pyomo model: HiGHS (through Pyomo) and OR-Tools (SCIP via pywraplp).

Both take the same :class:`pyomo.environ.ConcreteModel`, leave the solution on the model's
variables and return a :class:`BackendResult` with an honest status, the incumbent objective and
the proven bound. The OR-Tools backend translates the model's linear rows one to one
(``generate_standard_repn``), so the constraints are written once, in ``milp.py``; it solves in a
child process because OR-Tools' bundled HiGHS and highspy cannot share one process.

Ctrl-C: HiGHS runs inside one long C++ call. A SIGINT that arrives meanwhile reaches Python only
when that call returns, or inside one of HiGHS's callbacks, where it ends the solve as an
ordinary "interrupted"/"error" status; the command would then report, and write, an empty plan.
So HiGHS runs in a worker thread while the main thread waits with a timeout
(:func:`_interruptible`): the main thread sees KeyboardInterrupt at once, asks HiGHS to stop
(``cancelSolve``, checked by its interrupt callbacks), waits for it and re-raises, so no result
is returned and nothing is written. The OR-Tools child is killed by ``subprocess.run`` on the
same KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyomo.environ as pyo
from pyomo.repn import generate_standard_repn


@dataclass(frozen=True)
class SolveOptions:
    time_limit: float | None = None  # seconds
    gap: float = 1e-6  # relative MIP gap at which a solution counts as optimal
    threads: int = 1
    node_limit: int | None = None  # branch-and-bound nodes: a deterministic work limit (HiGHS)
    improving_limit: int | None = None  # stop after this many improving solutions (HiGHS, deterministic)


@dataclass
class BackendResult:
    status: str  # optimal | feasible | infeasible | no_solution
    objective: float | None
    bound: float | None
    seconds: float = 0.0
    message: str = ""
    values: Any = None  # column values (numpy array) where the arrays were solved directly


T = TypeVar("T")


def _interruptible(work: Callable[[], T], cancel: Callable[[], None]) -> T:
    """``work()`` (a HiGHS solve) in a worker thread, so that Ctrl-C stops it (module docstring).

    On KeyboardInterrupt, ``cancel`` is called until the worker ends (the HiGHS object may not
    exist yet when the signal comes), then the KeyboardInterrupt propagates: the caller never
    sees the cut-short result. Off the main thread, signals are not delivered anyway: run inline.
    """
    if threading.current_thread() is not threading.main_thread():
        return work()
    box: dict[str, Any] = {}
    # An Event, not Thread.join: on Python 3.11 a join cut short by KeyboardInterrupt leaves the
    # thread reported as not alive while HiGHS still runs (and aborts the process at exit).
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="highs-solve", daemon=True).start()
    try:
        while not done.wait(0.1):  # a timed wait: the main thread stays where signals are handled
            pass
    except KeyboardInterrupt:
        while not done.is_set():
            cancel()
            # A second Ctrl-C must not leave HiGHS running in a thread the interpreter then
            # tears down (the process would abort): keep asking it to stop until it has.
            with contextlib.suppress(KeyboardInterrupt):
                done.wait(0.05)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Point fds 1 and 2 at /dev/null for a moment: the first ``highspy.Highs()`` of a process
    prints HiGHS's banner on stdout, before any option can turn it off, and that would corrupt a
    plan printed on stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def new_highs() -> Any:
    """A silent ``highspy.Highs`` whose solve stops on ``cancelSolve()`` (see :func:`_interruptible`)."""
    import highspy

    with _quiet_fds():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.HandleUserInterrupt = True  # cancelSolve() sets a flag HiGHS's interrupt callbacks read
    return h


def solve_highs(model: pyo.ConcreteModel, opts: SolveOptions) -> BackendResult:
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

    solver = SolverFactory("highs")
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {
        "load_solutions": False,
        "raise_exception_on_nonoptimal_result": False,
        "rel_gap": opts.gap,
        "threads": opts.threads,
        "solver_options": {"random_seed": 0, "output_flag": False},
    }
    if opts.node_limit is not None:
        kwargs["solver_options"]["mip_max_nodes"] = opts.node_limit
    if opts.time_limit is not None:
        kwargs["time_limit"] = opts.time_limit

    def cancel() -> None:
        # Pyomo would log the cut-short solve ("unhandled status kInterrupt") on stderr; the
        # command reports the interrupt itself, in one line.
        logging.getLogger("pyomo.contrib.solver").setLevel(logging.ERROR)
        # Pyomo makes its highspy.Highs inside solve() (and turns on its interrupt callbacks).
        h = getattr(solver, "_solver_model", None)
        if h is not None:
            h.cancelSolve()

    res = _interruptible(lambda: solver.solve(model, **kwargs), cancel)
    secs = time.perf_counter() - t0
    tc = res.termination_condition
    has_sol = res.solution_status in (SolutionStatus.optimal, SolutionStatus.feasible)
    bound = res.objective_bound if res.objective_bound is not None and abs(res.objective_bound) < 1e300 else None
    if tc in (TerminationCondition.provenInfeasible, TerminationCondition.infeasibleOrUnbounded):
        return BackendResult("infeasible", None, None, seconds=secs, message=str(tc.name))
    if not has_sol:
        return BackendResult("no_solution", None, bound, seconds=secs, message=str(tc.name))
    res.solution_loader.load_vars()
    status = "optimal" if tc == TerminationCondition.convergenceCriteriaSatisfied else "feasible"
    return BackendResult(status, float(res.incumbent_objective), bound, secs, str(tc.name))


def _linear_form(model: pyo.ConcreteModel) -> tuple[list[Any], dict[str, Any]]:
    """The model as plain lists (variables, rows, objective) for the OR-Tools worker."""
    pyo_vars = list(model.component_data_objects(pyo.Var, active=True))
    index = {id(v): n for n, v in enumerate(pyo_vars)}

    def linear(expr: Any) -> tuple[float, list[int], list[float]]:
        repn = generate_standard_repn(expr, compute_values=True)
        if not repn.is_linear():
            raise ValueError("the OR-Tools backend takes linear models only")
        return (
            float(repn.constant),
            [index[id(v)] for v in repn.linear_vars],
            [float(c) for c in repn.linear_coefs],
        )

    rows = []
    for con in model.component_data_objects(pyo.Constraint, active=True):
        const, idx, coef = linear(con.body)
        lo = None if con.lower is None else float(pyo.value(con.lower)) - const
        hi = None if con.upper is None else float(pyo.value(con.upper)) - const
        rows.append((lo, hi, idx, coef))
    obj = next(model.component_data_objects(pyo.Objective, active=True))
    const, idx, coef = linear(obj.expr)
    payload = {
        "vars": [(v.lb, v.ub, bool(v.is_integer() or v.is_binary())) for v in pyo_vars],
        "rows": rows,
        "obj": (idx, coef, const),
    }
    return pyo_vars, payload


def load_arrays(h: Any, cost: Any, lb: Any, ub: Any, rows: tuple[Any, Any, Any, Any, Any]) -> None:
    """Columns (cost, bounds) and CSR rows ``(starts, index, value, lower, upper)`` into HiGHS ``h``."""
    import numpy as np

    h.addCols(len(cost), cost, lb, ub, 0, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
    starts, index, value, lo, hi = rows
    h.addRows(len(lo), lo, hi, len(index), starts, index, value)


def solve_arrays(
    cost: Any,
    lb: Any,
    ub: Any,
    integer: Any,
    rows: tuple[Any, Any, Any, Any, Any],
    opts: SolveOptions,
    start: Any = None,
    relax: bool = False,
    options: dict[str, Any] | None = None,
) -> BackendResult:
    """HiGHS (seed 0) on a model given as arrays: columns (cost, bounds, integer column indices)
    and CSR rows ``(starts, index, value, lower, upper)``; the LP relaxation when ``relax``.
    ``values`` holds the column values when a solution was found; the bound is HiGHS's dual
    bound (the LP optimum when ``relax``), also when no solution was found. ``options``: more
    HiGHS options by name."""
    import highspy
    import numpy as np

    t0 = time.perf_counter()
    h = new_highs()
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("mip_rel_gap", opts.gap)
    h.setOptionValue("threads", opts.threads)
    if opts.time_limit is not None:
        h.setOptionValue("time_limit", float(max(opts.time_limit, 0.01)))
    if opts.node_limit is not None:
        h.setOptionValue("mip_max_nodes", int(opts.node_limit))
    if opts.improving_limit is not None:
        h.setOptionValue("mip_max_improving_sols", int(opts.improving_limit))
    for name, v in (options or {}).items():
        h.setOptionValue(name, v)
    load_arrays(h, cost, lb, ub, rows)
    if not relax and len(integer):
        h.changeColsIntegrality(len(integer), integer, np.full(len(integer), highspy.HighsVarType.kInteger))
    if start is not None and not relax:
        sol = highspy.HighsSolution()
        sol.col_value = [float(v) for v in start]
        sol.value_valid = True
        h.setSolution(sol)
    _interruptible(h.run, h.cancelSolve)
    secs = time.perf_counter() - t0
    status = h.getModelStatus()
    info = h.getInfo()
    message = h.modelStatusToString(status)
    if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return BackendResult("infeasible", None, None, secs, "INFEASIBLE")
    optimal = status == highspy.HighsModelStatus.kOptimal
    if relax:
        bound = float(info.objective_function_value) if optimal else None
    else:
        bound = float(info.mip_dual_bound) if abs(info.mip_dual_bound) < 1e300 else None
    if info.primal_solution_status != 2:  # kSolutionStatusFeasible
        return BackendResult("no_solution", None, bound, secs, message)
    values = np.asarray(h.getSolution().col_value, dtype=float)
    done = "optimal" if optimal else "feasible"
    return BackendResult(done, float(info.objective_function_value), bound, secs, message, values)


def solve_highs_start(model: pyo.ConcreteModel, opts: SolveOptions, start: dict[int, float]) -> BackendResult:
    """HiGHS on the model's standard form with a starting solution (``id(var) -> value``).

    Pyomo's HiGHS interface takes no starting point, so a warm start goes through highspy
    directly (:func:`solve_arrays`), from the same linear rows the OR-Tools backend sends (the
    model is written once).
    """
    import highspy
    import numpy as np

    t0 = time.perf_counter()
    pyo_vars, payload = _linear_form(model)
    inf = highspy.kHighsInf
    n = len(pyo_vars)
    idx, coef, offset = payload["obj"]
    cost = np.zeros(n)
    np.add.at(cost, np.asarray(idx, dtype=int), np.asarray(coef, dtype=float))
    lb = np.array([-inf if v[0] is None else v[0] for v in payload["vars"]], dtype=float)
    ub = np.array([inf if v[1] is None else v[1] for v in payload["vars"]], dtype=float)
    rows = payload["rows"]
    starts = np.cumsum([0] + [len(r[2]) for r in rows[:-1]]).astype(np.int32) if rows else np.zeros(0, np.int32)
    index = np.concatenate([np.asarray(r[2], dtype=np.int32) for r in rows]) if rows else np.zeros(0, np.int32)
    value = np.concatenate([np.asarray(r[3], dtype=float) for r in rows]) if rows else np.zeros(0)
    lo = np.array([-inf if r[0] is None else r[0] for r in rows], dtype=float)
    hi = np.array([inf if r[1] is None else r[1] for r in rows], dtype=float)
    integer = np.array([j for j, v in enumerate(payload["vars"]) if v[2]], dtype=np.int32)
    first = [float(start.get(id(v), 0.0)) for v in pyo_vars]
    res = solve_arrays(cost, lb, ub, integer, (starts, index, value, lo, hi), opts, first)
    res.seconds = time.perf_counter() - t0
    if res.values is not None:
        for v, val in zip(pyo_vars, res.values, strict=True):
            v.set_value(float(val), skip_validation=True)
    if res.status in ("infeasible", "no_solution"):
        return BackendResult(res.status, None, None, res.seconds, res.message)
    objective = None if res.objective is None else res.objective + float(offset)
    bound = None if res.bound is None else res.bound + float(offset)
    return BackendResult(res.status, objective, bound, res.seconds, res.message)


def solve_ortools(model: pyo.ConcreteModel, opts: SolveOptions, start: dict[int, float] | None = None) -> BackendResult:
    """SCIP through OR-Tools' pywraplp, in a child process (see ``planner.ortools_worker``).

    ``start`` (``id(var) -> value``) is passed to SCIP as a solution hint.
    """
    t0 = time.perf_counter()
    pyo_vars, payload = _linear_form(model)
    payload["opts"] = {"time_limit": opts.time_limit, "gap": opts.gap, "threads": opts.threads}
    if start:
        payload["hint"] = {j: float(start[id(v)]) for j, v in enumerate(pyo_vars) if id(v) in start}
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    timeout = None if opts.time_limit is None else opts.time_limit + 120.0
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "planner.ortools_worker"],
            input=pickle.dumps(payload),
            capture_output=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return BackendResult("no_solution", None, None, time.perf_counter() - t0, "OR-Tools worker timed out")
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return BackendResult("no_solution", None, None, secs, f"OR-Tools worker failed: {tail[0]}")
    out = pickle.loads(proc.stdout)
    if out["status"] == "infeasible":
        return BackendResult("infeasible", None, None, secs, "INFEASIBLE")
    if out["status"] not in ("optimal", "feasible"):
        return BackendResult("no_solution", None, None, secs, f"OR-Tools status {out['code']}")
    for v, val in zip(pyo_vars, out["values"], strict=True):  # values go back onto the Pyomo model
        v.set_value(val, skip_validation=True)
    return BackendResult(out["status"], out["objective"], out["bound"], secs, out["status"].upper())


def _highs(model: pyo.ConcreteModel, opts: SolveOptions, start: dict[int, float] | None = None) -> BackendResult:
    """HiGHS: through Pyomo, or through highspy directly when there is a starting solution."""
    return solve_highs(model, opts) if not start else solve_highs_start(model, opts, start)


Backend = Callable[..., BackendResult]  # (model, SolveOptions, start=None) -> BackendResult

BACKENDS: dict[str, Backend] = {
    "highs": _highs,
    "ortools": solve_ortools,
}
