"""Why a proven-infeasible instance is infeasible, per query type.

The causes are tested from the most local to the most global, so each blocker names the
constraint that actually stops the type:

1. memory / context / parallelism / table — no option is a candidate for the type at all;
2. slo — candidates exist but none meets every SLO (the best figure per SLO key is named);
3. accuracy — even the most accurate eligible model misses max_error with the allowed unserved share;
4. availability / budget — the type alone is infeasible; dropping the family makes it feasible;
5. joint budget / availability — every type is feasible alone but not together.

Each blocked type also gets a ``max_unserved`` line when its ζ < 1 forbids leaving it unserved.
"""

from __future__ import annotations

from planner.options import OptionTable, Row
from planner.plan import Blocker
from planner.solvers.backends import BACKENDS, SolveOptions
from planner.solvers.milp import ModelScope, build_model


def _category(reason: str) -> str:
    if "does not fit" in reason or "KV cache" in reason:
        return "memory"
    if "max context" in reason:
        return "context"
    if "tp " in reason or "pp " in reason:
        return "parallelism"
    return "memory"


def _no_candidate(type_id: str, rows: list[Row], mode: str) -> Blocker:
    if not rows:
        what = "no performance entry lists this type" if mode == "table" else "no option was considered"
        return Blocker(query_type=type_id, constraint="table" if mode == "table" else "memory", detail=what)
    cats = {_category(r.reason) for r in rows}
    constraint = "memory" if "memory" in cats else sorted(cats)[0]
    example = next(r for r in rows if _category(r.reason) == constraint)
    return Blocker(
        query_type=type_id,
        constraint=constraint,
        detail=f"no option fits: {len(rows)} options rejected, e.g. {example.option.key}: {example.reason}",
    )


def _no_slo(table: OptionTable, type_id: str, rows: list[Row]) -> Blocker:
    q = next(q for q in table.instance.query_types if q.id == type_id)
    parts = []
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        limit = getattr(q.slo, name)
        known = [r for r in rows if getattr(r, name) is not None]
        if limit is None or not known:
            continue
        best = min(known, key=lambda r: getattr(r, name))
        value = getattr(best, name)
        if value > limit:
            parts.append(f"{name[:-2]}: best {value:.3g} s ({best.option.key}) > SLO {limit:.3g} s")
    if not parts:
        parts.append("each SLO is met by some option, but no option meets ttft, tpot and e2e together")
    return Blocker(query_type=type_id, constraint="slo", detail="; ".join(parts))


def _infeasible(table: OptionTable, scope: ModelScope, backend: str, opts: SolveOptions) -> bool:
    return BACKENDS[backend](build_model(table, scope), opts).status == "infeasible"


def diagnose(table: OptionTable, backend: str, opts: SolveOptions) -> list[Blocker]:
    inst = table.instance
    by_type: dict[str, list[Row]] = {t: [] for t in table.type_ids}
    for r in table.rows:
        by_type[r.query_type].append(r)
    blockers: list[Blocker] = []
    blocked: set[str] = set()
    for i, q in enumerate(inst.query_types):
        if q.max_unserved >= 1.0:
            continue
        rows = by_type[q.id]
        cands = [r for r in rows if r.candidate]
        elig = [r for r in rows if r.eligible]
        found: list[Blocker] = []
        if not cands:
            found.append(_no_candidate(q.id, rows, inst.performance_mode))
        elif not elig:
            found.append(_no_slo(table, q.id, cands))
        else:
            if q.max_error is not None:
                best = min(elig, key=lambda r: inst.error(r.option.model, q.id))
                e_min = inst.error(best.option.model, q.id)
                if e_min * (1.0 - q.max_unserved) > q.max_error + 1e-12:
                    found.append(
                        Blocker(
                            query_type=q.id,
                            constraint="accuracy",
                            detail=f"most accurate eligible model {best.option.model} has error {e_min:.4g} "
                            f"> max_error {q.max_error:.4g}",
                        )
                    )
            if not found and _infeasible(table, ModelScope(types=(i,)), backend, opts):
                if not _infeasible(table, ModelScope(types=(i,), availability=False), backend, opts):
                    tiers = sorted({r.option.gpu for r in elig})
                    found.append(
                        Blocker(
                            query_type=q.id,
                            constraint="availability",
                            detail=f"too few GPUs available on its eligible tiers ({', '.join(tiers)})",
                        )
                    )
                elif not _infeasible(table, ModelScope(types=(i,), budget=False), backend, opts):
                    found.append(
                        Blocker(
                            query_type=q.id,
                            constraint="budget",
                            detail=f"serving it alone costs more than the budget {inst.budget:g}",
                        )
                    )
                else:
                    found.append(
                        Blocker(
                            query_type=q.id,
                            constraint="availability",
                            detail="availability and budget together leave too little capacity",
                        )
                    )
        if found:
            blocked.add(q.id)
            blockers.extend(found)
            blockers.append(
                Blocker(
                    query_type=q.id,
                    constraint="max_unserved",
                    detail=f"max_unserved {q.max_unserved:g} forbids leaving the rest of it unserved",
                )
            )
    if blockers:
        return blockers
    # Every type is feasible alone: shared limits stop them together.
    joint = [q.id for q in inst.query_types if q.max_unserved < 1.0]
    for family, scope in (
        ("budget", ModelScope(budget=False)),
        ("availability", ModelScope(availability=False)),
    ):
        if not _infeasible(table, scope, backend, opts):
            for t in joint:
                blockers.append(
                    Blocker(
                        query_type=t,
                        constraint=family,
                        detail=f"types served together exceed the {family} limit",
                    )
                )
            return blockers
    return [
        Blocker(
            query_type=t,
            constraint="budget",
            detail="budget and availability together leave too little capacity",
        )
        for t in joint
    ]
