"""Commands of the heuristics issue: ``generate``, ``stress`` and ``bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner import cliargs

MAX_INFLATE = 1000.0
MAX_SEEDS = 10_000  # seeds 0..N-1 are solved one after another: more is a typo, not a benchmark


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.command()(stress)
    app.command()(bench)


def generate(
    types: Annotated[int, typer.Option(help="query types", min=1, max=200)] = 6,
    models: Annotated[int, typer.Option(help="models (catalog, then fine-tuned variants)", min=1, max=60)] = 6,
    tiers: Annotated[
        int, typer.Option(help="GPU tiers: (GPU, provider) pairs; with --fleet also region and spot", min=1, max=40)
    ] = 10,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    mode: Annotated[str, typer.Option(help="table | model")] = "table",
    fleet: Annotated[
        bool, typer.Option("--fleet/--no-fleet", help="tiers as GPU × provider × region × on-demand|spot")
    ] = False,
    out: Annotated[Path, typer.Option(help="instance file to write (.yaml/.json)")] = Path("instance.yaml"),
) -> None:
    """Write a paper-shaped instance drawn from the catalogs (deterministic for a seed)."""
    from planner.console import guard, output_path
    from planner.console import out as console
    from planner.errors import InputError
    from planner.fileio import write_document
    from planner.generate import paper_instance, provider_prices

    def prepare() -> None:
        output_path(out, "--out")
        if mode not in ("table", "model"):
            raise InputError(None, "--mode", "must be table or model")
        cliargs.seed("--seed", seed)
        pairs = sum(len(by) for by in provider_prices().values())
        if tiers > pairs and not fleet:
            raise InputError(None, "--tiers", f"more than the {pairs} (GPU, provider) pairs needs --fleet")

    guard(prepare)
    doc = paper_instance(types, models, tiers, seed, mode=mode, fleet=fleet)
    guard(lambda: write_document(out, doc))
    n = len(doc.get("performance", []))
    console.print(
        f"{doc['name']}: {types} types × {models} models × {tiers} tiers ({mode} mode"
        + (f", {n} performance entries" if n else "")
        + f") written to {out}"
    )


def stress(
    instance: Annotated[Path, typer.Argument(help="instance file")],
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="plan to freeze")],
    inflate: Annotated[str, typer.Option(help="comma-separated factors for delays and errors")] = "1.2,1.5",
    json_out: Annotated[bool, typer.Option("--json/--no-json", help="print JSON instead of a table")] = False,
) -> None:
    """Freeze PLAN, inflate delay and error figures, report the demand that breaks SLO or accuracy."""
    import json
    import sys
    from dataclasses import asdict

    from rich.table import Table

    from planner.checker import check_plan
    from planner.console import guard
    from planner.console import out as console
    from planner.errors import InputError
    from planner.loader import load_instance
    from planner.options import build_option_table
    from planner.plan import read_plan_for
    from planner.progress import Steps, progress
    from planner.robustness import stress as run_stress

    def prepare(steps: Steps):  # type: ignore[no-untyped-def]
        # A factor multiplies delays and errors; beyond 1000 every figure is past every SLO anyway.
        factors = cliargs.number_list("--inflate", inflate, gt=0, le=MAX_INFLATE)
        steps.update("reading the instance and the plan")
        inst = load_instance(instance)
        plan = read_plan_for(inst, plan_file)
        steps.update("option table")  # model mode: measures the plan's capacities (seconds)
        table = build_option_table(inst)
        if not plan.has_solution:
            raise InputError(str(plan_file), "status", f"plan has status {plan.status!r}: nothing to stress")
        steps.update("checking the plan")
        report = check_plan(inst, plan, table)
        if not report.ok:
            raise InputError(str(plan_file), "-", f"the checker rejects this plan: {report.violations[0]}")
        return table, plan, factors

    with progress("stress") as steps:
        table, plan, factors = guard(lambda: prepare(steps))
        results = run_stress(table, plan, [1.0, *[f for f in factors if f != 1.0]])
    if json_out:
        # The document alone on stdout, as plain JSON (rich's print_json would wrap long lines).
        sys.stdout.write(json.dumps([asdict(r) for r in results], indent=2) + "\n")
        return
    t = Table(title=f"stress test of {plan_file} ({plan.method})")
    for col in (
        "factor",
        "query type",
        "SLO-violating share",
        "error",
        "max_error",
        "accuracy-violating share",
        "violating share",
    ):
        t.add_column(col)
    for r in results:
        for row in r.rows:
            t.add_row(
                f"{r.factor:g}",
                row.query_type,
                f"{100 * row.slo_share:.1f}%",
                f"{row.accuracy_error:.4f}",
                "-" if row.max_error is None else f"{row.max_error:.4f}",
                f"{100 * row.accuracy_share:.1f}%" if row.accuracy_broken else "ok",
                f"{100 * row.violating_share:.1f}%",
            )
        t.add_row(
            f"{r.factor:g}",
            "[bold]all[/]",
            "",
            "",
            "",
            f"cost ${r.cost_total:,.2f}",
            f"[bold]{100 * r.violating_demand_share:.1f}%[/]",
            end_section=True,
        )
    console.print(t)


def bench(
    families: Annotated[str, typer.Option(help="comma-separated families")] = "table-5x5x5,table-10x10x10",
    methods: Annotated[
        str, typer.Option(help="comma-separated methods")
    ] = "milp,gh,agh,cheapest-tier,best-model,melange",
    seeds: Annotated[int, typer.Option(help="seeds 0..N-1", min=1)] = 3,
    milp_time_limit: Annotated[float, typer.Option(help="seconds per MILP")] = 60.0,
    # Not benchmarks/results: those are the committed results (benchmarks/bench.py regenerates them).
    out_dir: Annotated[Path, typer.Option("--out", help="results directory")] = Path("bench-results"),
    workers: cliargs.WorkersOpt = None,
    ray: cliargs.RayOpt = None,
) -> None:
    """Run methods × instance families × seeds; write CSV, Markdown and plots (one task per
    family and seed, on --workers processes or --ray)."""
    from planner.bench import FAMILIES, run, summary, write
    from planner.console import guard
    from planner.console import out as console
    from planner.errors import InputError
    from planner.fileio import check_writable
    from planner.solvers import METHODS

    fams = [f.strip() for f in families.split(",") if f.strip()]
    meths = [m.strip() for m in methods.split(",") if m.strip()]

    def prepare() -> None:
        cliargs.seconds("--milp-time-limit", milp_time_limit)
        cliargs.whole("--seeds", seeds, ge=1, le=MAX_SEEDS)
        check_writable(out_dir, "--out", "dir")  # before minutes of solving
        if not fams:
            raise InputError(None, "--families", f"no family given; known: {', '.join(FAMILIES)}")
        if not meths:
            raise InputError(None, "--methods", f"no method given; known: {', '.join(METHODS)}")
        for f in fams:
            if f not in FAMILIES:
                raise InputError(None, "--families", f"unknown family {f!r}; known: {', '.join(FAMILIES)}")
        for m in meths:
            if m not in METHODS:
                raise InputError(None, "--methods", f"unknown method {m!r}; known: {', '.join(METHODS)}")

    guard(prepare)
    from planner import executor

    with executor.use(guard(lambda: cliargs.executor(ray, workers))):
        df = guard(lambda: run(fams, meths, range(seeds), milp_time_limit=milp_time_limit))
    paths = guard(lambda: write(df, out_dir))
    console.print(summary(df).to_string(index=False))
    for p in paths:
        console.print(f"wrote {p}")
