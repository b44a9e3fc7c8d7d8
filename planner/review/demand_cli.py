"""``planner demand TRACE... --instance I [--types MAPPING] --window 15m --out demand.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.errors import InputError


def register(app: typer.Typer) -> None:
    @app.command("demand")
    def demand(
        traces: Annotated[
            list[Path], typer.Argument(metavar="TRACE...", help="trace files (Azure, Splitwise, Mooncake)")
        ],
        instance: Annotated[Path, typer.Option(help="instance whose query types the requests map to (required)")],
        out: Annotated[Path, typer.Option("--out", help="demand CSV to write")],
        window: Annotated[str, typer.Option(help="window length: 15m, 5min, 900s, 1h")] = "15m",
        types: Annotated[Path | None, typer.Option(help="mapping file (default: the instance's .traces.yml)")] = None,
        rate_scale: Annotated[float, typer.Option(help="scale the arrival rate, keeping the duration")] = 1.0,
        time_scale: Annotated[float, typer.Option(help="compress time: arrivals / TIME_SCALE")] = 1.0,
        limit: Annotated[int | None, typer.Option(help="at most this many requests per trace file")] = None,
        skip_bad: Annotated[bool, typer.Option("--skip-bad", help="skip bad trace lines (counted)")] = False,
    ) -> None:
        """Arrival rate and mean/p90 input and output tokens per query type and window."""
        from rich.table import Table

        from planner.cli import _guard
        from planner.cli import out as console
        from planner.loader import load_instance
        from planner.review.demand import demand_from_trace, parse_window
        from planner.sim.cli import TraceArgs, trace_feed

        def run() -> object:
            if out.suffix.lower() != ".csv":
                raise InputError(str(out), "--out", "give a .csv path")
            if out.is_dir():
                raise InputError(str(out), "--out", "is a directory")
            w = parse_window(window)
            inst = load_instance(instance)
            tr, mapper = trace_feed(inst, instance, TraceArgs(traces, types, rate_scale, time_scale, limit, 0.0, None,
                                                              skip_bad, 0))  # fmt: skip
            d = demand_from_trace(tr, mapper.type_of, [q.id for q in inst.query_types], w)
            if not d.rows:
                raise InputError(None, "TRACE", "the traces hold no request")
            d.write_csv(out)
            return d

        d = _guard(run)
        t = Table(title=f"demand per query type ({d.windows} windows of {d.window_s / 60:g} min)")  # type: ignore[attr-defined]
        for col in ("type", "requests", "mean req/s", "peak req/s", "input mean", "output mean"):
            t.add_column(col)
        peak, mean = d.peak(), d.mean_rates()  # type: ignore[attr-defined]
        for q in d.type_ids:  # type: ignore[attr-defined]
            rows = [r for r in d.rows if r.query_type == q]  # type: ignore[attr-defined]
            n = sum(r.requests for r in rows)
            im = sum(r.input_mean * r.requests for r in rows) / n if n else 0.0
            om = sum(r.output_mean * r.requests for r in rows) / n if n else 0.0
            t.add_row(q, f"{n:,}", f"{mean[q]:.3f}", f"{peak[q]:.3f}", f"{im:.0f}", f"{om:.0f}")
        console.print(t)
        console.print(f"unmapped requests: {d.unmapped} · written to {out}")  # type: ignore[attr-defined]
