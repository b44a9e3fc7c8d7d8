"""Seeded random instances (table mode), for tests and benchmarks.

The instances are small inline documents in the instance format: every figure is drawn from a
``numpy`` generator seeded by the caller, so the same seed always gives the same document. Some
draws make a limit bind on purpose (a tight budget, a GPU limit, an accuracy bound only the
larger models meet, an SLO some entries miss, an allowance to leave demand unserved).
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
    perf = []
    for m in models:
        for g in gpus:
            for tp in tps:
                for q in types:
                    if rng.random() > density:
                        continue
                    speed = float(rng.uniform(0.5, 3.0)) * tp / (m["params_b"] / 10)
                    ttft = float(rng.uniform(0.1, 1.2)) * q["slo"]["ttft_s"]
                    tpot = float(rng.uniform(0.3, 1.1)) * q["slo"]["tpot_s"]
                    perf.append(
                        {
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
                    )
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
