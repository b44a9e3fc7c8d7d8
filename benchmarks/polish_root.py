"""Study: where a polish's seconds go inside HiGHS (issue 14: why AGH misses 1 s at 50×20×20).

AGH's polish (``planner/heuristics/polish.py``) is HiGHS on the exact model restricted to the
options its starts opened plus those the fluid rounds used most; at table-50x20x20 it takes
~1 s a round and is most of AGH's ~3 s. This study rebuilds each seed's first polish model as
AGH does without a time limit (:func:`planner.heuristics.methods.starts`, ``polish_scope``, the
matrix model over the scope, the best start as HiGHS's start, the polish's own HiGHS settings)
and reads HiGHS's account of the solve through its callbacks:

* the LP relaxation's bound, the bound when HiGHS hands over its cut pool (the end of the root's
  separation rounds) and the bound at the end;
* when each improving solution came, and how many branch-and-bound nodes were explored;
* the cuts in the pool, sorted by the columns they touch.

``--grid`` solves the same table-50 models again under HiGHS's MIP switches one at a time, and
under one model variant, ``tight links``: every link_route row x[i,k] ≤ z[k] tightened to
x[i,k] ≤ x̄[i,k]·z[k], where x̄[i,k] is the largest share of type i that option k can carry under
i's accuracy row (the rest on the scope's least-error option for i, or unserved up to ζ_i):
the one-route cuts that HiGHS's pool holds most often, written into the model up front.

    python benchmarks/polish_root.py [--seeds 10] [--fleet-seeds 3] [--grid]
        # → benchmarks/results/polish_root.md
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner.bench import FAMILIES, markdown_table, timed_instance
from planner.fileio import write_atomic
from planner.heuristics.methods import polish_scope, starts
from planner.heuristics.polish import POLISH_GAP, POLISH_HIGHS, POLISH_SMALL, scope_of, scoped_matrix
from planner.heuristics.state import Data
from planner.solvers.backends import load_arrays, new_highs
from planner.solvers.matrix import MatrixModel

ROOT = Path(__file__).resolve().parents[1]
TABLE, FLEET = "table-50x20x20", "fleet-100x30x30"
# HiGHS's MIP switches tried one at a time on the polish models (--grid); names as HiGHS 1.16 has them.
GRID: dict[str, dict[str, Any]] = {
    "HiGHS defaults (as shipped)": {},
    "feasibility jump off": {"mip_heuristic_run_feasibility_jump": False},
    "RINS off": {"mip_heuristic_run_rins": False},
    "RENS off": {"mip_heuristic_run_rens": False},
    "root reduced-cost heuristic off": {"mip_heuristic_run_root_reduced_cost": False},
    "heuristic effort 0.2": {"mip_heuristic_effort": 0.2},
    "LP age limit 3": {"mip_lp_age_limit": 3},
    "cut pool soft limit 500": {"mip_pool_soft_limit": 500},
    "no restart": {"mip_allow_restart": False},
    "no symmetry detection": {"mip_detect_symmetry": False},
    "presolve on": {"presolve": "on"},
}
TIGHT = "tight links"


@dataclass
class Solve:
    """One HiGHS run on a polish model, as its callbacks and info report it."""

    start: float
    objective: float
    seconds: float
    nodes: int
    bound: float
    root_bound: float = float("nan")
    root_s: float = float("nan")
    improvements: list[tuple[float, float]] = field(default_factory=list)  # (seconds, objective)
    cuts: Counter[str] = field(default_factory=Counter)


def cut_family(cols: np.ndarray, kind: np.ndarray, type_of: np.ndarray) -> str:
    """A pool cut's family by the columns it touches (kind: 'y', 'z', 'x' or 'u' per column;
    type_of: the type of an x column, -1 elsewhere)."""
    kinds = set(kind[cols])
    types = set(type_of[cols[kind[cols] == "x"]])
    if "y" in kinds:
        return "with replica counts y"
    if len(types) > 1:
        return "several types' routing"
    if kinds <= {"x", "z"} and (kind[cols] == "x").sum() == 1:
        return "one route and its option: x ≤ c·z"
    return "one type's routing and open options z"


def tight_values(mm: MatrixModel) -> np.ndarray:
    r"""The model's coefficients with each link_route row x[i,k] − z[k] ≤ 0 made x − x̄·z ≤ 0.

    x̄[i,k] = 1 where e[i,k] ≤ ε_i; otherwise the largest s with e[i,k]·s + e_min,i·(1 − s − u)
    ≤ ε_i, s ≤ 1 − u, 0 ≤ u ≤ ζ_i (e_min,i: the least error among i's pairs in the model;
    unserved requests count in no error), which is at u = min(ζ_i, 1 − ε_i/e[i,k]). Valid for
    the model it is computed on: any feasible x has x[i,k] ≤ x̄[i,k], and x > 0 forces z = 1."""
    table, pairs = mm.table, mm.P
    inst = table.instance
    allp, _, _, err = table.pair_arrays()
    where = {(int(i), int(k)): n for n, (i, k) in enumerate(allp)}
    e = err[[where[(int(i), int(k))] for i, k in pairs]]
    eps = np.array([np.inf if q.max_error is None else q.max_error for q in inst.query_types])
    zeta = np.array([q.max_unserved for q in inst.query_types])
    i = pairs[:, 0]
    emin = np.full(len(table.type_ids), np.inf)
    np.minimum.at(emin, i, e)
    over = e > eps[i] + 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.clip(1.0 - eps[i] / e, 0.0, zeta[i])
        share = np.minimum((eps[i] - emin[i] * (1.0 - u)) / (e - emin[i]), 1.0 - u)
    xbar = np.where(over, np.clip(np.nan_to_num(share, nan=0.0), 0.0, 1.0), 1.0)
    first = len(mm.row_lo) - len(pairs)  # link_route rows come last, one per pair, in pair order
    row = np.repeat(np.arange(len(mm.row_lo)), np.diff(np.append(mm.starts, len(mm.index))))
    z = mm.col["z"]
    hit = (row >= first) & (mm.index >= z.start) & (mm.index < z.stop)
    value = mm.value.copy()
    value[hit] = -xbar[row[hit] - first]
    return value


def solve(mm: MatrixModel, start: np.ndarray, extra: dict[str, Any], value: np.ndarray | None = None) -> Solve:
    """HiGHS as the polish runs it (:func:`planner.heuristics.polish.solve_scope`), plus ``extra``."""
    import highspy

    h = new_highs()
    settings: dict[str, Any] = {"random_seed": 0, "threads": 1, "mip_rel_gap": POLISH_GAP, "mip_max_improving_sols": 2}
    if mm.columns <= POLISH_SMALL:
        settings.update(POLISH_HIGHS)
    for name, v in {**settings, **extra}.items():
        h.setOptionValue(name, v)
    rows = mm.rows if value is None else (mm.starts, mm.index, value, mm.row_lo, mm.row_hi)
    load_arrays(h, mm.cost, mm.lb, mm.ub, rows)
    h.changeColsIntegrality(len(mm.integer), mm.integer, np.full(len(mm.integer), highspy.HighsVarType.kInteger))
    sol = highspy.HighsSolution()
    sol.col_value = [float(v) for v in start]
    sol.value_valid = True
    h.setSolution(sol)
    out = Solve(start=float(mm.cost @ start), objective=float("nan"), seconds=0.0, nodes=0, bound=float("nan"))
    kind = np.empty(mm.columns, dtype=object)
    for name, cols in mm.col.items():
        kind[cols] = name
    type_of = np.full(mm.columns, -1)
    type_of[mm.col["x"]] = mm.P[:, 0]

    def improving(e: Any) -> None:
        out.improvements.append((float(e.data_out.running_time), float(e.data_out.objective_function_value)))

    def pool(e: Any) -> None:
        d = e.data_out
        out.root_s, out.root_bound = float(d.running_time), float(d.mip_dual_bound)
        starts_, index = np.asarray(d.cutpool_start), np.asarray(d.cutpool_index)
        ends = np.append(starts_[1:], len(index))
        out.cuts = Counter(cut_family(index[a:b], kind, type_of) for a, b in zip(starts_, ends, strict=True))

    h.cbMipImprovingSolution.subscribe(improving)
    h.cbMipGetCutPool.subscribe(pool)
    t0 = time.perf_counter()
    h.run()
    out.seconds = time.perf_counter() - t0
    info = h.getInfo()
    out.objective, out.bound = float(info.objective_function_value), float(info.mip_dual_bound)
    out.nodes = int(info.mip_node_count)
    return out


def polish_model(family: str, seed: int) -> tuple[MatrixModel, np.ndarray, float] | None:
    """Seed's first polish model, its start's column values and the LP relaxation's bound; None
    where every start stalled (AGH then repairs instead of polishing)."""
    _, table, _ = timed_instance(FAMILIES[family], seed)
    data = Data.from_table(table)
    found, touched, _, _ = starts(data, seed)
    if not found:
        return None
    first, extra = polish_scope(found, touched)
    scope = scope_of(data, first, extra)
    mm = scoped_matrix(table, scope)
    best = min(first, key=lambda s: s.cost)
    lp = mm.solve(relax=True, options=POLISH_HIGHS)
    return mm, mm.start_of(best.y, best.X), float("nan") if lp.objective is None else lp.objective


def anatomy_row(family: str, seed: int, mm: MatrixModel, lp: float, s: Solve) -> dict[str, Any]:
    # HiGHS reports the start itself as its first improving solution
    better = [t for t, obj in s.improvements if obj < s.start * (1 - 1e-9)]
    first = better[0] if better else float("nan")
    return {
        "family": family,
        "seed": seed,
        "columns": mm.columns,
        "integer": len(mm.integer),
        "LP bound": lp,
        "root bound": s.root_bound,
        "end bound": s.bound,
        "start $": s.start,
        "answer $": s.objective,
        "seconds": s.seconds,
        "root cuts end s": s.root_s,
        "first better s": first,
        "improving": len(better),
        "nodes": s.nodes,
        "cuts": sum(s.cuts.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help=f"{TABLE} seeds")
    ap.add_argument("--fleet-seeds", type=int, default=3, help=f"{FLEET} seeds (anatomy only)")
    ap.add_argument("--grid", action="store_true", help=f"HiGHS switches and '{TIGHT}' on the {TABLE} models")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "polish_root.md")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    cuts: Counter[str] = Counter()
    grid: list[dict[str, Any]] = []
    for family, seeds in ((TABLE, args.seeds), (FLEET, args.fleet_seeds)):
        for seed in range(seeds):
            got = polish_model(family, seed)
            if got is None:
                print(f"{family} seed {seed}: no start (AGH repairs)", flush=True)
                continue
            mm, start, lp = got
            base = solve(mm, start, {})
            rows.append(anatomy_row(family, seed, mm, lp, base))
            cuts.update(base.cuts)
            print(f"{family} seed {seed}: {base.seconds:.2f} s, root cuts end {base.root_s:.2f} s", flush=True)
            if not args.grid or family != TABLE:
                continue
            variants = {**{k: (v, None) for k, v in GRID.items()}, TIGHT: ({}, tight_values(mm))}
            for name, (extra, value) in variants.items():
                s = base if name.startswith("HiGHS defaults") else solve(mm, start, extra, value)
                grid.append({"seed": seed, "variant": name, "seconds": s.seconds, "objective": s.objective})
    df = pd.DataFrame(rows)
    lines = [
        "# Where a polish's seconds go inside HiGHS",
        "",
        f"`python benchmarks/polish_root.py{' --grid' if args.grid else ''}` (one process, 1 solver thread, "
        "HiGHS as the polish runs it). Each seed's first polish model, rebuilt as AGH builds it without a time "
        "limit. Bounds in $ per period; 'root cuts end s' is when HiGHS handed over its cut pool (the end of "
        "the root's separation rounds); 'first better s' when the first solution better than the start came.",
        "",
        markdown_table(df),
        "",
        "Cuts in the pool at the end of the root, by the columns they touch (all seeds):",
        "",
        "| cut family | cuts | share |",
        "|---|---:|---:|",
        *(f"| {k} | {n} | {n / max(1, sum(cuts.values())):.0%} |" for k, n in cuts.most_common()),
    ]
    if grid:
        g = pd.DataFrame(grid)
        ref = g[g.variant == next(iter(GRID))].set_index("seed")
        g["worse"] = g.apply(lambda r: r.objective > ref.objective[r.seed] * (1 + 1e-6), axis=1)
        g["better"] = g.apply(lambda r: r.objective < ref.objective[r.seed] * (1 - 1e-6), axis=1)
        by = g.groupby("variant", sort=False)
        summary = pd.DataFrame(
            {
                "total s": by.seconds.sum(),
                "vs defaults %": 100 * (by.seconds.sum() / ref.seconds.sum() - 1),
                "median s": by.seconds.median(),
                "answers worse": by.worse.sum(),
                "answers better": by.better.sum(),
            }
        )
        lines += [
            "",
            f"HiGHS's MIP switches one at a time, and the `{TIGHT}` model variant, on the same {TABLE} models "
            f"({g.seed.nunique()} seeds; 'worse'/'better': the polish's answer against the defaults'):",
            "",
            markdown_table(summary.reset_index()),
        ]
    write_atomic(args.out, "\n".join(lines) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
