"""``--format k8s``: plain Kubernetes manifests and a ``kustomization.yaml`` listing them.

Per deployment of the plan:

* a ``Deployment`` (apps/v1) when one replica fits on one node (tp·pp ≤ gpus_per_node), or a
  ``LeaderWorkerSet`` (leaderworkerset.x-k8s.io/v1) when it does not: one group of ``size`` pods
  per replica, the leader starting the Ray head and ``vllm serve``, the workers joining the Ray
  cluster, as in the LWS project's vLLM example (docs/examples/vllm/GPU/lws.yaml);
* a ``Service`` (ClusterIP) on port 8000 that selects the serving pods (the leaders for an LWS).

Choices, and why:

* ``command: [vllm, serve]`` is explicit, so the manifests do not depend on the image's ENTRYPOINT;
* a ``startupProbe`` covers download and load (sized from the weights), so the liveness probe
  can be strict without killing a pod that is still loading;
* ``maxSurge: 0``: the plan rents exactly the GPUs it needs, so a surge pod could not schedule;
* ``/dev/shm`` is a memory-backed emptyDir: NCCL and vLLM's workers exchange tensors through it
  and the container default (64 MiB) is far too small for tensor parallelism;
* labels tie every object to the plan (``planner.io/instance``), the option (``planner.io/option``)
  and the model; the exact ids, which label values cannot always hold, are annotations. A pool
  whose token budget the planner chose also carries ``planner.io/max-num-batched-tokens`` (label
  and annotation) and ``-mbt<N>`` in its names, so two pools of one option never share a name or
  a selector; ``--max-num-batched-tokens`` is in every server's arguments
  (:func:`planner.export.vllm.serve_args`).

A split prefill/decode pair (:mod:`planner.disaggregation`) is its two pools, each a Deployment
and a Service as above, with ``--kv-transfer-config`` (NIXL, :func:`planner.export.vllm.kv_transfer_config`),
the pod's IP as its NIXL side channel (downward API) and the labels ``planner.io/pair``,
``planner.io/pd-role`` and ``model: prefill|decode`` — plus the pair's router:

* a ``Deployment`` of vLLM production-stack's router (:data:`planner.export.resolve.ROUTER_IMAGE`)
  with ``--routing-logic disaggregated_prefill_orchestrated``: each request goes to a prefill pod
  (max_tokens = 1), then to a decode pod with the KV transfer parameters of the first answer;
* it finds the pair's pods by their IPs (``--service-discovery k8s --k8s-service-discovery-type
  pod-ip``, selected by ``planner.io/pair``, told apart by their ``model`` label): the router
  writes the prefill endpoint's host into ``remote_host``, which must be the very pod that holds
  the KV (behind a Service it would be any pod of the pool); so it gets a ``ServiceAccount``, a
  ``Role`` that reads pods (the chart's own router Role: get, watch, list, patch) and its
  ``RoleBinding``;
* a ``Service`` in front of the router, which the HTTPRoute of ``--format router`` sends the
  pair's traffic to.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from planner.export.resolve import (
    NIXL_SIDE_CHANNEL_PORT,
    RAY_PORT,
    ROUTER_IMAGE,
    VLLM_VERSION,
    ExportContext,
    PairTarget,
    Target,
    label_value,
)
from planner.export.vllm import router_args, serve_args
from planner.export.yamlout import dump

HF_TOKEN_SECRET = "hf-token"  # optional Secret with key "token", for gated models (Llama)
SHM_SIZE = "16Gi"
PROBE_PERIOD_S = 10


def labels(ctx: ExportContext, t: Target) -> dict[str, str]:
    o = t.option
    option = f"{o.model}.{o.gpu}.tp{o.tp}.pp{o.pp}" + ("" if o.budget is None else f".mbt{o.budget}")
    out = {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": t.name,
        "app.kubernetes.io/version": label_value(VLLM_VERSION),
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": label_value(f"planner-{ctx.plan.instance}"),
        "app.kubernetes.io/managed-by": "planner",
        "planner.io/instance": label_value(ctx.plan.instance),
        "planner.io/option": label_value(option),
        "planner.io/model": label_value(o.model),
        "planner.io/gpu": label_value(o.gpu),
        "planner.io/tp": str(o.tp),
        "planner.io/pp": str(o.pp),
    }
    if o.budget is not None:  # pools of one option differ by the budget the planner chose
        out["planner.io/max-num-batched-tokens"] = str(o.budget)
    if t.role is not None:  # a split pool: its pair router selects the pair and reads `model`
        out["planner.io/pair"] = label_value(o.pair or "")
        out["planner.io/pd-role"] = t.role
        out["model"] = t.role
    return out


def annotations(ctx: ExportContext, t: Target) -> dict[str, str]:
    """Exact ids (label values are sanitized) and what the plan expects of this deployment."""
    o = t.option
    out = {
        "planner.io/option": o.key,
        "planner.io/model": o.model,
        "planner.io/gpu": o.gpu,
        "planner.io/hf-id": t.hf_id,
        "planner.io/replicas": str(t.replicas),
        "planner.io/gpus": str(t.replicas * t.gpus_per_replica),
        "planner.io/plan": f"{ctx.plan.instance} ({ctx.plan.method}, {ctx.plan.status})",
    }
    if o.budget is not None:
        out["planner.io/max-num-batched-tokens"] = str(o.budget)
    if t.role is not None:
        out["planner.io/pd-role"] = t.role
        out["planner.io/pair"] = o.pair or ""
    return out


def selector(t: Target) -> dict[str, str]:
    return {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": t.name}


def _resources(t: Target) -> dict[str, Any]:
    gpus = str(t.gpus_per_pod)
    return {
        "requests": {"cpu": str(t.cpu_request), "memory": f"{t.memory_request_gi}Gi", t.gpu_resource: gpus},
        "limits": {t.gpu_resource: gpus},
    }


def _probes(t: Target) -> dict[str, Any]:
    get = {"httpGet": {"path": "/health", "port": t.port}}
    return {
        # Download + load: up to t.startup_seconds before /health answers; liveness waits for it.
        "startupProbe": {
            **get,
            "periodSeconds": PROBE_PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(t.startup_seconds / PROBE_PERIOD_S),
        },
        "readinessProbe": {
            **get,
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            **get,
            "initialDelaySeconds": 30,
            "periodSeconds": 15,
            "timeoutSeconds": 10,
            "failureThreshold": 4,
        },
    }


def _env(t: Target | None = None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": HF_TOKEN_SECRET, "key": "token", "optional": True}},
        }
    ]
    if t is not None and t.role is not None:  # the decode pod pulls KV from the prefill pod's IP
        env += [
            {"name": "VLLM_NIXL_SIDE_CHANNEL_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "VLLM_NIXL_SIDE_CHANNEL_PORT", "value": str(NIXL_SIDE_CHANNEL_PORT)},
        ]
    return env


def _ports(t: Target) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = [{"name": "http", "containerPort": t.port, "protocol": "TCP"}]
    if t.role is not None:
        ports.append({"name": "nixl", "containerPort": NIXL_SIDE_CHANNEL_PORT, "protocol": "TCP"})
    return ports


def _volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}],
        [{"name": "dshm", "mountPath": "/dev/shm"}],
    )


def _pod_spec(t: Target, container: dict[str, Any]) -> dict[str, Any]:
    volumes, mounts = _volumes()
    spec: dict[str, Any] = {}
    if t.gpu is not None and t.gpu.k8s_node_selector:
        spec["nodeSelector"] = dict(t.gpu.k8s_node_selector)
    spec["terminationGracePeriodSeconds"] = 60
    spec["containers"] = [{**container, "volumeMounts": mounts}]
    spec["volumes"] = volumes
    return spec


def _server_container(t: Target) -> dict[str, Any]:
    return {
        "name": "vllm",
        "image": t.image,
        "command": ["vllm", "serve"],
        "args": serve_args(t, host="0.0.0.0"),
        "ports": _ports(t),
        "env": _env(t),
        "resources": _resources(t),
        **_probes(t),
    }


def deployment(ctx: ExportContext, t: Target) -> dict[str, Any]:
    lab = labels(ctx, t)
    ann = annotations(ctx, t)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": t.name, "labels": lab, "annotations": ann},
        "spec": {
            "replicas": t.replicas,
            "selector": {"matchLabels": selector(t)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "progressDeadlineSeconds": t.startup_seconds + 600,
            "template": {
                "metadata": {"labels": lab, "annotations": ann},
                "spec": _pod_spec(t, _server_container(t)),
            },
        },
    }


# Leader: start the Ray head, wait until every pod of the group has joined, then serve.
_WAIT_FOR_RAY = (
    "python3 -c 'import os, time, ray\n"
    'ray.init(address="auto")\n'
    'want = int(os.environ["LWS_GROUP_SIZE"])\n'
    'while sum(1 for n in ray.nodes() if n["Alive"]) < want:\n'
    "    time.sleep(5)'"
)


def leader_script(t: Target) -> str:
    return (
        "set -euo pipefail\n"
        f"ray start --head --port={RAY_PORT}\n"
        f"{_WAIT_FOR_RAY}\n"
        f"exec {shlex.join(['vllm', 'serve', *serve_args(t, host='0.0.0.0')])}\n"
    )


def worker_script() -> str:
    # LWS injects LWS_LEADER_ADDRESS; retry until the leader's Ray head accepts the worker.
    return (
        f"until ray start --address=${{LWS_LEADER_ADDRESS}}:{RAY_PORT} --block; do\n"
        "  echo 'waiting for the Ray head'; sleep 5\n"
        "done\n"
    )


def leader_worker_set(ctx: ExportContext, t: Target) -> dict[str, Any]:
    lab = labels(ctx, t)
    ann = annotations(ctx, t)
    leader = {
        "name": "vllm-leader",
        "image": t.image,
        "command": ["/bin/bash", "-c", leader_script(t)],
        "ports": [*_ports(t), {"name": "ray", "containerPort": RAY_PORT, "protocol": "TCP"}],
        "env": _env(t),
        "resources": _resources(t),
        **_probes(t),
    }
    worker = {
        "name": "vllm-worker",
        "image": t.image,
        "command": ["/bin/bash", "-c", worker_script()],
        "env": _env(),
        "resources": _resources(t),
    }
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": t.name, "labels": lab, "annotations": ann},
        "spec": {
            "replicas": t.replicas,
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": {
                "size": t.nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {
                    "metadata": {"labels": {**lab, "planner.io/role": "leader"}, "annotations": ann},
                    "spec": _pod_spec(t, leader),
                },
                "workerTemplate": {
                    "metadata": {"labels": {**lab, "planner.io/role": "worker"}, "annotations": ann},
                    "spec": _pod_spec(t, worker),
                },
            },
        },
    }


def service(ctx: ExportContext, t: Target) -> dict[str, Any]:
    sel = selector(t)
    if t.multi_node:
        sel = {**sel, "planner.io/role": "leader"}  # only the leader runs the HTTP server
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": t.name, "labels": labels(ctx, t), "annotations": {"planner.io/option": t.option.key}},
        "spec": {
            "type": "ClusterIP",
            "selector": sel,
            "ports": [{"name": "http", "port": t.port, "targetPort": t.port, "protocol": "TCP"}],
        },
    }


def router_labels(ctx: ExportContext, p: PairTarget) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm-router",
        "app.kubernetes.io/instance": p.name,
        "app.kubernetes.io/component": "router",
        "app.kubernetes.io/part-of": label_value(f"planner-{ctx.plan.instance}"),
        "app.kubernetes.io/managed-by": "planner",
        "planner.io/instance": label_value(ctx.plan.instance),
        "planner.io/pair": label_value(p.pair),
    }


def pair_selector(ctx: ExportContext, p: PairTarget) -> str:
    """The label selector of the pair's serving pods (both pools), as the router's flag wants it."""
    return f"planner.io/instance={label_value(ctx.plan.instance)},planner.io/pair={label_value(p.pair)}"


def router_objects(ctx: ExportContext, p: PairTarget) -> list[tuple[str, dict[str, Any]]]:
    """The pair router's ServiceAccount, Role, RoleBinding, Deployment and Service."""
    lab = router_labels(ctx, p)
    sel = {k: lab[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    meta = {"name": p.name, "labels": lab, "annotations": {"planner.io/pair": p.pair}}
    args = router_args(
        p,
        [
            "--service-discovery",
            "k8s",
            "--k8s-service-discovery-type",
            "pod-ip",
            "--k8s-namespace",
            "$(POD_NAMESPACE)",  # Kubernetes expands $(VAR) in args from the container's env
            "--k8s-port",
            str(p.prefill.port),
            "--k8s-label-selector",
            pair_selector(ctx, p),
        ],
    )
    container = {
        "name": "router",
        "image": ROUTER_IMAGE,  # ENTRYPOINT vllm-router (the project's docker/Dockerfile)
        "args": args,
        "ports": [{"name": "http", "containerPort": p.port, "protocol": "TCP"}],
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": p.port}, "periodSeconds": 10},
    }
    return [
        (f"{p.name}.serviceaccount.yaml", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
        (
            f"{p.name}.role.yaml",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list", "patch"]}],
            },
        ),
        (
            f"{p.name}.rolebinding.yaml",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "subjects": [{"kind": "ServiceAccount", "name": p.name}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": p.name},
            },
        ),
        (
            f"{p.name}.deployment.yaml",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": sel},
                    "template": {
                        "metadata": {"labels": lab, "annotations": meta["annotations"]},
                        "spec": {"serviceAccountName": p.name, "containers": [container]},
                    },
                },
            },
        ),
        (
            f"{p.name}.service.yaml",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {
                    "type": "ClusterIP",
                    "selector": sel,
                    "ports": [{"name": "http", "port": p.port, "targetPort": p.port, "protocol": "TCP"}],
                },
            },
        ),
    ]


def documents(ctx: ExportContext) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object, in apply order."""
    docs: list[tuple[str, dict[str, Any]]] = []
    for t in ctx.targets:
        if t.multi_node:
            docs.append((f"{t.name}.leaderworkerset.yaml", leader_worker_set(ctx, t)))
        else:
            docs.append((f"{t.name}.deployment.yaml", deployment(ctx, t)))
        docs.append((f"{t.name}.service.yaml", service(ctx, t)))
    for p in ctx.pairs:
        docs += router_objects(ctx, p)
    return docs


def _header(ctx: ExportContext) -> str:
    return (
        f"# Generated by `planner export --format k8s` for vLLM {VLLM_VERSION} from the plan of "
        f"instance {ctx.plan.instance}.\n"
    )


def render(ctx: ExportContext) -> dict[str, str]:
    files = {name: _header(ctx) + dump(obj) for name, obj in documents(ctx)}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    files["kustomization.yaml"] = _header(ctx) + dump(kustomization)
    return files
