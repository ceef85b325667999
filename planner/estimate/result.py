"""The Estimate contract: per-device memory parts, throughput, and whether it fits."""

from __future__ import annotations

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
