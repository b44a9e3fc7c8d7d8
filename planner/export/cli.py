"""``planner export PLAN --format vllm|k8s|helm|router [--instance INSTANCE] --out DIR``.

Registered by :data:`planner.cli.EXTENSIONS`. Bad input follows the CLI's conventions: one line
``error: FILE: FIELD: message`` on stderr, exit code 2, and nothing written to DIR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.errors import InputError
from planner.export.router import DEFAULT_GATEWAY


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command("export")
    def export(
        plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="plan file written by `planner solve`")],
        fmt: Annotated[
            str | None, typer.Option("--format", help="vllm | k8s | helm | router", show_default=False)
        ] = None,
        instance: Annotated[
            Path | None,
            typer.Option(help="the plan's instance file (required for vllm, k8s and helm)", show_default=False),
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="output directory (written atomically)", show_default=False)
        ] = None,
        force: Annotated[
            bool, typer.Option("--force/--no-force", help="replace DIR if it exists and is not empty")
        ] = False,
        gateway: Annotated[str, typer.Option(help="router: Gateway the HTTPRoute attaches to")] = DEFAULT_GATEWAY,
    ) -> None:
        """Export PLAN as vLLM scripts, Kubernetes manifests, Helm values or router weights."""
        from planner.console import guard
        from planner.console import out as console
        from planner.export import FORMATS, NEEDS_INSTANCE, export_plan
        from planner.export.router import check_gateway
        from planner.export.tree import check_target
        from planner.loader import load_instance
        from planner.plan import check_plan_structure, read_plan

        def run() -> list[Path]:
            if fmt is None:
                raise InputError(None, "--format", f"required: one of {', '.join(FORMATS)}")
            if fmt not in FORMATS:
                raise InputError(None, "--format", f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
            if out is None:
                raise InputError(None, "--out", "required: the directory to write")
            check_target(out, force)
            if force and out.is_dir():
                for given in (plan_file, instance):
                    if given is not None and out.resolve() in given.resolve().parents:
                        raise InputError(str(given), "--out", f"--force would replace {out}, which holds this file")
            if instance is None and fmt in NEEDS_INSTANCE:
                raise InputError(
                    None, "--instance", f"required for --format {fmt}: hf_id and node selectors come from the instance"
                )
            check_gateway(gateway)
            plan = read_plan(plan_file)
            inst = load_instance(instance) if instance is not None else None
            if inst is not None:  # the checker then judges feasibility; malformed is bad input first
                check_plan_structure(inst, plan, str(plan_file))
            return export_plan(
                plan,
                inst,
                fmt,
                out,
                force=force,
                gateway=gateway,
                plan_label=str(plan_file),
                instance_label=str(instance) if instance is not None else None,
            )

        paths = guard(run)
        console.print(f"{len(paths)} file(s) written to {out}:", markup=False, highlight=False)
        for p in paths:
            console.print(f"  {p}", markup=False, highlight=False)
