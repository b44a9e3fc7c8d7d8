"""Study: five more levers on AGH's speed and gaps (issue 14's targets), end to end.

Like ``polish_variants.py`` (whose harness runs it: ``run``, ``render``, ``main``), each variant swaps one piece of
:func:`planner.heuristics.methods.solve_agh` and the whole method runs, with and without a time
limit, so a variant also pays for what it does to the time left to the rest:

* ``shipped`` — AGH as it is;
* ``no GH starts`` — no greedy passes among the starts (the slope-scaling starts, RENS and the
  polishes only; where no slope start finds a plan the polish looks for one itself);
* ``twins in RENS`` — every RENS scope widened with its options' twins: the same model with the
  same eligible types and the same load per type (the same hardware and degrees) on other tiers
  (provider, region, spot), so the LP may rent the deployment where it is cheapest;
* ``MIR rows`` — the restricted models (RENS, the polishes) with one mixed-integer rounding row
  per pair whose type alone needs more than one replica: a = load[i,k]/U > 1 not integral,
  y[k] ≥ ⌈a⌉ − (a/f)·(1 − x[i,k]) with f = a − ⌊a⌋, the convex hull's facet of
  {a·x ≤ y, 0 ≤ x ≤ 1, y ∈ ℤ} (valid: the other types' loads are ≥ 0);
* ``scoped search`` — under a time limit, the local search over the options open in its start,
  their twins and each type's four cheapest, not the whole table (at fleet-200x40x40 one search
  took 1.5–3 s of a 5-s limit).

Gap: to the best bound known for the seed (``results/bench.csv``, ``results/holdout/bench.csv``).
Each seed's table is built once and every variant solves it in turn in the same process; timings
depend on the machine and its load: run it alone.

    python benchmarks/agh_levers.py [--quick]   # → benchmarks/results/agh_levers.md
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from polish_variants import main  # type: ignore[import-not-found]

import planner.heuristics.methods as agh
import planner.heuristics.polish as polish
from planner.heuristics.repair import cheapest_per_type
from planner.heuristics.search import local_search
from planner.heuristics.state import Data, State
from planner.heuristics.stopping import MaxRuntime
from planner.options import OptionTable
from planner.solvers.matrix import MatrixModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PLAN: list[tuple[str, list[int], list[float | None]]] = [
    ("table-50x20x20", list(range(20)), [1.0, None]),
    ("fleet-100x30x30", list(range(10)), [5.0, None]),
]


def twin_groups(data: Data) -> np.ndarray:
    """Per option, a group id shared by the options with its model, eligible types and loads."""
    K = data.K
    load = np.round(data.L[:, :K], 12)
    ids: dict[tuple[int, bytes, bytes], int] = {}
    out = np.empty(K, dtype=np.int64)
    for k in range(K):
        key = (int(data.model_of[k]), load[:, k].tobytes(), data.ok[:, k].tobytes())
        out[k] = ids.setdefault(key, len(ids))
    return out


_GROUPS: dict[int, tuple[Data, np.ndarray, set[int]]] = {}


def _groups(data: Data) -> tuple[np.ndarray, set[int]]:
    """(twin groups, each type's four cheapest options) of ``data``, once per table."""
    got = _GROUPS.get(id(data))
    if got is None or got[0] is not data:
        _GROUPS.clear()
        got = _GROUPS[id(data)] = (data, twin_groups(data), cheapest_per_type(data, 4))
    return got[1], got[2]


def twins_of(data: Data, options: set[int]) -> set[int]:
    gid = _groups(data)[0]
    if not options:
        return set()
    return {int(k) for k in np.flatnonzero(np.isin(gid, gid[sorted(options)]))}


def _twins_rens(original: Callable[..., State | None]) -> Callable[..., State | None]:
    def rens(data: Data, scope: set[int], time_limit: float) -> State | None:
        return original(data, set(scope) | twins_of(data, set(scope)), time_limit)

    return rens


def with_mir(mm: MatrixModel) -> MatrixModel:
    """``mm`` with the MIR rows (module docstring) appended."""
    U = mm.table.instance.max_utilization
    pos = np.full(len(mm.table.options), -1, dtype=np.int64)
    pos[mm.K] = np.arange(len(mm.K))
    a = mm.table.pair_arrays(mm.P)[1] / U
    whole = np.floor(a + 1e-9)
    f = a - whole
    sel = np.flatnonzero((a > 1.0) & (f > 1e-6))
    if not len(sel):
        return mm
    index = np.empty(2 * len(sel), dtype=np.int32)
    value = np.empty(2 * len(sel))
    index[0::2] = mm.col["y"].start + pos[mm.P[sel, 1]]
    value[0::2] = 1.0
    index[1::2] = mm.col["x"].start + sel
    value[1::2] = -a[sel] / f[sel]
    starts = np.concatenate([mm.starts, len(mm.index) + 2 * np.arange(len(sel))]).astype(np.int32)
    return replace(
        mm,
        starts=starts,
        index=np.concatenate([mm.index, index]),
        value=np.concatenate([mm.value, value]),
        row_lo=np.concatenate([mm.row_lo, whole[sel] + 1 - a[sel] / f[sel]]),
        row_hi=np.concatenate([mm.row_hi, np.full(len(sel), np.inf)]),
    )


def _mir_scoped(original: Callable[..., MatrixModel]) -> Callable[..., MatrixModel]:
    def scoped(table: OptionTable, scope: set[int], classes: np.ndarray | None = None) -> MatrixModel:
        return with_mir(original(table, scope, classes))

    return scoped


def restrict(data: Data, options: np.ndarray) -> Data:
    """``data`` over ``options`` only (and the unserved column); no TP upgrades (GH's, unused by
    the local search)."""
    cols = np.append(options, data.K)
    return replace(
        data,
        K=len(options),
        L=data.L[:, cols],
        D=data.D[:, cols],
        E=data.E[:, cols],
        ok=data.ok[:, cols],
        rental=data.rental[cols],
        storage=data.storage[cols],
        gpus=data.gpus[cols],
        tier=data.tier[cols],
        model_of=data.model_of[options],
        upgrades=tuple(() for _ in options),
    )


def _scoped_search(original: Callable[..., State]) -> Callable[..., State]:
    def search(s: State, max_rounds: int = 50, deadline: MaxRuntime | None = None) -> State:
        if deadline is None or not np.isfinite(deadline.seconds):
            return original(s, max_rounds=max_rounds, deadline=deadline)
        d = s.d
        used = {int(k) for k in np.flatnonzero(s.X[:, : d.K].sum(axis=0) > 0)}
        options = np.array(sorted(used | twins_of(d, used) | _groups(d)[1]), dtype=np.int64)
        cols = np.append(options, d.K)
        got = original(State(restrict(d, options), s.X[:, cols]), max_rounds=max_rounds, deadline=deadline)
        X = np.zeros_like(s.X)
        X[:, cols] = got.X
        return State(d, X)

    return search


VARIANTS: dict[str, list[tuple[object, str, object]]] = {
    "shipped": [],
    "no GH starts": [(agh, "orders", lambda data, seed, random_starts: [])],
    "twins in RENS": [(agh, "rens", _twins_rens(polish.rens))],
    "MIR rows": [(polish, "scoped_matrix", _mir_scoped(polish.scoped_matrix))],
    "scoped search": [(agh, "local_search", _scoped_search(local_search))],
}


if __name__ == "__main__":
    main(RESULTS / "agh_levers.md", __doc__, "# AGH levers, end to end", "benchmarks/agh_levers.py", PLAN, VARIANTS)
