r"""GH's constructive pass (Cheng & Nguyen, arXiv 2604.07472, §GH), on replica-counting options.

The paper's three mechanisms, adapted:

* **M1 TP/PP-aware feasibility selection** — the option table already keeps, per type, only the
  (model, gpu, tp, pp) that fit memory and meet every SLO (``Data.ok``).
* **M2 cost per effective coverage** — every candidate placement of type i on option k is priced
  by its incremental cost (replicas opened, storage if the option is new, delay penalty) divided
  by the demand it can really absorb, λ_i·a, where a is capped by the remaining share, by the
  accuracy budget (what is left must still be servable by the most accurate eligible model:
  err_i + E_k·a + e*_i·(r − a) ≤ ε_i), by GPU availability and by the budget. Three amounts are
  priced per option: fill the spare capacity of its open replicas (no new replica), open as many
  replicas as the remaining share needs, or open only whole replicas it fills exactly.
  Filling spare capacity costs no rental, so it ranks first: open replicas fill before new open.
* **M3 TP upgrade** — when an open deployment cannot take type i because it misses i's SLO but
  the same (model, gpu, pp) at a higher TP degree is eligible for i and for every type on it,
  moving the deployment to that TP is priced as one more candidate.

Leaving the rest of a type unserved is a candidate too (column K, up to ζ_i, at φ per request).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.heuristics.state import CEIL_TOL, Data, State

MIN_SHARE = 1e-10


@dataclass(frozen=True)
class Placement:
    k: int
    amount: float
    ratio: float
    upgrade_from: int | None = None  # M3: open option migrated to k first


def partner_error(d: Data, i: int) -> float:
    """Error of the accurate partner that type i's fluid optimum mixes in (see ``fluid.type_lp``).

    Pricing every option at one full replica per unit of load, the per-type LP mixes a cheap
    option with an accurate one; the greedy keeps the rest of the type servable at *that* partner's
    error rather than at the most accurate model's, which would force a giant deployment.
    """
    from planner.heuristics.fluid import type_lp

    served = d.ok[i, : d.K]
    e_best = float(d.E[i, : d.K][served].min())
    if not math.isfinite(d.eps[i]):
        return e_best
    price = np.where(served, (d.rental[: d.K] + d.storage[: d.K]) / d.umax * d.L[i, : d.K] + d.D[i, : d.K], math.inf)
    mix = type_lp(price, d.E[i, : d.K], served, float(d.eps[i]))
    return e_best if mix is None else min(float(d.E[i, k]) for k in mix)


def accuracy_caps(s: State, i: int, remaining: float, e_ref: float | None = None) -> np.ndarray:
    """Largest share of the remaining demand each option may take and keep ε_i reachable.

    What is left must stay servable at error ``e_ref`` (default: the most accurate eligible model).
    """
    d = s.d
    caps = np.full(d.K + 1, remaining)
    if not math.isfinite(d.eps[i]):
        return caps
    served = d.ok[i, : d.K]
    if not served.any():
        return caps
    e_best = float(d.E[i, : d.K][served].min()) if e_ref is None else e_ref
    slack = d.eps[i] - s.err[i] - e_best * remaining
    worse = np.append(d.E[i, : d.K] > e_best + 1e-15, False)
    excess = np.where(worse, d.E[i] - e_best, 1.0)
    caps = np.where(worse, np.clip(slack / excess, 0.0, remaining), caps)
    return caps


def _amount_variants(s: State, i: int, full: np.ndarray) -> list[np.ndarray]:
    """Fill spare capacity / open what the full share needs (capped) / open whole replicas only."""
    d = s.d
    L = d.L[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        spare = np.maximum(d.umax * s.y - s.load, 0.0)
        fill = np.where(L > 0, np.minimum(full, spare / L), full)
        need = np.ceil((s.load + full * L) / d.umax - CEIL_TOL) - s.y
        room = np.append(d.avail - s.used, math.inf)[d.tier]
        n_avail = np.where(d.gpus > 0, np.floor(room / np.maximum(d.gpus, 1) + 1e-9), math.inf)
        left = d.budget - s.spend - np.where(s.y == 0, d.storage, 0.0)
        n_budget = np.where(d.rental > 0, np.floor(left / np.where(d.rental > 0, d.rental, 1.0) + 1e-9), math.inf)
        n_open = np.clip(np.minimum(need, np.minimum(n_avail, n_budget)), 0, None)
        capped = np.where(L > 0, np.minimum(full, (d.umax * (s.y + n_open) - s.load) / L), full)
        n_down = np.floor((s.load + full * L) / d.umax + CEIL_TOL) - s.y
        exact = np.where((L > 0) & (n_down >= 1), np.minimum(full, (d.umax * (s.y + n_down) - s.load) / L), 0.0)
    return [np.nan_to_num(v, nan=0.0, posinf=0.0).clip(min=0.0) for v in (fill, capped, exact)]


def best_placement(s: State, i: int, remaining: float, e_ref: float | None = None) -> Placement | None:
    """The candidate with the least cost per request/s of demand it absorbs (M2)."""
    d = s.d
    caps = accuracy_caps(s, i, remaining, e_ref)
    caps[d.K] = min(remaining, max(0.0, d.zeta[i] - s.X[i, d.K]))
    full = np.minimum(caps, remaining)
    best: Placement | None = None
    for amount in _amount_variants(s, i, full):
        dcost, feas = s.delta(i, None, amount)
        feas &= amount > MIN_SHARE
        if not feas.any():
            continue
        ratio = np.where(feas, dcost / np.maximum(amount * d.lam[i], 1e-300), math.inf)
        k = int(np.argmin(ratio))
        cand = Placement(k, float(amount[k]), float(ratio[k]))
        if best is None or (cand.ratio, -cand.amount) < (best.ratio, -best.amount):
            best = cand
    up = _best_tp_upgrade(s, i, full)
    if up is not None and (best is None or up.ratio < best.ratio - 1e-12):
        best = up
    return best


def tp_upgrades(s: State, i: int) -> list[tuple[int, int]]:
    """(open option k0, higher-TP option k1) pairs that M3 may migrate for type i."""
    d = s.d
    out = []
    for k0 in map(int, np.flatnonzero(s.y[: d.K] > 0)):
        if d.ok[i, k0] or not d.upgrades[k0]:
            continue
        riders = np.flatnonzero(s.X[:, k0] > 0)
        for k1 in d.upgrades[k0]:
            if d.ok[i, k1] and d.ok[riders, k1].all():
                out.append((k0, k1))
    return out


def migrate(s: State, k_from: int, k_to: int) -> State | None:
    """A copy of ``s`` with every share on ``k_from`` moved to ``k_to`` (the same model on the same
    GPU and PP at a higher TP: errors do not change), or None if the result breaks the budget or
    the tier's availability."""
    s2 = s.copy()
    s2.delay += float(s2.X[:, k_from] @ (s.d.D[:, k_to] - s.d.D[:, k_from]))
    s2.X[:, k_to] += s2.X[:, k_from]
    s2.X[:, k_from] = 0.0
    s2._refresh_options([k_from, k_to])
    d = s.d
    g = d.tier[k_to]
    if s2.spend > d.budget * (1 + 1e-12) + 1e-9 or s2.used[g] > d.avail[g] + 1e-9:
        return None
    return s2


def _best_tp_upgrade(s: State, i: int, full: np.ndarray) -> Placement | None:
    """M3 priced in closed form (no state copies): migrate k0's riders to k1, then place type i
    on k1; the ratio is (Δspend + Δdelay) / (amount·λ_i), feasibility the budget and k1's tier."""
    d = s.d
    best: Placement | None = None
    caps: np.ndarray | None = None
    for k0, k1 in tp_upgrades(s, i):
        if caps is None:  # migration keeps every error, so the accuracy caps are the state's own
            caps = accuracy_caps(s, i, float(full.max()))
        amount = float(min(full[k1], caps[k1]))
        if amount <= MIN_SHARE:
            continue
        riders = s.X[:, k0]
        load1 = s.load[k1] + float(riders @ d.L[:, k1]) + amount * d.L[i, k1]
        y1 = float(np.ceil(load1 / d.umax - CEIL_TOL))
        dy1 = y1 - s.y[k1]
        dspend = d.rental[k1] * dy1 + d.storage[k1] * float(s.y[k1] == 0 and y1 > 0)
        dspend -= d.rental[k0] * s.y[k0] + d.storage[k0]
        if s.spend + dspend > d.budget * (1 + 1e-12) + 1e-9:
            continue
        g = d.tier[k1]
        if s.used[g] + d.gpus[k1] * dy1 - d.gpus[k0] * s.y[k0] > d.avail[g] + 1e-9:
            continue
        ddelay = float(riders @ (d.D[:, k1] - d.D[:, k0])) + amount * d.D[i, k1]
        ratio = (dspend + ddelay) / (amount * d.lam[i])
        if best is None or ratio < best.ratio:
            best = Placement(k1, amount, ratio, upgrade_from=k0)
    return best


def apply(s: State, i: int, p: Placement) -> State:
    if p.upgrade_from is not None:
        migrated = migrate(s, p.upgrade_from, p.k)
        assert migrated is not None
        s = migrated
    s.move(i, None, p.k, p.amount)
    return s


def _why_stuck(s: State, i: int, remaining: float) -> str:
    d, q = s.d, s.d.table.instance.query_types[i]
    if not d.ok[i, : d.K].any():
        return f"{q.id}: no eligible option (memory or SLO), and max_unserved {q.max_unserved:g} < 1"
    if accuracy_caps(s, i, remaining)[: d.K].max() <= MIN_SHARE:
        return f"{q.id}: its accuracy limit {q.max_error} cannot be met with the capacity left"
    eligible = np.flatnonzero(d.ok[i, : d.K])
    tiers = {d.tier[k] for k in eligible}
    if all(d.avail[g] - s.used[g] < 1 for g in tiers):
        return f"{q.id}: GPU availability exhausted on every eligible tier"
    cheapest = float(min(d.rental[k] + (d.storage[k] if s.y[k] == 0 else 0.0) for k in eligible))
    if d.budget - s.spend < cheapest:
        return (
            f"{q.id}: budget exhausted (${d.budget - s.spend:,.2f} left of ${d.budget:,.2f}; the cheapest eligible "
            f"replica costs ${cheapest:,.2f}) with {remaining:.3g} of its demand unplaced"
        )
    return f"{q.id}: budget and availability together leave no room for {remaining:.3g} of its demand"


def construct(data: Data, order: Sequence[int]) -> tuple[State | None, str]:
    """One greedy pass over the types in ``order``; (None, why) when a type cannot be placed."""
    s = State(data)
    for i in order:
        remaining = 1.0
        e_ref: float | None = partner_error(data, i) if data.ok[i, : data.K].any() else None
        for _ in range(4 * data.K + 64):
            if remaining <= MIN_SHARE:
                break
            p = best_placement(s, i, remaining, e_ref)
            if p is None and e_ref is not None:
                e_ref = None  # the partner's capacity ran out: fall back to the most accurate model
                p = best_placement(s, i, remaining)
            if p is None:
                return None, _why_stuck(s, i, remaining)
            s = apply(s, i, p)
            remaining -= p.amount
        if remaining > 1e-7:
            return None, _why_stuck(s, i, remaining)
        # Close the last round-off gap on the column that took the largest share.
        k = int(np.argmax(s.X[i]))
        fix = 1.0 - s.X[i].sum()
        s.X[i, k] += fix
        s.delay += fix * data.D[i, k]
    s.refresh()
    if not s.feasible():
        return None, "the greedy pass ended outside a limit (accuracy or unserved allowance)"
    return s, ""
