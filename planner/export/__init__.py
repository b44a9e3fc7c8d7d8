"""Export a plan to what runs it: vLLM scripts, Kubernetes manifests, Helm values, router weights.

``export_plan(plan, instance, fmt, out_dir)`` validates the plan with the independent checker
first (a rejected plan, or a plan for another instance, is refused with an :class:`InputError`),
renders every file in memory, and only then writes the directory atomically
(:mod:`planner.export.tree`), so a failure leaves nothing half-written.

Formats (see each module): ``vllm`` (:mod:`~planner.export.vllm`), ``k8s``
(:mod:`~planner.export.k8s`), ``helm`` (:mod:`~planner.export.helm`) and ``router``
(:mod:`~planner.export.router`). All four target vLLM :data:`VLLM_VERSION`.
"""

from __future__ import annotations

from pathlib import Path

from planner.errors import InputError
from planner.export import helm, k8s, router, vllm
from planner.export.resolve import IMAGE_TAG, VLLM_VERSION, ExportContext, build_context
from planner.export.router import DEFAULT_GATEWAY
from planner.export.tree import check_target, write_tree
from planner.options import OptionTable
from planner.plan import Plan, refuse_split
from planner.problem import Instance

FORMATS: tuple[str, ...] = ("vllm", "k8s", "helm", "router")
NEEDS_INSTANCE: frozenset[str] = frozenset({"vllm", "k8s", "helm"})

__all__ = [
    "DEFAULT_GATEWAY",
    "FORMATS",
    "IMAGE_TAG",
    "VLLM_VERSION",
    "ExportContext",
    "export_plan",
    "render_plan",
]


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(None, "--format", f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def render_plan(
    plan: Plan,
    instance: Instance | None,
    fmt: str,
    *,
    gateway: str = DEFAULT_GATEWAY,
    plan_label: str | None = None,
    instance_label: str | None = None,
    table: OptionTable | None = None,
) -> dict[str, str]:
    """Validate ``plan`` and render the files of ``fmt`` (relative path → text), writing nothing."""
    _check_format(fmt)
    ctx = build_context(
        plan,
        instance,
        need_instance=fmt in NEEDS_INSTANCE,
        plan_label=plan_label,
        instance_label=instance_label,
        table=table,
    )
    if fmt == "vllm":
        return vllm.render(ctx)
    if fmt == "k8s":
        return k8s.render(ctx)
    if fmt == "helm":
        # The chart runs one router for all its models: it cannot send one pair's requests
        # through prefill then decode while routing the rest by weight.
        refuse_split(plan, plan_label or "<plan>", "exported as Helm values (use --format k8s or vllm)")
        return helm.render(ctx)
    return router.render(ctx, gateway)


def export_plan(
    plan: Plan,
    instance: Instance | None,
    fmt: str,
    out_dir: Path,
    *,
    force: bool = False,
    gateway: str = DEFAULT_GATEWAY,
    plan_label: str | None = None,
    instance_label: str | None = None,
    table: OptionTable | None = None,
) -> list[Path]:
    """Check ``plan`` against ``instance`` and write format ``fmt`` into ``out_dir`` atomically.

    ``instance`` may be None only for ``router``; ``table`` is the instance's option table when
    the caller already has one (``planner solve`` does), saving a rebuild. ``out_dir`` must be absent or empty unless
    ``force``, in which case it is replaced as a whole. Returns the paths written. Raises
    :class:`InputError` (nothing written) when the format is unknown, the directory is refused,
    ``check_plan`` rejects the plan, plan and instance do not belong together, or a deployed
    model lacks the ``hf_id`` vLLM serves.
    """
    _check_format(fmt)
    check_target(Path(out_dir), force)
    files = render_plan(
        plan, instance, fmt, gateway=gateway, plan_label=plan_label, instance_label=instance_label, table=table
    )
    return write_tree(Path(out_dir), files, force=force)
