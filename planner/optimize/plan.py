"""The Plan contract: what to run, how, and what it is predicted to give."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from planner.estimate.options import RuntimeOptions
from planner.estimate.result import Estimate

Goal = Literal["quality", "balanced", "speed", "context"]


class PlanRequest(BaseModel):
    goal: Goal = "balanced"
    quant: str | None = Field(None, description="pin a stock ftype; None = per-tensor allocation")
    n_gpu_layers: int | None = None
    n_ctx: int | None = None
    min_ctx: int | None = None
    flash_attn: bool | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    n_ubatch: int | None = None
    n_batch: int | None = None
    n_seq: int | None = None
    threads: int | None = None
    tensor_split: list[float] | None = None
    n_cpu_moe: int | None = None
    override_tensor: list[str] = Field(default_factory=list)
    mmap: bool = True
    margin: float = 0.05
    min_tps: float | None = None
    imatrix: bool = False
    depth: int = Field(0, description="decode speed measured at this many tokens of context")
    tensor_errors: dict[str, dict[str, float]] | None = Field(
        None, exclude=True, description="measured per-tensor errors (planner/verify/tensor_error.py); None = priors")


class PlanOption(BaseModel):
    label: str
    why: str
    types: dict[str, str]
    options: RuntimeOptions
    estimate: Estimate
    predicted_kld: float
    bits_per_weight: float
    placement: str


class PlanResult(BaseModel):
    model: str
    target: str
    goal: Goal
    best: PlanOption | None
    alternatives: list[PlanOption] = Field(default_factory=list)
    nearest: str | None = Field(None, description="when nothing fits: what would")
    considered: int = 0
