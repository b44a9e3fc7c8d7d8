"""Split prefill/decode pools in the exact plan, replayed: cost with and without split options.

For each instance, the MILP (HiGHS, default attainment target, lazy capacity simulation) plans it
twice: colocated options only, and with ``engine: {split: true}`` (split pairs beside them). Both
plans are replayed on the instance's requests (every pool, or pair as one service, on its share;
jsq placement): attainment per type, cost, GPUs, and what the split plan deploys with each pool's
simulated figures.

Instances:

* ``azure-2023``: the shipped instance, replayed on the Azure 2023 conv and code traces.
* ``code-heavy``: azure-2023's code type alone at 20 req/s, Poisson (no burst fields: a generated
  workload), replayed on 36,000 requests whose (prompt, output) pairs are drawn with replacement
  from the Azure code trace (seeded) with Poisson arrivals: 2k-token prompts, 28-token outputs,
  TTFT 3 s, TPOT 0.1 s, e2e 10 s, 0.99 of requests.
* ``code-heavy-tpot30ms``: the same with TPOT 30 ms.

``python benchmarks/split_plans.py [--instances azure-2023 code-heavy]`` writes
results/split_plans.md (minutes: every capacity is simulated once, then read from the cache).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared"

from planner.loader import load_instance_data  # noqa: E402
from planner.plan import Plan  # noqa: E402
from planner.sim.mapping import TypeMapper  # noqa: E402
from planner.sim.replay import feed_of  # noqa: E402
from planner.sim.scale import Requests  # noqa: E402
from planner.sim.traces import Trace  # noqa: E402
from planner.solvers import solve  # noqa: E402
from planner.validation import replay, split_by_plan, type_attainment  # noqa: E402

POLICY = "jsq"
CODE_RATE = 20.0
CODE_REQUESTS = 36_000


def azure() -> tuple[dict[str, Any], Path, Requests]:
    path = ROOT / "instances" / "azure-2023.yaml"
    doc = yaml.safe_load(path.read_text())
    inst = load_instance_data(copy.deepcopy(doc), str(path), path.parent)
    mapper = TypeMapper.from_file(path.with_name("azure-2023.traces.yml"), inst)
    return doc, path, Requests.collect(feed_of(Trace(list(mapper.trace_paths)), mapper))


def code_heavy() -> tuple[dict[str, Any], Path, Requests]:
    path = ROOT / "instances" / "azure-2023.yaml"
    doc = yaml.safe_load(path.read_text())
    (code,) = [q for q in doc["query_types"] if q["id"] == "code"]
    code = {k: v for k, v in code.items() if not k.startswith("arrival_")}  # Poisson: no burst figures
    code["arrival_rate"] = CODE_RATE
    doc.update(name="code-heavy", query_types=[code])
    trace = pd.read_csv(SHARED / "data" / "azure" / "AzureLLMInferenceTrace_code.csv")
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(trace), CODE_REQUESTS)
    arrivals = np.cumsum(rng.exponential(1.0 / CODE_RATE, CODE_REQUESTS))
    reqs = Requests(
        arrivals,
        np.zeros(CODE_REQUESTS, np.int64),
        trace["ContextTokens"].to_numpy()[rows].astype(np.int64),
        trace["GeneratedTokens"].to_numpy()[rows].astype(np.int64),
    )
    return doc, path, reqs


def code_heavy_tight() -> tuple[dict[str, Any], Path, Requests]:
    """code-heavy with an interactive TPOT of 30 ms (streamed completions): decodes that wait
    behind 2k-token prefill chunks now miss it, which is where split pools should pay."""
    doc, path, reqs = code_heavy()
    doc["name"] = "code-heavy-tpot30ms"
    doc["query_types"][0]["slo"] = {**doc["query_types"][0]["slo"], "tpot_s": 0.03}
    return doc, path, reqs


SOURCES = {"azure-2023": azure, "code-heavy": code_heavy, "code-heavy-tpot30ms": code_heavy_tight}


def judge(inst: Any, plan: Plan, reqs: Requests) -> dict[str, float | None]:
    return type_attainment(inst, replay(inst, split_by_plan(inst, plan, reqs), POLICY, plan=plan))


def deployed(plan: Plan) -> str:
    parts = []
    for d in sorted(plan.deployments, key=lambda d: (d.pair or d.option.key, d.role or "")):
        if d.replicas:
            what = f"{d.option.model}/{d.gpu}/tp{d.tp}/pp{d.pp}"
            role = f" {d.role}" if d.role else ""
            parts.append(f"{what}{role} ×{d.replicas}")
    return "; ".join(parts)


def run(name: str) -> list[str]:
    doc, path, reqs = SOURCES[name]()
    out: list[str] = []
    rows = []
    plans = {}
    for split in (False, True):
        d = copy.deepcopy(doc)
        d["engine"] = {**(d.get("engine") or {}), "split": split}
        inst = load_instance_data(d, str(path), path.parent)
        t0 = time.perf_counter()
        plan = solve(inst, "milp")
        secs = time.perf_counter() - t0
        att = judge(inst, plan, reqs)
        plans[split] = (inst, plan)
        rows.append((split, plan, secs, att))
        print(name, split, plan.objective, att, f"{secs:.0f}s", flush=True)
    types = [q.id for q in plans[False][0].query_types]
    out += [
        f"## {name}",
        "",
        f"{len(reqs):,} requests replayed; targets "
        + ", ".join(f"{q.id} {plans[False][0].attainment(q)}" for q in plans[False][0].query_types)
        + f"; placement {POLICY}.",
        "",
        "| options | cost $ | GPUs | " + " | ".join(types) + " | solve s | deployments |",
        "|---|---:|---:|" + "---:|" * len(types) + "---:|---|",
    ]
    for split, plan, secs, att in rows:
        cells = " | ".join("-" if att.get(t) is None else f"{att[t]:.4f}" for t in types)
        gpus = sum(d.gpus for d in plan.deployments)
        label = "colocated + split" if split else "colocated only"
        out.append(f"| {label} | {plan.objective:,.2f} | {gpus} | {cells} | {secs:.0f} | {deployed(plan)} |")
    saving = 1 - rows[1][1].objective / rows[0][1].objective
    out += ["", f"Split options change the cost by {-saving:+.1%}.", ""]
    inst, plan = plans[True]
    pairs = [d for d in plan.deployments if d.role == "prefill" and d.replicas]
    if pairs:
        out += [
            "Split pairs of the plan, with the figures it was priced on (each side simulated alone at half the",
            "type's miss share; latencies at the target quantile, the worse side's):",
            "",
        ]
        out += [
            "| pair | type | fraction | r_P req/s per prefill replica | r_D req/s per decode replica "
            "| TTFT s | TPOT s | e2e s | decode batch |"
        ]
        out += ["|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        from planner.options import build_option_table, check_pairs
        from planner.plan import plan_pairs

        table = check_pairs(build_option_table(inst), plan_pairs(plan))
        for d in pairs:
            dec = next(x for x in plan.deployments if x.role == "decode" and x.pair == d.pair)
            for t, shares in plan.routing.items():
                frac = sum(s.fraction for s in shares if s.option == d.option)
                if frac <= 0:
                    continue
                rp, rd = table.row(d.option, t), table.row(dec.option, t)
                assert rp is not None and rd is not None
                out.append(
                    f"| {d.pair} | {t} | {frac:.3f} | {rp.throughput_rps:.3f} | {rd.throughput_rps:.3f} | "
                    f"{rp.ttft_s:.3f} | {rp.tpot_s:.4f} | {rp.e2e_s:.3f} | {rd.batch} |"
                )
        out += [""]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", nargs="*", default=list(SOURCES))
    ap.add_argument("--append", action="store_true", help="add the sections to results/split_plans.md")
    args = ap.parse_args()
    old = (RESULTS / "split_plans.md").read_text().splitlines() if args.append else []
    lines = old or [
        "# Split prefill/decode pools: plans with and without split options, replayed",
        "",
        "`python benchmarks/split_plans.py` (see its docstring). Attainment: share of a type's served",
        "requests that met every SLO limit in replay (a split pair replays as one service: JSQ over its",
        "prefill replicas, the KV over their NICs, JSQ over its decode replicas).",
        "",
    ]
    for name in args.instances:
        lines += run(name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "split_plans.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
