"""The HardwareProfile contract: what the estimator needs to know about a box.

Units live in field names (bytes, GB/s = 1e9 bytes/s, TFLOPS) so nobody guesses GB vs GiB.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

GiB = 1024**3


class CPU(BaseModel):
    model: str = "unknown CPU"
    cores: int = Field(1, description="physical cores")
    threads: int = Field(1, description="logical cores")
    arch: str = "x86_64"
    flags: list[str] = Field(default_factory=list, description="ISA features llama.cpp uses")


class RAM(BaseModel):
    total_bytes: int
    available_bytes: int | None = None
    reserve_bytes: int = Field(0, description="kept for the OS and other programs on a named target "
                                              "(available = total - reserve); 0 when detected or given by --ram")
    bandwidth_gbps: float = Field(..., description="sustained memory bandwidth, GB/s")
    bandwidth_source: str = "spec"


class GPU(BaseModel):
    index: int = 0
    vendor: Literal["nvidia", "amd", "apple", "intel", "other"] = "nvidia"
    name: str
    vram_total_bytes: int
    vram_free_bytes: int | None = None
    bandwidth_gbps: float = Field(..., description="memory bandwidth, GB/s")
    fp16_tflops: float | None = Field(None, description="dense fp16 tensor throughput")
    compute_capability: str | None = None
    pcie_gen: int | None = None
    pcie_width: int | None = None
    unified_memory: bool = False
    backend: Literal["cuda", "rocm", "metal", "vulkan", "sycl"] = "cuda"
    overhead_bytes: int | None = Field(
        None, description="measured runtime overhead (context, libraries); None = backend default"
    )

    @property
    def usable_bytes(self) -> int:
        """What a plan may use: free memory when detected on this box, else the total."""
        return self.vram_free_bytes if self.vram_free_bytes is not None else self.vram_total_bytes


class Calibration(BaseModel):
    """Measured/predicted ratios from `plan verify` runs on this machine (planner/verify/calibration.py).
    The estimator multiplies its tok/s by the factors and uses the measured process overheads."""
    runs: int = Field(0, description="runs whose speed ratios apply: taken against the current speed model")
    kept: int = Field(0, description="runs kept for this machine (their overheads apply whatever the model)")
    decode_factor: float = 1.0
    prefill_factor: float = 1.0
    host_overhead_bytes: int | None = None
    gpu_overhead_bytes: list[int | None] = Field(default_factory=list)
    source: str = ""


class HardwareProfile(BaseModel):
    name: str = "this machine"
    source: str = "detected"
    os: str = "linux"
    cpu: CPU
    ram: RAM
    gpus: list[GPU] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="what a probe could not tell")
    calibration: Calibration | None = Field(None, description="from verify runs on this machine")

    @property
    def unified(self) -> bool:
        return any(g.unified_memory for g in self.gpus)

    def summary(self) -> str:
        parts = [f"{self.cpu.model} ({self.cpu.cores}C/{self.cpu.threads}T)",
                 f"RAM {self.ram.total_bytes / GiB:.0f} GiB @ {self.ram.bandwidth_gbps:.0f} GB/s"]
        for g in self.gpus:
            parts.append(f"{g.name} {g.vram_total_bytes / GiB:.0f} GiB @ {g.bandwidth_gbps:.0f} GB/s")
        return "; ".join(parts)
