"""From a checked plan to concrete serving targets: one :class:`Target` per deployment.

Everything the four exporters share lives here, so a Deployment, its Service, its vLLM script, its
Helm entry and its router weights can never disagree about a name, a port or a flag value:

* the vLLM version every artefact targets (:data:`VLLM_VERSION`) and the images it implies;
* naming: Kubernetes object names (DNS-1035 labels) and label values, sanitized from plan ids such
  as ``qwen2.5-7b`` and made unique across the plan;
* the per-deployment serving figures: the planned batch (``--max-num-seqs``), the context that
  fits the planned KV cache (``--max-model-len``), the token budget (``--max-num-batched-tokens``:
  the deployment's ``max_num_batched_tokens`` when the planner chose one, else the instance's
  ``performance_params.prefill_chunk_tokens``), GPUs per pod and nodes per replica;
* pools: a plan may deploy one (model, gpu, tp, pp) several times with different token budgets;
  each is its own pool, and the objects of a pool with a chosen budget carry ``-mbt<N>`` in their
  names (plans without budgets keep the names they always had);
* validation: a plan is exported only when :func:`planner.checker.check_plan` accepts it against
  the instance; without an instance (router only) the plan is checked for internal consistency.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

from planner.checker import check_plan
from planner.errors import InputError
from planner.options import Option, OptionTable, build_option_table
from planner.plan import Plan
from planner.problem import GPU, LLM, Instance

# vLLM release every artefact targets. Each flag the exporters emit was checked against vLLM's own
# argument definitions (vllm/engine/arg_utils.py, vllm/config/parallel.py,
# vllm/entrypoints/openai/cli_args.py, vllm/entrypoints/cli/serve.py); see planner/export/vllm.py.
VLLM_VERSION = "0.30.0"
IMAGE_TAG = f"v{VLLM_VERSION}"  # Docker Hub tags carry a leading "v" (vllm/vllm-openai:v0.30.0)
IMAGE_REPOSITORY = "vllm/vllm-openai"  # CUDA image; its entrypoint is `vllm serve`
IMAGE_REPOSITORY_ROCM = "vllm/vllm-openai-rocm"  # the same release built for AMD GPUs (ROCm)
PORT = 8000  # vLLM's default --port; every Service, probe and router entry uses it
RAY_PORT = 6379  # Ray head port of multi-node replicas (Ray's default, as in the LWS vLLM example)
# Split prefill/decode pairs (planner.disaggregation). The KV cache moves with vLLM's NIXL connector
# (docs/features/nixl_connector_usage.md): each server's --kv-transfer-config names the connector
# and its role (vllm/config/kv_transfer.py: KVRole is kv_producer | kv_consumer | kv_both), and
# the decode server pulls the prompt's blocks from the prefill server's side channel, announced
# by VLLM_NIXL_SIDE_CHANNEL_HOST/PORT (default port 5600).
KV_CONNECTOR = "NixlConnector"
KV_ROLES = {"prefill": "kv_producer", "decode": "kv_consumer"}
NIXL_SIDE_CHANNEL_PORT = 5600
# A pair's router: vLLM production-stack's router (vllm-project/production-stack, console script
# `vllm-router`, the image's ENTRYPOINT) with routing logic disaggregated_prefill_orchestrated
# (added in #777, first released in chart vllm-stack-0.1.11): it sends each request to a prefill
# server with max_tokens=1, takes the kv_transfer_params of the answer, sets their remote_host
# to that prefill endpoint's host and streams the decode server's answer to the client (the flow
# the simulator prices: planner.sim.engine). The image tag is the release's version, which the
# project's build derives from its tag vllm-stack-<version> (setuptools_scm).
ROUTER_IMAGE = "lmcache/lmstack-router:0.1.12"
ROUTER_PORT = 8000

NVIDIA_GPU_RESOURCE = "nvidia.com/gpu"
AMD_GPU_RESOURCE = "amd.com/gpu"

K8S_NAME_MAX = 45  # leaves room for the suffixes controllers add (pod hash, LWS "-<group>-<worker>")
HELM_NAME_MAX = 34  # the chart's "<release>-<name>-engine-service" must fit 63: releases up to 8 chars
LABEL_VALUE_MAX = 63
_FRACTION_TOL = 1e-6


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def dns_label(text: str, max_len: int = K8S_NAME_MAX) -> str:
    """A DNS-1035 label (``[a-z]([-a-z0-9]*[a-z0-9])?``) derived from ``text``.

    Object names of Services must be DNS-1035 labels; ids like ``qwen2.5-7b`` or ``h100-80gb``
    contain dots. Too-long names are cut and get a hash of the full text, so they stay unique.
    """
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")
    if not s or not s[0].isalpha():
        s = f"x-{s}".rstrip("-")
    if len(s) > max_len:
        s = s[: max_len - 7].rstrip("-") + "-" + _digest(text)
    return s


def label_value(text: str) -> str:
    """A valid Kubernetes label value: ≤ 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("._-")
    if len(s) > LABEL_VALUE_MAX:
        s = s[: LABEL_VALUE_MAX - 7].rstrip("._-") + "-" + _digest(text)
    return s or "none"


def is_amd(gpu: GPU | None) -> bool:
    """AMD tiers need ``amd.com/gpu`` and the ROCm image; the catalog marks them by their selector."""
    if gpu is None:
        return False
    if any(k.startswith("amd.com/") for k in gpu.k8s_node_selector):
        return True
    return re.match(r"^mi\d", gpu.id.lower()) is not None


def nodes_per_replica(gpus: int, gpus_per_node: int) -> int:
    """Fewest nodes that hold ``gpus`` GPUs in equal shares (every pod of a replica asks the same)."""
    n = max(1, math.ceil(gpus / gpus_per_node))
    while gpus % n:
        n += 1
    return n


@dataclass(frozen=True)
class Target:
    """One deployment of the plan, resolved into what a serving stack needs."""

    option: Option
    replicas: int
    name: str  # Kubernetes object / Service / script name (DNS-1035, unique in the plan)
    short_name: str  # Helm modelSpec name: the chart prefixes the release and suffixes words
    model: LLM | None = None
    gpu: GPU | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    # vLLM's max_num_batched_tokens: the option's chosen budget, else prefill_chunk_tokens (None
    # without an instance: the router needs no engine settings).
    max_num_batched_tokens: int | None = None
    gpus_per_node: int = 8
    port: int = PORT
    pair_name: str | None = None  # a split pool's pair router (its Service and scripts' name)

    @property
    def role(self) -> str | None:
        """``prefill`` or ``decode`` for a split pair's pool, None for a colocated one."""
        return self.option.role or None

    @property
    def kv_role(self) -> str | None:
        """vLLM's kv_role of a split pool's server (:data:`KV_ROLES`)."""
        return None if self.role is None else KV_ROLES[self.role]

    @property
    def budget(self) -> int | None:
        """The token budget the plan chose for this pool (None: not chosen, the instance's applies)."""
        return self.option.budget

    @property
    def served_model_name(self) -> str:
        """The name clients send in ``"model"``: the planner's model id, shared by every tier."""
        return self.option.model

    @property
    def hf_id(self) -> str:
        assert self.model is not None and self.model.hf_id is not None
        return self.model.hf_id

    @property
    def gpus_per_replica(self) -> int:
        return self.option.gpus_per_replica

    @property
    def nodes(self) -> int:
        return nodes_per_replica(self.gpus_per_replica, self.gpus_per_node)

    @property
    def multi_node(self) -> bool:
        """A replica needing more GPUs than one node holds runs on several pods (Ray + LWS)."""
        return self.gpus_per_replica > self.gpus_per_node

    @property
    def gpus_per_pod(self) -> int:
        return self.gpus_per_replica // self.nodes

    @property
    def gpu_resource(self) -> str:
        return AMD_GPU_RESOURCE if is_amd(self.gpu) else NVIDIA_GPU_RESOURCE

    @property
    def image_repository(self) -> str:
        return IMAGE_REPOSITORY_ROCM if is_amd(self.gpu) else IMAGE_REPOSITORY

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{IMAGE_TAG}"

    @property
    def weights_gb_per_pod(self) -> float:
        return 0.0 if self.model is None else self.model.weights_gb / self.nodes

    @property
    def cpu_request(self) -> int:
        """CPUs per pod: tokenization, detokenization and one worker process per GPU."""
        return max(4, 4 * self.gpus_per_pod)

    @property
    def memory_request_gi(self) -> int:
        """Host memory per pod: the weights pass through page cache while loading, plus headroom.

        A request (not a limit) keeps the scheduler off nodes that could not load the model and
        keeps the pod out of the BestEffort class that is evicted first.
        """
        return max(16, math.ceil(1.25 * self.weights_gb_per_pod) + 8)

    @property
    def storage_gi(self) -> int:
        """Disk for the downloaded checkpoint (Helm ``pvcStorage``): weights plus 20 % and 10 Gi."""
        weights = 0.0 if self.model is None else self.model.weights_gb
        return math.ceil(1.2 * weights) + 10

    @property
    def startup_seconds(self) -> int:
        """Time allowed for download and load before the first /health: 8 s per GB, 10 min to 2 h."""
        weights = 0.0 if self.model is None else self.model.weights_gb
        return int(min(7200, max(600, 300 + 8 * weights)))


@dataclass(frozen=True)
class PairTarget:
    """A split pair's two pools and the router that sends each request to one, then the other."""

    pair: str  # the plan's pair id (planner.disaggregation.SplitPair.key)
    name: str  # the pair router's Deployment, Service and script name (DNS-1035, unique)
    prefill: Target
    decode: Target
    port: int = ROUTER_PORT

    @property
    def served_model_name(self) -> str:
        return self.prefill.served_model_name


@dataclass
class ExportContext:
    """A validated plan with its targets and routing, ready for any exporter. Routing names a
    split pair by its prefill pool's target; ``pair_of`` gives the pair behind it."""

    plan: Plan
    instance: Instance | None
    targets: list[Target]
    routing: dict[str, list[tuple[Target, float]]] = field(default_factory=dict)
    unserved: dict[str, float] = field(default_factory=dict)
    pairs: list[PairTarget] = field(default_factory=list)

    def pair_of(self, t: Target) -> PairTarget | None:
        return next((p for p in self.pairs if t in (p.prefill, p.decode)), None)

    def target(self, option: Option) -> Target | None:
        return next((t for t in self.targets if t.option == option), None)


def _names(options: list[Option]) -> tuple[dict[Option, str], dict[Option, str]]:
    """Unique Kubernetes names and Helm names; a clash after sanitizing adds a hash to both.

    An option with a chosen token budget gets ``-mbt<N>``, so two pools of one (model, gpu, tp,
    pp) that differ only by budget get distinct names; an option without one keeps the old name.
    A split pair's pools end in ``-prefill`` / ``-decode``.
    """

    def build(fmt: str, max_len: int) -> dict[Option, str]:
        raw, names, suffixes = {}, {}, {}
        for o in options:
            base = fmt.format(m=o.model, g=o.gpu, t=o.tp, p=o.pp)
            suffixes[o] = suffix = ("" if o.budget is None else f"-mbt{o.budget}") + (f"-{o.role}" if o.role else "")
            raw[o] = base + suffix + (o.pair or "")  # two pairs may share one pool configuration
            # A long base is cut (and hashed) before the suffix, which stays readable.
            names[o] = dns_label(base, max_len - len(suffix)) + suffix
        counts: dict[str, int] = {}
        for n in names.values():
            counts[n] = counts.get(n, 0) + 1
        for o, n in names.items():
            if counts[n] > 1:
                suffix = suffixes[o]
                keep = max_len - 7 - len(suffix)
                head = n[: len(n) - len(suffix)][:keep]
                names[o] = dns_label(head, keep).rstrip("-") + "-" + _digest(raw[o]) + suffix
        return names

    # Helm: the chart builds "<release>-<name>-engine-service" and a pod hostname
    # "<release>-<name>-vllm-stack"; both must stay within 63 characters.
    return build("vllm-{m}-{g}-tp{t}-pp{p}", K8S_NAME_MAX), build("{m}-{g}-tp{t}-pp{p}", HELM_NAME_MAX)


def _pair_names(pairs: list[tuple[str, Option, Option]]) -> dict[str, str]:
    """The router name of each pair id: both pools' configurations (a name too long for a label
    is cut and hashed on the full text, so pairs never share one)."""
    return {
        pair: dns_label(f"pd-{p.model}-{p.gpu}-tp{p.tp}-pp{p.pp}-{d.gpu}-tp{d.tp}-pp{d.pp}") for pair, p, d in pairs
    }


def _plan_label(plan_label: str | None) -> str:
    return plan_label or "<plan>"


def _check_against_instance(plan: Plan, inst: Instance, table: OptionTable, plan_label: str | None) -> None:
    """The plan must be for this instance and satisfy every constraint of it (check_plan)."""
    if plan.instance != inst.name:
        raise InputError(
            _plan_label(plan_label),
            "instance",
            f"plan is for instance {plan.instance!r} but the instance given is {inst.name!r}: "
            "they do not belong together",
        )
    report = check_plan(inst, plan, table)
    if report.ok:
        return
    first = report.violations[0]
    more = f" (+{len(report.violations) - 1} more)" if len(report.violations) > 1 else ""
    field_name = "status" if first.family == "status" else "-"
    raise InputError(
        _plan_label(plan_label),
        field_name,
        f"check_plan rejects the plan against instance {inst.name!r}: {first}{more}; nothing exported",
    )


def _check_alone(plan: Plan, plan_label: str | None) -> None:
    """Without an instance: a solution, consistent deployments, and routing that adds up."""
    label = _plan_label(plan_label)
    if not plan.has_solution:
        raise InputError(label, "status", f"plan has status {plan.status!r}: it holds no deployments to export")
    seen: set[Option] = set()  # the budget is part of an option: one option at two budgets is two pools
    for n, d in enumerate(plan.deployments):
        if d.option in seen:
            raise InputError(label, f"deployments[{n}]", f"deployment {d.option.key} is listed twice")
        seen.add(d.option)
        if d.gpus != d.replicas * d.option.gpus_per_replica:
            raise InputError(label, f"deployments[{n}].gpus", f"{d.gpus} != replicas × tp·pp")
    deployed = {d.option for d in plan.deployments if d.replicas > 0}
    for t, shares in plan.routing.items():
        total = 0.0
        for n, s in enumerate(shares):
            if s.fraction < -_FRACTION_TOL or s.fraction > 1 + _FRACTION_TOL:
                raise InputError(label, f"routing.{t}[{n}].fraction", "must be in [0, 1]")
            if s.fraction > _FRACTION_TOL and s.option not in deployed:
                raise InputError(label, f"routing.{t}[{n}]", f"routes to {s.option.key}, which has no deployment")
            total += s.fraction
        un = plan.unserved.get(t, 0.0)
        if abs(total + un - 1.0) > 1e-4:
            raise InputError(label, f"routing.{t}", f"fractions {total:.6g} + unserved {un:.6g} do not add up to 1")


def _planned_batch(option: Option, plan: Plan, table: OptionTable, inst: Instance) -> int:
    """Largest planned micro-batch over the query types routed to ``option`` (performance model).

    In table mode the rows carry no batch; the performance model's cap (max_num_seqs) is used.
    """
    batches = []
    for t, shares in plan.routing.items():
        if any(s.option == option and s.fraction > 0 for s in shares):
            row = table.row(option, t)
            if row is not None and row.batch:
                batches.append(row.batch)
    return max(batches) if batches else inst.performance_params.max_num_seqs


def _context_length(option: Option, model: LLM, plan: Plan, table: OptionTable, inst: Instance) -> int | None:
    """``--max-model-len``: the model's context, cut to what the planned KV cache holds.

    vLLM refuses to start when one sequence of max-model-len tokens does not fit its KV cache
    (e.g. a 128k-context 8B model on a 24 GB L4), so the value is min(context, KV capacity),
    rounded down to 256 tokens, but never below the longest request routed here.
    """
    kv = [r.kv_capacity_tokens for r in table.rows_of(option) if r.kv_capacity_tokens]
    limits = [x for x in (model.max_context_tokens, min(kv) - min(kv) % 256 if kv and min(kv) >= 256 else None) if x]
    if not limits:
        return None
    types = {q.id: q for q in inst.query_types}
    if option.role == "decode":  # routing names a split pair by its prefill pool
        option = next(d.option for d in plan.deployments if d.role == "prefill" and d.pair == option.pair)
    need = [
        math.ceil(types[t].input_tokens + types[t].output_tokens)
        for t, shares in plan.routing.items()
        if t in types and any(s.option == option and s.fraction > 0 for s in shares)
    ]
    return max([min(limits), *need])


def build_context(
    plan: Plan,
    inst: Instance | None,
    *,
    need_instance: bool,
    plan_label: str | None = None,
    instance_label: str | None = None,
    table: OptionTable | None = None,
) -> ExportContext:
    """Validate ``plan`` (against ``inst`` when given) and resolve one target per deployment.

    ``table`` is ``inst``'s option table when the caller has one (``planner solve`` does);
    otherwise it is built here. Raises :class:`InputError` when the plan is rejected, when plan
    and instance do not belong together, when an instance is needed but missing, or when a
    deployed model has no ``hf_id``.
    """
    if inst is None and need_instance:
        raise InputError(None, "--instance", "is required for this format: hf_id, node selectors come from it")
    if inst is not None:
        if table is None or table.instance is not inst:
            table = build_option_table(inst)
        _check_against_instance(plan, inst, table, plan_label)
    else:
        _check_alone(plan, plan_label)
    deployments = [d for d in plan.deployments if d.replicas > 0]
    names, short = _names([d.option for d in deployments])
    pools = {(d.option.pair, d.option.role): d.option for d in deployments if d.option.role}
    pair_ids = sorted({pair for pair, _ in pools})
    for pair in pair_ids:  # the checker accepts no lone pool; a plan without an instance may hold one
        for role in ("prefill", "decode"):
            if (pair, role) not in pools:
                raise InputError(_plan_label(plan_label), "deployments", f"split pair {pair} has no {role} replicas")
    pair_names = _pair_names([(pair, pools[pair, "prefill"], pools[pair, "decode"]) for pair in pair_ids])
    targets: list[Target] = []
    for d in deployments:
        o = d.option
        pair_name = pair_names[o.pair] if o.role else None
        if inst is None or table is None:
            targets.append(Target(o, d.replicas, names[o], short[o], pair_name=pair_name))
            continue
        budget = o.budget if o.budget is not None else inst.performance_params.prefill_chunk_tokens
        batch = d.max_num_seqs if d.max_num_seqs is not None else _planned_batch(o, plan, table, inst)
        model_idx = next(i for i, m in enumerate(inst.models) if m.id == o.model)
        model, gpu = inst.models[model_idx], inst.gpu(o.gpu)
        if need_instance and not model.hf_id:
            raise InputError(
                instance_label or inst.name,
                f"models[{model_idx}].hf_id",
                f"model {model.id!r} is deployed but has no hf_id (the Hugging Face repository vLLM serves)",
            )
        targets.append(
            Target(
                option=o,
                replicas=d.replicas,
                name=names[o],
                short_name=short[o],
                model=model,
                gpu=gpu,
                # vLLM refuses max_num_seqs > max_num_batched_tokens (SchedulerConfig): every running
                # sequence takes at least one token of the budget, so no more can advance in one iteration.
                max_num_seqs=min(batch, budget),
                max_model_len=_context_length(o, model, plan, table, inst),
                gpu_memory_utilization=inst.performance_params.gpu_memory_utilization,
                max_num_batched_tokens=budget,
                gpus_per_node=gpu.gpus_per_node,
                pair_name=pair_name,
            )
        )

    by_option = {t.option: t for t in targets}
    order = [q.id for q in inst.query_types] if inst is not None else list(plan.routing)
    order += [t for t in plan.routing if t not in order]
    routing: dict[str, list[tuple[Target, float]]] = {}
    for t in order:
        merged: dict[Option, float] = {}
        for s in plan.routing.get(t, []):
            merged[s.option] = merged.get(s.option, 0.0) + s.fraction
        shares = []
        for o, frac in merged.items():
            if frac <= 0:
                continue
            if o not in by_option:
                if frac <= _FRACTION_TOL:  # solver round-off on an option with no replica
                    continue
                raise InputError(_plan_label(plan_label), f"routing.{t}", f"routes to {o.key}, which has no replica")
            shares.append((by_option[o], frac))
        routing[t] = shares
    unserved = {t: float(plan.unserved.get(t, 0.0)) for t in order}
    pairs = [
        PairTarget(pair, pair_names[pair], by_option[pools[pair, "prefill"]], by_option[pools[pair, "decode"]])
        for pair in pair_ids
    ]
    return ExportContext(plan=plan, instance=inst, targets=targets, routing=routing, unserved=unserved, pairs=pairs)
