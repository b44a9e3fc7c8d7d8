r"""The validation loop: replay traces through a plan, derate the pools that miss, re-solve.

``planner solve --validate TRACE...`` and ``planner review`` (its recommended schedule, window by
window) make a plan's promise a measured one:

1. **Replay.** The trace's requests are split over the plan's deployments as the router would
   (each type's routing fractions, smooth weighted round-robin, unserved shares dropped; a
   conversation's later turns follow its earlier ones where the trace has prefix ids:
   :class:`planner.sim.engine.Router`), and each
   pool replays its share with its planned replicas under the placement policy. Pools are
   independent once routing is fixed, so they run in a process pool. A type's attainment is its
   requests that met every SLO limit over those served, summed over the pools it is routed to.
2. **Derate.** A pool that serves a type below its target is replayed on a thinned share of its
   traffic (each request kept when its seeded uniform is below s, so smaller s keep subsets) with
   its planned replicas: the largest s at which every type it serves meets its target, found by
   bisection to 3% (MIN_SHARE ≤ s < 1), is the measured shortfall. It multiplies the capacity of
   those types on *every* option, d_i ← d_i · min over its failing pools of s: what a replay
   contradicts is the model of the type's traffic (bursts, lengths), which follows it to any
   option, so derating only the failing option would send the type to an untested one and miss
   again. (Counting replicas instead, y/y* with y* from ``planner scale``'s search, halves a
   one-replica pool's capacity for a miss by a hair.) A pool that misses even at MIN_SHARE gets
   the fewest replicas that reach the target (``scale``'s search), y*, and the factor y/y*; one
   that cannot reach it at any count drops its option for that type. The failing pool's own
   (option, type) pairs, for every type it serves, end at s·u, u = Σ_i λ_i·x_ik / thr_ik /
   (U·y_k) ≤ 1 its planned utilization: s measures the pool's capacity against the load it
   *has* (all its types thinned alike), which is u of the capacity the table gives it, so its
   re-solved load is y/s replicas. Without u a pool planned below its cap (or one that misses
   for its mix of types, not its load) is re-solved to the same replica count round after round.
3. **Re-solve** on the derated table, and replay again, until every type meets its target or the
   round limit is reached; then the plan says which type fails and why, and the best replayed
   round's plan is kept (a re-solve can move a type onto an option that misses worse).

The plan records ``validation:`` (traces, policy, target, rounds, per-type attainment of the last
replay, derating per option, passed). Derating only lowers capacities, so the plan stays feasible
for the instance's own table: ``planner check`` accepts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.options import Option, OptionTable, derate_factor, derate_options
from planner.plan import Deployment, Plan, ValidationRecord
from planner.problem import Instance

MAX_ROUNDS = 3
MIN_SHARE = 0.25  # below this the shortfall is measured by replica counts instead
SHARE_RESOLUTION = 1.03


@dataclass
class PoolReplay:
    """One deployment's share of the trace, replayed."""

    option: Option
    replicas: int
    requests: int
    served: dict[int, int]  # by type index
    met: dict[int, int]
    # prompt tokens taken from the replicas' prefix caches and prompt tokens admitted, by type index
    prefix: dict[int, tuple[int, int]] = field(default_factory=dict)

    def attainment(self, ty: int) -> float:
        return self.met[ty] / self.served[ty] if self.served.get(ty) else 1.0


def split_by_plan(inst: Instance, plan: Plan, reqs: Any) -> list[tuple[Deployment, Any]]:
    """Each deployment with the requests the plan's routing sends to it (types in trace order).
    A split pair is one entry, its prefill deployment (routing names it; :func:`partner` gives
    its decode pool): the pair's pools serve the same requests one after the other.

    Requests are dealt as the simulator's router deals them (:class:`planner.sim.engine.Router`:
    each type's shares, a conversation kept on the pool that holds its history where the trace
    has prefix-block ids), so each pool replays what it would see in the whole plan's replay."""
    from planner.sim.cluster import decode_pools, plan_routing
    from planner.sim.engine import Router

    deployed, routing, _ = plan_routing(inst, plan)
    decode_pools(plan)  # a pair with one pool and not the other is refused here
    router = Router(routing)
    hashes = getattr(reqs, "hashes", None)
    dest = np.full(len(reqs), -1)
    for n, ty in enumerate(reqs.ty.tolist()):
        if ty >= 0:
            k = router.pick(ty, hashes[n] if hashes is not None else None)
            dest[n] = -1 if k is None else k
    return [(d, reqs.subset(dest == k)) for k, d in enumerate(deployed)]


def partner(plan: Plan, d: Deployment) -> Deployment | None:
    """The decode deployment of a split pair's prefill deployment ``d``; None for a colocated one."""
    from planner.sim.cluster import decode_pools

    return decode_pools(plan)[d.pair] if d.role == "prefill" else None


def _decode_of(plan: Plan | None, d: Deployment) -> Deployment | None:
    if d.role == "prefill" and plan is None:
        raise ValueError(f"{d.option.key}: a split pair's prefill pool is replayed with its plan's decode pool")
    return None if plan is None else partner(plan, d)


def _replay_job(args: tuple[Instance, Deployment, Any, str, int, Deployment | None]) -> PoolReplay:
    """One service on its requests: a colocated pool, or a split pair's prefill pool feeding its
    decode pool (``dec``) as the plan deploys them (replicas and batch caps of each)."""
    inst, d, sub, policy, seed, dec = args
    from planner.sim.cluster import simulator_for_service
    from planner.sim.engine import SimConfig

    types = sorted({int(t) for t in np.unique(sub.ty) if t >= 0})
    served = {t: 0 for t in types}
    met = {t: 0 for t in types}
    prefix: dict[int, tuple[int, int]] = {}
    if types:
        sim = simulator_for_service(inst, d, dec, SimConfig(policy=policy, seed=seed), types)
        sim.run(sub.feed())
        for t, st in sim.summary()["types"].items():
            ti = next(i for i, q in enumerate(inst.query_types) if q.id == t)
            if ti in served and st["served"]:
                served[ti] = int(st["served"])
                met[ti] = round(float(st["attainment"] or 0.0) * st["served"])
        prefix = {t: (sim.prefix_hits[t], sim.prefix_tokens[t]) for t in types if sim.prefix_tokens[t]}
    return PoolReplay(d.option, d.replicas, len(sub), served, met, prefix)


def replay(
    inst: Instance,
    shares: list[tuple[Deployment, Any]],
    policy: str = "jsq",
    seed: int = 0,
    workers: int | None = None,
    plan: Plan | None = None,
) -> list[PoolReplay]:
    """Every pool on its share of the trace (:func:`split_by_plan`; step 1 of the module
    docstring); a split pair's share runs through both its pools, found in ``plan``. The pools
    run as tasks of the executor in force (:mod:`planner.executor`; ``workers``: a process pool
    of that many instead)."""
    from planner import executor

    jobs = [(inst, d, sub, policy, seed, _decode_of(plan, d)) for d, sub in shares if len(sub)]
    return executor.current(workers).map(_replay_job, jobs, [d.option.key for _, d, *_ in jobs])


def max_share(
    inst: Instance,
    d: Deployment,
    sub: Any,
    policy: str,
    targets: dict[str, float],
    seed: int = 0,
    decode: Deployment | None = None,
) -> float | None:
    """The largest share s of its traffic (thinned, nested in s) on which the pool (a split pair:
    with its ``decode`` pool) meets every type's target with its planned replicas, to
    SHARE_RESOLUTION; None below MIN_SHARE."""
    u = np.random.default_rng(seed).random(len(sub))

    def meets(s: float) -> bool:
        r = _replay_job((inst, d, sub.subset(u < s), policy, seed, decode))
        return all(r.attainment(i) >= targets[inst.query_types[i].id] for i in r.served if r.served[i])

    if not meets(MIN_SHARE):
        return None
    lo, hi = MIN_SHARE, 1.0
    while hi / lo > SHARE_RESOLUTION:
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


def type_attainment(inst: Instance, pools: list[PoolReplay]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for i, q in enumerate(inst.query_types):
        served = sum(p.served.get(i, 0) for p in pools)
        out[q.id] = None if served == 0 else sum(p.met.get(i, 0) for p in pools) / served
    return out


def type_prefix_ratio(inst: Instance, pools: list[PoolReplay]) -> dict[str, float | None]:
    """Per type, the share of its admitted prompt tokens the replay took from prefix caches (None:
    no request of the type carried prefix-block ids)."""
    out: dict[str, float | None] = {}
    for i, q in enumerate(inst.query_types):
        tokens = sum(p.prefix.get(i, (0, 0))[1] for p in pools)
        out[q.id] = None if tokens == 0 else sum(p.prefix.get(i, (0, 0))[0] for p in pools) / tokens
    return out


def _scenes(inst: Instance, plan: Plan, reqs: Any) -> list[tuple[Plan, Any, tuple[float, ...]]]:
    """(plan, its traffic, the rates it was planned for) to replay: the plan on the whole trace,
    or, for a multi-period plan (``schedule``), each window's plan on that window's requests
    (``reqs`` is then one :class:`~planner.sim.scale.Requests` per window, in schedule order) at
    the window's rates."""
    if plan.schedule:
        from planner.multiperiod import window_plan, windows

        if not isinstance(reqs, list | tuple) or len(reqs) != len(plan.schedule):
            raise ValueError("a multi-period plan is validated on one request set per window")
        rates = [w.rates for w in windows(inst)]
        return [(window_plan(plan, w), r, rates[t]) for t, (w, r) in enumerate(zip(plan.schedule, reqs, strict=True))]
    return [(plan, reqs, tuple(q.arrival_rate for q in inst.query_types))]


def pool_utilization(inst: Instance, table: OptionTable, d: Deployment, plan: Plan, rates: tuple[float, ...]) -> float:
    """The pool's planned load over its cap, u = Σ_i λ_i·x_ik / thr_ik / (U·y_k) ≤ 1 (the MILP's
    capacity row, :mod:`planner.options`), on the table's current (derated) capacities. A split
    pair's is its busier pool's: routing names the prefill pool, and both pools carry its load."""
    dec = partner(plan, d)
    if dec is not None:
        return max(_utilization(inst, table, d, plan, rates, d), _utilization(inst, table, dec, plan, rates, d))
    return _utilization(inst, table, d, plan, rates, d)


def _utilization(
    inst: Instance, table: OptionTable, pool: Deployment, plan: Plan, rates: tuple[float, ...], routed: Deployment
) -> float:
    load = 0.0
    for i, q in enumerate(inst.query_types):
        row = table.row(pool.option, q.id)
        if row is None or not row.throughput_rps:
            continue
        x = sum(s.fraction for s in plan.routing.get(q.id, []) if s.option == routed.option)
        load += rates[i] * x / row.throughput_rps
    cap = inst.max_utilization * pool.replicas
    return min(1.0, load / cap) if cap > 0 else 1.0


def validate(
    inst: Instance,
    table: OptionTable,
    plan: Plan,
    reqs: Any,
    resolve: Callable[[OptionTable], Plan],
    traces: list[str],
    policy: str = "jsq",
    seed: int = 0,
    rounds: int = MAX_ROUNDS,
) -> tuple[Plan, OptionTable]:
    """The loop of the module docstring; returns the last plan (with ``validation``) and table —
    or, when no round meets every target, the best round's (its worst type nearest its target).

    A multi-period plan (the review's) is replayed window by window, each window's plan on that
    window's requests (``reqs``: one request set per window, :func:`_scenes`); a type's attainment
    is pooled over the windows and its derating is the smallest over its failing pools in any
    window, so the re-solved schedule is derated where the replay contradicted it."""
    from planner.sim.scale import min_replicas

    targets = {q.id: (inst.attainment(q) or 0.99) for q in inst.query_types}
    derate: dict[str | tuple[Option, str], float] = {}  # by type id and by (option, type)
    dropped: set[tuple[Option, str]] = set()
    history: list[dict[str, Any]] = []
    why: list[str] = []

    def meets(att: dict[str, float | None]) -> bool:
        """Every type with served requests at or above its target."""
        return all(v is None or v >= targets[t] for t, v in att.items())

    def margin(att: dict[str, float | None]) -> float:
        """The worst type's attainment less its target (the round to keep when none passes)."""
        return min((v - targets[t] for t, v in att.items() if v is not None), default=0.0)

    # (margin, round, plan, table, derating, pools) of the best replayed round: a re-solve on a
    # derated table can move a type onto an option the replay has not seen, which may miss worse
    # (mooncake-2025 at max_utilization 1.0: 0.977, 0.978, then 0.730), so the loop returns the
    # best round's plan when no round passes, not the last.
    best: tuple[float, int, Plan, OptionTable, dict[str | tuple[Option, str], float], Any] | None = None
    done = 0
    while True:
        done += 1
        shares = [
            (d, sub, part, rates)
            for part, r, rates in _scenes(inst, plan, reqs)
            for d, sub in split_by_plan(inst, part, r)
            if len(sub)
        ]
        pools = replay(inst, [(d, sub) for d, sub, _, _ in shares], policy, seed, plan=None if plan.schedule else plan)
        att = type_attainment(inst, pools)
        history.append({t: None if v is None else round(v, 6) for t, v in att.items()})
        if best is None or margin(att) > best[0]:
            best = (margin(att), done, plan, table, dict(derate), pools)
        failing = [
            (p, share)
            for p, share in zip(pools, shares, strict=True)
            if any(p.attainment(i) < targets[inst.query_types[i].id] for i in p.served if p.served[i])
        ]
        # The promise is per type (its share of requests over every pool it is routed to), so the
        # loop stops when each type meets its target, even if one of its smaller pools alone
        # does not; while a type misses, every pool that misses for some type is derated.
        if meets(att) or not failing or done >= rounds or not plan.has_solution:
            break
        by_type: dict[str, float] = {}
        by_pair: dict[tuple[Option, str], float] = {}
        for p, (deployment, sub, part, rates) in failing:
            missed = [
                inst.query_types[i].id
                for i in p.served
                if p.served[i] and p.attainment(i) < targets[inst.query_types[i].id]
            ]
            target = min(targets[t] for t in missed)
            dec = partner(part, deployment)
            factor = max_share(inst, deployment, sub, policy, targets, seed, dec)
            if factor is None and dec is not None:
                # A pair that misses on a quarter of its traffic is far from its figures; the
                # scale search sizes one pool at a time, so the pair is dropped for those types.
                dropped.update((p.option, t) for t in missed)
                why.append(f"{p.option.pair}: misses its target even on {MIN_SHARE:g} of its traffic")
                continue
            if factor is None:
                res = min_replicas(inst, p.option, sub, policy, target, table, seed, cap=max(8 * p.replicas, 64))
                if res.replicas is None:
                    dropped.update((p.option, t) for t in missed)
                    why.append(f"{p.option.key}: {res.reason}")
                    continue
                factor = p.replicas / max(res.replicas, p.replicas + 1)
            # The pool carries its traffic at share s: its capacity is s times its load, which
            # is u ≤ 1 of the capacity the table gives it. The missed types' factor s follows
            # them to every option (the traffic model was wrong); every type of the pool gets
            # the rest on this option, so its pairs end at s·u and the pool at y/s replicas.
            # A pool that serves one type misses because the type's traffic is harder than its
            # figures say: that holds on every option. A mixed pool may miss for its mix (one
            # type's long prompts hold the FIFO queue and the iterations the others decode in),
            # which the type's own capacities elsewhere do not share: its factor stays on the
            # pool's pairs, or every option of the type would be derated for one pool's mix.
            u = pool_utilization(inst, table, deployment, part, rates)
            mixed = sum(1 for i in p.served if p.served[i]) > 1
            for t in missed if not mixed else ():
                by_type[t] = min(by_type.get(t, 1.0), factor)
            for i in p.served:
                t = inst.query_types[i].id
                own = u if t in missed and not mixed else u * factor
                by_pair[p.option, t] = min(by_pair.get((p.option, t), 1.0), own)
        for t, f in by_type.items():
            derate[t] = derate.get(t, 1.0) * f
        for pair, f in by_pair.items():
            derate[pair] = derate.get(pair, 1.0) * f
        table = derate_options(table, derate, dropped)
        plan = resolve(table)
    passed = meets(history[-1])
    kept = done
    if not passed and best is not None and best[1] != done:
        _, kept, plan, table, derate, pools = best
        why.append(f"the plan of round {kept} is kept: the best of {done} replayed rounds")
    if not passed:
        for t, v in history[kept - 1].items():
            if v is not None and v < targets[t]:
                worst = min(
                    (p for p in pools if p.served.get(_index(inst, t))),
                    key=lambda p: p.attainment(_index(inst, t)),
                )
                why.append(
                    f"{t}: {v:.4f} < {targets[t]:g} after {done} rounds "
                    f"(worst pool {worst.option.key}: {worst.attainment(_index(inst, t)):.4f})"
                )
    record = ValidationRecord(
        traces=traces,
        policy=policy,
        target={t: v for t, v in targets.items()},
        rounds=done,
        attainment=history[kept - 1],
        history=history,
        derating=_per_option(plan, derate),
        derating_by_type={t: round(f, 6) for t, f in derate.items() if isinstance(t, str)},
        passed=passed,
        message="; ".join(why) or None,
    )
    return plan.model_copy(update={"validation": record}), table


def _per_option(plan: Plan, derate: dict[str | tuple[Option, str], float]) -> dict[str, float]:
    """Per option key of the plan: the smallest capacity factor its routed types were given
    (their type's factor times the pair's own, :func:`planner.options.derate_factor`)."""
    out: dict[str, float] = {}
    for t, shares in plan.routing.items():
        for s in shares:
            f = derate_factor(derate, s.option, t)
            if s.fraction > 0 and f != 1.0:
                out[s.option.key] = round(min(out.get(s.option.key, 1.0), f), 6)
    return dict(sorted(out.items()))


def _index(inst: Instance, type_id: str) -> int:
    return next(i for i, q in enumerate(inst.query_types) if q.id == type_id)
