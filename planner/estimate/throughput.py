"""Decode and prefill tok/s for a placement (pure; constants from planner/data/backends.yaml and
cpu_kernels.yaml).

Decode, per token: each device reads its weights (only the active experts of MoE layers) and
its KV cache up to the context depth at its effective bandwidth (a GPU's family constants fitted to public
llama-bench results, planner/data/gpu_speed.yaml; without flash attention its KV reads that family's factor
slower), plus a fixed cost: per layer on
a GPU (kernel launches and synchronisation: it dominates small models on fast GPUs, where a pure
bandwidth roofline is 3x off), per graph node on the CPU (a thread barrier after every node: a
Mamba or MoE layer has 2-3x a Llama layer's nodes, graph.py). On the CPU each weight type is read
no faster than its kernel dequantizes it on the cores used. Devices run one after the other
(layer split).
Prefill: FLOPs = 2 x the weights a prompt token is multiplied with (active experts only; lookup
tables and the output matrix left out; on a GPU with a public fit F16 weights at its F16 factor, plus the
attention of a prompt of n_ubatch tokens) at the device's effective rate — on the CPU each type's own,
experts lower — plus on the CPU a cost per node and token (the elementwise work); weights on the
host are streamed over PCIe to the GPU for big batches (op offload).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from planner.data import data_digest
from planner.estimate.constants import backend, backends, cpu_kernels, gpu_constants
from planner.estimate.memory import matmul_rows
from planner.estimate.placement import CPU
from planner.estimate.result import Throughput
from planner.model.spec import ModelSpec
from planner.profile.hardware import HardwareProfile

# the speed formulas' revision: with the constants' digest it names the model a verify run's measured/predicted
# ratios were taken against (planner/verify/calibration.py uses only ratios of the current one); bump it when a
# formula changes
FORMULAS = "2026-12-04 measured CPU constants (a prompt cost per row), GPU families from llama.cpp result threads"


@cache
def speed_model() -> str:
    """The speed model a prediction comes from: the formulas' revision and the constants' digest (read once)."""
    return f"{FORMULAS} {data_digest('backends.yaml', 'cpu_kernels.yaml', 'gpu_speed.yaml', 'gpus.yaml')}"


@dataclass(frozen=True)
class KernelScale:
    """Each ggml type's CPU kernel speed against the reference box's (cpu_kernels.yaml): measured per type on this
    CPU by llama.cpp when the profile has it (CPUSpeed), the rest at `default`."""
    default: float
    by_type: dict[str, float] = field(default_factory=dict)

    def of(self, ty: str) -> float:
        return self.by_type.get(ty, self.default)


def _isa_guess(hw: HardwareProfile) -> float:
    """Assumed from ggml-cpu's SIMD widths (512 / 256 / 128 bits), not measured: AVX-512 / AMX 1.5x, none of
    AVX2 / i8mm / dotprod 0.5x."""
    f = set(hw.cpu.flags)
    if "avx512f" in f or "amx_int8" in f:
        return 1.5
    return 1.0 if "avx2" in f or "i8mm" in f or "dotprod" in f else 0.5


def _isa_scale(hw: HardwareProfile, prefill: bool = False) -> KernelScale:
    """Decode's matrix-vector kernels (or, prefill=True, the prompt's matrix-matrix ones): this CPU's measured
    per-type scales, else the SIMD-width guess."""
    c = hw.cpu_speed
    if c:
        return KernelScale(c.prefill_scale, c.prefill_type_scale) if prefill \
            else KernelScale(c.kernel_scale, c.decode_type_scale)
    return KernelScale(_isa_guess(hw))


def _cpu_memory_gbps(hw: HardwareProfile) -> float:
    """What the memory delivers to decode: measured by llama.cpp when the profile has it; else a copy test
    measured on the box (closer to it than a spec sheet), each kind with its own factor."""
    if hw.cpu_speed:
        return hw.cpu_speed.memory_gbps
    c = backend("cpu")
    src = hw.ram.bandwidth_source
    if src.startswith("measured: single-thread"):
        eff = c.decode_bw_efficiency_measured
    elif src.startswith("measured"):
        eff = c.decode_bw_efficiency_copy_threads
    else:
        eff = c.decode_bw_efficiency
    return hw.ram.bandwidth_gbps * eff


def _node_us(hw: HardwareProfile) -> tuple[float, float]:
    """(decode, prefill) cost per graph node, us: this CPU's when measured, else the reference box's."""
    if hw.cpu_speed:
        return hw.cpu_speed.decode_node_us, hw.cpu_speed.prefill_node_us
    c = backend("cpu")
    return c.decode_node_us, c.prefill_node_us


def _cpu_cores(hw: HardwareProfile, threads: int | None) -> int:
    """Cores the kernels run on: -t threads, at most the physical cores (SMT siblings add no SIMD units:
    llama.cpp's own default is the physical count, cpu_get_num_math)."""
    return max(1, min(threads, hw.cpu.cores) if threads else hw.cpu.cores)


def read_rate_gbps(ty: str, bw_gbps: float, cores: int, scale: KernelScale) -> float:
    """The rate decode reads weights of type `ty` at on the CPU: the slower of the memory's and its kernel's
    (cores x a core's dequantize-and-dot rate: IQ1_S 1.6 GB/s per core on the AVX2 box measured, Q8_0 9.4; 2 of
    its cores are kernel-bound for every quantized type, 16 would be memory-bound for all but IQ1-3). A type
    without a measured kernel (F32...) reads at the memory's rate."""
    r = cpu_kernels().types.get(ty)
    return min(bw_gbps, r.decode_gbps_per_core * cores * scale.of(ty)) if r else bw_gbps


def cpu_decode_seconds(read_types: dict[str, int], other_bytes: float, bw_gbps: float, cores: int,
                       scale: KernelScale) -> float:
    """Seconds a decoded token spends in the CPU's matrix-vector products and other reads: each ggml type's
    bytes at its read rate, the rest (KV, recurrent states) at the memory's."""
    return (other_bytes / bw_gbps + sum(nb / read_rate_gbps(ty, bw_gbps, cores, scale)
                                        for ty, nb in read_types.items())) / 1e9


def cpu_time_per_byte(hw: HardwareProfile, threads: int | None = None) -> dict[str, float]:
    """Decode time per byte of each ggml type on this CPU, relative to Q4_K's: 1 for every type where the memory
    paces all of them (many cores), above 1 for the slow IQ kernels on few cores, below for Q8_0 there. What an
    allocation that budgets time rather than bytes weighs each type's bytes by."""
    mem, cores, scale = _cpu_memory_gbps(hw), _cpu_cores(hw, threads), _isa_scale(hw)
    q4k = read_rate_gbps("Q4_K", mem, cores, scale)
    return {ty: q4k / read_rate_gbps(ty, mem, cores, scale) for ty in cpu_kernels().types}


def slow_kernels(read_types: dict[str, int], bw_gbps: float, cores: int, scale: KernelScale) -> list[str]:
    """Types holding 10%+ of the CPU's decode bytes that their kernel, not the memory, paces on these cores, at
    under 60% of Q4_K's rate (the IQ1-3 types on few cores): their bytes are no measure of their time."""
    rates = cpu_kernels().types
    q4k = rates["Q4_K"].decode_gbps_per_core * scale.of("Q4_K")
    total = sum(read_types.values()) or 1
    return [f"{ty} ({q4k / (rates[ty].decode_gbps_per_core * scale.of(ty)):.1f}x Q4_K's time per byte)"
            for ty, nb in sorted(read_types.items(), key=lambda kv: -kv[1])
            if nb >= 0.1 * total and ty in rates and rates[ty].decode_gbps_per_core * scale.of(ty) < 0.6 * q4k
            and read_rate_gbps(ty, bw_gbps, cores, scale) < bw_gbps]


F16_TYPES = ("F16", "BF16", "F32")  # weights a GPU multiplies with cuBLAS / MPS rather than the quantized kernels


@dataclass(frozen=True)
class GPUSpeedK:
    """The speed constants a GPU gets, and what they rest on."""
    bw_efficiency: float
    layer_ms: float
    prefill_efficiency: float
    f16_factor: float
    kv_factor: float
    attention: bool
    basis: str


def _gpu_speed(g) -> GPUSpeedK:
    return _gpu_speed_of(g.name, g.backend)


@cache
def _gpu_speed_of(name: str, backend_name: str) -> GPUSpeedK:
    """Its family's fit to public llama-bench results (planner/data/gpu_speed.yaml), else its backend's pooled
    fit, else planner/data/backends.yaml's constants (measured on the lent H100, or assumed)."""
    fit = gpu_constants(name, backend_name)
    if fit:
        basis, k = fit
        return GPUSpeedK(k.decode_bw_efficiency, k.decode_layer_ms, k.prefill_flops_efficiency, k.prefill_f16_factor,
                         k.kv_factor_no_flash, True, basis)
    c = backend(backend_name)
    return GPUSpeedK(c.decode_bw_efficiency, c.decode_layer_ms, c.prefill_flops_efficiency or 0.2, 1.0, 1.0, False,
                     f"{backend_name} constants of planner/data/backends.yaml ({c.decode_source[:60]})")


def _basis(hw: HardwareProfile, devices: set[int]) -> list[str]:
    """What each device's figures rest on: measured here, a public fit, the reference constants; calibration."""
    return list(_basis_of(CPU in devices, hw.cpu_speed.measured_at if hw.cpu_speed else None,
                          hw.cpu_speed.moved() if hw.cpu_speed else None,
                          hw.ram.bandwidth_source.startswith("measured"),
                          tuple((hw.gpus[d].name, hw.gpus[d].backend) for d in sorted(devices) if d != CPU),
                          bool(hw.calibration and hw.calibration.runs)))


@cache
def _basis_of(cpu: bool, measured_at: str | None, moved: float | None, copy_test: bool,
              gpus: tuple[tuple[str, str], ...], calibrated: bool) -> tuple[str, ...]:
    out = []
    if cpu:
        if measured_at:
            unsteady = f", while the machine's speed moved {moved:.0%}" if moved else ""
            out.append(f"CPU measured here by llama.cpp ({measured_at}{unsteady})")
        elif copy_test:
            out.append("CPU: this box's copy test and the reference kernel rates (no llama.cpp self-benchmark)")
        else:
            out.append("CPU: the profile's RAM bandwidth and the reference kernel rates")
    out += [f"{name}: {_gpu_speed_of(name, b).basis}" for name, b in gpus]
    if calibrated:
        out.append("then calibrated by verify runs here")
    return tuple(out)


def attention_flops(model: ModelSpec, ctx: float) -> float:
    """FLOPs a token's attention takes over `ctx` tokens of context: QK and PV, 2 x heads x (K + V width) x the
    tokens each layer attends (a sliding layer its window; recurrent and attention-free layers none)."""
    total = 0.0
    for lay in model.layers:
        if lay.attn in ("full", "swa"):
            span = min(ctx, lay.window) if lay.attn == "swa" and lay.window else ctx
            total += 2 * lay.n_head * ((lay.head_dim or model.head_dim_k) + model.head_dim_v) * span
    return total


def cpu_prefill_seconds(matmul_types: dict[tuple[str, bool], int], cores: int, scale: KernelScale,
                        rows: dict[tuple[str, bool], int] | None = None,
                        row_ns: dict[str, float] | None = None) -> float:
    """Seconds of matrix products per prefill token on the CPU: 2 x weights of each type / that type's GFLOPS,
    expert matrices (mul_mat_id, each expert on its share of the batch) at a fraction of it; and, where the
    self-benchmark measured it, each type's fixed cost per output row (a dot product each: the reference rates
    fold it in at their twins' widths)."""
    k = cpu_kernels()
    expert_eff = backend("cpu").prefill_expert_efficiency
    rate = {ty: kern.prefill_gflops_per_core for ty, kern in k.types.items()}
    per_row = row_ns or {}
    return sum(2 * n / (rate.get(ty, k.default_prefill_gflops_per_core) * 1e9 * cores * scale.of(ty)
                        * (expert_eff if expert else 1.0))
               for (ty, expert), n in matmul_types.items()) \
        + sum(r * per_row.get(ty, 0.0) for (ty, _), r in (rows or {}).items()) / 1e9


def throughput(model: ModelSpec, hw: HardwareProfile, read_per_token: dict[int, int], kv: dict[int, int],
               layers: dict[int, int], n_ctx: int, depth: int, flash_attn: bool, n_ubatch: int = 512, *,
               nodes: dict[int, float], read_types: dict[int, dict[str, int]],
               matmul_types: dict[tuple[str, bool], int],
               threads: int | None = None) -> Throughput:
    """nodes: graph nodes per device (graph.layer_nodes summed over the layers each holds); read_types: the
    weight bytes of read_per_token by ggml type; matmul_types: the weights a prefill token multiplies, by type."""
    notes = []
    t_decode = 0.0
    frac = min(depth, n_ctx) / max(n_ctx, 1)
    cores, scale = _cpu_cores(hw, threads), _isa_scale(hw)
    for d in set(read_per_token) | set(kv):
        nbytes = read_per_token.get(d, 0) + kv.get(d, 0) * frac
        if d == CPU:
            typed = read_types.get(CPU, {})
            mem = _cpu_memory_gbps(hw)
            kv_read = kv.get(d, 0) * frac
            if hw.cpu_speed and hw.cpu_speed.kv_read_gbps:  # the cache read at depth, as measured here
                nbytes -= kv_read
                t_decode += kv_read / (hw.cpu_speed.kv_read_gbps * 1e9)
            t_decode += cpu_decode_seconds(typed, nbytes - sum(typed.values()), mem, cores, scale) \
                + nodes.get(CPU, 0) * _node_us(hw)[0] / 1e6
            slow = slow_kernels(typed, mem, cores, scale)
            if slow:
                notes.append(f"on {cores} CPU core(s) the kernel, not the memory, paces {', '.join(slow)}")
        elif hw.gpus[d].backend == "cpu":  # another machine's CPU, served by ggml-rpc-server
            g = hw.gpus[d]
            typed = read_types.get(d, {})
            t_decode += cpu_decode_seconds(typed, nbytes - sum(typed.values()), g.bandwidth_gbps,
                                           g.cpu_cores or 1, scale) + nodes.get(d, 0) * _node_us(hw)[0] / 1e6
        else:
            g = hw.gpus[d]
            k = _gpu_speed(g)
            kv_read = kv.get(d, 0) * frac * (1.0 if flash_attn else k.kv_factor)
            t_decode += (read_per_token.get(d, 0) + kv_read) / (g.bandwidth_gbps * k.bw_efficiency * 1e9) \
                + layers.get(d, 0) * k.layer_ms / 1e3
    if any(g.rpc for g in hw.gpus):
        net_tg, net_pp = rpc_seconds(model, hw, layers, min(depth, n_ctx), n_ubatch)
        t_decode += net_tg
        notes.append(f"the network adds {net_tg * 1e3:.2f} ms per token ({_servers(hw, layers)}; docs/model.md)")
        t_pp = split_prefill_seconds(model, hw, layers, matmul_types, n_ubatch, n_ctx, nodes, threads) + net_pp
        return _finish(hw, t_decode, t_pp, depth, flash_attn, read_per_token, kv, notes)
    gpu_layers = sum(v for d, v in layers.items() if d != CPU)
    if hw.gpus and (gpu_layers or n_ubatch >= 32):  # op offload: big batches run on the GPU
        g = hw.gpus[0]
        k = _gpu_speed(g)
        f16 = 2 * sum(n for (ty, _), n in matmul_types.items() if ty in F16_TYPES)
        flops_tok = 2 * model.n_matmul_params - f16 + f16 / k.f16_factor
        if k.attention:  # the fit counted a prompt's attention (n_ubatch tokens attend n_ubatch / 2 on average)
            flops_tok += attention_flops(model, min(n_ubatch, n_ctx) / 2)
        t_pp = flops_tok / ((g.fp16_tflops or 20.0) * k.prefill_efficiency * 1e12)
        host_bytes = read_per_token.get(CPU, 0)
        if host_bytes:
            # op offload streams host weights to the GPU once per ubatch of n_ubatch tokens
            t_pp += host_bytes / (backends().op_offload_gbps * 1e9) / n_ubatch
            notes.append("prefill streams host-resident weights to the GPU for each batch")
    else:
        row_ns = hw.cpu_speed.prefill_row_ns if hw.cpu_speed else None  # measured only: rows are counted then
        t_pp = cpu_prefill_seconds(matmul_types, cores, _isa_scale(hw, prefill=True),
                                   matmul_rows(model) if row_ns else None, row_ns) \
            + sum(nodes.values()) * _node_us(hw)[1] / 1e6
        if hw.cpu_speed and hw.cpu_speed.attention_gflops:  # a prompt of n_ubatch tokens attends n_ubatch / 2
            t_pp += attention_flops(model, min(n_ubatch, n_ctx) / 2) / (hw.cpu_speed.attention_gflops * 1e9)
    return _finish(hw, t_decode, t_pp, depth, flash_attn, read_per_token, kv, notes)


def _finish(hw: HardwareProfile, t_decode: float, t_pp: float, depth: int, flash_attn: bool,
            read_per_token: dict[int, int], kv: dict[int, int], notes: list[str]) -> Throughput:
    """Seconds per decoded and per prompt token -> Throughput, with the notes and this machine's calibration."""
    if not flash_attn:
        notes.append("flash attention off: long prompts are slower than shown")
    notes.append("speed rests on: " + "; ".join(_basis(hw, set(read_per_token) | set(kv))))
    cal = hw.calibration
    if cal and cal.runs:
        t_decode /= cal.decode_factor
        t_pp /= cal.prefill_factor
        notes.append(f"calibrated by {cal.runs} verify run(s) on this machine: decode x{cal.decode_factor:.2f}, "
                     f"prefill x{cal.prefill_factor:.2f}")
    return Throughput(decode_tps=round(1.0 / t_decode, 2) if t_decode > 0 else 0.0,
                      prefill_tps=round(1.0 / t_pp, 1), decode_depth=depth, notes=notes)


# Round trips a decoded token makes to each RPC server that holds layers (ggml-rpc.cpp): the inputs go with
# set_tensor and the graph with graph_recompute, both sent without waiting; the result comes back with
# get_tensor, which waits. Measured on loopback servers with a delay added to every packet
# (bench/rpc_cluster.py, bench/data/rpc-cluster.jsonl).
RPC_ROUND_TRIPS_PER_TOKEN = 1.0


def _servers(hw: HardwareProfile, layers: dict[int, int]) -> str:
    eps = _rpc_servers(hw, layers)
    return ", ".join(f"{ep}: {link.rtt_ms:g} ms, {link.gbit_s:g} Gbit/s" for ep, link in eps.items())


def _rpc_servers(hw: HardwareProfile, layers: dict[int, int]) -> dict:
    """The RPC servers that hold layers, each with its link (endpoint -> RPCLink), in device order."""
    out = {}
    for d, g in enumerate(hw.gpus):
        if g.rpc and layers.get(d, 0):
            out.setdefault(g.rpc.endpoint, g.rpc)
    return out


def rpc_seconds(model: ModelSpec, hw: HardwareProfile, layers: dict[int, int], kv_len: int,
                n_ubatch: int) -> tuple[float, float]:
    """(per decoded token, per prompt token) seconds the links add. Layers run in device order and RPC copies a
    hidden state between servers through the main host, so each server that holds layers costs its round trips
    and its bytes once per token: the hidden state in and out (f32, 4 x n_embd bytes each way) and the attention
    mask (f16, one row per token over the cache). A prompt goes n_ubatch tokens per round trip."""
    tg = pp = 0.0
    for link in _rpc_servers(hw, layers).values():
        rtt = link.rtt_ms / 1e3 * RPC_ROUND_TRIPS_PER_TOKEN
        per_token = 8 * model.n_embd + 2 * max(kv_len, 1)
        bps = link.gbit_s * 1e9 / 8
        tg += rtt + per_token / bps
        pp += rtt / max(n_ubatch, 1) + (8 * model.n_embd + 2 * n_ubatch) / bps
    return tg, pp


def split_prefill_seconds(model: ModelSpec, hw: HardwareProfile, layers: dict[int, int],
                          matmul_types: dict[tuple[str, bool], int], n_ubatch: int, n_ctx: int,
                          nodes: dict[int, float], threads: int | None) -> float:
    """Prompt seconds per token when the layers are split over machines: each device's share of the layers at
    its own rate (a GPU's fit, a CPU's kernels with its cores); the host runs what it holds on its CPU (RPC
    does no op offload)."""
    total = sum(layers.values()) or 1
    cpu_pp = {}
    out = 0.0
    for d, n in layers.items():
        if not n:
            continue
        share = n / total
        g = None if d == CPU else hw.gpus[d]
        if g is None or g.backend == "cpu":
            cores = _cpu_cores(hw, threads) if g is None else (g.cpu_cores or 1)
            if cores not in cpu_pp:
                cpu_pp[cores] = cpu_prefill_seconds(matmul_types, cores, _isa_scale(hw, prefill=True), None, None) \
                    + sum(nodes.values()) * _node_us(hw)[1] / 1e6
            out += share * cpu_pp[cores]
            continue
        k = _gpu_speed(g)
        f16 = 2 * sum(c for (ty, _), c in matmul_types.items() if ty in F16_TYPES)
        flops_tok = 2 * model.n_matmul_params - f16 + f16 / k.f16_factor
        if k.attention:
            flops_tok += attention_flops(model, min(n_ubatch, n_ctx) / 2)
        out += share * flops_tok / ((g.fp16_tflops or 20.0) * k.prefill_efficiency * 1e12)
    return out
