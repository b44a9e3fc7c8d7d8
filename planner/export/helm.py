"""``--format helm``: a values file for the vLLM production-stack chart (vllm-project/production-stack).

One ``servingEngineSpec.modelSpec`` entry per deployment. Only keys the chart defines are used;
each was checked in the chart's ``helm/values.yaml``, ``helm/values.schema.json`` and the templates
that read them (``deployment-vllm-multi.yaml``, ``ray-cluster.yaml``):

=========================  ===============================================================
name, repository, tag      ``<release>-<name>-deployment-vllm``; image ``repository:tag``
modelURL                   the positional model of ``vllm serve`` (the Hugging Face id)
replicaCount               Deployment replicas (Ray path: worker pods of one RayCluster)
requestCPU/Memory/GPU      pod requests; the chart sets the GPU limit equal to the request
requestGPUType             GPU resource name, default ``nvidia.com/gpu`` (``amd.com/gpu`` here)
runtimeClassName           per model; ``""`` for AMD so the chart's default ``nvidia`` is dropped
pvcStorage                 volume for the downloaded checkpoint (required by older schemas)
shmSize                    size of the ``/dev/shm`` volume mounted when tensorParallelSize is set
nodeSelectorTerms          required node affinity built from the tier's ``k8s_node_selector``
annotations                planner ids on the chart's Deployment (round trip, audit)
vllmConfig                 tensorParallelSize, maxModelLen, maxNumSeqs, gpuMemoryUtilization,
                           enablePrefixCaching, enableChunkedPrefill, extraArgs
                           (``--pipeline-parallel-size``, ``--served-model-name`` and
                           ``--max-num-batched-tokens``, which vllmConfig has no key for)
raySpec                    enabled, headNode.{requestCPU, requestMemory, requestGPU}
=========================  ===============================================================

A replica that spans nodes uses the chart's Ray path (``raySpec``, needs the KubeRay operator):
one RayCluster serves one replica with a head pod and ``replicaCount`` worker pods, so such a
deployment becomes one modelSpec entry per replica.

The token budget of each deployment (``--max-num-batched-tokens``: its chosen
``max_num_batched_tokens``, else the instance's ``prefill_chunk_tokens``) travels in
``extraArgs``: the chart's ``vllmConfig`` has no key for it (its schema would accept an unknown
``maxNumBatchedTokens`` and the templates silently drop it). A chosen budget is also in the
annotation ``planner.io/max-num-batched-tokens`` and, as ``-mbt<N>``, in the entry's name.
"""

from __future__ import annotations

from typing import Any

from planner.export.resolve import IMAGE_TAG, VLLM_VERSION, ExportContext, Target, is_amd
from planner.export.yamlout import dump

SHM_SIZE = "16Gi"


def _node_selector_terms(t: Target) -> list[dict[str, Any]]:
    if t.gpu is None or not t.gpu.k8s_node_selector:
        return []
    return [
        {
            "matchExpressions": [
                {"key": k, "operator": "In", "values": [v]} for k, v in sorted(t.gpu.k8s_node_selector.items())
            ]
        }
    ]


def _vllm_config(t: Target) -> dict[str, Any]:
    cfg: dict[str, Any] = {"tensorParallelSize": t.option.tp}
    if t.max_model_len is not None:
        cfg["maxModelLen"] = t.max_model_len
    if t.max_num_seqs is not None:
        cfg["maxNumSeqs"] = t.max_num_seqs
    if t.gpu_memory_utilization is not None:
        cfg["gpuMemoryUtilization"] = t.gpu_memory_utilization
    # Without this key the chart passes --no-enable-prefix-caching; keep vLLM's own default (on),
    # as the scripts and manifests of the other formats do.
    cfg["enablePrefixCaching"] = True
    extra = ["--pipeline-parallel-size", str(t.option.pp), "--served-model-name", t.served_model_name]
    if t.max_num_batched_tokens is not None:
        # The chart's enableChunkedPrefill becomes --enable-chunked-prefill (as in the other formats).
        cfg["enableChunkedPrefill"] = True
        extra += ["--max-num-batched-tokens", str(t.max_num_batched_tokens)]
    cfg["extraArgs"] = extra
    return cfg


def _entry(ctx: ExportContext, t: Target, name: str, replica_count: int) -> dict[str, Any]:
    o = t.option
    entry: dict[str, Any] = {
        "name": name,
        "annotations": {
            "planner.io/option": o.key,
            "planner.io/model": o.model,
            "planner.io/gpu": o.gpu,
            "planner.io/replicas": str(t.replicas),
            "planner.io/plan": f"{ctx.plan.instance} ({ctx.plan.method}, {ctx.plan.status})",
        },
        "repository": t.image_repository,
        "tag": IMAGE_TAG,
        "modelURL": t.hf_id,
        "replicaCount": replica_count,
        "requestCPU": t.cpu_request,
        "requestMemory": f"{t.memory_request_gi}Gi",
        "requestGPU": t.gpus_per_pod,
    }
    if o.budget is not None:
        entry["annotations"]["planner.io/max-num-batched-tokens"] = str(o.budget)
    if is_amd(t.gpu):
        entry["requestGPUType"] = t.gpu_resource
        entry["runtimeClassName"] = ""
    entry["pvcStorage"] = f"{t.storage_gi}Gi"
    entry["shmSize"] = SHM_SIZE
    terms = _node_selector_terms(t)
    if terms:
        entry["nodeSelectorTerms"] = terms
    entry["vllmConfig"] = _vllm_config(t)
    return entry


def model_specs(ctx: ExportContext) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for t in ctx.targets:
        if not t.multi_node:
            specs.append(_entry(ctx, t, t.short_name, t.replicas))
            continue
        for r in range(t.replicas):
            entry = _entry(ctx, t, f"{t.short_name}-r{r}", t.nodes - 1)
            entry["raySpec"] = {
                "enabled": True,
                "headNode": {
                    "requestCPU": t.cpu_request,
                    "requestMemory": f"{t.memory_request_gi}Gi",
                    "requestGPU": t.gpus_per_pod,
                },
            }
            specs.append(entry)
    return specs


def values(ctx: ExportContext) -> dict[str, Any]:
    return {"servingEngineSpec": {"modelSpec": model_specs(ctx)}}


def render(ctx: ExportContext) -> dict[str, str]:
    header = (
        f"# Generated by `planner export --format helm` for vLLM {VLLM_VERSION} from the plan of instance "
        f"{ctx.plan.instance}.\n"
        "# Values for the vLLM production-stack chart:\n"
        "#   helm repo add vllm https://vllm-project.github.io/production-stack\n"
        "#   helm install vllm vllm/vllm-stack -f values.yaml\n"
        "# Entries with raySpec (replicas spanning nodes) need the KubeRay operator.\n"
    )
    return {"values.yaml": header + dump(values(ctx))}
