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


def error_order(data: Data) -> np.ndarray:
    """Per type, options by rising error then index (errors never change, so sort once)."""
    K = data.K
    E = np.where(data.ok[:, :K], data.E[:, :K], math.inf)
    return np.stack([np.lexsort((np.arange(K), E[i])) for i in range(data.n)])


def fronts(C: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """Pareto fronts (rising error, falling cost) of every type at once from the error order."""
    cs = np.take_along_axis(C, order, axis=1)
    runmin = np.minimum.accumulate(cs, axis=1)
    keep = np.isfinite(cs)
    keep[:, 1:] &= cs[:, 1:] < runmin[:, :-1] - 1e-15
    return [order[i][keep[i]] for i in range(C.shape[0])]


def cheapest(C: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Per row, the last point of its Pareto front (:func:`fronts`): the least cost, ties (within
    the fronts' 1e-15) to the lower error, then the lower index; -1 where no cost is finite."""
    cmin = C.min(axis=1)
    tie = np.isfinite(C) & (cmin[:, None] + 1e-15 >= C)
    e_tie = np.where(tie, E, math.inf)
    first = np.argmax(tie & (e_tie == e_tie.min(axis=1)[:, None]), axis=1)
    return np.where(np.isfinite(cmin), first, -1)


def route(data: Data, slope: np.ndarray, order: np.ndarray | None = None) -> np.ndarray | None:
    """Per-type LP routing under linear option prices ``slope`` ($ per unit of load).

    Most types' LP is their cheapest option alone (its error within the limit): that is read off
    one vectorised argmin, and only the other types build their Pareto front and hull
    (:func:`type_lp`) — at fleet-200x40x40 (5,239 options) the fronts of every type were half of
    slope scaling's time."""
    d = data
    K = d.K
    X = np.zeros((d.n, K + 1))
    E = d.E[:, :K]
    with np.errstate(invalid="ignore"):
        C = np.where(d.ok[:, :K], slope[None, :] * d.L[:, :K] + d.D[:, :K], math.inf)
    low = cheapest(C, E)
    # The types whose cheapest option breaks their error limit (with nothing unserved, the
    # tightest case) mix two options: their fronts, all at once.
    e_low = np.take_along_axis(E, np.maximum(low, 0)[:, None], axis=1)[:, 0]
    mixed = np.flatnonzero((low >= 0) & (e_low > d.eps + 1e-12))
    front: dict[int, np.ndarray] = {}
    if len(mixed):
        rows = (error_order(d) if order is None else order)[mixed]
        front = dict(zip(mixed.tolist(), fronts(C[mixed], rows), strict=True))
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
            if E[i, k0] <= eps + 1e-12:
                mix: dict[int, float] | None = {k0: 1.0}
            else:
                mix = type_lp(C[i], E[i], d.ok[i, :K], eps, front[i])
            if mix is None:
                continue
            cost = (1.0 - u) * sum(C[i, k] * x for k, x in mix.items()) + u * d.D[i, K]
            if best is None or cost < best[0]:
                best = (cost, mix, u)
        if best is None:
            return None
        _, mix, u = best
        for k, x in mix.items():
            X[i, k] = (1.0 - u) * x
        X[i, K] = u
    return X


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
    order = error_order(d)
    for _ in range(rounds):
        X = route(d, slope * tier_price[d.tier[:K]], order)
        if X is None:
            return best
        key = np.round(X, 9).tobytes()
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
