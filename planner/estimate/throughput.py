"""Decode and prefill tok/s for a placement (pure; constants from planner/data/backends.yaml).

Decode, per token: each device reads its weights (only the active experts of MoE layers) and
its KV cache up to the context depth at its effective bandwidth, plus a fixed cost: per layer on
a GPU (kernel launches and synchronisation: it dominates small models on fast GPUs, where a pure
bandwidth roofline is 3x off), per graph node on the CPU (a thread barrier after every node: a
Mamba or MoE layer has 2-3x a Llama layer's nodes, graph.py). Devices run one after the other
(layer split).
Prefill: FLOPs = 2 x the weights multiplied per token (active experts only; lookup tables left
out) at the device's effective rate, plus on the CPU a cost per node and token (the elementwise
work); weights on the host are streamed over PCIe to the GPU for big batches (op offload).
"""

from __future__ import annotations

from planner.estimate.constants import backend, backends
from planner.estimate.placement import CPU
from planner.estimate.result import Throughput
from planner.model.spec import ModelSpec
from planner.profile.hardware import HardwareProfile


def _cpu_gflops(hw: HardwareProfile) -> float:
    per_core = backend("cpu")["prefill_gflops_per_core"]
    f = set(hw.cpu.flags)
    scale = 1.5 if ("avx512f" in f or "amx_int8" in f) else (1.0 if "avx2" in f or "i8mm" in f or "dotprod" in f else 0.5)
    return hw.cpu.cores * per_core * scale


def throughput(model: ModelSpec, hw: HardwareProfile, read_per_token: dict[int, int], kv: dict[int, int],
               layers: dict[int, int], n_ctx: int, depth: int, flash_attn: bool, n_ubatch: int = 512, *,
               nodes: dict[int, float]) -> Throughput:
    """nodes: graph nodes per device (graph.layer_nodes summed over the layers each holds)."""
    notes = []
    t_decode = 0.0
    frac = min(depth, n_ctx) / max(n_ctx, 1)
    for d in set(read_per_token) | set(kv):
        nbytes = read_per_token.get(d, 0) + kv.get(d, 0) * frac
        if d == CPU:
            c = backend("cpu")
            # a copy test measured on this box is closer to what decode reaches than a spec sheet
            key = "decode_bw_efficiency_measured" if hw.ram.bandwidth_source.startswith("measured") \
                else "decode_bw_efficiency"
            bw = hw.ram.bandwidth_gbps * c[key]
            t_decode += nbytes / (bw * 1e9) + nodes.get(CPU, 0) * c["decode_node_us"] / 1e6
        else:
            g = hw.gpus[d]
            c = backend(g.backend)
            bw = g.bandwidth_gbps * c["decode_bw_efficiency"]
            t_decode += nbytes / (bw * 1e9) + layers.get(d, 0) * c["decode_layer_ms"] / 1e3
    flops_tok = 2 * model.n_matmul_params
    gpu_layers = sum(v for d, v in layers.items() if d != CPU)
    if hw.gpus and (gpu_layers or n_ubatch >= 32):  # op offload: big batches run on the GPU
        g = hw.gpus[0]
        eff = backend(g.backend)["prefill_flops_efficiency"]
        tflops = (g.fp16_tflops or 20.0) * eff
        t_pp = flops_tok / (tflops * 1e12)
        host_bytes = read_per_token.get(CPU, 0)
        if host_bytes:
            # op offload streams host weights to the GPU once per ubatch of n_ubatch tokens
            t_pp += host_bytes / (backends()["op_offload_gbps"] * 1e9) / n_ubatch
            notes.append("prefill streams host-resident weights to the GPU for each batch")
    else:
        t_pp = flops_tok / (_cpu_gflops(hw) * 1e9) + sum(nodes.values()) * backend("cpu")["prefill_node_us"] / 1e6
    if not flash_attn:
        notes.append("flash attention off: long prompts are slower than shown")
    cal = hw.calibration
    if cal and cal.runs:
        t_decode /= cal.decode_factor
        t_pp /= cal.prefill_factor
        notes.append(f"calibrated by {cal.runs} verify run(s) on this machine: decode x{cal.decode_factor:.2f}, "
                     f"prefill x{cal.prefill_factor:.2f}")
    return Throughput(decode_tps=round(1.0 / t_decode, 2) if t_decode > 0 else 0.0,
                      prefill_tps=round(1.0 / t_pp, 1), decode_depth=depth, notes=notes)
