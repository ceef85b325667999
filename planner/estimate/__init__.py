"""Estimator: per-device memory and tok/s for a model, a box and llama.cpp options. Pure."""

from planner.estimate.estimate import estimate
from planner.estimate.options import RuntimeOptions
from planner.estimate.quant_mix import FTYPES, ftype_tensor_types
from planner.estimate.result import DeviceEstimate, Estimate, MemoryParts, Throughput

__all__ = ["DeviceEstimate", "Estimate", "FTYPES", "MemoryParts", "RuntimeOptions", "Throughput",
           "estimate", "ftype_tensor_types"]
