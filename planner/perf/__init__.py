"""The performance layer: the calibrated model of one vLLM replica and its calibration."""

from planner.perf.model import (
    GB,
    PCIE_GEN4_GBS,
    IterationModel,
    IterationTable,
    ReplicaModel,
    allreduce_time,
    attention_time,
    batch_grid,
    elementwise_time,
    gemm_time,
    layer_shapes,
    structural_reason,
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
