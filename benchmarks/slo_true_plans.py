"""Do plans hold when their traffic is replayed? azure-2023 and mooncake-2025, MILP, default target.

For each shipped instance with a trace mapping (``instances/<name>.traces.yml``):

  1. **plan**: ``planner solve`` (MILP, HiGHS), no validation. Replayed on the instance's traces
     (every pool its share of the requests, jsq placement): attainment per type. Then every pool's
     replicas minimized by simulation on its share (``planner scale --plan``'s search), and the
     cost of that mix: the plan's GPU rental over it says whether the plan over-provisions
     (> 1.10) or under-provisions (< 1: it misses somewhere).
  2. **validated**: ``planner solve --validate`` (the derate-and-re-solve loop of
     :mod:`planner.validation`): rounds, attainment per type, cost, and the same ratio.

Writes results/slo_true_plans.md. ``python benchmarks/slo_true_plans.py [--instances NAME ...]``
(minutes: every capacity is simulated; a second run reads them from the cache).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from planner.loader import load_instance  # noqa: E402
from planner.options import build_option_table, rental_per_replica  # noqa: E402
from planner.plan import Plan  # noqa: E402
from planner.sim.mapping import TypeMapper  # noqa: E402
from planner.sim.replay import feed_of  # noqa: E402
from planner.sim.scale import Requests, min_replicas  # noqa: E402
from planner.sim.traces import Trace  # noqa: E402
from planner.solvers import solve  # noqa: E402
from planner.validation import replay, split_by_plan, type_attainment, validate  # noqa: E402

POLICY = "jsq"


def rental(inst: Any, replicas: dict[Any, int]) -> float:
    return sum(rental_per_replica(inst, o) * n for o, n in replicas.items())


def judge(inst: Any, table: Any, plan: Plan, reqs: Requests) -> dict[str, Any]:
    shares = split_by_plan(inst, plan, reqs)
    att = type_attainment(inst, replay(inst, shares, POLICY))
    planned = {d.option: d.replicas for d in plan.deployments}
    scaled: dict[Any, int] = {}
    for d, sub in shares:
        if not len(sub):
            continue
        target = min(inst.attainment(q) or 0.99 for q in inst.query_types)
        res = min_replicas(inst, d.option, sub, POLICY, target, table, cap=max(8 * d.replicas, 64))
        scaled[d.option] = res.replicas if res.replicas is not None else -1
    ok = all(n > 0 for n in scaled.values())
    return {
        "attainment": att,
        "gpus": sum(d.gpus for d in plan.deployments),
        "rental": rental(inst, planned),
        "scaled": scaled,
        "scaled_rental": rental(inst, scaled) if ok else None,
        "objective": plan.objective,
    }


def run(name: str) -> list[str]:
    path = ROOT / "instances" / f"{name}.yaml"
    table = build_option_table(load_instance(path))
    inst = table.instance
    mapper = TypeMapper.from_file(path.with_name(f"{name}.traces.yml"), inst)
    reqs = Requests.collect(feed_of(Trace(list(mapper.trace_paths)), mapper))
    t0 = time.perf_counter()
    plan = solve(inst, "milp", table=table)
    t_plan = time.perf_counter() - t0
    a = judge(inst, table, plan, reqs)

    def resolve(derated: Any) -> Plan:
        return solve(derated.instance, "milp", table=derated)

    t0 = time.perf_counter()
    vplan, vtable = validate(inst, table, plan, reqs, resolve, [str(p) for p in mapper.trace_paths], POLICY)
    t_val = time.perf_counter() - t0
    b = judge(inst, vtable, vplan, reqs)
    v = vplan.validation
    assert v is not None
    types = [q.id for q in inst.query_types]

    def row(label: str, r: dict[str, Any], extra: str) -> str:
        att = " | ".join("-" if r["attainment"].get(t) is None else f"{r['attainment'][t]:.4f}" for t in types)
        ratio = "-" if r["scaled_rental"] is None else f"{r['rental'] / r['scaled_rental']:.3f}"
        fleet = ", ".join(f"{o.key} ×{n}" for o, n in sorted(r["scaled"].items()))
        scaled = "-" if r["scaled_rental"] is None else f"{r['scaled_rental']:,.2f}"
        return f"| {label} | {att} | {r['gpus']} | {r['rental']:,.2f} | {scaled} | {ratio} | {extra} | {fleet} |"

    return [
        f"## {name}",
        "",
        f"Traces: {', '.join(p.name for p in mapper.trace_paths)} ({len(reqs):,} requests); "
        f"targets {', '.join(f'{q.id} {inst.attainment(q)}' for q in inst.query_types)}; placement {POLICY}.",
        "",
        "| plan | "
        + " | ".join(types)
        + " | GPUs | rental $ | rental of the scaled mix $ | plan / scaled | solve | scaled replicas per pool |",
        "|---|" + "---:|" * len(types) + "---:|---:|---:|---:|---|---|",
        row("solve", a, f"{t_plan:.0f} s"),
        row("solve --validate", b, f"{t_val:.0f} s, {v.rounds} rounds, passed {v.passed}"),
        "",
        f"Validation history: {v.history}; derating by type: {v.derating_by_type}."
        + (f" {v.message}" if v.message else ""),
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", nargs="*", default=["azure-2023", "mooncake-2025"])
    args = ap.parse_args()
    lines = [
        "# SLO-true plans: replay of the MILP plan, with and without the validation loop",
        "",
        "`python benchmarks/slo_true_plans.py` (see its docstring). Attainment: share of a type's served",
        "requests that met every SLO limit in replay. *plan / scaled*: the plan's rental over the rental",
        "of the same options with each pool's replicas minimized by simulation on its share of the",
        "trace, every pool held to the target alone (above 1.10: the plan over-provisions; below 1:",
        "some pool misses on its own share, though its types may meet their targets over all their pools).",
        "",
    ]
    for name in args.instances:
        lines += run(name)
        print("\n".join(lines[-9:]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "slo_true_plans.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
