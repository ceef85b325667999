"""estimate(): ModelSpec (+ types) x HardwareProfile x RuntimeOptions -> Estimate. Pure."""

from __future__ import annotations

from typing import NamedTuple

from planner.estimate.memory import matmul_rows, matmul_types, memory_breakdown
from planner.estimate.options import RuntimeOptions
from planner.estimate.placement import CPU
from planner.estimate.result import GPU_BUFFER_PREFIX, DeviceEstimate, Estimate, MemoryParts
from planner.estimate.throughput import throughput
from planner.model.spec import ModelSpec
from planner.profile.hardware import HardwareProfile
from planner.units import GiB, MiB


def estimate(model: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions, *, margin: float = 0.05,
             depth: int | None = None) -> Estimate:
    opts.check()
    opts.check_devices(len(hw.gpus))
    opts.check_experts(model.name, model.moe is not None)
    b = memory_breakdown(model, hw, opts)
    devices = []
    for g, gpu in enumerate(hw.gpus):
        mem = MemoryParts(weights_bytes=b.weights.get(g, 0), kv_bytes=b.kv.get(g, 0) + b.rs.get(g, 0),
                          compute_bytes=b.compute.get(g, 0), overhead_bytes=b.overhead.get(g, 0))
        dev = _buffer_name(gpu, sum(1 for x in hw.gpus[:g] if x.rpc is None))
        bufs = {f"{dev} model": mem.weights_bytes / MiB, f"{dev} KV": b.kv.get(g, 0) / MiB,
                f"{dev} compute": mem.compute_bytes / MiB}
        if b.rs.get(g):
            bufs[f"{dev} RS"] = b.rs[g] / MiB
        devices.append(DeviceEstimate(name=gpu.name, kind="gpu", index=g, capacity_bytes=gpu.usable_bytes,
                                      memory=mem, n_layers=b.layers.get(g, 0),
                                      buffers_mib={k: round(v, 2) for k, v in bufs.items()}))
    host = MemoryParts(weights_bytes=b.weights.get(CPU, 0), kv_bytes=b.kv.get(CPU, 0) + b.rs.get(CPU, 0),
                       compute_bytes=b.compute.get(CPU, 0), overhead_bytes=b.overhead[CPU],
                       output_bytes=b.output, repack_bytes=b.repack, amx_bytes=b.amx, mapped_bytes=b.mapped)
    cap = hw.ram.available_bytes or hw.ram.total_bytes
    if hw.unified:
        cap -= sum(d.memory.total_bytes for d, g in zip(devices, hw.gpus, strict=True) if g.rpc is None)
    mapped_name = "CPU_Mapped model" if opts.mmap else "CPU model"
    mapped = host.mapped_bytes if opts.mmap else host.weights_bytes - host.repack_bytes - host.amx_bytes
    bufs = {mapped_name: mapped / MiB, "AMX model": host.amx_bytes / MiB, "CPU_REPACK model": host.repack_bytes / MiB,
            "CPU KV": b.kv.get(CPU, 0) / MiB, "CPU RS": b.rs.get(CPU, 0) / MiB,
            "CPU compute": host.compute_bytes / MiB, "CPU output": host.output_bytes / MiB}
    devices.append(DeviceEstimate(name=f"host RAM ({hw.cpu.model})", kind="cpu", capacity_bytes=cap, memory=host,
                                  n_layers=b.layers.get(CPU, 0),
                                  buffers_mib={k: round(v, 2) for k, v in bufs.items() if v}))
    thr = throughput(model, hw, b.read_per_token, b.kv, b.layers, b.n_ctx,
                     depth if depth is not None else 0, opts.flash_attn, opts.n_ubatch, nodes=b.nodes,
                     read_types=b.read_types, matmul_types=matmul_types(model), threads=opts.threads)
    fits = all(d.memory.total_bytes <= d.capacity_bytes * (1 - margin) for d in devices)
    notes = list(model.notes)
    if any(lay.attn == "swa" for lay in model.layers) and opts.swa_full:
        notes.append("--swa-full: sliding-window layers keep the whole context")
    per_seq = opts.n_ctx if opts.kv_unified else opts.n_ctx // opts.n_seq
    if per_seq > model.n_ctx_train:
        # llama-context.cpp warns alike ("n_ctx_per_seq > n_ctx_train -- possible training context overflow")
        notes.append(f"{per_seq} tokens of context per sequence is beyond the {model.n_ctx_train} the model was "
                     "trained on: past that, output degrades unless RoPE scaling is set (llama.cpp warns alike)")
    if hw.ram.reserve_bytes and host.total_bytes > cap / 2:
        notes.append(f"host RAM: {hw.ram.total_bytes / GiB:.2f} GiB less {hw.ram.reserve_bytes / GiB:.2f} GiB "
                     "kept for the OS and other programs (the target's ram.reserve_gib, default "
                     "planner/data/os_reserve.yaml; --ram N plans for N GiB)")
    if opts.n_gpu_layers > 0 and not hw.gpus:
        notes.append(f"--ngl {opts.n_gpu_layers} has no effect: the target has no GPU")
    return Estimate(model=model.name, devices=devices, throughput=thr, n_ctx=b.n_ctx, margin=margin,
                    fits=fits, weights_file_bytes=b.file_bytes, notes=notes)


class CPUFacts(NamedTuple):
    """What the CPU speed formulas (throughput.py) read of a model run wholly on the CPU."""
    read_types: dict[str, int]  # weight bytes a decoded token reads, by ggml type
    other_bytes: int  # the rest it reads (KV, recurrent states, F32 norms)
    matmul_types: dict[tuple[str, bool], int]  # weights a prompt token multiplies, by (type, expert matrix)
    nodes: float  # graph nodes of a token (graph.py)
    kv_per_cell: float  # KV cache bytes per token of context (read once per decoded token at that depth)
    matmul_rows: dict[tuple[str, bool], int]  # the output rows of those products, by the same keys


def cpu_facts(model: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions) -> CPUFacts:
    """The facts of a CPU-only run that its decode and prefill times are fitted against (bench/cpu_decode.py,
    planner/verify/cpu_bench.py)."""
    b = memory_breakdown(model, hw, opts.model_copy(update={"n_gpu_layers": 0}))
    typed = b.read_types.get(CPU, {})
    return CPUFacts(dict(typed), b.read_per_token.get(CPU, 0) - sum(typed.values()), matmul_types(model),
                    sum(b.nodes.values()), b.kv.get(CPU, 0) / max(b.n_ctx, 1), matmul_rows(model))


def _buffer_name(gpu, local: int) -> str:
    """llama.cpp's name for a device's buffers: CUDA0, MTL0, ... (local: its place among this machine's own
    GPUs); a device behind RPC is RPC<i>[host:port], i its place among that server's devices (ggml-rpc.cpp's
    buffer type name)."""
    if gpu.rpc:
        return f"RPC{gpu.rpc.server_index}[{gpu.rpc.endpoint}]"
    return f"{GPU_BUFFER_PREFIX[gpu.backend]}{local}"
