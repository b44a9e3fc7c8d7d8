"""``planner export``: vLLM scripts, Kubernetes manifests, Helm values and router weights.

What is shown here:

* every emitted Kubernetes object validates against the Kubernetes OpenAPI schemas
  (kubernetes-validate, strict); the CRDs are checked by their embedded pod templates
  (LeaderWorkerSet) or a structural check of the Gateway API v1 fields (HTTPRoute);
* round trip: parsing the files back gives the plan's deployments and routing weights, for the
  plan of every shipped instance, for a synthetic plan whose replicas span two nodes (LWS) and
  for a hand-made plan that deploys one option twice, at token budgets 512 and 2048 (two pools);
* every server gets ``--max-num-batched-tokens``: the pool's chosen budget, else the instance's
  ``prefill_chunk_tokens``; only pools with a chosen budget get ``-mbt<N>`` names;
* a plan the checker rejects, a plan and an instance that do not belong together, or a refused
  output directory end in one ``error:`` line, exit code 2 and nothing written.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from planner.checker import check_plan
from planner.errors import InputError
from planner.export import FORMATS, IMAGE_TAG, VLLM_VERSION, export_plan, render_plan
from planner.export import tree as export_tree
from planner.export.resolve import _names, dns_label, label_value, nodes_per_replica
from planner.export.router import WEIGHT_SCALE, integer_weights
from planner.export.vllm import VERIFIED_FLAGS
from planner.loader import load_instance, load_instance_data
from planner.options import Option, OptionTable, build_option_table
from planner.plan import Plan, read_plan, write_plan
from planner.problem import Instance
from planner.solvers import solve
from tests.conftest import INSTANCES, ROOT

K8S_VERSION = "1.31"
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


# --------------------------------------------------------------------------------------------
# Plans: every shipped instance solved once, plus a synthetic plan with two-node replicas.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A solved instance with its option table (built once: rendering reuses it)."""

    inst: Instance
    plan: Plan
    table: OptionTable

    def render(self, fmt: str) -> dict[str, str]:
        return render_plan(self.plan, self.inst, fmt, table=self.table)


def _solved(inst: Instance) -> Case:
    table = build_option_table(inst)
    return Case(inst, solve(inst, "milp", table=table), table)


def _with_hf_ids(inst: Instance) -> Instance:
    """table-demo's inline models have no hf_id; give them one so every format can export."""
    models = tuple(m if m.hf_id else m.model_copy(update={"hf_id": f"example/{m.id}"}) for m in inst.models)
    return inst.model_copy(update={"models": models})


@pytest.fixture(scope="module")
def shipped(golden_capacities: None) -> dict[str, Case]:
    """Every shipped instance with its golden plan (tests/test_instances.py proves each golden is
    what `solve` gives today, so re-solving them here would only repeat minutes of work)."""
    from planner.options import check_pairs, needs_checks
    from planner.plan import plan_pairs, read_plan

    out = {}
    for path in sorted(INSTANCES.glob("*.yaml")):
        inst = load_instance(path)
        golden = Path(__file__).parent / "golden" / f"{path.stem}.yaml"
        if not golden.is_file():
            case = _solved(inst)
        else:
            plan, table = read_plan(golden), build_option_table(inst)
            if needs_checks(table):
                table = check_pairs(table, plan_pairs(plan))
            case = Case(inst, plan, table)
        if case.plan.has_solution:
            out[path.stem] = case
    return out


@pytest.fixture(scope="module")
def multi_node() -> Case:
    """llama-3.1-405b at tp 8 × pp 2 on 8-GPU H100 nodes: each of several replicas spans two nodes."""
    doc = {
        "name": "big-405b",
        "models": ["llama-3.1-405b"],
        "gpus": ["h100-80gb"],
        "parallelism": {"tp": [8], "pp": [2]},
        "query_types": [
            {
                "id": "chat",
                "arrival_rate": 6.0,
                "input_tokens": 1000,
                "output_tokens": 200,
                "slo": {"ttft_s": 10.0, "tpot_s": 0.2},
            }
        ],
    }
    case = _solved(load_instance_data(doc, "big-405b.yaml", INSTANCES))
    assert case.plan.has_solution
    assert {(d.tp, d.pp) for d in case.plan.deployments} == {(8, 2)}
    assert sum(d.replicas for d in case.plan.deployments) >= 2
    return case


@pytest.fixture(scope="module")
def amd() -> Case:
    """An AMD tier (mi300x): amd.com/gpu, the ROCm image, the AMD node label."""
    doc = {
        "name": "amd-demo",
        "models": ["qwen2.5-7b"],
        "gpus": ["mi300x"],
        "parallelism": {"tp": [1], "pp": [1]},
        "query_types": [
            {"id": "chat", "arrival_rate": 20.0, "input_tokens": 1155, "output_tokens": 211, "slo": {"tpot_s": 0.1}}
        ],
    }
    case = _solved(load_instance_data(doc, "amd-demo.yaml", INSTANCES))
    assert case.plan.has_solution and {d.gpu for d in case.plan.deployments} == {"mi300x"}
    return case


# One option deployed as two pools that differ only by vLLM's max_num_batched_tokens. The plans
# are written by hand (not solved): the instance is the quick start under `slo_attainment: mean`,
# so the checker judges them on the table's figures, and `engine.max_num_batched_tokens` lists
# the budgets, so the options carry them (planner.options.model_options).
POOL = ("llama-3.1-70b", "a100-80gb", 4, 1)  # error 0.207: within both types' max_error
POOL_NAME = "llama-3-1-70b-a100-80gb-tp4-pp1"
BUDGETS = (512, 2048)


def _pools_instance_doc(budgets: tuple[int, ...] | None) -> dict[str, Any]:
    doc = yaml.safe_load((INSTANCES / "quickstart.yaml").read_text(encoding="utf-8"))
    doc["name"] = "budget-pools"
    doc["slo_attainment"] = "mean"
    if budgets is not None:
        doc["engine"] = {"max_num_batched_tokens": list(budgets)}
    return doc


def _pools_plan_doc(
    inst: Instance, table: OptionTable, budgets: tuple[int | None, ...], max_num_seqs: int | None = None
) -> dict[str, Any]:
    """A plan document: POOL once per budget, every query type split evenly over the pools, each
    pool with the fewest replicas its load needs, and the cost the checker recomputes."""
    share = 1.0 / len(budgets)

    def ref(budget: int | None) -> dict[str, Any]:
        keys: dict[str, Any] = dict(zip(("model", "gpu", "tp", "pp"), POOL, strict=True))
        if budget is not None:
            keys["max_num_batched_tokens"] = budget
        return keys

    deployments = []
    for b in budgets:
        o = Option(*POOL, b)
        load, batch = 0.0, 0
        for q in inst.query_types:
            row = table.row(o, q.id)
            assert row is not None and row.eligible and row.throughput_rps and row.batch, (o.key, q.id)
            load += q.arrival_rate * share / row.throughput_rps
            batch = max(batch, row.batch)
        n = max(1, math.ceil(load / inst.max_utilization))
        # max_num_seqs as `planner solve` writes it: the largest planned batch of the types routed here.
        d = {**ref(b), "replicas": n, "gpus": n * o.gpus_per_replica, "max_num_seqs": max_num_seqs or batch}
        deployments.append(d)
    doc: dict[str, Any] = {
        "instance": inst.name,
        "method": "hand",
        "status": "feasible",
        "objective": 0.0,
        "bound": None,
        "gap": None,
        "cost": {"rental": 0.0, "storage": 0.0, "delay_penalty": 0.0, "unserved_penalty": 0.0, "total": 0.0},
        "deployments": deployments,
        "routing": {q.id: [{**ref(b), "fraction": share} for b in budgets] for q in inst.query_types},
        "unserved": {q.id: 0.0 for q in inst.query_types},
    }
    cost = check_plan(inst, Plan.model_validate(doc), table).cost
    assert cost is not None
    doc["cost"], doc["objective"] = cost.model_dump(), cost.total
    return doc


def _pools_case(tmp: Path, instance_budgets: tuple[int, ...] | None, budgets: tuple[int | None, ...]) -> Case:
    """Write the plan as YAML, read it back (the plan's keys round-trip), and check it is accepted."""
    inst = load_instance_data(_pools_instance_doc(instance_budgets), "budget-pools.yaml", INSTANCES)
    table = build_option_table(inst)
    path = tmp / "plan.yaml"
    path.write_text(yaml.safe_dump(_pools_plan_doc(inst, table, budgets), sort_keys=False), encoding="utf-8")
    plan = read_plan(path)
    assert [d.option.budget for d in plan.deployments] == list(budgets)
    report = check_plan(inst, plan, table)
    assert report.ok, [str(v) for v in report.violations]
    return Case(inst, plan, table)


@pytest.fixture(scope="module")
def budget_pools(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """POOL at budgets 512 and 2048: two deployments of one (model, gpu, tp, pp)."""
    return _pools_case(tmp_path_factory.mktemp("pools"), BUDGETS, BUDGETS)


@pytest.fixture(scope="module")
def no_budget_pool(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """POOL without a chosen budget (mean mode, no engine list): the plan of old."""
    return _pools_case(tmp_path_factory.mktemp("no-budget"), None, (None,))


@pytest.fixture(scope="module")
def cases(
    shipped: dict[str, Case], multi_node: Case, amd: Case, budget_pools: Case, no_budget_pool: Case
) -> list[Case]:
    out = []
    for c in shipped.values():
        inst = _with_hf_ids(c.inst)
        out.append(c if inst is c.inst else Case(inst, c.plan, build_option_table(inst)))
    return [*out, multi_node, amd, budget_pools, no_budget_pool]


def test_every_shipped_feasible_instance_is_covered(shipped: dict[str, Case]) -> None:
    """Which shipped instances are feasible depends on the catalogs; the quick start always is."""
    assert "quickstart" in shipped
    assert "infeasible-demo" not in shipped


# --------------------------------------------------------------------------------------------
# Checks: Kubernetes schemas, CRD structure, label values.
# --------------------------------------------------------------------------------------------


def _docs(files: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, d) for name, text in files.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d]


def _check_labels(meta: dict[str, Any], where: str) -> None:
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)), f"{where}: label key {key!r}"
        assert 0 < len(name) <= 63 and LABEL_NAME.match(name), f"{where}: label key {key!r}"
        assert isinstance(value, str) and len(value) <= 63 and LABEL_NAME.match(value), f"{where}: {key}={value!r}"
    for key, value in (meta.get("annotations") or {}).items():
        assert isinstance(value, str), f"{where}: annotation {key} must be a string"


def _validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _wrap_template(name: str, template: dict[str, Any]) -> dict[str, Any]:
    """An LWS pod template inside a Deployment, so the Kubernetes schema checks all of it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": template["metadata"]["labels"]}, "template": template},
    }


def _check_lws(obj: dict[str, Any]) -> None:
    """LeaderWorkerSet v1 fields (kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go)."""
    assert obj["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and obj["kind"] == "LeaderWorkerSet"
    assert DNS_1035.match(obj["metadata"]["name"])
    spec = obj["spec"]
    assert set(spec) <= {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy", "networkConfig"}
    assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1
    assert spec.get("startupPolicy", "LeaderCreated") in {"LeaderCreated", "LeaderReady"}
    lwt = spec["leaderWorkerTemplate"]
    allowed = {"leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy", "volumeClaimTemplates"}
    assert set(lwt) <= allowed | {"persistentVolumeClaimRetentionPolicy"}
    assert isinstance(lwt["size"], int) and lwt["size"] >= 2
    assert lwt["restartPolicy"] in {"Default", "RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None"}
    for role in ("leaderTemplate", "workerTemplate"):
        _check_labels(lwt[role]["metadata"], f"{obj['metadata']['name']}.{role}")
        _validate(_wrap_template(obj["metadata"]["name"], lwt[role]))


def _check_http_route(obj: dict[str, Any]) -> None:
    """Gateway API v1 HTTPRoute fields and limits (kubernetes-sigs/gateway-api apis/v1/httproute_types.go)."""
    assert obj["apiVersion"] == "gateway.networking.k8s.io/v1" and obj["kind"] == "HTTPRoute"
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    name = obj["metadata"]["name"]
    assert len(name) <= 253 and DNS_SUBDOMAIN.match(name)
    _check_labels(obj["metadata"], name)
    spec = obj["spec"]
    assert set(spec) <= {"parentRefs", "hostnames", "rules"}
    for ref in spec["parentRefs"]:
        assert set(ref) <= {"group", "kind", "namespace", "name", "sectionName", "port"}
        assert 1 <= len(ref["name"]) <= 253
    rules = spec["rules"]
    assert 1 <= len(rules) <= 16
    assert sum(len(r.get("matches", [])) for r in rules) <= 128
    names = [r["name"] for r in rules]
    assert len(set(names)) == len(names)
    for rule in rules:
        assert set(rule) <= {"name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"}
        assert len(rule["name"]) <= 253 and DNS_SUBDOMAIN.match(rule["name"])
        assert 1 <= len(rule["matches"]) <= 64
        for m in rule["matches"]:
            assert set(m) <= {"path", "headers", "queryParams", "method"}
            assert m["path"]["type"] in {"Exact", "PathPrefix", "RegularExpression"}
            assert m["path"]["value"].startswith("/")
            for h in m["headers"]:
                assert set(h) <= {"type", "name", "value"}
                assert h["type"] in {"Exact", "RegularExpression"}
                assert 1 <= len(h["name"]) <= 256 and HEADER_NAME.match(h["name"])
                assert 1 <= len(h["value"]) <= 4096
        assert 1 <= len(rule["backendRefs"]) <= 16
        for b in rule["backendRefs"]:
            assert set(b) <= {"group", "kind", "name", "namespace", "port", "weight", "filters"}
            assert b["group"] == "" and b["kind"] == "Service"
            assert 1 <= len(b["name"]) <= 253
            assert isinstance(b["port"], int) and 1 <= b["port"] <= 65535
            assert isinstance(b["weight"], int) and 0 < b["weight"] <= 1_000_000


def _check_k8s_object(name: str, obj: dict[str, Any]) -> None:
    kind = obj["kind"]
    if kind == "Kustomization":
        return
    _check_labels(obj["metadata"], name)
    if kind in {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"}:  # the last 3: a pair's router
        assert DNS_1035.match(obj["metadata"]["name"]) and len(obj["metadata"]["name"]) <= 63
        _validate(obj)
        if kind == "Deployment":
            _check_labels(obj["spec"]["template"]["metadata"], name)
    elif kind == "LeaderWorkerSet":
        _check_lws(obj)
    elif kind == "HTTPRoute":
        _check_http_route(obj)
    else:
        raise AssertionError(f"unexpected kind {kind} in {name}")


def test_k8s_objects_validate(cases: list[Case]) -> None:
    kinds = set()
    for c in cases:
        files = c.render("k8s")
        docs = _docs(files)
        for name, obj in docs:
            _check_k8s_object(name, obj)
            kinds.add(obj["kind"])
        kustomization = yaml.safe_load(files["kustomization.yaml"])
        assert kustomization["kind"] == "Kustomization"
        assert sorted(kustomization["resources"]) == sorted(n for n in files if n != "kustomization.yaml")
    assert {"Deployment", "Service", "LeaderWorkerSet"} <= kinds


def test_http_routes_validate(cases: list[Case]) -> None:
    for c in cases:
        for name, obj in _docs(c.render("router")):
            _check_k8s_object(name, obj)


def test_deployment_details(shipped: dict[str, Case], multi_node: Case, amd: Case) -> None:
    """Image pin, GPU resource, node selector, probes, /dev/shm; AMD tiers use amd.com/gpu."""
    seen_amd = False
    docs = [(c.inst, o) for c in (shipped["quickstart"], amd) for _, o in _docs(c.render("k8s"))]
    for inst, obj in docs:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        (box,) = pod["containers"]
        gpu = inst.gpu(obj["metadata"]["annotations"]["planner.io/gpu"])
        on_amd = gpu.id == "mi300x"
        seen_amd |= on_amd
        key = "amd.com/gpu" if on_amd else "nvidia.com/gpu"
        assert set(box["resources"]["limits"]) == {key}
        assert box["image"].endswith(f":{IMAGE_TAG}")
        assert box["image"].startswith("vllm/vllm-openai-rocm:" if on_amd else "vllm/vllm-openai:")
        assert pod["nodeSelector"] == gpu.k8s_node_selector
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert box[probe]["httpGet"] == {"path": "/health", "port": 8000}
        assert box["startupProbe"]["failureThreshold"] * box["startupProbe"]["periodSeconds"] >= 600
        assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
        assert {"name": "dshm", "mountPath": "/dev/shm"} in box["volumeMounts"]
    assert seen_amd
    # Multi-node: the leader starts Ray and serves with the Ray executor; workers join the head.
    k8s_docs = [o for _, o in _docs(multi_node.render("k8s"))]
    (lws,) = [o for o in k8s_docs if o["kind"] == "LeaderWorkerSet"]
    lwt = lws["spec"]["leaderWorkerTemplate"]
    leader = lwt["leaderTemplate"]["spec"]["containers"][0]["command"][2]
    worker = lwt["workerTemplate"]["spec"]["containers"][0]["command"][2]
    assert "ray start --head" in leader and "--distributed-executor-backend ray" in leader
    assert "ray start --address=${LWS_LEADER_ADDRESS}:6379" in worker
    assert "$(" not in leader + worker  # Kubernetes would try to expand $(...) itself
    (svc,) = [o for o in k8s_docs if o["kind"] == "Service"]
    assert svc["spec"]["selector"]["planner.io/role"] == "leader"


# --------------------------------------------------------------------------------------------
# Round trip: parse every format back and compare with the plan.
# --------------------------------------------------------------------------------------------

Deployed = dict[Option, tuple[int, int]]  # option -> (replicas, GPUs)


def _plan_deployments(plan: Plan) -> Deployed:
    return {d.option: (d.replicas, d.gpus) for d in plan.deployments if d.replicas > 0}


BOOLEAN_FLAGS = frozenset({"--enable-chunked-prefill"})


def _flags(args: list[str]) -> dict[str, str]:
    """``--flag value`` pairs of a vllm serve argument list (after the positional model); a
    boolean flag (no value) maps to ``""``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        assert args[i].startswith("--"), args[i]
        assert args[i] not in out, f"{args[i]} given twice"
        if args[i] in BOOLEAN_FLAGS:
            out[args[i]] = ""
            i += 1
            continue
        out[args[i]] = args[i + 1]
        i += 2
    return out


def _check_budget_flags(flags: dict[str, str], o: Option, inst: Instance) -> None:
    """``--max-num-batched-tokens``: the option's budget, else prefill_chunk_tokens; chunked prefill on."""
    want = o.budget if o.budget is not None else inst.performance_params.prefill_chunk_tokens
    assert int(flags["--max-num-batched-tokens"]) == want, (o.key, flags)
    assert flags["--enable-chunked-prefill"] == ""
    assert int(flags["--max-num-seqs"]) <= want  # vLLM refuses max_num_seqs > max_num_batched_tokens


def _budget_of(meta: dict[str, Any]) -> int | None:
    """The chosen budget of an object or Helm entry, from its annotation (absent: not chosen)."""
    value = (meta.get("annotations") or {}).get("planner.io/max-num-batched-tokens")
    return None if value is None else int(value)


def _serve_line(script: str) -> list[str]:
    """The ``vllm serve`` command of a script (continuation lines joined), split like a shell."""
    joined = script.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if ln.strip().startswith("exec vllm serve")]
    argv = shlex.split(line)
    assert argv[:3] == ["exec", "vllm", "serve"]
    return argv[3:]


def _vllm_roundtrip(files: dict[str, str], inst: Instance) -> Deployed:
    got: Deployed = {}
    for name, text in files.items():
        assert name.endswith(".sh") and text.startswith("#!/usr/bin/env bash\n")
        argv = _serve_line(text)
        model, flags = argv[0], _flags(argv[1:])
        assert set(flags) <= VERIFIED_FLAGS
        (meta,) = [ln for ln in text.splitlines() if ln.startswith("# planner: ")]
        info = dict(kv.split("=") for kv in meta.removeprefix("# planner: ").split())
        budget = int(info["max_num_batched_tokens"]) if "max_num_batched_tokens" in info else None
        o = Option(
            flags["--served-model-name"],
            info["gpu"],
            int(flags["--tensor-parallel-size"]),
            int(flags["--pipeline-parallel-size"]),
            budget,
        )
        assert inst.model(o.model).hf_id == model
        assert float(flags["--gpu-memory-utilization"]) == inst.performance_params.gpu_memory_utilization
        _check_budget_flags(flags, o, inst)
        assert o not in got, f"{o.key} exported twice"
        got[o] = (int(info["replicas"]), int(info["gpus"]))
    return got


def _k8s_roundtrip(files: dict[str, str], inst: Instance) -> Deployed:
    got: Deployed = {}
    for _, obj in _docs(files):
        if obj["kind"] == "Deployment":
            pods, template = 1, obj["spec"]["template"]
            (c,) = template["spec"]["containers"]
            assert c["command"] == ["vllm", "serve"]
            argv = c["args"]
        elif obj["kind"] == "LeaderWorkerSet":
            lwt = obj["spec"]["leaderWorkerTemplate"]
            pods, template = lwt["size"], lwt["leaderTemplate"]
            (c,) = template["spec"]["containers"]
            argv = _serve_line(c["command"][2])
        else:
            continue
        model, flags = argv[0], _flags(argv[1:])
        assert set(flags) <= VERIFIED_FLAGS
        gpu = template["metadata"]["annotations"]["planner.io/gpu"]
        assert template["spec"].get("nodeSelector", {}) == inst.gpu(gpu).k8s_node_selector
        o = Option(
            flags["--served-model-name"],
            gpu,
            int(flags["--tensor-parallel-size"]),
            int(flags["--pipeline-parallel-size"]),
            _budget_of(template["metadata"]),
        )
        assert _budget_of(obj["metadata"]) == o.budget
        assert obj["metadata"]["annotations"]["planner.io/option"] == o.key
        assert inst.model(o.model).hf_id == model
        _check_budget_flags(flags, o, inst)
        assert o not in got, f"{o.key} exported twice"
        per_pod = int(next(v for k, v in c["resources"]["limits"].items() if k.endswith("/gpu")))
        replicas = obj["spec"]["replicas"]
        got[o] = (replicas, replicas * pods * per_pod)
    return got


def _helm_roundtrip(files: dict[str, str], inst: Instance) -> Deployed:
    values = yaml.safe_load(files["values.yaml"])
    assert set(values) == {"servingEngineSpec"} and set(values["servingEngineSpec"]) == {"modelSpec"}
    got: Deployed = {}
    for spec in values["servingEngineSpec"]["modelSpec"]:
        cfg = spec["vllmConfig"]
        extra = _flags(cfg["extraArgs"])
        o = Option(
            extra["--served-model-name"],
            spec["annotations"]["planner.io/gpu"],
            cfg["tensorParallelSize"],
            int(extra["--pipeline-parallel-size"]),
            _budget_of(spec),
        )
        assert spec["annotations"]["planner.io/option"] == o.key
        # The chart turns maxNumSeqs and enableChunkedPrefill into the flags the other formats pass.
        _check_budget_flags(
            {**extra, "--max-num-seqs": str(cfg["maxNumSeqs"]), "--enable-chunked-prefill": ""}, o, inst
        )
        assert cfg["enableChunkedPrefill"] is True
        assert spec["modelURL"] == inst.model(o.model).hf_id and spec["tag"] == IMAGE_TAG
        if "raySpec" in spec:  # one RayCluster = one replica: a head and replicaCount workers
            assert spec["raySpec"]["enabled"] and spec["raySpec"]["headNode"]["requestGPU"] == spec["requestGPU"]
            replicas, gpus = 1, (spec["replicaCount"] + 1) * spec["requestGPU"]
        else:
            replicas, gpus = spec["replicaCount"], spec["replicaCount"] * spec["requestGPU"]
        before = got.get(o, (0, 0))
        got[o] = (before[0] + replicas, before[1] + gpus)
    return got


def test_roundtrip_deployments(cases: list[Case]) -> None:
    parsers = {"vllm": _vllm_roundtrip, "k8s": _k8s_roundtrip, "helm": _helm_roundtrip}
    for c in cases:
        want = _plan_deployments(c.plan)
        for fmt, parse in parsers.items():
            assert parse(c.render(fmt), c.inst) == want, (c.plan.instance, fmt)


def _script_option(text: str) -> Option:
    (meta,) = [ln for ln in text.splitlines() if ln.startswith("# planner: ")]
    info = dict(kv.split("=") for kv in meta.removeprefix("# planner: ").split())
    budget = int(info["max_num_batched_tokens"]) if "max_num_batched_tokens" in info else None
    return Option(info["model"], info["gpu"], int(info["tp"]), int(info["pp"]), budget)


def test_max_num_seqs_is_the_planned_batch(cases: list[Case]) -> None:
    for c in cases:
        planned = {d.option: d.max_num_seqs for d in c.plan.deployments}
        for text in c.render("vllm").values():
            flags = _flags(_serve_line(text)[1:])
            want = planned[_script_option(text)]
            batch = want if want is not None else c.inst.performance_params.max_num_seqs
            assert int(flags["--max-num-seqs"]) == min(batch, int(flags["--max-num-batched-tokens"]))


def test_max_num_seqs_recomputed_without_plan_value(shipped: dict[str, Case]) -> None:
    """A plan written without max_num_seqs gets the batch back from the option table."""
    c = shipped["quickstart"]
    stripped = c.plan.model_copy(
        update={"deployments": [d.model_copy(update={"max_num_seqs": None}) for d in c.plan.deployments]}
    )
    want = {d.option: d.max_num_seqs for d in c.plan.deployments}
    for text in render_plan(stripped, c.inst, "vllm", table=c.table).values():
        flags = _flags(_serve_line(text)[1:])
        o = _script_option(text)
        assert int(flags["--max-num-seqs"]) == want[o]


def test_max_model_len_fits_the_planned_kv_cache(shipped: dict[str, Case]) -> None:
    c = shipped["quickstart"]
    inst, table = c.inst, c.table
    for text in c.render("vllm").values():
        flags = _flags(_serve_line(text)[1:])
        o = _script_option(text)
        kv = min(r.kv_capacity_tokens for r in table.by_option[o] if r.kv_capacity_tokens)
        ctx = inst.model(o.model).max_context_tokens
        assert int(flags["--max-model-len"]) <= max(min(kv, ctx or kv), 1)


def _router_check(files: dict[str, str], plan: Plan, names: dict[str, Option]) -> None:
    table = json.loads(files["router.json"])
    assert set(table) == set(plan.routing) | set(plan.unserved)
    routes = [o for _, o in _docs(files) if o["kind"] == "HTTPRoute"]
    refs = {
        r["matches"][0]["headers"][0]["value"]: {b["name"]: b["weight"] for b in r["backendRefs"]}
        for route in routes
        for r in route["spec"]["rules"]
    }
    for qt, shares in plan.routing.items():
        want = {s.option: s.fraction for s in shares if s.fraction > 0}
        got = {names[e["service"]]: e for e in table[qt]}
        assert set(got) <= set(want)
        for o, frac in want.items():
            e = got.get(o)
            if e is None:  # dropped: its weight rounded to 0
                assert frac * WEIGHT_SCALE < 1
                continue
            assert e["fraction"] == pytest.approx(frac, abs=1e-12)
            assert e["weight"] / WEIGHT_SCALE == pytest.approx(frac, abs=1.0 / WEIGHT_SCALE)
            assert e["model"] == o.model and e["port"] == 8000
            assert e.get("max_num_batched_tokens") == o.budget
        assert sum(e["weight"] for e in table[qt]) == round(sum(want.values()) * WEIGHT_SCALE)
        if table[qt]:
            assert refs[qt] == {e["service"]: e["weight"] for e in table[qt]}
        else:
            assert qt not in refs


def test_roundtrip_routing(cases: list[Case]) -> None:
    for c in cases:
        plan = c.plan
        k8s_files = c.render("k8s")
        names = {
            obj["metadata"]["name"]: Option(*_option_from_key(obj["metadata"]["annotations"]["planner.io/option"]))
            for _, obj in _docs(k8s_files)
            if obj["kind"] == "Service"
        }
        with_instance = c.render("router")
        _router_check(with_instance, plan, names)
        assert render_plan(plan, None, "router") == with_instance  # the plan alone gives the same routes


def _option_from_key(key: str) -> tuple[str, str, int, int, int | None]:
    model, gpu, tp, pp, *mbt = key.split("/")
    budget = int(mbt[0].removeprefix("mbt")) if mbt else None
    return model, gpu, int(tp.removeprefix("tp")), int(pp.removeprefix("pp")), budget


def test_unserved_share_is_not_routed(shipped: dict[str, Case]) -> None:
    plan = shipped["quickstart"].plan
    (qt, shares), *_ = plan.routing.items()
    cut = [s.model_copy(update={"fraction": s.fraction * 0.75}) for s in shares]
    partial = plan.model_copy(update={"routing": {**plan.routing, qt: cut}, "unserved": {**plan.unserved, qt: 0.25}})
    files = render_plan(partial, None, "router")
    table = json.loads(files["router.json"])
    assert sum(e["weight"] for e in table[qt]) == round(0.75 * WEIGHT_SCALE)
    (route,) = [o for _, o in _docs(files)]
    assert json.loads(route["metadata"]["annotations"]["planner.io/unserved"])[qt] == pytest.approx(0.25)


def test_integer_weights_preserve_fractions() -> None:
    assert integer_weights([1 / 3, 1 / 3, 1 / 3]) == [333334, 333333, 333333]
    assert sum(integer_weights([0.2, 0.3, 0.4])) == 900_000
    assert integer_weights([1.0]) == [WEIGHT_SCALE]
    assert integer_weights([1e-9, 1 - 1e-9]) == [0, WEIGHT_SCALE]


# --------------------------------------------------------------------------------------------
# Token budgets: one option deployed twice, at max_num_batched_tokens 512 and 2048.
# --------------------------------------------------------------------------------------------


def _mbt(args: list[str]) -> int:
    """The ``--max-num-batched-tokens`` value of a vllm serve argument list (model first)."""
    return int(_flags(args[1:])["--max-num-batched-tokens"])


def test_budget_pools_export_every_format(budget_pools: Case, tmp_path: Path) -> None:
    c = budget_pools
    written = {fmt: export_plan(c.plan, c.inst, fmt, tmp_path / fmt, table=c.table) for fmt in FORMATS}
    files = {fmt: {p.relative_to(tmp_path / fmt).as_posix(): p.read_text() for p in ps} for fmt, ps in written.items()}
    names = {b: f"vllm-{POOL_NAME}-mbt{b}" for b in BUDGETS}

    # vllm: one script per pool, named after it, serving with its own budget.
    assert set(files["vllm"]) == {f"{n}.sh" for n in names.values()}
    for b, n in names.items():
        text = files["vllm"][f"{n}.sh"]
        assert _mbt(_serve_line(text)) == b and f"--max-num-batched-tokens {b} " in text.replace("\\\n", "")
        assert f"max_num_batched_tokens={b} " in text and f"token budget {b}\n" in text

    # k8s: a Deployment and a Service per pool; names, selectors and args all per pool.
    docs = [o for _, o in _docs(files["k8s"]) if o["kind"] != "Kustomization"]
    deployments = {o["metadata"]["name"]: o for o in docs if o["kind"] == "Deployment"}
    services = {o["metadata"]["name"]: o for o in docs if o["kind"] == "Service"}
    assert set(deployments) == set(services) == set(names.values())
    assert len({o["metadata"]["labels"]["planner.io/option"] for o in deployments.values()}) == 2
    for b, n in names.items():
        dep, svc = deployments[n], services[n]
        pod = dep["spec"]["template"]
        (box,) = pod["spec"]["containers"]
        assert _mbt(box["args"]) == b
        for meta in (dep["metadata"], pod["metadata"], svc["metadata"]):
            assert meta["labels"]["planner.io/max-num-batched-tokens"] == str(b)
        assert dep["metadata"]["annotations"]["planner.io/option"] == Option(*POOL, b).key
        # Each Service selects its own pool's pods and not the other pool's.
        for other, o in deployments.items():
            pod_labels = o["spec"]["template"]["metadata"]["labels"]
            selected = all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
            assert selected == (other == n)
        assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]

    # helm: one modelSpec entry per pool, the budget in extraArgs (the chart has no key for it).
    specs = yaml.safe_load(files["helm"]["values.yaml"])["servingEngineSpec"]["modelSpec"]
    assert len(specs) == 2 and len({s["name"] for s in specs}) == 2
    for spec in specs:
        b = int(spec["annotations"]["planner.io/max-num-batched-tokens"])
        assert spec["name"].endswith(f"-mbt{b}") and len(spec["name"]) <= 34
        extra = spec["vllmConfig"]["extraArgs"]
        assert extra[extra.index("--max-num-batched-tokens") + 1] == str(b)
        assert spec["vllmConfig"]["enableChunkedPrefill"] is True
    assert {int(s["annotations"]["planner.io/max-num-batched-tokens"]) for s in specs} == set(BUDGETS)

    # router: each type goes half to each pool's Service.
    table = json.loads(files["router"]["router.json"])
    for q in c.inst.query_types:
        entries = {e["service"]: e for e in table[q.id]}
        assert set(entries) == set(names.values())
        for b, n in names.items():
            assert entries[n]["max_num_batched_tokens"] == b and entries[n]["weight"] == WEIGHT_SCALE // 2
    (route,) = [o for _, o in _docs(files["router"])]
    for rule in route["spec"]["rules"]:
        assert {r["name"] for r in rule["backendRefs"]} == set(names.values())
    # Without the instance (the plan alone is validated), the routes are the same.
    assert render_plan(c.plan, None, "router") == files["router"]


def test_budget_pools_cli(budget_pools: Case, tmp_path: Path) -> None:
    """`planner export` on the hand-written plan and instance files: every format, exit 0."""
    doc = _pools_instance_doc(BUDGETS)
    doc["include"] = [str((INSTANCES / rel).resolve()) for rel in doc["include"]]
    instance = tmp_path / "budget-pools.yaml"
    instance.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    write_plan(plan, budget_pools.plan)
    assert "max_num_batched_tokens: 2048" in plan.read_text()
    for fmt in FORMATS:
        out = tmp_path / f"out-{fmt}"
        code, stdout, stderr = _cli(
            ["export", str(plan), "--format", fmt, "--instance", str(instance), "--out", str(out)]
        )
        assert code == 0, (fmt, stdout, stderr)
        text = "".join(p.name + "\n" + p.read_text() for p in sorted(out.iterdir()))
        for b in BUDGETS:
            assert f"-mbt{b}" in text, fmt
    serve = {n.name: _mbt(_serve_line(n.read_text())) for n in (tmp_path / "out-vllm").iterdir()}
    assert serve == {f"vllm-{POOL_NAME}-mbt{b}.sh": b for b in BUDGETS}


def test_plan_without_budgets_exports_as_before(no_budget_pool: Case) -> None:
    """Names, labels, annotations and router entries as before budgets existed; the servers get
    the instance's prefill_chunk_tokens as their token budget."""
    c = no_budget_pool
    chunk = c.inst.performance_params.prefill_chunk_tokens
    name = f"vllm-{POOL_NAME}"
    vllm_files = c.render("vllm")
    assert set(vllm_files) == {f"{name}.sh"}
    (text,) = vllm_files.values()
    assert "max_num_batched_tokens" not in text and "token budget" not in text
    assert _mbt(_serve_line(text)) == chunk
    k8s_files = c.render("k8s")
    assert set(k8s_files) == {f"{name}.deployment.yaml", f"{name}.service.yaml", "kustomization.yaml"}
    for _, obj in _docs(k8s_files):
        meta = obj.get("metadata", {})
        assert "mbt" not in json.dumps(meta) and "max-num-batched-tokens" not in json.dumps(meta)
        if obj["kind"] == "Deployment":
            assert meta["labels"]["planner.io/option"] == "llama-3.1-70b.a100-80gb.tp4.pp1"
            assert meta["annotations"]["planner.io/option"] == "llama-3.1-70b/a100-80gb/tp4/pp1"
            assert _mbt(obj["spec"]["template"]["spec"]["containers"][0]["args"]) == chunk
    (spec,) = yaml.safe_load(c.render("helm")["values.yaml"])["servingEngineSpec"]["modelSpec"]
    assert spec["name"] == POOL_NAME and "planner.io/max-num-batched-tokens" not in spec["annotations"]
    router = json.loads(c.render("router")["router.json"])
    for entries in router.values():
        assert [set(e) for e in entries] == [{"service", "port", "model", "weight", "fraction"}]
        assert entries[0]["service"] == name


def test_same_budget_twice_is_a_duplicate(budget_pools: Case) -> None:
    """Two budgets of one option are two pools; the same budget listed twice is refused."""
    c = budget_pools
    first, second = c.plan.deployments
    assert first.option != second.option and first.option.budget != second.option.budget
    render_plan(c.plan, None, "router")  # accepted without the instance too
    twice = c.plan.model_copy(update={"deployments": [first, first]})
    with pytest.raises(InputError) as exc:
        render_plan(twice, None, "router", plan_label="plan.yaml")
    assert exc.value.field == "deployments[1]" and "listed twice" in exc.value.message
    assert f"/mbt{first.option.budget}" in exc.value.message
    with pytest.raises(InputError, match="check_plan rejects"):
        render_plan(twice, c.inst, "vllm", table=c.table)


def test_max_num_seqs_never_exceeds_the_budget(budget_pools: Case) -> None:
    """vLLM refuses max_num_seqs > max_num_batched_tokens: a larger planned batch is cut to the budget."""
    c = budget_pools
    big = c.plan.model_copy(
        update={"deployments": [d.model_copy(update={"max_num_seqs": 1000}) for d in c.plan.deployments]}
    )
    got = {}
    for text in render_plan(big, c.inst, "vllm", table=c.table).values():
        flags = _flags(_serve_line(text)[1:])
        got[int(flags["--max-num-batched-tokens"])] = int(flags["--max-num-seqs"])
    assert got == {512: 512, 2048: 1000}


# --------------------------------------------------------------------------------------------
# Names, flags, versions.
# --------------------------------------------------------------------------------------------


def test_names_and_label_values_are_sanitized() -> None:
    assert dns_label("vllm-qwen2.5-7b-h100-80gb-tp4-pp1") == "vllm-qwen2-5-7b-h100-80gb-tp4-pp1"
    long = dns_label("vllm-" + "x" * 80)
    assert len(long) <= 45 and DNS_1035.match(long)
    assert dns_label("7b") == "x-7b"
    assert label_value("qwen2.5-7b") == "qwen2.5-7b"
    assert label_value("tp4") == "tp4"
    assert label_value("a/b c_") == "a-b-c"
    v = label_value("m" * 100)
    assert len(v) <= 63 and LABEL_NAME.match(v) and v != label_value("m" * 99)
    assert nodes_per_replica(16, 8) == 2 and nodes_per_replica(9, 8) == 3 and nodes_per_replica(4, 8) == 1
    # ids that sanitize to the same name (a.b, a-b) still get distinct object names
    k8s_names, helm_names = _names([Option("a.b", "g", 1, 1), Option("a-b", "g", 1, 1)])
    assert len(set(k8s_names.values())) == 2 and len(set(helm_names.values())) == 2
    # Token budgets: "-mbt<N>" only when chosen, kept readable when the rest is cut and hashed.
    pools = [Option("llama-3.1-70b", "a100-80gb", 4, 1, b) for b in (None, 512, 2048)]
    pools += [Option("a.b", "g", 1, 1, 512), Option("a-b", "g", 1, 1, 512)]
    k8s_names, helm_names = _names(pools)
    assert k8s_names[pools[0]] == "vllm-llama-3-1-70b-a100-80gb-tp4-pp1"
    assert k8s_names[pools[1]] == "vllm-llama-3-1-70b-a100-80gb-tp4-pp1-mbt512"
    for names, max_len in ((k8s_names, 45), (helm_names, 34)):
        assert len(set(names.values())) == len(pools)
        assert all(DNS_1035.match(n) and len(n) <= max_len for n in names.values())
        assert all(names[o].endswith(f"-mbt{o.budget}") for o in pools if o.budget is not None)


def test_version_is_pinned_everywhere(shipped: dict[str, Case]) -> None:
    c = shipped["quickstart"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", VLLM_VERSION) and f"v{VLLM_VERSION}" == IMAGE_TAG
    assert f"vllm/vllm-openai:{IMAGE_TAG}" in "".join(c.render("k8s").values())
    assert f"tag: {IMAGE_TAG}" in c.render("helm")["values.yaml"]
    assert VLLM_VERSION in "".join(c.render("vllm").values())


# --------------------------------------------------------------------------------------------
# Refusals: one line, exit 2, nothing written.
# --------------------------------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_export_plan_refuses_rejected_and_mismatched(shipped: dict[str, Case], amd: Case, tmp_path: Path) -> None:
    c = shipped["quickstart"]
    inst, plan = c.inst, c.plan
    starved = plan.model_copy(
        update={"deployments": [d.model_copy(update={"replicas": 0, "gpus": 0}) for d in plan.deployments]}
    )
    refused = [
        (starved, inst, "-", "check_plan rejects"),
        (plan, amd.inst, "instance", "do not belong together"),
        (plan.model_copy(update={"status": "infeasible"}), inst, "status", "infeasible"),
    ]
    for bad, instance, field, words in refused:
        for fmt in FORMATS:
            with pytest.raises(InputError) as exc:
                export_plan(bad, instance, fmt, tmp_path / "out", plan_label="plan.yaml", table=c.table)
            assert exc.value.field == field and words in exc.value.message
            assert exc.value.file == "plan.yaml"
    with pytest.raises(InputError, match="--instance"):
        export_plan(plan, None, "k8s", tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_model_without_hf_id_is_refused(shipped: dict[str, Case], tmp_path: Path) -> None:
    inst, plan = shipped["table-demo"].inst, shipped["table-demo"].plan
    with pytest.raises(InputError) as exc:
        export_plan(plan, inst, "k8s", tmp_path / "out", instance_label="table-demo.yaml")
    assert exc.value.file == "table-demo.yaml" and re.fullmatch(r"models\[\d\]\.hf_id", exc.value.field)
    export_plan(plan, inst, "router", tmp_path / "out")  # the router needs no hf_id
    assert (tmp_path / "out" / "router.json").is_file()


def test_directory_is_replaced_atomically(
    shipped: dict[str, Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst, plan = shipped["quickstart"].inst, shipped["quickstart"].plan
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(InputError, match="--force"):
        export_plan(plan, inst, "k8s", out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]

    calls = {"n": 0}
    real = export_tree._write_file

    def failing(path: Path, text: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(path, text)

    monkeypatch.setattr(export_tree, "_write_file", failing)
    with pytest.raises(OSError, match="disk full"):
        export_plan(plan, inst, "k8s", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # old tree intact
    assert _leftovers(tmp_path) == []  # no temporary directory left behind
    monkeypatch.undo()

    written = export_plan(plan, inst, "k8s", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert "keep.txt" not in {p.name for p in written} and _leftovers(tmp_path) == []


def _cli(args: list[str]) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from planner.cli import app

    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def plan_files(shipped: dict[str, Case], tmp_path: Path) -> dict[str, Path]:
    plan = shipped["quickstart"].plan
    good = tmp_path / "plan.yaml"
    write_plan(good, plan)
    bad = tmp_path / "bad-plan.yaml"
    first = plan.deployments[0]
    write_plan(
        bad,
        plan.model_copy(
            update={"deployments": [first.model_copy(update={"replicas": 0, "gpus": 0}), *plan.deployments[1:]]}
        ),
    )
    return {"good": good, "bad": bad, "instance": INSTANCES / "quickstart.yaml", "other": INSTANCES / "table-demo.yaml"}


def test_cli_runner_refusals(plan_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    refusals = [
        (
            [str(plan_files["bad"]), "--format", "k8s", "--instance", str(plan_files["instance"])],
            "bad-plan.yaml: -: check_plan rejects",
        ),
        (
            [str(plan_files["good"]), "--format", "helm", "--instance", str(plan_files["other"])],
            "plan.yaml: instance: plan is for",
        ),
        ([str(plan_files["good"]), "--format", "vllm"], "--instance: required"),
        (
            [str(plan_files["good"]), "--format", "yaml", "--instance", str(plan_files["instance"])],
            "--format: unknown format",
        ),
        ([str(plan_files["good"]), "--instance", str(plan_files["instance"])], "--format: required"),
    ]
    for args, words in refusals:
        code, stdout, stderr = _cli(["export", *args, "--out", str(out)])
        assert code == 2, (args, stdout, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], stderr
        assert "Traceback" not in stderr and not out.exists()
    code, stdout, _ = _cli(["export", str(plan_files["good"]), "--format", "router", "--out", str(out)])
    assert code == 0 and (out / "router.json").is_file() and "router.json" in stdout


def test_cli_subprocess(plan_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(plan: Path, fmt: str) -> subprocess.CompletedProcess[str]:
        args = [str(plan), "--format", fmt, "--instance", str(plan_files["instance"]), "--out", str(out)]
        cmd = [sys.executable, "-m", "planner.cli", "export", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)

    bad = run(plan_files["bad"], "k8s")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith(f"error: {plan_files['bad']}: -: check_plan rejects")
    assert not out.exists() and _leftovers(tmp_path) == []
    ok = run(plan_files["good"], "k8s")
    assert ok.returncode == 0, ok.stderr
    assert (out / "kustomization.yaml").is_file()
    again = run(plan_files["good"], "vllm")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--force" in again.stderr
    assert (out / "kustomization.yaml").is_file()  # untouched


# --------------------------------------------------------------------------------------------
# README: the export section shows the quickstart export and what to run with it.
# --------------------------------------------------------------------------------------------


def test_readme_export_section() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("<!-- export:begin -->")[1].split("<!-- export:end -->")[0]
    musts = ["planner export", "kubectl apply -k", "helm install", "values.yaml", "bash deploy/vllm/", "x-query-type"]
    musts += ["kustomization.yaml", "router.json", "httproute.yaml", "LeaderWorkerSet", f"vllm/vllm-openai:{IMAGE_TAG}"]
    for words in musts:
        assert words in section, words


# --------------------------------------------------------------------------------------------
# Split prefill/decode pairs: NIXL servers per role and the pair's router.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split_pair() -> Case:
    """The mixed-tier pair of tests/test_disaggregation.py: 17 L40S prefill, 2 A100 TP4 decode."""
    from tests.test_disaggregation import _load, _long

    case = _solved(_load(_long()))
    assert {d.role for d in case.plan.deployments} == {"prefill", "decode"}
    return case


def _selector(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split(","))


def test_split_pair_exports_round_trip(split_pair: Case, tmp_path: Path) -> None:
    """Each pool is a vLLM server with the NIXL connector in its role; the pair's router sends a
    request to prefill then decode. Parsing the files back gives the plan's pools (replicas,
    GPUs, role, pair); every Kubernetes object validates; the router script runs its real
    argument assembly (a stub vllm-router prints what it was given); Helm is refused in one line."""
    c = split_pair
    want = _plan_deployments(c.plan)
    roles = {"prefill": "kv_producer", "decode": "kv_consumer"}
    # vllm: two server scripts and the router script.
    files = c.render("vllm")
    servers = {n: t for n, t in files.items() if not n.endswith(".router.sh")}
    (router_name,) = [n for n in files if n.endswith(".router.sh")]
    got: Deployed = {}
    for text in servers.values():
        argv = _serve_line(text)
        flags = _flags(argv[1:])
        assert set(flags) <= VERIFIED_FLAGS
        (meta,) = [ln for ln in text.splitlines() if ln.startswith("# planner: ")]
        info = dict(kv.split("=", 1) for kv in meta.removeprefix("# planner: ").split())
        o = Option(info["model"], info["gpu"], int(info["tp"]), int(info["pp"]), None, info["role"], info["pair"])
        assert json.loads(flags["--kv-transfer-config"]) == {"kv_connector": "NixlConnector", "kv_role": roles[o.role]}
        assert "VLLM_NIXL_SIDE_CHANNEL_HOST" in text and "VLLM_NIXL_SIDE_CHANNEL_PORT" in text
        got[o] = (int(info["replicas"]), int(info["gpus"]))
    assert got == want
    decode = next(d for d in c.plan.deployments if d.role == "decode")
    (decode_text,) = [t for t in servers.values() if "role=decode" in t]
    assert int(_flags(_serve_line(decode_text)[1:])["--max-num-seqs"]) == decode.max_num_seqs  # planned batch
    script = tmp_path / "router.sh"
    script.write_text(files[router_name])
    stub = tmp_path / "bin" / "vllm-router"
    stub.parent.mkdir()
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}
    env.update(PREFILL_URLS="http://p1:8000,http://p2:8000", DECODE_URLS="http://d1:8000")
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    args = out.splitlines()
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--routing-logic"] == "disaggregated_prefill_orchestrated"
    assert flags["--static-backends"] == "http://p1:8000,http://p2:8000,http://d1:8000"
    assert flags["--static-models"] == ",".join(["llama-3.1-8b"] * 3)
    assert flags["--static-model-labels"] == "prefill,prefill,decode"
    assert (flags["--prefill-model-labels"], flags["--decode-model-labels"]) == ("prefill", "decode")
    missing = subprocess.run(["bash", str(script)], env={**env, "DECODE_URLS": ""}, capture_output=True, text=True)
    assert missing.returncode != 0 and "DECODE_URLS" in missing.stderr
    # k8s: every object validates; the router selects exactly the pair's pods by IP.
    docs = _docs(c.render("k8s"))
    for name, obj in docs:
        _check_k8s_object(name, obj)
    kinds = [o["kind"] for _, o in docs]
    assert kinds.count("Deployment") == 3 and {"ServiceAccount", "Role", "RoleBinding"} <= set(kinds)
    servers_k8s = [
        o
        for _, o in docs
        if o["kind"] == "Deployment" and o["spec"]["template"]["spec"]["containers"][0]["name"] == "vllm"
    ]
    (router,) = [o for _, o in docs if o["kind"] == "Deployment" and o not in servers_k8s]
    rc = router["spec"]["template"]["spec"]["containers"][0]
    rflags = dict(zip(rc["args"][::2], rc["args"][1::2], strict=True))
    assert rflags["--service-discovery"] == "k8s" and rflags["--k8s-service-discovery-type"] == "pod-ip"
    assert router["spec"]["template"]["spec"]["serviceAccountName"] == router["metadata"]["name"]
    sel = _selector(rflags["--k8s-label-selector"])
    got = {}
    for d in servers_k8s:
        pod = d["spec"]["template"]
        assert sel.items() <= pod["metadata"]["labels"].items()
        (ctr,) = pod["spec"]["containers"]
        kv = json.loads(_flags(ctr["args"][1:])["--kv-transfer-config"])
        role = pod["metadata"]["labels"]["model"]  # what the router tells the pools apart by
        assert kv["kv_role"] == roles[role] and pod["metadata"]["annotations"]["planner.io/pd-role"] == role
        env = {e["name"]: e for e in ctr["env"]}
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        ann = d["metadata"]["annotations"]
        lab = d["metadata"]["labels"]
        o = Option(
            ann["planner.io/model"], ann["planner.io/gpu"], int(lab["planner.io/tp"]), int(lab["planner.io/pp"]),
            None, role, ann["planner.io/pair"],
        )  # fmt: skip
        per_pod = int(ctr["resources"]["limits"]["nvidia.com/gpu"])
        got[o] = (d["spec"]["replicas"], d["spec"]["replicas"] * per_pod)
    assert got == want
    # router: the pair's traffic goes to its router's Service.
    services = {o["metadata"]["name"] for _, o in docs if o["kind"] == "Service"}
    table = json.loads(c.render("router")["router.json"])
    (entry,) = table["code"]
    assert entry["service"] == router["metadata"]["name"] and entry["service"] in services
    assert {entry["prefill_service"], entry["decode_service"]} <= services and entry["weight"] == WEIGHT_SCALE
    (route,) = [o for _, o in _docs(c.render("router"))]
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == entry["service"]
    with pytest.raises(InputError, match="Helm values"):
        c.render("helm")
