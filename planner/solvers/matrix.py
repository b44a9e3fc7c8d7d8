r"""The exact model of :mod:`planner.solvers.milp` as sparse arrays, handed to HiGHS directly.

Why a second form: Pyomo spends ~20 µs per variable and row building and translating a model. At
fleet scale (200 types × 40 models × 40 tiers: ~10⁶ eligible pairs) that is minutes before HiGHS
starts, where the heuristics' feasibility repair (:mod:`planner.heuristics.repair`) needs the LP
relaxation in seconds. This module writes the same families from the same
:class:`~planner.options.OptionTable` coefficients with numpy, one vectorised block per family:

==================  ======================================================  ============
family              row (index set)                                          units
==================  ======================================================  ============
coverage[i]         Σ_{k:(i,k)∈P} x[i,k] + u[i] = 1            (i ∈ I)       fraction
capacity[k]         Σ_i load[i,k]·x[i,k] − U·y[k] ≤ 0          (k ∈ K)       replicas
accuracy[i]         Σ_k e[i,k]·x[i,k] ≤ ε_i                     (i limited)   error rate
open_cover[i]       Σ_{k ∈ A_i} z[k] ≥ 1                        (ζ_i < 1)     options
availability[g]     Σ_{k on g} tp·pp·y[k] ≤ available_g         (g limited)   GPUs
budget              Σ rental[k]·y[k] + storage[k]·z[k] ≤ B                    $ / period
link_upper[k]       y[k] − M_k·z[k] ≤ 0                        (k ∈ K)       replicas
link_lower[k]       z[k] − y[k] ≤ 0                            (k ∈ K)
link_route[i,k]     x[i,k] − z[k] ≤ 0                          ((i,k) ∈ P)   fraction
objective           Σ rental·y + Σ storage·z + Σ delay·x + Σ unserved·u       $ / period
==================  ======================================================  ============

(A_i: i's options with e[i,k]·(1 − ζ_i) ≤ ε_i; :func:`planner.solvers.milp._open_covers` says why
the rows are valid), with the same big-M (:func:`planner.solvers.milp.big_m`) and the same dominance pruning
(:func:`planner.solvers.milp.dominated`) as the Pyomo model; ``tests/test_solvers_scale.py``
asserts equal optima of both forms on seeded instances. Limits: no shared-pool rows (attainment
tables with several TPOT limits on one option) and no split prefill/decode pairs
(:mod:`planner.disaggregation`): :func:`supported` says so and callers use the Pyomo model
there. Columns are laid out y (K), z (K), x (P), u (I).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from planner.options import Option, OptionTable
from planner.solvers.backends import BackendResult, SolveOptions, solve_arrays
from planner.solvers.milp import COVER_TOL, big_m, dominated


def supported(table: OptionTable) -> bool:
    """Can the matrix form state this table's model exactly (no shared-pool rows, no split pairs)?"""
    return not table.tight_load and not table.split


@dataclass
class MatrixModel:
    """The model's arrays (module docstring); build with :func:`build_matrix`."""

    table: OptionTable
    types: np.ndarray  # I
    K: np.ndarray  # option indices in the model
    P: np.ndarray  # (n_pairs, 2): (type, option) indices
    cost: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    integer: np.ndarray  # column indices that are integer (y, z)
    starts: np.ndarray  # CSR rows
    index: np.ndarray
    value: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray
    seconds: float = 0.0
    col: dict[str, slice] = field(default_factory=dict)
    # Twin routing (build_matrix's ``classes``): the class of each option of K (positions into
    # K's classes), or None where every option routes on its own. With classes, P holds one
    # pair per (type, class), on the class's first option.
    cls: np.ndarray | None = None

    @property
    def columns(self) -> int:
        return len(self.cost)

    @property
    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """CSR rows (starts, index, value, lower, upper), as HiGHS takes them."""
        return (self.starts, self.index, self.value, self.row_lo, self.row_hi)

    def solve(
        self,
        *,
        relax: bool = False,
        time_limit: float | None = None,
        gap: float = 1e-6,
        improving_limit: int | None = None,
        node_limit: int | None = None,
        start: np.ndarray | None = None,
        threads: int = 1,
        options: dict[str, object] | None = None,
        bounds: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> BackendResult:
        """HiGHS on the arrays (:func:`planner.solvers.backends.solve_arrays`): the LP relaxation
        when ``relax``; ``values`` holds the column values of the solution found. ``bounds``
        (lower, upper per column) replace the model's own: a neighbourhood of it."""
        opts = SolveOptions(
            time_limit=time_limit, gap=gap, threads=threads, node_limit=node_limit, improving_limit=improving_limit
        )
        lb, ub = (self.lb, self.ub) if bounds is None else bounds
        return solve_arrays(self.cost, lb, ub, self.integer, self.rows, opts, start, relax, options)

    def replicas(self, values: np.ndarray) -> np.ndarray:
        """y over the table's options (zeros outside K)."""
        y = np.zeros(len(self.table.options))
        y[self.K] = values[self.col["y"]]
        return y

    def routing(self, values: np.ndarray) -> np.ndarray:
        """X as the heuristics lay it out: (types × options+1), column K the unserved share.
        With twin classes, a class's share is split over its options in proportion to their
        replicas (each then carries at most its own capacity: the loads are the same)."""
        t = self.table
        X = np.zeros((len(t.type_ids), len(t.options) + 1))
        X[self.P[:, 0], self.P[:, 1]] = np.clip(values[self.col["x"]], 0.0, None)
        X[self.types, len(t.options)] = np.clip(values[self.col["u"]], 0.0, None)
        if self.cls is not None:
            y = np.clip(values[self.col["y"]], 0.0, None)
            for members in self.twins():
                rep, w = self.K[members[0]], y[members]
                if len(members) > 1 and w.sum() > 0:
                    X[:, self.K[members]] = np.outer(X[:, rep], w / w.sum())
        return X

    def twins(self) -> list[np.ndarray]:
        """Positions in K of each twin class's options, the class's first option first (a model
        built with classes)."""
        assert self.cls is not None
        order = np.argsort(self.cls, kind="stable")
        return np.split(order, np.flatnonzero(np.diff(self.cls[order])) + 1)

    def start_of(self, y: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Column values of a solution given as y (over the table's options) and X (as :meth:`routing`)."""
        v = np.zeros(self.columns)
        v[self.col["y"]] = y[self.K]
        v[self.col["z"]] = (y[self.K] > 0).astype(float)
        if self.cls is None:
            v[self.col["x"]] = X[self.P[:, 0], self.P[:, 1]]
        else:  # a class's share: the sum over its options
            Xc = np.zeros((X.shape[0], int(self.cls.max()) + 1 if len(self.cls) else 0))
            np.add.at(Xc.T, self.cls, X[:, self.K].T)
            pos = np.full(len(self.table.options), -1, dtype=np.int64)
            pos[self.K] = np.arange(len(self.K))
            v[self.col["x"]] = Xc[self.P[:, 0], self.cls[pos[self.P[:, 1]]]]
        v[self.col["u"]] = X[self.types, len(self.table.options)]
        return v


def build_matrix(
    table: OptionTable,
    options: np.ndarray | None = None,
    prune: bool = True,
    route_links: bool = True,
    covers: bool = True,
    route_links_max: int | None = None,
    classes: np.ndarray | None = None,
) -> MatrixModel:
    """The model over every type, restricted to ``options`` when given (a heuristic's scope; then
    nothing is pruned, as in the Pyomo model's scoped form). Without ``route_links`` the
    link_route rows are left out: implied at integrality (capacity forces y ≥ 1 where x > 0), they
    only tighten the LP relaxation's storage term, and they are one row per pair; with
    ``route_links_max`` they are left out of a model with more columns than that. ``covers=False``
    leaves out the open_cover rows (valid inequalities: only to measure what they do).

    ``classes`` (a label per table option; :func:`twin_classes`) routes twins together: options
    with one label must be twins (the same eligible types with the same load, delay and error:
    one model at one TP × PP on tiers of one GPU). Then x[i,c] is type i's share on twin class
    c, carried by the class's first option in P, and the per-option capacity and link_route rows
    become per class:

        capacity[c]      Σ_i load[i,c]·x[i,c] − U·Σ_{k∈c} y[k] ≤ 0        (c ∈ classes)
        link_route[i,c]  x[i,c] − Σ_{k∈c} z[k] ≤ 0                      ((i,c) pairs)
        open_cover[i]    Σ_{c: e[i,c]·(1−ζ_i) ≤ ε_i} Σ_{k∈c} z[k] ≥ 1

    An exact reformulation, not a relaxation: any routing over the twins sums to a class
    routing, and a class routing split over the twins in proportion to their replicas
    (:meth:`MatrixModel.routing`) loads each at most to its own capacity. It removes the
    symmetry of shares spread over identical tiers, and the x columns of every twin but one: at
    fleet-200x40x40, 5,239 options fall into 1,263 classes and 909,048 pairs into 216,551."""
    t0 = time.perf_counter()
    inst = table.instance
    nI = len(table.type_ids)
    types = np.arange(nI)
    pairs, load, delay, err = table.pair_arrays()
    keep = np.ones(len(pairs), dtype=bool)
    if options is not None:
        chosen = np.zeros(len(table.options), dtype=bool)
        chosen[np.asarray(options, dtype=np.int64)] = True
        keep = chosen[pairs[:, 1]]
    elif prune:
        drop = dominated(table, pairs, (load, delay))
        if drop:
            dropped = np.zeros(len(table.options), dtype=bool)
            dropped[list(drop)] = True
            keep = ~dropped[pairs[:, 1]]
    pairs, load, delay, err = pairs[keep], load[keep], delay[keep], err[keep]
    K = np.unique(pairs[:, 1])
    nK, nP = len(K), len(pairs)
    pos = np.full(len(table.options), -1, dtype=np.int64)
    pos[K] = np.arange(nK)
    kk = pos[pairs[:, 1]]  # option position of each pair
    M = np.asarray(big_m(table, range(nI)), dtype=float)[K]
    # Twin classes over K (identity without ``classes``); pairs kept on each class's first option.
    cls = np.arange(nK)
    if classes is not None:
        cls = np.unique(np.asarray(classes)[K], return_inverse=True)[1].ravel()
        if len(cls) == 0 or cls.max() + 1 == nK:
            classes, cls = None, np.arange(nK)  # no twins in K: the model as without classes, row for row
    nC = int(cls.max()) + 1 if nK else 0
    by_class = np.argsort(cls, kind="stable")  # positions in K, class by class, first option first
    size = np.bincount(cls, minlength=nC)
    first = np.cumsum(size) - size  # where each class starts in by_class
    if classes is not None:
        lead = kk == by_class[first][cls[kk]]
        pairs, load, delay, err, kk = pairs[lead], load[lead], delay[lead], err[lead], kk[lead]
        nP = len(pairs)
    kc = cls[kk]  # class of each pair
    ii = pairs[:, 0]

    def members(row: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, option position) for every option of class c[j], per entry j."""
        count = size[c]
        rows_ = np.repeat(row, count)
        offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        return rows_, by_class[np.repeat(first[c], count) + offset]

    y0, z0, x0, u0 = 0, nK, 2 * nK, 2 * nK + nP
    n = u0 + nI
    route_links = route_links and (route_links_max is None or n <= route_links_max)
    cost = np.concatenate([table.rental[K], table.storage[K], delay, table.unserved[types]]).astype(float)
    zeta = np.array([q.max_unserved for q in inst.query_types], dtype=float)
    lb = np.zeros(n)
    ub = np.concatenate([M, np.ones(nK), np.ones(nP), zeta])

    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row, col, coef) blocks
    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []
    r = 0

    def block(row: np.ndarray, col: np.ndarray, coef: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        nonlocal r
        rows.append((row + r, col, coef))
        lo.append(low)
        hi.append(high)
        r += len(low)

    # coverage[i]: Σ x + u = 1
    block(
        np.concatenate([ii, types]),
        np.concatenate([x0 + np.arange(nP), u0 + types]),
        np.ones(nP + nI),
        np.ones(nI),
        np.ones(nI),
    )
    # capacity[k]: Σ load·x − U·y ≤ 0 (per twin class c: Σ load·x − U·Σ_{k∈c} y ≤ 0)
    block(
        np.concatenate([kc, cls]),
        np.concatenate([x0 + np.arange(nP), y0 + np.arange(nK)]),
        np.concatenate([load, np.full(nK, -inst.max_utilization)]),
        np.full(nC, -np.inf),
        np.zeros(nC),
    )
    # accuracy[i]: Σ e·x ≤ ε_i, for limited types with pairs
    eps = np.array([np.inf if q.max_error is None else q.max_error for q in inst.query_types], dtype=float)
    limited = np.flatnonzero(np.isfinite(eps) & (np.bincount(ii, minlength=nI) > 0))
    if len(limited):
        rowof = np.full(nI, -1, dtype=np.int64)
        rowof[limited] = np.arange(len(limited))
        sel = rowof[ii] >= 0
        block(rowof[ii[sel]], x0 + np.flatnonzero(sel), err[sel], np.full(len(limited), -np.inf), eps[limited])
    # open_cover[i]: Σ_{k ∈ A_i} z ≥ 1, A_i = i's options with e·(1 − ζ_i) ≤ ε_i, for ζ_i < 1
    if covers and nP:
        sel = (zeta[ii] < 1.0) & (err * (1.0 - zeta[ii]) <= eps[ii] + COVER_TOL)
        covered = np.unique(ii[sel])
        if len(covered):
            rowof = np.full(nI, -1, dtype=np.int64)
            rowof[covered] = np.arange(len(covered))
            ones = np.ones(len(covered))
            row_, at = members(rowof[ii[sel]], kc[sel])
            block(row_, z0 + at, np.ones(len(at)), ones, np.full(len(covered), np.inf))
    # availability[g]: Σ gpus·y ≤ available_g
    tiers = [g for g, spec in enumerate(inst.gpus) if spec.available is not None]
    tier_of = table.tier[K]
    tiers = [g for g in tiers if np.any(tier_of == g)]
    if tiers:
        rowof = np.full(len(inst.gpus), -1, dtype=np.int64)
        rowof[tiers] = np.arange(len(tiers))
        sel = rowof[tier_of] >= 0
        block(
            rowof[tier_of[sel]],
            y0 + np.flatnonzero(sel),
            table.gpus[K][sel].astype(float),
            np.full(len(tiers), -np.inf),
            np.array([float(inst.gpus[g].available) for g in tiers]),  # type: ignore[arg-type]
        )
    # budget: Σ rental·y + storage·z ≤ B
    if inst.budget is not None and nK:
        block(
            np.zeros(2 * nK, dtype=np.int64),
            np.arange(2 * nK),
            np.concatenate([table.rental[K], table.storage[K]]).astype(float),
            np.array([-np.inf]),
            np.array([float(inst.budget)]),
        )
    # link_upper[k]: y − M·z ≤ 0;  link_lower[k]: z − y ≤ 0
    ar = np.arange(nK)
    block(
        np.concatenate([ar, ar]),
        np.concatenate([y0 + ar, z0 + ar]),
        np.concatenate([np.ones(nK), -M]),
        np.full(nK, -np.inf),
        np.zeros(nK),
    )
    block(
        np.concatenate([ar, ar]),
        np.concatenate([z0 + ar, y0 + ar]),
        np.concatenate([np.ones(nK), -np.ones(nK)]),
        np.full(nK, -np.inf),
        np.zeros(nK),
    )
    # link_route[i,k]: x − z ≤ 0
    ap = np.arange(nP)
    if route_links:
        row_, at = members(ap, kc)
        block(
            np.concatenate([ap, row_]),
            np.concatenate([x0 + ap, z0 + at]),
            np.concatenate([np.ones(nP), -np.ones(len(at))]),
            np.full(nP, -np.inf),
            np.zeros(nP),
        )

    row = np.concatenate([b[0] for b in rows])
    col = np.concatenate([b[1] for b in rows])
    coef = np.concatenate([b[2] for b in rows])
    order = np.lexsort((col, row))
    row, col, coef = row[order], col[order], coef[order]
    starts = np.searchsorted(row, np.arange(r)).astype(np.int32)
    return MatrixModel(
        table=table,
        types=types,
        K=K,
        P=pairs,
        cost=cost,
        lb=lb,
        ub=ub,
        integer=np.arange(2 * nK, dtype=np.int32),
        starts=starts,
        index=col.astype(np.int32),
        value=coef,
        row_lo=np.concatenate(lo),
        row_hi=np.concatenate(hi),
        seconds=time.perf_counter() - t0,
        col={"y": slice(y0, z0), "z": slice(z0, x0), "x": slice(x0, u0), "u": slice(u0, n)},
        cls=None if classes is None else cls,
    )


def twin_classes(table: OptionTable) -> np.ndarray:
    """A label per option of ``table``; options share one where they are twins (build_matrix's
    ``classes``): the same eligible types with the same load, delay and error, and the same
    split role and pair (none for colocated options). At fleet scale these are one model's
    deployment on one GPU across the tiers that rent it (provider, region, spot); table
    families have none."""
    P, load, delay, err = table.pair_arrays()
    order = np.lexsort((P[:, 0], P[:, 1]))
    edge = np.searchsorted(P[order, 1], np.arange(len(table.options) + 1))
    labels = np.empty(len(table.options), dtype=np.int64)
    seen: dict[tuple[object, ...], int] = {}
    for k, o in enumerate(table.options):
        at = order[edge[k] : edge[k + 1]]
        key = (o.role, o.pair, P[at, 0].tobytes(), load[at].tobytes(), delay[at].tobytes(), err[at].tobytes())
        labels[k] = seen.setdefault(key, len(seen))
    return labels


def solution_of(
    mm: MatrixModel, values: np.ndarray
) -> tuple[dict[Option, float], dict[str, dict[Option, float]], dict[str, float]]:
    """(replicas, routing, unserved) keyed as :func:`planner.plan.build_plan` takes them."""
    t = mm.table
    y = values[mm.col["y"]]
    x = values[mm.col["x"]]
    u = values[mm.col["u"]]
    replicas = {t.options[int(k)]: float(v) for k, v in zip(mm.K, y, strict=True)}
    routing: dict[str, dict[Option, float]] = {tid: {} for tid in t.type_ids}
    if mm.cls is not None:  # twin classes: each class's share split over its options
        X = mm.routing(values)
        P = np.argwhere(X[:, : len(t.options)] > 0)
        x = X[P[:, 0], P[:, 1]]
    else:
        P = mm.P
    for (i, k), v in zip(P, x, strict=True):
        if v > 0:
            routing[t.type_ids[int(i)]][t.options[int(k)]] = float(v)
    unserved = {t.type_ids[int(i)]: float(v) for i, v in zip(mm.types, u, strict=True)}
    return replicas, routing, unserved
