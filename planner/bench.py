"""Exact-vs-heuristic benchmarks: methods × instance families × seeds.

Each (family, seed) instance comes from :func:`planner.generate.paper_instance`. Every method
solves it from the same option table; every plan is checked; the gap of a plan is measured to the
best proven lower bound any method reported for that instance (the MILP's, usually):

    gap = (objective − best_bound) / objective.

Outputs, in ``out_dir``: ``bench.csv`` (one row per run), ``bench.md`` (per family and method:
solved, median and p95 gap, median and p95 seconds) and two log-scale plots, gap and runtime
against instance size (types × models × tiers).
"""

from __future__ import annotations

import contextlib
import io
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from planner.checker import check_plan
from planner.fileio import write_atomic, write_atomic_bytes
from planner.generate import paper_instance
from planner.loader import load_instance_data
from planner.options import build_option_table
from planner.solvers import solve


@dataclass(frozen=True)
class Family:
    name: str
    types: int
    models: int
    tiers: int
    mode: str = "table"

    @property
    def size(self) -> int:
        return self.types * self.models * self.tiers


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("table-5x5x5", 5, 5, 5),
        Family("table-10x10x10", 10, 10, 10),
        Family("table-20x20x20", 20, 20, 20),
        Family("table-50x20x20", 50, 20, 20),
        Family("model-6x6x10", 6, 6, 10, "model"),
    )
}
DEFAULT_METHODS = ("milp", "gh", "agh", "cheapest-tier", "best-model", "melange")


def run(
    families: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    milp_time_limit: float = 60.0,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (family, seed, method) run; ``progress``: a bar on stderr if it is a terminal."""
    from planner.progress import Steps
    from planner.progress import progress as display

    rows = []
    jobs = [(FAMILIES[f], s) for f in families for s in seeds]
    shown = display("bench", total=len(jobs) * len(methods))
    with shown if progress else contextlib.nullcontext(Steps(None, None, "")) as bar:
        for fam, seed in jobs:
            doc = paper_instance(fam.types, fam.models, fam.tiers, seed, mode=fam.mode)
            inst = load_instance_data(doc, f"{doc['name']}.yaml")
            t0 = time.perf_counter()
            table = build_option_table(inst)
            t_table = time.perf_counter() - t0
            for method in methods:
                bar.update(f"{fam.name} seed {seed} {method}")
                kw: dict[str, object] = {"seed": seed}
                if method == "milp":
                    kw["time_limit"] = milp_time_limit
                plan = solve(inst, method, table=table, **kw)
                ok = check_plan(inst, plan, table).ok if plan.has_solution else None
                rows.append(
                    {
                        "family": fam.name,
                        "size": fam.size,
                        "types": fam.types,
                        "models": fam.models,
                        "tiers": fam.tiers,
                        "seed": seed,
                        "method": method,
                        "status": plan.status,
                        "objective": plan.objective,
                        "bound": plan.bound,
                        "seconds": plan.solve_seconds,
                        "table_seconds": t_table,
                        "checker_ok": ok,
                        "eligible_pairs": len(table.pairs),
                    }
                )
                bar.advance()
    df = pd.DataFrame(rows)
    best = df.groupby(["family", "seed"])["bound"].max().rename("best_bound")
    df = df.join(best, on=["family", "seed"])
    df["gap"] = (df["objective"] - df["best_bound"]) / df["objective"]
    return df


def summary(df: pd.DataFrame) -> pd.DataFrame:
    def p95(s: pd.Series) -> float:
        s = s.dropna()
        return float(np.percentile(s, 95)) if len(s) else math.nan

    g = df.groupby(["family", "method"], sort=False)
    return pd.DataFrame(
        {
            "runs": g.size(),
            "with plan": g["objective"].count(),
            "optimal": g["status"].apply(lambda s: int((s == "optimal").sum())),
            "median gap %": g["gap"].median() * 100,
            "p95 gap %": g["gap"].apply(p95) * 100,
            "median s": g["seconds"].median(),
            "p95 s": g["seconds"].apply(p95),
            "checker ok": g["checker_ok"].apply(lambda s: int(s.fillna(False).astype(bool).sum())),
        }
    ).reset_index()


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else ("-" if v != v else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, label, fname in (
        ("gap", "gap to best proven bound", "bench_gap.png"),
        ("seconds", "solve seconds", "bench_runtime.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, sub in df.groupby("method"):
            med = sub.groupby("size")[metric].median()
            vals = med.clip(lower=1e-6) if metric == "gap" else med
            ax.plot(vals.index, vals.values, marker="o", label=str(method))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("instance size: types × models × tiers")
        ax.set_ylabel(f"median {label}" + (" (floored at 1e-6)" if metric == "gap" else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / fname
        buf = io.BytesIO()  # rendered in memory, then written atomically like every output
        fig.savefig(buf, format="png", dpi=120)
        write_atomic_bytes(path, buf.getvalue())
        plt.close(fig)
        paths.append(path)
    return paths


def write(df: pd.DataFrame, out_dir: Path, note: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "bench.csv"
    write_atomic(csv, df.to_csv(index=False))
    md = out_dir / "bench.md"
    text = [
        "# Exact vs heuristic benchmark",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, 1 solver thread. "
        "Gap = (objective − best proven bound) / objective; seconds exclude building the option table.",
        note,
        "",
        _markdown(summary(df)),
        "",
    ]
    write_atomic(md, "\n".join(text))
    return [csv, md, *plots(df, out_dir)]
