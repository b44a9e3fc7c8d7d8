"""``planner review --instance I --trace T... --current PLAN --out DIR`` (registered extension).

Writes ``DIR/review.html`` (self-contained), ``DIR/review.md`` and ``DIR/review.json``, each
atomically; bad input is one line and exit 2 with nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from planner import cliargs
from planner.errors import InputError


def _check_screenshot(path: Path) -> None:
    """Before any work: a .png path, and a browser to take it with (the review takes ~30 s)."""
    from planner.review.browser import find_chromium

    if path.suffix.lower() != ".png":
        raise InputError(str(path), "--screenshot", "the screenshot is a PNG: give a .png path")
    if find_chromium() is None:
        raise InputError(
            None,
            "--screenshot",
            "headless Chromium not found: install Debian's 'chromium' and 'chromium-driver' "
            "(or set PLANNER_CHROMIUM and PLANNER_CHROMEDRIVER), or leave out --screenshot",
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise InputError(None, "--screenshot", "rendering needs selenium: pip install -e '.[dev]'") from None


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
        validate: Annotated[
            bool,
            typer.Option(
                "--validate/--no-validate",
                help="replay the recommended schedule window by window and re-solve where a type misses its target",
            ),
        ] = True,
        screenshot: Annotated[
            Path | None, typer.Option(help="also render the page in headless Chromium and save a PNG here")
        ] = None,
        time_limit: Annotated[
            float, typer.Option(help="seconds per solve (the multi-period plan, each what-if); 0: no limit")
        ] = 60.0,
    ) -> None:
        """Weekly capacity review: demand, recommended plan vs current, cost, SLO risk, what-ifs, schedule."""
        from planner.console import err, guard
        from planner.console import out as console
        from planner.fileio import check_writable, write_atomic
        from planner.loader import load_instance
        from planner.plan import check_plan_structure, read_plan
        from planner.progress import progress
        from planner.review.demand import parse_window
        from planner.review.report import ReviewInputs, build_review, render_html, render_markdown
        from planner.sim.replay import check_policy, needs_model_mode

        def prepare() -> ReviewInputs:
            check_writable(out, "--out", "dir")
            if screenshot is not None:
                check_writable(screenshot, "--screenshot")
            if method not in ("milp", "agh"):
                raise InputError(None, "--method", "milp or agh")
            check_policy(policy)
            cliargs.seed("--seed", seed)
            if time_limit != 0:
                cliargs.seconds("--time-limit", time_limit)
            w = parse_window(window)
            if screenshot is not None:
                _check_screenshot(screenshot)
            inst = load_instance(instance)
            needs_model_mode(inst, instance)
            cur = read_plan(current)
            # The current plan is simulated: it must be one the simulator can route (a plan that
            # breaks capacity is fine, that is what the review measures).
            check_plan_structure(inst, cur, str(current), routed_deployed=True)
            if not cur.has_solution:
                raise InputError(str(current), "status", f"the current plan has no solution ({cur.status})")
            if cur.schedule is not None:
                raise InputError(str(current), "schedule", "give the current single-period fleet plan")
            inputs = ReviewInputs(
                inst, instance, list(trace or []), cur, w, policy, method, seed, validate, time_limit or None
            )
            from planner.sim.replay import TraceArgs, trace_feed

            tr, _ = trace_feed(inst, instance, TraceArgs(inputs.traces, None, 1.0, 1.0, None, 0.0, None, False, seed))
            inputs.traces = list(tr.paths)
            return inputs

        inputs = guard(prepare)

        def build() -> dict:  # type: ignore[type-arg]
            with progress("review") as steps:  # on a terminal only: pipes get the results alone
                return build_review(inputs, progress=steps.update)

        try:
            data = guard(build)
        except typer.Exit:  # bad input (exit 2) from guard: typer.Exit is a RuntimeError too
            raise
        except RuntimeError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(4) from None
        docs = {  # rendered first, so a failure in rendering writes none of them
            "review.json": json.dumps(data, indent=2, default=str) + "\n",
            "review.md": render_markdown(data),
            "review.html": render_html(data),
        }
        for name, text in docs.items():
            guard(lambda: write_atomic(out / name, text))  # noqa: B023 (called at once)
        console.print(f"review written to {out}/review.html, review.md, review.json in {data['elapsed_s']} s")
        if data["cost_delta"] is not None:
            console.print(f"cost per period: recommended − current = {data['cost_delta']:+,.2f} $")
        if screenshot is not None:
            from planner.review.browser import render

            try:
                res = guard(lambda: render(out / "review.html", screenshot))  # an unwritable PNG: one line
            except typer.Exit:
                raise
            except RuntimeError as exc:  # the browser failed to start or render: the review stands
                err.print(f"error: --screenshot: {exc}", markup=False, highlight=False, soft_wrap=True)
                raise typer.Exit(4) from None
            console.print(
                f"screenshot {screenshot}: {len(res.section_ids)} sections, {len(res.console_errors)} console errors"
            )
