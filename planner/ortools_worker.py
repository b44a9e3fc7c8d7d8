"""Child process of the OR-Tools backend: reads a linear model on stdin, solves it with SCIP.

OR-Tools ships its own HiGHS build, whose symbols clash with highspy's in one process (either
import order fails). The OR-Tools backend therefore runs here, in a process that imports nothing
but OR-Tools; ``planner.solvers.backends`` sends the model as a pickled mapping of plain lists:

    vars:  [(lb, ub, is_integer)]           rows: [(lo, hi, [var index], [coef])]
    obj:   ([var index], [coef], offset)     opts: {time_limit, gap, threads}
    hint:  {var index: value} (optional starting solution)

and receives {status, objective, bound, values}.
"""

from __future__ import annotations

import math
import pickle
import sys
from typing import Any


def solve(payload: dict[str, Any]) -> dict[str, Any]:
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("SCIP")
    inf = solver.infinity()
    xs = []
    for n, (lb, ub, is_int) in enumerate(payload["vars"]):
        lo = -inf if lb is None or math.isinf(lb) else lb
        hi = inf if ub is None or math.isinf(ub) else ub
        xs.append(solver.IntVar(lo, hi, f"v{n}") if is_int else solver.NumVar(lo, hi, f"v{n}"))
    for lo, hi, idx, coef in payload["rows"]:
        row = solver.Constraint(-inf if lo is None else lo, inf if hi is None else hi)
        for j, c in zip(idx, coef, strict=True):
            row.SetCoefficient(xs[j], row.GetCoefficient(xs[j]) + c)
    idx, coef, offset = payload["obj"]
    objective = solver.Objective()
    for j, c in zip(idx, coef, strict=True):
        objective.SetCoefficient(xs[j], objective.GetCoefficient(xs[j]) + c)
    objective.SetOffset(offset)
    objective.SetMinimization()
    opts = payload["opts"]
    if payload.get("hint"):
        hint = payload["hint"]
        solver.SetHint([xs[j] for j in hint], [hint[j] for j in hint])
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, opts["gap"])
    if opts.get("time_limit") is not None:
        solver.SetTimeLimit(int(opts["time_limit"] * 1000))
    solver.SetNumThreads(int(opts.get("threads", 1)))
    code = solver.Solve(params)
    names = {
        pywraplp.Solver.OPTIMAL: "optimal",
        pywraplp.Solver.FEASIBLE: "feasible",
        pywraplp.Solver.INFEASIBLE: "infeasible",
        pywraplp.Solver.UNBOUNDED: "unbounded",
    }
    status = names.get(code, "no_solution")
    out: dict[str, Any] = {"status": status, "objective": None, "bound": None, "values": None, "code": code}
    if status in ("optimal", "feasible"):
        out["objective"] = objective.Value()
        out["bound"] = objective.BestBound()
        out["values"] = [x.solution_value() for x in xs]
    return out


def main() -> None:
    payload = pickle.load(sys.stdin.buffer)
    result = solve(payload)
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
