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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner.checker import check_plan
from planner.fileio import write_atomic, write_atomic_bytes
from planner.gcpause import freeze_heap
from planner.generate import paper_instance
from planner.loader import load_instance_data
from planner.options import OptionTable, build_option_table
from planner.plan import Plan
from planner.solvers import solve


@dataclass(frozen=True)
class Family:
    name: str
    types: int
    models: int
    tiers: int
    mode: str = "table"
    fleet: bool = False  # tiers as GPU × provider × region × on-demand|spot (paper_instance(fleet=True))
    milp_backend: str = "highs"
    methods: tuple[str, ...] | None = None  # None: every method asked for

    @property
    def size(self) -> int:
        return self.types * self.models * self.tiers


# At fleet scale the cold MILP found no plan within 60 s (fleet-100x30x30 seed 0), so the
# exact method runs from AGH's plan ("milp-warm") and reports its bound and gap at the limit.
FLEET_METHODS = ("milp-warm", "gh", "agh")

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("table-5x5x5", 5, 5, 5),
        Family("table-10x10x10", 10, 10, 10),
        Family("table-20x20x20", 20, 20, 20),
        Family("table-50x20x20", 50, 20, 20),
        Family("model-6x6x10", 6, 6, 10, "model"),
        # Fleet scale: the Pyomo build alone would take minutes, so the MILP is the same model
        # built as arrays (milp_method._solve_arrays); the baselines (restricted MILPs through
        # Pyomo) are left out.
        Family("fleet-100x30x30", 100, 30, 30, fleet=True, milp_backend="highs-arrays", methods=FLEET_METHODS),
        Family("fleet-200x40x40", 200, 40, 40, fleet=True, milp_backend="highs-arrays", methods=FLEET_METHODS),
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
    """One row per (family, seed, method) run; ``progress``: a bar on stderr if it is a terminal.

    Each (family, seed) instance is one task of the executor in force (:mod:`planner.executor`:
    in process, a process pool, or Ray), its methods run one after the other in it, and the rows
    come back in (family, seed, method) order whichever executor ran them. Solver seconds are
    measured inside the task: with several tasks per machine they share its cores (each solver
    runs one thread)."""
    from planner import executor
    from planner.progress import Steps
    from planner.progress import progress as display

    jobs = [(f, s, tuple(methods), milp_time_limit) for f in families for s in seeds]
    shown = display("bench", total=len(jobs))
    with shown if progress else contextlib.nullcontext(Steps(None, None, "")) as bar:
        parts = executor.current().map(_bench_instance, jobs, [f"{f} seed {s}" for f, s, *_ in jobs], bar.task_done)
    df = pd.DataFrame([row for rows in parts for row in rows])
    best = df.groupby(["family", "seed"])["bound"].max().rename("best_bound")
    return with_gaps(df.join(best, on=["family", "seed"]))


def _bench_instance(job: tuple[str, int, tuple[str, ...], float]) -> list[dict[str, Any]]:
    """The rows of one (family, seed): generate, load and build its table, then every method."""
    name, seed, methods, milp_time_limit = job
    fam = FAMILIES[name]
    rows = []
    inst, table, (t_gen, t_load, t_table) = timed_instance(fam, seed)
    t_model = _model_seconds(table, fam.milp_backend)
    agh: Plan | None = None  # one AGH run per instance: its own row and milp-warm's start
    base = instance_row(fam, seed, table, t_gen, t_load, t_table, t_model)
    for method in methods:
        if fam.methods is not None and method not in fam.methods:
            continue
        kw: dict[str, object] = {"seed": seed}
        if method in ("milp", "milp-warm"):
            kw["time_limit"] = milp_time_limit
            kw["backend"] = fam.milp_backend
        if method in ("agh", "milp-warm") and agh is None:
            agh = solve(inst, "agh", table=table, seed=seed)
        if method == "milp-warm":
            # The MILP from AGH's plan as its first incumbent; its seconds include AGH's.
            assert agh is not None
            plan = solve(inst, "milp", table=table, warm_start=agh, **kw)
            plan = plan.model_copy(update={"solve_seconds": plan.solve_seconds + agh.solve_seconds})
        elif method == "agh":
            assert agh is not None
            plan = agh
        else:
            plan = solve(inst, method, table=table, **kw)
        rows.append({**base, **plan_row(inst, table, method, plan)})
    return rows


def with_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """gap = (objective − best bound) / objective; none where no method proved a bound above 0
    (a MILP stopped before its root LP reports 0, which would read as a 100% gap)."""
    bound = df["best_bound"].where(df["best_bound"] > 0)
    df["gap"] = (df["objective"] - bound) / df["objective"]
    return df


def instance_row(
    fam: Family, seed: int, table: OptionTable, t_gen: float, t_load: float, t_table: float, t_model: float
) -> dict[str, Any]:
    """The columns of a bench row that describe the instance and its phases."""
    return {
        "family": fam.name,
        "size": fam.size,
        "types": fam.types,
        "models": fam.models,
        "tiers": fam.tiers,
        "seed": seed,
        "generate_seconds": t_gen,
        "load_seconds": t_load,
        "table_seconds": t_table,
        "model_seconds": t_model,
        "eligible_pairs": len(table.pairs),
    }


def plan_row(inst: Any, table: OptionTable, method: str, plan: Plan) -> dict[str, Any]:
    """The columns of a bench row that describe one method's plan (checked)."""
    return {
        "method": method,
        "status": plan.status,
        "objective": plan.objective,
        "bound": plan.bound,
        "seconds": plan.solve_seconds,
        "checker_ok": check_plan(inst, plan, table).ok if plan.has_solution else None,
    }


def timed_instance(fam: Family, seed: int) -> tuple[Any, OptionTable, tuple[float, float, float]]:
    """(instance, option table, (generate, load, table seconds)) of a family's seed."""
    t0 = time.perf_counter()
    doc = paper_instance(fam.types, fam.models, fam.tiers, seed, mode=fam.mode, fleet=fam.fleet)
    t1 = time.perf_counter()
    inst = load_instance_data(doc, f"{doc['name']}.yaml")
    t2 = time.perf_counter()
    table = build_option_table(inst)
    t3 = time.perf_counter()
    # What `planner solve` does after its table (planner.gcpause.freeze_heap): the solve then does
    # not pay for walks over the build's objects (fleet-200 seed 0: AGH's arrays 2.9 -> 0.24 s).
    freeze_heap()
    return inst, table, (t1 - t0, t2 - t1, t3 - t2)


def _model_seconds(table: object, backend: str) -> float:
    """Seconds to build the MILP (measured on its own, beside the solve that builds it again)."""
    from planner.solvers.matrix import build_matrix, supported
    from planner.solvers.milp import build_model

    t0 = time.perf_counter()
    if backend == "highs-arrays" and supported(table):  # type: ignore[arg-type]
        build_matrix(table)  # type: ignore[arg-type]
    else:
        build_model(table)  # type: ignore[arg-type]
    return time.perf_counter() - t0


def phases(df: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per phase and family: generate, load, option table, MILP build, solves."""
    per_instance = df.groupby(["family", "seed"]).first()
    cols = ["generate_seconds", "load_seconds", "table_seconds", "model_seconds"]
    out = per_instance.groupby("family")[cols].median()
    for method in ("milp", "milp-warm", "gh", "agh"):
        sub = df[df["method"] == method]
        if len(sub):
            out[f"{method} solve s"] = sub.groupby("family")["seconds"].median()
    out["eligible pairs"] = per_instance.groupby("family")["eligible_pairs"].median()
    return out.reset_index()


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


def write_labelled(
    df: pd.DataFrame,
    out: Path,
    render: Callable[[pd.DataFrame], str],
    append: bool = False,
    replaces: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> str:
    """A study's rows (a ``label`` column names the version) to ``out`` (Markdown, from
    ``render``) and beside it as CSV, both atomically; the page's text. With ``append`` the
    existing CSV's rows are kept except those ``replaces`` marks (default: this run's labels),
    so two versions measured side by side share one page."""
    csv = out.with_suffix(".csv")
    if append and csv.exists():
        old = pd.read_csv(csv)
        drop = old.label.isin(df.label.unique()) if replaces is None else replaces(old)
        df = pd.concat([old[~drop], df], ignore_index=True)
    text = render(df)
    write_atomic(out, text)
    write_atomic(csv, df.to_csv(index=False))
    return text


def markdown_table(table: pd.DataFrame) -> str:
    """A results table as Markdown: floats to three decimals, NaN as "-"."""
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
    """Median gap and seconds against instance size, one line per method (log-log); a plot with
    no value to draw (no bound proved: heuristics alone) is not written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, label, fname in (
        ("gap", "gap to best proven bound", "bench_gap.png"),
        ("seconds", "solve seconds", "bench_runtime.png"),
    ):
        lines = []
        for method, sub in df.groupby("method"):
            med = sub.groupby("size")[metric].median().dropna()
            vals = med.clip(lower=1e-6) if metric == "gap" else med[med > 0]
            if not vals.empty:
                lines.append((str(method), vals))
        if not lines:  # e.g. heuristics alone: no method proved a bound, so there is no gap
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, vals in lines:
            ax.plot(vals.index, vals.values, marker="o", label=method)
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
        markdown_table(summary(df)),
        "",
        "Median seconds per phase (one instance: generate the document, load it, build the option "
        "table, build the MILP on its own; then each method's solve, which includes its own build):",
        "",
        markdown_table(phases(df)) if "model_seconds" in df else "",
        "",
    ]
    write_atomic(md, "\n".join(text))
    return [csv, md, *plots(df, out_dir)]
