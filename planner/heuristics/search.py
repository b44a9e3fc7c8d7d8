"""AGH's improvement moves (Cheng & Nguyen, §AGH): relocate, consolidate, switch.

Each move prices its candidates with :meth:`State.delta`, applies only strict improvements that
keep every limit, and reports whether it improved. All are deterministic: ties break on the
lowest option index.

* :func:`relocate` — move a share of type i from option k1 to k2 when the total cost drops. Three
  amounts per (i, k1): all of it; just enough to free one replica of k1; as much as k2's spare
  capacity holds without a new replica.
* :func:`consolidate` — empty a lightly loaded deployment into others (opening replicas if that
  still pays) and release its GPUs.
* :func:`switch` — move everything on one deployment to another option (a cheaper TP/PP degree, a
  cheaper tier, or another model whose error keeps every rider's accuracy), priced in one vector.
"""

from __future__ import annotations

import math

import numpy as np

from planner.heuristics.state import CEIL_TOL, State
from planner.heuristics.stopping import MaxRuntime

IMPROVE = 1e-7  # a move must save at least this ($) to count, so loops end


def _best(dcost: np.ndarray, feas: np.ndarray) -> int | None:
    if not feas.any():
        return None
    masked = np.where(feas, dcost, math.inf)
    k = int(np.argmin(masked))
    return k if masked[k] < -IMPROVE else None


def relocate(s: State) -> bool:
    d = s.d
    improved = False
    for i in range(d.n):
        for k1 in map(int, np.flatnonzero(s.X[i] > 0)):
            share = float(s.X[i, k1])
            if share <= 0:
                continue
            amounts: list[np.ndarray | float] = [share]
            if k1 < d.K and s.y[k1] >= 1 and d.L[i, k1] > 0:
                free_one = (s.load[k1] - d.umax * (s.y[k1] - 1)) / d.L[i, k1]
                if 0 < free_one < share:
                    amounts.append(free_one)
            with np.errstate(divide="ignore", invalid="ignore"):
                spare = np.maximum(d.umax * s.y - s.load, 0.0)
                fill = np.where(d.L[i] > 0, np.minimum(share, spare / d.L[i]), share)
            amounts.append(np.nan_to_num(fill, nan=0.0))
            best: tuple[float, int, float] | None = None
            for amount in amounts:
                dcost, feas = s.delta(i, k1, amount)
                k2 = _best(dcost, feas)
                if k2 is not None:
                    a = float(np.broadcast_to(amount, dcost.shape)[k2])
                    if best is None or dcost[k2] < best[0]:
                        best = (float(dcost[k2]), k2, a)
            if best is not None:
                s.move(i, k1, best[1], best[2])
                improved = True
    return improved


def evacuate(s: State, k: int, stop_above: float = math.inf) -> State | None:
    """A copy of ``s`` with option k emptied into the cheapest other options, or None.

    None too as soon as the result cannot cost less than ``stop_above``: moving a share never
    lowers another option's cost (replicas only grow, delays and penalties are ≥ 0), so the cost
    so far less what k itself still costs (its replicas, storage and riders' delay) is a lower
    bound on the result."""
    d = s.d
    s2 = s.copy()
    for j in map(int, np.flatnonzero(s2.X[:, k] > 0)):
        floor = s2.cost - d.rental[k] * s2.y[k] - d.storage[k] * (s2.y[k] > 0) - float(s2.X[:, k] @ d.D[:, k])
        if floor >= stop_above:
            return None
        for _ in range(2 * s.d.K + 8):
            share = float(s2.X[j, k])
            if share <= 1e-12:
                break
            with np.errstate(divide="ignore", invalid="ignore"):
                spare = np.maximum(s2.d.umax * s2.y - s2.load, 0.0)
                fill = np.where(s2.d.L[j] > 0, np.minimum(share, spare / s2.d.L[j]), share)
            choice: tuple[float, int, float] | None = None
            for amount in (np.full(s.d.K + 1, share), np.nan_to_num(fill, nan=0.0)):
                dcost, feas = s2.delta(j, k, amount)
                feas &= amount > 1e-12
                if not feas.any():
                    continue
                per_unit = np.where(feas, dcost / np.maximum(amount, 1e-300), math.inf)
                k2 = int(np.argmin(per_unit))
                if choice is None or per_unit[k2] < choice[0]:
                    choice = (float(per_unit[k2]), k2, float(amount[k2]))
            if choice is None:
                return None
            s2.move(j, k, choice[1], choice[2])
        if s2.X[j, k] > 1e-12:
            return None
    return s2


def consolidate(s: State) -> tuple[State, bool]:
    d = s.d
    improved = False
    open_k = [int(k) for k in np.flatnonzero(s.y[: d.K] > 0)]
    open_k.sort(key=lambda k: (s.load[k] / (d.umax * s.y[k]), k))
    for k in open_k:
        if s.y[k] == 0:
            continue
        s2 = evacuate(s, k, stop_above=s.cost - IMPROVE)
        if s2 is not None and s2.cost < s.cost - IMPROVE:
            s, improved = s2, True
    return s, improved


def switch(s: State) -> bool:
    d = s.d
    improved = False
    for k in map(int, np.flatnonzero(s.y[: d.K] > 0)):
        riders = np.flatnonzero(s.X[:, k] > 0)
        if len(riders) == 0:
            continue
        x = s.X[riders, k][:, None]
        ok = d.ok[riders, : d.K].all(axis=0)
        ok[k] = False
        new_load = s.load[: d.K] + (x * d.L[riders, : d.K]).sum(axis=0)
        y_new = np.ceil(new_load / d.umax - CEIL_TOL)
        old = d.rental[k] * s.y[k] + d.storage[k]
        dspend = d.rental[: d.K] * (y_new - s.y[: d.K]) + d.storage[: d.K] * (s.y[: d.K] == 0) - old
        ddelay = (x * (d.D[riders, : d.K] - d.D[riders, k][:, None])).sum(axis=0)
        new_err = s.err[riders][:, None] + x * (d.E[riders, : d.K] - d.E[riders, k][:, None])
        ok &= (new_err <= d.eps[riders][:, None] + 1e-9).all(axis=0)
        ok &= s.spend + dspend <= d.budget * (1 + 1e-12) + 1e-9
        room = (d.avail - s.used)[d.tier[: d.K]] + np.where(d.tier[: d.K] == d.tier[k], s.y[k] * d.gpus[k], 0)
        ok &= (y_new - s.y[: d.K]) * d.gpus[: d.K] <= room + 1e-9
        k2 = _best(dspend + ddelay, ok)
        if k2 is None:
            continue
        for j in riders:
            s.move(int(j), k, k2, float(s.X[j, k]))
        improved = True
    return improved


def local_search(s: State, max_rounds: int = 50, deadline: MaxRuntime | None = None) -> State:
    """Relocate, consolidate and switch until a round improves nothing (or ``max_rounds``, or
    ``deadline`` has passed: checked between rounds)."""
    for _ in range(max_rounds):
        if deadline is not None and deadline.passed:
            break
        before = s.cost
        relocate(s)
        s, _ = consolidate(s)
        switch(s)
        s.refresh()
        if s.cost >= before - IMPROVE:
            break
    return s
