"""Exact backends for the Pyomo model: HiGHS (through Pyomo) and OR-Tools (SCIP via pywraplp).

Both take the same :class:`pyomo.environ.ConcreteModel`, leave the solution on the model's
variables and return a :class:`BackendResult` with an honest status, the incumbent objective and
the proven bound. The OR-Tools backend translates the model's linear rows one to one
(``generate_standard_repn``), so the constraints are written once, in ``milp.py``; it solves in a
child process because OR-Tools' bundled HiGHS and highspy cannot share one process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyomo.environ as pyo
from pyomo.repn import generate_standard_repn


@dataclass(frozen=True)
class SolveOptions:
    time_limit: float | None = None  # seconds
    gap: float = 1e-6  # relative MIP gap at which a solution counts as optimal
    threads: int = 1


@dataclass
class BackendResult:
    status: str  # optimal | feasible | infeasible | no_solution
    objective: float | None
    bound: float | None
    seconds: float = 0.0
    message: str = ""


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
    if opts.time_limit is not None:
        kwargs["time_limit"] = opts.time_limit
    res = solver.solve(model, **kwargs)
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


def solve_ortools(model: pyo.ConcreteModel, opts: SolveOptions) -> BackendResult:
    """SCIP through OR-Tools' pywraplp, in a child process (see ``planner.ortools_worker``)."""
    t0 = time.perf_counter()
    pyo_vars, payload = _linear_form(model)
    payload["opts"] = {"time_limit": opts.time_limit, "gap": opts.gap, "threads": opts.threads}
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


BACKENDS: dict[str, Callable[[pyo.ConcreteModel, SolveOptions], BackendResult]] = {
    "highs": solve_highs,
    "ortools": solve_ortools,
}
