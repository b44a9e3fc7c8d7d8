"""Study: where a fleet instance's time goes before any solver runs (issue 14: loading and
building the option table must not dominate).

Per family and seed: generating the document (the bench's own step, not a user's), loading it
(pydantic validation of every performance entry), building the option table, the heuristics'
dense arrays (:meth:`planner.heuristics.state.Data.from_table`, AGH's and GH's first step) and the
whole exact model as arrays (:func:`planner.solvers.matrix.build_matrix`, without link_route rows,
as ``solve --backend highs-arrays`` builds it). One process; timings depend on the machine and its
load, so compare two versions side by side in the same hour (``--label`` names the rows,
``--append`` keeps the other labels' rows).

    python benchmarks/build_phases.py [--seeds 3] [--label NAME --append]   # → results/build_phases.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from planner.bench import FAMILIES, markdown_table, timed_instance, write_labelled
from planner.heuristics.state import Data
from planner.solvers.matrix import build_matrix

RESULTS = Path(__file__).parent / "results"
STUDY = ("fleet-100x30x30", "fleet-200x40x40")
PHASES = ["generate_s", "load_s", "table_s", "arrays_s", "matrix_s"]


def run(seeds: int, label: str) -> pd.DataFrame:
    rows = []
    for name in STUDY:
        for seed in range(seeds):
            _, table, (gen, load, build) = timed_instance(FAMILIES[name], seed)
            t0 = time.perf_counter()
            Data.from_table(table)
            t1 = time.perf_counter()
            build_matrix(table, route_links=False)
            t2 = time.perf_counter()
            row = {"label": label, "family": name, "seed": seed, "pairs": len(table.pairs)}
            row |= dict(zip(PHASES, (gen, load, build, t1 - t0, t2 - t1), strict=True))
            rows.append(row)
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return pd.DataFrame(rows)


def render(df: pd.DataFrame, note: str) -> str:
    g = df.groupby(["family", "label"], sort=True)
    table = g[PHASES].median().round(2)
    table.insert(0, "seeds", g.size())
    table.insert(1, "median pairs", g["pairs"].median().astype(int))
    return (
        "# Build phases at fleet scale\n\n"
        "`python benchmarks/build_phases.py`, one process: median seconds per phase over the seeds "
        "(generate: the bench's document; load: validation; table: the option table; arrays: the "
        "heuristics' dense arrays; matrix: the exact model as arrays, without link_route rows).\n\n"
        + (note + "\n\n" if note else "")
        + markdown_table(table.reset_index())
        + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--label", default="shipped", help="the name of this version's rows")
    ap.add_argument("--out", type=Path, default=RESULTS / "build_phases.md")
    ap.add_argument("--append", action="store_true", help="keep the other labels' rows of the existing CSV")
    ap.add_argument("--note", default="", help="a paragraph under the title (machine, date, versions)")
    args = ap.parse_args()
    df = run(args.seeds, args.label)
    print(write_labelled(df, args.out, lambda d: render(d, args.note), args.append))


if __name__ == "__main__":
    main()
