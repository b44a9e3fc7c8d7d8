"""The paper's robustness table on `instances/paper-6x6x10.yaml`: MILP vs GH vs AGH (and AGH with
headroom) at 1.0×, 1.2× and 1.5× inflation of delay and error figures; once as shipped and once
with its budget lifted (its $650 budget leaves the greedy and the headroom plans no room).

    python benchmarks/stress_table.py   # writes benchmarks/results/stress_paper.md
"""

from __future__ import annotations

from pathlib import Path

from planner.checker import check_plan
from planner.fileio import write_atomic
from planner.loader import load_instance
from planner.options import build_option_table
from planner.problem import Instance
from planner.robustness import StressResult, on_original, stress, tightened
from planner.solvers import solve

ROOT = Path(__file__).resolve().parents[1]
FACTORS = [1.0, 1.2, 1.5]


def cell(r: StressResult, total: float) -> str:
    slo = sum(row.slo_share * row.arrival_rate for row in r.rows) / total
    acc = sum(row.accuracy_share * row.arrival_rate for row in r.rows) / total
    return f"{100 * r.violating_demand_share:.1f}% ({100 * slo:.1f}% / {100 * acc:.1f}%)"


def block(inst: Instance, title: str) -> list[str]:
    table = build_option_table(inst)
    plans = {m: solve(inst, m, table=table) for m in ("milp", "gh", "agh")}
    for h in (0.2, 0.5):  # latency headroom (the error limits here leave no room for error headroom)
        tight = tightened(inst, h)
        plans[f"agh + latency headroom {h:g}"] = on_original(
            table, solve(tight, "agh", table=build_option_table(tight)), h
        )
    total = sum(q.arrival_rate for q in inst.query_types)
    lines = [
        f"## {title}",
        "",
        "| plan | status | cost ×1.0 | " + " | ".join(f"×{f:g}" for f in FACTORS) + " |",
        "|---|---|---|" + "---|" * len(FACTORS),
    ]
    for name, plan in plans.items():
        if not plan.has_solution:
            lines.append(f"| {name} | {plan.status} | - | " + " | ".join("-" for _ in FACTORS) + " |")
            continue
        assert check_plan(inst, plan, table).ok, name
        res = stress(table, plan, FACTORS)
        cells = " | ".join(cell(r, total) for r in res)
        lines.append(f"| {name} | {plan.status} | {res[0].cost_total:,.2f} | {cells} |")
    return [*lines, ""]


def main() -> None:
    inst = load_instance(ROOT / "instances" / "paper-6x6x10.yaml")
    lines = [
        "# Stress test of paper-6x6x10 (frozen plans, delay and error figures inflated)",
        "",
        "Each cell: violating share of all requests/s (SLO share / accuracy share). SLO share: requests",
        "routed to pairs whose inflated latency misses an SLO; accuracy share: the least share of a type",
        "that would have to move to its most accurate routed option to restore max_error (all of it",
        "when that option alone misses). Cost: $ per 24 h at ×1.0.",
        "",
        *block(inst, "as shipped (budget $650)"),
        *block(inst.model_copy(update={"budget": None}), "budget lifted"),
    ]
    text = "\n".join(lines)
    write_atomic(ROOT / "benchmarks" / "results" / "stress_paper.md", text)
    print(text)


if __name__ == "__main__":
    main()
