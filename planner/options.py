"""The option table: every candidate (option, query type) with its figures, computed once.

Every solver and the checker read this table; no other module predicts performance or prices an
option. Coefficients (all per period H, $ unless stated):

=================  ==========================================================================
rental[k]          H · price_per_hour(g) · tp · pp                     $ per replica
storage[k]         H · storage_price_per_gb_hour · params_b · weight_bytes   $ when option k is used
gpus[k]            tp · pp                                             GPUs per replica
load[i,k]          λ_i / throughput_rps[i,k]                           replicas of capacity per unit x
delay[i,k]         3600 · H · λ_i · delay_penalty_i · e2e_s[i,k]       $ per unit x
unserved[i]        3600 · H · λ_i · unserved_penalty_i                 $ per unit u
error[i,k]         e[model(k)][i]                                      error rate
=================  ==========================================================================

A pair is *eligible* when it is a candidate and its ttft_s, tpot_s and e2e_s meet type i's SLO.

**Shared pools at attainment targets.** Every running decode of a replica advances at the pace of
its iterations, so a pool that serves a type j with a tight TPOT limit τ_j holds every type i it
serves to min(τ_i, τ_j). For each option k and each pair of eligible types with τ_i > τ_j the table
also holds type i's capacity at TPOT limit τ_j (``tight``; estimated, then simulated when a
solution uses it) and its coefficient

    tight_load[j,i,k]   λ_i / throughput_rps[i,k | tpot ≤ τ_j]     (None: i cannot meet τ_j on k)

which the solvers and the checker use for every pool that serves j (:mod:`planner.solvers.milp`).
Mean-latency mode and table mode keep one figure per pair (their meaning is the paper's).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.gcpause import paused_gc
from planner.perf import ReplicaModel, structural_reason
from planner.problem import SLO, Instance, PerformanceEntry, PerfParams, QueryType

SLO_TOL = 1e-9


@dataclass(frozen=True, order=True)
class Option:
    """One deployable configuration: a model on a GPU tier with tp × pp GPUs per replica, and the
    engine's token budget (vLLM ``max_num_batched_tokens``) when the planner chooses it (None: the
    instance's ``performance_params.prefill_chunk_tokens``, table mode and mean-latency mode)."""

    model: str
    gpu: str
    tp: int
    pp: int
    budget: int | None = None
    # Split serving (:mod:`planner.disaggregation`): the pool's role ("prefill" | "decode") and
    # its pair's id; "" for a colocated option (strings, not None, so options stay orderable).
    role: str = ""
    pair: str = ""

    def __hash__(self) -> int:
        # Cached: a fleet table (200×40×40) looks options up ~10⁷ times while it is built, and the
        # generated hash builds a tuple of seven fields each time. Not pickled (__getstate__):
        # string hashes differ from one process to the next.
        d = self.__dict__
        h: int | None = d.get("_hash")
        if h is None:  # written into __dict__ directly: the frozen __setattr__ forbids it
            h = d["_hash"] = hash((self.model, self.gpu, self.tp, self.pp, self.budget, self.role, self.pair))
        return h

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def key(self) -> str:
        if self.role:
            return f"{self.pair}/{self.role}"
        base = f"{self.model}/{self.gpu}/tp{self.tp}/pp{self.pp}"
        return base if self.budget is None else f"{base}/mbt{self.budget}"


@dataclass(frozen=True)
class Row:
    """One (option, query type): its figures and whether (and why not) it is eligible."""

    option: Option
    query_type: str
    candidate: bool
    eligible: bool
    reason: str
    source: str  # "model", "table", "measured" (a performance entry overriding the model),
    # "model-estimate" / "simulated" (attainment targets: planner.capacity)
    throughput_rps: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    batch: int | None = None
    kv_capacity_tokens: int | None = None


def slo_violations(slo: SLO, ttft: float | None, tpot: float | None, e2e: float | None) -> list[str]:
    """The SLO keys a set of figures misses (an unknown figure misses any limit set on it)."""
    tol = 1 + SLO_TOL
    if (
        (slo.ttft_s is None or (ttft is not None and ttft <= slo.ttft_s * tol))
        and (slo.tpot_s is None or (tpot is not None and tpot <= slo.tpot_s * tol))
        and (slo.e2e_s is None or (e2e is not None and e2e <= slo.e2e_s * tol))
    ):
        return []  # the common case, checked without building the messages (10⁶ rows at fleet scale)
    out = []
    for name, val, lim in (("ttft", ttft, slo.ttft_s), ("tpot", tpot, slo.tpot_s), ("e2e", e2e, slo.e2e_s)):
        if lim is None:
            continue
        if val is None:
            out.append(f"no {name}_s figure for SLO {lim:.3g} s")
        elif val > lim * (1 + SLO_TOL):
            out.append(f"{name} {val:.3g} s > SLO {lim:.3g} s")
    return out


def _measured_row(option: Option, q: QueryType, e: PerformanceEntry, base: Row | None, source: str) -> Row:
    """A row from a performance entry; figures it omits keep the model's (model mode only)."""
    ttft = e.ttft_s if e.ttft_s is not None else (base.ttft_s if base else None)
    tpot = e.tpot_s if e.tpot_s is not None else (base.tpot_s if base else None)
    e2e = e.e2e_s if e.e2e_s is not None else (base.e2e_s if base else None)
    if e2e is None and ttft is not None and tpot is not None:
        e2e = ttft + max(q.output_tokens - 1.0, 0.0) * tpot
    missed = slo_violations(q.slo, ttft, tpot, e2e)
    if e2e is None and q.delay_penalty > 0:
        missed.append("no e2e_s figure to price the delay penalty")
    return Row(
        option,
        q.id,
        True,
        not missed,
        "; ".join(missed),
        source,
        e.throughput_rps,
        ttft,
        tpot,
        e2e,
        base.batch if base else None,
        base.kv_capacity_tokens if base else None,
    )


def model_options(inst: Instance) -> list[Option]:
    """Every (model, gpu, tp, pp[, token budget]) that model mode enumerates."""
    budgets: tuple[int | None, ...] = (
        inst.token_budgets() if inst.engine.max_num_batched_tokens or inst.slo_attainment != "mean" else (None,)
    )
    return [
        Option(m.id, g.id, tp, pp, b)
        for m in inst.models
        for g in inst.gpus
        for tp in inst.parallelism.tp
        for pp in inst.parallelism.pp
        for b in budgets
    ]


def replica_params(inst: Instance, option: Option) -> PerfParams:
    """The instance's performance factors with the option's token budget."""
    p = inst.performance_params
    if option.budget is None or option.budget == p.prefill_chunk_tokens:
        return p
    return p.model_copy(update={"prefill_chunk_tokens": option.budget})


Tight = dict[tuple[Option, str, float], Row]  # (option, type, TPOT limit) → the type's row held to it


def tpot_limit(q: QueryType) -> float:
    return q.slo.tpot_s if q.slo.tpot_s is not None else math.inf


def _model_rows(inst: Instance) -> tuple[dict[tuple[Option, str], Row], Tight]:
    if any(inst.attainment(q) is not None for q in inst.query_types):
        return _attainment_rows(inst)
    rows: dict[tuple[Option, str], Row] = {}
    types = inst.query_types
    inf = math.inf
    I = np.array([q.input_tokens for q in types])  # noqa: E741
    O = np.array([q.output_tokens for q in types])  # noqa: E741
    slo = {
        name: np.array([getattr(q.slo, name) if getattr(q.slo, name) is not None else inf for q in types])
        for name in ("ttft_s", "tpot_s", "e2e_s")
    }
    for opt in model_options(inst):
        m, g, tp, pp = inst.model(opt.model), inst.gpu(opt.gpu), opt.tp, opt.pp
        why = structural_reason(m, g, tp, pp)
        if why:
            for q in types:
                rows[opt, q.id] = Row(opt, q.id, False, False, why, "model")
            continue
        rm = ReplicaModel(m, g, tp, pp, replica_params(inst, opt), inst.calibration)
        f = rm.figures(
            I,
            O,
            slo["ttft_s"],
            slo["tpot_s"],
            slo["e2e_s"],
            inst.max_utilization,
            m.max_context_tokens,
        )
        kv = rm.fit().kv_capacity_tokens
        for j, q in enumerate(types):
            if not f.candidate[j]:  # figures of a replica that cannot run mean nothing
                rows[opt, q.id] = Row(opt, q.id, False, False, f.reason[j], "model", kv_capacity_tokens=kv)
                continue
            rows[opt, q.id] = Row(
                opt,
                q.id,
                True,
                bool(f.eligible[j]),
                f.reason[j],
                "model",
                float(f.throughput_rps[j]),
                float(f.ttft_s[j]),
                float(f.tpot_s[j]),
                float(f.e2e_s[j]),
                int(f.batch[j]),
                kv,
            )
    return rows, {}


def _attainment_rows(inst: Instance) -> tuple[dict[tuple[Option, str], Row], Tight]:
    """Rows at attainment targets: each candidate pair starts with the analytic estimate of
    :mod:`planner.capacity` (``source: model-estimate``); :func:`check_pairs` replaces the pairs a
    solution uses with simulated figures (``source: simulated``). Also the rows of types held to a
    tighter TPOT limit of another type eligible on the same option (module docstring)."""
    from planner import capacity

    rows: dict[tuple[Option, str], Row] = {}
    tight: Tight = {}
    types = inst.query_types
    for opt in model_options(inst):
        m, g = inst.model(opt.model), inst.gpu(opt.gpu)
        why = structural_reason(m, g, opt.tp, opt.pp)
        if why:
            for q in types:
                rows[opt, q.id] = Row(opt, q.id, False, False, why, "model")
            continue
        rm = ReplicaModel(m, g, opt.tp, opt.pp, replica_params(inst, opt), inst.calibration)
        fit = rm.fit()
        if not fit.fits:
            for q in types:
                rows[opt, q.id] = Row(opt, q.id, False, False, fit.reason, "model")
            continue
        kv = fit.kv_capacity_tokens
        engine = capacity.Engine.of(rm, opt)
        for j, q in enumerate(types):
            total = q.input_tokens + q.output_tokens
            if m.max_context_tokens is not None and total > m.max_context_tokens:
                why = f"input+output {total:.0f} tokens > max context {m.max_context_tokens}"
                rows[opt, q.id] = Row(opt, q.id, False, False, why, "model", kv_capacity_tokens=kv)
                continue
            # Always the estimate, never figures this process simulated before: a solve's lazy
            # path (and plan) must not depend on the process's history (check_pairs brings them in).
            cap = capacity.estimate(inst, engine, opt, j, _target(inst, q))
            rows[opt, q.id] = _capacity_row(opt, q, cap, kv)
        eligible = [j for j, q in enumerate(types) if rows[opt, q.id].eligible]
        for lvl in sorted({tpot_limit(types[j]) for j in eligible}):
            for i in eligible:
                q = types[i]
                if tpot_limit(q) > lvl:
                    cap = capacity.estimate(inst, engine, opt, i, _target(inst, q), lvl)
                    tight[opt, q.id, lvl] = _capacity_row(opt, q, cap, kv)
    return rows, tight


def _capacity_row(opt: Option, q: QueryType, cap: Any, kv: int | None) -> Row:
    eligible = cap.rate_rps > 0
    return Row(
        opt,
        q.id,
        True,
        eligible,
        cap.reason,
        "simulated" if cap.simulated else "model-estimate",
        cap.rate_rps if eligible else None,
        cap.ttft_s,
        cap.tpot_s,
        cap.e2e_s,
        cap.max_num_seqs,
        kv,
    )


def _pair_array(pairs: list[tuple[int, int]]) -> np.ndarray:
    """A list of (type, option) index pairs as an (n, 2) int array (twice as fast as np.asarray)."""
    flat = np.fromiter(itertools.chain.from_iterable(pairs), dtype=np.int64, count=2 * len(pairs))
    return flat.reshape(-1, 2)


@dataclass
class OptionTable:
    """All rows, plus dense coefficients over the options K that have an eligible row."""

    instance: Instance
    rows: list[Row]
    options: list[Option] = field(default_factory=list)
    type_ids: list[str] = field(default_factory=list)
    rental: np.ndarray = field(default_factory=lambda: np.zeros(0))
    storage: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gpus: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    tier: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    arrival: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unserved: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pairs: list[tuple[int, int]] = field(default_factory=list)
    load: dict[tuple[int, int], float] = field(default_factory=dict)
    delay: dict[tuple[int, int], float] = field(default_factory=dict)
    error: dict[tuple[int, int], float] = field(default_factory=dict)
    by_key: dict[tuple[Option, str], Row] = field(default_factory=dict)
    by_option: dict[Option, list[Row]] = field(default_factory=dict)
    # Validation (planner.validation): capacity factors (derate_factor: by type id and by
    # (option, type)) and dropped pairs, kept when the lazy solve replaces estimates with
    # simulated figures.
    derate: dict[str | tuple[Option, str], float] = field(default_factory=dict)
    dropped: set[tuple[Option, str]] = field(default_factory=set)
    # Shared pools (module docstring): rows held to another type's tighter TPOT, and their loads.
    tight: Tight = field(default_factory=dict)
    tight_load: dict[tuple[int, int, int], float | None] = field(default_factory=dict)
    # Split prefill/decode pairs (instance engine.split; planner.disaggregation): beside the
    # colocated options, read by the exact model, the plan and the checker only.
    split: Any = None
    # pair_arrays' cache: ((pairs, load, delay, error), their sizes, arrays); not part of the
    # table's value, not pickled
    _pair_cache: Any = field(default=None, repr=False, compare=False)

    def row(self, option: Option, type_id: str) -> Row | None:
        if option.role:  # a split pair's pool: its rows live beside the colocated ones
            return None if self.split is None else self.split.by_key.get((option, type_id))
        return self.by_key.get((option, type_id))

    def pair_arrays(self, pairs: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pairs as an (n, 2) array, load, delay, error) over ``pairs`` (default: every eligible
        pair, in the order of :attr:`pairs`); read-only arrays.

        Why: the heuristics' dense arrays and the matrix model read ~10⁶ coefficients at fleet
        scale (200×40×40), where a dict lookup per pair cost ~0.25 s per coefficient and per
        model built. Over every pair they are read in one pass, once per table
        (:meth:`_every_pair`); any other list of pairs (a subset, another order) is looked up
        pair by pair."""
        every = self._every_pair()
        if pairs is None:
            if every is not None:
                return every
            P = _pair_array(self.pairs)
        else:
            P = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
            if every is not None and len(P) == len(every[0]) and np.array_equal(P, every[0]):
                return every
        keys = [(int(i), int(k)) for i, k in P]
        load, delay, error = (np.fromiter((d[key] for key in keys), dtype=float, count=len(keys)) for d in self._coef())
        return P, load, delay, error

    def _every_pair(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """:meth:`pair_arrays` over every pair, or None where the dicts do not line up with
        :attr:`pairs`. :func:`_with_coefficients` fills ``load``, ``delay`` and ``error`` in the
        order of ``pairs``, one entry each, and nothing changes them afterwards, so their values
        line up; the result is cached for these very objects at these sizes (a list or dict
        replaced or grown by hand is read afresh)."""
        key = (self.pairs, self.load, self.delay, self.error)
        sizes = tuple(len(c) for c in key)
        cached = self._pair_cache
        if cached is not None and all(a is b for a, b in zip(cached[0], key, strict=True)) and cached[1] == sizes:
            return cached[2]  # type: ignore[no-any-return]
        n = len(self.pairs)
        if not n == len(self.load) == len(self.delay) == len(self.error):
            return None
        out = (_pair_array(self.pairs), *(np.fromiter(d.values(), dtype=float, count=n) for d in self._coef()))
        for a in out:
            a.setflags(write=False)
        self._pair_cache = (key, sizes, out)
        return out

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without :meth:`pair_arrays`' cache (tens of MB at fleet scale; rebuilt in 0.1 s)."""
        return {**self.__dict__, "_pair_cache": None}

    def _coef(self) -> tuple[dict[tuple[int, int], float], ...]:
        return (self.load, self.delay, self.error)

    def option_index(self, option: Option) -> int | None:
        try:
            return self.options.index(option)
        except ValueError:
            return None

    def rows_of(self, option: Option) -> list[Row]:
        """Every type's row of ``option`` (a split pair's pool: from the split table)."""
        if not option.role:
            return self.by_option.get(option, [])
        return [] if self.split is None else self.split.by_option.get(option, [])

    def deployable(self, option: Option) -> str:
        """ "" when ``option`` can be deployed at all, else why not (used by the checker)."""
        rows = self.rows_of(option)
        if not rows:
            return f"option {option.key} is not in the option table"
        if any(r.candidate for r in rows):
            return ""
        return rows[0].reason

    def eligible_rows(self) -> list[Row]:
        return [r for r in self.rows if r.eligible]


def _target(inst: Instance, q: QueryType) -> float:
    """Attainment target of type q in an attainment-mode table (a type that keeps mean semantics
    there is measured at the median)."""
    target = inst.attainment(q)
    return 0.5 if target is None else target


def needs_checks(table: OptionTable) -> bool:
    """Does the table still hold analytic estimates (attainment mode) that a solution must check?"""
    rows = [*table.rows, *table.tight.values(), *(table.split.rows if table.split is not None else ())]
    return any(r.source == "model-estimate" and r.eligible for r in rows)


def estimated(table: OptionTable) -> bool:
    """Does any row still hold an analytic estimate, eligible or not (a pair the estimate finds
    below the target may meet it when simulated)?"""
    split = table.split.rows if table.split is not None else ()
    return any(r.source == "model-estimate" for r in (*table.rows, *table.tight.values(), *split))


def pending_checks(
    table: OptionTable, pairs: Iterable[tuple[Option, str]]
) -> dict[tuple[Option, str, float | None], Any]:
    """The capacity keys :func:`check_pairs` would simulate for these pairs, by (option, type,
    tighter TPOT limit or None): the pairs still estimated, and, for options that serve several of
    the types, those types' rows held to each other's tighter TPOT limits. Empty: nothing left."""
    from planner import capacity

    inst = table.instance
    index = {q.id: j for j, q in enumerate(inst.query_types)}
    pairs = set(pairs)
    keys: dict[tuple[Option, str, float | None], Any] = {}
    for o, t in pairs:
        row = table.row(o, t)
        if row is None or row.source != "model-estimate":
            continue
        if o.role:  # a split pair (routing names its prefill pool): both sides' keys
            s = table.split.index(o)
            if s is not None and (index[t], s) in table.split.keys:
                keys[o, t, None] = table.split.keys[index[t], s]
            continue
        keys[o, t, None] = capacity.make_key(inst, o, index[t], _target(inst, inst.query_types[index[t]]))
    # A pool that serves several types holds each to the tightest TPOT among them.
    levels: dict[Option, set[float]] = {}
    for o, t in pairs:
        levels.setdefault(o, set()).add(tpot_limit(inst.query_types[index[t]]))
    for o, t in pairs:
        q = inst.query_types[index[t]]
        for lvl in levels[o]:
            row = table.tight.get((o, t, lvl))
            if lvl < tpot_limit(q) and row is not None and row.source == "model-estimate":
                keys[o, t, lvl] = capacity.make_key(inst, o, index[t], _target(inst, q), lvl)
    return keys


def check_pairs(table: OptionTable, pairs: Iterable[tuple[Option, str]]) -> OptionTable:
    """The table with :func:`pending_checks`' rows replaced by simulated capacities
    (:mod:`planner.capacity`; cached, so checking a pair twice costs nothing); the same table
    object when nothing is left to simulate."""
    from planner import capacity

    keys = pending_checks(table, pairs)
    if not keys:
        return table
    inst = table.instance
    index = {q.id: j for j, q in enumerate(inst.query_types)}
    flat = [k for v in keys.values() for k in (v if isinstance(v, tuple) else (v,))]
    caps = capacity.measure_many(inst, flat)
    fresh = {}
    split: dict[tuple[int, int], tuple[Any, Any]] = {}
    for (o, t, lvl), key in keys.items():
        if o.role:  # (prefill side, decode side) of a split pair
            split[index[t], table.split.index(o)] = (caps[key[0]], caps[key[1]])
            continue
        kv = _row_at(table, o, t, lvl).kv_capacity_tokens
        fresh[o, t, lvl] = _capacity_row(o, inst.query_types[index[t]], caps[key], kv)
    out = _with_rows(table, fresh)
    if split:
        out.split = table.split.with_capacities(inst, split, table.derate, table.dropped)
    return out


def _row_at(table: OptionTable, o: Option, t: str, lvl: float | None) -> Row:
    """The table's row of (o, t), held to the tighter TPOT limit ``lvl`` when given."""
    return table.by_key[o, t] if lvl is None else table.tight[o, t, lvl]


def _with_rows(table: OptionTable, fresh: Mapping[tuple[Option, str, float | None], Row]) -> OptionTable:
    """The table with ``fresh`` rows (by option, type and tighter TPOT limit or None) in place of
    its own, each under the table's dropped pairs and derating, the coefficients recomputed."""
    rows, tight = dict(table.by_key), dict(table.tight)
    for (o, t, lvl), row in fresh.items():
        if (o, t) in table.dropped:
            row = replace(row, eligible=False, reason=_row_at(table, o, t, lvl).reason)
        elif (f := derate_factor(table.derate, o, t)) != 1.0 and row.throughput_rps is not None:
            row = replace(row, throughput_rps=row.throughput_rps * f)
        if lvl is None:
            rows[o, t] = row
        else:
            tight[o, t, lvl] = row
    ordered = sorted(rows.values(), key=lambda r: (r.option, r.query_type))
    out = _with_coefficients(table.instance, ordered, rows, tight)
    out.derate, out.dropped = dict(table.derate), set(table.dropped)
    out.split = table.split
    return out


def relaxed(table: OptionTable) -> OptionTable:
    """The table with every row still estimated replaced by its rate bound (a relaxation): the
    rate r̄ that a simulation never exceeds and the idle ceiling's eligibility
    (:func:`planner.capacity.rate_bound`), no delay cost (a latency under load is never below
    zero; the bound drops the term rather than guess it), the table's derating and dropped pairs
    as they are. Every plan feasible with the rows simulated is feasible here at no higher cost,
    so a MILP's proven bound on this table bounds the optimum of the fully simulated table
    (:func:`planner.solvers.solve`)."""
    from planner import capacity

    inst = table.instance
    index = {q.id: j for j, q in enumerate(inst.query_types)}
    fresh = {}
    for o, t, lvl, old in (
        *((o, t, None, r) for (o, t), r in table.by_key.items()),
        *((o, t, lvl, r) for (o, t, lvl), r in table.tight.items()),
    ):
        if old.source == "model-estimate":
            q = inst.query_types[index[t]]
            cap = capacity.rate_bound(inst, o, index[t], _target(inst, q), lvl)
            row = _capacity_row(o, q, cap, old.kv_capacity_tokens)
            fresh[o, t, lvl] = replace(row, source="rate-bound", e2e_s=0.0)
    out = _with_rows(table, fresh)
    sp = table.split
    if sp is not None:  # each estimated side at its search's top rate, which measure() never exceeds
        tops = {
            (j, s): tuple(capacity.Capacity(k.top, 0.0, 0.0, 0.0, 1.0, 1.0, k.batch or 0, False) for k in ks)
            for (j, s), ks in sp.keys.items()
            if sp.estimated(s, inst.query_types[j].id)
        }
        out.split = sp.with_capacities(inst, tops, table.derate, table.dropped, source="rate-bound")
    return out


def derate_factor(derate: Mapping[str | tuple[Option, str], float], o: Option, t: str) -> float:
    """The capacity factor of (o, t) in a table's ``derate``: its type's times its own pair's."""
    return derate.get(t, 1.0) * derate.get((o, t), 1.0)


def derate_options(
    table: OptionTable,
    factors: Mapping[str | tuple[Option, str], float],
    dropped: set[tuple[Option, str]] | None = None,
) -> OptionTable:
    """The table with capacities multiplied by the validation loop's measured factors
    (:mod:`planner.validation`): a type id's factor applies to the type on every option, an
    (option, type) pair's to that pair alone, both cumulative from the base table; the
    ``dropped`` (option, type) pairs are made ineligible."""
    dropped = dropped or set()
    if not factors and not dropped:
        return table

    def derated(o: Option, t: str, r: Row) -> Row:
        if not r.eligible or r.throughput_rps is None:
            return r
        if (o, t) in dropped:
            return replace(r, eligible=False, reason="validation: misses its target at any replica count")
        new, old = derate_factor(factors, o, t), derate_factor(table.derate, o, t)
        if new != old:
            return replace(r, throughput_rps=r.throughput_rps * new / old)
        return r

    rows = {(o, t): derated(o, t, r) for (o, t), r in table.by_key.items()}
    tight = {(o, t, lvl): derated(o, t, r) for (o, t, lvl), r in table.tight.items()}
    ordered = sorted(rows.values(), key=lambda r: (r.option, r.query_type))
    out = _with_coefficients(table.instance, ordered, rows, tight)
    out.derate, out.dropped = dict(factors), set(table.dropped) | dropped
    out.split = (
        None
        if table.split is None
        else table.split.derated([q.id for q in table.instance.query_types], factors, table.derate, dropped)
    )
    return out


def rental_per_replica(inst: Instance, option: Option) -> float:
    return inst.period_hours * inst.gpu(option.gpu).price_per_hour * option.gpus_per_replica


def storage_per_option(inst: Instance, option: Option) -> float:
    return inst.period_hours * inst.storage_price_per_gb_hour * inst.model(option.model).weights_gb


def delay_cost(inst: Instance, q: QueryType, e2e_s: float | None) -> float:
    """$ per period for routing all of type q to an option whose e2e is ``e2e_s``."""
    if q.delay_penalty == 0:
        return 0.0
    return 3600.0 * inst.period_hours * q.arrival_rate * q.delay_penalty * (e2e_s or 0.0)


def unserved_cost(inst: Instance, q: QueryType) -> float:
    """$ per period for leaving all of type q unserved."""
    return 3600.0 * inst.period_hours * q.arrival_rate * q.unserved_penalty


@paused_gc()  # ~10⁶ rows at fleet scale (planner.gcpause)
def build_option_table(inst: Instance) -> OptionTable:
    """Compute every row (model or table mode, with performance overrides) and the coefficients."""
    types = {q.id: q for q in inst.query_types}
    rows: dict[tuple[Option, str], Row] = {}
    tight: Tight = {}
    if inst.performance_mode != "table":
        rows, tight = _model_rows(inst)
    same: dict[tuple[str, str, int, int], Option] = {}  # one object per option: lookups then match by identity
    for e in inst.performance:
        opt = same.get((e.model, e.gpu, e.tp, e.pp))
        if opt is None:
            opt = same[e.model, e.gpu, e.tp, e.pp] = Option(e.model, e.gpu, e.tp, e.pp)
        base = rows.get((opt, e.query_type))
        source = "table" if inst.performance_mode == "table" else "measured"
        rows[opt, e.query_type] = _measured_row(opt, types[e.query_type], e, base, source)

    # By (option, type): each distinct option ranked once, so the 10⁶ comparisons of a fleet table
    # compare integers, not option dataclasses (the same order).
    rank = {o: n for n, o in enumerate(sorted({r.option for r in rows.values()}))}
    ordered = sorted(rows.values(), key=lambda r: (rank[r.option], r.query_type))
    table = _with_coefficients(inst, ordered, rows, tight)
    if inst.engine.split:
        from planner.disaggregation import split_table

        table.split = split_table(inst)  # its rows are looked up through row() and deployable()
    return table


@paused_gc()
def with_instance(table: OptionTable, inst: Instance) -> OptionTable:
    """The same rows under another instance that differs only in arrival rates, period length or
    budget (a demand window): figures do not depend on those, the coefficients are recomputed."""
    out = _with_coefficients(inst, table.rows, table.by_key, table.tight)
    out.derate, out.dropped = dict(table.derate), set(table.dropped)
    out.split = table.split  # split pairs and scaling are exclusive (problem._check_split)
    return out


def _with_coefficients(
    inst: Instance, ordered: list[Row], rows: dict[tuple[Option, str], Row], tight: Tight | None = None
) -> OptionTable:
    types = {q.id: q for q in inst.query_types}
    table = OptionTable(instance=inst, rows=ordered, by_key=rows, tight=tight or {})
    for r in ordered:
        table.by_option.setdefault(r.option, []).append(r)
    table.type_ids = [q.id for q in inst.query_types]
    type_index = {t: i for i, t in enumerate(table.type_ids)}
    table.options = sorted(o for o, rs in table.by_option.items() if any(r.eligible for r in rs))
    k_index = {o: k for k, o in enumerate(table.options)}
    tier_index = {g.id: n for n, g in enumerate(inst.gpus)}
    table.rental = np.array([rental_per_replica(inst, o) for o in table.options])
    table.storage = np.array([storage_per_option(inst, o) for o in table.options])
    table.gpus = np.array([o.gpus_per_replica for o in table.options], dtype=int)
    table.tier = np.array([tier_index[o.gpu] for o in table.options], dtype=int)
    table.arrival = np.array([q.arrival_rate for q in inst.query_types])
    table.unserved = np.array([unserved_cost(inst, q) for q in inst.query_types])
    last, k = None, -1
    for r in ordered:
        if not r.eligible:
            continue
        if r.option is not last:  # rows come grouped by option: one lookup per run
            last, k = r.option, k_index[r.option]
        i = type_index[r.query_type]
        q = types[r.query_type]
        assert r.throughput_rps is not None
        table.pairs.append((i, k))
        table.load[i, k] = q.arrival_rate / r.throughput_rps
        table.delay[i, k] = delay_cost(inst, q, r.e2e_s)
        table.error[i, k] = inst.error(r.option.model, q.id)
    if not any(inst.attainment(q) is not None for q in inst.query_types) or inst.performance_mode == "table":
        return table  # one figure per pair (mean and table modes): no shared-pool rows
    by_k: dict[int, list[int]] = {}
    for i, k in table.pairs:
        by_k.setdefault(k, []).append(i)
    for k, members in by_k.items():
        o = table.options[k]
        for j in members:
            lvl = tpot_limit(inst.query_types[j])
            for i in members:
                q = inst.query_types[i]
                if tpot_limit(q) > lvl:
                    r = table.tight.get((o, q.id, lvl))
                    ok = r is not None and r.eligible and r.throughput_rps
                    table.tight_load[j, i, k] = q.arrival_rate / r.throughput_rps if ok else None  # type: ignore[union-attr,operator]
    return table
