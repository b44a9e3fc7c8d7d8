"""``--method gh`` and ``--method agh``: plans from the heuristics, with an optional LP bound."""

from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np

from planner.heuristics.construct import construct
from planner.heuristics.fluid import slope_scaling
from planner.heuristics.polish import RESTRICTED_COVERS, rens, scope_of
from planner.heuristics.polish import polish as polish_restricted
from planner.heuristics.repair import REPAIR_TIME_S, Repaired, cheapest_per_type, repair, siblings
from planner.heuristics.search import local_search
from planner.heuristics.state import Data, State
from planner.heuristics.stopping import AnyOf, MaxIterations, MaxRuntime, StoppingCriterion
from planner.options import Option, OptionTable
from planner.plan import Plan, build_plan

POLISH_EXTRA = 40  # fluid-round options added to the polish scope beyond the starts' deployments
POLISH_ROUNDS = 2  # polishes in a row while each improves
# A polish's time limit without the method's own: only a safety net, so that a polish ends on its
# work limit (improving solutions) and the plan does not depend on the machine's speed. At 10 s
# the polishes of fleet-200x40x40 ended on the clock on most seeds: seed 2 kept its start
# ($6,937, 25% above the MILP's bound) where the finished polishes (14 s + 17 s) reach $5,230;
# median gap to the 300-s MILP's bound 1.21% -> 0.61% over the 9 feasible seeds, median AGH time
# 24.5 -> ~32 s (two runs at a time on 2 cores); fleet-100x30x30 seeds 0-4 and the table
# families (polishes under 3 s) are unchanged.
POLISH_S = 60.0
# Under a time limit the constructions (GH passes, slope starts) stop at this share of it; RENS
# and the local search run on the whole limit. With the share also on the local search,
# fleet-100x30x30 at 5 s went 2.3-3.1% -> 3.8% median (its first polish's scope grew worse).
STARTS_SHARE = 0.5
# Under a time limit the starts' local searches stop (between rounds) at this share of it, so that
# the polish gets the rest: at fleet-200x40x40 a search round takes ~0.5-1 s, and the search of
# RENS's answer used to take the whole limit. Measured 2026-12-07, alone, one run per seed, against
# the whole limit: fleet-200 at 5 s seeds 0-5,7 median 2.98% either way, mean 4.12 -> 3.15% (seed 1
# 8.24 -> 4.04%, seed 3 5.93 -> 3.34%, none worse); fleet-100 seeds 0-9 at 5 s and table-50
# seeds 0-16 at 1 s the same plans but one seed (fleet-100 seed 2 1.62 -> 1.58%).
SEARCH_SHARE = 0.7
# A table with at most this many eligible pairs is compact: there AGH runs without a limit the
# slope starts first and the GH passes only where none finds a plan, and every polish (the first,
# the re-polish around its answer) whose scope has at least NEIGHBOURHOOD_PAIRS eligible pairs
# solves over the LP neighbourhood of its scope (polish.lp_neighbourhood: the options the
# restricted LP opens plus the start's; 9-19 of 40-48 options on table-50x20x20) instead of the
# whole scope. Measured 2026-12-07, alone, one process, against the whole scopes with the GH
# passes first: untimed table-50x20x20 seeds 0-19 median 2.5 -> 0.94 s, gap to the best bound
# median 0.00 -> 0.33%, mean 0.46 -> 0.45%, p95 1.63 -> 1.40% (max 2.19 -> 1.50%); at 1 s 0.90 ->
# 0.54% median, p95 5.27 -> 2.14%; at 2 s median 0.23 -> 0.36%, p95 2.41 -> 1.48%, ending at
# 1.34 s median. On the fleet families the whole scopes and the GH passes' options matter:
# fleet-100x30x30 seeds 0-9 untimed median 0.51 -> 0.93% (p95 1.27 -> 4.00%), fleet-200x40x40
# seeds 0-1 0.55 -> 1.36%; with the neighbourhood but the GH passes first 0.65% and 0.78%.
# table-50x20x20 has ~50k pairs, fleet-100x30x30 ~227k.
COMPACT_PAIRS = 100_000
# Below this many eligible pairs in its scope a polish keeps the whole scope: it is fast there
# (table-20x20x20's first polishes, 766-791 pairs: under 1.7 s) and the LP's support is a poor
# guide when few replicas are rounded: model-6x6x10 seed 3 0.00 -> 26.8% (the LP opens 5 of the
# 40 options, the optimum others), table-20x20x20 seeds 1-2 0.00 -> 2.52% and 0.11 -> 1.10%.
# table-50x20x20's polishes have 1,304-2,081 pairs. Starting with the slope starts alone did
# no harm there (table-20 seed 3 0.87 -> 0.00%, seeds 1-2 unchanged).
NEIGHBOURHOOD_PAIRS = 1000
# Under a time limit on a table that is not compact, the limit is crowded when the constructions
# cannot all run within STARTS_SHARE of it: the loop stops with a slope start still to come, or
# RENS's answer comes after CROWDED_AT of the limit (half the constructions' share). Then the
# slope starts after RENS's answer are left out (at fleet-200x40x40 one took 1.1 s of a 5-s
# limit, and its plan, 1.5x RENS's answer, was kept unsearched: the polish that could use its
# options has no time to finish there) and, before the first polish, RENS runs once more around
# the best start (its options, each type's two cheapest, the open options' siblings: the second
# polish's scope, where the polish itself has no time left to finish). Measured 2026-12-07/08,
# alone, one run per seed, against the order without it: fleet-200x40x40 at 5 s seeds 0-5,7
# median gap to the best bound 2.98 -> 1.93%, mean 3.35 -> 2.42% (seed 5 6.71 -> 1.93%, seed 0
# 2.60 -> 0.79%; seed 7 2.98 -> 4.09%); fleet-100x30x30 seeds 0-9 at 5 s and table-50x20x20
# seeds 0-19 at 1 s the same plans (the limit is not crowded there). Leaving out the slope start
# on every fleet table instead cost fleet-100 (median 0.51 -> 0.77%): there it ends within the
# share and its local search pays. On the bench's nine feasible fleet-200 seeds
# (results/agh_time_limit.md, 80bd55b -> c8d4a90; seeds 8 and 9 new to this rule) at 5 s: median
# 3.17 -> 1.93%, max 15.5 -> 8.1%. Until 2026-12-08 the rule predicted another slope start to take
# as long as the first and left it out where it would end past the share; once the slope starts
# took half the time (fluid.ByModel: fleet-200 ~0.9 -> ~0.55 s), that prediction let the second
# one run on most fleet-200 seeds and the 5-s median went 1.93 -> 2.98% (one run per seed, the
# versions in turn). With CROWDED_AT, on those nine seeds: median 1.90%, mean 2.21% (the old
# code in the same session: 1.93%, 2.33%); fleet-100 at 5 s seeds 0-9 the same plans.
CROWDED_RENS = True
CROWDED_AT = 0.25
# A start this many times the best one's cost is not worth a local search: a greedy start beside
# the fluid ones rarely wins after the search; under a time limit, neither does a fluid start
# beside RENS's answer.
SEARCH_WITHIN = 1.2


def compact(data: Data) -> bool:
    """Is the table compact (COMPACT_PAIRS)? Never where the arrays cannot state its model
    (shared-pool rows, split pairs): the neighbourhood needs them, and neither change was
    measured there."""
    from planner.solvers.matrix import supported

    return supported(data.table) and int(data.ok[:, : data.K].sum()) <= COMPACT_PAIRS


def neighbourhood_from(data: Data) -> int | None:
    """The polishes' ``neighbourhood_from``: NEIGHBOURHOOD_PAIRS on a compact table, else None."""
    return NEIGHBOURHOOD_PAIRS if compact(data) else None


def fewest_choices_first(data: Data) -> list[int]:
    """Types with the fewest eligible options first (then by arrival rate): scarce GPUs go to
    the types that cannot do without them."""
    idx = np.arange(data.n)
    choices = data.ok[:, : data.K].sum(axis=1)
    return [int(i) for i in np.lexsort((idx, -data.lam, choices))]


def orders(data: Data, seed: int, random_starts: int) -> list[list[int]]:
    """Start orderings: by arrival rate, by error tightness, by footprint, by fewest eligible
    options, then seeded permutations."""
    n = data.n
    idx = np.arange(n)
    lam = data.lam
    e_best = np.array([data.E[i, : data.K][data.ok[i, : data.K]].min(initial=np.inf) for i in range(n)])
    with np.errstate(invalid="ignore"):  # a type with no eligible option has e_best = inf
        tightness = np.where(np.isfinite(data.eps) & np.isfinite(e_best), data.eps - e_best, np.inf)
    min_load = np.array([data.L[i, : data.K][data.ok[i, : data.K]].min(initial=np.inf) for i in range(n)])
    footprint = np.where(np.isfinite(min_load), lam * min_load, 0.0)
    out = [
        list(np.lexsort((idx, -lam))),
        list(np.lexsort((idx, tightness))),
        list(np.lexsort((idx, -footprint))),
        fewest_choices_first(data),
    ]
    rng = np.random.default_rng(seed)
    out += [list(rng.permutation(n)) for _ in range(random_starts)]
    seen, unique = set(), []
    for o in out:
        key = tuple(int(i) for i in o)
        if key not in seen:
            seen.add(key)
            unique.append([int(i) for i in o])
    return unique


def lp_bound(table: OptionTable) -> float | None:
    """The LP relaxation of the exact model (``milp.build_model``), solved with HiGHS."""
    import pyomo.environ as pyo

    from planner.solvers.backends import SolveOptions, solve_highs
    from planner.solvers.milp import build_model

    model = build_model(table)
    pyo.TransformationFactory("core.relax_integer_vars").apply_to(model)
    res = solve_highs(model, SolveOptions(gap=0.0))
    return res.objective if res.status == "optimal" else None


def shared_pool_replicas(
    table: OptionTable, replicas: dict[Option, int], routing: dict[str, dict[Option, float]]
) -> dict[Option, int]:
    """Replicas raised where the shared-pool rule (:func:`planner.solvers.milp._shared_tpot`) needs
    more than the heuristic's own load: ⌈max_j Σ_i a^j[i,k]·x[i,k] / max_utilization⌉ over the
    types j routed to k. The search itself prices pools at each type's own capacity (a repair,
    not part of its moves; the polish's restricted MILP has the rule). A type routed with one
    whose TPOT limit it cannot meet at all stays as it is, and the checker names it."""
    if not table.tight_load:
        return replicas
    from planner.solvers.milp import tight_rows

    index = {t: i for i, t in enumerate(table.type_ids)}
    x = {(index[t], table.option_index(o)): v for t, shares in routing.items() for o, v in shares.items() if v > 1e-12}
    members: dict[int, list[int]] = {}
    for i, k in x:
        if k is not None:
            members.setdefault(k, []).append(i)
    out = dict(replicas)
    for r in tight_rows(table, members):
        if any(i in members[r.k] for i in r.excluded):
            continue
        y = math.ceil(sum(a * x[i, r.k] for i, a in r.coef.items()) / table.instance.max_utilization - 1e-9)
        o = table.options[r.k]
        if y > out.get(o, 0):
            out[o] = y
    return out


def _plan(
    table: OptionTable,
    method: str,
    state: State | None,
    why: str,
    seconds: float,
    seed: int,
    bound: bool,
    repaired: Repaired | None = None,
) -> Plan:
    if state is None:
        if repaired is not None and repaired.status == "infeasible":
            from planner.solvers.backends import SolveOptions
            from planner.solvers.diagnosis import diagnose

            return build_plan(
                table,
                method=method,
                status="infeasible",
                solve_seconds=seconds,
                seed=seed,
                message=f"{repaired.message} (the greedy pass stalled: {why})",
                diagnosis=diagnose(table, "highs", SolveOptions(time_limit=REPAIR_TIME_S)),
            )
        detail = f"; {repaired.message}" if repaired is not None else ""
        return build_plan(
            table, method=method, status="no_solution", solve_seconds=seconds, seed=seed, message=why + detail
        )
    replicas, routing, unserved = state.solution()
    replicas = shared_pool_replicas(table, replicas, routing)
    lb = lp_bound(table) if bound else None
    plan = build_plan(
        table,
        method=method,
        status="feasible",
        replicas=replicas,
        routing=routing,
        unserved=unserved,
        bound=lb,
        solve_seconds=seconds,
        seed=seed,
        message=("heuristic: no optimality claim" if lb is None else "heuristic with LP-relaxation bound")
        + ("" if repaired is None else f"; {repaired.message}"),
    )
    if plan.gap is not None and plan.gap <= 1e-9:  # the bound proves it
        plan = plan.model_copy(update={"status": "optimal", "message": "heuristic, proven optimal by the LP bound"})
    return plan


def _around(data: Data, state: State) -> set[int]:
    """The options around ``state`` beyond its own: each type's two cheapest and the open
    options' siblings."""
    return cheapest_per_type(data, 2) | siblings(data, state)


def _polish_around(data: Data, state: State, time_limit: float, log: list[str]) -> State | None:
    """The restricted MILP around ``state`` (its options, each type's two cheapest, the open
    options' siblings), or None unless it costs less than ``state``."""
    again = polish_restricted(
        data,
        [state],
        extra=_around(data, state),
        time_limit=time_limit,
        log=log,
        neighbourhood_from=neighbourhood_from(data),
    )
    return again if again is not None and again.cost < state.cost - 1e-9 else None


def _split_polish(
    table: OptionTable, data: Data, plan: Plan, log: list[str], t0: float, time_limit: float = POLISH_S
) -> Plan:
    """AGH on a table with split prefill/decode pairs (:mod:`planner.disaggregation`): its moves
    and state know colocated options only, so the last step is the exact model restricted to the
    plan's options, each type's two cheapest and every split pair, started from the plan; its
    answer replaces the plan when it costs less. Still a heuristic: nothing is proven."""
    from planner.solvers.backends import BACKENDS, SolveOptions
    from planner.solvers.milp import ModelScope, build_model, solution_of
    from planner.solvers.milp_method import _start_from_plan

    index = {o: k for k, o in enumerate(table.options)}
    scope = {index[d.option] for d in plan.deployments if d.replicas and d.option in index}
    scope |= cheapest_per_type(data, 2)
    model = build_model(table, ModelScope(options=frozenset(scope), split=True, covers=RESTRICTED_COVERS))
    opts = SolveOptions(time_limit=time_limit, gap=2e-3, improving_limit=2)
    res = BACKENDS["highs"](model, opts, _start_from_plan(model, table, plan))
    if "time" in res.message.lower():
        pairs = len(model.S)
        log.append(f"the split polish ({len(scope)} options, {pairs} pairs) stopped at its {time_limit:.3g} s limit")
    if res.status not in ("optimal", "feasible") or res.objective is None or plan.objective is None:
        return plan
    if res.objective >= plan.objective - 1e-9:
        return plan
    replicas, routing, unserved = solution_of(model)
    return build_plan(
        table,
        method="agh",
        status="feasible",
        replicas=replicas,
        routing=routing,
        unserved=unserved,
        bound=plan.bound,
        solve_seconds=time.perf_counter() - t0,
        seed=plan.seed,
        message=f"{plan.message}; split polish: the restricted MILP with every split pair ({len(model.S)})",
    )


def starts(
    data: Data,
    seed: int,
    random_starts: int = 1,
    slope_starts: int = 2,
    criteria: list[StoppingCriterion] | None = None,
    deadline: MaxRuntime | None = None,
) -> tuple[list[State], Counter[int], str, bool]:
    """AGH's starts after their local search, cheapest first; the options the fluid rounds routed
    to (round counts: the polish's extra scope); why a start stalled ("" if none did); and whether
    the time limit is crowded (CROWDED_RENS: never without a limit or on a compact table).

    Starts: GH in several type orders, then slope-scaling fluid starts (one plain, the others with
    seeded jitter); ``criteria`` may end the construction early, ``deadline`` the local search.
    Without a deadline on a compact table (COMPACT_PAIRS) the slope starts come first and the GH
    passes run only where neither finds a plan.

    Under a finite ``deadline`` the plain slope start comes first, RENS
    (:func:`planner.heuristics.polish.rens`) runs right after the first start that finds a plan,
    over the options it opened and the POLISH_EXTRA the fluid rounds used most (RENS's answer is
    one more start, after which no GH pass runs: none came within 20% of it), starts 20% above
    the best are kept unsearched, the constructions stop at STARTS_SHARE of the deadline and the
    local searches at SEARCH_SHARE. Where the limit is crowded (CROWDED_RENS: RENS's answer came
    after CROWDED_AT of it), the slope starts after RENS's answer are left out.
    Why: at fleet scale the GH passes take ~0.5 s each, and a 5-s limit used to end among them
    with a plan 37–54% above the bound (fleet-200x40x40), where slope + RENS reach 6–10% in ~3 s
    (``benchmarks/results/agh_time_limit.md``). Without a deadline the order is the one above
    (GH first, or on a compact table the slope starts first)."""
    timed = deadline is not None and math.isfinite(deadline.seconds)
    gh = [("gh", order, 0.0, 0) for order in orders(data, seed, random_starts)]
    # each slope start keeps its seed (seed·1000 + its place after the GH passes) in either order
    slopes = [("slope", None, 0.0 if j == 0 else 0.5, seed * 1000 + len(gh) + j) for j in range(slope_starts)]
    slopes_first = not timed and compact(data)  # GH only where the slope starts find no plan
    builders = [*slopes[:1], *gh, *slopes[1:]] if timed else [*slopes, *gh] if slopes_first else [*gh, *slopes]
    share = MaxRuntime(deadline.seconds * STARTS_SHARE, start=deadline.start) if deadline and timed else None
    halt = AnyOf([MaxIterations(len(builders)), *(criteria or []), *([share] if share else [])])
    built: list[tuple[str, State]] = []
    touched: Counter[int] = Counter()
    why = ""
    rens_ran = False
    answer: State | None = None
    watch = CROWDED_RENS and share is not None and not compact(data)  # can the limit be crowded?
    crowded = False
    late = False  # did RENS's answer come after CROWDED_AT of the limit?
    for at, (kind, order, jitter, rng_seed) in enumerate(builders):
        if kind == "gh" and slopes_first and built:
            continue  # on a compact table the polish does the work; a GH pass costs ~50 ms there
        if kind == "gh" and answer is not None:
            continue  # RENS's plan beats every GH pass by far (fleet-100x30x30 seed 0: $3.8k, GH $5.8-6.3k)
        if watch and late and kind == "slope" and answer is not None:
            crowded = True  # RENS's answer came after CROWDED_AT of the limit (CROWDED_RENS)
            continue
        if kind == "gh":
            state, reason = construct(data, order)
        else:
            state = slope_scaling(data, jitter=jitter, seed=rng_seed, touched=touched)
            reason = "slope scaling found no feasible routing"
        if state is None:
            why = why or reason
        else:
            built.append((kind, state))
        if timed and built and not rens_ran and deadline is not None and not deadline.passed:
            rens_ran = True  # once, after the first start that found a plan
            scope = scope_of(data, [built[0][1]], top_touched(touched))
            answer = rens(data, scope, deadline.left(POLISH_S), built[0][1])
            late = time.perf_counter() - deadline.start > CROWDED_AT * deadline.seconds
            if answer is not None:
                built.append(("slope", answer))  # searched like a fluid start
        if halt(min((s.cost for _, s in built), default=float("inf"))):
            crowded = crowded or (watch and any(b[0] == "slope" for b in builders[at + 1 :]))
            break
    # Local search on every fluid start, and on the best greedy one unless it trails the best fluid
    # start by more than SEARCH_WITHIN (then it rarely wins after the search).
    fluid_best = min((s.cost for k, s in built if k == "slope"), default=float("inf"))
    greedy = sorted((s for k, s in built if k == "gh"), key=lambda s: s.cost)[:1]
    greedy = [s for s in greedy if s.cost <= SEARCH_WITHIN * fluid_best]
    todo = [*greedy, *(s for k, s in built if k == "slope")]
    kept: list[State] = []
    if timed and todo:
        # The cheapest first, in case the deadline ends the searches; a start above SEARCH_WITHIN
        # of the best (a fluid start beside RENS's answer) is kept for the polish's scope but not
        # searched: at fleet-200x40x40 its search took 2.7 s of a 10-s limit and left the polish none.
        cap = SEARCH_WITHIN * min(s.cost for s in todo)
        todo, kept = [s for s in todo if s.cost <= cap], [s for s in todo if s.cost > cap]
        todo.sort(key=lambda s: s.cost)
    search_deadline = deadline
    if timed and deadline is not None:
        search_deadline = MaxRuntime(deadline.seconds * SEARCH_SHARE, start=deadline.start)
    searched = [local_search(s, deadline=search_deadline) for s in todo]
    found = sorted([*searched, *kept], key=lambda s: s.cost)
    return found, touched, why, crowded


def polish_scope(found: list[State], touched: Counter[int]) -> tuple[list[State], set[int]]:
    """The first polish's starts (the best four) and extra options (the POLISH_EXTRA options the
    fluid rounds used most, ties by index: a bounded, deterministic scope)."""
    return found[:4], top_touched(touched)


def top_touched(touched: Counter[int]) -> set[int]:
    """The POLISH_EXTRA options the fluid rounds used most, ties by index."""
    return {k for k, _ in sorted(touched.items(), key=lambda kv: (-kv[1], kv[0]))[:POLISH_EXTRA]}


def solve_gh(table: OptionTable, *, seed: int = 0, bound: bool = False, time_limit: float | None = None) -> Plan:
    """One greedy pass, types by descending arrival rate (the paper's GH).

    Where that pass gets stuck (scarce GPUs taken by earlier types), one more pass takes the types
    with the fewest eligible options first, and where that stalls too, the feasibility repair
    (:mod:`planner.heuristics.repair`, within ``time_limit``); both fallbacks are ours, not the
    paper's.
    """
    t0 = time.perf_counter()
    data = Data.from_table(table)
    state, why = construct(data, orders(data, seed, 0)[0])
    if state is None:
        state, _ = construct(data, fewest_choices_first(data))
    fixed = None
    if state is None:
        fixed = repair(data, time_limit=time_limit)
        state = fixed.state
    return _plan(table, "gh", state, why, time.perf_counter() - t0, seed, bound, fixed)


def solve_agh(
    table: OptionTable,
    *,
    seed: int = 0,
    bound: bool = False,
    random_starts: int = 1,
    slope_starts: int = 2,
    polish: bool = True,
    stop: StoppingCriterion | None = None,
    time_limit: float | None = None,
) -> Plan:
    """Multi-start construction + local search, then the restricted exact polish; best plan kept.

    Starts: GH in several type orders (arrival rate, error tightness, footprint, seeded
    permutations) and slope-scaling fluid starts (one plain, the others with seeded jitter on the
    initial prices). Each start is improved by relocate / consolidate / switch. ``stop`` ends the
    starts early; ``polish`` re-optimizes over the deployments found. ``time_limit`` is the
    method's own: the starts stop on it, and every later phase (local search, each polish, the
    repair) gets what is left of it, not the whole (the feasibility repair at least 0.1 s); with
    a limit, RENS (:func:`planner.heuristics.polish.rens`) runs right after the first start
    (:func:`starts`) and again before the first polish, whose start it improves in case the
    polish is cut short; where the limit is crowded (CROWDED_RENS), once more around the best
    start, over the second polish's scope.
    """
    t0 = time.perf_counter()
    clock = MaxRuntime(math.inf if time_limit is None else time_limit, start=t0)
    data = Data.from_table(table)
    criteria: list[StoppingCriterion] = []
    if stop is not None:
        criteria.append(stop)
    if time_limit is not None:
        criteria.append(clock)
    found, touched, why, crowded = starts(data, seed, random_starts, slope_starts, criteria, clock)
    limits: list[str] = []  # what ended on the clock rather than on its work limit
    best = found[0] if found else None
    if polish and (found or touched) and clock.passed:
        limits.append(f"the {time_limit:g} s time limit ended the search before the polish")
    elif polish and (found or touched):
        first, extra = polish_scope(found, touched)
        quick = None
        if time_limit is not None and first:
            # Under a time limit the polish is often cut short in HiGHS's root (cut rounds, before
            # its sub-MIPs find a plan) and keeps its start; RENS (0.1-0.6 s) is a better start.
            quick = rens(data, scope_of(data, first, extra), clock.left(POLISH_S), first[0])
            if quick is not None and quick.cost < first[0].cost - 1e-9:
                first = [quick, *first]
            if crowded and not clock.passed:  # RENS over the second polish's scope (CROWDED_RENS)
                around = rens(data, scope_of(data, first[:1], _around(data, first[0])), clock.left(POLISH_S), first[0])
                if around is not None and around.cost < first[0].cost - 1e-9:
                    quick = around
                    first = [around, *first]
        polished = polish_restricted(
            data,
            first,
            extra=extra,
            time_limit=clock.left(POLISH_S),
            log=limits,
            neighbourhood_from=neighbourhood_from(data),
        )
        if quick is not None and (polished is None or quick.cost < polished.cost - 1e-9):
            polished = quick  # the polish ran out of time before it had its start's plan back
        for _ in range(POLISH_ROUNDS - 1):  # re-polish around the new best with a fresh scope
            if polished is None or clock.passed:
                break
            again = _polish_around(data, polished, clock.left(POLISH_S), limits)
            if again is None:
                break
            polished = again
        if polished is not None:
            polished = local_search(polished, deadline=clock)
            if best is None or polished.cost < best.cost - 1e-9:
                best = polished
    fixed = None
    if best is None:
        # Every start stalled (a budget or availability limit binding across types): the repair
        # finds a plan where one exists, or proves there is none, or says the time ran out.
        # No hint from the stalled fluid rounds: their options can number thousands at fleet scale,
        # and a scope that large made the restricted step time out where GH's repair (no hint)
        # found a plan (fleet-200x40x40 seed 2).
        fixed = repair(data, time_limit=None if time_limit is None else max(0.1, clock.left()))
        if fixed.state is not None:
            best = local_search(fixed.state, deadline=clock)
            if polish and not clock.passed:  # the repair stops at its second solution: polish around it
                again = _polish_around(data, best, clock.left(POLISH_S), limits)
                if again is not None:
                    best = local_search(again, deadline=clock)
    plan = _plan(table, "agh", best, why, time.perf_counter() - t0, seed, bound, fixed)
    if table.split is not None and plan.has_solution and polish and not clock.passed:
        plan = _split_polish(table, data, plan, limits, t0, clock.left(POLISH_S))
    if limits and plan.has_solution:
        plan = plan.model_copy(update={"message": f"{plan.message}; {limits[0]} (not deterministic across machines)"})
    return plan
