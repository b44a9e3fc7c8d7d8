"""``planner simulate`` and ``planner scale`` (registered by :data:`planner.cli.EXTENSIONS`).

simulate INSTANCE PLAN --trace FILE...   replay a trace through the plan's cluster; prints the
                                         summary; ``--strict`` exits 1 when a type misses --target;
                                         ``--shard`` replays pool by pool as parallel tasks
                                         (--workers, --ray; :mod:`planner.sim.shard`)
scale INSTANCE --trace FILE... --option M/G/TP/PP
                                         fewest replicas per policy reaching --target attainment;
                                         ``--tp-sweep`` compares every TP of the instance by goodput
                                         per GPU; ``--decode-option`` scales a split-phase pair;
                                         ``--plan`` scales every deployment of a plan on the share
                                         of the trace its routing sends there, beside the MILP count

The replay itself and the trace options, which ``solve --validate``, ``demand`` and ``review``
share, are in :mod:`planner.sim.replay`; this module is the commands' arguments and output.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from planner import cliargs
from planner.errors import InputError
from planner.problem import Instance
from planner.progress import Steps, progress
from planner.sim.policies import policy_names

POLICY_HELP = " | ".join(policy_names())


def check_outputs(*outputs: tuple[Path | None, str, str]) -> None:
    """Refuse unwritable outputs (path, option, kind: file | dir) before any work is done."""
    from planner.fileio import check_writable

    for path, option, kind in outputs:
        if path is not None:
            check_writable(path, option, kind)


def print_summary(s: dict[str, Any], target: float) -> None:
    from rich.table import Table

    from planner.console import out

    c = s["conservation"]
    out.print(
        f"policy [bold]{s['policy']}[/] · {s['requests']:,} requests over {s['simulated_s']:,.0f} s · "
        f"{s['gpus']} GPUs · attainment [bold]{s['attainment']}[/] · goodput {s['goodput_rps']} req/s"
    )
    out.print(
        f"finished {c['finished']:,} · rejected: context {c['rejected_context']}, kv {c['rejected_kv']} · "
        f"planned unserved {c['rejected_unserved']} · unmapped {c['unmapped']} · preemptions {s['preemptions']}"
    )
    t = Table(title="per query type", show_lines=False)
    for col in ("type", "served", "attain", "ttft p50/p99", "tpot p50/p99", "e2e p50/p99", "SLO ttft/tpot/e2e", ""):
        t.add_column(col)
    for ty, d in s["types"].items():
        miss = d["attainment"] is not None and d["attainment"] < target
        slo = d["slo"]
        t.add_row(
            ty,
            f"{d['served']:,}",
            f"{d['attainment']:.4f}" if d["attainment"] is not None else "-",
            f"{d['ttft_s']['p50']}/{d['ttft_s']['p99']}",
            f"{d['tpot_s']['p50']}/{d['tpot_s']['p99']}",
            f"{d['e2e_s']['p50']}/{d['e2e_s']['p99']}",
            f"{slo['ttft_s']}/{slo['tpot_s']}/{slo['e2e_s']}",
            "[red]below target[/]" if miss else "",
        )
    out.print(t)
    p = Table(title="per pool")
    for col in ("pool", "replicas", "GPUs", "utilization", "peak KV", "preemptions", "full chunk (ms)"):
        p.add_column(col)
    for d in s["pools"]:
        p.add_row(
            d["pool"],
            str(d["replicas"]),
            str(d["gpus"]),
            f"{d['utilization']:.3f}",
            f"{d['peak_kv']:.3f}",
            str(d["preemptions"]),
            f"{1e3 * d['iteration_time']['full_chunk_s']:.2f}",
        )
    out.print(p)
    pl = s["placement_us"]
    out.print(f"placement: {pl['decisions']:,} decisions, p50 {pl['p50']} µs, p99 {pl['p99']} µs")


def missed_types(s: dict[str, Any], target: float) -> list[str]:
    return [t for t, d in s["types"].items() if d["attainment"] is not None and d["attainment"] < target]


def _parse_split(text: str) -> Any:
    """``MODEL/GPU/TP/PP=P:DGPU/DTP/DPP:D`` → SplitSpec."""
    from planner.sim.cluster import MAX_ENGINES, SplitSpec, parse_option

    try:
        left, right = text.split("=", 1)
        p, dec, d = right.split(":")
        opt = parse_option(left, "--split")
        dgpu, dtp, dpp = dec.split("/")
        spec = SplitSpec(opt, int(p), parse_option(f"{opt.model}/{dgpu}/{dtp}/{dpp}", "--split"), int(d))
    except (ValueError, TypeError):
        raise InputError(
            None,
            "--split",
            f"{text!r}: expected MODEL/GPU/TP/PP=PREFILL:DECODE_GPU/TP/PP:DECODE, e.g. m/h100/4/1=2:a100/4/1:3",
        ) from None
    for n in (spec.prefill, spec.decode):
        if not 1 <= n <= MAX_ENGINES:
            raise InputError(None, "--split", f"{text!r}: replica counts must be in [1, {MAX_ENGINES:,}]")
    return spec


TraceOpt = Annotated[
    list[Path] | None, typer.Option("--trace", help="trace file (Azure CSV, Splitwise CSV, Mooncake JSONL); repeat")
]
MappingOpt = Annotated[
    Path | None, typer.Option(help="query-type mapping file (default: INSTANCE's .traces.yml beside it)")
]
RateOpt = Annotated[float, typer.Option(help="scale the arrival rate, keeping the duration")]
TimeOpt = Annotated[float, typer.Option(help="compress time: arrivals / TIME_SCALE")]
LimitOpt = Annotated[int | None, typer.Option(help="at most this many requests per trace file")]
StartOpt = Annotated[float, typer.Option(help="skip the trace before this second")]
DurOpt = Annotated[float | None, typer.Option(help="keep this many seconds of the trace")]
SkipOpt = Annotated[
    bool, typer.Option("--skip-bad/--no-skip-bad", help="skip bad trace lines (counted) instead of failing")
]


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(
        instance: Annotated[Path, typer.Argument(help="instance file")],
        plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="plan file written by `planner solve`")],
        trace: TraceOpt = None,
        mapping: MappingOpt = None,
        policy: Annotated[str, typer.Option(help=POLICY_HELP)] = "jsq",
        staleness: Annotated[float, typer.Option(help="seconds between load reports the router sees (0: live)")] = 0.0,
        headroom: Annotated[float | None, typer.Option(help="aladdin: share of each SLO bound it packs to")] = None,
        split: Annotated[
            str | None, typer.Option(help="serve one option split-phase: M/G/TP/PP=PREFILL:DGPU/DTP/DPP:DECODE")
        ] = None,
        target: Annotated[float, typer.Option(help="attainment each type should reach")] = 0.99,
        strict: Annotated[
            bool, typer.Option("--strict/--no-strict", help="exit 1 when a type misses --target")
        ] = False,
        rate_scale: RateOpt = 1.0,
        time_scale: TimeOpt = 1.0,
        limit: LimitOpt = None,
        start: StartOpt = 0.0,
        duration: DurOpt = None,
        skip_bad: SkipOpt = False,
        seed: Annotated[int, typer.Option(help="seed (power-of-two choices, rate scaling)")] = 0,
        out_path: Annotated[Path | None, typer.Option("--out", help="write the JSON summary here")] = None,
        requests_csv: Annotated[Path | None, typer.Option("--requests", help="write one CSV row per request")] = None,
        plots: Annotated[Path | None, typer.Option(help="write latency, attainment and load plots to this dir")] = None,
        quiet: Annotated[bool, typer.Option(help="print no summary")] = False,
        shard: Annotated[
            bool,
            typer.Option(
                "--shard/--no-shard", help="replay pool by pool as parallel tasks (long traces; --workers, --ray)"
            ),
        ] = False,
        shard_dir: Annotated[
            Path | None, typer.Option(help="--shard: scratch directory for the pools' shards (default: a temp dir)")
        ] = None,
        workers: cliargs.WorkersOpt = None,
        ray: cliargs.RayOpt = None,
    ) -> None:
        """Replay a request trace through PLAN's cluster and report SLO attainment per query type."""
        from planner.console import guard, out
        from planner.fileio import atomic_writer, staged_outputs, write_atomic
        from planner.loader import load_instance
        from planner.plan import check_plan_structure, read_plan
        from planner.sim.replay import (
            TraceArgs,
            check_policy,
            check_trace_args,
            needs_model_mode,
            run_simulation,
            trace_feed,
        )

        def prepare() -> tuple[Instance, Any, Any, Any, Any]:
            check_policy(policy)
            if out_path is not None and out_path.suffix.lower() != ".json":
                raise InputError(str(out_path), "--out", "the summary is JSON: give a .json path")
            if requests_csv is not None and requests_csv.suffix.lower() != ".csv":
                raise InputError(str(requests_csv), "--requests", "give a .csv path")
            check_outputs((out_path, "--out", "file"), (requests_csv, "--requests", "file"), (plots, "--plots", "dir"))
            cliargs.number("--target", target, gt=0, le=1)
            cliargs.number("--staleness", staleness, ge=0, le=cliargs.MAX_SECONDS)
            cliargs.number("--headroom", headroom, gt=0, le=1)
            targs = TraceArgs(trace, mapping, rate_scale, time_scale, limit, start, duration, skip_bad, seed)
            check_trace_args(targs)
            sp = _parse_split(split) if split else None
            if shard:
                for name, given in (("--requests", requests_csv), ("--plots", plots), ("--split", split)):
                    if given is not None:
                        raise InputError(None, name, "not available with --shard (per-request rows, load over time)")
                if shard_dir is not None and not shard_dir.is_dir():
                    raise InputError(str(shard_dir), "--shard-dir", "not a directory")
            elif workers is not None or ray is not None:
                raise InputError(None, "--workers" if workers is not None else "--ray", "goes with --shard")
            inst = load_instance(instance)
            needs_model_mode(inst, instance)
            plan = read_plan(plan_file)
            # Structure first (a plan of another instance, unknown ids, fractions that do not
            # split the traffic): the simulator replays only plans it can route.
            check_plan_structure(inst, plan, str(plan_file), routed_deployed=True)
            if not plan.has_solution:
                raise InputError(str(plan_file), "status", f"plan has no solution ({plan.status}): nothing to simulate")
            tr, mapper = trace_feed(inst, instance, targs)
            # Build once to validate the cluster before any output is opened.
            from planner.sim.cluster import simulator_for_plan
            from planner.sim.engine import SimConfig

            simulator_for_plan(inst, plan, SimConfig(policy=policy), sp, plan_label=str(plan_file))
            return inst, plan, tr, mapper, sp

        inst, plan, tr, mapper, sp = guard(prepare)
        fan_out = guard(lambda: cliargs.executor(ray, workers)) if shard else None

        def replay(fh: Any) -> Any:
            if fan_out is not None:
                sim = sharded()
            else:
                sim = run_simulation(inst, plan, tr, mapper, policy, seed, staleness, sp, fh, headroom)
            if tr.stats.emitted == 0:  # raised inside the writer: no empty --requests file either
                raise InputError(None, "--trace", "no request in the window (--start, --duration): nothing to simulate")
            return sim

        def sharded() -> Any:
            from planner.sim.engine import SimConfig
            from planner.sim.replay import feed_of
            from planner.sim.shard import replay_sharded

            config = SimConfig(policy=policy, seed=seed, staleness_s=staleness)
            if headroom is not None:
                config.headroom = headroom
            with progress(f"simulate {plan_file.name}: pools") as bar:
                bar.total(0)
                feed = feed_of(tr, mapper)
                label = str(plan_file)
                return replay_sharded(
                    inst, plan, feed, config, fan_out, shard_dir, progress=bar.task_done, plan_label=label
                )

        def go() -> Any:
            if requests_csv is not None:
                with atomic_writer(requests_csv) as fh:
                    return replay(fh)
            return replay(None)

        # --requests, --out and --plots land together once all are written (or none does).
        with staged_outputs():
            # (--shard draws its own bar over the pools)
            with progress(f"simulate {plan_file.name}") if fan_out is None else contextlib.nullcontext():
                sim = guard(go)
            s = sim.summary()
            s["trace"] = tr.summary()
            if out_path is not None:
                guard(lambda: write_atomic(out_path, json.dumps(s, indent=2) + "\n"))
            paths = []
            if plots is not None:
                from planner.sim.report import plot

                paths = guard(lambda: plot(sim, plots))
        if not quiet:
            print_summary(s, target)
            if paths:
                out.print(f"plots: {', '.join(str(p) for p in paths)}")
        missed = missed_types(s, target)
        if missed and not quiet:
            out.print(f"[yellow]below the {target} target:[/] {', '.join(missed)}")
        if missed and strict:
            raise typer.Exit(1)

    @app.command("scale")
    def scale(
        instance: Annotated[Path, typer.Argument(help="instance file")],
        trace: TraceOpt = None,
        option: Annotated[str | None, typer.Option(help="MODEL/GPU/TP/PP to scale")] = None,
        plan_file: Annotated[Path | None, typer.Option("--plan", help="scale every deployment of this plan")] = None,
        decode_option: Annotated[
            str | None, typer.Option(help="split phase: decode pool MODEL/GPU/TP/PP (prefill on --option)")
        ] = None,
        tp_sweep: Annotated[
            bool, typer.Option("--tp-sweep/--no-tp-sweep", help="compare every TP of the instance")
        ] = False,
        policies: Annotated[str, typer.Option("--policy", help=f"comma list or 'all': {POLICY_HELP}")] = "all",
        target: Annotated[float, typer.Option(help="SLO attainment to reach")] = 0.99,
        mapping: MappingOpt = None,
        staleness: Annotated[float, typer.Option(help="seconds between load reports (0: live)")] = 0.0,
        rate_scale: RateOpt = 1.0,
        time_scale: TimeOpt = 1.0,
        limit: LimitOpt = None,
        start: StartOpt = 0.0,
        duration: DurOpt = None,
        skip_bad: SkipOpt = False,
        seed: Annotated[int, typer.Option(help="seed")] = 0,
        out_path: Annotated[Path | None, typer.Option("--out", help="write the results as JSON here")] = None,
        workers: cliargs.WorkersOpt = None,
        ray: cliargs.RayOpt = None,
    ) -> None:
        """Fewest replicas per placement policy that keep SLO attainment at --target on a trace
        (each option's or pool's search per policy one parallel task: --workers, --ray)."""
        from rich.table import Table

        from planner.console import guard, out
        from planner.fileio import write_atomic

        def run() -> list[dict[str, Any]]:
            from planner.loader import load_instance
            from planner.options import build_option_table
            from planner.plan import check_plan_structure, read_plan
            from planner.sim.cluster import parse_option, replica_model
            from planner.sim.replay import (
                TraceArgs,
                check_policy,
                check_trace_args,
                feed_of,
                needs_model_mode,
                trace_feed,
            )
            from planner.sim.scale import Requests

            names = list(policy_names()) if policies == "all" else [p.strip() for p in policies.split(",")]
            for p in names:
                check_policy(p)
            cliargs.number("--target", target, gt=0, le=1)
            cliargs.number("--staleness", staleness, ge=0, le=cliargs.MAX_SECONDS)
            targs = TraceArgs(trace, mapping, rate_scale, time_scale, limit, start, duration, skip_bad, seed)
            check_trace_args(targs)
            if out_path is not None and out_path.suffix.lower() != ".json":
                raise InputError(str(out_path), "--out", "give a .json path")
            check_outputs((out_path, "--out", "file"))
            if (option is None) == (plan_file is None):
                raise InputError(None, "--option", "give exactly one of --option and --plan")
            if plan_file is not None and (decode_option is not None or tp_sweep):
                raise InputError(None, "--plan", "--decode-option and --tp-sweep go with --option, not --plan")
            opt = parse_option(option) if option is not None else None
            dec = parse_option(decode_option, "--decode-option") if decode_option else None
            inst = load_instance(instance)
            needs_model_mode(inst, instance)
            # Everything named is checked against the instance before the trace is read.
            plan = None
            if plan_file is not None:
                plan = read_plan(plan_file)
                check_plan_structure(inst, plan, str(plan_file), routed_deployed=True)
                if not plan.has_solution:
                    msg = f"plan has no solution ({plan.status}): nothing to scale"
                    raise InputError(str(plan_file), "status", msg)
                for d in plan.deployments:
                    if d.replicas > 0:
                        replica_model(inst, d.option, str(plan_file))
            opts = [] if opt is None else [opt]
            if opt is not None and tp_sweep:
                from planner.options import Option
                from planner.perf import structural_reason

                models = {m.id: m for m in inst.models}
                gpus = {g.id: g for g in inst.gpus}
                if opt.model not in models or opt.gpu not in gpus:
                    raise InputError(None, "--option", f"{opt.key}: model or gpu is not in the instance")
                opts = []
                for tp in inst.parallelism.tp:
                    cand = Option(opt.model, opt.gpu, tp, opt.pp)
                    if structural_reason(models[opt.model], gpus[opt.gpu], tp, opt.pp):
                        continue
                    try:
                        replica_model(inst, cand)
                    except InputError:
                        continue  # does not fit in memory at this TP
                    opts.append(cand)
                if not opts:
                    raise InputError(None, "--option", f"{opt.key}: no TP degree of the instance fits")
            elif opt is not None:
                replica_model(inst, opt)
            if dec is not None:
                replica_model(inst, dec, "--decode-option")
            steps.update("option table")
            table = build_option_table(inst)
            tr, mapper = trace_feed(inst, instance, targs)
            steps.update("reading the trace")
            reqs = Requests.collect(feed_of(tr, mapper))
            if len(reqs) == 0:
                raise InputError(None, "--trace", "the trace has no request in the window")
            if plan is not None:
                return scale_plan(inst, table, plan, reqs, names, target, seed, staleness, steps)
            return scale_options(inst, table, opts, reqs, names, target, seed, staleness, dec, steps)

        from planner import executor

        fan_out = guard(lambda: cliargs.executor(ray, workers))
        with progress("scale", total=0) as steps, executor.use(fan_out):
            rows = guard(run)
        t = Table(title=f"fewest replicas at {target} attainment")
        for col in ("option", "policy", "replicas", "GPUs", "attainment", "goodput/GPU", "planner", "note"):
            t.add_column(col)
        for r in rows:
            t.add_row(
                r["option"]
                + (
                    f" + {r['decode_option']} ({r['prefill_replicas']}p+{r['decode_replicas']}d)"
                    if r.get("decode_option")
                    else ""
                ),
                r["policy"],
                "-" if r["replicas"] is None else str(r["replicas"]),
                "-" if r["gpus"] is None else str(r["gpus"]),
                "-" if r["attainment"] is None else f"{r['attainment']:.4f}",
                "-" if r["goodput_rps_per_gpu"] is None else f"{r['goodput_rps_per_gpu']:.4f}",
                str(r.get("planned_replicas", r["fluid_estimate"])),
                r.get("reason", "") + (f" headroom {r['headroom']}" if r.get("headroom") else ""),
            )
        out.print(t)
        if tp_sweep:
            best = best_goodput(rows)
            if best:
                out.print(
                    f"most goodput per GPU: {best['option']} ({best['policy']}), "
                    f"{best['goodput_rps_per_gpu']} req/s/GPU"
                )
        if out_path is not None:
            guard(lambda: write_atomic(out_path, json.dumps(rows, indent=2) + "\n"))


def best_goodput(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in rows if r["goodput_rps_per_gpu"]]
    return max(ok, key=lambda r: r["goodput_rps_per_gpu"]) if ok else None


def _cap(option: Any, decode_option: Any = None) -> int:
    """The search's replica cap: the scale search's own, and no probe beyond the simulator's
    engine limit (a split pair probes equal counts of both pools)."""
    from planner.sim.cluster import MAX_ENGINES
    from planner.sim.scale import MAX_REPLICAS

    engines_per_step = option.pp + (decode_option.pp if decode_option is not None else 0)
    return max(1, min(MAX_REPLICAS, MAX_ENGINES // engines_per_step))


def scale_options(
    inst: Instance,
    table: Any,
    options: list[Any],
    reqs: Any,
    policies: list[str],
    target: float,
    seed: int,
    staleness: float,
    decode_option: Any = None,
    steps: Steps | None = None,
) -> list[dict[str, Any]]:
    """Each (option, policy) search as one task of the executor in force (:mod:`planner.executor`)."""
    jobs = [
        (inst, opt, reqs, p, target, table, seed, staleness, decode_option, _cap(opt, decode_option))
        for opt in options
        for p in policies
    ]
    return _fan_out(_scale_job, jobs, [f"{j[1].key} {j[3]}" for j in jobs], steps)


def _scale_job(job: tuple[Any, ...]) -> dict[str, Any]:
    from planner.sim.scale import min_replicas

    inst, opt, reqs, p, target, table, seed, staleness, decode_option, cap = job
    return min_replicas(inst, opt, reqs, p, target, table, seed, staleness, decode_option, cap=cap).row()


def _fan_out(fn: Any, jobs: list[Any], names: list[str], steps: Steps | None) -> list[Any]:
    from planner import executor

    steps = steps or Steps(None, None, "")
    steps.total(len(jobs))
    return executor.current().map(fn, jobs, names, steps.task_done)


def scale_plan(
    inst: Instance,
    table: Any,
    plan: Any,
    reqs: Any,
    policies: list[str],
    target: float,
    seed: int,
    staleness: float,
    steps: Steps | None = None,
) -> list[dict[str, Any]]:
    """Each deployment on the requests the plan's routing sends to it, beside its MILP count (each
    (deployment, policy) search one task of the executor in force)."""
    from planner.plan import refuse_split
    from planner.validation import split_by_plan

    refuse_split(plan, "--plan", "sized pool by pool by scale (simulate replays the pair)")
    shares = [(d, sub) for d, sub in split_by_plan(inst, plan, reqs) if len(sub) > 0]
    jobs = [
        (inst, d.option, sub, p, target, table, seed, staleness, None, _cap(d.option))
        for d, sub in shares
        for p in policies
    ]
    rows = _fan_out(_scale_job, jobs, [f"{j[1].key} {j[3]}" for j in jobs], steps)
    planned = [(d.replicas, len(sub)) for d, sub in shares for _ in policies]
    for row, (replicas, n) in zip(rows, planned, strict=True):
        row["planned_replicas"] = replicas
        row["requests"] = n
    return rows
