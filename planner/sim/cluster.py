"""From an instance and a plan (or one option and a replica count) to a simulator.

Each deployed option becomes a pool whose workers take their iteration times (exactly the model's,
:class:`planner.perf.IterationTable`), KV capacity and limits from the same
:class:`planner.perf.ReplicaModel` the option table used, and the vLLM
settings the exporter writes: ``max_num_seqs`` = the planned micro-batch of the types routed there,
``max_num_batched_tokens`` = ``prefill_chunk_tokens``, ``max_model_len`` = min(model context, KV of
one engine).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from planner.disaggregation import Side, kv_bytes_per_token, kv_link
from planner.errors import InputError
from planner.options import Option, OptionTable, replica_params
from planner.perf import ReplicaModel
from planner.plan import Deployment, Plan
from planner.problem import Instance
from planner.sim.engine import SimConfig, Simulator
from planner.sim.state import PoolSpec

INF = math.inf
# Each simulated engine holds its own queues and KV bookkeeping (~40 KB: 10,000 engines took
# 0.5 GB), so a plan of 10^9 replicas exhausted memory before the first request. The limit is
# what `planner scale` may probe (4,096 replicas) at pp 8, about 1.3 GB; larger fleets are refused.
MAX_ENGINES = 32_768


@dataclass(frozen=True)
class SplitSpec:
    """Serve ``option`` as ``prefill`` replicas of itself plus ``decode`` replicas of ``decode_option``."""

    option: Option
    prefill: int
    decode_option: Option
    decode: int


def parse_option(text: str, label: str = "--option") -> Option:
    """``MODEL/GPU/TP/PP[/MBT]`` (``tp4``/``pp1``/``mbt2048`` prefixes allowed; MBT is the token
    budget, vLLM's max_num_batched_tokens)."""
    parts = text.split("/")
    if len(parts) not in (4, 5):
        raise InputError(label, text, "expected MODEL/GPU/TP/PP[/MBT], e.g. llama-3.1-8b/l4/1/1 or .../1/1/mbt512")
    try:
        tp = int(parts[2].removeprefix("tp"))
        pp = int(parts[3].removeprefix("pp"))
        budget = int(parts[4].removeprefix("mbt")) if len(parts) == 5 else None
    except ValueError:
        raise InputError(label, text, "TP, PP and MBT must be integers") from None
    if tp < 1 or pp < 1:
        raise InputError(label, text, "TP and PP must be at least 1")
    if budget is not None and budget < 16:
        raise InputError(label, text, "MBT (max_num_batched_tokens) must be at least 16")
    return Option(parts[0], parts[1], tp, pp, budget)


def _same(asked: Option, deployed: Option) -> bool:
    """``asked`` names ``deployed`` (an option given without a token budget names any budget)."""
    if asked.budget is None:
        return (asked.model, asked.gpu, asked.tp, asked.pp) == (deployed.model, deployed.gpu, deployed.tp, deployed.pp)
    return asked == deployed


def _slos(inst: Instance) -> list[tuple[float, float, float]]:
    out = []
    for q in inst.query_types:
        s = q.slo
        out.append((s.ttft_s or INF, s.tpot_s or INF, s.e2e_s or INF))
    return out


def replica_model(inst: Instance, option: Option, label: str = "--option") -> ReplicaModel:
    models = {m.id: m for m in inst.models}
    gpus = {g.id: g for g in inst.gpus}
    if option.model not in models:
        raise InputError(label, option.key, f"model {option.model!r} is not in the instance")
    if option.gpu not in gpus:
        raise InputError(label, option.key, f"gpu {option.gpu!r} is not in the instance")
    m, g = models[option.model], gpus[option.gpu]
    if not (m.layers and m.hidden_size and m.kv_heads and m.head_dim and g.memory_gb and g.bandwidth_tbs):
        raise InputError(
            label,
            option.key,
            "simulation needs model mode: architecture and hardware fields (table mode has no timings)",
        )
    from planner.perf import structural_reason

    why = structural_reason(m, g, option.tp, option.pp)
    if why:
        raise InputError(label, option.key, why)
    rm = ReplicaModel(m, g, option.tp, option.pp, replica_params(inst, option), inst.calibration)
    if not rm.fit().fits:
        raise InputError(label, option.key, rm.fit().reason)
    return rm


def pool_spec(
    inst: Instance,
    option: Option,
    replicas: int,
    max_num_seqs: int | None,
    types: Iterable[int],
    role: str = "mixed",
    label: str = "--option",
) -> PoolSpec:
    rm = replica_model(inst, option, label)
    q = rm.q
    m = rm.m
    slos = _slos(inst)
    types = list(types)
    kv = rm.fit().kv_capacity_tokens // option.pp
    ctx = min(m.max_context_tokens or kv, kv)
    # Split-phase KV leaves the prefill node over its NICs: the link the planner prices.
    link = kv_link(rm.g, Side(option.gpu, option.tp, option.pp), q)
    return PoolSpec(
        key=option.key if role == "mixed" or option.role else f"{option.key}/{role}",
        option=option,
        replicas=replicas,
        engines_per_replica=option.pp,
        gpus_per_replica=option.tp * option.pp,
        kv_capacity=kv,
        max_num_seqs=max_num_seqs or q.max_num_seqs,
        token_budget=q.prefill_chunk_tokens,
        max_context=ctx,
        timing=rm.iteration_table(q.prefill_chunk_tokens, max_num_seqs or q.max_num_seqs),
        role=role,
        kv_bytes_per_token=kv_bytes_per_token(m, q),
        network_bytes_per_s=link.bytes_per_s,
        network_latency_s=link.latency_s,
        tpot_slo=min((slos[i][1] for i in types), default=INF),
    )


def planned_batch(table: OptionTable | None, option: Option, type_ids: Iterable[str]) -> int | None:
    if table is None:
        return None
    batches = [r.batch for t in type_ids if (r := table.row(option, t)) is not None and r.batch and r.eligible]
    return max(batches) if batches else None


def check_engines(engines: int, file: str | None, field: str) -> None:
    """Refuse a simulation of more than :data:`MAX_ENGINES` engines (replicas × pp, all pools)."""
    if engines > MAX_ENGINES:
        raise InputError(
            file, field, f"{engines:,} engines (replicas × pp) to simulate: the simulator holds at most {MAX_ENGINES:,}"
        )


def plan_routing(
    inst: Instance, plan: Plan, plan_label: str = "plan"
) -> tuple[list[Deployment], dict[int, list[tuple[int | None, float]]], dict[Option, set[int]]]:
    """The plan's deployed options (service n = deployed[n]), each type's shares as (service or
    None for unserved, fraction), and the types each option serves; a plan routing to a type the
    instance lacks or to an option without replicas is refused. A split pair's decode pool is not
    a service of its own: it serves what is routed to its prefill pool (:func:`decode_pools`)."""
    tindex = {q.id: i for i, q in enumerate(inst.query_types)}
    deployed = [d for d in plan.deployments if d.replicas > 0 and d.role != "decode"]
    if not deployed:
        raise InputError(plan_label, "deployments", "the plan deploys no replica: nothing to simulate")
    svc_index = {d.option: n for n, d in enumerate(deployed)}
    routed: dict[Option, set[int]] = {d.option: set() for d in deployed}
    routing: dict[int, list[tuple[int | None, float]]] = {}
    for t, shares in plan.routing.items():
        if t not in tindex:
            raise InputError(plan_label, f"routing.{t}", "query type is not in the instance")
        lst: list[tuple[int | None, float]] = []
        for s in shares:
            if s.fraction <= 0:
                continue
            if s.option not in svc_index:
                raise InputError(plan_label, f"routing.{t}", f"routes to {s.option.key}, which has no replicas")
            lst.append((svc_index[s.option], s.fraction))
            routed[s.option].add(tindex[t])
        u = plan.unserved.get(t, 0.0)
        if u > 0:
            lst.append((None, u))
        routing[tindex[t]] = lst
    return deployed, routing, routed


def decode_pools(plan: Plan, plan_label: str = "plan") -> dict[str, Deployment]:
    """Each split pair's decode deployment by pair id; a pair running one pool without the other
    is refused (the checker's ``split`` family)."""
    prefill = {d.pair for d in plan.deployments if d.role == "prefill" and d.replicas > 0}
    decode = {d.pair: d for d in plan.deployments if d.role == "decode" and d.replicas > 0}
    for n, d in enumerate(plan.deployments):
        if d.role and d.replicas > 0 and (d.pair not in prefill or d.pair not in decode):
            missing = "decode" if d.role == "prefill" else "prefill"
            raise InputError(plan_label, f"deployments[{n}]", f"split pair {d.pair} has no {missing} replicas")
    return decode


def simulator_for_plan(
    inst: Instance,
    plan: Plan,
    config: SimConfig,
    split: SplitSpec | None = None,
    per_request: IO[str] | None = None,
    plan_label: str = "plan",
) -> Simulator:
    """Pools for the plan's deployments; routing from its fractions and unserved shares.
    ``plan_label`` (the plan's file) is what an error about a deployment names."""
    deployed, routing, routed = plan_routing(inst, plan, plan_label)
    decoders = decode_pools(plan, plan_label)
    engines = sum(d.replicas * d.pp for d in deployed) + sum(d.replicas * d.pp for d in decoders.values())
    check_engines(engines, plan_label, "deployments")
    services: list[tuple[str, list[PoolSpec]]] = []
    for d in deployed:
        types = routed[d.option]
        label = plan_label
        if d.role == "prefill":  # a split pair from the plan: its prefill pool, then its decode pool
            dec = decoders[d.option.pair]
            services.append(
                (
                    d.option.pair,
                    [
                        pool_spec(inst, d.option, d.replicas, d.max_num_seqs, types, "prefill", label),
                        pool_spec(inst, dec.option, dec.replicas, dec.max_num_seqs, types, "decode", label),
                    ],
                )
            )
        elif split is not None and _same(split.option, d.option):
            services.append(
                (
                    d.option.key,
                    [
                        pool_spec(inst, d.option, split.prefill, d.max_num_seqs, types, "prefill", label),
                        pool_spec(inst, split.decode_option, split.decode, d.max_num_seqs, types, "decode", "--split"),
                    ],
                )
            )
        else:
            services.append((d.option.key, [pool_spec(inst, d.option, d.replicas, d.max_num_seqs, types, label=label)]))
    if split is not None and not any(_same(split.option, o) for o in routed):
        raise InputError("--split", split.option.key, "the plan deploys no replica of this option")
    return _simulator(inst, services, routing, config, per_request)


def simulator_for_option(
    inst: Instance,
    option: Option,
    replicas: int,
    config: SimConfig,
    types: Iterable[int] | None = None,
    max_num_seqs: int | None = None,
    split: SplitSpec | None = None,
    per_request: IO[str] | None = None,
) -> Simulator:
    """Every request of every (given) type goes to one option's pool of ``replicas``."""
    types = list(range(len(inst.query_types))) if types is None else list(types)
    if split is not None:
        pools = [
            pool_spec(inst, option, split.prefill, max_num_seqs, types, "prefill"),
            pool_spec(inst, split.decode_option, split.decode, max_num_seqs, types, "decode", "--decode-option"),
        ]
    else:
        pools = [pool_spec(inst, option, replicas, max_num_seqs, types)]
    routing: dict[int, list[tuple[int | None, float]]] = {t: [(0, 1.0)] for t in types}
    return _simulator(inst, [(option.key, pools)], routing, config, per_request)


def simulator_for_service(
    inst: Instance, d: Deployment, decode: Deployment | None, config: SimConfig, types: Iterable[int]
) -> Simulator:
    """One service of a plan alone, as deployed (replicas and batch caps): the pool of a colocated
    deployment ``d``, or a split pair's prefill pool ``d`` feeding its decode pool ``decode``."""
    if decode is None:
        return simulator_for_option(inst, d.option, d.replicas, config, types, d.max_num_seqs)
    return simulator_for_pair(
        inst,
        (d.option, d.replicas, d.max_num_seqs),
        (decode.option, decode.replicas, decode.max_num_seqs),
        config,
        types,
    )


def simulator_for_pair(
    inst: Instance,
    prefill: tuple[Option, int, int | None],
    decode: tuple[Option, int, int | None],
    config: SimConfig,
    types: Iterable[int],
) -> Simulator:
    """A split pair as one service: every request of ``types`` prefills on the prefill pool and
    decodes on the decode pool, each given as (option, replicas, batch cap or None)."""
    types = list(types)
    pools = [
        pool_spec(inst, prefill[0], prefill[1], prefill[2], types, "prefill"),
        pool_spec(inst, decode[0], decode[1], decode[2], types, "decode"),
    ]
    routing: dict[int, list[tuple[int | None, float]]] = {t: [(0, 1.0)] for t in types}
    return _simulator(inst, [(prefill[0].pair or prefill[0].key, pools)], routing, config, None)


def _simulator(
    inst: Instance,
    services: list[tuple[str, list[PoolSpec]]],
    routing: dict[int, list[tuple[int | None, float]]],
    config: SimConfig,
    per_request: IO[str] | None,
) -> Simulator:
    for _, pools in services:
        for p in pools:
            if p.replicas < 1:
                raise InputError(None, p.key, "a pool needs at least one replica")
    check_engines(sum(p.replicas * p.engines_per_replica for _, pools in services for p in pools), None, "replicas")
    return Simulator(
        services,
        routing,
        [q.id for q in inst.query_types],
        _slos(inst),
        [q.output_tokens for q in inst.query_types],
        config,
        per_request,
    )
