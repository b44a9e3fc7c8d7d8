"""Simulator speed of one checkout, for A/B comparisons run side by side (one core each):

    git worktree add /tmp/old <commit>
    taskset -c 0 python benchmarks/sim_speed_ab.py /tmp/old & taskset -c 1 python benchmarks/sim_speed_ab.py .

Prints, for the azure-2023 plan under mean-latency SLOs (the same plan on both sides), the best of
three `Simulator.run` wall times on the Azure conv trace per policy, and one 100k-request synthetic
stream through 13 replicas (jsq). Both runs at once share the machine's state, so the ratio is fair
where absolute times are not.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any


def main(root: Path) -> list[tuple[str, float, int]]:
    sys.path.insert(0, str(root))
    mod: dict[str, Any] = {
        name: importlib.import_module(f"planner.{name}")
        for name in ("loader", "options", "solvers", "sim.cli", "sim.cluster", "sim.engine", "sim.mapping")
    }
    mod["scale"] = importlib.import_module("planner.sim.scale")
    mod["traces"] = importlib.import_module("planner.sim.traces")
    assert mod["loader"].__file__.startswith(str(root)), mod["loader"].__file__
    inst = mod["loader"].load_instance(root / "instances" / "azure-2023.yaml")
    if hasattr(inst, "slo_attainment"):
        inst = inst.model_copy(update={"slo_attainment": "mean"})
    table = mod["options"].build_option_table(inst)
    plan = mod["solvers"].solve(inst, "milp", table=table)
    mapper = mod["sim.mapping"].TypeMapper.from_file(root / "instances" / "azure-2023.traces.yml", inst)
    conv = root.parent / "shared" / "data" / "azure" / "AzureLLMInferenceTrace_conv.csv"
    if not conv.is_file():
        conv = Path(__file__).resolve().parents[2] / "shared" / "data" / "azure" / "AzureLLMInferenceTrace_conv.csv"
    reqs = mod["scale"].Requests.collect(mod["sim.cli"].feed_of(mod["traces"].Trace([conv]), mapper))
    config = mod["sim.engine"].SimConfig
    out = []
    for policy in ("round-robin", "jsq", "aladdin"):
        best = float("inf")
        for _ in range(3):
            sim = mod["sim.cluster"].simulator_for_plan(inst, plan, config(policy=policy))
            t = time.perf_counter()
            sim.run(reqs.feed())
            best = min(best, time.perf_counter() - t)
        out.append((policy, round(best, 3), sim.n_events))
    option = mod["sim.cluster"].parse_option("llama-3.1-8b/h100-80gb/1/1")
    sim = mod["sim.cluster"].simulator_for_option(inst, option, 13, config(policy="jsq"), [1])
    stream = mod["traces"].synthetic_trace(100000, 200.0, 0)
    feed = ((k, 1, r.arrival_s, r.input_tokens, r.output_tokens) for k, r in enumerate(stream))
    t = time.perf_counter()
    sim.run(feed)
    out.append(("100k synthetic, jsq, 13 replicas", round(time.perf_counter() - t, 2), sim.n_events))
    return out


if __name__ == "__main__":
    where = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    print(where, main(where))
