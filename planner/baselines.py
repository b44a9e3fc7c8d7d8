"""Baselines a user would pick instead of the planner, solved exactly on restricted models.

Each is the spec's MILP (``milp.build_model``) with a restricted scope, so its plan is judged by
the same checker and priced by the same coefficients:

* ``cheapest-tier`` — rent one GPU tier only: the best plan using a single tier (every tier tried).
* ``best-model`` — one model per query type: for each type, the model that meets its max_error
  alone and is cheapest per request at full replicas; no mixing of models within a type.
* ``melange`` — after Mélange (Griggs et al., 2024, "Mélange: Cost Efficient LLM Serving by
  Exploiting GPU Heterogeneity"): one model for every type, each request bucket (query type)
  assigned wholly to one GPU type, no TP/PP choice (the smallest TP that fits, PP 1), and no
  accuracy choice (the cheapest single model that meets every type's max_error alone).
"""

from __future__ import annotations

import math
import time

from planner.options import OptionTable
from planner.plan import Plan, build_plan
from planner.solvers.backends import BACKENDS, SolveOptions
from planner.solvers.milp import ModelScope, build_model, solution_of


def _solve_scope(table: OptionTable, scope: ModelScope, opts: SolveOptions) -> tuple[float, dict, dict, dict] | None:
    model = build_model(table, scope)
    res = BACKENDS["highs"](model, opts)
    if res.status not in ("optimal", "feasible"):
        return None
    return (float(res.objective or 0.0), *solution_of(model))


def _best_of(
    table: OptionTable, method: str, scopes: list[tuple[str, ModelScope]], t0: float, seed: int, why: str
) -> Plan:
    opts = SolveOptions(gap=1e-6)
    best = None
    for label, scope in scopes:
        got = _solve_scope(table, scope, opts)
        if got is not None and (best is None or got[0] < best[1][0]):
            best = (label, got)
    if best is None:
        return build_plan(
            table, method=method, status="no_solution", solve_seconds=time.perf_counter() - t0, seed=seed, message=why
        )
    label, (_, y, x, u) = best
    return build_plan(
        table,
        method=method,
        status="feasible",
        replicas=y,
        routing=x,
        unserved=u,
        solve_seconds=time.perf_counter() - t0,
        seed=seed,
        message=f"baseline: {label}",
    )


def solve_cheapest_tier(table: OptionTable, *, seed: int = 0, **_: object) -> Plan:
    t0 = time.perf_counter()
    scopes = []
    for n, g in enumerate(table.instance.gpus):
        ks = frozenset(k for k in range(len(table.options)) if table.tier[k] == n)
        if ks:
            scopes.append((f"only tier {g.id}", ModelScope(options=ks)))
    return _best_of(table, "cheapest-tier", scopes, t0, seed, "no single GPU tier serves every query type")


def _fluid_price(table: OptionTable, i: int, k: int) -> float:
    return float(table.rental[k] * table.load[i, k] / table.instance.max_utilization + table.delay[i, k])


def solve_best_model(table: OptionTable, *, seed: int = 0, **_: object) -> Plan:
    t0 = time.perf_counter()
    inst = table.instance
    chosen: set[tuple[int, int]] = set()
    for i, q in enumerate(inst.query_types):
        by_model: dict[str, float] = {}
        for j, k in table.pairs:
            if j != i:
                continue
            m = table.options[k].model
            if q.max_error is not None and inst.error(m, q.id) > q.max_error:
                continue
            by_model[m] = min(by_model.get(m, math.inf), _fluid_price(table, i, k))
        if not by_model:
            continue
        model = min(by_model, key=lambda m: (by_model[m], m))
        chosen.update((j, k) for (j, k) in table.pairs if j == i and table.options[k].model == model)
    scope = ModelScope(pairs=frozenset(chosen))
    return _best_of(
        table,
        "best-model",
        [("one model per type", scope)],
        t0,
        seed,
        "some query type has no single model that meets its max_error alone",
    )


def solve_melange(table: OptionTable, *, seed: int = 0, **_: object) -> Plan:
    t0 = time.perf_counter()
    inst = table.instance
    scopes = []
    for m in inst.models:
        if any(q.max_error is not None and inst.error(m.id, q.id) > q.max_error for q in inst.query_types):
            continue
        # No TP/PP choice: per GPU tier, the smallest TP (PP 1) with any eligible pair.
        smallest: dict[str, int] = {}
        for _, k in table.pairs:
            o = table.options[k]
            if o.model == m.id and o.pp == 1:
                smallest[o.gpu] = min(smallest.get(o.gpu, 1 << 30), o.tp)
        pairs = frozenset(
            (i, k)
            for (i, k) in table.pairs
            if table.options[k].model == m.id
            and table.options[k].pp == 1
            and smallest.get(table.options[k].gpu) == table.options[k].tp
        )
        if pairs:
            scopes.append((f"model {m.id}, whole buckets per GPU type", ModelScope(pairs=pairs, whole=True)))
    return _best_of(
        table, "melange", scopes, t0, seed, "no single model meets every type's max_error (Mélange serves one model)"
    )
