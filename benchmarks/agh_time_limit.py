"""AGH under ``--time-limit S``: the gap to the best bound a user gets for a given wall-clock limit.

Without a limit AGH runs to its work limits (``benchmarks/results/bench.md``: 0.000% / 0.50% /
0.61% median at ~3 s / 8 s / 33 s on table-50 / fleet-100 / fleet-200). Under a limit every phase
gets what is left of it (:func:`planner.heuristics.methods.solve_agh`), and the first start is
the slope-scaling one followed at once by RENS (:func:`planner.heuristics.methods.starts`). This
study solves the bench's instances under a few limits and reports, per family and limit, the
median seconds and the median / p95 / worst gap to the best bound known for the seed (the MILP's
proven bound of ``results/bench.csv`` and ``results/holdout/bench.csv``). Seeds whose family row
has no bound (proven infeasible) are skipped.

Timings depend on the machine and its load (the figures are cut by a clock): run it alone, and
compare two versions on the same machine in the same hour (``--label`` names the rows).

    python benchmarks/agh_time_limit.py [--quick] [--label NAME] [--families F,G]   # → results/agh_time_limit.md
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner.bench import FAMILIES, markdown_table, timed_instance, write_labelled
from planner.heuristics.methods import solve_agh
from planner.options import OptionTable

RESULTS = Path(__file__).parent / "results"
# (family, seeds, limits in seconds): table-50 on the bench's seeds and the held-out ones; fleet-200
# at 5 s (the limit) on the bench's ten seeds (seed 6 is infeasible: no bound, no row), at
# 10 s on the first three
PLAN: list[tuple[str, list[int], list[float]]] = [
    ("table-50x20x20", list(range(10)), [1.0, 2.0]),
    ("table-50x20x20", list(range(10, 20)), [1.0, 2.0]),
    ("fleet-100x30x30", list(range(10)), [5.0]),
    ("fleet-200x40x40", list(range(10)), [5.0]),
    ("fleet-200x40x40", list(range(3)), [10.0]),
]


def bounds() -> pd.Series:
    """The best bound known per (family, seed), from the bench and the held-out bench."""
    frames = [pd.read_csv(p) for p in (RESULTS / "bench.csv", RESULTS / "holdout" / "bench.csv") if p.exists()]
    df = pd.concat(frames)
    return df.groupby(["family", "seed"])["best_bound"].max()


def seed_tables(
    plan: Sequence[tuple[str, list[int], Sequence[Any]]], quick: bool, families: set[str] | None
) -> Iterator[tuple[str, list[int], int, float, OptionTable, Sequence[Any]]]:
    """(family, its seeds, seed, best bound, option table, limits) of every seed of ``plan`` with a
    finite bound (two per row when ``quick``; only ``families`` when given), the table built as the
    bench builds it (the heap frozen after it). The studies built on this one's plan loop over it."""
    best = bounds()
    for fam_name, seeds, limits in plan:
        if families is not None and fam_name not in families:
            continue
        for seed in seeds[:2] if quick else seeds:
            bound = best.get((fam_name, seed))
            if bound is None or not np.isfinite(bound):
                continue
            _, table, _ = timed_instance(FAMILIES[fam_name], seed)
            yield fam_name, seeds, seed, float(bound), table, limits


def run(quick: bool, label: str, families: set[str] | None = None) -> pd.DataFrame:
    rows = []
    for fam_name, seeds, seed, bound, table, limits in seed_tables(PLAN, quick, families):
        for limit in limits:
            t0 = time.perf_counter()
            plan = solve_agh(table, seed=seed, time_limit=limit)
            seconds = time.perf_counter() - t0
            gap = np.nan if plan.objective is None else (plan.objective - bound) / plan.objective * 100
            rows.append(
                {
                    "label": label,
                    "family": fam_name,
                    "seeds": f"{seeds[0]}-{seeds[-1]}",
                    "seed": seed,
                    "limit_s": limit,
                    "seconds": seconds,
                    "gap_pct": gap,
                }
            )
            print(f"{fam_name} seed {seed} limit {limit:g}: {seconds:.2f} s, gap {gap:.3f}%", flush=True)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["label", "family", "seeds", "limit_s"], sort=False)
    return pd.DataFrame(
        {
            "runs": g.size(),
            "median s": g["seconds"].median().round(2),
            "max s": g["seconds"].max().round(2),
            "median gap %": g["gap_pct"].median().round(3),
            "p95 gap %": g["gap_pct"].quantile(0.95).round(3),
            "max gap %": g["gap_pct"].max().round(3),
        }
    ).reset_index()


def render(df: pd.DataFrame, note: str = "") -> str:
    """The summary as the results page: one row per (label, family, seeds, limit)."""
    table = summary(df).sort_values(["family", "seeds", "limit_s", "label"], kind="stable")
    return (
        "# AGH under a time limit\n\n"
        "`python benchmarks/agh_time_limit.py [--label L --append]`, one process, 1 solver thread. "
        "Gap: to the best bound known for the seed (`results/bench.csv`, `results/holdout/bench.csv`).\n\n"
        + (note + "\n\n" if note else "")
        + markdown_table(table)
        + "\n"
    )


def existing_note(page: Path) -> str:
    """The note paragraph of a page :func:`render` wrote ("" if none), so that a rerun keeps it."""
    if not page.exists():
        return ""
    paragraphs = page.read_text().split("\n\n")[2:]  # after the title and the fixed paragraph
    note = []
    for p in paragraphs:
        if p.startswith("|"):  # the results table
            break
        note.append(p)
    return "\n\n".join(note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two seeds per row (a smoke run)")
    ap.add_argument("--label", default="shipped", help="the name of this version's rows")
    ap.add_argument("--out", type=Path, default=RESULTS / "agh_time_limit.md")
    ap.add_argument("--append", action="store_true", help="keep the other labels' rows of the existing CSV")
    ap.add_argument(
        "--note", default=None, help="a paragraph under the title (machine, date, versions); default: the page's own"
    )
    ap.add_argument("--families", default="", help="comma-separated families of PLAN to run (default: all)")
    args = ap.parse_args()
    families = {f for f in args.families.split(",") if f} or None
    unknown = (families or set()) - {f for f, _, _ in PLAN}
    if unknown:
        raise SystemExit(f"--families: not in this study's plan: {', '.join(sorted(unknown))}")
    df = run(args.quick, args.label, families)

    def rerun(old: pd.DataFrame) -> pd.Series:  # this label's rows of the families run now
        return (old.label == args.label) & (old.family.isin(families) if families else True)

    note = existing_note(args.out) if args.note is None else args.note
    print(write_labelled(df, args.out, lambda d: render(d, note), args.append, rerun))


if __name__ == "__main__":
    main()
