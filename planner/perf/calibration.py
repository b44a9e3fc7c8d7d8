"""Calibration files: fitted performance-model factors per GPU tier, and how they are applied.

A calibration file (YAML, written by ``planner calibrate``) holds, per GPU tier id, values for the
calibrated fields of :class:`~planner.problem.PerfParams` (efficiencies as fractions of the
tier's datasheet figures, latencies in seconds) and where they came from::

    format: planner-calibration/1
    description: ...
    inputs: {compute/a100/meta-llama/Llama-2-7b-hf/mlp.csv: 3f2a...}   # sha256 prefixes
    tiers:
      a100-80gb:
        source: "measured: ..."       # or "extrapolated from h100-80gb: ..."
        params: {compute_efficiency: 0.74, memory_efficiency: 0.79, ...}
        quality: {...}                # in-sample fit errors, for the record

Which factors a replica uses (:func:`effective_params`), for a GPU tier g:

1. the :class:`PerfParams` defaults (priors);
2. overridden by ``tiers[g].params`` of the calibration in force: the instance's ``calibration:``
   (a file path relative to the instance, or a shipped id = a file name in
   ``models/calibration/`` without ``.yaml``), else the shipped ``default``. The id ``none``
   means no calibration. A tier the calibration does not list keeps the defaults;
3. overridden by every key the instance sets explicitly under ``performance_params``. A per-TP
   all-reduce field (``*_tp4``, ``*_tp8``) the instance leaves unset while it sets the TP-2 field
   it defaults to (:data:`PER_TP_BASE`) is not taken from the calibration: the instance's value
   then holds for every TP degree, as it did before the per-TP fields existed.

The shipped default covers every catalog tier: A100-80GB, H100-80GB and A40 are fitted to the
Vidur measurements, and the others are extrapolated by :data:`DONORS` (their fractions and
latencies are the donor's, applied to their own datasheet figures).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator

from planner.errors import InputError
from planner.fileio import dump_document, read_document, write_atomic
from planner.problem import PerfParams, Strict

FORMAT = "planner-calibration/1"
NO_CALIBRATION = "none"
DEFAULT_ID = "default"
SIGNIFICANT = 4  # digits kept in a written calibration: far below the fit's own error

# The PerfParams fields a calibration may set (the serving configuration is never calibrated).
CALIBRATED_FIELDS: tuple[str, ...] = (
    "compute_efficiency",
    "gemm_half_tiles",
    "gemm_overlap",
    "memory_efficiency",
    "kernel_latency_s",
    "norm_efficiency",
    "norm_latency_s",
    "rope_efficiency",
    "rope_latency_s",
    "act_efficiency",
    "act_latency_s",
    "add_efficiency",
    "add_latency_s",
    "embed_efficiency",
    "embed_latency_s",
    "attention_efficiency",
    "context_attention_efficiency",
    "fp8_compute_efficiency",
    "fp8_memory_efficiency",
    "fp8_quant_efficiency",
    "attention_half_blocks",
    "context_attention_half_blocks",
    "kv_efficiency",
    "attention_latency_s",
    "network_efficiency",
    "collective_latency_s",
    "network_efficiency_tp4",
    "collective_latency_tp4_s",
    "network_efficiency_tp8",
    "collective_latency_tp8_s",
    "custom_allreduce_latency_s",
    "custom_allreduce_latency_tp4_s",
    "custom_allreduce_latency_tp8_s",
    "custom_allreduce_efficiency",
    "custom_allreduce_efficiency_tp4",
    "custom_allreduce_efficiency_tp8",
    "p2p_efficiency",
    "p2p_latency_s",
    "internode_efficiency",
    "internode_latency_s",
    "iteration_overhead_s",
    "sequence_overhead_s",
)

# Per-TP fields and the TP-2 field they default to: an instance that sets only the TP-2 field
# (the only one before per-TP all-reduce) keeps its meaning, one value for every TP degree.
PER_TP_BASE: dict[str, str] = {
    "network_efficiency_tp4": "network_efficiency",
    "network_efficiency_tp8": "network_efficiency",
    "collective_latency_tp4_s": "collective_latency_s",
    "collective_latency_tp8_s": "collective_latency_s",
}

# Tiers without measurements: (donor tier, why). Every calibrated fraction and latency is copied
# from the donor and applied to the recipient's own datasheet TFLOP/s, bandwidth and interconnect.
DONORS: dict[str, tuple[str, str]] = {
    "h200": ("h100-80gb", "same GH100 die and NVLink4 as H100 SXM; HBM3e only raises the bandwidth figure"),
    "b200": ("h100-80gb", "nearest measured NVLink/HBM part (Hopper); Blackwell is not measured"),
    "mi300x": ("h100-80gb", "nearest measured HBM3 part with an 8-GPU fabric; no AMD data: low confidence"),
    "a100-40gb": ("a100-80gb", "same GA100 die and NVLink3 as A100-80GB; HBM2 only lowers the bandwidth figure"),
    "v100-32gb": ("a100-80gb", "nearest measured SXM/NVLink part (Volta is not measured)"),
    "a10g": ("a40", "same GA102 die family as A40, GDDR6, PCIe only"),
    "l4": ("a40", "Ada GDDR6 PCIe card: nearest measured is the GA102 A40 (GDDR6, PCIe)"),
    "l40s": ("a40", "Ada AD102 GDDR6 PCIe card: nearest measured is the GA102 A40 (GDDR6, PCIe)"),
    "t4": ("a40", "Turing GDDR6 PCIe card: nearest measured is the GA102 A40 (GDDR6, PCIe)"),
}


class TierCalibration(Strict):
    """Fitted factors of one GPU tier."""

    source: str = Field(min_length=1)
    # "low": no measurement of this tier; its factors are a donor's (extrapolate)
    confidence: Literal["high", "low"] = "high"
    params: dict[str, float]
    quality: dict[str, float] = Field(default_factory=dict)
    # Measured NCCL all-reduce per TP degree ("2", "4", "8"): [[bytes, seconds], ...] ascending.
    # NCCL switches protocol (LL, LL128, Simple) with the message size, so its time is not affine
    # in the size: on L40S at TP 8 a 64 KiB all-reduce takes 1.6x what α + s/β fitted over all
    # sizes gives. Where a curve is given, the replica interpolates it (model._allreduce).
    nccl_curves: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)

    @field_validator("nccl_curves")
    @classmethod
    def _curves(cls, v: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
        for tp, points in v.items():
            b = [p[0] for p in points]
            if not tp.isdigit() or len(points) < 2 or min(min(p) for p in points) <= 0 or b != sorted(set(b)):
                raise ValueError(f"curve {tp!r}: two or more [bytes, seconds] points, positive, bytes ascending")
        return v


class Calibration(Strict):
    """A calibration file."""

    format: Literal["planner-calibration/1"] = FORMAT
    description: str = ""
    inputs: dict[str, str] = Field(default_factory=dict)
    tiers: dict[str, TierCalibration] = Field(default_factory=dict)


def shipped_dir() -> Path:
    """``models/calibration`` in a checkout; ``planner/_catalog/calibration`` inside a wheel."""
    here = Path(__file__).resolve().parents[1]  # the planner package
    for candidate in (here.parent / "models" / "calibration", here / "_catalog" / "calibration"):
        if candidate.is_dir():
            return candidate
    return here.parent / "models" / "calibration"


def shipped_ids() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def _round(v: float) -> float:
    """``SIGNIFICANT`` significant digits, so a refit that moves nothing rewrites the same bytes."""
    if v == 0 or not math.isfinite(v):
        return float(v)
    return float(f"{v:.{SIGNIFICANT}g}")


def validate_calibration(doc: Any, file: str) -> Calibration:
    """Check the document's shape and every tier's values against :class:`PerfParams`."""
    if not isinstance(doc, dict):
        raise InputError(file, "-", "a calibration must be a mapping with `format:` and `tiers:`")
    if doc.get("format") != FORMAT:
        raise InputError(file, "format", f"must be {FORMAT!r} (got {doc.get('format')!r})")
    try:
        cal = Calibration.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "-"
        raise InputError(file, where, first["msg"]) from None
    for tier, tc in cal.tiers.items():
        unknown = sorted(set(tc.params) - set(CALIBRATED_FIELDS))
        if unknown:
            raise InputError(file, f"tiers.{tier}.params.{unknown[0]}", "not a calibrated performance factor")
        try:
            PerfParams.model_validate(tc.params)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            key = ".".join(str(p) for p in first["loc"])
            raise InputError(file, f"tiers.{tier}.params.{key}", first["msg"]) from None
    return cal


def calibration_document(cal: Calibration) -> dict[str, Any]:
    """The file's content: tiers and inputs sorted, numbers rounded (deterministic bytes)."""
    return {
        "format": FORMAT,
        "description": cal.description,
        "inputs": {k: cal.inputs[k] for k in sorted(cal.inputs)},
        "tiers": {
            tier: {
                "source": tc.source,
                **({"confidence": tc.confidence} if tc.confidence != "high" else {}),
                "params": {k: _round(tc.params[k]) for k in CALIBRATED_FIELDS if k in tc.params},
                **({"quality": {k: _round(v) for k, v in sorted(tc.quality.items())}} if tc.quality else {}),
                **(
                    {
                        "nccl_curves": {
                            tp: [[_round(b), _round(s)] for b, s in pts]
                            for tp, pts in sorted(tc.nccl_curves.items(), key=lambda kv: int(kv[0]))
                        }
                    }
                    if tc.nccl_curves
                    else {}
                ),
            }
            for tier, tc in sorted(cal.tiers.items())
        },
    }


def write_calibration(path: str | Path, cal: Calibration) -> None:
    """Write ``cal`` atomically as YAML (or JSON for ``.json``)."""
    write_atomic(path, dump_document(calibration_document(cal), Path(path).suffix or ".yaml"))


def read_calibration(path: str | Path) -> Calibration:
    return validate_calibration(read_document(path), str(path))


@functools.lru_cache(maxsize=32)
def _read_cached(path: str, stamp: tuple[int, int]) -> Calibration:
    del stamp  # part of the cache key only: a rewritten file is read again
    return read_calibration(path)


def _path_of(ref: str) -> Path:
    """The file a (resolved) reference names: a shipped id or a path."""
    shipped = shipped_dir() / f"{ref}.yaml"
    if "/" not in ref and "\\" not in ref and not ref.endswith((".yaml", ".yml", ".json")) and shipped.is_file():
        return shipped
    return Path(ref)


def _locate(ref: str | None) -> tuple[str, tuple[int, int]] | None:
    """(absolute path, (mtime, size)) of the file a reference names; None for no calibration."""
    if ref == NO_CALIBRATION:
        return None
    if ref is None:
        path = shipped_dir() / f"{DEFAULT_ID}.yaml"
        if not path.is_file():
            return None
    else:
        path = _path_of(ref)
    try:
        st = path.stat()
    except OSError:
        raise InputError(str(path), "-", "calibration file not found") from None
    return str(path.resolve()), (st.st_mtime_ns, st.st_size)


def load_calibration(ref: str | None) -> Calibration | None:
    """The calibration a reference names: None → the shipped default (if shipped), ``none`` → None."""
    where = _locate(ref)
    return None if where is None else _read_cached(*where)


def resolve_reference(ref: Any, base_dir: Path, file: str) -> str:
    """Validate an instance's ``calibration:`` value and return it as a shipped id or absolute path."""
    if not isinstance(ref, str) or not ref:
        raise InputError(file, "calibration", "must be a calibration file path or a shipped calibration id")
    if ref == NO_CALIBRATION:
        return ref
    if "/" not in ref and not ref.endswith((".yaml", ".yml", ".json")):
        if ref in shipped_ids():
            return ref
        known = ", ".join([*shipped_ids(), NO_CALIBRATION])
        raise InputError(file, "calibration", f"unknown calibration id {ref!r} (shipped: {known}; or give a file path)")
    path = (base_dir / ref).resolve()
    if not path.is_file():
        raise InputError(file, "calibration", f"calibration file {ref!r} not found (relative to the instance)")
    try:
        load_calibration(str(path))
    except InputError as exc:
        raise InputError(file, "calibration", f"{ref}: {exc.field}: {exc.message}") from None
    return str(path)


def nccl_curve(gpu_id: str, tp: int, params: PerfParams, calibration: str | None = None) -> np.ndarray | None:
    """The calibration's measured NCCL all-reduce curve of ``gpu_id`` at ``tp`` as a (2, n) array
    of (bytes, seconds), or None: no curve, or ``params`` sets the all-reduce factors explicitly
    (an instance's own figures win over the calibration's, as in :func:`effective_params`)."""
    if params.model_fields_set & {"network_efficiency", "collective_latency_s", *PER_TP_BASE}:
        return None
    where = _locate(calibration)
    if where is None:
        return None
    tier = _read_cached(*where).tiers.get(gpu_id)
    points = tier.nccl_curves.get(str(tp)) if tier is not None else None
    return None if not points else np.asarray(points, float).T


def effective_params(gpu_id: str, params: PerfParams, calibration: str | None = None) -> PerfParams:
    """Defaults < the calibration's entry for ``gpu_id`` < the keys ``params`` sets explicitly."""
    where = _locate(calibration)
    if where is None:
        return params
    return _merged(gpu_id, params, *where)


@functools.lru_cache(maxsize=4096)
def _merged(gpu_id: str, params: PerfParams, path: str, stamp: tuple[int, int]) -> PerfParams:
    tier = _read_cached(path, stamp).tiers.get(gpu_id)
    if tier is None:
        return params
    data = params.model_dump()
    explicit = params.model_fields_set
    data.update(
        {
            k: v
            for k, v in tier.params.items()
            if k not in explicit and not (k in PER_TP_BASE and PER_TP_BASE[k] in explicit)
        }
    )
    # Values were validated when the file was read; keeping the caller's explicit set makes this
    # function idempotent (applying it to its own result changes nothing).
    return PerfParams.model_construct(_fields_set=set(params.model_fields_set), **data)


def extrapolate(cal: Calibration, tiers: list[str]) -> Calibration:
    """Add an entry for each tier in ``tiers`` that has a donor in ``cal`` and no entry of its own."""
    out = dict(cal.tiers)
    for tier in tiers:
        if tier in out or tier not in DONORS:
            continue
        donor, why = DONORS[tier]
        if donor not in cal.tiers:
            continue
        out[tier] = TierCalibration(
            source=f"extrapolated from {donor}: {why}; every fraction and latency is {donor}'s, "
            "applied to this tier's own datasheet figures",
            confidence="low",
            params=dict(cal.tiers[donor].params),
        )
    return cal.model_copy(update={"tiers": out})


def result_json(cal: Calibration) -> str:
    """A compact JSON summary (tests and the CLI's --json)."""
    return json.dumps({t: tc.params for t, tc in sorted(cal.tiers.items())}, sort_keys=True)
