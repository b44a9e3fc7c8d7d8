"""The performance layer: the calibrated model of one vLLM replica and its calibration."""

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
