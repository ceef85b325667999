"""planner/data/backends.yaml and cpu_kernels.yaml, loaded once into typed tables: the estimator's
measured constants, each with its source. A key missing or misspelt in the file fails at load, with
the key's name, not deep inside an estimate."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from planner.data import Table, data_yaml
from planner.errors import InvalidOptionError


class Backend(Table):
    """One backend's runtime overhead and speed constants."""
    overhead_mib: int
    overhead_source: str
    decode_bw_efficiency: float
    decode_source: str
    prefill_source: str
    decode_layer_ms: float = 0.0  # GPU backends: fixed time per layer and token
    prefill_flops_efficiency: float | None = None  # GPU backends: share of the fp16 TFLOPS prefill reaches
    # the CPU backend: bandwidth efficiency against a measured copy test, time per graph node, experts' share
    decode_bw_efficiency_measured: float | None = None
    decode_bw_efficiency_copy_threads: float | None = None  # against the copy test on every core at once
    decode_copy_threads_source: str | None = None
    decode_node_us: float | None = None
    prefill_node_us: float | None = None
    prefill_expert_efficiency: float | None = None


class GraphNodes(Table):
    """Nodes of llama.cpp's one-token graph per layer (estimate/graph.py)."""
    per_layer: float
    per_tensor: float
    moe_layer: float
    per_expert_used: float
    recurrent_layer: float
    attention_without_flash: float
    source: str


class Backends(Table):
    cuda: Backend
    metal: Backend
    rocm: Backend
    vulkan: Backend
    sycl: Backend
    cpu: Backend
    op_offload_gbps: float
    op_offload_source: str
    graph_nodes: GraphNodes


class Kernel(Table):
    decode_gbps_per_core: float
    prefill_gflops_per_core: float


class CPUKernels(Table):
    """Each ggml type's CPU kernel rates per core (bench/cpu_decode.py --fit)."""
    source: str
    default_prefill_gflops_per_core: float
    default_source: str
    types: dict[str, Kernel]


@cache
def backends() -> Backends:
    return Backends(**data_yaml("backends.yaml"))


@cache
def cpu_kernels() -> CPUKernels:
    return CPUKernels(**data_yaml("cpu_kernels.yaml"))


# the backends with constants: the fields of Backends that hold one (not written twice)
BACKENDS = tuple(name for name, f in Backends.model_fields.items() if f.annotation is Backend)


def backend(name: str) -> Backend:
    """The backend's constants; a backend without an entry is an error, not another backend's figures."""
    if name not in BACKENDS:
        raise InvalidOptionError(f"no constants for the backend '{name}' (planner/data/backends.yaml has "
                                 f"{', '.join(BACKENDS)})")
    return getattr(backends(), name)


class GPUFamily(Table):
    """One GPU generation's (or one backend's pooled) speed constants, fitted to public llama-bench results
    (bench/gpu_public.py --write on bench/data/public-gpu-bench.jsonl)."""
    backend: str  # the backend its rows ran on
    decode_bw_efficiency: float  # the share of the spec bandwidth decode reads weights and KV at
    decode_layer_ms: float  # fixed time per layer and token (launches, synchronisation), per backend
    prefill_flops_efficiency: float  # the share of the fp16 TFLOPS a quantized prompt's products reach
    prefill_f16_factor: float  # F16/BF16 weights' products against quantized ones (cuBLAS / MPS, not MMQ)
    kv_factor_no_flash: float  # without flash attention the KV cache reads this much slower than its bytes
    cards: list[str]  # the cards whose public figures it rests on
    rows: int


class GPUSpeed(Table):
    source: str
    families: dict[str, GPUFamily]


@cache
def gpu_speed() -> GPUSpeed:
    return GPUSpeed(**data_yaml("gpu_speed.yaml"))


def family_key(name: str, backend_name: str, backends_of: Mapping[str, str]) -> str | None:
    """Which of the fits named in backends_of (key -> the backend its rows ran on) a GPU on a backend takes: its
    family's on that backend (family@backend for a card on another vendor's backend, an RTX on Vulkan), else its
    backend's pool (its HBM cards' for a stacked-memory card), else None. The estimator's and bench/gpu_public.py's
    one rule."""
    from planner.profile.gpu_specs import lookup_gpu_spec
    spec = lookup_gpu_spec(name)
    keys = [f"{spec.family}@{backend_name}", spec.family] if spec else []
    if spec and spec.memory == "hbm":
        keys.append(f"backend:{backend_name}:hbm")
    keys.append(f"backend:{backend_name}")
    return next((k for k in keys if backends_of.get(k) == backend_name), None)


@cache
def gpu_constants(name: str, backend_name: str) -> tuple[str, GPUFamily] | None:
    """(what it rests on, the constants) for a GPU on a backend: the fit family_key names, else None
    (planner/data/backends.yaml's constants hold)."""
    fams = gpu_speed().families
    key = family_key(name, backend_name, {k: f.backend for k, f in fams.items()})
    if key is None:
        return None
    what = (f"pooled over {backend_name} HBM cards" if key.endswith(":hbm")
            else f"pooled over {backend_name} cards" if key.startswith("backend:") else f"of {key} cards")
    return f"public llama-bench results {what}", fams[key]
