r"""Slope-scaling starts for AGH: fluid routing that learns the fixed charges of replicas.

A replica is a fixed charge: an option carrying load ℓ costs rental·⌈ℓ/u⌉ + storage, far more
per unit when lightly used. Dynamic slope scaling (Kim & Pardalos, Oper. Res. Lett. 1999) prices
each option linearly at its *actual* average cost per unit of load from the previous round,

    s_k = (rental_k·⌈ℓ_k/u⌉ + storage_k) / ℓ_k          ($ per replica-load unit),

solves the linear problem with those prices, and repeats. Lightly used options look expensive and
lose their demand to well-filled ones, so demand pools on few deployments — what the exact optimum
does when each type's demand is a fraction of one replica.

With linear prices the problem splits per type i: min Σ_k c_ik x_k subject to Σ_k x_k = 1 − u,
Σ_k e_ik x_k ≤ ε_i, with c_ik = s_k·L[i,k] + D[i,k]. Its optimum mixes at most two options: the
segment of the lower convex hull of the points (e_ik, c_ik) at error ε_i (:func:`type_lp`). The
unserved share u is either 0 or ζ_i (an LP optimum sits at a bound), whichever costs less.

GPU availability enters as a price on over-used tiers that grows each round they are over.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from planner.heuristics.state import Data, State


def _pareto(e: np.ndarray, c: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both error and cost, by rising error."""
    order = idx[np.lexsort((c[idx], e[idx]))]
    best = np.minimum.accumulate(c[order])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = c[order][1:] < best[:-1] - 1e-15
    return order[keep]


def type_lp(
    c: np.ndarray, e: np.ndarray, ok: np.ndarray, eps: float, front: np.ndarray | None = None
) -> dict[int, float] | None:
    """min Σ c_k x_k s.t. Σ x_k = 1, Σ e_k x_k ≤ eps over eligible k; None when infeasible.

    ``front`` may pass the Pareto front (by rising error) when the caller computed it already.
    """
    if front is None:
        idx = np.flatnonzero(ok & np.isfinite(c))
        if len(idx) == 0:
            return None
        front = _pareto(e, c, idx)  # error rises, cost falls along the front
    if len(front) == 0:
        return None
    cheapest = int(front[-1])
    if e[cheapest] <= eps + 1e-12:
        return {cheapest: 1.0}
    if e[front[0]] > eps + 1e-12:
        return None
    # Lower convex hull of the front (monotone chain), then the segment that straddles eps.
    hull: list[int] = []
    for k in front:
        if hull and e[hull[-1]] >= e[k]:
            # The same error, and (on a Pareto front) a lower cost: the point before it is not on
            # the lower hull. The cross product below cannot drop the hull's first point, which
            # then won every limit at exactly its error over the cheaper one (a front by error,
            # then option index, as the slope starts took it until 2026-12-08).
            hull.pop()
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (e[b] - e[a]) * (c[k] - c[a]) - (c[b] - c[a]) * (e[k] - e[a])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(int(k))
    for a, b in itertools.pairwise(hull):
        if e[a] <= eps + 1e-12 <= e[b] + 1e-12:
            t = (eps - e[a]) / (e[b] - e[a]) if e[b] > e[a] else 0.0
            t = min(max(t, 0.0), 1.0)
            return {a: 1.0 - t, b: t} if t > 0 else {a: 1.0}
    return {int(hull[0]): 1.0}


@dataclass(frozen=True)
class ByModel:
    """A table's prices laid out model by model, for :func:`route`.

    An option's error on a type is its model's (``Data.E``), so on a type's Pareto front (rising
    error, falling cost) only each model's cheapest option can sit where the front's lower hull
    (:func:`type_lp`) is concerned, and the front over the table's models (40 at
    fleet-200x40x40) stands in for the one over its options (5,239 there). One reduction per
    round takes each model's least price on every type; the fronts of the types that mix two
    options (~140 of 200 there) were half of slope scaling's time over the options.
    """

    perm: np.ndarray  # (K,) options by model, rising index within a model (a stable sort)
    pos: np.ndarray  # (K,) where each option sits in ``perm``
    starts: np.ndarray  # (M,) where each model's options begin in ``perm``
    stops: np.ndarray  # (M,) ... and end
    L: np.ndarray  # (n, K) load in ``perm``'s order
    D: np.ndarray  # (n, K) delay in ``perm``'s order; inf where the pair is not eligible
    err: np.ndarray  # (n, M) error of each model on each type; inf where none of its options is eligible
    by_err: np.ndarray  # (n, M) each type's models by rising error, ties by model index

    @classmethod
    def of(cls, d: Data) -> ByModel:
        K = d.K
        perm = np.argsort(d.model_of, kind="stable")
        pos = np.empty(K, dtype=np.int64)
        pos[perm] = np.arange(K)
        _, starts = np.unique(d.model_of[perm], return_index=True)
        stops = np.append(starts[1:], K)
        ok = d.ok[:, :K][:, perm]
        err = np.minimum.reduceat(np.where(ok, d.E[:, :K][:, perm], math.inf), starts, axis=1)
        models = np.arange(len(starts))
        by_err = np.stack([np.lexsort((models, err[i])) for i in range(d.n)])
        D = np.where(ok, d.D[:, :K][:, perm], math.inf)
        return cls(perm, pos, starts, stops, d.L[:, :K][:, perm], D, err, by_err)

    def prices(self, slope: np.ndarray) -> np.ndarray:
        """(n, K) c[i,k] = slope_k·L[i,k] + D[i,k] in ``perm``'s order, inf where not eligible."""
        s = slope[self.perm]
        with np.errstate(invalid="ignore", over="ignore"):
            C = self.L * s[None, :]
            C += self.D  # L is 0 where the pair is not eligible, so the inf there stays ...
        if not np.isfinite(s).all():  # ... unless a slope is infinite (0·inf): never seen, but cheap to keep
            C[np.isinf(self.D)] = math.inf
        return C

    def first(self, C: np.ndarray, i: int, g: int, at_most: float) -> int:
        """The lowest-index option of model ``g`` whose price ``C[i]`` is at most ``at_most``."""
        a, b = self.starts[g], self.stops[g]
        return int(self.perm[a + int(np.argmax(C[i, a:b] <= at_most))])


def cheapest(bm: ByModel, C: np.ndarray, gmin: np.ndarray) -> np.ndarray:
    """Per type, the option of least price ``C``, ties (within 1e-15) to the lower error, then
    the lower index: the last point of its Pareto front; -1 where no price is finite."""
    cmin = gmin.min(axis=1)
    tie = np.isfinite(gmin) & (cmin[:, None] + 1e-15 >= gmin)
    e_tie = np.where(tie, bm.err, math.inf)
    cand = tie & (e_tie == e_tie.min(axis=1)[:, None])
    low = np.full(C.shape[0], -1, dtype=np.int64)
    for i in np.flatnonzero(np.isfinite(cmin)):
        low[i] = min(bm.first(C, int(i), int(g), cmin[i] + 1e-15) for g in np.flatnonzero(cand[i]))
    return low


def fronts(bm: ByModel, C: np.ndarray, gmin: np.ndarray, rows: np.ndarray) -> dict[int, tuple[np.ndarray, ...]]:
    """The Pareto fronts (rising error, falling price) of the types ``rows`` under prices ``C``,
    taken over the models: per type (prices, errors, models) of each model whose least price
    falls below every price before it, by rising error, then model index. Models of equal error
    may all sit on it, the cheapest last (:func:`type_lp`'s hull keeps that one). The options
    behind its points: :func:`option_at`."""
    order = bm.by_err[rows]
    G = np.take_along_axis(gmin[rows], order, axis=1)
    Es = np.take_along_axis(bm.err[rows], order, axis=1)
    keep = np.isfinite(G)
    run = np.minimum.accumulate(G, axis=1)
    keep[:, 1:] &= G[:, 1:] < run[:, :-1] - 1e-15
    return {i: (G[r, keep[r]], Es[r, keep[r]], order[r][keep[r]]) for r, i in enumerate(rows.tolist()) if keep[r].any()}


def option_at(bm: ByModel, C: np.ndarray, gmin: np.ndarray, i: int, point: int) -> int:
    """The option behind a point (model) of :func:`fronts`: the lowest index at its least price
    among the models of equal error and least price."""
    v, e = gmin[i, point], bm.err[i, point]
    return min(bm.first(C, i, int(g), v) for g in np.flatnonzero((gmin[i] == v) & (bm.err[i] == e)))


def route(data: Data, slope: np.ndarray, bm: ByModel | None = None) -> np.ndarray | None:
    """Per-type LP routing under linear option prices ``slope`` ($ per unit of load).

    Most types' LP is their cheapest option alone (its error within the limit); the others mix
    the two options that straddle their limit on the lower hull of their front (:func:`type_lp`),
    a front taken over the models (:class:`ByModel`)."""
    d = data
    K = d.K
    bm = d.by_model if bm is None else bm
    X = np.zeros((d.n, K + 1))
    C = bm.prices(slope)
    gmin = np.minimum.reduceat(C, bm.starts, axis=1)
    low = cheapest(bm, C, gmin)
    e_low = np.take_along_axis(d.E[:, :K], np.maximum(low, 0)[:, None], axis=1)[:, 0]
    mixed = np.flatnonzero((low >= 0) & (e_low > d.eps + 1e-12))  # the cheapest breaks the limit
    hull = fronts(bm, C, gmin, mixed) if len(mixed) else {}
    for i in range(d.n):
        best: tuple[float, dict[int, float], float] | None = None
        for u in {0.0, float(d.zeta[i])}:
            if u >= 1.0:
                cost = d.D[i, K]
                if best is None or cost < best[0]:
                    best = (cost, {}, 1.0)
                continue
            eps = d.eps[i] / (1.0 - u) if math.isfinite(d.eps[i]) else math.inf
            k0 = int(low[i])
            if k0 < 0:
                continue  # no eligible option (type_lp's empty front)
            if d.E[i, k0] <= eps + 1e-12:
                mix: dict[int, float] | None = {k0: 1.0}
                price = {k0: float(C[i, bm.pos[k0]])}
            else:
                if i not in hull:
                    continue
                cs, es, pts = hull[i]
                local = type_lp(cs, es, np.ones(len(cs), dtype=bool), eps, np.arange(len(cs)))
                if local is None:
                    continue
                at = {j: option_at(bm, C, gmin, i, int(pts[j])) for j in local}
                mix = {at[j]: x for j, x in local.items()}
                price = {at[j]: float(cs[j]) for j in local}
            if mix is None:
                continue
            cost = (1.0 - u) * sum(price[k] * x for k, x in mix.items()) + u * d.D[i, K]
            if best is None or cost < best[0]:
                best = (cost, mix, u)
        if best is None:
            return None
        _, mix, u = best
        for k, x in mix.items():
            X[i, k] = (1.0 - u) * x
        X[i, K] = u
    return X


def _key(X: np.ndarray) -> bytes:
    """A routing's identity as its entries rounded to 1e-9: where they are not zero and what they
    are (shares are never negative). The whole rounded matrix as bytes (8 MB at
    fleet-200x40x40) cost a hash of ~5 ms per round."""
    flat = X.ravel()
    nz = np.flatnonzero(flat)
    r = np.round(flat[nz], 9)
    keep = r != 0.0
    return nz[keep].tobytes() + r[keep].tobytes()


def slope_scaling(
    data: Data, rounds: int = 25, jitter: float = 0.0, seed: int = 0, touched: Counter[int] | None = None
) -> State | None:
    """The best integer state met over ``rounds`` of slope scaling (None if no round routes).

    ``touched``, when given, counts the rounds that routed demand to each option (polish uses the
    most used ones).
    """
    d = data
    K = d.K
    rng = np.random.default_rng(seed)
    # Start as if every option ran one full replica: rental + storage per replica of load.
    full = (d.rental[:K] + d.storage[:K]) / d.umax
    slope = full * (1.0 + jitter * rng.random(K))
    tier_price = np.ones(len(d.avail))
    best: State | None = None
    seen: set[bytes] = set()
    bm = d.by_model
    for _ in range(rounds):
        X = route(d, slope * tier_price[d.tier[:K]], bm)
        if X is None:
            return best
        key = _key(X)
        s = State(d, X)
        if touched is not None:
            touched.update(int(k) for k in np.flatnonzero(s.y[:K] > 0))  # Counter: one per round
        if s.feasible() and (best is None or s.cost < best.cost - 1e-9):
            best = s
        over = s.used > d.avail + 1e-9
        if key in seen and not over.any():  # a repeat is convergence only once no tier's price moves
            break
        seen.add(key)
        load = s.load[:K]
        actual = np.where(load > 0, (d.rental[:K] * s.y[:K] + d.storage[:K]) / np.maximum(load, 1e-300), slope)
        slope = actual
        tier_price = np.where(over, tier_price * 1.5, tier_price)
    return best
