"""A plan's replay on a trace, without the command line: what ``simulate``, ``scale``,
``solve --validate``, ``demand`` and ``review`` share.

The trace options as one value (:class:`TraceArgs`) and their checks, the trace and query-type
mapping they name (:func:`trace_feed`), the request stream the simulator takes (:func:`feed_of`),
the checks a replay needs before it starts (:func:`check_policy`, :func:`needs_model_mode`) and
one plan's replay (:func:`run_simulation`). Bad input raises :class:`~planner.errors.InputError`;
turning it into the command line's one line is the caller's (:func:`planner.console.guard`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner import cliargs
from planner.errors import InputError
from planner.problem import Instance
from planner.sim.cluster import simulator_for_plan
from planner.sim.engine import SimConfig
from planner.sim.mapping import TypeMapper, mapping_file_for, spread_ties
from planner.sim.policies import policy_names
from planner.sim.prefix import PrefixIndex
from planner.sim.traces import Trace, TraceOptions


@dataclass
class TraceArgs:
    """The trace options every trace-reading command takes (files, mapping, scaling, window)."""

    traces: list[Path] | None
    mapping: Path | None
    rate_scale: float
    time_scale: float
    limit: int | None
    start_s: float
    duration_s: float | None
    skip_bad: bool
    seed: int


def trace_feed(inst: Instance, instance_path: Path, args: TraceArgs) -> tuple[Trace, TypeMapper]:
    """(Trace, TypeMapper) from the command line: the mapping file given, the one beside the
    instance, or everything to the instance's only type; traces given or the mapping's defaults."""
    check_trace_args(args)
    mapping_path = args.mapping or mapping_file_for(instance_path)
    if mapping_path is not None:
        mapper = TypeMapper.from_file(mapping_path, inst)
    elif len(inst.query_types) == 1:
        mapper = TypeMapper.single(inst)
    else:
        raise InputError(
            str(instance_path),
            "--mapping",
            f"{len(inst.query_types)} query types and no mapping file: give --mapping FILE "
            f"(or put {instance_path.with_suffix('.traces.yml').name} beside the instance)",
        )
    paths = list(args.traces or []) or list(mapper.trace_paths)
    if not paths:
        raise InputError(None, "--trace", "required: no trace given and the mapping file names none")
    options = TraceOptions(
        time_scale=args.time_scale,
        rate_scale=args.rate_scale,
        start_s=args.start_s,
        duration_s=args.duration_s,
        limit=args.limit,
        skip_bad=args.skip_bad,
        seed=args.seed,
    )
    return Trace(paths, options), mapper


def check_trace_args(args: TraceArgs) -> None:
    """The trace options, under the names the user typed (``--rate-scale``, not ``rate_scale``);
    commands call it first thing, before any file is read."""
    cliargs.trace_window(
        rate_scale=args.rate_scale,
        time_scale=args.time_scale,
        limit=args.limit,
        start=args.start_s,
        duration=args.duration_s,
        seed_value=args.seed,
    )


def needs_model_mode(inst: Instance, instance_path: Path) -> None:
    """The simulator times iterations with the performance model; table mode has no timings."""
    if inst.performance_mode != "model":
        raise InputError(
            str(instance_path), "performance_mode", "simulation needs model mode (table mode has no iteration timings)"
        )


def feed_of(trace: Any, mapper: Any) -> Any:
    """The simulator's request stream, ``(uid, type index or None, arrival s, input, output)``, with
    arrivals on one clock tick spread when the mapping asks for it (``spread_ties``). Where the
    trace's files carry prefix-block ids (Mooncake's ``hash_ids``) each row has them sixth
    (:class:`planner.sim.prefix.PrefixIndex`); a request replicated by ``rate_scale`` > 1 repeats
    its prompt, ids included."""
    index = PrefixIndex(trace.paths) if isinstance(trace, Trace) else None
    if index:
        order: dict[str, int] = {}
        for k, s in enumerate(trace.sources):
            order.setdefault(s, k)
        feed = (
            (n, mapper.index_of(r), r.arrival_s, r.input_tokens, r.output_tokens, index.get(order[r.source], r.line))
            for n, r in enumerate(trace)
        )
    else:
        feed = ((n, mapper.index_of(r), r.arrival_s, r.input_tokens, r.output_tokens) for n, r in enumerate(trace))
    mode = getattr(mapper, "spread_ties", None)
    return spread_ties(feed, mode) if mode else feed


def run_simulation(
    inst: Instance,
    plan: Any,
    trace: Any,
    mapper: Any,
    policy: str,
    seed: int,
    staleness_s: float,
    split: Any = None,
    per_request: io.TextIOBase | None = None,
    headroom: float | None = None,
) -> Any:
    """Replay ``trace`` through ``plan``'s cluster under ``policy``; the finished Simulator."""
    config = SimConfig(policy=policy, seed=seed, staleness_s=staleness_s)
    if headroom is not None:
        config.headroom = headroom
    sim = simulator_for_plan(inst, plan, config, split, per_request)
    sim.run(feed_of(trace, mapper))
    return sim


def check_policy(policy: str) -> None:
    """A registered placement policy, or bad input naming ``--policy``."""
    if policy not in policy_names():
        raise InputError(None, "--policy", f"unknown policy {policy!r}; known: {', '.join(policy_names())}")
