"""The ``planner`` command line (see the spec's command-line conventions).

Exit codes: 0 success; 1 ``check`` found violations; 2 bad input (one line on stderr naming the
file and the field, nothing written); 3 proven infeasible (the plan with its diagnosis is still
written); 4 the method stopped without a solution (time limit, say); 130 interrupted (Ctrl-C:
one line on stderr, no output written or changed).

Streams: a document a command prints (the plan of ``solve`` without ``--out``, ``schema``,
``--json``) is the only thing on stdout; the human summary then goes to stderr. Progress shows on
stderr when it is a terminal, never in pipes. README, "Command-line conventions". The codes, the
streams and the one-line handling of bad input are in :mod:`planner.console`, which the features'
commands share.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner import __version__, cliargs
from planner.cliargs import OneLineGroup
from planner.console import (
    EXIT_INFEASIBLE,
    EXIT_INTERRUPTED,
    EXIT_NO_SOLUTION,
    EXIT_VIOLATIONS,
    err,
    guard,
    out,
    output_path,
)
from planner.errors import InputError
from planner.fileio import dump_document, write_atomic
from planner.gcpause import freeze_heap
from planner.loader import load_instance
from planner.options import OptionTable, build_option_table, needs_checks
from planner.plan import Plan, plan_document, read_plan_for
from planner.progress import Steps, progress

INTERRUPTED = "interrupted: stopped before finishing; outputs not yet written are unchanged"


def _flag_type(self: Any, ctx: Any) -> str | None:
    """Typer's help labels every on/off flag ``<bool>``, as if it took a value: show none."""
    return None if getattr(self, "is_flag", False) else _typer_option_type(self, ctx)


_typer_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


class PlannerGroup(OneLineGroup):
    """The command group: parser errors as one line (:class:`OneLineGroup`), and Ctrl-C as one
    line and exit 130. Every output is written atomically after the work, so an interrupt leaves
    an earlier output as it was; the backends make HiGHS give the interrupt back to Python."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            sys.stderr.write(INTERRUPTED + "\n")
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    cls=PlannerGroup,  # parser errors (not a number, out of range) as one line, not a usage box; Ctrl-C
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Capacity planner for LLM inference serving: which GPUs, models, TP/PP and routing, at least cost.",
)


def _money(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def print_plan_summary(plan: Plan, table: OptionTable, console: Console | None = None) -> None:
    """The plan for people, on ``console`` (stdout unless the plan itself goes there)."""
    console = console or out
    inst = table.instance
    head = (
        f"[bold]{inst.name}[/] · method {plan.method}"
        + (f" ({plan.backend})" if plan.backend else "")
        + f" · status [bold]{plan.status}[/] · {plan.solve_seconds:.2f} s"
    )
    console.print(head)
    if plan.objective is not None:
        gap = "-" if plan.gap is None else f"{100 * plan.gap:.4f}%"
        console.print(
            f"objective ${_money(plan.objective)} per {inst.period_hours:g} h · bound {_money(plan.bound)} · gap {gap}"
        )
    if plan.cost is not None:
        c = plan.cost
        console.print(
            f"rental {_money(c.rental)} · storage {_money(c.storage)} · delay penalty {_money(c.delay_penalty)}"
            f" · unserved penalty {_money(c.unserved_penalty)}"
        )
    if plan.deployments:
        t = Table(title="deployments", show_lines=False)
        for col in ("model", "gpu", "tp", "pp", "replicas", "gpus", "$/period"):
            t.add_column(col, justify="right" if col in ("tp", "pp", "replicas", "gpus", "$/period") else "left")
        for d in plan.deployments:
            cost = inst.period_hours * inst.gpu(d.gpu).price_per_hour * d.gpus
            mbt = "" if d.max_num_batched_tokens is None else f" · mbt {d.max_num_batched_tokens}"
            mbt += "" if d.role is None else f" · {d.role} of pair {d.pair}"
            t.add_row(d.model, d.gpu + mbt, str(d.tp), str(d.pp), str(d.replicas), str(d.gpus), _money(cost))
        console.print(t)
        r = Table(title="routing")
        for col in ("query type", "option", "fraction", "ttft s", "tpot s", "e2e s"):
            r.add_column(col)
        for q in inst.query_types:
            for s in plan.routing.get(q.id, []):
                row = table.row(s.option, q.id)
                fig = [
                    ("-" if row is None or v is None else f"{v:.3g}")
                    for v in ((row.ttft_s, row.tpot_s, row.e2e_s) if row else (None, None, None))
                ]
                r.add_row(q.id, s.option.key, f"{s.fraction:.4f}", *fig)
            un = plan.unserved.get(q.id, 0.0)
            if un > 0:
                r.add_row(q.id, "[italic]unserved[/]", f"{un:.4f}", "", "", "")
        console.print(r)
    if plan.diagnosis:
        d = Table(title="diagnosis: what blocks each query type")
        for col in ("query type", "constraint", "detail"):
            d.add_column(col)
        for b in plan.diagnosis:
            d.add_row(b.query_type, b.constraint, b.detail)
        console.print(d)
    if plan.message and plan.status == "no_solution":
        console.print(f"[yellow]{plan.message}[/]")


@app.command()
def solve(
    instance: Annotated[Path, typer.Argument(help="instance file (.yaml/.yml/.json)")],
    method: Annotated[str, typer.Option(help="milp | gh | agh (and the baselines: see README)")] = "milp",
    out_path: Annotated[Path | None, typer.Option("--out", help="write the plan here (.yaml/.json)")] = None,
    backend: Annotated[
        str, typer.Option(help="exact backend for milp: highs | ortools | highs-arrays (fleet scale, no Pyomo)")
    ] = "highs",
    time_limit: Annotated[float | None, typer.Option(help="seconds")] = None,
    gap: Annotated[float, typer.Option(help="relative MIP gap at which to stop")] = 1e-6,
    threads: Annotated[int, typer.Option(help="solver threads")] = 1,
    seed: Annotated[int, typer.Option(help="random seed (heuristics)")] = 0,
    bound: Annotated[
        bool, typer.Option("--bound/--no-bound", help="heuristics: also report the LP-relaxation bound")
    ] = False,
    warm_start: Annotated[
        str | None, typer.Option("--warm-start", help="milp: start from gh, agh, or a PLAN file")
    ] = None,
    headroom: Annotated[float, typer.Option(help="plan for latency SLOs tightened by 1 + HEADROOM")] = 0.0,
    error_headroom: Annotated[float, typer.Option(help="plan for max_error tightened by 1 + ERROR_HEADROOM")] = 0.0,
    export: Annotated[str | None, typer.Option(help="also export the plan: vllm | k8s | helm | router")] = None,
    export_dir: Annotated[Path | None, typer.Option(help="directory for --export")] = None,
    validate: Annotated[
        list[Path] | None,
        typer.Option("--validate", help="replay this trace through the solved plan (repeat for several files)"),
    ] = None,
    validate_policy: Annotated[str, typer.Option(help="placement policy for --validate")] = "jsq",
    prove: Annotated[
        bool,
        typer.Option(
            "--prove/--no-prove",
            help="milp, attainment targets: simulate until the plan is optimal with every pair simulated "
            "(rounds on a relaxation; minutes to hours on large instances)",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet/--no-quiet", help="print no summary (without --out, just the plan)")
    ] = False,
    workers: cliargs.WorkersOpt = None,
    ray: cliargs.RayOpt = None,
) -> None:
    """Solve INSTANCE and write the plan (exit 0), or its diagnosis when proven infeasible (exit 3).
    Capacities to simulate and --validate's pool replays run as parallel tasks (--workers, --ray)."""
    from planner.robustness import on_original, tightened
    from planner.solvers import METHODS
    from planner.solvers import solve as run
    from planner.solvers.backends import BACKENDS

    def prepare() -> tuple[OptionTable, Plan | None]:
        output_path(out_path, "--out")
        if method not in METHODS:
            raise InputError(None, "--method", f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
        known = sorted([*BACKENDS, "highs-arrays"])
        if backend not in known:
            raise InputError(None, "--backend", f"unknown backend {backend!r}; known: {', '.join(known)}")
        cliargs.seconds("--time-limit", time_limit)
        cliargs.number("--gap", gap, ge=0, lt=1)
        cliargs.whole("--threads", threads, ge=1, le=1024)
        cliargs.seed("--seed", seed)
        if not 0 <= headroom < 10:
            raise InputError(None, "--headroom", "must be in [0, 10)")
        if not 0 <= error_headroom < 10:
            raise InputError(None, "--error-headroom", "must be in [0, 10)")
        if (export is None) != (export_dir is None):
            raise InputError(None, "--export", "--export and --export-dir go together")
        if export is not None and export_dir is not None:
            from planner.export import FORMATS, check_target

            if export not in FORMATS:
                raise InputError(None, "--export", f"unknown format {export!r}; known: {', '.join(FORMATS)}")
            check_target(export_dir, False, "--export-dir")
        inst = load_instance(instance)
        if inst.scaling is not None:
            from planner.solvers import MULTIPERIOD

            if method not in MULTIPERIOD:
                raise InputError(
                    str(instance), "scaling", f"multi-period instances are solved by {' or '.join(MULTIPERIOD)}"
                )
            for name, given in (
                ("--warm-start", warm_start is not None),
                ("--headroom", headroom > 0),
                ("--error-headroom", error_headroom > 0),
            ):
                if given:
                    raise InputError(None, name, "not supported for multi-period instances")
        if validate:
            from planner.sim.replay import TraceArgs, check_policy, feed_of, trace_feed
            from planner.sim.scale import Requests

            check_policy(validate_policy)
            trace, mapper = trace_feed(
                inst, instance, TraceArgs(validate, None, 1.0, 1.0, None, 0.0, None, False, seed)
            )
            if inst.scaling is None:
                # Read (and so check) the traces before any work: a bad line must cost no option
                # table and no solve, and leave no plan behind.
                validation.append(Requests.collect(feed_of(trace, mapper)))
        start = None
        if warm_start is not None:
            if method != "milp":
                raise InputError(None, "--warm-start", "only the milp method takes a warm start")
            if warm_start not in ("gh", "agh"):
                start = read_plan_for(inst, Path(warm_start))
        return build_option_table(inst), start

    validation: list[Any] = []
    table, start = guard(prepare)
    freeze_heap()  # the instance and table live to the end: no collection walks them (planner.gcpause)
    from planner import executor

    fan_out = guard(lambda: cliargs.executor(ray, workers))
    # The plan goes to stdout only when it is all that goes there: then the summary (and every
    # other line for people) goes to stderr, so `planner solve X > plan.yaml` is a plan.
    say = err if out_path is None else out

    def solve_and_validate(steps: Steps) -> tuple[Plan, OptionTable]:
        t, first = table, start
        if warm_start in ("gh", "agh"):
            steps.update(f"warm start ({warm_start})")
            first = run(t.instance, warm_start, table=t, seed=seed)
        options: dict[str, Any] = {"seed": seed}
        if method == "milp":
            options.update(backend=backend, time_limit=time_limit, gap=gap, threads=threads, warm_start=first)
            if prove:
                options.update(prove=True)
        else:
            options.update(bound=bound)
            if method == "agh" and time_limit is not None:
                options.update(time_limit=time_limit)
        steps.update(method)
        if headroom > 0 or error_headroom > 0:
            tight = tightened(t.instance, headroom, error_headroom)
            plan = on_original(t, run(tight, method, **options), headroom, error_headroom)
        else:
            plan = run(t.instance, method, table=t, **options)
        if validation and plan.has_solution:
            from planner.validation import validate as validate_loop

            opts = {k: v for k, v in options.items() if k != "warm_start"}
            rounds = [1]

            def resolve(derated: OptionTable) -> Plan:
                rounds[0] += 1
                steps.update(f"validation round {rounds[0]}: re-solving with derated capacities")
                solved = run(derated.instance, method, table=derated, **opts)
                steps.update(f"validation round {rounds[0]}: replaying the traces")
                return solved

            steps.update("validation round 1: replaying the traces")
            plan, t = guard(
                lambda: validate_loop(
                    t.instance, t, plan, validation[0], resolve, [str(p) for p in validate], validate_policy, seed
                )
            )
        return plan, t

    # A spinner on a terminal: model-mode solves simulate capacities and --validate replays traces.
    with progress(f"solve {instance.name}") as steps, executor.use(fan_out):
        plan, table = guard(lambda: solve_and_validate(steps))
    if not quiet:
        print_plan_summary(plan, table, say)
    if out_path is not None:
        guard(lambda: write_atomic(out_path, dump_document(plan_document(plan), out_path.suffix)))
        if not quiet:
            say.print(f"plan written to {out_path}")
    else:
        sys.stdout.write(dump_document(plan_document(plan), ".yaml"))  # not rich: no wrapping, no markup
        sys.stdout.flush()
    if export is not None and export_dir is not None and plan.has_solution:
        from planner.export import export_plan

        written = guard(lambda: export_plan(plan, table.instance, export, export_dir, table=table))
        if not quiet:
            say.print(f"{export} export: {len(written)} files in {export_dir}")
    if plan.validation is not None:
        v = plan.validation
        cells = ", ".join(f"{t} {a:.4f}" for t, a in v.attainment.items() if a is not None)
        say.print(
            f"validation ({v.policy}, {v.rounds} round{'s' if v.rounds > 1 else ''}): attainment {cells}"
            + (f"; derated {', '.join(f'{k} ×{f:.3g}' for k, f in v.derating.items())}" if v.derating else "")
        )
        if not v.passed:
            say.print(f"[yellow]validation: below target:[/] {v.message}", soft_wrap=True)
    if plan.status == "infeasible":
        raise typer.Exit(EXIT_INFEASIBLE)
    if plan.status == "no_solution":
        raise typer.Exit(EXIT_NO_SOLUTION)


@app.command()
def check(
    instance: Annotated[Path, typer.Argument(help="instance file")],
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="plan file written by `planner solve`")],
) -> None:
    """Recompute every constraint and cost of PLAN from the two files alone (exit 0 ok, 1 violations)."""
    from planner.checker import check_plan

    def prepare() -> tuple[Any, Plan]:
        inst = load_instance(instance)
        # A malformed plan (unknown ids, degrees, fractions that are not a split) is bad input;
        # a well-formed one that breaks a constraint is what the checker lists.
        return inst, read_plan_for(inst, plan_file)

    inst, plan = guard(prepare)
    report = check_plan(inst, plan)
    if report.ok:
        c = report.cost
        assert c is not None
        out.print(
            f"OK: plan satisfies every constraint · total ${_money(c.total)} (rental {_money(c.rental)}, "
            f"storage {_money(c.storage)}, delay penalty {_money(c.delay_penalty)}, "
            f"unserved penalty {_money(c.unserved_penalty)})"
        )
        return
    for v in report.violations:
        out.print(f"violation: {v}", markup=False, highlight=False)
    out.print(f"{len(report.violations)} violation(s)")
    raise typer.Exit(EXIT_VIOLATIONS)


OPTION_COLUMNS = (
    "model",
    "gpu",
    "tp",
    "pp",
    "max_num_batched_tokens",
    "query_type",
    "candidate",
    "eligible",
    "source",
    "throughput_rps",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "batch",
    "kv_capacity_tokens",
    "reason",
)


def option_records(table: OptionTable) -> list[dict[str, Any]]:
    recs = []
    for r in table.rows:
        recs.append(
            {
                "model": r.option.model,
                "gpu": r.option.gpu,
                "tp": r.option.tp,
                "pp": r.option.pp,
                "max_num_batched_tokens": r.option.budget,
                "query_type": r.query_type,
                "candidate": r.candidate,
                "eligible": r.eligible,
                "source": r.source,
                "throughput_rps": r.throughput_rps,
                "ttft_s": r.ttft_s,
                "tpot_s": r.tpot_s,
                "e2e_s": r.e2e_s,
                "batch": r.batch,
                "kv_capacity_tokens": r.kv_capacity_tokens,
                "reason": r.reason,
            }
        )
    return recs


@app.command()
def options(
    instance: Annotated[Path, typer.Argument(help="instance file")],
    csv: Annotated[Path | None, typer.Option(help="write every row to this CSV file")] = None,
    show_all: Annotated[bool, typer.Option("--all/--no-all", help="also show rows that are not candidates")] = False,
    query_type: Annotated[str | None, typer.Option("--type", help="only this query type")] = None,
) -> None:
    """Show every (option, query type) with its figures and why it is or is not eligible."""
    import pandas as pd

    def prepare() -> OptionTable:
        output_path(csv, "--csv", (".csv",))
        table = build_option_table(load_instance(instance))
        if query_type is not None and query_type not in table.type_ids:
            raise InputError(None, "--type", f"unknown query type {query_type!r}")
        return table

    table = guard(prepare)
    recs = [r for r in option_records(table) if query_type is None or r["query_type"] == query_type]
    if csv is not None:
        guard(lambda: write_atomic(csv, pd.DataFrame(recs, columns=list(OPTION_COLUMNS)).to_csv(index=False)))
        out.print(f"{len(recs)} rows written to {csv}")
        return
    shown = [r for r in recs if show_all or r["candidate"]]
    t = Table(
        title=f"options of {table.instance.name}: {sum(r['eligible'] for r in recs)} eligible of {len(recs)} rows"
    )
    for col in ("option", "type", "ok", "rps", "ttft s", "tpot s", "e2e s", "batch", "source", "why not"):
        t.add_column(col, overflow="fold")

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    for r in shown:
        t.add_row(
            f"{r['model']}/{r['gpu']}/tp{r['tp']}/pp{r['pp']}"
            + ("" if r["max_num_batched_tokens"] is None else f"/mbt{r['max_num_batched_tokens']}"),
            r["query_type"],
            "yes" if r["eligible"] else "no",
            f(r["throughput_rps"]),
            f(r["ttft_s"]),
            f(r["tpot_s"]),
            f(r["e2e_s"]),
            "-" if r["batch"] is None else str(r["batch"]),
            r["source"],
            r["reason"],
        )
    out.print(t)
    if needs_checks(table):
        out.print(
            "model-estimate rows are the analytic estimate; a solve simulates the pairs it uses "
            "(source: simulated), see planner/capacity.py"
        )
    hidden = len(recs) - len(shown)
    if hidden:
        out.print(f"({hidden} rows that are not candidates hidden; --all shows them, --csv writes everything)")


@app.command()
def schema(plan: Annotated[bool, typer.Option("--plan/--no-plan", help="the plan's schema instead")] = False) -> None:
    """Print the JSON Schema of the instance file (or of the plan file with --plan)."""
    from planner.problem import instance_json_schema

    doc = Plan.model_json_schema() if plan else instance_json_schema()
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _version(value: bool) -> None:
    if value:
        out.print(f"planner {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="show the version")
    ] = False,
) -> None:
    """Capacity planner for LLM inference serving."""


# Feature packages add their commands from their own modules: each listed module defines
# ``register(app: typer.Typer) -> None``. A module that is not there yet is skipped.
EXTENSIONS: tuple[str, ...] = (
    "planner.export.cli",
    "planner.perf.cli",
    "planner.heuristics.cli",
    "planner.sim.cli",
    "planner.review.cli",
    "planner.review.demand_cli",
)


def _register_extensions() -> None:
    import importlib

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # the feature is not installed in this tree
            raise
        module.register(app)


_register_extensions()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
