"""The Estimate contract: per-device memory parts, throughput, and whether it fits."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field


class MemoryParts(BaseModel):
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    overhead_bytes: int = 0
    output_bytes: int = Field(0, description="llama.cpp's output (logits) buffer, host side")
    repack_bytes: int = Field(0, description="CPU_REPACK copies of weights (part of weights_bytes)")
    amx_bytes: int = Field(0, description="the AMX buffer's copies of weights (part of weights_bytes)")
    mapped_bytes: int = Field(0, description="mmap'd file span counted in weights_bytes (page cache)")

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes + self.output_bytes


class DeviceEstimate(BaseModel):
    name: str
    kind: Literal["gpu", "cpu"]
    index: int | None = None
    capacity_bytes: int
    memory: MemoryParts
    n_layers: int = Field(0, description="repeating layers placed here")
    buffers_mib: dict[str, float] = Field(default_factory=dict, description="as llama.cpp logs them")

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.memory.total_bytes


class Throughput(BaseModel):
    decode_tps: float
    prefill_tps: float
    decode_depth: int = 0
    notes: list[str] = Field(default_factory=list)


class Estimate(BaseModel):
    model: str
    devices: list[DeviceEstimate]
    throughput: Throughput
    n_ctx: int
    margin: float
    fits: bool
    weights_file_bytes: int
    notes: list[str] = Field(default_factory=list)

    def to_json(self) -> dict:
        d = self.model_dump()
        for dev, src in zip(d["devices"], self.devices, strict=False):
            dev["memory"]["total_bytes"] = src.memory.total_bytes
            dev["free_bytes"] = src.free_bytes
        return d


# What llama.cpp names each backend's device buffers ("CUDA0 model", "MTL0 KV", ...): the estimate names its
# buffers so, and verify groups llama.cpp's log lines by them (ggml-cuda.cu GGML_CUDA_NAME, ggml-metal's
# "MTL", ggml-vulkan's "Vulkan", ggml-sycl's "SYCL", ROCm builds of ggml-cuda "ROCm"); older Metal logs say Metal
GPU_BUFFER_PREFIX = {"cuda": "CUDA", "metal": "MTL", "rocm": "ROCm", "vulkan": "Vulkan", "sycl": "SYCL"}
_GPU_BUFFER = re.compile(r"^(" + "|".join([*GPU_BUFFER_PREFIX.values(), "Metal"]) + r")(\d*)$")


def gpu_buffer_index(buffer: str) -> int | None:
    """The GPU index of a llama.cpp buffer name ('CUDA1' -> 1, 'MTL' -> 0), None for a host buffer."""
    m = _GPU_BUFFER.match(buffer)
    return int(m.group(2) or 0) if m else None
