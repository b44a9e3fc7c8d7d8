"""Seeded random instances (table mode), for tests and benchmarks.

The instances are small inline documents in the instance format: every figure is drawn from a
``numpy`` generator seeded by the caller, so the same seed always gives the same document. Some
draws make a limit bind on purpose (a tight budget, a GPU limit, an accuracy bound only the
larger models meet, an SLO some entries miss, an allowance to leave demand unserved).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def random_table_instance(
    seed: int,
    n_types: int | None = None,
    n_models: int | None = None,
    n_tiers: int | None = None,
    density: float = 0.7,
) -> dict[str, Any]:
    """A random table-mode instance document (a ``dict`` ready for ``load_instance_data``)."""
    rng = np.random.default_rng(seed)
    n_types = n_types or int(rng.integers(2, 6))
    n_models = n_models or int(rng.integers(2, 5))
    n_tiers = n_tiers or int(rng.integers(2, 5))
    tps = [1, 2, 4]

    models = []
    for m in range(n_models):
        size = float(rng.choice([7.0, 8.0, 13.0, 34.0, 70.0]))
        models.append({"id": f"m{m}", "params_b": size, "weight_bytes": float(rng.choice([2.0, 1.0]))})
    gpus = []
    for g in range(n_tiers):
        spec: dict[str, Any] = {"id": f"g{g}", "price_per_hour": round(float(rng.uniform(0.4, 4.0)), 3)}
        if rng.random() < 0.4:
            spec["available"] = int(rng.integers(2, 24))
        gpus.append(spec)
    types = []
    for i in range(n_types):
        q: dict[str, Any] = {
            "id": f"t{i}",
            "arrival_rate": round(float(rng.uniform(0.2, 12.0)), 3),
            "input_tokens": int(rng.integers(100, 4000)),
            "output_tokens": int(rng.integers(10, 800)),
            "slo": {
                "ttft_s": round(float(rng.uniform(0.5, 3.0)), 3),
                "tpot_s": round(float(rng.uniform(0.03, 0.15)), 4),
            },
        }
        if rng.random() < 0.7:
            q["max_error"] = round(float(rng.uniform(0.18, 0.40)), 3)
        if rng.random() < 0.3:
            q["max_unserved"] = round(float(rng.uniform(0.0, 0.3)), 3)
            q["unserved_penalty"] = round(float(rng.uniform(0.0005, 0.02)), 5)
        if rng.random() < 0.3:
            q["delay_penalty"] = round(float(rng.uniform(1e-6, 1e-4)), 7)
        types.append(q)
    errors = {m["id"]: {q["id"]: round(float(rng.uniform(0.08, 0.45)), 3) for q in types} for m in models}

    def entry(m: dict[str, Any], g: dict[str, Any], tp: int, q: dict[str, Any]) -> dict[str, Any]:
        speed = float(rng.uniform(0.5, 3.0)) * tp / (m["params_b"] / 10)
        ttft = float(rng.uniform(0.1, 1.2)) * q["slo"]["ttft_s"]
        tpot = float(rng.uniform(0.3, 1.1)) * q["slo"]["tpot_s"]
        return {
            "model": m["id"],
            "gpu": g["id"],
            "tp": tp,
            "pp": 1,
            "query_type": q["id"],
            "throughput_rps": round(max(0.05, speed), 4),
            "ttft_s": round(ttft, 4),
            "tpot_s": round(tpot, 5),
            "e2e_s": round(ttft + q["output_tokens"] * tpot, 4),
        }

    perf = [entry(m, g, tp, q) for m in models for g in gpus for tp in tps for q in types if rng.random() <= density]
    if not perf:  # a sparse draw left no entry: a table-mode instance needs one (the loader says so)
        perf.append(entry(models[0], gpus[0], tps[0], types[0]))
    doc: dict[str, Any] = {
        "name": f"random-{seed}",
        "period_hours": float(rng.choice([1.0, 24.0, 168.0])),
        "models": models,
        "gpus": gpus,
        "parallelism": {"tp": tps, "pp": [1]},
        "max_utilization": float(rng.choice([0.7, 0.85, 1.0])),
        "storage_price_per_gb_hour": float(rng.choice([0.0, 0.0, 0.001])),
        "query_types": types,
        "errors": errors,
        "performance_mode": "table",
        "performance": perf,
    }
    if rng.random() < 0.35:
        # A budget between "barely enough" and "plenty", in $ per period, from a rough lower bound.
        per_hour = sum(q["arrival_rate"] for q in types) * 0.5
        doc["budget"] = round(per_hour * doc["period_hours"] * float(rng.uniform(1.0, 4.0)), 2)
    return doc


# Query-type archetypes for paper-shaped instances. Mean lengths are the trace statistics in
# ../shared/data/traces/README.md and ../shared/data/azure/README.md (named per row); SLO ranges
# and error tasks are assumptions of the generator, stated here.
ARCHETYPES: tuple[dict[str, Any], ...] = (
    # id, input, output tokens (source), ttft s, tpot s, e2e s ranges, task for errors
    {
        "id": "chat",
        "in": 2340,
        "out": 439,
        "src": "sharegpt_8k",
        "ttft": (1.0, 3.0),
        "tpot": (0.05, 0.12),
        "task": "mmlu",
    },
    {
        "id": "conv",
        "in": 1155,
        "out": 211,
        "src": "azure conv 2023",
        "ttft": (1.0, 2.5),
        "tpot": (0.05, 0.12),
        "task": "mmlu",
    },
    {
        "id": "code",
        "in": 2048,
        "out": 28,
        "src": "azure code 2023",
        "ttft": (1.5, 4.0),
        "tpot": (0.04, 0.10),
        "task": "humaneval",
    },
    {
        "id": "summarize",
        "in": 2588,
        "out": 291,
        "src": "arxiv_summarization",
        "ttft": (2.0, 6.0),
        "tpot": (0.05, 0.15),
        "task": "mmlu",
    },
    {
        "id": "translate",
        "in": 1067,
        "out": 1613,
        "src": "bwb",
        "ttft": (1.5, 5.0),
        "tpot": (0.04, 0.12),
        "task": "mmlu",
    },
    {
        "id": "math",
        "in": 600,
        "out": 250,
        "src": "assumption",
        "ttft": (1.0, 3.0),
        "tpot": (0.05, 0.15),
        "task": "gsm8k",
    },
    {
        "id": "longqa",
        "in": 8667,
        "out": 338,
        "src": "mooncake conversation, input <= 32k",
        "ttft": (4.0, 12.0),
        "tpot": (0.06, 0.15),
        "task": "mmlu",
    },
)


def _catalog_dir() -> Path:
    from planner.loader import builtin_catalog_dir

    return builtin_catalog_dir()


def _prices_doc() -> dict[str, Any]:
    with open(_catalog_dir() / "prices.yaml", encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


def provider_prices() -> dict[str, dict[str, float]]:
    """$ per GPU-hour by GPU id and provider, from ``models/prices.yaml`` (sources there)."""
    return {g: dict(p) for g, p in _prices_doc()["prices"].items()}


def fleet_tiers(rng: np.random.Generator, n_tiers: int, gpus: set[str]) -> list[dict[str, Any]]:
    """``n_tiers`` tiers drawn from every (GPU, provider, region, on-demand | spot) of
    ``models/prices.yaml`` (its ``fleet`` section says which figures are sourced and which are
    assumptions): region multipliers on the listed price; spot at the listed spot price or a drawn
    fraction of on-demand, always with an availability limit; some on-demand tiers limited."""
    doc = _prices_doc()
    fleet = doc["fleet"]
    combos = []
    for g, by in doc["prices"].items():
        if g not in gpus:
            continue
        for provider, price in by.items():
            for region, mult in fleet["regions"].get(provider, {"default": 1.0}).items():
                for kind in ("on-demand", "spot"):
                    combos.append((g, provider, region, kind, float(price) * float(mult)))
    out = []
    for j in rng.permutation(len(combos))[: min(n_tiers, len(combos))]:
        g, provider, region, kind, price = combos[int(j)]
        tier: dict[str, Any] = {"id": f"{g}-{provider}-{region}" + ("-spot" if kind == "spot" else "")}
        if kind == "spot":
            listed = fleet["spot"]["listed"].get(g, {}).get(provider)
            lo, hi = fleet["spot"]["fraction"]
            spot = float(listed) * price / float(doc["prices"][g][provider]) if listed else price * rng.uniform(lo, hi)
            tier["price_per_hour"] = round(spot, 3)
            tier["available"] = int(rng.choice(fleet["spot"]["available"]))
            src = "listed spot price" if listed else "spot at a drawn fraction of on-demand (assumption)"
        else:
            tier["price_per_hour"] = round(price, 3)
            if rng.random() < float(fleet["on_demand_limited"]):
                tier["available"] = int(rng.choice(fleet["on_demand_available"]))
            src = "on-demand list price × region multiplier"
        tier["price_source"] = f"models/prices.yaml: {g} at {provider} {region}, {src}"
        tier["gpu"] = g
        out.append(tier)
    return out


def paper_instance(
    n_types: int,
    n_models: int,
    n_tiers: int,
    seed: int,
    mode: str = "table",
    tp: tuple[int, ...] = (1, 2, 4, 8),
    fleet: bool = False,
) -> dict[str, Any]:
    """A paper-shaped instance (Cheng & Nguyen's setting) from the catalogs, as a document.

    Types are archetypes of the public traces with jittered lengths, rates and SLOs; models are
    catalog LLMs (beyond the catalog's size, fine-tuned variants with shifted task errors); tiers are
    (GPU, provider) pairs at that provider's listed price. Budgets, availability limits and unserved
    allowances bind on some seeds. In ``table`` mode the performance entries are the performance
    model's figures for every option that fits, perturbed by ±10% as measurements would be.

    ``fleet``: tiers are (GPU, provider, region, on-demand | spot) (:func:`fleet_tiers`), and the
    figures are the hardware's: computed once per (base model, GPU, TP, type) and perturbed once
    per (model, GPU, TP, type), so a GPU's tiers share them (as a measurement would), fine-tunes
    get their own noise, and generating 200 × 40 × 40 takes seconds, not the minutes of one
    model-mode table over every tier.
    """
    from planner.loader import builtin_catalog, load_instance_data
    from planner.options import build_option_table

    rng = np.random.default_rng(seed)
    cat = builtin_catalog()
    base_models = sorted(cat.models)
    chosen = [base_models[j] for j in rng.permutation(len(base_models))[: min(n_models, len(base_models))]]
    models: list[Any] = list(chosen)
    for v in range(n_models - len(chosen)):
        base = base_models[int(rng.integers(len(base_models)))]
        spec = dict(cat.models[base])
        spec["id"] = f"{base}-ft{v + 1}"
        spec["task_errors"] = {
            t: float(np.clip(e * rng.uniform(0.8, 1.15), 0.01, 0.99)) for t, e in spec.get("task_errors", {}).items()
        }
        spec.pop("sources", None)
        models.append(spec)

    gpus: list[dict[str, Any]] = []
    hardware: dict[str, str] = {}  # tier id → GPU catalog id (fleet tiers)
    for tier in fleet_tiers(rng, n_tiers, set(cat.gpus)) if fleet else []:
        hardware[tier["id"]] = tier.pop("gpu")
        gpus.append({**{k: v for k, v in cat.gpus[hardware[tier["id"]]].items() if k not in ("sources",)}, **tier})
    pairs = [(g, p, price) for g, by in provider_prices().items() if g in cat.gpus for p, price in by.items()]
    pick = [] if fleet else rng.permutation(len(pairs))[: min(n_tiers, len(pairs))]
    for j in pick:
        g, p, price = pairs[int(j)]
        tier: dict[str, Any] = {
            "id": f"{g}-{p}",
            **{k: v for k, v in cat.gpus[g].items() if k not in ("id", "sources")},
        }
        tier["price_per_hour"] = price
        tier["price_source"] = f"models/prices.yaml: {g} at {p}"
        if rng.random() < 0.3:
            tier["available"] = int(rng.choice([8, 16, 24, 32, 64]))
        gpus.append(tier)

    types = []
    for i in range(n_types):
        a = ARCHETYPES[i % len(ARCHETYPES)] if i < len(ARCHETYPES) else ARCHETYPES[int(rng.integers(len(ARCHETYPES)))]
        scale = float(rng.uniform(0.6, 1.4))
        q: dict[str, Any] = {
            "id": f"{a['id']}-{i}",
            "arrival_rate": round(float(rng.lognormal(math.log(2.0), 0.8)), 3),
            "input_tokens": max(16, round(a["in"] * scale)),
            "output_tokens": max(4, round(a["out"] * float(rng.uniform(0.6, 1.4)))),
            "slo": {
                "ttft_s": round(float(rng.uniform(*a["ttft"])), 2),
                "tpot_s": round(float(rng.uniform(*a["tpot"])), 3),
            },
            "task": a["task"],
        }
        if rng.random() < 0.25:
            q["max_unserved"] = round(float(rng.uniform(0.01, 0.05)), 3)
            q["unserved_penalty"] = round(float(rng.uniform(0.001, 0.01)), 4)
        types.append(q)

    def task_error(spec: Any, task: str) -> float:
        te = (cat.models[spec] if isinstance(spec, str) else spec).get("task_errors", {})
        return float(te.get(task, te.get("mmlu", 0.5)))

    errors = {}
    for spec in models:
        mid = spec if isinstance(spec, str) else spec["id"]
        errors[mid] = {
            q["id"]: round(float(np.clip(task_error(spec, q["task"]) + rng.normal(0, 0.01), 0.0, 1.0)), 4)
            for q in types
        }
    for q in types:
        column = sorted(errors[m][q["id"]] for m in errors)
        # Between the best and the median model: accuracy binds without being out of reach.
        q["max_error"] = round(float(rng.uniform(column[0] + 0.01, column[len(column) // 2] + 0.02)), 4)
        q.pop("task")

    doc: dict[str, Any] = {
        "name": f"paper-{n_types}x{n_models}x{n_tiers}-s{seed}",
        "period_hours": 24.0,
        "models": models,
        "gpus": gpus,
        "parallelism": {"tp": list(tp), "pp": [1]},
        "max_utilization": 0.85,
        "storage_price_per_gb_hour": 0.0001,
        "query_types": types,
        "errors": errors,
        "performance_mode": "model",
        # The paper's semantics: SLOs bound mean latencies (attainment targets: planner.capacity).
        "slo_attainment": "mean",
    }
    if fleet:
        doc["name"] = f"fleet-{n_types}x{n_models}x{n_tiers}-s{seed}"
        if mode == "table":
            return _fleet_table(doc, rng, hardware, cat)
    inst = load_instance_data(doc, f"{doc['name']}.yaml")
    table = build_option_table(inst)
    if mode == "table":
        entries = []
        for r in table.rows:
            if not r.candidate or r.throughput_rps is None:
                continue
            noise = rng.uniform(0.9, 1.1, size=4)
            entries.append(
                {
                    "model": r.option.model,
                    "gpu": r.option.gpu,
                    "tp": r.option.tp,
                    "pp": r.option.pp,
                    "query_type": r.query_type,
                    "throughput_rps": round(float(r.throughput_rps * noise[0]), 5),
                    "ttft_s": round(float(r.ttft_s * noise[1]), 5),
                    "tpot_s": round(float(r.tpot_s * noise[2]), 6),
                    "e2e_s": round(float(r.e2e_s * noise[3]), 4),
                }
            )
        _to_table_mode(doc, entries, cat)
    if rng.random() < 0.4 and table.pairs:
        # A budget around what a good plan spends (rental + storage of a slope-scaling plan), so it
        # sometimes binds (forcing unserved allowances or dearer-but-smaller plans) and rarely
        # makes the instance infeasible.
        from planner.heuristics.fluid import slope_scaling
        from planner.heuristics.state import Data

        plan = slope_scaling(Data.from_table(table))
        if plan is not None:
            doc["budget"] = round(plan.spend * float(rng.uniform(0.95, 1.6)), 2)
    return doc


def _fleet_table(doc: dict[str, Any], rng: np.random.Generator, hardware: dict[str, str], cat: Any) -> dict[str, Any]:
    """The table-mode form of a fleet document (:func:`paper_instance` with ``fleet``): the
    performance model runs once per (base model, GPU, TP, type) on a hardware-only instance."""
    from planner.heuristics.fluid import slope_scaling
    from planner.heuristics.state import Data
    from planner.loader import load_instance_data
    from planner.options import build_option_table

    models = doc["models"]
    base_of = {(m if isinstance(m, str) else m["id"]): (m if isinstance(m, str) else m["id"].rsplit("-ft", 1)[0])
               for m in models}  # fmt: skip
    bases = sorted(set(base_of.values()))
    hw_doc = {
        **doc,
        "name": doc["name"] + "-hardware",
        "models": bases,
        "gpus": sorted(set(hardware.values())),
        "errors": {b: doc["errors"].get(b, next(iter(doc["errors"].values()))) for b in bases},
    }
    hw = build_option_table(load_instance_data(hw_doc, f"{hw_doc['name']}.yaml"))
    by_base: dict[str, list[Any]] = {}
    for r in hw.rows:
        if r.candidate and r.throughput_rps is not None:
            by_base.setdefault(r.option.model, []).append(r)
    tiers_of: dict[str, list[str]] = {}
    for tier, g in hardware.items():
        tiers_of.setdefault(g, []).append(tier)
    entries = []
    for m, base in base_of.items():
        rows = by_base.get(base, [])
        noise = rng.uniform(0.9, 1.1, size=(len(rows), 4))  # one measurement per (model, GPU, TP, type)
        for r, f in zip(rows, noise, strict=True):
            figures = {
                "throughput_rps": round(float(r.throughput_rps * f[0]), 5),
                "ttft_s": round(float(r.ttft_s * f[1]), 5),
                "tpot_s": round(float(r.tpot_s * f[2]), 6),
                "e2e_s": round(float(r.e2e_s * f[3]), 4),
            }
            for tier in tiers_of[r.option.gpu]:
                entries.append(
                    {"model": m, "gpu": tier, "tp": r.option.tp, "pp": r.option.pp, "query_type": r.query_type,
                     **figures}
                )  # fmt: skip
    _to_table_mode(doc, entries, cat, keep=("price_source",))
    doc.pop("slo_attainment", None)
    if rng.random() < 0.4:
        # A budget around what a good plan spends, as in the paper-shaped families.
        table = build_option_table(load_instance_data(doc, f"{doc['name']}.yaml"))
        plan = slope_scaling(Data.from_table(table)) if table.pairs else None
        if plan is not None:
            doc["budget"] = round(plan.spend * float(rng.uniform(0.95, 1.6)), 2)
    return doc


def _to_table_mode(doc: dict[str, Any], entries: list[dict[str, Any]], cat: Any, keep: tuple[str, ...] = ()) -> None:
    """Turn ``doc`` into table mode with ``entries``. Table mode needs no hardware figures: the
    models keep their size (storage), the tiers their price and limit (and the ``keep`` keys), so
    the documents stay small and self-contained."""
    doc["performance_mode"] = "table"
    doc["performance"] = entries
    doc["models"] = [
        {
            "id": m if isinstance(m, str) else m["id"],
            "params_b": (cat.models[m] if isinstance(m, str) else m)["params_b"],
            "weight_bytes": (cat.models[m] if isinstance(m, str) else m).get("weight_bytes", 2),
        }
        for m in doc["models"]
    ]
    doc["gpus"] = [
        {
            "id": g["id"],
            "price_per_hour": g["price_per_hour"],
            **{k: g[k] for k in keep if k in g},
            **({"available": g["available"]} if "available" in g else {}),
        }
        for g in doc["gpus"]
    ]
