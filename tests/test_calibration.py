"""Calibration: determinism, round trip, resolution in instances, bad measurement files, fidelity."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import InputError
from planner.loader import builtin_catalog
from planner.options import build_option_table
from planner.perf import ReplicaModel
from planner.perf.calibration import (
    CALIBRATED_FIELDS,
    DONORS,
    effective_params,
    load_calibration,
    read_calibration,
    shipped_dir,
    write_calibration,
)
from planner.perf.fit import (
    LATENCY_MAX_BYTES,
    Hardware,
    allreduce_by_tp,
    fit_allreduce,
    fit_compute,
    layer_total,
    measured_layer_total,
    predict_ops,
)
from planner.perf.lsq import levenberg_marquardt
from planner.perf.serving import ServingRun, calibrate_serving, read_serving_result, serving_predictions
from planner.perf.vidur import Collective, load_vidur_gpu, read_collective, read_vidur_compute
from planner.problem import GPU, LLM, PerfParams
from tests.conftest import ROOT, SHARED, make_instance

VIDUR = SHARED / "data" / "vidur-profiling"
DATA = Path(__file__).parent / "data"
SERVING = [DATA / "vllm_bench_rate4.json", DATA / "vllm_bench_rate8.json"]
needs_shared = pytest.mark.skipif(not VIDUR.exists(), reason="needs ../shared/data/vidur-profiling")
runner = CliRunner()


def gpu(gid: str) -> GPU:
    return GPU.model_validate(builtin_catalog().gpus[gid])


def llm(mid: str) -> LLM:
    return LLM.model_validate(builtin_catalog().models[mid])


def invoke(*args: str):
    return runner.invoke(app, list(args))


# ---------------------------------------------------------------------------------- the shipped file
def test_shipped_default_covers_every_catalog_tier() -> None:
    cal = load_calibration(None)
    assert cal is not None
    assert set(cal.tiers) == set(builtin_catalog().gpus)
    aic = {"a100-80gb", "h100-80gb", "h200", "b200", "l40s"}  # AIConfigurator measures these
    custom = {f for f in CALIBRATED_FIELDS if f.startswith("custom_allreduce")} | {"context_attention_half_blocks"}
    for tier, tc in cal.tiers.items():
        # vLLM's custom all-reduce is measured by AIConfigurator only; elsewhere NCCL carries all.
        from_aic = tier in aic or DONORS.get(tier, ("",))[0] in aic
        fp8 = {"fp8_compute_efficiency", "fp8_memory_efficiency", "fp8_quant_efficiency"}  # AIConfigurator, fp8 cores
        has_fp8 = from_aic and builtin_catalog().gpus[DONORS.get(tier, (tier,))[0] if tier not in aic else tier].get(
            "tflops_fp8"
        )
        expected = set(CALIBRATED_FIELDS) - (set() if from_aic else custom) - (set() if has_fp8 else fp8)
        assert set(tc.params) == expected, tier
        measured = tier in aic | {"a40"}
        assert tc.source.startswith("measured" if measured else "extrapolated"), tier
        if not measured:
            donor = DONORS[tier][0]
            assert tc.params == cal.tiers[donor].params  # fractions transferred as documented
    # Physical ranges: fractions of datasheet figures, microsecond latencies.
    for tc in cal.tiers.values():
        p = tc.params
        assert 0.5 < p["compute_efficiency"] < 0.95 and 0.6 < p["memory_efficiency"] <= 0.92
        # L40S's GEMM fit on the catalog's shapes drives t0 to ~0 (its small GEMMs are fitted by the
        # roofline alone); every other tier keeps a microsecond-scale launch time.
        assert (
            (0 <= p["kernel_latency_s"] < 2e-5)
            if tc.source.startswith("measured: GEMM") and "l40s" in tc.source
            else (1e-6 < p["kernel_latency_s"] < 2e-5)
        )
        for key in ("collective_latency_s", "collective_latency_tp4_s", "collective_latency_tp8_s"):
            assert 1e-6 < p[key] < 1e-4


@needs_shared
@pytest.mark.parametrize(("tier", "node"), [("a100-80gb", "a100_dgx"), ("h100-80gb", "h100_dgx")])
def test_allreduce_latency_and_bandwidth_are_fitted_per_tp(tier: str, node: str) -> None:
    """Each TP degree has its own α (from decode-sized messages) and η (from prefill-sized ones)."""
    c = read_collective(VIDUR / "network" / node / "all_reduce.csv", "all_reduce", None)
    ref = gpu(tier).interconnect_gbs / 2 * 1e9  # type: ignore[operator]
    p = allreduce_by_tp(fit_allreduce(c, ref))  # the Vidur fit (the shipped tier is AIConfigurator's)
    lat = {2: p["collective_latency_s"], 4: p["collective_latency_tp4_s"], 8: p["collective_latency_tp8_s"]}
    eff = {2: p["network_efficiency"], 4: p["network_efficiency_tp4"], 8: p["network_efficiency_tp8"]}
    assert abs(lat[4] / lat[2] - 1) > 0.03  # not one α for every TP
    for w in (2, 4, 8):
        small = (c.workers == w) & (c.size <= LATENCY_MAX_BYTES)
        lo, hi = np.quantile(c.seconds[(c.workers == w) & (c.size <= 2**20)], [0.05, 0.95])
        assert lo < lat[w] < hi  # within the measured range of messages ≤ 1 MB (bandwidth term ≤ 10 µs)
        for sizes in (small, (c.workers == w) & (c.size >= 8 * 2**20)):
            pred = lat[w] + 2 * (w - 1) / w * c.size[sizes] / (eff[w] * ref)
            assert 0.85 < np.median(pred / c.seconds[sizes]) < 1.15  # unbiased in both regimes


def test_fit_allreduce_recovers_known_per_tp_factors() -> None:
    sizes = np.concatenate([np.linspace(8e3, 1e6, 40), np.linspace(1e6, 64e6, 80)])
    ref, truth = 300e9, {2: (50e-6, 0.6), 4: (35e-6, 0.55), 8: (42e-6, 0.5)}
    w = np.repeat([2.0, 4.0, 8.0], sizes.size)
    s = np.tile(sizes, 3)
    t = np.array([truth[int(k)][0] + 2 * (k - 1) / k * b / (truth[int(k)][1] * ref) for k, b in zip(w, s, strict=True)])
    fits = fit_allreduce(Collective(s, w, t), ref)
    for k, (alpha, eta) in truth.items():
        assert fits[k] == pytest.approx((alpha, eta), rel=1e-4)
    only_small = Collective(s[s < 2e6], w[s < 2e6], t[s < 2e6])  # one regime only: the joint fit
    assert set(fit_allreduce(only_small, ref)) == {2, 4, 8}


def test_replica_model_picks_the_all_reduce_factors_of_its_tp() -> None:
    cal = load_calibration(None)
    assert cal is not None
    p = cal.tiers["h100-80gb"].params
    m, g = llm("llama-3.1-70b"), gpu("h100-80gb")
    for tp, lat, eff in (
        (1, "collective_latency_s", "network_efficiency"),
        (2, "collective_latency_s", "network_efficiency"),
        (4, "collective_latency_tp4_s", "network_efficiency_tp4"),
        (8, "collective_latency_tp8_s", "network_efficiency_tp8"),
    ):
        rm = ReplicaModel(m, g, tp, 1, PerfParams())
        assert rm.ar_lat == p[lat] and rm.ar_bus == pytest.approx(g.interconnect_gbs / 2 * 1e9 * p[eff])
    # An instance that sets only the TP-2 keys keeps their old meaning: one α and η for every TP.
    own = PerfParams(collective_latency_s=1e-5, network_efficiency=0.5)
    for tp in (2, 4, 8):
        rm = ReplicaModel(m, g, tp, 1, own)
        assert rm.ar_lat == 1e-5 and rm.ar_bus == pytest.approx(g.interconnect_gbs / 2 * 1e9 * 0.5)
    assert ReplicaModel(m, g, 4, 1, PerfParams(collective_latency_tp4_s=2e-5)).ar_lat == 2e-5
    assert ReplicaModel(m, g, 8, 1, PerfParams(), "none").ar_lat == PerfParams().collective_latency_s


@needs_shared
def test_vidur_calibration_is_deterministic_and_reproduces_the_shipped_file(tmp_path: Path) -> None:
    """The shipped file is `calibrate --vidur DIR --aiconfigurator` on aiconfigurator-core 0.12.0
    (the dev extra pins it); the Vidur fit alone is deterministic too."""
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    for out in (a, b):
        res = invoke("calibrate", "--vidur", str(VIDUR), "--out", str(out), "--quiet")
        assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()
    if importlib.util.find_spec("aiconfigurator_core") is None:
        pytest.skip("aiconfigurator-core is not installed (pip install -e '.[dev]')")
    res = invoke("calibrate", "--vidur", str(VIDUR), "--aiconfigurator", "--out", str(c), "--quiet")
    assert res.exit_code == 0, res.output
    assert c.read_bytes() == (shipped_dir() / "default.yaml").read_bytes(), "regenerate models/calibration/default.yaml"


@needs_shared
def test_leave_one_model_out_on_vidur_a100() -> None:
    """One fold of benchmarks/perf_fidelity.py: Llama-3-8B (GQA) predicted from the other A100 models."""
    df = load_vidur_gpu(VIDUR, "a100")
    hw = Hardware.of(gpu("a100-80gb"))
    train, test = df[df.model != "Meta-Llama-3-8B"], df[df.model == "Meta-Llama-3-8B"]
    q = fit_compute(train, hw)
    err = 100 * np.abs(layer_total(predict_ops(test, q, hw), test) / measured_layer_total(test) - 1)
    n = test.num_tokens.to_numpy()
    for sel in (n >= 128, n <= 64):
        assert np.median(err[sel]) <= 10 and np.quantile(err[sel], 0.9) <= 20


# ---------------------------------------------------------------------------------- round trip and resolution
def test_round_trip_same_params_same_predictions(tmp_path: Path) -> None:
    cal = load_calibration(None)
    assert cal is not None
    path = tmp_path / "cal.yaml"
    write_calibration(path, cal)
    again = read_calibration(path)
    assert {t: c.params for t, c in again.tiers.items()} == {t: c.params for t, c in cal.tiers.items()}
    write_calibration(tmp_path / "cal2.yaml", again)
    assert (tmp_path / "cal2.yaml").read_bytes() == path.read_bytes()
    m, g = llm("llama-3.1-70b"), gpu("h100-80gb")
    one = np.ones(1)
    shipped = ReplicaModel(m, g, 4, 1, PerfParams())
    copied = ReplicaModel(m, g, 4, 1, PerfParams(), str(path))
    assert shipped.q == copied.q
    assert copied.decode_step_time(8 * one, 900 * one)[0] == shipped.decode_step_time(8 * one, 900 * one)[0]


def quick(**over: object) -> dict:
    doc = {
        "models": ["llama-3.1-8b"],
        "gpus": ["a100-80gb", "l4"],
        "parallelism": {"tp": [1, 2], "pp": [1]},
        "query_types": [{"id": "chat", "arrival_rate": 2, "input_tokens": 800, "output_tokens": 200}],
    }
    doc.update(over)
    return doc


def test_instance_calibration_key(tmp_path: Path) -> None:
    cal = load_calibration(None)
    assert cal is not None
    slow = cal.model_copy(
        update={
            "tiers": {
                "a100-80gb": cal.tiers["a100-80gb"].model_copy(
                    update={"params": {**cal.tiers["a100-80gb"].params, "memory_efficiency": 0.3}}
                )
            }
        }
    )
    write_calibration(tmp_path / "slow.yaml", slow)
    inst_file = tmp_path / "inst.yaml"
    inst_file.write_text(json.dumps(quick(calibration="slow.yaml")))  # JSON is YAML
    from planner.loader import load_instance

    inst = load_instance(inst_file)
    assert inst.calibration == str((tmp_path / "slow.yaml").resolve())
    table = build_option_table(inst)
    default = build_option_table(make_instance(quick()))
    for r in table.rows:
        base = default.row(r.option, r.query_type)
        assert base is not None
        if r.option.gpu == "a100-80gb" and r.candidate:
            assert r.tpot_s > base.tpot_s  # the file's slower tier is in force
        if r.option.gpu == "l4":  # not in the file: PerfParams defaults, not the shipped L4 entry
            rm = ReplicaModel(llm("llama-3.1-8b"), gpu("l4"), r.option.tp, 1, PerfParams(), inst.calibration)
            assert rm.q == PerfParams()
    assert make_instance(quick(calibration="default")).calibration == "default"
    assert make_instance(quick(calibration="none")).calibration == "none"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("nope", "calibration: unknown calibration id 'nope'"),
        ("missing.yaml", "calibration: calibration file 'missing.yaml' not found"),
        (3, "calibration: must be a calibration file path"),
    ],
)
def test_instance_calibration_errors(value: object, needle: str) -> None:
    with pytest.raises(InputError) as exc:
        make_instance(quick(calibration=value))
    assert needle in exc.value.line()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("format: other/9\ntiers: {}\n", "format: must be 'planner-calibration/1'"),
        (
            "format: planner-calibration/1\ntiers: {a40: {source: x, params: {warp_speed: 2}}}\n",
            "tiers.a40.params.warp_speed: not a calibrated performance factor",
        ),
        (
            "format: planner-calibration/1\ntiers: {a40: {source: x, params: {compute_efficiency: 1.7}}}\n",
            "tiers.a40.params.compute_efficiency: Input should be less than or equal to 1",
        ),
        ("[1, 2]\n", "a calibration must be a mapping"),
    ],
)
def test_bad_calibration_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        read_calibration(path)
    assert needle in exc.value.line()
    res = invoke("perf", "llama-3.1-8b", "a40", "--calibration", str(path))
    assert res.exit_code == 2 and needle.split(":")[-1].strip() in res.stderr


def test_effective_params_is_idempotent() -> None:
    once = effective_params("h100-80gb", PerfParams(max_num_seqs=64))
    assert once.max_num_seqs == 64 and once.model_fields_set == {"max_num_seqs"}
    assert effective_params("h100-80gb", once) == once


# ---------------------------------------------------------------------------------- bad measurement files
HEADER = (
    "time_stats.emb.median,time_stats.input_layernorm.median,time_stats.attn_pre_proj.median,"
    "time_stats.attn_rope.median,time_stats.attn_post_proj.median,time_stats.post_attention_layernorm.median,"
    "time_stats.mlp_up_proj.median,time_stats.mlp_act.median,time_stats.mlp_down_proj.median,time_stats.add.median,"
    "n_head,n_kv_head,n_embd,n_expanded_embd,vocab_size,use_gated_mlp,num_tokens,num_tensor_parallel_workers"
)
ROW = "0.01,0.01,0.06,0.01,0.02,0.01,0.1,0.01,0.06,0.01,32,8,4096,14336,128256,True,{n},1"


def vidur_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "vidur"
    f = d / "compute" / "a100" / "org" / "model" / "mlp.csv"
    f.parent.mkdir(parents=True)
    f.write_text(text)
    return d


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "mlp.csv: -: empty file"),
        (HEADER + "\n", "mlp.csv: -: no data rows"),
        (
            HEADER.replace("time_stats.attn_pre_proj.median,", "") + "\n" + ROW.format(n=1),
            "attn_pre_proj.median: required",
        ),
        (HEADER + "\n" + ROW.format(n="many"), "num_tokens: non-numeric value 'many' in data row 1"),
        (HEADER + "\n" + ROW.format(n=1).replace("True", "maybe"), "use_gated_mlp: not a boolean"),
    ],
)
def test_bad_vidur_files_one_line_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    data = vidur_dir(tmp_path, text)
    with pytest.raises(InputError) as exc:
        read_vidur_compute(next(data.rglob("mlp.csv")))
    assert needle in exc.value.line()
    out = tmp_path / "cal.yaml"
    res = invoke("calibrate", "--vidur", str(data), "--out", str(out))
    assert res.exit_code == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_tiny_vidur_dir_calibrates(tmp_path: Path) -> None:
    rows = [ROW.format(n=n).replace("0.06", str(0.05 + n * 1e-4)) for n in (1, 8, 64, 256, 1024, 4096)]
    data = vidur_dir(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "cal.yaml"
    assert invoke("calibrate", "--vidur", str(data), "--out", str(out), "--quiet").exit_code == 0
    cal = read_calibration(out)
    assert cal.tiers["a100-80gb"].source.startswith("measured")
    assert cal.tiers["a100-40gb"].source.startswith("extrapolated from a100-80gb")
    assert "h100-80gb" not in cal.tiers  # no H100 data and no donor measured: defaults apply


@pytest.mark.parametrize(
    ("content", "suffix", "needle"),
    [
        ("{not json", ".json", "not valid JSON"),
        ("[1, 2, 3]", ".json", "must be a JSON object"),
        ('{"completed": 10}', ".json", "total_input_tokens: required field is missing"),
        (None, ".json", "mean_tpot_ms: must be a finite number >= 0 (got 'fast')"),
        ("{}", ".txt", "must be a .json file"),
    ],
)
def test_bad_serving_files(tmp_path: Path, content: str | None, suffix: str, needle: str) -> None:
    path = tmp_path / f"run{suffix}"
    if content is None:
        doc = json.loads(SERVING[0].read_text())
        doc["mean_tpot_ms"] = "fast"
        content = json.dumps(doc)
    path.write_text(content)
    with pytest.raises(InputError) as exc:
        read_serving_result(path)
    assert needle in exc.value.line()
    out = tmp_path / "cal.yaml"
    res = invoke(
        "calibrate", "--serving", str(path), "--gpu", "h100-80gb", "--model", "llama-3.1-8b", "--out", str(out)
    )
    assert res.exit_code == 2 and needle in res.stderr and not out.exists()


def test_calibrate_needs_a_source_and_a_good_out(tmp_path: Path) -> None:
    res = invoke("calibrate", "--out", str(tmp_path / "c.yaml"))
    assert res.exit_code == 2 and "--vidur/--aiconfigurator/--serving" in res.stderr
    res = invoke("calibrate", "--serving", str(SERVING[0]), "--out", str(tmp_path / "c.txt"))
    assert res.exit_code == 2 and "--out: output must end in" in res.stderr


# ---------------------------------------------------------------------------------- serving benchmark fit
def test_serving_fields_are_read() -> None:
    r = read_serving_result(SERVING[0])
    assert r.completed == 200 and r.mean_input_tokens == 1024 and r.mean_output_tokens == 128
    assert r.mean_ttft_s == pytest.approx(0.042) and r.mean_tpot_s == pytest.approx(0.0096)
    assert r.max_concurrency == 32 and r.metadata["gpu"] == "h100-80gb" and r.metadata["tp"] == "1"


def test_serving_calibration_fits_and_is_deterministic(tmp_path: Path) -> None:
    outs = [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    for out in outs:
        res = invoke("calibrate", *(f"--serving={p}" for p in SERVING), "--out", str(out), "--quiet")
        assert res.exit_code == 0, res.output
    assert outs[0].read_bytes() == outs[1].read_bytes()
    cal = read_calibration(outs[0])
    h100 = cal.tiers["h100-80gb"]
    assert h100.source.startswith("serving benchmark")
    assert h100.quality["serving_ape_max_after"] < 5 < h100.quality["serving_ape_max_before"]
    runs = [ServingRun(read_serving_result(p), llm("llama-3.1-8b"), gpu("h100-80gb"), 1, 1) for p in SERVING]
    for run in runs:  # the written file reproduces the measured means
        ttft, tpot = serving_predictions(run, h100.params)
        assert ttft == pytest.approx(run.result.mean_ttft_s, rel=0.06)
        assert tpot == pytest.approx(run.result.mean_tpot_s, rel=0.06)
    assert cal.tiers["a100-80gb"] == load_calibration(None).tiers["a100-80gb"]  # other tiers untouched


def test_serving_needs_to_know_the_gpu(tmp_path: Path) -> None:
    doc = json.loads(SERVING[0].read_text())
    del doc["gpu"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    res = invoke("calibrate", "--serving", str(path), "--out", str(tmp_path / "c.yaml"))
    assert res.exit_code == 2 and "gpu: which GPU tier?" in res.stderr


def test_serving_calibration_from_scratch() -> None:
    runs = [ServingRun(read_serving_result(SERVING[0]), llm("llama-3.1-8b"), gpu("h100-80gb"), 1, 1)]
    cal = calibrate_serving(None, runs, "test")
    assert list(cal.tiers) == ["h100-80gb"]


def test_levenberg_marquardt_solves_a_known_problem() -> None:
    x = np.linspace(0, 1, 50)
    y = 2.0 + 3.0 * np.exp(-1.5 * x)
    sol = levenberg_marquardt(lambda p: p[0] + p[1] * np.exp(-p[2] * x) - y, [1.0, 1.0, 1.0])
    assert sol == pytest.approx([2.0, 3.0, 1.5], rel=1e-5)


def test_shipped_dir_is_in_the_repository() -> None:
    assert shipped_dir() == ROOT / "models" / "calibration"
