"""Split prefill/decode pools in the exact plan: table size, solve time and cost, with and without.

    python benchmarks/split_study.py [--seeds 5] [--families model-6x6x10,model-20x20x20]

For ``instances/paper-6x6x10.yaml`` and seeded model-mode (mean-latency) families from
:func:`planner.generate.paper_instance`, and a code-heavy case (llama-3.1-8b on L40S + A100,
8,192-token prompts, 200-token replies, TPOT 15 ms; the ``tests/test_disaggregation.py`` instance):

- split candidates before and after the pruning rule of :mod:`planner.disaggregation`, the split
  routes (eligible (type, pair)) beside the colocated eligible pairs;
- option-table seconds and MILP seconds (HiGHS, 1 thread, 120 s) without and with split options;
- the optimal cost without and with split options, and the split pairs the plan runs.

Split options exist in mean-latency model mode only (for now), so the table families of
``bench.py`` (table mode) are not among them. Writes ``benchmarks/results/split_study.md``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path
from typing import Any

import yaml

from planner.fileio import write_atomic
from planner.generate import paper_instance
from planner.loader import load_instance_data
from planner.options import build_option_table
from planner.solvers import solve

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = ROOT / "instances"
FAMILIES = {"model-6x6x10": (6, 6, 10), "model-20x20x20": (20, 20, 20)}
TIME_LIMIT = 120.0


def code_heavy() -> dict[str, Any]:
    return {
        "name": "code-heavy-l40s-a100",
        "period_hours": 24,
        "include": ["../models/llms.yaml", "../models/gpus.yaml"],
        "models": ["llama-3.1-8b"],
        "gpus": ["l40s", "a100-80gb"],
        "parallelism": {"tp": [1, 2, 4], "pp": [1]},
        "max_utilization": 0.85,
        "slo_attainment": "mean",
        "query_types": [
            {"id": "code", "arrival_rate": 20.0, "input_tokens": 8192, "output_tokens": 200,
             "slo": {"ttft_s": 5.0, "tpot_s": 0.015, "e2e_s": 60}},
        ],
    }  # fmt: skip


def measure(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"instance": name}
    for split in (False, True):
        d = copy.deepcopy(doc)
        d.setdefault("engine", {})["split"] = split
        inst = load_instance_data(d, str(INSTANCES / f"{name}.yaml"), INSTANCES)
        t0 = time.perf_counter()
        table = build_option_table(inst)
        t1 = time.perf_counter()
        plan = solve(inst, "milp", table=table, time_limit=TIME_LIMIT)
        tag = "split" if split else "colocated"
        row[f"{tag} table s"] = round(t1 - t0, 2)
        row[f"{tag} solve s"] = round(plan.solve_seconds, 2)
        row[f"{tag} status"] = plan.status
        row[f"{tag} $"] = None if plan.objective is None else round(plan.objective, 2)
        if not split:
            row["colocated pairs"] = len(table.pairs)
        else:
            sp = table.split
            row["split candidates"] = f"{sp.counts['before']:,} → {sp.counts['after']}"
            row["split routes"] = len(sp.routes)
            pairs = sorted({d.pair for d in plan.deployments if d.pair})
            row["split pairs used"] = ", ".join(pairs) or "-"
    a, b = row["colocated $"], row["split $"]
    row["saving %"] = None if not a or b is None else round(100 * (a - b) / a, 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "split_study.md")
    args = ap.parse_args()
    rows = [measure("code-heavy-l40s-a100", code_heavy())]
    rows.append(measure("paper-6x6x10", yaml.safe_load((INSTANCES / "paper-6x6x10.yaml").read_text())))
    for fam in args.families.split(","):
        n_types, n_models, n_tiers = FAMILIES[fam]
        for seed in range(args.seeds):
            doc = paper_instance(n_types, n_models, n_tiers, seed, mode="model")
            rows.append(measure(f"{fam}-s{seed}", doc))
            print(rows[-1], flush=True)
    cols = list(rows[0])
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    lines = [
        "# Split prefill/decode pools in the exact plan",
        "",
        f"`python benchmarks/split_study.py` (see its docstring). Machine: {platform.machine()}, "
        f"Python {platform.python_version()}, HiGHS 1 thread, {TIME_LIMIT:g} s limit. Mean-latency model mode.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    write_atomic(args.out, "\n".join(lines) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
