"""The Plan contract: what to run, how, and what it is predicted to give."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from planner.errors import InvalidOptionError
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
    program: str = Field("llama-server", description="what runs the plan: llama-server, llama-cli, llama-cpp-python, "
                                                     "ollama (estimate/programs.py: each sets the context its own way)")
    type_overrides: dict[str, str] = Field(default_factory=dict, description="with quant: tensors whose type the "
                                           "file sets apart from the ftype (a published _L file's Q8_0 embeddings)")
    tensor_errors: dict[str, dict[str, float]] | None = Field(
        None, exclude=True, description="measured per-tensor errors (planner/verify/tensor_error.py); None = priors")

    @field_validator("margin")
    @classmethod
    def _margin(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise InvalidOptionError(f"--margin is the percent of each device to keep free, 0 to 99; got {v * 100:g}")
        return v

    @model_validator(mode="after")
    def _program_carries_pins(self) -> PlanRequest:
        from planner.estimate.programs import check_pins, program
        check_pins(program(self.program), n_cpu_moe=self.n_cpu_moe, override_tensor=self.override_tensor,
                   tensor_split=self.tensor_split, cache_type_k=self.cache_type_k, cache_type_v=self.cache_type_v)
        return self

    @model_validator(mode="after")
    def _depth_in_context(self) -> PlanRequest:
        if self.depth < 0:
            raise InvalidOptionError(f"--depth counts tokens already in the context, 0 or more; got {self.depth}")
        if self.n_ctx and self.depth >= self.n_ctx:
            raise InvalidOptionError(f"--depth {self.depth} is past the --ctx {self.n_ctx}: decode is timed inside "
                                     "the context; give a larger --ctx or leave it out")
        return self


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
