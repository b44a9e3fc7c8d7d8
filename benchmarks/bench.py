"""Driver for `planner bench`: the issue's families, 10 seeds, all methods.

    python benchmarks/bench.py [--families table-20x20x20,table-50x20x20] [--seeds 10]

Writes benchmarks/results/bench.{csv,md} and the plots (see planner/bench.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from planner.bench import DEFAULT_METHODS, run, summary, with_gaps, write

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--families", default="table-5x5x5,table-10x10x10,table-20x20x20,table-50x20x20,model-6x6x10")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-from", type=int, default=0, help="first seed (seeds: seed-from .. seed-from+seeds-1)")
    ap.add_argument("--milp-time-limit", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--from-csv", type=Path, nargs="*", help="merge these bench.csv files instead of running")
    ap.add_argument("--note", default="", help="a line for bench.md under the machine line")
    args = ap.parse_args()
    if args.from_csv:
        df = pd.concat([pd.read_csv(p) for p in args.from_csv], ignore_index=True)
        df = df.drop(columns=["best_bound", "gap"]).drop_duplicates(["family", "seed", "method"], keep="last")
        best = df.groupby(["family", "seed"])["bound"].max().rename("best_bound")
        df = with_gaps(df.join(best, on=["family", "seed"]))
    else:
        seeds = range(args.seed_from, args.seed_from + args.seeds)
        df = run(args.families.split(","), args.methods.split(","), seeds, args.milp_time_limit)
    for p in write(df, args.out, args.note):
        print("wrote", p)
    print(summary(df).to_string(index=False))


if __name__ == "__main__":
    main()
