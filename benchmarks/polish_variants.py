"""Study: AGH end to end with other restricted solves in place of its polish (issue 14's targets).

``polish_study.py`` hands the same starts to each candidate polish; this one runs the whole of
:func:`planner.heuristics.methods.solve_agh`, with and without a time limit, with one change at a
time swapped in, so each variant also pays for what it does to the time left to the rest:

* ``shipped`` — AGH as it is;
* ``box`` — in place of each polish, the restricted MILP with every replica count boxed to the
  incumbent's ± 1 (an option the incumbent leaves closed may open one replica), started from the
  incumbent and re-centred on each better answer until one brings nothing: a proximity search
  that keeps HiGHS to small moves of the counts, which LP moves do not find;
* ``iterated rens`` — in place of each polish, :func:`planner.heuristics.polish.rens` over the
  incumbent's options, each type's two cheapest and the open options' siblings, then AGH's local
  search, again while it improves;
* ``no route links`` — every restricted model (RENS, the polishes) without the link_route rows
  (x[i,k] ≤ z[k], one per pair: implied at integrality, ~95% of a polish's rows at fleet scale);
* ``no route links > 5k`` — the same only for models above ``POLISH_SMALL`` columns (where the
  polish runs HiGHS's presolve); shipped since a976828 (``polish.ROUTE_LINKS_MAX``), so from then
  on the same code as ``shipped``;
* ``small first scope`` — the first polish over the best start's options, each type's two
  cheapest and their siblings, instead of the best four starts and the 40 options the fluid
  rounds used most.

Gap: to the best bound known for the seed (``results/bench.csv``). Each seed's table is built
once and every variant solves it in turn in the same process (the heap frozen first, as
``planner solve`` does), so machine drift hits every variant alike; timings still depend on the
machine and its load: run it alone.

    python benchmarks/polish_variants.py [--quick]   # → benchmarks/results/polish_variants.md
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from agh_time_limit import seed_tables  # type: ignore[import-not-found]

import planner.heuristics.methods as agh
import planner.heuristics.polish as polish
from planner.bench import markdown_table
from planner.fileio import write_atomic
from planner.heuristics.search import local_search
from planner.heuristics.state import Data, State, state_of
from planner.heuristics.stopping import MaxRuntime
from planner.options import OptionTable
from planner.solvers.matrix import MatrixModel, build_matrix

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# (family, seeds, time limits; None: AGH's own work limits)
PLAN: list[tuple[str, list[int], list[float | None]]] = [
    ("table-50x20x20", list(range(10)), [1.0, None]),
    ("fleet-100x30x30", list(range(5)), [5.0, None]),
]


def _around(data: Data, best: State) -> set[int]:
    """AGH's second-round scope (methods._polish_around): ``best``'s options, each type's two
    cheapest and the open options' siblings."""
    return polish.scope_of(data, [best], agh._around(data, best))


def box_polish(data: Data, states: list[State], extra: set[int] | None = None, **kw: object) -> State | None:
    """The scope's MILP with y boxed to the incumbent ± 1, re-centred while it improves."""
    if not states:
        return None
    clock = MaxRuntime(float(kw.get("time_limit", 10.0)))  # type: ignore[arg-type]
    mm = polish.scoped_matrix(data.table, polish.scope_of(data, states, extra))
    best = min(states, key=lambda s: s.cost)
    cy, cz = mm.col["y"], mm.col["z"]
    while not clock.passed:
        v = mm.start_of(best.y, best.X)
        lb, ub = mm.lb.copy(), mm.ub.copy()
        lb[cy] = np.maximum(0.0, v[cy] - 1)
        ub[cy] = np.minimum(mm.ub[cy], v[cy] + 1)
        ub[cz] = np.minimum(mm.ub[cz], (ub[cy] > 0).astype(float))
        res = mm.solve(
            time_limit=clock.left(),
            gap=polish.POLISH_GAP,
            improving_limit=2,
            start=v,
            options=polish.POLISH_HIGHS,
            bounds=(lb, ub),
        )
        got = None if res.values is None else state_of(data, mm.routing(res.values))
        if got is None or got.cost >= best.cost * (1 - 1e-6):
            break
        best = got
    return best


def rens_polish(data: Data, states: list[State], extra: set[int] | None = None, **kw: object) -> State | None:
    """RENS around the incumbent, then the local search, while it improves."""
    if not states:
        return None
    clock = MaxRuntime(float(kw.get("time_limit", 10.0)))  # type: ignore[arg-type]
    best = min(states, key=lambda s: s.cost)
    while not clock.passed:
        got = polish.rens(data, _around(data, best), clock.left())
        got = None if got is None else local_search(got, deadline=clock)
        if got is None or got.cost >= best.cost * (1 - 1e-6):
            break
        best = got
    return best


def _no_links(only_big: bool) -> Callable[..., MatrixModel]:
    def scoped(table: OptionTable, scope: set[int], classes: np.ndarray | None = None) -> MatrixModel:
        opts = np.array(sorted(scope), dtype=np.int64)
        links = {"route_links_max": polish.POLISH_SMALL} if only_big else {"route_links": False}
        return build_matrix(table, options=opts, covers=polish.RESTRICTED_COVERS, classes=classes, **links)  # type: ignore[arg-type]

    return scoped


def _small_first(found: list[State], touched: object) -> tuple[list[State], set[int]]:
    if not found:
        return found, set()
    return found[:1], agh._around(found[0].d, found[0])


# variant -> (module, attribute, replacement)
VARIANTS: dict[str, list[tuple[object, str, object]]] = {
    "shipped": [],
    "box": [(agh, "polish_restricted", box_polish)],
    "iterated rens": [(agh, "polish_restricted", rens_polish)],
    "no route links": [(polish, "scoped_matrix", _no_links(False))],
    "no route links > 5k": [(polish, "scoped_matrix", _no_links(True))],
    "small first scope": [(agh, "polish_scope", _small_first)],
}


@contextlib.contextmanager
def patched(changes: list[tuple[object, str, object]]) -> Iterator[None]:
    old = [(m, a, getattr(m, a)) for m, a, _ in changes]
    try:
        for m, a, v in changes:
            setattr(m, a, v)
        yield
    finally:
        for m, a, v in old:
            setattr(m, a, v)


def run(
    quick: bool,
    families: set[str] | None = None,
    plan: list[tuple[str, list[int], list[float | None]]] = PLAN,
    variants: dict[str, list[tuple[object, str, object]]] | None = None,
) -> pd.DataFrame:
    """Every variant of ``variants`` (default: VARIANTS) on every seed and limit of ``plan``; gaps to
    the best bound known for the seed (:func:`agh_time_limit.bounds`)."""
    rows = []
    for fam, _, seed, bound, table, limits in seed_tables(plan, quick, families):
        for limit in limits:
            for name, changes in (VARIANTS if variants is None else variants).items():
                with patched(changes):
                    t0 = time.perf_counter()
                    plan_ = agh.solve_agh(table, seed=seed, time_limit=limit)
                    secs = time.perf_counter() - t0
                gap = np.nan if plan_.objective is None else (plan_.objective - bound) / plan_.objective * 100
                lim = "none" if limit is None else f"{limit:g}"
                row = {"family": fam, "seed": seed, "limit_s": lim, "variant": name}
                rows.append({**row, "seconds": secs, "gap_pct": gap})
                print(f"{fam} seed {seed} limit {lim} {name:20s} {secs:6.2f} s  gap {gap:6.3f}%", flush=True)
    return pd.DataFrame(rows)


def render(
    df: pd.DataFrame,
    note: str = "",
    doc: str = __doc__ or "",
    title: str = "# AGH with other polishes, end to end",
    script: str = "benchmarks/polish_variants.py",
) -> str:
    """The results as markdown: the docstring's middle paragraphs, one row per (family, limit,
    variant), then ``note``."""
    g = df.groupby(["family", "limit_s", "variant"], sort=False)
    table = pd.DataFrame(
        {
            "runs": g.size(),
            "median s": g["seconds"].median().round(2),
            "max s": g["seconds"].max().round(2),
            "median gap %": g["gap_pct"].median().round(3),
            "mean gap %": g["gap_pct"].mean().round(3),
            "p95 gap %": g["gap_pct"].quantile(0.95).round(3),
            "max gap %": g["gap_pct"].max().round(3),
        }
    ).reset_index()
    return (
        title
        + "\n\n"
        + "\n\n".join(doc.split("\n\n")[1:4])
        + f"\n\n`python {script}`, one process, 1 solver thread.\n\n"
        + markdown_table(table)
        + "\n"
        + ("\n" + note + "\n" if note else "")
    )


def main(
    out: Path = RESULTS / "polish_variants.md",
    doc: str = __doc__ or "",
    title: str = "# AGH with other polishes, end to end",
    script: str = "benchmarks/polish_variants.py",
    plan: list[tuple[str, list[int], list[float | None]]] = PLAN,
    variants: dict[str, list[tuple[object, str, object]]] | None = None,
) -> None:
    """The command line of this study, and of the studies built on its harness (agh_levers.py)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two seeds per family (a smoke run)")
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--note", default="", help="a paragraph under the table (machine, date, findings)")
    ap.add_argument("--from-csv", type=Path, help="render this run's CSV again instead of running")
    ap.add_argument("--families", default="", help="comma-separated families of the plan to run (default: all)")
    args = ap.parse_args()
    if args.from_csv is not None:
        df = pd.read_csv(args.from_csv, dtype={"limit_s": str})
    else:
        df = run(args.quick, {f for f in args.families.split(",") if f} or None, plan, variants)
        write_atomic(args.out.with_suffix(".csv"), df.to_csv(index=False))
    text = render(df, args.note, doc, title, script)
    write_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
