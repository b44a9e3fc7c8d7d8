"""``vllm serve`` command lines, and the ``--format vllm`` shell scripts built from them.

Every flag below exists in vLLM's argument parser; where each was checked (vllm-project/vllm):

==============================  ============================================================
``vllm serve MODEL``            positional ``model_tag`` (vllm/entrypoints/cli/serve.py,
                                usage "vllm serve [model_tag] [options]"). ``--model`` still
                                parses but ``vllm serve`` warns it is deprecated and will be
                                removed, so the Hugging Face id is passed positionally.
``--served-model-name``         ModelConfig group (vllm/engine/arg_utils.py)
``--max-model-len``             ModelConfig group (vllm/engine/arg_utils.py)
``--tensor-parallel-size``      ParallelConfig group, alias ``-tp`` (vllm/engine/arg_utils.py)
``--pipeline-parallel-size``    ParallelConfig group, alias ``-pp`` (vllm/engine/arg_utils.py)
``--distributed-executor-backend``  ParallelConfig; ``"ray"`` is one of its values and must be
                                set by hand for multi-node serving (vllm/config/parallel.py)
``--gpu-memory-utilization``    CacheConfig group (vllm/engine/arg_utils.py)
``--max-num-seqs``              SchedulerConfig group (vllm/engine/arg_utils.py)
``--max-num-batched-tokens``    SchedulerConfig group (vllm/engine/arg_utils.py); must be
                                ≥ ``--max-num-seqs`` (SchedulerConfig.verify_max_model_len)
``--enable-chunked-prefill``    SchedulerConfig group, a boolean flag (vllm/engine/arg_utils.py);
                                on by default in V1, passed explicitly because the planned
                                budget assumes chunked prefill and, without it, vLLM refuses a
                                budget below ``--max-model-len`` (vllm/config/scheduler.py)
``--host`` / ``--port``         FrontendArgs fields ``host``, ``port`` (default 8000)
                                (vllm/entrypoints/openai/cli_args.py)
``--kv-transfer-config``        KVTransferConfig as JSON (vllm/engine/arg_utils.py,
                                vllm/config/kv_transfer.py): a split pair's servers only,
                                ``{"kv_connector":"NixlConnector","kv_role":...}``, as in
                                docs/features/nixl_connector_usage.md
==============================  ============================================================

A split pair (:mod:`planner.disaggregation`) is three scripts: its prefill server
(``kv_producer``), its decode server (``kv_consumer``), both announcing their NIXL side channel
(``VLLM_NIXL_SIDE_CHANNEL_HOST``/``_PORT``), and its router (``<pair>.router.sh``: the
production-stack router, :data:`planner.export.resolve.ROUTER_IMAGE`), which sends a request to
a prefill server, then to a decode server with the KV transfer parameters of the first answer.

``--quantization`` is deliberately not passed: vLLM reads the method from the checkpoint's
config, and forcing e.g. ``awq`` would bypass the faster ``awq_marlin`` kernel it picks itself.
"""

from __future__ import annotations

import json
import shlex

from planner.export.resolve import (
    KV_CONNECTOR,
    NIXL_SIDE_CHANNEL_PORT,
    RAY_PORT,
    ROUTER_IMAGE,
    VLLM_VERSION,
    ExportContext,
    PairTarget,
    Target,
)

# The only flags the exporters may emit: each checked against vLLM's parser (table above).
VERIFIED_FLAGS: frozenset[str] = frozenset(
    {
        "--served-model-name",
        "--host",
        "--port",
        "--tensor-parallel-size",
        "--pipeline-parallel-size",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--enable-chunked-prefill",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--distributed-executor-backend",
        "--kv-transfer-config",
    }
)


def kv_transfer_config(t: Target) -> str | None:
    """The ``--kv-transfer-config`` JSON of a split pool's server (None for a colocated one)."""
    if t.kv_role is None:
        return None
    return json.dumps({"kv_connector": KV_CONNECTOR, "kv_role": t.kv_role}, separators=(",", ":"))


def router_args(p: PairTarget, discovery: list[str]) -> list[str]:
    """``vllm-router`` arguments of a pair's router (the production-stack router's parser,
    src/vllm_router/parsers/parser.py): ``discovery`` says where its backends are; the
    backends' model labels tell prefill from decode."""
    return [
        "--host",
        "0.0.0.0",
        "--port",
        str(p.port),
        *discovery,
        "--routing-logic",
        "disaggregated_prefill_orchestrated",
        "--prefill-model-labels",
        "prefill",
        "--decode-model-labels",
        "decode",
    ]


def static_discovery(prefill_urls: str, decode_urls: str, models: str, labels: str) -> list[str]:
    """Static backends: every server's URL, one model name and one label (prefill|decode) each."""
    return [
        "--service-discovery",
        "static",
        "--static-backends",
        f"{prefill_urls},{decode_urls}",
        "--static-models",
        models,
        "--static-model-labels",
        labels,
    ]


def serve_args(t: Target, host: str | None = None) -> list[str]:
    """Arguments after ``vllm serve``: the model first, then one flag per planned setting."""
    args = [t.hf_id, "--served-model-name", t.served_model_name]
    if host is not None:
        args += ["--host", host]
    args += [
        "--port",
        str(t.port),
        "--tensor-parallel-size",
        str(t.option.tp),
        "--pipeline-parallel-size",
        str(t.option.pp),
    ]
    if t.max_num_seqs is not None:
        args += ["--max-num-seqs", str(t.max_num_seqs)]
    if t.max_num_batched_tokens is not None:
        # The token budget the performance model planned with (the pool's chosen budget, else the
        # instance's prefill_chunk_tokens): prompts are prefilled in chunks that share it with decodes.
        args += ["--max-num-batched-tokens", str(t.max_num_batched_tokens), "--enable-chunked-prefill"]
    if t.max_model_len is not None:
        args += ["--max-model-len", str(t.max_model_len)]
    if t.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", f"{t.gpu_memory_utilization:g}"]
    if t.multi_node:
        # vLLM uses multiprocessing on one host; a replica spanning nodes needs the Ray executor.
        args += ["--distributed-executor-backend", "ray"]
    kv = kv_transfer_config(t)
    if kv is not None:
        args += ["--kv-transfer-config", kv]
    return args


def serve_command(t: Target, host: str | None = None) -> list[str]:
    return ["vllm", "serve", *serve_args(t, host)]


def _script(ctx: ExportContext, t: Target) -> str:
    plan = ctx.plan
    o = t.option
    args = serve_args(t)
    # One flag and its value per line, so a reader sees each planned setting at a glance.
    lines = [shlex.quote(args[0])]
    i = 1
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            lines.append(f"{args[i]} {shlex.quote(args[i + 1])}")
            i += 2
        else:
            lines.append(args[i])
            i += 1
    body = " \\\n  ".join(lines)
    # A pool with a planner-chosen budget says so (plans without budgets keep their old headers).
    budget = "" if o.budget is None else f", token budget {o.budget}"
    budget_key = "" if o.budget is None else f" max_num_batched_tokens={o.budget}"
    role_key = "" if t.role is None else f" role={t.role} pair={o.pair}"
    front = (
        "# and put a router in front of the replicas (`planner export --format router`)."
        if t.role is None
        else f"# the {t.role} pool of split pair {o.pair}; its router is `{t.pair_name}.router.sh`."
    )
    run = (
        f"# Run this script once per replica ({t.replicas} in all), each on a machine with "
        f"{t.gpus_per_replica} free {o.gpu} GPU(s),\n{front}"
    )
    if t.multi_node:
        run = (
            f"# One replica spans {t.nodes} nodes of {t.gpus_per_pod} {o.gpu} GPUs. Per replica, first form a Ray\n"
            f"# cluster: `ray start --head --port={RAY_PORT}` on the head node and\n"
            f"# `ray start --address=<head-ip>:{RAY_PORT}` on each of the other {t.nodes - 1} node(s); then run this\n"
            f"# script on the head node. Repeat for each of the {t.replicas} replica(s)."
        )
    return (
        "#!/usr/bin/env bash\n"
        f"# Generated by `planner export --format vllm` for vLLM {VLLM_VERSION}; re-export instead of editing.\n"
        f"# plan: instance {plan.instance}, method {plan.method}, status {plan.status}\n"
        f"# deployment: {o.model} ({t.hf_id}) on {o.gpu}, tp {o.tp} x pp {o.pp} = {t.gpus_per_replica} GPU(s) "
        f"per replica, {t.replicas} replica(s){budget}\n"
        f"# planner: model={o.model} gpu={o.gpu} tp={o.tp} pp={o.pp}{budget_key}{role_key} replicas={t.replicas} "
        f"gpus={t.replicas * t.gpus_per_replica}\n"
        f"{run}\n"
        "set -euo pipefail\n"
        f"{_nixl_env(t)}"
        f"exec vllm serve {body}\n"
    )


def _nixl_env(t: Target) -> str:
    """A split server announces where the decode side pulls KV from (its NIXL side channel)."""
    if t.role is None:
        return ""
    return (
        "# NIXL side channel: the decode server pulls this prompt's KV from here (override if needed).\n"
        'export VLLM_NIXL_SIDE_CHANNEL_HOST="${VLLM_NIXL_SIDE_CHANNEL_HOST:-$(hostname -I | cut -d" " -f1)}"\n'
        f'export VLLM_NIXL_SIDE_CHANNEL_PORT="${{VLLM_NIXL_SIDE_CHANNEL_PORT:-{NIXL_SIDE_CHANNEL_PORT}}}"\n'
    )


def _router_script(ctx: ExportContext, p: PairTarget) -> str:
    """The pair's router: backends are the prefill and decode servers' URLs, given at run time."""
    args = router_args(p, static_discovery("$PREFILL_URLS", "$DECODE_URLS", "$models", "$labels"))
    # Flag and value per line; values naming the shell's variables are expanded ("..."), the rest quoted.
    body = " \\\n  ".join(
        f"{flag} " + (f'"{value}"' if "$" in value else shlex.quote(value))
        for flag, value in zip(args[::2], args[1::2], strict=True)
    )
    model = shlex.quote(p.served_model_name)
    return (
        "#!/usr/bin/env bash\n"
        f"# Generated by `planner export --format vllm` for vLLM {VLLM_VERSION}; re-export instead of editing.\n"
        f"# plan: instance {ctx.plan.instance}, method {ctx.plan.method}, status {ctx.plan.status}\n"
        f"# split pair {p.pair}: {p.prefill.replicas} prefill replica(s) ({p.prefill.name}.sh) and "
        f"{p.decode.replicas} decode replica(s) ({p.decode.name}.sh)\n"
        f"# planner: pair={p.pair} router={p.name} prefill={p.prefill.name} decode={p.decode.name}\n"
        "# Run once, with the vllm-router package of the production-stack release in "
        f"{ROUTER_IMAGE} installed,\n"
        "# PREFILL_URLS and DECODE_URLS the comma-separated http://HOST:PORT of every prefill and decode server.\n"
        "set -euo pipefail\n"
        ': "${PREFILL_URLS:?comma-separated URLs of the prefill servers}"\n'
        ': "${DECODE_URLS:?comma-separated URLs of the decode servers}"\n'
        'IFS=, read -r -a prefill <<< "$PREFILL_URLS"\n'
        'IFS=, read -r -a decode <<< "$DECODE_URLS"\n'
        'models="" labels=""\n'
        f'for _ in "${{prefill[@]}}"; do models+="{model},"; labels+="prefill,"; done\n'
        f'for _ in "${{decode[@]}}"; do models+="{model},"; labels+="decode,"; done\n'
        'models="${models%,}" labels="${labels%,}"\n'
        f"exec vllm-router {body}\n"
    )


def render(ctx: ExportContext) -> dict[str, str]:
    """One executable script per deployment, named after its Kubernetes object, and one router
    script per split pair."""
    files = {f"{t.name}.sh": _script(ctx, t) for t in ctx.targets}
    files.update({f"{p.name}.router.sh": _router_script(ctx, p) for p in ctx.pairs})
    return files
