"""``planner demand TRACE... --instance I --out demand.csv`` (registered by :data:`planner.cli.EXTENSIONS`).

Measures the arrival rate and request lengths per query type and time window of a trace (see
:mod:`planner.review.demand`), prints a summary per type and writes the CSV atomically. Bad
input is one line and exit 2, with nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from planner.errors import InputError

_RENAMED = {"--mapping": "--types", "--trace": "TRACE"}


def _window_label(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def parse_tokens(text: str) -> int | bool:
    """``--prefix-cache``: a token count (``2M``, ``500k``, ``131072``), True for ``unbounded``, False for ``off``."""
    t = text.strip().lower()
    if t in ("unbounded", "inf", "infinite"):
        return True
    if t in ("off", "none", "0"):
        return False
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(t[-1:], 1.0)
    try:
        value = float(t[:-1] if scale != 1.0 else t) * scale
    except ValueError:
        raise InputError(
            None, "--prefix-cache", f"{text!r}: expected tokens such as 2M, 500k or 131072, or unbounded/off"
        ) from None
    if not 0 < value < 1e15:
        raise InputError(None, "--prefix-cache", f"{text!r}: must be more than 0 tokens")
    return int(value)


def register(app: typer.Typer) -> None:
    @app.command("demand")
    def demand(
        traces: Annotated[
            list[Path] | None,
            typer.Argument(
                metavar="TRACE...",
                help="trace files (Azure CSV, Splitwise CSV, Mooncake JSONL); default: those the mapping names",
                show_default=False,
            ),
        ] = None,
        instance: Annotated[
            Path | None,
            typer.Option(help="instance file (required): its query types are the demand's types", show_default=False),
        ] = None,
        types: Annotated[
            Path | None,
            typer.Option(
                "--types",
                help="trace mapping file (request → query type); default: INSTANCE's .traces.yml beside it, "
                "or the instance's only type",
                show_default=False,
            ),
        ] = None,
        window: Annotated[str, typer.Option(help="window length: 15m, 5min, 900s, 1h or plain seconds")] = "15m",
        out_path: Annotated[
            Path | None, typer.Option("--out", help="write the demand CSV here (required, .csv)", show_default=False)
        ] = None,
        rate_scale: Annotated[float, typer.Option(help="scale the arrival rate, keeping the duration")] = 1.0,
        time_scale: Annotated[float, typer.Option(help="compress time: arrivals / TIME_SCALE")] = 1.0,
        limit: Annotated[int | None, typer.Option(help="at most this many requests per trace file")] = None,
        start: Annotated[float, typer.Option(help="skip the trace before this second (windows start here)")] = 0.0,
        duration: Annotated[float | None, typer.Option(help="keep this many seconds of the trace")] = None,
        skip_bad: Annotated[
            bool, typer.Option("--skip-bad/--no-skip-bad", help="skip bad trace lines (counted) instead of failing")
        ] = False,
        seed: Annotated[int, typer.Option(help="seed for --rate-scale thinning/replication")] = 0,
        prefix_cache: Annotated[
            str,
            typer.Option(
                help="prefix-hit ratio per type and window of an ideal LRU cache of this many KV tokens "
                "(e.g. 2M, 500k; 'unbounded'; 'off'), where the trace has prefix-block ids (Mooncake hash_ids)",
            ),
        ] = "unbounded",
        figures_path: Annotated[
            Path | None,
            typer.Option(
                "--figures",
                help="also write each type's instance figures (rate, burst and length percentiles, clusters, "
                "length correlation) as a YAML instance fragment",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Arrival rate and request lengths per query type and time window of a trace, written as CSV."""
        from rich.table import Table

        from planner.console import guard, out
        from planner.fileio import atomic_writer, check_writable
        from planner.loader import load_instance
        from planner.review.demand import Demand, demand_from_trace, measure_prefix, measure_prefix_curve, parse_window
        from planner.review.figures import FiguresBuilder, TypeFigures, figures_yaml
        from planner.sim.prefix import PrefixIndex
        from planner.sim.replay import TraceArgs, check_trace_args, trace_feed

        def run() -> tuple[Demand, float, int, dict[str, TypeFigures], dict[str, float]]:
            targs = TraceArgs(traces, types, rate_scale, time_scale, limit, start, duration, skip_bad, seed)
            check_trace_args(targs)
            if out_path is None:
                raise InputError(None, "--out", "required: the CSV file to write")
            if out_path.suffix.lower() != ".csv":
                raise InputError(str(out_path), "--out", "the demand is a CSV file: give a .csv path")
            check_writable(out_path, "--out")  # a directory, under a file, read-only: before any work
            if figures_path is not None:
                if figures_path.suffix.lower() not in (".yaml", ".yml"):
                    raise InputError(str(figures_path), "--figures", "the figures are YAML: give a .yaml path")
                if figures_path.resolve() == out_path.resolve():
                    raise InputError(str(figures_path), "--figures", "is the --out file")
                check_writable(figures_path, "--figures")
            window_s = parse_window(window)
            capacity = parse_tokens(prefix_cache)
            if instance is None:
                raise InputError(None, "--instance", "required: the instance file whose query types the demand is per")
            inst = load_instance(instance)
            try:
                tr, mapper = trace_feed(inst, instance, targs)
            except InputError as exc:
                if exc.field not in _RENAMED:
                    raise
                new = _RENAMED[exc.field]
                raise InputError(exc.file, new, exc.message.replace(exc.field, new)) from None
            ids = [q.id for q in inst.query_types]
            fb = FiguresBuilder(ids, inst.arrival_window_s, slow_window_s=inst.arrival_slow_window_s)
            d = demand_from_trace(tr, mapper.type_of, ids, window_s, figures=fb)
            index = PrefixIndex(tr.paths) if capacity is not False else None
            if index:  # a second pass: the hit ratios need the windows' bounds
                order = {s: k for k, s in reversed(list(enumerate(tr.sources)))}

                def with_ids() -> Iterator[tuple[float, str | None, int, tuple[int, ...] | None]]:
                    for r in tr:
                        yield r.arrival_s, mapper.type_of(r), r.input_tokens, index.get(order[r.source], r.line)

                d = measure_prefix(d, with_ids(), None if capacity is True else capacity)
            figs = fb.finish(float(d.lengths_s().sum()))
            if figures_path is not None and index:  # the reuse a plan may count on (planner.capacity.prefix_hit)
                for ty, reuse in measure_prefix_curve(ids, with_ids()).items():
                    if ty in figs:
                        figs[ty].prefix = reuse
            targets = {q.id: inst.attainment(q) or 0.99 for q in inst.query_types}
            if figures_path is not None:
                source = ", ".join(Path(p).name for p in (traces or mapper.trace_paths))
                text = figures_yaml(figs, inst.arrival_window_s, source, targets, inst.arrival_slow_window_s)
                with atomic_writer(figures_path) as fh:
                    fh.write(text)
            d.write_csv(out_path)
            return d, window_s, tr.stats.skipped_bad, figs, targets

        d, window_s, skipped, figs, targets = guard(run)
        stats = d.type_stats()
        full = int(d.full().sum())
        span = float(d.lengths_s().sum())
        total = sum(s["requests"] for s in stats.values())
        out.print(
            f"{d.windows} windows of {_window_label(window_s)} ({full} whole) over {span:,.1f} s · "
            f"{total:,} requests · unmapped {d.unmapped:,}" + (f" · skipped bad lines {skipped:,}" if skipped else "")
        )
        t = Table(title="demand per query type")
        for col in ("type", "requests", "peak req/s", "mean req/s", "input mean/p90", "output mean/p90"):
            t.add_column(col, justify="left" if col == "type" else "right")
        for ty, s in stats.items():
            t.add_row(
                ty,
                f"{s['requests']:,}",
                f"{s['peak_rate']:.3f}",
                f"{s['mean_rate']:.3f}",
                f"{s['input_mean']:.0f}/{s['input_p90']:.0f}",
                f"{s['output_mean']:.0f}/{s['output_p90']:.0f}",
            )
        out.print(t)
        if d.prefix is not None:
            size = "an unbounded" if parse_tokens(prefix_cache) is True else f"a {prefix_cache}-token"
            ratios = ", ".join(f"{ty} {v:.3f}" for ty, v in d.prefix_ratios().items() if v is not None)
            out.print(f"prefix-hit ratio (token-weighted, {size} LRU cache per type): {ratios}", markup=False)
        for f in figs.values():
            if (w := f.burst_warning(targets[f.id])) is not None:
                out.print(f"warning: {w}", markup=False, highlight=False)
        out.print(f"written to {out_path}", markup=False, highlight=False)
        if figures_path is not None:
            out.print(f"figures written to {figures_path}", markup=False, highlight=False)
