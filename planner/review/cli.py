"""``planner review --instance I --trace T... --current PLAN --out DIR`` (registered extension).

Writes ``DIR/review.html`` (self-contained), ``DIR/review.md`` and ``DIR/review.json``, each
atomically; bad input is one line and exit 2 with nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from planner.errors import InputError


def register(app: typer.Typer) -> None:
    @app.command("review")
    def review(
        instance: Annotated[Path, typer.Option(help="instance file (its .traces.yml maps trace requests to types)")],
        current: Annotated[Path, typer.Option(help="the plan the fleet runs now")],
        out: Annotated[Path, typer.Option("--out", help="directory for review.html, review.md, review.json")],
        trace: Annotated[list[Path] | None, typer.Option("--trace", help="last week's traffic; repeat")] = None,
        window: Annotated[str, typer.Option(help="demand window, e.g. 15m, 1h, 900s")] = "15m",
        policy: Annotated[str, typer.Option(help="placement policy for the simulations")] = "jsq",
        method: Annotated[str, typer.Option(help="milp | agh (multi-period)")] = "milp",
        seed: Annotated[int, typer.Option(help="seed")] = 0,
        screenshot: Annotated[
            Path | None, typer.Option(help="also render the page in headless Chromium and save a PNG here")
        ] = None,
    ) -> None:
        """Weekly capacity review: demand, recommended plan vs current, cost, SLO risk, what-ifs, schedule."""
        from planner.cli import _guard
        from planner.cli import out as console
        from planner.fileio import write_atomic
        from planner.loader import load_instance
        from planner.plan import read_plan
        from planner.review.demand import parse_window
        from planner.review.report import ReviewInputs, build_review, render_html, render_markdown
        from planner.sim.cli import _check_policy

        def prepare() -> ReviewInputs:
            if out.exists() and not out.is_dir():
                raise InputError(str(out), "--out", "exists and is not a directory")
            if method not in ("milp", "agh"):
                raise InputError(None, "--method", "milp or agh")
            _check_policy(policy)
            w = parse_window(window)
            inst = load_instance(instance)
            cur = read_plan(current)
            if cur.instance != inst.name:
                raise InputError(str(current), "instance", f"plan is for {cur.instance!r}, not {inst.name!r}")
            if not cur.has_solution:
                raise InputError(str(current), "status", f"the current plan has no solution ({cur.status})")
            if cur.schedule is not None:
                raise InputError(str(current), "schedule", "give the current single-period fleet plan")
            inputs = ReviewInputs(inst, instance, list(trace or []), cur, w, policy, method, seed)
            from planner.sim.cli import TraceArgs, trace_feed

            tr, _ = trace_feed(inst, instance, TraceArgs(inputs.traces, None, 1.0, 1.0, None, 0.0, None, False, seed))
            inputs.traces = list(tr.paths)
            return inputs

        inputs = _guard(prepare)

        def build() -> dict:  # type: ignore[type-arg]
            return build_review(inputs, progress=lambda m: console.print(f"· {m}", style="dim"))

        try:
            data = _guard(build)
        except RuntimeError as exc:
            console.print(f"error: {exc}", markup=False)
            raise typer.Exit(4) from None
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "review.json", json.dumps(data, indent=2, default=str) + "\n")
        write_atomic(out / "review.md", render_markdown(data))
        write_atomic(out / "review.html", render_html(data))
        console.print(f"review written to {out}/review.html, review.md, review.json in {data['elapsed_s']} s")
        if data["cost_delta"] is not None:
            console.print(f"cost per period: recommended − current = {data['cost_delta']:+,.2f} $")
        if screenshot is not None:
            from planner.review.browser import render

            res = render(out / "review.html", screenshot)
            console.print(
                f"screenshot {screenshot}: {len(res.section_ids)} sections, {len(res.console_errors)} console errors"
            )
