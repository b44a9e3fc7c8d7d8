"""Fitting a tier to vLLM serving benchmark results (``planner calibrate --serving``).

A ``vllm bench serve --save-result`` file gives one deployment's mean TTFT and TPOT at a measured
request rate. :func:`calibrate_serving` scales the tier's compute-side (GEMM, attention) and
memory-side (weights, KV, element-wise) efficiencies by two factors, by Levenberg–Marquardt on
log(predicted/measured), so that the replica model's mean TTFT and TPOT at that rate match the
measured ones; a fit that cannot reproduce its measurements is refused.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import InputError
from planner.fileio import read_document
from planner.perf.calibration import CALIBRATED_FIELDS, Calibration, TierCalibration
from planner.perf.lsq import levenberg_marquardt
from planner.perf.model import ReplicaModel
from planner.perf.ops import MS
from planner.problem import GPU, LLM, PerfParams

SERVING_FIELDS = (
    "completed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "mean_ttft_ms",
    "mean_tpot_ms",
)


@dataclass(frozen=True)
class ServingResult:
    """The fields ``planner calibrate --serving`` reads from a ``vllm bench serve --save-result`` file."""

    file: str
    completed: int
    mean_input_tokens: float
    mean_output_tokens: float
    request_throughput: float
    mean_ttft_s: float
    mean_tpot_s: float
    max_concurrency: int | None
    metadata: dict[str, str]


def _number(doc: Mapping[str, Any], key: str, file: str) -> float:
    v = doc.get(key)
    if v is None:
        raise InputError(file, key, "required field is missing (expected a `vllm bench serve --save-result` file)")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise InputError(file, key, f"must be a finite number >= 0 (got {v!r})")
    return float(v)


MAX_MEAN_TOKENS = 10_000_000  # the longest context any model serves today


def read_serving_result(path: Path) -> ServingResult:
    file = str(path)
    if path.suffix.lower() != ".json":
        raise InputError(file, "-", "a vLLM serving benchmark result must be a .json file")
    doc = read_document(path)
    if not isinstance(doc, dict):
        raise InputError(file, "-", "must be a JSON object (a `vllm bench serve --save-result` file)")
    vals = {k: _number(doc, k, file) for k in SERVING_FIELDS}
    if vals["completed"] < 1 or vals["completed"] != int(vals["completed"]):
        raise InputError(file, "completed", f"must be a whole number >= 1 (got {doc['completed']!r})")
    for key in ("request_throughput", "mean_ttft_ms", "mean_tpot_ms", "total_input_tokens", "total_output_tokens"):
        if vals[key] <= 0:
            raise InputError(file, key, f"must be > 0 (got {doc[key]!r})")
    mc = doc.get("max_concurrency")
    if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
        raise InputError(file, "max_concurrency", f"must be a whole number >= 1 or null (got {mc!r})")
    meta = {k: str(doc[k]) for k in ("model_id", "gpu", "tp", "pp", "model") if doc.get(k) is not None}
    n = vals["completed"]
    # The model is evaluated at the mean request: beyond any model's context it overflows the
    # performance model's arithmetic (and is a corrupt file, not a measurement).
    for key in ("total_input_tokens", "total_output_tokens"):
        if vals[key] / n > MAX_MEAN_TOKENS:
            raise InputError(
                file, key, f"{vals[key] / n:.3g} tokens per completed request: at most {MAX_MEAN_TOKENS:,}"
            )
    return ServingResult(
        file=file,
        completed=int(n),
        mean_input_tokens=vals["total_input_tokens"] / n,
        mean_output_tokens=vals["total_output_tokens"] / n,
        request_throughput=vals["request_throughput"],
        mean_ttft_s=vals["mean_ttft_ms"] * MS,
        mean_tpot_s=vals["mean_tpot_ms"] * MS,
        max_concurrency=mc,
        metadata=meta,
    )


@dataclass(frozen=True)
class ServingRun:
    """A serving result with the deployment it measured."""

    result: ServingResult
    model: LLM
    gpu: GPU
    tp: int
    pp: int


COMPUTE_SIDE = ("compute_efficiency", "attention_efficiency", "context_attention_efficiency")
MEMORY_SIDE = (
    "memory_efficiency",
    "kv_efficiency",
    "norm_efficiency",
    "rope_efficiency",
    "act_efficiency",
    "add_efficiency",
    "embed_efficiency",
)


def _scaled(base: Mapping[str, float], s_compute: float, s_memory: float) -> dict[str, float]:
    out = dict(base)
    for k in COMPUTE_SIDE:
        out[k] = min(base[k] * s_compute, 1.0)
    for k in MEMORY_SIDE:
        out[k] = min(base[k] * s_memory, 1.0)
    return out


def serving_predictions(run: ServingRun, q: Mapping[str, float]) -> tuple[float, float]:
    """(TTFT, TPOT) the model predicts for the run's mean request at its measured request rate."""
    params = PerfParams.model_validate(dict(q))
    rm = ReplicaModel(run.model, run.gpu, run.tp, run.pp, params, "none")
    r = run.result
    cap = float(min(r.max_concurrency or params.max_num_seqs, params.max_num_seqs * run.pp)) / run.pp
    one = np.ones(1)
    _, tpot, ttft = rm.load_point(
        one * r.mean_input_tokens, one * r.mean_output_tokens, one * r.request_throughput, one * cap
    )
    return float(ttft[0]), float(tpot[0])


# After the fit, every run's TTFT and TPOT must be matched within this (the shipped examples: 1.6%).
# Efficiencies are capped at 100% of the datasheet, so a run faster than the hardware allows (or
# a typo: request_throughput 10^6, mean_tpot_ms 0.0001) is left far off; writing that fit would
# hand the planner a calibration that silently disagrees with the measurement it came from.
MAX_SERVING_FIT_ERROR = 0.5


def _check_serving_fit(runs: Sequence[ServingRun], after: np.ndarray, x: np.ndarray) -> None:
    """Refuse a serving fit that cannot reproduce its measurements, naming the worst run and field."""
    err = np.abs(np.expm1(after))
    if np.all(np.isfinite(err)) and np.all(np.isfinite(x)) and float(err.max()) <= MAX_SERVING_FIT_ERROR:
        return
    worst = int(np.nanargmax(np.where(np.isfinite(err), err, np.inf)))
    run, key = runs[worst // 2], ("mean_ttft_ms", "mean_tpot_ms")[worst % 2]
    off = "not a finite number" if not np.isfinite(err[worst]) else f"{100 * err[worst]:.3g}% off"
    raise InputError(
        run.result.file,
        key,
        f"the performance model of {run.model.id} on {run.gpu.id} (tp {run.tp}, pp {run.pp}) cannot reproduce "
        f"this run at any efficiency up to 100% ({off} after fitting; at most {100 * MAX_SERVING_FIT_ERROR:g}%): "
        "check request_throughput, mean_ttft_ms, mean_tpot_ms and the deployment",
    )


def calibrate_serving(base: Calibration | None, runs: Sequence[ServingRun], source: str) -> Calibration:
    """Scale each measured tier's compute- and memory-side efficiencies to match TTFT and TPOT."""
    cal = base or Calibration(description="")
    tiers = dict(cal.tiers)
    for tier in sorted({r.gpu.id for r in runs}):
        mine = [r for r in runs if r.gpu.id == tier]
        start = PerfParams().model_dump()
        if tier in tiers:
            start.update(tiers[tier].params)
        meas = np.log([[r.result.mean_ttft_s, r.result.mean_tpot_s] for r in mine]).ravel()

        def residual(
            x: np.ndarray, start: dict[str, Any] = start, mine: list[ServingRun] = mine, meas: np.ndarray = meas
        ) -> np.ndarray:
            q = _scaled(start, math.exp(x[0]), math.exp(x[1]))
            return np.log([serving_predictions(r, q) for r in mine]).ravel() - meas

        # An impossible run drives the search to overflow; the check below reports it in one line.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            before = residual(np.zeros(2))
            x = levenberg_marquardt(residual, [0.0, 0.0], max_iter=50)
            after = residual(x)
        _check_serving_fit(mine, after, x)
        fitted = _scaled(start, math.exp(x[0]), math.exp(x[1]))
        keep = {k: float(fitted[k]) for k in CALIBRATED_FIELDS if fitted.get(k) is not None}
        files = ", ".join(Path(r.result.file).name for r in mine)
        prior = tiers[tier].source if tier in tiers else "PerfParams defaults"
        tiers[tier] = TierCalibration(
            source=f"serving benchmark ({files}): compute-side ×{math.exp(x[0]):.3g}, memory-side "
            f"×{math.exp(x[1]):.3g} on [{prior}]",
            params=keep,
            quality={
                "serving_ape_max_before": float(np.max(100 * np.abs(np.exp(before) - 1))),
                "serving_ape_max_after": float(np.max(100 * np.abs(np.exp(after) - 1))),
            },
        )
    inputs = dict(cal.inputs)
    for r in runs:
        inputs[Path(r.result.file).name] = hashlib.sha256(Path(r.result.file).read_bytes()).hexdigest()[:16]
    desc = (cal.description + " " if cal.description else "") + source
    return cal.model_copy(update={"tiers": tiers, "inputs": inputs, "description": desc.strip()})
