"""Which query type of the instance a trace request belongs to, by rules from a small YAML file.

A trace says nothing about query types, but the plan routes per type, so the simulator needs the
same split the instance was derived with. Rules see only what a router sees at arrival: the
trace file (``source``, an ``fnmatch`` glob on the file stem, case-sensitive) and the prompt
length. Output length is unknown until the request finishes, so it cannot select a type.

.. code-block:: yaml

    traces: [../data/conv.csv]        # optional default trace files, relative to this file
    rules:                            # first match wins
      - {type: code, source: "*code*"}
      - {type: conv-short, source: "*conv*", input_tokens: [1, 1024]}   # inclusive; null = open
    default: null                     # type of unmatched requests; null = counted "unmapped"

The mapping file of ``instances/x.yaml`` is ``instances/x.traces.yml`` (``.yml`` so that tools
globbing ``instances/*.yaml`` for instances do not pick it up); ``.traces.yaml`` is accepted too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import InputError
from planner.fileio import read_document
from planner.problem import Instance
from planner.sim.traces import TraceRequest

TOP_KEYS = ("traces", "rules", "default", "spread_ties")
RULE_KEYS = ("type", "source", "input_tokens")
MAPPING_SUFFIXES = (".traces.yml", ".traces.yaml")


@dataclass(frozen=True, slots=True)
class Rule:
    type: str
    source: str | None = None  # fnmatch glob on TraceRequest.source; None matches every source
    input_min: int = 0
    input_max: float = math.inf  # inclusive; inf = no upper bound

    def matches_source(self, source: str) -> bool:
        return self.source is None or fnmatchcase(source, self.source)


class TypeMapper:
    """Maps a request to a query type id (or None: unmapped). Glob matching is cached per source."""

    def __init__(
        self,
        rules: tuple[Rule, ...],
        type_ids: tuple[str, ...],
        default: str | None = None,
        trace_paths: tuple[Path, ...] = (),
        file: str | None = None,
        spread_ties: bool | str = False,
    ) -> None:
        self.rules = rules
        self.type_ids = type_ids
        self.default = default
        self.trace_paths = trace_paths
        self.file = file
        # The trace's clock is coarse (Mooncake's conversation trace stamps requests in ~3 s
        # steps, up to 28 at one millisecond): replay spreads each group of equal arrival times
        # up to the next distinct time instead of releasing the group at once — evenly (true,
        # "even") or at seeded uniform positions ("random": what independent users' arrival
        # times are given their count, the Poisson process's law; spread_ties()).
        self.spread_ties: str | None = {True: "even", False: None}.get(spread_ties, spread_ties)  # type: ignore[arg-type]
        self._index = {t: k for k, t in enumerate(type_ids)}
        self._by_source: dict[str, tuple[tuple[int, float, str], ...]] = {}

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_file(cls, path: str | Path, instance: Instance) -> TypeMapper:
        p = Path(path)
        return cls.from_data(read_document(p), instance, str(path), p.resolve().parent)

    @classmethod
    def from_data(
        cls, doc: Any, instance: Instance, file: str = "<mapping>", base_dir: Path | None = None
    ) -> TypeMapper:
        """Validate a parsed mapping document; errors name the field (``rules[2].type``)."""
        ids = tuple(q.id for q in instance.query_types)
        if not isinstance(doc, dict):
            raise InputError(file, "-", "a trace mapping must be a mapping with `rules` (and optional traces, default)")
        for key in doc:
            if key not in TOP_KEYS:
                raise InputError(file, str(key), f"unknown key; allowed: {', '.join(TOP_KEYS)}")
        traces = _trace_paths(doc.get("traces"), file, base_dir or Path("."))
        default = doc.get("default")
        if default is not None:
            _check_type(default, ids, file, "default")
        raw_rules = doc.get("rules")
        if raw_rules is None:
            raw_rules = []
        if not isinstance(raw_rules, list):
            raise InputError(file, "rules", "must be a list of rules")
        if not raw_rules and default is None:
            raise InputError(file, "rules", "no rules and no default: every request would be unmapped")
        rules = tuple(_rule(r, ids, file, f"rules[{k}]") for k, r in enumerate(raw_rules))
        spread = doc.get("spread_ties", False)
        if not isinstance(spread, bool) and spread not in SPREAD_MODES:
            raise InputError(file, "spread_ties", "must be true, false, even or random")
        return cls(rules, ids, default, traces, file, spread)

    @classmethod
    def single(cls, instance: Instance) -> TypeMapper:
        """Everything is the instance's only query type: no mapping file needed."""
        ids = tuple(q.id for q in instance.query_types)
        if len(ids) != 1:
            raise InputError(
                None, "query_types", f"the instance has {len(ids)} query types; a trace mapping file is needed"
            )
        return cls((), ids, ids[0])

    # ---------------------------------------------------------------- lookup
    def type_of(self, req: TraceRequest) -> str | None:
        """Called once per request: rules for the source are filtered once, then only bounds are compared."""
        candidates = self._by_source.get(req.source)
        if candidates is None:
            candidates = self._compile(req.source)
        n = req.input_tokens
        for lo, hi, type_id in candidates:
            if lo <= n <= hi:
                return type_id
        return self.default

    def index_of(self, req: TraceRequest) -> int | None:
        """Position of the type in ``instance.query_types`` (what the simulator engine takes)."""
        t = self.type_of(req)
        return None if t is None else self._index[t]

    def _compile(self, source: str) -> tuple[tuple[int, float, str], ...]:
        out: list[tuple[int, float, str]] = []
        for r in self.rules:
            if r.matches_source(source):
                out.append((r.input_min, r.input_max, r.type))
                if r.input_min <= 1 and r.input_max == math.inf:
                    break  # catches every request: later rules are unreachable for this source
        candidates = tuple(out)
        self._by_source[source] = candidates
        return candidates

    def __repr__(self) -> str:
        return f"TypeMapper({len(self.rules)} rules, default={self.default!r}, file={self.file!r})"


def mapping_file_for(instance_path: str | Path) -> Path | None:
    """The trace mapping file shipped next to an instance file, if there is one."""
    p = Path(instance_path)
    for suffix in MAPPING_SUFFIXES:
        candidate = p.with_name(p.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _trace_paths(value: Any, file: str, base_dir: Path) -> tuple[Path, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InputError(file, "traces", "must be a list of trace file paths (relative to this file)")
    out = []
    for k, v in enumerate(value):
        if not isinstance(v, str) or not v.strip():
            raise InputError(file, f"traces[{k}]", f"must be a file path, got {v!r}")
        out.append(Path(os.path.normpath(base_dir / v)))
    return tuple(out)


def _check_type(value: Any, ids: tuple[str, ...], file: str, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(file, where, f"must be a query type id, got {value!r}")
    if value not in ids:
        raise InputError(file, where, f"unknown query type {value!r}; the instance has {', '.join(ids)}")
    return value


def _rule(raw: Any, ids: tuple[str, ...], file: str, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise InputError(file, where, "a rule must be a mapping with `type` and optional `source`, `input_tokens`")
    for key in raw:
        if key == "output_tokens":
            raise InputError(
                file,
                f"{where}.output_tokens",
                "output length cannot select a type: it is unknown when the request arrives; "
                "use source or input_tokens",
            )
        if key not in RULE_KEYS:
            raise InputError(file, f"{where}.{key}", f"unknown key; allowed: {', '.join(RULE_KEYS)}")
    if "type" not in raw:
        raise InputError(file, f"{where}.type", "required field is missing")
    type_id = _check_type(raw["type"], ids, file, f"{where}.type")
    source = raw.get("source")
    if source is not None and (not isinstance(source, str) or not source):
        raise InputError(file, f"{where}.source", f"must be a non-empty glob such as '*conv*', got {source!r}")
    lo, hi = 0, math.inf
    if "input_tokens" in raw:
        lo, hi = _bounds(raw["input_tokens"], file, f"{where}.input_tokens")
    return Rule(type_id, source, lo, hi)


def _bounds(value: Any, file: str, where: str) -> tuple[int, float]:
    shape = "must be [min, max]: inclusive whole token counts, null for an open end"
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise InputError(file, where, f"{shape}, got {value!r}")
    for v in value:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise InputError(file, where, f"{shape}, got {value!r}")
    lo = 0 if value[0] is None else value[0]
    hi = math.inf if value[1] is None else value[1]
    if lo < 0:
        raise InputError(file, where, f"min must be >= 0, got {lo}")
    if hi < lo:
        raise InputError(file, where, f"max {hi} is below min {lo}: the rule matches nothing")
    return lo, hi


FeedRow = tuple[Any, ...]  # (uid, type or None, arrival s, input, output[, prefix-block ids])


SPREAD_MODES = ("even", "random")


def spread_ties(feed: Iterator[FeedRow], mode: str = "even") -> Iterator[FeedRow]:
    """A feed (uid, type, arrival s, input, output[, ids]; sorted by arrival) with each group of equal
    arrival times spread over [t, t_next): ``even``, the m-th of n at t + m·(t_next − t)/n;
    ``random``, at sorted uniform positions seeded by t (the group's first request stays at t;
    deterministic). The last group keeps the gap before it (or stays at t when there is none).

    Even spreading is more regular than any traffic of independent users (mooncake-2025's
    long-32k: counts in 1-s bins at 0.7 of Poisson's variance), and regular arrivals spare the
    short replies that a neighbour's prompt chunks would slow: on llama-3.1-8b/a100/tp4 perfectly
    regular arrivals carry 3.5× the Poisson rate at 0.99 TPOT attainment. ``random`` keeps what the
    trace records — how many arrived in each tick — and no more."""
    group: list[FeedRow] = []
    last_gap = 0.0

    def place(t: float, gap: float, k: int) -> list[float]:
        if mode == "even" or k == 1 or gap <= 0:
            return [t + m * gap / k for m in range(k)]
        rng = np.random.default_rng(round(t * 1e6) & 0xFFFFFFFF)
        return [t, *(t + np.sort(rng.uniform(0.0, gap, k - 1))).tolist()]

    for row in feed:
        if group and row[2] > group[0][2]:
            t = group[0][2]
            last_gap = row[2] - t
            for row0, at in zip(group, place(t, last_gap, len(group)), strict=True):
                yield (*row0[:2], at, *row0[3:])
            group = []
        group.append(row)
    if group:
        t = group[0][2]
        for row0, at in zip(group, place(t, last_gap, len(group)), strict=True):
            yield (*row0[:2], at, *row0[3:])
