"""The performance layer: the calibrated model of one vLLM replica, and its calibration.

One job per file:

``ops.py``          operator formulas (GEMM, element-wise, attention, all-reduce, send, layer shapes):
                    pure functions, the one implementation the model and the fits share
``iteration.py``    :class:`IterationTable` (the exact iteration time as lookups: what the simulator
                    runs) and :class:`IterationModel` (Aladdin's linear form fitted to it)
``model.py``        :class:`ReplicaModel`: memory fit and KV capacity, iteration time, prefill and
                    decode, throughput and latencies under load, the option table's figures; its
                    module docstring holds the equations
``calibration.py``  calibration files (schema, reading, writing, the shipped ones), which factors a
                    replica uses (``effective_params``), extrapolation to unmeasured tiers
``lsq.py``          Levenberg–Marquardt, sigmoid/logit, error statistics
``vidur.py``        the Vidur profiling data: which files measure which tier, and their readers
``fit.py``          operator predictions on measured rows, the fits, ``calibrate_vidur``
``serving.py``      refitting tiers to vLLM serving benchmark results (``calibrate_serving``)
``aiconfigurator.py``  NVIDIA AIConfigurator's measured vLLM operator tables (GEMM, attention,
                    all-reduce), read in SI units from the installed package (optional extra)
``cli.py``          ``planner perf`` and ``planner calibrate``

Each file imports only files listed above it, but for model's lazy import of calibration (when a
replica resolves its factors). This package re-exports the names the rest of the planner uses
(``from planner.perf import ReplicaModel``).
"""

from planner.perf.iteration import IterationModel, IterationTable
from planner.perf.model import ReplicaModel, batch_grid, structural_reason
from planner.perf.ops import (
    GB,
    PCIE_GEN4_GBS,
    allreduce_time,
    attention_time,
    elementwise_time,
    gemm_time,
    layer_shapes,
)

__all__ = [
    "GB",
    "PCIE_GEN4_GBS",
    "IterationModel",
    "IterationTable",
    "ReplicaModel",
    "allreduce_time",
    "attention_time",
    "batch_grid",
    "elementwise_time",
    "gemm_time",
    "layer_shapes",
    "structural_reason",
]
