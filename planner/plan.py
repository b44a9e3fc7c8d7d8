"""The plan: what every solver returns and what ``planner solve`` writes (spec, section Plan)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.errors import InputError
from planner.fileio import read_document, write_document
from planner.options import (
    Option,
    OptionTable,
    delay_cost,
    rental_per_replica,
    storage_per_option,
    unserved_cost,
)
from planner.problem import Instance

Status = Literal["optimal", "feasible", "infeasible", "no_solution"]
Replicas = dict[Option, int]  # y[k]
Routing = dict[str, dict[Option, float]]  # x[i,k] by query type id
Unserved = dict[str, float]  # u[i] by query type id
ZERO = 1e-9


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Cost(_Out):
    rental: float
    storage: float
    delay_penalty: float
    unserved_penalty: float
    total: float


class _OptionRef(_Out):
    """The keys that name an option in a plan's deployments and routing (the token budget only
    where the planner chose it)."""

    model: str
    gpu: str
    tp: Annotated[int, Field(ge=1)]
    pp: Annotated[int, Field(ge=1)]
    max_num_batched_tokens: Annotated[int, Field(ge=16)] | None = Field(
        None, description="vLLM token budget the planner chose for this deployment"
    )
    role: Literal["prefill", "decode"] | None = Field(
        None, description="split serving: this pool's phase (planner.disaggregation); absent when colocated"
    )
    pair: str | None = Field(None, description="split serving: the id of the prefill/decode pair this pool is in")

    @property
    def option(self) -> Option:
        return Option(
            self.model, self.gpu, self.tp, self.pp, self.max_num_batched_tokens, self.role or "", self.pair or ""
        )


def option_fields(o: Option) -> dict[str, Any]:
    """The plan keys naming option ``o`` (``max_num_batched_tokens`` only when it has a budget,
    ``role`` and ``pair`` only on a split pair's pools)."""
    keys: dict[str, Any] = {"model": o.model, "gpu": o.gpu, "tp": o.tp, "pp": o.pp}
    if o.budget is not None:
        keys["max_num_batched_tokens"] = o.budget
    if o.role:
        keys["role"] = o.role
        keys["pair"] = o.pair
    return keys


class Deployment(_OptionRef):
    replicas: Annotated[int, Field(ge=0)]
    gpus: Annotated[int, Field(ge=0)]
    max_num_seqs: int | None = Field(None, description="largest planned micro-batch of the types routed here")


class Share(_OptionRef):
    fraction: float


class Blocker(_Out):
    """One reason a query type cannot be served (an infeasible plan's diagnosis)."""

    query_type: str
    constraint: str
    detail: str


class Change(_OptionRef):
    replicas: Annotated[int, Field(ge=1)]


class WindowPlan(_Out):
    """One demand window of a multi-period plan: its fleet, routing and changes from the window before."""

    window: str
    hours: float = Field(description="hours of the period this window stands for")
    deployments: list[Deployment] = Field(default_factory=list)
    routing: dict[str, list[Share]] = Field(default_factory=dict)
    unserved: dict[str, float] = Field(default_factory=dict)
    added: list[Change] = Field(default_factory=list, description="replicas started at the window's start")
    removed: list[Change] = Field(default_factory=list, description="replicas stopped at the window's start")
    cost: float | None = Field(None, description="rental + delay + unserved of this window, $ (storage is per plan)")


class ValidationRecord(_Out):
    """The replay that checked a plan (planner.validation): what was replayed and what it showed."""

    traces: list[str]
    policy: str
    target: dict[str, float] = Field(description="attainment target per query type")
    rounds: int = Field(description="solve-and-replay rounds run")
    attainment: dict[str, float | None] = Field(description="per type, in the last replay")
    history: list[dict[str, float | None]] = Field(default_factory=list, description="per round")
    derating: dict[str, float] = Field(
        default_factory=dict, description="per option key: the capacity factor its routed types were given"
    )
    derating_by_type: dict[str, float] = Field(default_factory=dict, description="capacity factor per query type")
    passed: bool
    message: str | None = None


class Plan(_Out):
    instance: str
    method: str
    status: Status
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    solve_seconds: float = 0.0
    cost: Cost | None = None
    deployments: list[Deployment] = Field(default_factory=list)
    routing: dict[str, list[Share]] = Field(default_factory=dict)
    unserved: dict[str, float] = Field(default_factory=dict)
    diagnosis: list[Blocker] | None = None
    backend: str | None = None
    seed: int | None = None
    message: str | None = None
    gpus_by_tier: dict[str, int] | None = None
    schedule: list[WindowPlan] | None = Field(None, description="multi-period: the plan of every demand window")
    base_fleet: list[Deployment] | None = Field(None, description="multi-period: replicas rented for the whole period")
    validation: ValidationRecord | None = Field(None, description="the trace replay that checked the plan")
    simulated_bound: float | None = Field(
        None,
        description="attainment mode, exact method: a proven lower bound on the objective of any plan with every "
        "(option, type) pair simulated (planner.solvers.solve); the plan is within objective − simulated_bound of "
        "that optimum",
    )

    @property
    def has_solution(self) -> bool:
        return self.status in ("optimal", "feasible")


def plan_cost(
    table: OptionTable,
    replicas: dict[Option, int],
    routing: dict[str, dict[Option, float]],
    unserved: dict[str, float],
) -> Cost:
    """The four cost terms of the spec's objective for a concrete solution.

    rental  = Σ_k rental[k]·y[k]; storage = Σ_{k: y[k] ≥ 1} storage[k];
    delay   = Σ_i Σ_k 3600·H·λ_i·ρ_i·e2e_s[i,k]·x[i,k]; unserved = Σ_i 3600·H·λ_i·φ_i·u[i].
    A routed pair without a row contributes no delay (the checker flags it separately).
    """
    inst = table.instance
    rental = sum(rental_per_replica(inst, o) * y for o, y in replicas.items())
    storage = sum(storage_per_option(inst, o) for o, y in replicas.items() if y > 0)
    delay = 0.0
    for q in inst.query_types:
        for o, x in routing.get(q.id, {}).items():
            row = table.row(o, q.id)
            delay += delay_cost(inst, q, row.e2e_s if row is not None else None) * x
    unserved_pen = sum(unserved_cost(inst, q) * unserved.get(q.id, 0.0) for q in inst.query_types)
    total = rental + storage + delay + unserved_pen
    return Cost(rental=rental, storage=storage, delay_penalty=delay, unserved_penalty=unserved_pen, total=total)


def build_plan(
    table: OptionTable,
    *,
    method: str,
    status: Status,
    replicas: dict[Option, int] | None = None,
    routing: dict[str, dict[Option, float]] | None = None,
    unserved: dict[str, float] | None = None,
    objective: float | None = None,
    bound: float | None = None,
    solve_seconds: float = 0.0,
    backend: str | None = None,
    seed: int | None = None,
    message: str | None = None,
    diagnosis: list[Blocker] | None = None,
) -> Plan:
    """Assemble a :class:`Plan` from a solution (y, x, u), cleaning solver round-off.

    ``objective`` defaults to the recomputed total; a solver passes its own objective value so
    the checker can compare the two. The gap is (objective − bound) / objective.
    """
    inst = table.instance
    if replicas is None or status in ("infeasible", "no_solution"):
        return Plan(
            instance=inst.name,
            method=method,
            status=status,
            bound=bound,
            solve_seconds=round(solve_seconds, 4),
            backend=backend,
            seed=seed,
            message=message,
            diagnosis=diagnosis,
        )
    y = {o: round(v) for o, v in replicas.items() if round(v) >= 1}
    x: dict[str, dict[Option, float]] = {}
    u: dict[str, float] = {}
    for q in inst.query_types:
        shares = {o: float(v) for o, v in (routing or {}).get(q.id, {}).items() if v > ZERO}
        un = max(0.0, float((unserved or {}).get(q.id, 0.0)))
        un = 0.0 if un < ZERO else un
        total = sum(shares.values()) + un
        if shares and abs(total - 1.0) < 1e-6:  # solver round-off: make coverage exact
            scale = (1.0 - un) / sum(shares.values())
            shares = {o: v * scale for o, v in shares.items()}
        x[q.id] = shares
        u[q.id] = un
    cost = plan_cost(table, y, x, u)
    obj = cost.total if objective is None else float(objective)
    gap = relative_gap(obj, bound)
    deployments = []
    for o in sorted(y):
        # A split pair's decode pool serves what is routed to its prefill pool (its batch is the
        # decode micro-batch); the prefill pool runs prompts only and keeps vLLM's default.
        via = next((p for p in y if p.role == "prefill" and p.pair == o.pair), o) if o.role == "decode" else o
        batches = [r.batch for t in x if via in x[t] and (r := table.row(o, t)) is not None and r.batch]
        deployments.append(
            Deployment(
                **option_fields(o),
                replicas=y[o],
                gpus=y[o] * o.gpus_per_replica,
                max_num_seqs=max(batches) if batches else None,
            )
        )
    by_tier = gpus_by_tier(deployments)
    return Plan(
        instance=inst.name,
        method=method,
        status=status,
        objective=obj,
        bound=bound,
        gap=gap,
        solve_seconds=round(solve_seconds, 4),
        cost=cost,
        deployments=deployments,
        routing={t: [Share(**option_fields(o), fraction=v) for o, v in sorted(s.items())] for t, s in x.items()},
        unserved=u,
        diagnosis=diagnosis,
        backend=backend,
        seed=seed,
        message=message,
        gpus_by_tier=by_tier,
    )


def relative_gap(objective: float, bound: float | None) -> float | None:
    """(objective − bound) / objective, the reported MIP gap (None without a bound)."""
    if bound is None:
        return None
    return 0.0 if abs(objective) < 1e-12 else max(0.0, (objective - bound) / abs(objective))


def gpus_by_tier(deployments: list[Deployment]) -> dict[str, int]:
    by_tier: dict[str, int] = {}
    for d in deployments:
        by_tier[d.gpu] = by_tier.get(d.gpu, 0) + d.gpus
    return by_tier


def plan_solution(plan: Plan) -> tuple[Replicas, Routing, Unserved]:
    """(y, x, u) of a plan, summing duplicate entries so nothing is silently dropped."""
    y: dict[Option, int] = {}
    for d in plan.deployments:
        y[d.option] = y.get(d.option, 0) + d.replicas
    x: dict[str, dict[Option, float]] = {}
    for t, shares in plan.routing.items():
        row = x.setdefault(t, {})
        for s in shares:
            row[s.option] = row.get(s.option, 0.0) + s.fraction
    return y, x, dict(plan.unserved)


def plan_pairs(plan: Plan) -> set[tuple[Option, str]]:
    """Every (option, query type) a plan routes traffic to, in every window of a schedule."""
    pairs = {(s.option, t) for t, shares in plan.routing.items() for s in shares if s.fraction > 0}
    for w in plan.schedule or []:
        pairs |= {(s.option, t) for t, shares in w.routing.items() for s in shares if s.fraction > 0}
    return pairs


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as a plain mapping in the spec's key order.

    The spec's keys are always present (``bound: null`` says "no bound"); optional extras are
    written only when set.
    """
    doc = plan.model_dump(mode="json")
    for key in (
        "diagnosis",
        "backend",
        "seed",
        "message",
        "gpus_by_tier",
        "cost",
        "schedule",
        "base_fleet",
        "validation",
        "simulated_bound",
    ):
        if doc.get(key) is None:
            doc.pop(key, None)
    for d in doc.get("deployments", []):
        if d.get("max_num_seqs") is None:
            d.pop("max_num_seqs", None)
    _drop_none_budgets(doc)
    return doc


def _drop_none_budgets(node: Any) -> None:
    """Option references without a chosen token budget are written with the spec's four keys."""
    if isinstance(node, dict):
        if "gpu" in node and "tp" in node:
            for key in ("max_num_batched_tokens", "role", "pair"):
                if key in node and node[key] is None:
                    node.pop(key)
        for v in node.values():
            _drop_none_budgets(v)
    elif isinstance(node, list):
        for v in node:
            _drop_none_budgets(v)


# --------------------------------------------------------------------------------------------
# Structure: a plan that can be read against an instance at all
# --------------------------------------------------------------------------------------------

# Far above any fleet a plan describes (10^6 replicas of one option); a larger count is a typo or
# a tampered file, and simulating or exporting it would exhaust memory.
MAX_REPLICAS = 1_000_000
# vLLM's max_num_seqs: the performance model tabulates iteration times up to it.
MAX_NUM_SEQS = 100_000
COVERAGE_TOL = 2e-6  # the checker's coverage tolerance at 1 (1e-6 absolute + 1e-6 relative)


def check_plan_structure(inst: Instance, plan: Plan, label: str, *, routed_deployed: bool = False) -> None:
    """Raise an :class:`InputError` naming ``label`` and the field when ``plan`` is malformed
    against ``inst``: for another instance, naming a model, GPU, query type, TP/PP degree or token
    budget the instance lacks, listing an option twice, replica counts beyond
    :data:`MAX_REPLICAS`, fractions outside [0, 1] or a type's fractions and unserved share not
    adding up to 1. With ``routed_deployed`` (commands that replay traffic through the fleet),
    every share must also go to an option the plan deploys.

    What it does not judge is feasibility (capacity, accuracy, availability, budget, SLOs, cost):
    that is :func:`planner.checker.check_plan`'s job, and a command whose point is to measure a
    plan (``simulate``, ``scale``, ``review``) runs plans that violate it. Every command that reads
    a plan runs this check first, so none of them meets a plan it cannot even look up.
    """
    if plan.instance != inst.name:
        raise InputError(label, "instance", f"plan is for instance {plan.instance!r}, not {inst.name!r}")
    refs = _References(inst)
    deployed = refs.fleet(plan.deployments, label, "deployments")
    if plan.base_fleet is not None:
        refs.fleet(plan.base_fleet, label, "base_fleet")
    if plan.schedule is not None and inst.scaling is None:
        raise InputError(label, "schedule", "the instance has no demand windows (scaling:), the plan a schedule")
    if plan.has_solution:
        refs.routing(plan.routing, plan.unserved, label, "", deployed if routed_deployed else None)
    for n, w in enumerate(plan.schedule or []):
        where = f"schedule[{n}]."
        wdeployed = refs.fleet(w.deployments, label, f"{where}deployments")
        for kind, changes in (("added", w.added), ("removed", w.removed)):
            for j, c in enumerate(changes):
                refs.option(c, label, f"{where}{kind}[{j}]")
                if c.replicas > MAX_REPLICAS:
                    raise InputError(label, f"{where}{kind}[{j}].replicas", f"{c.replicas:,} > {MAX_REPLICAS:,}")
        if plan.has_solution:
            refs.routing(w.routing, w.unserved, label, where, wdeployed if routed_deployed else None)


def refuse_split(plan: Plan, label: str, what: str) -> None:
    """One clear line where a command cannot yet run a plan with split prefill/decode pools
    (:mod:`planner.disaggregation`): ``what`` names the command's work."""
    for n, d in enumerate(plan.deployments):
        if d.role is not None:
            raise InputError(label, f"deployments[{n}].role", f"split prefill/decode pools cannot be {what} yet")


def unknown_names(inst: Instance, plan: Plan) -> list[str]:
    """Each option reference of ``plan`` (deployments, routing, every window) whose model or GPU
    ``inst`` does not have: nothing can be priced or looked up for it, so the checker reports
    these and stops (a plan naming a model the instance lacks once crashed the pricing)."""
    models, gpus = {m.id for m in inst.models}, {g.id for g in inst.gpus}
    refs: list[tuple[str, _OptionRef]] = [(f"deployments[{n}]", d) for n, d in enumerate(plan.deployments)]
    refs += [(f"base_fleet[{n}]", d) for n, d in enumerate(plan.base_fleet or [])]
    refs += [(f"routing.{t}[{n}]", s) for t, shares in plan.routing.items() for n, s in enumerate(shares)]
    for w, wp in enumerate(plan.schedule or []):
        refs += [(f"schedule[{w}].deployments[{n}]", d) for n, d in enumerate(wp.deployments)]
        refs += [
            (f"schedule[{w}].routing.{t}[{n}]", s) for t, shares in wp.routing.items() for n, s in enumerate(shares)
        ]
        refs += [(f"schedule[{w}].{k}[{n}]", c) for k in ("added", "removed") for n, c in enumerate(getattr(wp, k))]
    return [
        f"{where} names {ref.option.key}: " + ("model" if ref.model not in models else "gpu") + " not in the instance"
        for where, ref in refs
        if ref.model not in models or ref.gpu not in gpus
    ]


class _References:
    """What a plan may name in ``inst``: its models, GPUs, query types, degrees and budgets."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.models = {m.id for m in inst.models}
        self.gpus = {g.id for g in inst.gpus}
        self.types = [q.id for q in inst.query_types]
        # Table mode's measurements may list degrees beyond parallelism: they are options too.
        self.tp = set(inst.parallelism.tp) | {e.tp for e in inst.performance}
        self.pp = set(inst.parallelism.pp) | {e.pp for e in inst.performance}
        self.budgets: set[int | None] = {None}
        if inst.performance_mode == "model":
            self.budgets |= set(inst.token_budgets())

    def option(self, ref: _OptionRef, label: str, where: str) -> None:
        if ref.model not in self.models:
            raise InputError(label, f"{where}.model", f"unknown model {ref.model!r}: not in the instance")
        if ref.gpu not in self.gpus:
            raise InputError(label, f"{where}.gpu", f"unknown gpu {ref.gpu!r}: not in the instance")
        if ref.tp not in self.tp:
            raise InputError(label, f"{where}.tp", f"tp {ref.tp} is not a degree of the instance {sorted(self.tp)}")
        if ref.pp not in self.pp:
            raise InputError(label, f"{where}.pp", f"pp {ref.pp} is not a degree of the instance {sorted(self.pp)}")
        if (ref.role is None) != (ref.pair is None):
            raise InputError(label, f"{where}.role", "a split pool names both its role and its pair (or neither)")
        if ref.role is not None and not self.inst.engine.split:
            raise InputError(label, f"{where}.role", "the instance plans no split pools (engine.split is off)")
        b = ref.max_num_batched_tokens
        if b not in self.budgets:
            known = sorted(x for x in self.budgets if x is not None)
            raise InputError(
                label,
                f"{where}.max_num_batched_tokens",
                f"{b} is not a token budget of the instance" + (f" {known}" if known else " (it plans none)"),
            )

    def fleet(self, deployments: list[Deployment], label: str, where: str) -> set[Option]:
        """Check a list of deployments; the options with at least one replica."""
        seen: set[Option] = set()
        for n, d in enumerate(deployments):
            at = f"{where}[{n}]"
            self.option(d, label, at)
            if d.option in seen:
                raise InputError(label, at, f"deployment {d.option.key} is listed twice")
            seen.add(d.option)
            if d.replicas > MAX_REPLICAS:
                raise InputError(label, f"{at}.replicas", f"{d.replicas:,} replicas: at most {MAX_REPLICAS:,}")
            if d.max_num_seqs is not None and not 1 <= d.max_num_seqs <= MAX_NUM_SEQS:
                msg = f"must be in [1, {MAX_NUM_SEQS:,}] (got {d.max_num_seqs})"
                raise InputError(label, f"{at}.max_num_seqs", msg)
        return {d.option for d in deployments if d.replicas > 0}

    def routing(
        self,
        routing: dict[str, list[Share]],
        unserved: dict[str, float],
        label: str,
        where: str,
        deployed: set[Option] | None,
    ) -> None:
        for t in list(routing) + list(unserved):
            if t not in self.types:
                kind = "routing" if t in routing else "unserved"
                raise InputError(label, f"{where}{kind}.{t}", f"unknown query type {t!r}: not in the instance")
        for t, u in unserved.items():
            if not 0 <= u <= 1:
                raise InputError(label, f"{where}unserved.{t}", f"must be in [0, 1] (got {u:g})")
        for t in self.types:
            total = 0.0
            for n, s in enumerate(routing.get(t, [])):
                at = f"{where}routing.{t}[{n}]"
                self.option(s, label, at)
                if s.role == "decode":
                    raise InputError(
                        label, f"{at}.role", "a type is routed to a split pair's prefill pool, not its decode pool"
                    )
                if not 0 <= s.fraction <= 1:
                    raise InputError(label, f"{at}.fraction", f"must be in [0, 1] (got {s.fraction:g})")
                if deployed is not None and s.fraction > 0 and s.option not in deployed:
                    raise InputError(label, at, f"routes to {s.option.key}, which the plan deploys no replica of")
                total += s.fraction
            un = unserved.get(t, 0.0)
            if abs(total + un - 1.0) > COVERAGE_TOL:
                raise InputError(
                    label, f"{where}routing.{t}", f"fractions {total:.6g} + unserved {un:.6g} must add up to 1"
                )


def write_plan(path: str | Path, plan: Plan) -> None:
    write_document(path, plan_document(plan))


def read_plan(path: str | Path) -> Plan:
    doc = read_document(path)
    if not isinstance(doc, dict):
        raise InputError(str(path), "-", "a plan must be a mapping at the top level")
    try:
        return Plan.model_validate(doc)
    except ValidationError as exc:
        from planner.loader import validation_error

        raise validation_error(str(path), exc) from None


def read_plan_for(inst: Instance, path: str | Path, *, routed_deployed: bool = False) -> Plan:
    """:func:`read_plan`, then :func:`check_plan_structure` against ``inst`` naming ``path``."""
    plan = read_plan(path)
    check_plan_structure(inst, plan, str(path), routed_deployed=routed_deployed)
    return plan
