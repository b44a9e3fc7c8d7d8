r"""A heuristic's working solution, laid out densely over the option table's coefficients.

The heuristics read the same :class:`~planner.options.OptionTable` as the MILP and the checker;
this module only re-lays its coefficients as arrays over types i (rows) and options k (columns),
with one extra column ``K`` standing for "unserved":

=============  ===============================================================================
L[i,k]         load[i,k] = λ_i / throughput_rps[i,k]  (0 where ineligible and in column K)
D[i,k]         delay[i,k] $/unit x; D[i,K] = unserved[i] $/unit u
E[i,k]         error of model(k) on type i; E[i,K] = 0 (unserved requests count in no error)
ok[i,k]        eligible; ok[i,K] ⇔ ζ_i > 0
=============  ===============================================================================

The state keeps X (n × K+1, each row sums to 1), the load and replicas of each option
(y[k] = ⌈load[k]/max_utilization⌉, the least that covers the load), the error of each type, the
GPUs used per tier and the spend (rental + storage). Every move is priced by :meth:`State.delta`,
which evaluates moving a share δ of type i from option k1 to *every* option k2 at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from planner.options import OptionTable

if TYPE_CHECKING:
    from planner.heuristics.fluid import ByModel

TOL = 1e-9
CEIL_TOL = 1e-9  # load within this of an integer number of replicas needs no extra replica


@dataclass(frozen=True)
class Data:
    """Dense, read-only coefficients of one option table."""

    table: OptionTable
    n: int
    K: int  # number of real options; column K is "unserved"
    L: np.ndarray
    D: np.ndarray
    E: np.ndarray
    ok: np.ndarray
    rental: np.ndarray  # (K+1,), 0 for the unserved column
    storage: np.ndarray
    gpus: np.ndarray
    tier: np.ndarray  # (K+1,), -1 for the unserved column
    umax: float
    eps: np.ndarray  # (n,), inf when the type has no accuracy limit
    zeta: np.ndarray
    lam: np.ndarray
    avail: np.ndarray  # (tiers,), inf when unlimited
    budget: float  # inf when unlimited
    model_of: np.ndarray  # (K,) model index of each option
    upgrades: tuple[tuple[int, ...], ...]  # per option: same (model, gpu, pp) at a higher TP

    @classmethod
    def from_table(cls, table: OptionTable) -> Data:
        inst = table.instance
        n, K = len(table.type_ids), len(table.options)
        L = np.zeros((n, K + 1))
        D = np.zeros((n, K + 1))
        E = np.zeros((n, K + 1))
        ok = np.zeros((n, K + 1), dtype=bool)
        if table.pairs:  # one vectorised scatter per coefficient (~10⁶ pairs at fleet scale)
            P, load, delay, error = table.pair_arrays()
            ii, kk = P.T
            L[ii, kk], D[ii, kk], E[ii, kk] = load, delay, error
            ok[ii, kk] = True
        zeta = np.array([q.max_unserved for q in inst.query_types])
        D[:, K] = table.unserved
        ok[:, K] = zeta > 0
        model_ids = {m.id: j for j, m in enumerate(inst.models)}
        family: dict[tuple[str, str, int], list[int]] = {}
        for k, o in enumerate(table.options):
            family.setdefault((o.model, o.gpu, o.pp), []).append(k)
        upgrades = tuple(
            tuple(k1 for k1 in family[(o.model, o.gpu, o.pp)] if table.options[k1].tp > o.tp) for o in table.options
        )
        return cls(
            table=table,
            n=n,
            K=K,
            L=L,
            D=D,
            E=E,
            ok=ok,
            rental=np.append(table.rental, 0.0),
            storage=np.append(table.storage, 0.0),
            gpus=np.append(table.gpus, 0),
            tier=np.append(table.tier, -1),
            umax=inst.max_utilization,
            eps=np.array([math.inf if q.max_error is None else q.max_error for q in inst.query_types]),
            zeta=zeta,
            lam=table.arrival.copy(),
            avail=np.array([math.inf if g.available is None else g.available for g in inst.gpus], dtype=float),
            budget=math.inf if inst.budget is None else inst.budget,
            model_of=np.array([model_ids[o.model] for o in table.options], dtype=int),
            upgrades=upgrades,
        )

    @cached_property
    def limited(self) -> bool:
        """Whether some tier has a GPU limit (else availability never stops a move)."""
        return bool(np.isfinite(self.avail).any())

    @cached_property
    def tier_options(self) -> np.ndarray:
        """(tiers, K+1) mask: the options on each tier (the unserved column on none)."""
        return self.tier[None, :] == np.arange(len(self.avail))[:, None]

    @cached_property
    def twin_class(self) -> np.ndarray:
        """(K,) twin label of each option (:func:`planner.solvers.matrix.twin_classes`)."""
        from planner.solvers.matrix import twin_classes

        return twin_classes(self.table)

    @cached_property
    def by_model(self) -> ByModel:
        """The prices' layout model by model for the slope-scaling starts
        (:class:`planner.heuristics.fluid.ByModel`), built once per table."""
        from planner.heuristics.fluid import ByModel

        return ByModel.of(self)

    def replicas(self, load: np.ndarray) -> np.ndarray:
        """y = ⌈load / max_utilization⌉: the fewest replicas that carry ``load``."""
        return np.ceil(load / self.umax - CEIL_TOL).clip(min=0)


class State:
    """A complete assignment X with its derived loads, replicas, errors, GPUs and spend."""

    def __init__(self, data: Data, X: np.ndarray | None = None) -> None:
        self.d = data
        self.X = np.zeros((data.n, data.K + 1)) if X is None else X.copy()
        self.refresh()

    def copy(self) -> State:
        s = State.__new__(State)
        s.d = self.d
        s.X = self.X.copy()
        s.load, s.y, s.err = self.load.copy(), self.y.copy(), self.err.copy()
        s.used, s.spend, s.delay = self.used.copy(), self.spend, self.delay
        return s

    def refresh(self) -> None:
        """Recompute every derived quantity from X (also clears floating-point drift)."""
        d = self.d
        self.load = np.append((self.X[:, : d.K] * d.L[:, : d.K]).sum(axis=0), 0.0)
        self.y = d.replicas(self.load)
        self.y[d.K] = 0
        self.err = (self.X * d.E).sum(axis=1)
        self.used = np.zeros(len(d.avail))
        np.add.at(self.used, d.tier[: d.K], self.y[: d.K] * d.gpus[: d.K])
        self.spend = float(d.rental @ self.y + d.storage @ (self.y > 0))
        # Σ delay·x + unserved·u, kept up to date by move() (refresh() clears its drift)
        self.delay = float((self.X * d.D).sum())

    @property
    def cost(self) -> float:
        return self.spend + self.delay

    def served(self) -> np.ndarray:
        return self.X.sum(axis=1)

    def feasible(self) -> bool:
        d = self.d
        return bool(
            np.all(np.abs(self.X.sum(axis=1) - 1.0) <= 1e-7)
            and np.all(self.X[:, d.K] <= d.zeta + TOL)
            and np.all(self.err <= d.eps + 1e-9)
            and np.all(self.used <= d.avail + TOL)
            and self.spend <= d.budget * (1 + 1e-12) + 1e-9
            and np.all(self.X[~d.ok] <= TOL)
        )

    # ------------------------------------------------------------------ pricing a move
    def delta(self, i: int, k1: int | None, amount: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Cost change and feasibility of moving ``amount`` of type i from k1 to every k2.

        ``k1`` None means the share is new (construction: it comes from no option). ``amount`` is
        a scalar or one value per k2. Returns (Δcost (K+1,), feasible mask (K+1,)); the move to
        k2 = k1 is marked infeasible.
        """
        d = self.d
        K = d.K
        scalar = np.ndim(amount) == 0
        # In-place arithmetic, and the source side as scalars for a scalar amount: the same
        # floating-point operations in the same order as the plain array expressions (the
        # plans do not change), in about half the time (fleet-200x40x40: ~10⁴ calls per local
        # search over 5,240 options; this was three quarters of its time).
        amt: np.ndarray | float = float(amount) if scalar else np.asarray(amount, dtype=float)
        # Target side, vectorised over k2: y2 = ⌈(load + amt·L[i]) / umax − tol⌉⁺.
        y2 = np.multiply(amt, d.L[i])
        y2 += self.load
        y2 /= d.umax
        y2 -= CEIL_TOL
        np.ceil(y2, out=y2)
        np.maximum(y2, 0.0, out=y2)
        y2[K] = 0
        opened = self.y == 0
        opened &= y2 > 0
        dy2 = y2
        dy2 -= self.y
        dspend = d.rental * dy2
        dspend += d.storage * opened
        dgpu2 = dy2 * d.gpus
        dcost = np.multiply(amt, d.D[i])
        dcost += dspend
        derr = np.multiply(amt, d.E[i])
        if k1 is not None:
            # Source side: a scalar when amount is, else one value per k2.
            new_load1 = self.load[k1] - amt * d.L[i, k1]
            if k1 >= K:
                y1 = 0.0 if scalar else np.zeros(K + 1)
            elif scalar:
                y1 = max(math.ceil(new_load1 / d.umax - CEIL_TOL), 0.0)
            else:
                y1 = np.maximum(np.ceil(new_load1 / d.umax - CEIL_TOL), 0.0)
            dy1 = y1 - self.y[k1]
            closed = (self.y[k1] > 0) & (y1 == 0)
            ds1 = d.rental[k1] * dy1 - d.storage[k1] * closed
            dcost += ds1
            dcost -= amt * d.D[i, k1]
            dspend += ds1
            derr -= amt * d.E[i, k1]
        feas = d.ok[i].copy() if scalar else d.ok[i] & (amt > 0)
        if scalar and not amt > 0:
            feas[:] = False
        derr += self.err[i]
        feas &= derr <= d.eps[i] + 1e-9
        feas[K] &= self.X[i, K] + (amt if scalar else amt[K]) <= d.zeta[i] + TOL
        if math.isfinite(d.budget):
            dspend += self.spend
            feas &= dspend <= d.budget * (1 + 1e-12) + 1e-9
        # Availability: the target's tier gains dgpu2; the source's tier (if any) loses GPUs.
        if d.limited:
            tier_room = np.append(d.avail - self.used, math.inf)[d.tier]
            if k1 is not None and k1 < K:
                same = d.tier_options[d.tier[k1]]
                tier_room[same] -= (y1 - self.y[k1]) * d.gpus[k1] if scalar else ((y1 - self.y[k1]) * d.gpus[k1])[same]
            tier_room += TOL
            feas &= dgpu2 <= tier_room
        if k1 is not None:
            feas[k1] = False
            if scalar:
                if not amt <= self.X[i, k1] + TOL:
                    feas[:] = False
            else:
                feas &= amt <= self.X[i, k1] + TOL
        return dcost, feas

    def move(self, i: int, k1: int | None, k2: int, amount: float) -> None:
        """Apply a move priced by :meth:`delta` and update the derived quantities of k1 and k2."""
        d = self.d
        if k1 is not None:
            before = self.X[i, k1]
            self.X[i, k1] = max(0.0, self.X[i, k1] - amount)
            if self.X[i, k1] < 1e-12:
                self.X[i, k1] = 0.0
            self.delay += (self.X[i, k1] - before) * d.D[i, k1]
        self.X[i, k2] += amount
        self.delay += amount * d.D[i, k2]
        self._refresh_options([k for k in (k1, k2) if k is not None])
        self.err[i] = float(self.X[i] @ d.E[i])

    def _refresh_options(self, ks: list[int]) -> None:
        d = self.d
        for k in ks:
            if k >= d.K:
                continue
            old_y = self.y[k]
            self.load[k] = float(self.X[:, k] @ d.L[:, k])
            new_y = d.replicas(np.array([self.load[k]]))[0]
            self.y[k] = new_y
            self.used[d.tier[k]] += (new_y - old_y) * d.gpus[k]
            self.spend += d.rental[k] * (new_y - old_y) + d.storage[k] * (float(new_y > 0) - float(old_y > 0))

    def solution(self) -> tuple[dict, dict, dict]:
        """(replicas, routing, unserved) keyed as :func:`planner.plan.build_plan` takes them."""
        d, t = self.d, self.d.table
        replicas = {t.options[k]: int(self.y[k]) for k in range(d.K) if self.y[k] > 0}
        routing = {
            t.type_ids[i]: {t.options[k]: float(self.X[i, k]) for k in np.flatnonzero(self.X[i, : d.K] > 1e-12)}
            for i in range(d.n)
        }
        unserved = {t.type_ids[i]: float(self.X[i, d.K]) for i in range(d.n)}
        return replicas, routing, unserved


def state_of(data: Data, X: np.ndarray) -> State | None:
    """A solver's routing as a heuristic state (round-off cleared; None if it breaks a limit)."""
    X = np.where(X < 1e-12, 0.0, X)
    X /= X.sum(axis=1, keepdims=True)  # solver round-off: rows sum to exactly 1
    state = State(data, X)
    return state if state.feasible() else None
