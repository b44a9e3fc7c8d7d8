"""``planner perf`` and ``planner calibrate``: the performance model on the command line.

``planner perf MODEL GPU`` evaluates one replica with the very :class:`~planner.perf.ReplicaModel`
the option table uses (same calibration resolution, same code path). ``planner calibrate`` fits a
calibration file from the Vidur profiling data and/or vLLM serving benchmark results
(:mod:`planner.perf.fit`, :mod:`planner.perf.serving`). Bad input: one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from planner import cliargs
from planner.errors import InputError

MODEL_HELP = "catalog model id, or a YAML/JSON file holding one inline model spec (instance format)"
GPU_HELP = "catalog GPU tier id, or a YAML/JSON file holding one inline GPU spec (instance format)"


def _spec(value: str, kind: str) -> Any:
    """A catalog entry by id, or a file with one spec (a catalog id in it takes the entry's defaults)."""
    from pydantic import BaseModel, ValidationError

    from planner.fileio import read_document
    from planner.loader import builtin_catalog, validation_error
    from planner.problem import ARCHITECTURE_FIELDS, GPU, HARDWARE_FIELDS, LLM

    cls: type[BaseModel] = LLM if kind == "model" else GPU
    table = builtin_catalog().models if kind == "model" else builtin_catalog().gpus
    arg = kind.upper()
    path = Path(value)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        doc = read_document(path)
        if isinstance(doc, dict) and set(doc) == {f"{kind}s"} and isinstance(doc[f"{kind}s"], list):
            if len(doc[f"{kind}s"]) != 1:
                raise InputError(value, f"{kind}s", "must hold exactly one spec")
            doc = doc[f"{kind}s"][0]
        if not isinstance(doc, dict):
            raise InputError(value, "-", f"must be a mapping holding one {kind} spec")
        base = table.get(doc.get("id")) if isinstance(doc.get("id"), str) else None
        data, where = ({**base, **doc} if base is not None else doc), value
    elif value in table:
        data, where = table[value], arg
    else:
        raise InputError(None, arg, f"unknown {kind} id {value!r} (not in the built-in catalog, and not a file)")
    try:
        spec = cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(where, exc) from None
    for f in ARCHITECTURE_FIELDS if kind == "model" else HARDWARE_FIELDS:
        if getattr(spec, f) is None:
            raise InputError(where, f, "required by the performance model")
    return spec


def _calibration_ref(value: str | None) -> str | None:
    from planner.perf.calibration import resolve_reference

    if value is None:
        return None
    try:
        return resolve_reference(value, Path.cwd(), "--calibration")
    except InputError as exc:
        raise InputError(None, "--calibration", exc.message) from None


def perf_report(
    model: Any,
    gpu: Any,
    tp: int,
    pp: int,
    prefill_tokens: int,
    batch: int,
    context: int,
    tpot_s: float | None,
    output_tokens: int | None,
    iteration: bool,
    calibration: str | None,
) -> dict[str, Any]:
    """Every figure ``planner perf`` prints, from one :class:`ReplicaModel` (the option table's)."""
    from planner.perf.calibration import load_calibration
    from planner.perf.model import ReplicaModel, structural_reason
    from planner.problem import PerfParams

    why = structural_reason(model, gpu, tp, pp)
    if why:
        raise InputError(None, "--tp/--pp", why)
    rm = ReplicaModel(model, gpu, tp, pp, PerfParams(), calibration)
    cal = load_calibration(calibration)
    tier = cal.tiers.get(gpu.id) if cal is not None else None
    fit = rm.fit()
    one = np.ones(1)
    prompt = one * prefill_tokens
    pre = rm.prefill_latency(prompt, 0 * one, prompt)
    # vLLM's chunks of the prompt on an idle replica: (size, cached tokens before it)
    budget = rm.q.prefill_chunk_tokens
    chunks = [(min(budget, prefill_tokens - k), k) for k in range(0, prefill_tokens, budget)] or [(0, 0)]
    breakdown: dict[str, float] = {}
    for j, (c, k) in enumerate(chunks):
        times = 1 + (pp - 1 if j == len(chunks) - 1 else 0)  # the last chunk also fills the pipeline
        for name, v in rm.components(one * c, one * k, 0 * one, 0 * one).items():
            breakdown[name] = breakdown.get(name, 0.0) + times * float(v[0])
    dec = rm.decode_step_time(one * batch, one * context)
    t_s = rm.decode_stage_time(one * batch, one * context)
    rep: dict[str, Any] = {
        "model": model.id,
        "gpu": gpu.id,
        "tp": tp,
        "pp": pp,
        "calibration": calibration or "default",
        "tier_source": tier.source if tier is not None else "PerfParams defaults (tier not in the calibration)",
        "tier_confidence": tier.confidence if tier is not None else "low",
        "fits": fit.fits,
        "reason": fit.reason,
        "weights_gb_per_gpu": fit.weights_gb_per_gpu,
        "reserve_gb_per_gpu": fit.reserve_gb_per_gpu,
        "kv_capacity_tokens": fit.kv_capacity_tokens,
        "prefill_tokens": prefill_tokens,
        "prefill_chunks": len(chunks),
        "prefill_s": float(pre[0]),
        "prefill_breakdown_s": breakdown,  # Σ over the chunks (the last one also fills the pipeline)
        "batch": batch,
        "context": context,
        "decode_step_s": float(dec[0]),
        "decode_breakdown_s": {
            k: float(pp * v[0]) for k, v in rm.components(0 * one, 0 * one, one * batch, one * context).items()
        },
        "decode_tokens_s": float(batch / t_s[0]),
    }
    if output_tokens is not None:
        rep["output_tokens"] = output_tokens
        rep["throughput_rps"] = float(rm.max_rate(prompt, one * output_tokens, one * batch)[0])
    if tpot_s is not None:
        grid = np.arange(1, rm.q.max_num_seqs + 1, dtype=float)
        steps = rm.decode_step_time(grid, np.full_like(grid, context))
        ok = (steps <= tpot_s) & (pp * grid * context <= fit.kv_capacity_tokens)
        best = int(grid[ok].max()) if ok.any() else 0
        rep["tpot_s"] = tpot_s
        rep["max_batch"] = best
        rep["requests_in_flight"] = best * pp
        rep["throughput_tokens_s"] = float(best / rm.decode_stage_time(one * best, one * context)[0]) if best else 0.0
    if iteration and not fit.fits:
        # No batch runs on a replica that does not fit: there is nothing to fit the form to.
        rep["iteration_model"] = None
    elif iteration:
        it = rm.iteration_model()
        rep["iteration_model"] = {
            "c0_s": it.c0,
            "c1_s_per_prefill_token": it.c1,
            "c2_s_per_decode_request": it.c2,
            "c3_s_per_context_token": it.c3,
            "c4_s_per_chunk_attention_token2": it.c4,
            "max_rel_error": it.max_rel_error,
            "grid_points": it.grid_points,
        }
    return rep


def _print_table(rep: dict[str, Any]) -> None:
    from rich.table import Table

    from planner.console import out

    def ms(v: float) -> str:
        return f"{1e3 * v:.3f} ms"

    out.print(
        f"[bold]{rep['model']}[/] on [bold]{rep['gpu']}[/] · tp {rep['tp']} · pp {rep['pp']} · "
        f"calibration {rep['calibration']}"
    )
    out.print(
        f"tier factors ({rep['tier_confidence']} confidence): {rep['tier_source']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    t = Table(title="replica")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("fits", "yes" if rep["fits"] else f"no: {rep['reason']}")
    t.add_row("weights per GPU", f"{rep['weights_gb_per_gpu']:.2f} GB")
    t.add_row("activation reserve per GPU", f"{rep['reserve_gb_per_gpu']:.2f} GB")
    t.add_row("KV capacity", f"{rep['kv_capacity_tokens']:,} tokens")
    t.add_row(f"prefill of {rep['prefill_tokens']} tokens ({rep['prefill_chunks']} chunk(s))", ms(rep["prefill_s"]))
    t.add_row(f"decode step, batch {rep['batch']} at context {rep['context']}", ms(rep["decode_step_s"]))
    t.add_row("decode throughput at that batch", f"{rep['decode_tokens_s']:,.0f} tokens/s")
    if "throughput_rps" in rep:
        t.add_row(
            f"requests/s at batch {rep['batch']}, {rep['output_tokens']} output tokens", f"{rep['throughput_rps']:.3g}"
        )
    if "max_batch" in rep:
        t.add_row(f"largest batch with TPOT <= {rep['tpot_s']:g} s", str(rep["max_batch"]))
        t.add_row("decode throughput at that batch", f"{rep['throughput_tokens_s']:,.0f} tokens/s")
    out.print(t)
    b = Table(title="time by kind (whole pass, all stages)")
    for col in ("", "gemm", "elementwise", "attention", "communication", "host"):
        b.add_column(col, justify="right")
    for name, key in (("prefill", "prefill_breakdown_s"), ("decode step", "decode_breakdown_s")):
        parts = rep[key]
        b.add_row(name, *(ms(parts[k]) for k in ("gemm", "elementwise", "attention", "communication", "host")))
    out.print(b)
    if "iteration_model" in rep and rep["iteration_model"] is None:
        out.print("iteration model: none (the replica does not fit in memory)")
    elif "iteration_model" in rep:
        it = rep["iteration_model"]
        out.print(
            f"iteration ≈ {1e3 * it['c0_s']:.3f} ms + {1e6 * it['c1_s_per_prefill_token']:.3f} µs·prefill tokens"
            f" + {1e6 * it['c2_s_per_decode_request']:.3f} µs·decode requests"
            f" + {1e9 * it['c3_s_per_context_token']:.3f} ns·Σ decode context tokens"
            f" + {1e12 * it['c4_s_per_chunk_attention_token2']:.3f} ps·Σ chunk·(cached + chunk/2)"
            f"  (max relative error {100 * it['max_rel_error']:.1f}% over {it['grid_points']} grid batches)"
        )


def perf(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    gpu: Annotated[str, typer.Argument(help=GPU_HELP)],
    tp: Annotated[int, typer.Option(help="tensor-parallel degree")] = 1,
    pp: Annotated[int, typer.Option(help="pipeline-parallel degree")] = 1,
    prefill_tokens: Annotated[int, typer.Option(help="prompt tokens of the prefill (empty cache)")] = 1024,
    batch: Annotated[int, typer.Option(help="decode requests per micro-batch")] = 1,
    context: Annotated[int, typer.Option(help="mean context tokens of the decoding requests")] = 1024,
    tpot_s: Annotated[
        float | None, typer.Option(help="TPOT target: report the largest batch and its throughput")
    ] = None,
    output_tokens: Annotated[
        int | None, typer.Option(help="output tokens per request: report requests/s at --batch (option-table r_max)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json/--no-json", help="print one JSON object")] = False,
    iteration_model: Annotated[
        bool,
        typer.Option("--iteration-model/--no-iteration-model", help="fit and print the linear iteration-time model"),
    ] = False,
    calibration: Annotated[
        str | None, typer.Option(help="calibration file or shipped id (default: the shipped default; 'none')")
    ] = None,
) -> None:
    """Prefill time, decode step time, KV capacity and fit of one replica (the option table's model)."""
    from planner.console import guard

    def prepare() -> dict[str, Any]:
        for name, v in (("--tp", tp), ("--pp", pp)):
            cliargs.whole(name, v, ge=1, le=cliargs.MAX_DEGREE)
        tokens = (("--prefill-tokens", prefill_tokens), ("--context", context), ("--output-tokens", output_tokens))
        for name, v in tokens:
            cliargs.whole(name, v, ge=1, le=cliargs.MAX_TOKENS)
        cliargs.whole("--batch", batch, ge=1, le=cliargs.MAX_BATCH)
        cliargs.number("--tpot-s", tpot_s, gt=0, le=cliargs.MAX_SECONDS)
        m, g = _spec(model, "model"), _spec(gpu, "gpu")
        ref = _calibration_ref(calibration)
        return perf_report(m, g, tp, pp, prefill_tokens, batch, context, tpot_s, output_tokens, iteration_model, ref)

    rep = guard(prepare)
    if json_out:
        sys.stdout.write(json.dumps(rep, indent=2) + "\n")
    else:
        _print_table(rep)


def _serving_runs(files: list[Path], model: str | None, gpu: str | None, tp: int | None, pp: int | None) -> list[Any]:
    from planner.loader import builtin_catalog
    from planner.perf.serving import ServingRun, read_serving_result

    runs = []
    hf = {v.get("hf_id"): k for k, v in sorted(builtin_catalog().models.items()) if v.get("hf_id")}
    for path in files:
        res = read_serving_result(path)
        meta = res.metadata
        mid = model or meta.get("model") or hf.get(meta.get("model_id", "")) or meta.get("model_id")
        if mid is None:
            raise InputError(str(path), "model_id", "which model? pass --model or save with --metadata model=<id>")
        gid = gpu or meta.get("gpu")
        if gid is None:
            raise InputError(str(path), "gpu", "which GPU tier? pass --gpu or save with --metadata gpu=<tier id>")
        degrees = []
        for name, flag, key in (("tp", tp, "tp"), ("pp", pp, "pp")):
            raw = flag if flag is not None else meta.get(key, "1")
            try:
                v = int(raw)
            except ValueError:
                raise InputError(str(path), key, f"must be a whole number (got {raw!r})") from None
            if v < 1:
                raise InputError(
                    str(path) if flag is None else None, key if flag is None else f"--{name}", "must be >= 1"
                )
            degrees.append(v)
        runs.append(ServingRun(res, _spec(mid, "model"), _spec(gid, "gpu"), degrees[0], degrees[1]))
    return runs


def calibrate(
    out_path: Annotated[Path, typer.Option("--out", help="calibration file to write (.yaml/.yml/.json)")],
    vidur: Annotated[
        Path | None, typer.Option(help="Vidur profiling directory (e.g. ../shared/data/vidur-profiling)")
    ] = None,
    serving: Annotated[
        list[Path] | None, typer.Option(help="vLLM `bench serve --save-result` JSON file (repeatable)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="model of the --serving runs (else their metadata)")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU tier of the --serving runs (else their metadata)")] = None,
    tp: Annotated[int | None, typer.Option(help="TP degree of the --serving runs (else metadata, else 1)")] = None,
    pp: Annotated[int | None, typer.Option(help="PP degree of the --serving runs (else metadata, else 1)")] = None,
    aiconfigurator: Annotated[
        bool,
        typer.Option(
            "--aiconfigurator",
            help="refit GEMM, attention and all-reduce to AIConfigurator's measured vLLM tables "
            "(pip install 'planner[calibrate]', or --aic-systems)",
        ),
    ] = False,
    aic_systems: Annotated[
        Path | None, typer.Option(help="AIConfigurator systems directory (default: the installed package's)")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="calibration the --aiconfigurator/--serving fit starts from (default: shipped default)"),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="print no summary")] = False,
) -> None:
    """Fit per-tier performance factors from measurements and write a calibration file atomically."""
    from planner.console import guard, out, output_path
    from planner.perf.calibration import Calibration, load_calibration, write_calibration

    def run() -> Calibration:
        from planner.loader import builtin_catalog
        from planner.perf.aic_fit import calibrate_aiconfigurator
        from planner.perf.aiconfigurator import locate_database
        from planner.perf.fit import calibrate_vidur
        from planner.perf.serving import calibrate_serving
        from planner.problem import GPU, LLM

        output_path(out_path, "--out")
        files = list(serving or [])
        if vidur is None and not files and not aiconfigurator:
            raise InputError(
                None,
                "--vidur/--aiconfigurator/--serving",
                "give a Vidur profiling directory, --aiconfigurator and/or serving results",
            )
        if aic_systems is not None and not aiconfigurator:
            raise InputError(None, "--aic-systems", "only with --aiconfigurator")
        aic_root = locate_database(aic_systems) if aiconfigurator else None
        for name, v in (("--tp", tp), ("--pp", pp)):
            cliargs.whole(name, v, ge=1, le=cliargs.MAX_DEGREE)
        runs = _serving_runs(files, model, gpu, tp, pp)
        cat = builtin_catalog()
        gpus = {k: GPU.model_validate(v) for k, v in cat.gpus.items()}
        if vidur is not None:
            cal = calibrate_vidur(vidur, gpus, sorted(gpus))
        else:
            cal = load_calibration(_calibration_ref(base)) or Calibration()
        if aic_root is not None:
            models = [LLM.model_validate(v) for v in cat.models.values()]
            cal = calibrate_aiconfigurator(cal, aic_root, gpus, models)
        if runs:
            names = ", ".join(p.name for p in files)
            cal = calibrate_serving(cal, runs, f"Tiers refitted to vLLM serving results: {names}.")
        write_calibration(out_path, cal)
        return cal

    cal = guard(run)
    if not quiet:
        for tier, tc in sorted(cal.tiers.items()):
            kind = tc.source.split(":")[0]
            p = tc.params
            out.print(
                f"{tier:>10}: {kind:<22} η_c {p.get('compute_efficiency', float('nan')):.3f}"
                f" η_m {p.get('memory_efficiency', float('nan')):.3f}"
                f" t0 {1e6 * p.get('kernel_latency_s', float('nan')):.2f} µs"
                f" η_n {p.get('network_efficiency', float('nan')):.3f}",
                markup=False,
                highlight=False,
            )
        out.print(f"calibration written to {out_path}")


def register(app: typer.Typer) -> None:
    """Add ``perf`` and ``calibrate`` to the ``planner`` command line."""
    app.command("perf")(perf)
    app.command("calibrate")(calibrate)
