"""Study: cheaper polishes for AGH than the restricted MILP (issue 14's 1-s target at 50×20×20).

AGH spends most of its time in the polish: HiGHS on the exact model restricted to ~40 options
(``planner/heuristics/polish.py``), twice. This study runs AGH's own starts
(:func:`planner.heuristics.methods.starts`) once per seed and hands the same starts and scope to
each candidate polish, every answer followed by AGH's local search:

* ``milp x2`` — AGH's polish as shipped (the restricted MILP, then again around its answer);
* ``milp x1`` — the first restricted MILP only;
* ``lp-ysearch`` — replicas y as the only decision, routing re-solved as an LP for each trial
  (HiGHS hot-started on bound changes): drop one replica where that pays, else swap one replica
  for one of another option, candidates ranked by the capacity rows' duals;
* ``lp-lns`` — the same with larger moves: take one replica (or all) from an option and let
  every other option grow continuously in the LP, round the growth up, trim it one by one;
* ``lp-dive`` — the scope's LP relaxation, rounding the replica count nearest to an integer
  and re-solving until every count is whole (rounding up where rounding down is infeasible);
* ``rens`` — :func:`planner.heuristics.polish.rens`: the scope's LP relaxation, then the
  restricted MILP with every replica count boxed between the floor and the ceiling of its LP
  value, so only the LP's fractional counts are decided;
* ``rens + milp`` — that answer, then AGH's second round (the restricted MILP around it);
* ``rens + milp, pruned pairs`` — the same, the second round with each type routable only to its
  PRUNE_KEEP options in scope cheapest at a full replica's price, its two of lowest error and
  those the start routes it to (a restricted MILP ~4× smaller: is HiGHS's root the cost?);
* ``rens + sub-MIP lns`` — RENS's answer, then LNS_ROUNDS sub-MIPs: the open options plus up to
  LNS_FREE scope options eligible for the types of one open option (drawn with a fixed seed),
  the open options outside that neighbourhood held at their replica counts, each sub-MIP from the
  incumbent with a node limit.

Gap: to the proven optimum of ``benchmarks/results/bench.csv`` (the MILP's bound). Seconds: the
polish (and its local search) alone, on the same machine, one process.

    python benchmarks/polish_study.py [--seeds 10]   # → benchmarks/results/polish_study.md
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from planner.bench import FAMILIES, timed_instance
from planner.fileio import write_atomic
from planner.heuristics.methods import POLISH_S, _polish_around, polish_scope, starts
from planner.heuristics.polish import polish, rens, scope_of, scoped_matrix
from planner.heuristics.repair import cheapest_per_type, siblings
from planner.heuristics.search import local_search
from planner.heuristics.state import Data, State, state_of
from planner.solvers.backends import load_arrays, new_highs
from planner.solvers.matrix import build_matrix

ROOT = Path(__file__).resolve().parents[1]
FAMILY = "table-50x20x20"
PRUNE_KEEP = 8
LNS_ROUNDS = 12
LNS_FREE = 8


class ScopeLP:
    """The exact model over ``scope`` as an LP in HiGHS, replicas y (and z) set by bounds."""

    def __init__(self, data: Data, scope: set[int]) -> None:
        import highspy

        self.kOptimal = highspy.HighsModelStatus.kOptimal
        self.mm = mm = build_matrix(data.table, options=np.array(sorted(scope), dtype=np.int64), route_links=False)
        self.nK = len(mm.K)
        self.h = h = new_highs()
        h.setOptionValue("presolve", "off")
        h.setOptionValue("threads", 1)
        load_arrays(h, mm.cost, mm.lb, mm.ub, mm.rows)
        self.cap_row = len(mm.types)  # the capacity rows follow the coverage rows
        self.M = mm.ub[: self.nK].copy()

    def bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """y in [lo, hi]; z fixed at 1 where lo > 0, at 0 where hi = 0, else free."""
        n = self.nK
        self.h.changeColsBounds(n, np.arange(n, dtype=np.int32), lo.astype(float), hi.astype(float))
        zlo, zhi = (lo > 0).astype(float), (hi > 0).astype(float)
        self.h.changeColsBounds(n, np.arange(n, 2 * n, dtype=np.int32), zlo, zhi)

    def solve(self) -> float:
        self.h.run()
        return self.h.getInfo().objective_function_value if self.h.getModelStatus() == self.kOptimal else np.inf

    def fixed(self, y: np.ndarray) -> float:
        self.bounds(y, y)
        return self.solve()

    def values(self) -> np.ndarray:
        return np.asarray(self.h.getSolution().col_value)

    def state(self, data: Data, y: np.ndarray | None = None) -> State | None:
        """The routing of the last solve (of the LP at replica counts y, when given) as a state."""
        if y is not None and not np.isfinite(self.fixed(y)):
            return None
        return state_of(data, self.mm.routing(self.values()))


def _limits_ok(data: Data, lp: ScopeLP, y: np.ndarray) -> bool:
    """Budget and GPU availability of replica counts y over the scope (the LP keeps the rest)."""
    K = lp.mm.K
    t = data.table
    if float(t.rental[K] @ y + t.storage[K] @ (y > 0)) > data.budget * (1 + 1e-12) + 1e-9:
        return False
    used = np.zeros(len(data.avail))
    np.add.at(used, data.tier[K], data.gpus[K] * y)
    return bool((used <= data.avail + 1e-9).all())


def _from(data: Data, scope: set[int], start: State) -> tuple[ScopeLP, np.ndarray, np.ndarray, np.ndarray, float]:
    """(LP, rental, storage, y, cost) over the scope, at the start's replica counts."""
    lp = ScopeLP(data, scope)
    y = start.y[lp.mm.K].astype(float)
    return lp, data.table.rental[lp.mm.K], data.table.storage[lp.mm.K], y, lp.fixed(y)


def _by_saving(y: np.ndarray, rent: np.ndarray, stor: np.ndarray) -> np.ndarray:
    """Open options, the largest saving of one replica less first."""
    opens = np.flatnonzero(y > 0)
    return opens[np.argsort(-(rent[opens] + stor[opens] * (y[opens] == 1)), kind="stable")]


def lp_ysearch(data: Data, scope: set[int], start: State, swaps: int = 4) -> State | None:
    lp, rent, stor, y, cur = _from(data, scope, start)
    for _ in range(30):
        improved = False
        for p in _by_saving(y, rent, stor):
            y[p] -= 1
            obj = lp.fixed(y) if _limits_ok(data, lp, y) else np.inf
            if obj < cur - 1e-7:
                cur, improved = obj, True
            else:
                y[p] += 1
        if not improved:  # one-for-one swaps, the targets ranked by their capacity duals
            lp.fixed(y)
            pi = np.abs(np.asarray(lp.h.getSolution().row_dual)[lp.cap_row : lp.cap_row + lp.nK])
            cost_in = rent + stor * (y == 0)
            rank = np.argsort(cost_in - data.umax * pi, kind="stable")  # one replica's estimated net cost
            for p in _by_saving(y, rent, stor):
                saving = rent[p] + stor[p] * (y[p] == 1)
                for q in [q for q in rank if q != p and cost_in[q] < saving - 1e-7][:swaps]:
                    y[p] -= 1
                    y[q] += 1
                    obj = lp.fixed(y) if _limits_ok(data, lp, y) else np.inf
                    if obj < cur - 1e-7:
                        cur, improved = obj, True
                        break
                    y[p] += 1
                    y[q] -= 1
                if improved:
                    break
        if not improved:
            break
    return lp.state(data, y)


def lp_lns(data: Data, scope: set[int], start: State) -> State | None:
    lp, rent, stor, y, cur = _from(data, scope, start)
    for _ in range(20):
        improved = False
        for p in _by_saving(y, rent, stor):
            for target in (y[p] - 1, 0.0) if y[p] > 1 else (0.0,):
                lo, hi = y.copy(), lp.M.copy()
                lo[p] = hi[p] = target
                lp.bounds(lo, hi)
                if lp.solve() >= cur - 1e-7:
                    continue
                y2 = np.maximum(y, np.ceil(lp.values()[: lp.nK] - 1e-6))
                y2[p] = target
                c2 = lp.fixed(y2) if _limits_ok(data, lp, y2) else np.inf
                for q in np.flatnonzero(y2 > y):  # trim the rounded-up growth
                    while np.isfinite(c2) and y2[q] > y[q]:
                        y2[q] -= 1
                        c3 = lp.fixed(y2)
                        if c3 < c2 - 1e-7:
                            c2 = c3
                        else:
                            y2[q] += 1
                            break
                if c2 < cur - 1e-7:
                    y, cur, improved = y2, c2, True
                    break
            if improved:
                break
        if not improved:
            break
    return lp.state(data, y)


def lp_dive(data: Data, scope: set[int], start: State) -> State | None:
    del start  # the dive starts from the LP relaxation, not from a plan
    lp = ScopeLP(data, scope)
    lo, hi = np.zeros(lp.nK), lp.M.copy()
    lp.bounds(lo, hi)
    if not np.isfinite(lp.solve()):
        return None
    for _ in range(4 * lp.nK + 10):
        y = lp.values()[: lp.nK]
        frac = y - np.floor(y + 1e-6)
        open_ = np.flatnonzero((frac > 1e-6) & (frac < 1 - 1e-6) & (lo < hi))
        if len(open_) == 0:
            break
        p = open_[np.argmin(np.minimum(frac[open_], 1 - frac[open_]))]
        down = frac[p] < 0.5
        lo2, hi2 = lo.copy(), hi.copy()
        if down:
            hi2[p] = np.floor(y[p] + 1e-6)
        else:
            lo2[p] = np.ceil(y[p] - 1e-6)
        lp.bounds(lo2, hi2)
        if not np.isfinite(lp.solve()):  # rounding down broke a limit: round up instead
            lo2, hi2 = lo.copy(), hi.copy()
            lo2[p] = np.ceil(y[p] - 1e-6)
            lp.bounds(lo2, hi2)
            if not np.isfinite(lp.solve()):
                return None
        lo, hi = lo2, hi2
    return lp.state(data, np.round(lp.values()[: lp.nK]))


def _rens(data: Data, scope: set[int], start: State) -> State | None:
    del start  # the box comes from the LP relaxation, not from a plan
    return rens(data, scope, POLISH_S)


def _rens_start(data: Data, first: list[State], extra: set[int]) -> tuple[State | None, State]:
    """RENS over the polish scope: (its answer, the better of it and the best start)."""
    got = rens(data, scope_of(data, first, extra), POLISH_S)
    return got, got if got is not None and got.cost < first[0].cost - 1e-9 else first[0]


def _rens_milp(data: Data, first: list[State], extra: set[int]) -> State | None:
    got, best = _rens_start(data, first, extra)
    again = _polish_around(data, best, POLISH_S, [])
    return again if again is not None else got


def _pruned(data: Data, scope: set[int], start: State) -> Data:
    """``data`` over a copy of its table whose pairs in ``scope`` are cut to each type's PRUNE_KEEP
    cheapest options at a full replica's price, its two of lowest error and those ``start`` uses."""
    S = np.array(sorted(scope))
    K = data.K
    price = ((data.rental[S] + data.storage[S]) / data.umax)[None, :] * data.L[:, S] + data.D[:, S]
    price = np.where(data.ok[:, S], price, np.inf)
    err = np.where(data.ok[:, S], data.E[:, S], np.inf)
    keep: set[tuple[int, int]] = set()
    for i in range(data.n):
        for j in [*np.argsort(price[i], kind="stable")[:PRUNE_KEEP], *np.argsort(err[i], kind="stable")[:2]]:
            if np.isfinite(price[i, j]):
                keep.add((i, int(S[j])))
        keep.update((i, int(k)) for k in np.flatnonzero(start.X[i, :K] > 1e-9))
    table = copy.copy(data.table)
    table.pairs = [(i, k) for i, k in data.table.pairs if k not in scope or (i, k) in keep]
    return dataclasses.replace(data, table=table)


def _rens_milp_pruned(data: Data, first: list[State], extra: set[int]) -> State | None:
    got, best = _rens_start(data, first, extra)
    scope = cheapest_per_type(data, 2) | siblings(data, best) | scope_of(data, [best])
    small = _pruned(data, scope, best)
    again = polish(small, [best], extra=scope, time_limit=POLISH_S)
    if again is None or again.cost >= best.cost - 1e-9:
        return got
    return state_of(data, again.X)  # back on the whole table's data


def _rens_lns(data: Data, first: list[State], extra: set[int]) -> State | None:
    scope = scope_of(data, first, extra)
    _, cur = _rens_start(data, first, extra)
    rng = np.random.default_rng(0)
    K = data.K
    for _ in range(LNS_ROUNDS):
        open_ = np.flatnonzero(cur.y[:K] > 0)
        k0 = int(rng.choice(open_))
        served = np.flatnonzero(cur.X[:, k0] > 1e-9)
        near = [int(k) for k in np.flatnonzero(data.ok[served, :K].any(axis=0)) if k in scope and k != k0]
        rng.shuffle(near)
        free = {k0, *near[: LNS_FREE - 1]}
        mm = scoped_matrix(data.table, set(open_.tolist()) | free)
        v = mm.start_of(cur.y, cur.X)
        held = ~np.isin(mm.K, list(free))
        lb, ub = mm.lb.copy(), mm.ub.copy()
        for c in ("y", "z"):
            lb[mm.col[c]][held] = ub[mm.col[c]][held] = v[mm.col[c]][held]
        res = mm.solve(gap=1e-4, node_limit=200, start=v, bounds=(lb, ub), time_limit=POLISH_S)
        if res.values is not None:
            nxt = state_of(data, mm.routing(res.values))
            if nxt.cost < cur.cost - 1e-9:
                cur = nxt
    return cur


def _milp(rounds: int) -> Callable[[Data, list[State], set[int]], State | None]:
    def run(data: Data, first: list[State], extra: set[int]) -> State | None:
        best = polish(data, first, extra=extra, time_limit=POLISH_S)
        if best is not None and rounds > 1:
            again = _polish_around(data, best, POLISH_S, [])
            best = again if again is not None else best
        return best

    return run


def _lp(fn: Callable[[Data, set[int], State], State | None]) -> Callable[[Data, list[State], set[int]], State | None]:
    def run(data: Data, first: list[State], extra: set[int]) -> State | None:
        return fn(data, scope_of(data, first, extra), first[0])

    return run


POLISHES = {
    "milp x2": _milp(2),
    "milp x1": _milp(1),
    "lp-ysearch": _lp(lp_ysearch),
    "lp-lns": _lp(lp_lns),
    "lp-dive": _lp(lp_dive),
    "rens": _lp(_rens),
    "rens + milp": _rens_milp,
    "rens + milp, pruned pairs": _rens_milp_pruned,
    "rens + sub-MIP lns": _rens_lns,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "polish_study.md")
    args = ap.parse_args()
    bench = pd.read_csv(ROOT / "benchmarks" / "results" / "bench.csv")
    optimum = bench[(bench.family == FAMILY) & (bench.method == "milp")].set_index("seed")["bound"]
    rows: list[dict[str, float]] = []
    skipped: list[int] = []
    for seed in range(args.seeds):
        _, table, _ = timed_instance(FAMILIES[FAMILY], seed)
        data = Data.from_table(table)
        t0 = time.perf_counter()
        found, touched, _, _ = starts(data, seed)
        t_starts = time.perf_counter() - t0
        if not found:  # every start stalled: AGH goes to the feasibility repair, not the polish
            skipped.append(seed)
            continue
        first, extra = polish_scope(found, touched)
        for name, fn in POLISHES.items():
            t = time.perf_counter()
            got = fn(data, first, extra)
            best = local_search(min([s for s in (got, found[0]) if s is not None], key=lambda s: s.cost))
            secs = time.perf_counter() - t
            gap = (best.cost - optimum[seed]) / best.cost
            rows.append({"seed": seed, "polish": name, "starts_s": t_starts, "polish_s": secs, "gap_pct": 100 * gap})
            print(f"seed {seed} {name:11s} {secs:6.2f} s  gap {100 * gap:6.2f}%", flush=True)
    df = pd.DataFrame(rows)
    g = df.groupby("polish", sort=False)
    table_md = pd.DataFrame(
        {
            "median polish s": g["polish_s"].median(),
            "p95 polish s": g["polish_s"].quantile(0.95),
            "median gap %": g["gap_pct"].median(),
            "p95 gap %": g["gap_pct"].quantile(0.95),
            "max gap %": g["gap_pct"].max(),
            "at optimum": g["gap_pct"].apply(lambda s: int((s <= 1e-4).sum())),
        }
    )
    lines = [
        f"# Polish study: {FAMILY}, {df.seed.nunique()} seeds",
        "",
        "`python benchmarks/polish_study.py` (one process, 1 solver thread). Same starts and scope for every",
        "polish; each answer then goes through AGH's local search. Gap to the MILP's proven optimum",
        f"(`bench.csv`). AGH's starts themselves: median {df.groupby('seed').starts_s.first().median():.2f} s."
        + (f" Seeds without a start (AGH repairs instead): {skipped}." if skipped else ""),
        "",
        "| polish | " + " | ".join(table_md.columns) + " |",
        "|---|" + "---|" * len(table_md.columns),
    ]
    for name, r in table_md.iterrows():
        cells = [f"{r[c]:.3f}" for c in table_md.columns[:-1]] + [f"{int(r['at optimum'])}/{df.seed.nunique()}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    write_atomic(args.out, "\n".join(lines) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
