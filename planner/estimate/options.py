"""RuntimeOptions: the llama.cpp knobs that change memory and speed (llama-server names)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator

from planner.errors import InvalidOptionError

KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


class RuntimeOptions(BaseModel):
    n_gpu_layers: int = Field(-1, description="-ngl; -1 = all (llama.cpp's 999)")
    tensor_split: list[float] | None = Field(None, description="-ts; None = by free memory")
    n_cpu_moe: int = Field(0, description="--n-cpu-moe: experts of the first N layers on the CPU")
    cpu_moe: bool = Field(False, description="--cpu-moe: all experts on the CPU")
    override_tensor: list[str] = Field(default_factory=list, description="-ot regexes sent to the CPU")
    n_ctx: int = 4096
    n_batch: int = 2048
    n_ubatch: int = 512
    n_seq: int = Field(1, description="-np parallel sequences")
    kv_unified: bool = False
    n_outputs: int | None = Field(None, description="outputs the context reserves per graph (n_outputs_max): "
                                                   "None = n_batch (llama.h's default, llama-cpp-python); "
                                                   "llama-server and llama-cli reserve one per slot")
    flash_attn: bool = True
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    swa_full: bool = Field(False, description="llama-server default; llama.h/llama-cpp-python default True")
    mmap: bool = True
    mlock: bool = False
    repack: bool = Field(True, description="the CPU's extra buffer types (AMX, CPU_REPACK); False = llama.cpp's "
                                           "--no-repack (use_extra_bufts off)")
    offload_kqv: bool = True
    threads: int | None = Field(None, description="-t: threads for the CPU's work (default: the physical cores)")

    @field_validator("cache_type_k", "cache_type_v")
    @classmethod
    def _kv_type(cls, v: str) -> str:
        v = v.lower()
        if v not in KV_TYPES:
            raise InvalidOptionError(f"cache type '{v}' is not one llama.cpp accepts ({', '.join(KV_TYPES)})")
        return v

    @field_validator("n_ctx", "n_batch", "n_ubatch", "n_seq")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise InvalidOptionError(f"context, batch, ubatch and parallel must be positive, got {v}")
        return v

    @field_validator("threads")
    @classmethod
    def _threads(cls, v: int | None) -> int | None:
        if v is not None and v <= 0:
            raise InvalidOptionError(f"--threads takes a positive count of CPU threads, got {v}")
        return v

    @field_validator("tensor_split")
    @classmethod
    def _shares(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (any(x < 0 for x in v) or not any(v)):
            raise InvalidOptionError(f"--tensor-split takes a share per GPU, none negative and not all 0, "
                                     f"like 3,1; got {','.join(f'{x:g}' for x in v)}")
        return v

    @model_validator(mode="after")
    def _ubatch_within_batch(self) -> RuntimeOptions:
        # llama-context.cpp: cparams.n_ubatch = min(n_batch, n_ubatch); -b 512 -ub 4096 runs micro-batches of 512
        if self.n_ubatch > self.n_batch:
            self.n_ubatch = self.n_batch
        return self

    def check_devices(self, n_gpus: int) -> None:
        """A split llama.cpp would quietly cut to the GPUs it has (llama-model.cpp copies
        n_devices() shares): the plan would not be the one the user asked for."""
        if self.tensor_split and (not n_gpus or len(self.tensor_split) > n_gpus):
            have = f"{n_gpus} GPU{'s' if n_gpus != 1 else ''}" if n_gpus else "no GPU"
            raise InvalidOptionError(f"--tensor-split gives {len(self.tensor_split)} shares but the target has "
                                     f"{have}; give one share per GPU" + (" (or leave it out)" if not n_gpus else ""))

    def check_experts(self, model_name: str, has_experts: bool) -> None:
        """--n-cpu-moe / --cpu-moe on a dense model: llama.cpp accepts it and does nothing, so the user
        meant something else (-ngl)."""
        if (self.n_cpu_moe or self.cpu_moe) and not has_experts:
            raise InvalidOptionError(f"--{'cpu-moe' if self.cpu_moe else 'n-cpu-moe'} keeps MoE expert tensors on the "
                                     f"CPU but {model_name} has none (a dense model); leave it out (--ngl N puts only "
                                     "N layers on the GPU)")

    def check(self) -> None:
        """Combinations llama.cpp refuses."""
        if self.cache_type_v not in ("f16", "f32", "bf16") and not self.flash_attn:
            raise InvalidOptionError("a quantized V cache needs flash attention: add --flash-attn on "
                                     "or use --cache-type-v f16")
