"""``--format router``: per query type, the weighted backends the plan routes it to.

Two files:

* ``router.json``: ``{query_type: [{service, port, model, weight, fraction}]}`` for any router
  that can pick a backend by weight (``fraction`` is the plan's exact x[i,k]); an entry of a pool
  whose token budget the planner chose also has ``max_num_batched_tokens``, and its ``service``
  is that pool's own Service (``-mbt<N>``), so one option at two budgets gets two backends;
* ``httproute.yaml``: a Gateway API ``HTTPRoute`` (gateway.networking.k8s.io/v1) with one rule
  per query type, matched on the ``x-query-type`` request header, whose weighted ``backendRefs``
  are the Services written by ``--format k8s``.

Weights are integers out of :data:`WEIGHT_SCALE` (parts per million, the largest weight the
Gateway API allows), rounded by largest remainder so they sum to round(served share · 10⁶);
a backend whose weight rounds to 0 is dropped.

The unserved share u[i] is **not routed**. A gateway sends every matching request to some
backend in proportion to the weights, so the weights only fix the split between the served
backends; shedding u[i] takes admission control in front of the gateway. The unserved fractions
are recorded in the ``planner.io/unserved`` annotation, and a type with no served backend gets
no rule (its requests find no match and get a 404).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from planner.errors import InputError
from planner.export.resolve import ExportContext, Target, dns_label, label_value
from planner.export.yamlout import dump_all

WEIGHT_SCALE = 1_000_000  # Gateway API: backendRef weight is an int32 in [0, 1000000]
QUERY_TYPE_HEADER = "x-query-type"
DEFAULT_GATEWAY = "inference-gateway"
MAX_RULES = 16  # Gateway API: at most 16 rules per HTTPRoute
MAX_BACKENDS = 16  # Gateway API: at most 16 backendRefs per rule
# parentRefs[].name is a Gateway API ObjectName: a DNS-1123 subdomain of at most 253 characters.
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_gateway(name: str, option: str = "--gateway") -> str:
    """``name`` if it can name a Gateway in an HTTPRoute's parentRefs; else an InputError (the API
    server would reject the HTTPRoute, so nothing is written)."""
    if len(name) > 253 or _DNS1123_SUBDOMAIN.fullmatch(name) is None:
        raise InputError(
            None,
            option,
            f"{name!r} is not a Gateway name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters), in the HTTPRoute's namespace",
        )
    return name


def integer_weights(fractions: list[float], scale: int = WEIGHT_SCALE) -> list[int]:
    """Largest-remainder rounding of ``fractions · scale``: the sum of weights is exact."""
    raw = [max(0.0, f) * scale for f in fractions]
    base = [math.floor(r) for r in raw]
    total = min(scale, round(sum(raw)))
    order = sorted(range(len(raw)), key=lambda i: (raw[i] - base[i], -i), reverse=True)
    for i in order[: max(0, total - sum(base))]:
        base[i] += 1
    return base


def _entry(ctx: ExportContext, t: Target, fraction: float, weight: int) -> dict[str, Any]:
    pair = ctx.pair_of(t)
    if pair is not None:  # a split pair: its router's Service, which sends prefill then decode
        e: dict[str, Any] = {"service": pair.name, "port": pair.port, "model": t.served_model_name}
        e.update(pair=pair.pair, prefill_service=pair.prefill.name, decode_service=pair.decode.name)
    else:
        e = {"service": t.name, "port": t.port, "model": t.served_model_name}
    if t.budget is not None:  # one option at several budgets is several pools, each its own Service
        e["max_num_batched_tokens"] = t.budget
    e["weight"] = weight
    e["fraction"] = fraction
    return e


def table(ctx: ExportContext) -> dict[str, list[dict[str, Any]]]:
    """``router.json``: for each query type its backends, weights and exact fractions (a split
    pair's backend is its pair router, with its two pools' Services named beside it)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for qt, shares in ctx.routing.items():
        weights = integer_weights([f for _, f in shares])
        out[qt] = [_entry(ctx, t, f, w) for (t, f), w in zip(shares, weights, strict=True) if w > 0]
    return out


def _rule_names(types: list[str]) -> dict[str, str]:
    """Rule names are Gateway API SectionNames (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``), unique per route."""
    names = {}
    for qt in types:
        s = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", qt.lower())).strip("-")[:56] or "type"
        if s in names.values():
            s = f"{s}-{hashlib.sha1(qt.encode()).hexdigest()[:6]}"
        names[qt] = s
    return names


def http_routes(ctx: ExportContext, gateway: str = DEFAULT_GATEWAY) -> list[dict[str, Any]]:
    """HTTPRoute objects, at most 16 rules each (the API's limit), one rule per served type.

    No object at all when nothing is served: a route without rules would match every request.
    """
    routes_table = table(ctx)
    rule_names = _rule_names(list(routes_table))
    rules = []
    for qt, entries in routes_table.items():
        if not entries:
            continue
        if len(entries) > MAX_BACKENDS:
            raise InputError(
                None, f"routing.{qt}", f"routes to {len(entries)} backends; HTTPRoute allows {MAX_BACKENDS}"
            )
        rules.append(
            {
                "name": rule_names[qt],
                "matches": [
                    {
                        "path": {"type": "PathPrefix", "value": "/"},
                        "headers": [{"type": "Exact", "name": QUERY_TYPE_HEADER, "value": qt}],
                    }
                ],
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": e["service"], "port": e["port"], "weight": e["weight"]}
                    for e in entries
                ],
            }
        )
    chunks = [rules[i : i + MAX_RULES] for i in range(0, len(rules), MAX_RULES)]
    base = dns_label(f"planner-{ctx.plan.instance}", 56)
    objs = []
    for n, chunk in enumerate(chunks):
        name = base if len(chunks) == 1 else f"{base}-{n}"
        obj: dict[str, Any] = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/managed-by": "planner",
                    "planner.io/instance": label_value(ctx.plan.instance),
                },
                "annotations": {
                    "planner.io/weight-scale": str(WEIGHT_SCALE),
                    "planner.io/query-type-header": QUERY_TYPE_HEADER,
                    "planner.io/unserved": json.dumps(ctx.unserved, sort_keys=True),
                },
            },
            "spec": {"parentRefs": [{"name": gateway}], "rules": chunk},
        }
        objs.append(obj)
    return objs


def render(ctx: ExportContext, gateway: str = DEFAULT_GATEWAY) -> dict[str, str]:
    check_gateway(gateway)
    header = (
        f"# Generated by `planner export --format router` from the plan of instance {ctx.plan.instance}.\n"
        f"# Requests carry the header `{QUERY_TYPE_HEADER}: <query type>`; weights are parts per million of\n"
        "# the type's traffic. The unserved share is not routed (see the planner.io/unserved annotation).\n"
    )
    routes = http_routes(ctx, gateway)
    body = dump_all(routes) if routes else "# No query type is served: there is nothing to route.\n"
    return {"router.json": json.dumps(table(ctx), indent=2) + "\n", "httproute.yaml": header + body}
