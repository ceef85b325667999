"""The HardwareProfile contract: what the estimator needs to know about a box.

Units live in field names (bytes, GB/s = 1e9 bytes/s, TFLOPS) so nobody guesses GB vs GiB.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.units import GiB

MAX_BYTES = 1 << 56  # 64 PiB: no box has more memory of any kind; beyond it a figure is a typo or hostile


class _Checked(BaseModel):
    """A contract that refuses NaN and infinities wherever a float stands."""
    model_config = ConfigDict(allow_inf_nan=False)


class CPU(_Checked):
    model: str = "unknown CPU"
    cores: int = Field(1, ge=1, le=1 << 14, description="physical cores")
    threads: int = Field(1, ge=1, le=1 << 15, description="logical cores")
    arch: str = "x86_64"
    flags: list[str] = Field(default_factory=list, description="ISA features llama.cpp uses")


class RAM(_Checked):
    total_bytes: int = Field(..., gt=0, le=MAX_BYTES)
    available_bytes: int | None = Field(None, ge=0, le=MAX_BYTES)
    reserve_bytes: int = Field(0, ge=0, le=MAX_BYTES,
                               description="kept for the OS and other programs on a named target "
                                              "(available = total - reserve); 0 when detected or given by --ram")
    bandwidth_gbps: float = Field(..., gt=0, le=1e6, description="sustained memory bandwidth, GB/s")
    bandwidth_source: str = "spec"


class RPCLink(_Checked):
    """Where a device of another machine is reached: its ggml-rpc-server and the link to it from the main host."""
    node: str
    host: str
    port: int = Field(50052, ge=1, le=65535)
    device: str = Field("CUDA0", description="the server's name for the device (ggml-rpc-server -d)")
    server_index: int = Field(0, ge=0, description="the device's place among that server's devices (RPC<i>[...])")
    gbit_s: float = Field(..., gt=0, le=1e5, description="sustained TCP throughput of the link, Gbit/s")
    rtt_ms: float = Field(..., ge=0, le=1e4, description="round-trip time of the link, ms")

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


class GPU(_Checked):
    index: int = Field(0, ge=0)
    vendor: Literal["nvidia", "amd", "apple", "intel", "other"] = "nvidia"
    name: str
    vram_total_bytes: int = Field(..., gt=0, le=MAX_BYTES)
    vram_free_bytes: int | None = Field(None, ge=0, le=MAX_BYTES)
    bandwidth_gbps: float = Field(..., gt=0, le=1e6, description="memory bandwidth, GB/s")
    fp16_tflops: float | None = Field(None, gt=0, le=1e6, description="dense fp16 tensor throughput")
    compute_capability: str | None = None
    pcie_gen: int | None = None
    pcie_width: int | None = None
    unified_memory: bool = False
    # "cpu": another machine's CPU, which ggml-rpc-server serves as a device when that machine has no GPU
    backend: Literal["cuda", "rocm", "metal", "vulkan", "sycl", "cpu"] = "cuda"
    rpc: RPCLink | None = Field(None, description="a device of another machine, reached over llama.cpp's RPC")
    cpu_cores: int | None = Field(None, ge=1, le=1 << 14, description="a CPU device's physical cores")
    overhead_bytes: int | None = Field(
        None, ge=0, le=MAX_BYTES, description="measured runtime overhead (context, libraries); None = backend default"
    )

    @property
    def usable_bytes(self) -> int:
        """What a plan may use: free memory when detected on this box, else the total."""
        return self.vram_free_bytes if self.vram_free_bytes is not None else self.vram_total_bytes


UNSTEADY = 0.10  # a self-benchmark whose first twin moved more than this over the run is said to be unsteady


class CPUSpeed(_Checked):
    """This CPU's own speed constants, fitted to llama.cpp's decode and prompt times on shape twins run here
    (planner/verify/cpu_bench.py). They replace the reference box's (planner/data/cpu_kernels.yaml, the copy
    test and the SIMD-width guess) in the estimator, which stays the same formula."""
    threads: int = Field(..., ge=1, le=1 << 15, description="threads the constants were measured at")
    memory_gbps: float = Field(..., gt=0, le=1e6, description="the most decode's weight reads can reach, GB/s")
    kernel_scale: float = Field(..., gt=0, le=1e3,
                                description="a core's matrix-vector speed against the reference box's, for a type "
                                            "not measured (Q4_K's)")
    decode_type_scale: dict[str, float] = Field(default_factory=dict,
                                                description="the same, per ggml type measured (a one-type twin each)")
    decode_node_us: float = Field(..., ge=0, le=1e5, description="fixed cost per graph node of a decoded token")
    prefill_scale: float = Field(..., gt=0, le=1e3,
                                 description="a core's matrix-matrix speed against the reference box's (Q4_K's)")
    prefill_type_scale: dict[str, float] = Field(default_factory=dict, description="the same, per ggml type measured")
    prefill_node_us: float = Field(..., ge=0, le=1e5, description="cost per graph node and prompt token")
    prefill_row_ns: dict[str, float] = Field(default_factory=dict,
                                             description="fixed cost per output row and prompt token of a matrix "
                                                         "product (one dot product each), per ggml type measured")
    kv_read_gbps: float | None = Field(None, gt=0, le=1e6, description="the KV cache read at depth, GB/s")
    attention_gflops: float | None = Field(None, gt=0, le=1e9,
                                           description="a prompt's attention over its context, GFLOPS on all cores")
    busy: bool = Field(False, description="other programs kept cores busy while it was timed")
    drift: float | None = Field(None, ge=-1, le=100,
                                description="how far the first twin's decode moved between the start and the end "
                                            "of the run (a VM's neighbours show here, not in the load figures)")
    measured_at: str = Field("", description="when (UTC, ISO 8601)")
    source: str = ""

    def moved(self) -> float | None:
        """|drift| where it is past UNSTEADY (the profile and the plans then say the figures carry it), else None."""
        return abs(self.drift) if self.drift is not None and abs(self.drift) > UNSTEADY else None


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
    cpu_speed: CPUSpeed | None = Field(None, description="this CPU measured by llama.cpp (a self-benchmark)")

    @property
    def unified(self) -> bool:
        """The host's RAM is its GPU's memory too (a device of another machine shares that machine's RAM)."""
        return any(g.unified_memory and g.rpc is None for g in self.gpus)

    def summary(self) -> str:
        parts = [f"{self.cpu.model} ({self.cpu.cores}C/{self.cpu.threads}T)",
                 f"RAM {self.ram.total_bytes / GiB:.0f} GiB @ {self.ram.bandwidth_gbps:.0f} GB/s"]
        for g in self.gpus:
            parts.append(f"{g.name} {g.vram_total_bytes / GiB:.0f} GiB @ {g.bandwidth_gbps:.0f} GB/s")
        return "; ".join(parts)
