r"""The exact model of ``../shared/spec/formats.md`` as a Pyomo MILP.

Sets (capitals) and data, all read from the :class:`~planner.options.OptionTable`:

=============  ===========================================================================
I              query types
K              options with at least one eligible (type, option) pair
P ⊆ I × K      eligible pairs (candidate and every SLO met)
G              GPU tiers with an ``available`` limit
rental[k]      $ per replica per period;  storage[k] $ per period when k is used
load[i,k]      λ_i / throughput_rps[i,k]   (replicas of capacity per unit of x)
delay[i,k]     $ per period per unit of x; unserved[i] $ per period per unit of u
=============  ===========================================================================

Variables: y[k] ∈ {0..M_k} replicas; z[k] ∈ {0,1} option used; x[i,k] ∈ [0,1] routed fraction
(only on P); u[i] ∈ [0, ζ_i] unserved fraction; w[j,k] ∈ {0,1} type j is served on k (only
where j's TPOT limit is tighter than another type's eligible on k: the shared-pool rule of
:func:`_capacity`). The big-M of each option is derived from data:

    M_k = min( ⌈Σ_{i:(i,k)∈P} load[i,k] / max_utilization⌉,  ⌊available_g / (tp·pp)⌋,
               ⌊budget / rental[k]⌋ )

No optimal solution needs more replicas than the full load of every type it can serve, and the
availability and budget limits cap y[k] anyway, so the bound cuts off no optimum.

**Split prefill/decode pairs** (instance ``engine.split``; :mod:`planner.disaggregation`): a pair
s ∈ S has two integer replica counts yp[s] ∈ {0..MP_s}, yd[s] ∈ {0..MD_s}, zs[s] ∈ {0,1} and routed fractions
xs[i,s]; coverage, accuracy, availability (each pool on its own tier), budget and the objective
gain the pair's terms, and :func:`_split_capacity` holds its prefill pool, decode pool and KV link.

**Dominated options are left out** (:func:`dominated`): option b is dominated by option a of the
same model when a serves every type b serves, with ρ = max_i load[i,a]/load[i,b] over those types
and n = ⌈ρ⌉:

    rental[a]·n ≤ rental[b],   delay[i,a] ≤ delay[i,b] ∀ i,   and a's tier is unlimited, or it is
    b's tier and tp·pp(a)·n ≤ tp·pp(b).

Replace the y_b replicas of b by ⌈ρ·y_b⌉ of a and route b's shares to a: capacity holds
(Σ load[i,a]·x_i ≤ ρ·Σ load[i,b]·x_i ≤ ρ·U·y_b ≤ U·⌈ρ·y_b⌉); rental does not grow, since
⌈ρ·y⌉ ≤ n·y for every y ≥ 1 (so the budget row holds too); GPUs on b's tier do not grow, or a's
tier has no limit; errors and storage are the same model's; delay does not grow. So some optimum
avoids b, and the optimal value is unchanged (ties: the lower index stays; the relation is
transitive, so dropping b whose dominator is dropped too is safe). ρ ≤ 1 on the same tier is
the plain case (the three token budgets of one option, azure-2023: 315 of 603 options); ρ > 1
drops a dear provider's tier where a cheap one of the same GPU with no limit has n replicas'
worth of capacity for the price of one (a 4× price gap absorbs ±10% figure noise). Not done when
the scope restricts options or pairs (polish, baselines, ``prune=False``), nor with shared-pool
rows; ``tests/test_solvers_scale.py`` checks pruned against unpruned optima on seeded instances.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from planner.options import Option, OptionTable

FAMILIES = ("coverage", "capacity", "accuracy", "availability", "budget", "linking")


@dataclass(frozen=True)
class ModelScope:
    """Which types and constraint families to build (the diagnosis builds restricted models)."""

    types: tuple[int, ...] | None = None
    options: frozenset[int] | None = None  # restrict K (a heuristic's polish); None = all
    pairs: frozenset[tuple[int, int]] | None = None  # restrict P (baselines); None = all eligible
    whole: bool = False  # x binary: each type goes wholly to one option (Mélange-style buckets)
    availability: bool = True
    budget: bool = True
    prune: bool = True  # leave out dominated options (module docstring); only without options/pairs
    split: bool = False  # with an options scope, keep every split pair too (AGH's split polish)
    covers: bool = True  # the open_cover rows (_open_covers): valid inequalities, off only to measure them


def big_m(table: OptionTable, scope_types: Iterable[int]) -> list[int]:
    inst = table.instance
    P, load, _, _ = table.pair_arrays()
    inside = np.zeros(len(table.type_ids), dtype=bool)
    inside[list(scope_types)] = True
    sel = inside[P[:, 0]] if len(P) else np.zeros(0, dtype=bool)
    demand = np.bincount(P[sel, 1], weights=load[sel], minlength=len(table.options)).tolist()
    out = []
    for k, o in enumerate(table.options):
        m = math.ceil(demand[k] / inst.max_utilization - 1e-9)
        avail = inst.gpu(o.gpu).available
        if avail is not None:
            m = min(m, avail // o.gpus_per_replica)
        if inst.budget is not None and table.rental[k] > 0:
            m = min(m, math.floor(inst.budget / table.rental[k] + 1e-9))
        out.append(max(0, m))
    return out


def dominated(
    table: OptionTable,
    pairs: list[tuple[int, int]] | np.ndarray,
    coefficients: tuple[np.ndarray, np.ndarray] | None = None,
) -> set[int]:
    """Options (indices) dominated by another on the given pairs (module docstring); vectorised
    over the dominating option, per model. ``coefficients``: the pairs' (load, delay) where the
    caller has them already."""
    inst = table.instance
    P = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(P):
        return set()
    load, delay = table.pair_arrays(P)[1:3] if coefficients is None else coefficients
    unlimited = np.array([inst.gpu(o.gpu).available is None for o in table.options], dtype=bool)
    by_model: dict[str, list[int]] = {}
    for k in np.unique(P[:, 1]):
        by_model.setdefault(table.options[int(k)].model, []).append(int(k))
    out: set[int] = set()
    for ks in by_model.values():
        if len(ks) < 2:
            continue
        ks_arr = np.array(ks)
        col = np.full(len(table.options), -1, dtype=np.int64)
        col[ks_arr] = np.arange(len(ks))
        sel = col[P[:, 1]] >= 0
        ts, rows = np.unique(P[sel, 0], return_inverse=True)
        Lg = np.full((len(ts), len(ks)), np.inf)
        Dg = np.full((len(ts), len(ks)), np.inf)
        Lg[rows, col[P[sel, 1]]] = load[sel]
        Dg[rows, col[P[sel, 1]]] = delay[sel]
        rent = table.rental[ks_arr].astype(float)
        gpus = table.gpus[ks_arr].astype(float)
        tier = table.tier[ks_arr]
        free = unlimited[ks_arr]
        cover = np.zeros((len(ks), len(ks)), dtype=bool)  # cover[a, b]: a dominates b
        for b in range(len(ks)):
            served = np.isfinite(Lg[:, b])
            La, Lb = Lg[served], Lg[served, b][:, None]
            with np.errstate(invalid="ignore"):
                rho = (La / Lb).max(axis=0)
            n = np.ceil(rho * (1 - 1e-12))
            ok = np.isfinite(rho) & (Dg[served] <= Dg[served, b][:, None] + 1e-12).all(axis=0)
            ok &= rent * n <= rent[b] * (1 + 1e-12) + 1e-12
            ok &= free | ((tier == tier[b]) & (gpus * n <= gpus[b]))
            ok[b] = False
            cover[:, b] = ok
        for b in range(len(ks)):
            for a in np.flatnonzero(cover[:, b]):
                if ks[a] not in out and (a < b or not cover[b, a]):
                    out.add(ks[b])
                    break
    return out


def build_model(table: OptionTable, scope: ModelScope = ModelScope()) -> pyo.ConcreteModel:
    """Variables → constraints → objective, reading top to bottom."""
    inst = table.instance
    types = tuple(range(len(table.type_ids))) if scope.types is None else scope.types
    in_scope = set(types)
    pairs = [
        (i, k)
        for (i, k) in table.pairs
        if i in in_scope
        and (scope.options is None or k in scope.options)
        and (scope.pairs is None or (i, k) in scope.pairs)
    ]
    if scope.prune and scope.options is None and scope.pairs is None and not table.tight_load:
        drop = dominated(table, pairs)
        pairs = [(i, k) for i, k in pairs if k not in drop]
    used = sorted({k for _, k in pairs})

    m = pyo.ConcreteModel(name=inst.name)
    m.I = pyo.Set(initialize=types, ordered=True)
    m.K = pyo.Set(initialize=used, ordered=True)
    m.P = pyo.Set(initialize=pairs, dimen=2, ordered=True)
    m.scope = scope
    m.table = table
    bigm = big_m(table, types)
    m.M = {k: bigm[k] for k in used}

    m.y = pyo.Var(m.K, domain=pyo.NonNegativeIntegers, bounds=lambda _, k: (0, m.M[k]))
    m.z = pyo.Var(m.K, domain=pyo.Binary)
    m.x = pyo.Var(m.P, domain=pyo.Binary if scope.whole else pyo.NonNegativeReals, bounds=(0.0, 1.0))
    m.u = pyo.Var(m.I, domain=pyo.NonNegativeReals, bounds=lambda _, i: (0.0, inst.query_types[i].max_unserved))

    # Split prefill/decode pairs (planner.disaggregation): in the whole model, and in an options
    # scope that asks for them (AGH's split polish); a baseline's restricted scope names
    # colocated options only.
    with_split = scope.options is None or scope.split
    split = table.split if with_split and scope.pairs is None and not scope.whole else None
    routes = [(i, s) for (i, s) in split.routes if i in in_scope] if split is not None else []
    m.S = pyo.Set(initialize=sorted({s for _, s in routes}), ordered=True)
    m.PS = pyo.Set(initialize=routes, dimen=2, ordered=True)
    m.MP = {s: _split_big_m(table, s, routes, "prefill") for s in m.S}
    m.MD = {s: _split_big_m(table, s, routes, "decode") for s in m.S}
    m.yp = pyo.Var(m.S, domain=pyo.NonNegativeIntegers, bounds=lambda _, s: (0, m.MP[s]))
    m.yd = pyo.Var(m.S, domain=pyo.NonNegativeIntegers, bounds=lambda _, s: (0, m.MD[s]))
    m.zs = pyo.Var(m.S, domain=pyo.Binary)
    m.xs = pyo.Var(m.PS, domain=pyo.NonNegativeReals, bounds=(0.0, 1.0))

    _coverage(m)
    _capacity(m)
    _split_capacity(m)
    _accuracy(m)
    if scope.covers:
        _open_covers(m)
    if scope.availability:
        _availability(m)
    if scope.budget:
        _budget(m)
    _linking(m)
    _objective(m)
    return m


def _split_big_m(table: OptionTable, s: int, routes: list[tuple[int, int]], role: str) -> int:
    """M_s of one pool of pair s: the replicas the full load of every type the pair can serve needs
    on it (prefill: compute or link, whichever is busier), at most ⌊available/(tp·pp)⌋ of its
    tier and ⌊(budget − the other pool's one replica) / its rental⌋ (a used pair runs ≥ 1 of
    each). Each pool has its own: a bound shared by both would cap one pool at the other's tier."""
    sp, inst = table.split, table.instance
    mine = [i for i, t in routes if t == s]
    if role == "prefill":
        need = max(sum(sp.load_p[i, s] for i in mine), sum(sp.link[i, s] for i in mine))
        o, gpus, price, other = sp.prefill[s], sp.gpus_p[s], float(sp.rental_p[s]), float(sp.rental_d[s])
    else:
        need = sum(sp.load_d[i, s] for i in mine)
        o, gpus, price, other = sp.decode[s], sp.gpus_d[s], float(sp.rental_d[s]), float(sp.rental_p[s])
    out = math.ceil(need / inst.max_utilization - 1e-9)
    avail = inst.gpu(o.gpu).available
    if avail is not None:
        out = min(out, avail // int(gpus))
    if inst.budget is not None and price > 0:
        out = min(out, math.floor((inst.budget - other - float(sp.storage[s])) / price + 1e-9))
    return max(0, out)


def _split_capacity(m: pyo.ConcreteModel) -> None:
    """The two pools and the link of every split pair s ∈ S (:mod:`planner.disaggregation`):

        split_prefill[s]:  Σ_i load_p[i,s]·xs[i,s] ≤ max_utilization·yp[s]   (prefill replicas)
        split_decode[s]:   Σ_i load_d[i,s]·xs[i,s] ≤ max_utilization·yd[s]   (decode replicas)
        split_link[s]:     Σ_i link[i,s]·xs[i,s]   ≤ max_utilization·yp[s]   (NIC-seconds per second:
                           each prefill replica's link busy at most U of the time)

    Both pools carry every request routed to the pair (its prefill, then its decode)."""
    sp = m.table.split
    u = m.table.instance.max_utilization
    by_pair: dict[int, list[int]] = {s: [] for s in m.S}
    for i, s in m.PS:
        by_pair[s].append(i)
    m.split_prefill = pyo.Constraint(
        m.S, rule=lambda _, s: sum(sp.load_p[i, s] * m.xs[i, s] for i in by_pair[s]) <= u * m.yp[s]
    )
    m.split_decode = pyo.Constraint(
        m.S, rule=lambda _, s: sum(sp.load_d[i, s] * m.xs[i, s] for i in by_pair[s]) <= u * m.yd[s]
    )
    m.split_link = pyo.Constraint(
        m.S, rule=lambda _, s: sum(sp.link[i, s] * m.xs[i, s] for i in by_pair[s]) <= u * m.yp[s]
    )


def _split_pairs_of_type(m: pyo.ConcreteModel, i: int) -> list[int]:
    return [s for (j, s) in m.PS if j == i]


def _pairs_of_type(m: pyo.ConcreteModel, i: int) -> list[int]:
    return [k for (j, k) in m.P if j == i]


def _coverage(m: pyo.ConcreteModel) -> None:
    """coverage[i]:  Σ_{k:(i,k)∈P} x[i,k] + u[i] = 1        ∀ i ∈ I   (fractions of type i's requests)."""
    by_type: dict[int, list[int]] = {i: [] for i in m.I}
    for i, k in m.P:
        by_type[i].append(k)
    split: dict[int, list[int]] = {i: [] for i in m.I}
    for i, s in m.PS:  # + Σ_s xs[i,s] over the split pairs serving i
        split[i].append(s)
    m.coverage = pyo.Constraint(
        m.I,
        rule=lambda _, i: sum(m.x[i, k] for k in by_type[i]) + sum(m.xs[i, s] for s in split[i]) + m.u[i] == 1,
    )


def _capacity(m: pyo.ConcreteModel) -> None:
    """capacity[k]:  Σ_{i:(i,k)∈P} load[i,k]·x[i,k] ≤ max_utilization·y[k]    ∀ k ∈ K   (replicas)."""
    t = m.table
    by_opt: dict[int, list[int]] = {k: [] for k in m.K}
    for i, k in m.P:
        by_opt[k].append(i)
    u = t.instance.max_utilization
    m.capacity = pyo.Constraint(m.K, rule=lambda _, k: sum(t.load[i, k] * m.x[i, k] for i in by_opt[k]) <= u * m.y[k])
    _shared_tpot(m, by_opt)


@dataclass(frozen=True)
class TightRow:
    """The shared-pool capacity row of type j on option k (see :func:`_shared_tpot`)."""

    j: int
    k: int
    coef: dict[int, float]  # type i → replicas per unit x[i,k] with i held to τ_j
    excluded: tuple[int, ...]  # types that cannot be held to τ_j on k
    big_m: float  # Σ coef: the row's left side at x ≤ 1


def tight_rows(table: OptionTable, by_opt: dict[int, list[int]]) -> list[TightRow]:
    """Shared-pool rows of the types in ``by_opt`` (option → types in the model), one per (j, k)
    where some other type on k has a looser TPOT limit than j's (attainment tables only)."""
    out = []
    for k, members in by_opt.items():
        for j in members:
            looser = [i for i in members if (j, i, k) in table.tight_load]
            if not looser:
                continue
            coef = {i: table.load[i, k] for i in members if i not in looser}
            excluded = []
            for i in looser:
                a = table.tight_load[j, i, k]
                if a is None:
                    excluded.append(i)
                else:
                    coef[i] = a
            out.append(TightRow(j, k, coef, tuple(excluded), sum(coef.values())))
    return out


def _shared_tpot(m: pyo.ConcreteModel, by_opt: dict[int, list[int]]) -> None:
    r"""The shared-pool rule (attainment tables; :mod:`planner.options`): a pool serving type j holds
    every type it serves to TPOT ≤ τ_j, so its load measured at those capacities must fit too.
    Index set: (j, k) with j eligible on k and a type i eligible on k with τ_i > τ_j.

        tight[j,k]:    Σ_i a^j[i,k]·x[i,k] ≤ max_utilization·y[k] + M_jk·(1 − w[j,k])   (replicas)
        tight_on[j,k]: x[j,k] ≤ w[j,k]
        tight_excl[j,i,k]: x[i,k] + w[j,k] ≤ 1     for i that cannot meet τ_j on k at all

    with a^j[i,k] = tight_load[j,i,k] when τ_i > τ_j, else load[i,k] (i's own limit is already the
    tighter), and M_jk = Σ_i a^j[i,k], the left side at x ≤ 1: with w = 0 the row is slack, so it
    cuts off nothing but the pools that serve j beyond their tight capacity — exact for the model
    stated. Tables with one TPOT limit per option (every shipped instance today) get no rows."""
    t = m.table
    rows = tight_rows(t, by_opt)
    u = t.instance.max_utilization
    m.JK = pyo.Set(initialize=[(r.j, r.k) for r in rows], dimen=2, ordered=True)
    m.w = pyo.Var(m.JK, domain=pyo.Binary)
    by_jk = {(r.j, r.k): r for r in rows}
    m.tight = pyo.Constraint(
        m.JK,
        rule=lambda _, j, k: (
            sum(a * m.x[i, k] for i, a in by_jk[j, k].coef.items()) <= u * m.y[k] + by_jk[j, k].big_m * (1 - m.w[j, k])
        ),
    )
    m.tight_on = pyo.Constraint(m.JK, rule=lambda _, j, k: m.x[j, k] <= m.w[j, k])
    excl = [(r.j, i, r.k) for r in rows for i in r.excluded]
    m.tight_excl = pyo.Constraint(excl, rule=lambda _, j, i, k: m.x[i, k] + m.w[j, k] <= 1)


def _accuracy(m: pyo.ConcreteModel) -> None:
    """accuracy[i]:  Σ_k e[model(k)][i]·x[i,k] ≤ ε_i     ∀ i ∈ I with max_error set   (error rate)."""
    t = m.table
    # A type with no eligible pair has an empty row (0 ≤ ε): nothing to constrain.
    limited = [
        i
        for i in m.I
        if t.instance.query_types[i].max_error is not None and (_pairs_of_type(m, i) or _split_pairs_of_type(m, i))
    ]
    m.accuracy = pyo.Constraint(
        limited,
        rule=lambda _, i: (
            sum(t.error[i, k] * m.x[i, k] for k in _pairs_of_type(m, i))
            + sum(t.split.error[i, s] * m.xs[i, s] for s in _split_pairs_of_type(m, i))
            <= t.instance.query_types[i].max_error
        ),
    )


# An option whose error e stays above ε/(1 − ζ) by more than this cannot serve its type alone
# (the accuracy row's violation would exceed the solvers' feasibility tolerances); within it, the
# option counts as accurate enough, which only weakens a cover, never cuts a solution off.
COVER_TOL = 1e-6


def _open_covers(m: pyo.ConcreteModel) -> None:
    r"""open_cover[i]:  Σ_{k ∈ A_i} z[k] + Σ_{s ∈ A_i^split} zs[s] ≥ 1     ∀ i ∈ I with ζ_i < 1
    and A_i ≠ ∅   (options opened), where A_i = {k : (i,k) ∈ P, e[i,k]·(1 − ζ_i) ≤ ε_i} (every
    option of i when i has no max_error), and A_i^split the same among i's split pairs.

    Valid: type i routes Σ_k x[i,k] = 1 − u[i] ≥ 1 − ζ_i > 0 of its requests; were every option
    it uses outside A_i, its error Σ_k e[i,k]·x[i,k] ≥ min e·(1 − ζ_i) > ε_i breaks accuracy[i].
    So some option of A_i carries a share, and an option with a share is open (z = 1). Where A_i
    is empty the accuracy row alone proves the type infeasible; no cover is written.

    Why: the LP relaxation meets accuracy[i] with a sliver of an accurate option (z and y both
    tiny), where a plan must open it and run a whole replica. table-50x20x20 seed 0: the full
    model's LP bound 2,247 → 2,478 with these 50 rows (optimum 2,503); fleet-200x40x40 seed 1,
    without the link_route rows: 8,391 → 8,619 (best bound after 300 s of branch and bound 8,655).
    HiGHS finds such rows itself among its root cuts, later and not all of them
    (``benchmarks/results/polish_root.md``; measured in ``benchmarks/results/milp_strength.md``).
    """
    t = m.table
    by_type: dict[int, list[int]] = {i: [] for i in m.I}
    for i, k in m.P:
        by_type[i].append(k)
    split_of: dict[int, list[int]] = {i: [] for i in m.I}
    for i, s in m.PS:
        split_of[i].append(s)
    rows: dict[int, tuple[list[int], list[int]]] = {}
    for i in m.I:
        q = t.instance.query_types[i]
        if q.max_unserved >= 1.0:
            continue
        eps = math.inf if q.max_error is None else q.max_error
        keep = 1.0 - q.max_unserved

        def accurate(e: float, eps: float = eps, keep: float = keep) -> bool:
            return e * keep <= eps + COVER_TOL

        ks = [k for k in by_type[i] if accurate(float(t.error[i, k]))]
        ss = [s for s in split_of[i] if accurate(float(t.split.error[i, s]))]
        if ks or ss:
            rows[i] = (ks, ss)
    m.open_cover = pyo.Constraint(
        list(rows), rule=lambda _, i: sum(m.z[k] for k in rows[i][0]) + sum(m.zs[s] for s in rows[i][1]) >= 1
    )


def _availability(m: pyo.ConcreteModel) -> None:
    """availability[g]:  Σ_{k on tier g} tp_k·pp_k·y[k] ≤ available_g     ∀ g ∈ G   (GPUs)."""
    t = m.table
    sp = t.split
    tiers = [n for n, g in enumerate(t.instance.gpus) if g.available is not None]
    on_tier = {n: [k for k in m.K if t.tier[k] == n] for n in tiers}
    # A split pair's pools count on their own tiers: + tp·pp·yp[s] on P's, + tp·pp·yd[s] on D's.
    prefill_on = {n: [s for s in m.S if sp.tier_p[s] == n] for n in tiers}
    decode_on = {n: [s for s in m.S if sp.tier_d[s] == n] for n in tiers}
    tiers = [n for n in tiers if on_tier[n] or prefill_on[n] or decode_on[n]]
    m.availability = pyo.Constraint(
        tiers,
        rule=lambda _, n: (
            sum(int(t.gpus[k]) * m.y[k] for k in on_tier[n])
            + sum(int(sp.gpus_p[s]) * m.yp[s] for s in prefill_on[n])
            + sum(int(sp.gpus_d[s]) * m.yd[s] for s in decode_on[n])
            <= t.instance.gpus[n].available
        ),
    )


def _budget(m: pyo.ConcreteModel) -> None:
    """budget:  Σ_k rental[k]·y[k] + Σ_k storage[k]·z[k] ≤ budget     ($ per period)."""
    t = m.table
    if t.instance.budget is None or not (len(m.K) or len(m.S)):
        return
    m.budget = pyo.Constraint(expr=_spend(m) <= t.instance.budget)


def _spend(m: pyo.ConcreteModel) -> pyo.Expression:
    """Rental and storage: Σ_k rental[k]·y[k] + storage[k]·z[k]
    + Σ_s rental_p[s]·yp[s] + rental_d[s]·yd[s] + storage[s]·zs[s]   ($ per period)."""
    t = m.table
    spend = sum(float(t.rental[k]) * m.y[k] + float(t.storage[k]) * m.z[k] for k in m.K)
    if len(m.S):
        sp = t.split
        spend += sum(
            float(sp.rental_p[s]) * m.yp[s] + float(sp.rental_d[s]) * m.yd[s] + float(sp.storage[s]) * m.zs[s]
            for s in m.S
        )
    return spend


def _linking(m: pyo.ConcreteModel) -> None:
    """linking:  z[k] ≤ y[k] ≤ M_k·z[k]  ∀ k ∈ K;   x[i,k] ≤ z[k]  ∀ (i,k) ∈ P   (z = 1 ⇔ y ≥ 1).

    x ≤ z is implied by capacity at integrality but tightens the LP relaxation of the storage term.
    """
    m.link_upper = pyo.Constraint(m.K, rule=lambda _, k: m.y[k] <= m.M[k] * m.z[k])
    m.link_lower = pyo.Constraint(m.K, rule=lambda _, k: m.z[k] <= m.y[k])
    m.link_route = pyo.Constraint(m.P, rule=lambda _, i, k: m.x[i, k] <= m.z[k])
    # Split pairs: zs[s] ≤ yp[s] ≤ MP_s·zs[s], zs[s] ≤ yd[s] ≤ MD_s·zs[s] (a used pair runs both
    # pools), xs ≤ zs.
    m.split_upper_p = pyo.Constraint(m.S, rule=lambda _, s: m.yp[s] <= m.MP[s] * m.zs[s])
    m.split_upper_d = pyo.Constraint(m.S, rule=lambda _, s: m.yd[s] <= m.MD[s] * m.zs[s])
    m.split_lower_p = pyo.Constraint(m.S, rule=lambda _, s: m.zs[s] <= m.yp[s])
    m.split_lower_d = pyo.Constraint(m.S, rule=lambda _, s: m.zs[s] <= m.yd[s])
    m.split_route = pyo.Constraint(m.PS, rule=lambda _, i, s: m.xs[i, s] <= m.zs[s])


def _objective(m: pyo.ConcreteModel) -> None:
    """total = Σ rental[k]·y[k] + Σ storage[k]·z[k] + Σ delay[i,k]·x[i,k] + Σ unserved[i]·u[i]   ($)."""
    t = m.table
    delay = sum(t.delay[i, k] * m.x[i, k] for (i, k) in m.P)
    if len(m.PS):  # + Σ delay[i,s]·xs[i,s] over split routes
        delay += sum(t.split.delay[i, s] * m.xs[i, s] for (i, s) in m.PS)
    m.total = pyo.Objective(
        expr=_spend(m) + delay + sum(float(t.unserved[i]) * m.u[i] for i in m.I),
        sense=pyo.minimize,
    )


def solution_of(
    m: pyo.ConcreteModel,
) -> tuple[dict[Option, float], dict[str, dict[Option, float]], dict[str, float]]:
    """(replicas, routing, unserved) of a solved model, keyed as :func:`planner.plan.build_plan` takes them."""
    t = m.table
    replicas = {t.options[k]: float(pyo.value(m.y[k])) for k in m.K}
    routing: dict[str, dict[Option, float]] = {tid: {} for tid in t.type_ids}
    for i, k in m.P:
        routing[t.type_ids[i]][t.options[k]] = float(pyo.value(m.x[i, k]))
    for s in m.S:  # a split pair: both pools deployed, its types routed to the prefill pool
        replicas[t.split.prefill[s]] = float(pyo.value(m.yp[s]))
        replicas[t.split.decode[s]] = float(pyo.value(m.yd[s]))
    for i, s in m.PS:
        routing[t.type_ids[i]][t.split.prefill[s]] = float(pyo.value(m.xs[i, s]))
    unserved = {t.type_ids[i]: float(pyo.value(m.u[i])) for i in m.I}
    return replicas, routing, unserved
