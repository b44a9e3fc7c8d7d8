"""AGH's last step: the exact model restricted to the deployments the starts found.

The union of options that the best local optima open is a small set (tens of options, where the
full table has thousands). The spec's MILP over only those options (``milp.build_model`` with an
options scope: the same constraint families, written once) solves in a fraction of a second and
re-balances replicas and routing jointly across types, which single-type moves cannot. Its answer
is feasible for the full problem; being restricted, it proves nothing about the full optimum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyomo.environ as pyo

from planner.heuristics.state import Data, State, state_of
from planner.heuristics.stopping import MaxRuntime
from planner.solvers.backends import BACKENDS, SolveOptions
from planner.solvers.milp import ModelScope, build_model

if TYPE_CHECKING:
    from planner.options import OptionTable
    from planner.solvers.matrix import MatrixModel

POLISH_GAP = 2e-3  # the restricted problem need not be closed exactly (1e-2 was measured no faster)
# HiGHS's presolve off on small restricted models, where it costs more than it saves (AGH on
# table-50×20×20, 10 seeds, ~2k columns: median 3.7 → 2.9 s on a loaded 2-core machine, the same
# plans). Not measured beyond POLISH_SMALL columns, so left on there.
POLISH_HIGHS: dict[str, object] = {"presolve": "off"}
POLISH_SMALL = 5000
# The heuristics' models (RENS, the polishes, the repair's LP and restricted MILPs) leave out the
# exact model's open_cover rows (milp._open_covers). They lift the full LP's bound and help the
# MILP's proofs, but in these short, restricted solves HiGHS's root takes other paths. With them
# (e2551a0) against without, one process at a time on one machine (2026-12-07): AGH on
# table-50x20x20 seeds 0-9 0.000% -> 0.56% median gap to the optimum (p95 1.63 -> 1.79%, median
# 2.8 -> 2.1 s); on fleet-100x30x30 seed 4 11.8 -> 66 s (a polish on its 60-s safety net) and
# seed 1 13.0 -> 19.8 s, for plans 0.01% / 0.8% cheaper. Under a time limit the effect was within
# the noise (results/agh_time_limit.md). Without them the heuristics give the plans they gave before.
RESTRICTED_COVERS = False


# Above this many columns the heuristics' models also leave out the link_route rows
# x[i,k] ≤ z[k]: one per pair (~95% of a fleet polish's rows), implied at integrality by the
# capacity rows (x > 0 needs y ≥ 1, and y ≤ M·z), so only the LP's storage term is weaker. In
# those short solves HiGHS's root spent its time separating cuts over them: fleet-100x30x30 seed 0,
# a 6,100-column polish, 2.3 s of cut rounds, no better plan. Measured by
# benchmarks/polish_variants.py ("no route links > 5k"), one process at a time on one machine:
# untimed fleet-100x30x30 seeds 0-4 median 12.3 -> 6.6 s, gap to the best bound 0.68 -> 0.90%
# (p95 1.42 -> 1.50%); fleet-200x40x40 seeds 0-2 54.8 -> 30.0 s, 0.61 -> 0.56%; at 5 s on
# fleet-100 median 1.75 -> 1.70%, p95 3.50 -> 2.26%. The table families' models are smaller and
# keep the rows (with none, table-50x20x20 seeds 0-9 went 0.000 -> 0.53% median gap untimed).
ROUTE_LINKS_MAX = POLISH_SMALL

# RENS and the polishes route twins (one model's deployment on one GPU across tiers: provider,
# region, spot) as one class (planner.solvers.matrix.build_matrix's ``classes``): an exact
# reformulation of the same restricted model, without the symmetry of a share spread over
# identical tiers. Table families have no twins, so their models and plans do not change.
# Measured 2026-12-07 against the per-option models, one process at a time on one 2-core
# machine (the same scopes; /tmp harness, AGH end to end): untimed fleet-100x30x30 seeds 0-9
# median gap to the best bound 0.681 -> 0.511%, mean 0.89 -> 0.59%, p95 2.27 -> 1.27% (better on
# 7 seeds, worse on 2), median 8.8 -> 8.5 s (max 12.3 -> 24.1 s); fleet-200x40x40 seed 0
# 0.644 -> 0.583%, 19.5 -> 15.0 s. At 5 s, fleet-100 seeds 0-9 median 0.625 -> 0.512% (mean 0.86
# -> 0.81%), fleet-200 mixed, within the noise of a clock-cut run (results/agh_time_limit.md).
# Adding the scope's twins outside it as well (RENS and the polish over every twin of the
# scope) gave about the same untimed gap on fleet-100 at 14.6 s median, and at 5 s was worse
# on fleet-100 (seed 3 0.5 -> 4.7%) and better on fleet-200: not kept.


def scoped_matrix(table: OptionTable, scope: set[int], classes: np.ndarray | None = None) -> MatrixModel:
    """The arrays model restricted to the options ``scope``, as the heuristics solve it: without
    the open_cover rows (RESTRICTED_COVERS), and without the link_route rows above
    ROUTE_LINKS_MAX columns; with ``classes`` (``Data.twin_class``), twins in the scope route as
    one class (``build_matrix``'s ``classes``: the same optimum, one x column per type and class).
    RENS and the polishes pass the classes (the comment above says why). The studies of the
    polish build theirs here too."""
    from planner.solvers.matrix import build_matrix

    options = np.array(sorted(scope), dtype=np.int64)
    return build_matrix(
        table, options=options, covers=RESTRICTED_COVERS, route_links_max=ROUTE_LINKS_MAX, classes=classes
    )


def start_values(model: pyo.ConcreteModel, state: State) -> dict[int, float]:
    """The state as a starting point for the model's variables (``id(var) -> value``)."""
    d = state.d
    start: dict[int, float] = {}
    for k in model.K:
        start[id(model.y[k])] = float(state.y[k])
        start[id(model.z[k])] = float(state.y[k] > 0)
    for i, k in model.P:
        start[id(model.x[i, k])] = float(state.X[i, k])
    for i in model.I:
        start[id(model.u[i])] = float(state.X[i, d.K])
    return start


def scope_of(data: Data, states: list[State], extra: set[int] | None = None) -> set[int]:
    """A restricted model's options: every option open in ``states``, plus ``extra``."""
    union: set[int] = set(extra or ())
    for s in states:
        union.update(int(k) for k in np.flatnonzero(s.y[: data.K] > 0))
    return union


def polish(
    data: Data,
    states: list[State],
    extra: set[int] | None = None,
    improving_limit: int = 2,
    time_limit: float = 10.0,
    log: list[str] | None = None,
    neighbourhood_from: int | None = None,
) -> State | None:
    """The restricted MILP's best solution as a state, or None if it found none.

    The scope is every option open in ``states`` plus ``extra`` (options the fluid rounds used),
    cut to :func:`lp_neighbourhood` where it has at least ``neighbourhood_from`` eligible (type,
    option) pairs; the search starts from the best of ``states`` and stops after
    ``improving_limit`` improving solutions (a deterministic work limit; ``time_limit`` is only a
    safety net).
    """
    union = scope_of(data, states, extra)
    if not union:
        return None
    best = min(states, key=lambda s: s.cost) if states else None
    clock = MaxRuntime(time_limit)
    # Without a start (every start stalled) the LP's support alone may hold no plan, or a dear one:
    # such a polish keeps its whole scope.
    if (
        best is not None
        and neighbourhood_from is not None
        and int(data.ok[:, sorted(union)].sum()) >= neighbourhood_from
    ):
        union = lp_neighbourhood(data, union, best, clock.left())
    return solve_scope(data, union, clock.left(), best, improving_limit, log)[1]


def solve_scope(
    data: Data,
    scope: set[int],
    time_limit: float,
    start: State | None = None,
    improving_limit: int = 2,
    log: list[str] | None = None,
) -> tuple[str, State | None]:
    """(status, state) of the spec's MILP restricted to the options ``scope`` (HiGHS), from
    ``start`` where given; status as the backend's (optimal and feasible read "feasible"). A
    solve that ends on ``time_limit`` rather than on its work limit is noted in ``log``: its
    answer then depends on the machine's speed."""
    from planner.solvers.matrix import supported

    X: np.ndarray | None = None
    clock = MaxRuntime(time_limit)  # the build counts against the limit too
    if supported(data.table):  # the same model as arrays: no Pyomo build and translation
        mm = scoped_matrix(data.table, scope, data.twin_class)
        res = mm.solve(
            time_limit=clock.left(),
            gap=POLISH_GAP,
            improving_limit=improving_limit,
            start=None if start is None else mm.start_of(start.y, start.X),
            options=POLISH_HIGHS if mm.columns <= POLISH_SMALL else None,
        )
        if res.values is not None:
            X = mm.routing(res.values)
    else:
        model = build_model(data.table, ModelScope(options=frozenset(scope), covers=RESTRICTED_COVERS))
        opts = SolveOptions(time_limit=clock.left(), gap=POLISH_GAP, improving_limit=improving_limit)
        # Without a feasible start (every start broke a limit), the restricted MILP looks for one itself.
        res = BACKENDS["highs"](model, opts, start_values(model, start) if start is not None else {})
        if res.status in ("optimal", "feasible"):
            X = np.zeros((data.n, data.K + 1))
            for i, k in model.P:
                X[i, k] = max(0.0, float(pyo.value(model.x[i, k])))
            for i in model.I:
                X[i, data.K] = max(0.0, float(pyo.value(model.u[i])))
    if "time" in res.message.lower() and log is not None:
        log.append(f"a restricted MILP ({len(scope)} options) stopped at its {time_limit:.3g} s time limit")
    if X is None:
        return res.status, None
    return "feasible", state_of(data, X)


def lp_neighbourhood(data: Data, scope: set[int], start: State | None, time_limit: float | None = None) -> set[int]:
    """The options of ``scope`` that its restricted LP relaxation opens (y_LP > 0), plus those open
    in ``start``: the neighbourhood of RINS (Danna, Rothberg & Le Pape, *Exploring relaxation
    induced neighborhoods to improve MIP solutions*, Math. Prog. 2005), which fixes the integer
    variables where the incumbent and the LP agree, keeping only the fixings at zero (replica
    counts, being loads, rarely agree elsewhere). ``scope`` itself where the LP has no optimum
    (infeasible, or cut short by ``time_limit``).
    On table-50×20×20 it keeps 9-19 of a polish's 40-48 options; see COMPACT_PAIRS in
    :mod:`planner.heuristics.methods` for where AGH uses it and why only there. A table the
    arrays cannot state (shared-pool rows, split pairs) keeps its whole ``scope``."""
    from planner.solvers.matrix import supported

    if not supported(data.table):
        return scope
    mm = scoped_matrix(data.table, scope, data.twin_class)
    lp = mm.solve(relax=True, time_limit=time_limit, options=POLISH_HIGHS)
    if lp.status != "optimal" or lp.values is None:  # infeasible, or cut short by the clock
        return scope
    opened = (lp.values[mm.col["y"]] > 1e-6) | (lp.values[mm.col["z"]] > 1e-6)
    out = {int(k) for k in mm.K[opened]}
    if start is not None:
        out |= {int(k) for k in np.flatnonzero(start.y[: data.K] > 0)}
    return out


def rens(data: Data, scope: set[int], time_limit: float, start: State | None = None) -> State | None:
    r"""Relaxation enforced neighbourhood search (Berthold, *RENS*, Math. Prog. Comp. 2014) over
    ``scope``: the restricted model's LP relaxation, then the restricted MILP with every replica
    count boxed to ⌊y_LP⌋ ≤ y ≤ ⌈y_LP⌉ (an option the LP leaves closed stays closed), so only the
    LP's fractional counts are decided; where that box holds no plan, 0 ≤ y ≤ ⌈y_LP⌉, and where
    that holds none either, 0 ≤ y ≤ max(⌈y_LP⌉, y_start) when a ``start`` (a feasible state whose
    options are all in ``scope``) is given: a box that holds it. None where none does, or the
    clock ends first (or the table needs the Pyomo model). Cheap and rough: on table-50×20×20
    0.1–0.4 s and a median ~1% above the optimum, where the polish (:func:`polish`, twice) takes
    ~3 s to reach it (``benchmarks/results/polish_study.md``). AGH uses it under a time limit
    only, where a polish cut short in HiGHS's root keeps its start
    (:func:`planner.heuristics.methods.solve_agh`)."""
    from planner.solvers.matrix import supported

    if not supported(data.table) or not scope:
        return None
    clock = MaxRuntime(time_limit)
    mm = scoped_matrix(data.table, scope, data.twin_class)
    lp = mm.solve(relax=True, time_limit=time_limit, options=POLISH_HIGHS)
    if lp.values is None:
        return None
    y = lp.values[mm.col["y"]]
    lb, ub = mm.lb.copy(), mm.ub.copy()
    lb[mm.col["y"]] = np.floor(y + 1e-6)
    ub[mm.col["y"]] = np.ceil(y - 1e-6)
    ub[mm.col["z"]] = (ub[mm.col["y"]] > 0).astype(float)
    for attempt in range(2 if start is None else 3):
        if clock.passed:
            return None
        box = (lb, ub)
        res = mm.solve(time_limit=clock.left(), gap=POLISH_GAP, improving_limit=2, options=POLISH_HIGHS, bounds=box)
        if res.status != "infeasible":
            break
        if attempt == 0:
            # Rounding up broke a GPU or budget limit (fleet-100x30x30 seed 1: 29 fractional counts):
            # let every count fall as far as zero too, 0 ≤ y ≤ ⌈y_LP⌉ (there: $3,833 in 1 s).
            lb[mm.col["y"]] = 0.0
        elif start is not None:
            # Even that box can hold no plan: the LP's options may not carry the demand in whole
            # replicas within the GPU and budget limits (fleet-200x40x40 seed 9: infeasible in
            # 0.2 s; RENS returned nothing and AGH fell back on a GH pass). Raise each bound to
            # the start's count, 0 ≤ y ≤ max(⌈y_LP⌉, y_start): a box that holds the start (there:
            # $11,094, 4.5% above the best bound, in 0.9 s).
            ub[mm.col["y"]] = np.maximum(ub[mm.col["y"]], start.y[mm.K])
            ub[mm.col["z"]] = (ub[mm.col["y"]] > 0).astype(float)
    return None if res.values is None else state_of(data, mm.routing(res.values))
