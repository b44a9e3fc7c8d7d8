"""What each MILP strengthening buys, measured separately on one family (default table-50×20×20).

    python benchmarks/milp_strength.py [--family table-50x20x20] [--seeds 10] [--time-limit 60]
                                       [--configs matrix-bare,matrix] [--out PATH]

Configurations, each on the same instances and option tables (HiGHS, 1 thread):

- ``none``: the spec's model with no options left out (``ModelScope(prune=False)``);
- ``prune``: dominated options left out (:func:`planner.solvers.milp.dominated`);
- ``prune+agh``: as ``prune``, with AGH's plan as the first incumbent (its seconds included);
- ``matrix``: as ``prune``, built as arrays and handed to HiGHS directly
  (:mod:`planner.solvers.matrix`: the same model without Pyomo's build and translation);
- ``matrix-bare``: as ``matrix``, without the open_cover rows
  (:func:`planner.solvers.milp._open_covers`), which every other configuration has since they
  landed (``results/milp_strength.md`` was measured before: its four rows have none).

Per configuration: instances proven optimal within the limit, median / p95 seconds, median gap
at the limit, and the model's size. Writes ``benchmarks/results/milp_strength.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from planner.bench import FAMILIES
from planner.fileio import write_atomic
from planner.generate import paper_instance
from planner.loader import load_instance_data
from planner.options import build_option_table
from planner.solvers import solve
from planner.solvers.backends import BACKENDS, SolveOptions
from planner.solvers.matrix import build_matrix
from planner.solvers.milp import ModelScope, build_model, dominated
from planner.solvers.milp_method import _start_from_plan

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("none", "prune", "prune+agh", "matrix", "matrix-bare")


def run_one(table, config: str, limit: float) -> dict[str, float | str | int]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    if config.startswith("matrix"):
        mm = build_matrix(table, covers=config == "matrix")
        res = mm.solve(time_limit=limit)
        status, obj, bound, cols = res.status, res.objective, res.bound, mm.columns
    else:
        start: dict[int, float] = {}
        extra = 0.0
        if config == "prune+agh":
            plan = solve(table.instance, "agh", table=table)
            extra = plan.solve_seconds
        model = build_model(table, ModelScope(prune=config != "none"))
        if config == "prune+agh" and plan.has_solution:
            start = _start_from_plan(model, table, plan)
        r = BACKENDS["highs"](model, SolveOptions(time_limit=max(limit - extra, 1.0)), start)
        status, obj, bound, cols = r.status, r.objective, r.bound, len(model.K) * 2 + len(model.P) + len(model.I)
    secs = time.perf_counter() - t0
    gap = (obj - bound) / obj if obj and bound is not None else float("nan")
    return {"config": config, "status": status, "seconds": secs, "gap": gap, "columns": cols}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--family", default="table-50x20x20")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "milp_strength.md")
    args = ap.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    if unknown := [c for c in configs if c not in CONFIGS]:
        ap.error(f"--configs: unknown {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    fam = FAMILIES[args.family]
    rows = []
    pruned = []
    for seed in range(args.seeds):
        doc = paper_instance(fam.types, fam.models, fam.tiers, seed, mode=fam.mode)
        inst = load_instance_data(doc, f"{doc['name']}.yaml")
        table = build_option_table(inst)
        pruned.append((len(dominated(table, table.pairs)), len({k for _, k in table.pairs})))
        for config in configs:
            r = run_one(table, config, args.time_limit)
            r["seed"] = seed
            rows.append(r)
            print(seed, r, flush=True)
    lines = [
        f"# MILP strength, {args.family} ({args.seeds} seeds, HiGHS 1 thread, {args.time_limit:g} s limit)",
        "",
        f"`python benchmarks/milp_strength.py --family {args.family} --seeds {args.seeds} "
        f"--configs {','.join(configs)}`. "
        "Dominance leaves out "
        f"{np.median([p for p, _ in pruned]):.0f} of a median {np.median([n for _, n in pruned]):.0f} options "
        "with an eligible pair.",
        "",
        "| configuration | proven optimal | median s | p95 s | median gap at stop % | median columns |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for config in configs:
        sub = [r for r in rows if r["config"] == config]
        secs = np.array([float(r["seconds"]) for r in sub])
        gaps = np.array([float(r["gap"]) for r in sub])
        lines.append(
            f"| {config} | {sum(r['status'] == 'optimal' for r in sub)}/{len(sub)} | {np.median(secs):.1f} | "
            f"{np.percentile(secs, 95):.1f} | {np.nanmedian(gaps) * 100:.3f} | "
            f"{np.median([int(r['columns']) for r in sub]):.0f} |"
        )
    lines += ["", "| seed | " + " | ".join(configs) + " |", "|---|" + "---:|" * len(configs)]
    for seed in range(args.seeds):
        cells = []
        for config in configs:
            r = next(r for r in rows if r["seed"] == seed and r["config"] == config)
            cells.append(f"{float(r['seconds']):.1f} s {r['status']}")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    write_atomic(args.out, "\n".join(lines) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
