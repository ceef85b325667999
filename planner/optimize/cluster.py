"""Plans over several machines (llama.cpp RPC): which nodes to use, the device order and the split, and the
per-tensor types and context under the same goals as one box. Pure, given the cluster.

llama.cpp puts every RPC server's devices before the main host's own (src/llama.cpp: "add RPC servers at the
front of the list"), in --rpc order, and runs the layers in device order. A hidden state goes from one server
to the next through the main host (ggml-rpc copies tensors between servers that way), so each server used
costs the same round trips wherever it stands in the order; what the order sets is which device holds the
output layer (the last). The split puts the layers on the fastest devices first, as many as each holds
(a waterfill by decode speed), and is also tried as llama.cpp splits by default (by free memory).
"""

from __future__ import annotations

from itertools import combinations

from pydantic import BaseModel, Field

from planner.estimate import RuntimeOptions, estimate, ftype_tensor_types
from planner.estimate.result import GPU_BUFFER_PREFIX
from planner.estimate.throughput import _cpu_cores, _cpu_memory_gbps
from planner.model.spec import ModelSpec
from planner.optimize.plan import PlanOption, PlanRequest, PlanResult
from planner.optimize.search import make_plan, score
from planner.profile.cluster import Cluster, Node
from planner.profile.hardware import GPU, HardwareProfile, RPCLink

MAX_WORKERS_SEARCHED = 6  # subsets of up to this many workers are all tried (2^6 = 64 plans at most)


class NodeUse(BaseModel):
    """One machine's part in a cluster plan."""
    node: str
    host: str
    port: int | None = None  # the worker's ggml-rpc-server port; None for the main host
    main: bool = False
    devices: list[int] = Field(default_factory=list, description="indices into the plan's devices")
    rpc_devices: list[str] = Field(default_factory=list, description="ggml-rpc-server -d names")
    weights_bytes: int = 0  # what llama.cpp sends it over the link at load (none with the server's cache warm)
    send_seconds: float = 0.0


class ClusterPlan(BaseModel):
    cluster: str
    result: PlanResult
    hardware: HardwareProfile
    nodes: list[NodeUse]
    network_ms_per_token: float
    tried: list[str] = Field(default_factory=list, description="each node set tried and what it gave")


def rpc_device_name(gpu: GPU, i: int) -> str:
    """The name ggml-rpc-server and llama.cpp give a backend's i-th device (CUDA0, MTL0, Vulkan0, CPU)."""
    return "CPU" if gpu.backend == "cpu" else f"{GPU_BUFFER_PREFIX[gpu.backend]}{i}"


def served_devices(node: Node) -> list[GPU]:
    """What a worker's ggml-rpc-server offers: its GPUs, or its CPU (with its RAM) when it has none."""
    p = node.profile
    if p.gpus:
        return list(p.gpus)
    cap = p.ram.available_bytes or p.ram.total_bytes
    return [GPU(vendor="other", name=f"CPU ({p.cpu.model})", vram_total_bytes=cap,
                bandwidth_gbps=_cpu_memory_gbps(p), backend="cpu", cpu_cores=_cpu_cores(p, None), overhead_bytes=0)]


def cluster_hardware(cluster: Cluster, workers: list[Node]) -> HardwareProfile:
    """The devices llama.cpp sees on the main host with these workers' servers in --rpc order: theirs first,
    then its own GPUs; the main host's CPU and RAM are the host's."""
    main = cluster.main.profile
    gpus: list[GPU] = []
    for w in workers:
        link = cluster.link_to(w)
        for i, g in enumerate(served_devices(w)):
            rpc = RPCLink(node=w.name, host=w.host, port=w.port, device=rpc_device_name(g, i), server_index=i,
                          gbit_s=link.gbit_s, rtt_ms=link.rtt_ms)
            gpus.append(g.model_copy(update={"index": len(gpus), "name": f"{w.name}: {_short(g.name)}", "rpc": rpc,
                                             "vram_free_bytes": None}))
    gpus += [g.model_copy(update={"index": len(gpus) + i, "name": f"{cluster.main.name}: {_short(g.name)}"})
             for i, g in enumerate(main.gpus)]
    names = " + ".join([cluster.main.name, *(w.name for w in workers)])
    return main.model_copy(update={"name": f"{cluster.name} ({names})", "gpus": gpus,
                                   "source": cluster.source})


def _short(name: str) -> str:
    return name.replace("NVIDIA GeForce ", "").replace("NVIDIA ", "").replace("AMD Radeon ", "Radeon ")


def speed_split(spec: ModelSpec, hw: HardwareProfile, req: PlanRequest) -> list[float] | None:
    """-ts that puts the layers on the fastest devices first, each holding what its memory allows at a Q4_K_M
    reference (layers at the largest context the request allows; the output layer with the last device)."""
    if not hw.gpus:
        return None
    ref = spec.with_types(ftype_tensor_types(spec, "Q4_K_M"))
    o = RuntimeOptions(n_ctx=req.n_ctx or req.min_ctx or min(4096, spec.n_ctx_train), n_gpu_layers=-1,
                       flash_attn=req.flash_attn if req.flash_attn is not None else True)
    e = estimate(ref, hw, o, margin=req.margin)
    per_layer, fixed = {}, {}
    for d in e.devices:
        if d.kind != "gpu" or not d.n_layers:
            continue
        per_layer[d.index] = (d.memory.weights_bytes + d.memory.kv_bytes) / d.n_layers
        fixed[d.index] = d.memory.total_bytes - d.memory.weights_bytes - d.memory.kv_bytes
    if not per_layer:
        return None
    free = {g.index: max(0.0, g.usable_bytes * (1 - req.margin) - fixed.get(g.index, 0)) for g in hw.gpus}
    # a layer's bytes at the reference, or less when the reference is too big for all the devices together
    # (the types are then sized down to fit, at the same share per device)
    unit = min(max(per_layer.values()), 0.97 * sum(free.values()) / (spec.n_layers + 1))
    room = {i: int(f // unit) for i, f in free.items()}
    left = spec.n_layers + 1
    counts = [0] * len(hw.gpus)
    for g in sorted(hw.gpus, key=lambda g: -_decode_rate(g)):
        take = min(room[g.index], left)
        counts[g.index] = take
        left -= take
    if left:
        return None
    return [float(c) for c in counts]


def _decode_rate(g: GPU) -> float:
    """GB/s of Q4_K weights the device reads per decoded token (its bandwidth at its efficiency; a CPU device at
    the slower of its memory and its cores' kernels)."""
    from planner.estimate.throughput import KernelScale, _gpu_speed, read_rate_gbps
    if g.backend == "cpu":
        return read_rate_gbps("Q4_K", g.bandwidth_gbps, g.cpu_cores or 1, KernelScale(1.0))
    return g.bandwidth_gbps * _gpu_speed(g).bw_efficiency


def plan_cluster(spec: ModelSpec, cluster: Cluster, req: PlanRequest) -> ClusterPlan:
    """The best plan over every set of nodes (the main host always: it runs llama-server), each with the split by
    speed and llama.cpp's split by free memory, every layer on a device (-ngl all: llama.cpp's RPC runs no host
    weights on a device, so a split with layers on the main host's CPU is not one it runs well)."""
    best: tuple | None = None
    tried = []
    workers = cluster.workers[:MAX_WORKERS_SEARCHED]
    for k in range(len(workers) + 1):
        for subset in combinations(workers, k):
            hw = cluster_hardware(cluster, _ordered(list(subset)))
            if not hw.gpus or (req.tensor_split and len(req.tensor_split) != len(hw.gpus)):
                continue  # a pinned -ts names one share per device of one node set
            for split in _splits(spec, hw, req):
                r = make_plan(spec, hw, req.model_copy(update={"n_gpu_layers": -1, "tensor_split": split}))
                names = "+".join([cluster.main.name, *(w.name for w in subset)])
                if r.best is None:
                    tried.append(f"{names} ({'speed' if split else 'memory'} split): {r.nearest or 'no fit'}")
                    continue
                b = r.best
                tried.append(f"{names} ({'speed' if split else 'memory'} split): {b.bits_per_weight:.2f} bpw, "
                             f"{b.estimate.throughput.decode_tps:.1f} tok/s, ctx {b.options.n_ctx}")
                if best is None or score(b, req.goal) < score(best[1].best, req.goal):
                    best = (hw, r, list(subset))
    if best is None:
        hw = cluster_hardware(cluster, workers)
        res = make_plan(spec, hw, req.model_copy(update={"n_gpu_layers": -1}))
        return ClusterPlan(cluster=cluster.name, result=res, hardware=hw, nodes=[], network_ms_per_token=0.0,
                           tried=tried)
    hw, res, used = best
    res = res.model_copy(update={"best": _pinned_split(spec, hw, res.best, req)})
    return ClusterPlan(cluster=cluster.name, result=res, hardware=hw, nodes=_uses(cluster, used, hw, res.best),
                       network_ms_per_token=_network_ms(spec, hw, res.best), tried=tried)


def _pinned_split(spec: ModelSpec, hw: HardwareProfile, best: PlanOption, req: PlanRequest) -> PlanOption:
    """The plan with -ts as layer counts per device, so that llama.cpp splits as estimated whatever memory it
    finds free at load (its default split is by free memory then); the output layer counts with the last."""
    counts = [float(d.n_layers) for d in best.estimate.devices if d.kind == "gpu"]
    last = max(i for i, c in enumerate(counts) if c)
    counts[last] += 1
    o = best.options.model_copy(update={"tensor_split": counts})
    e = estimate(spec.with_types(best.types), hw, o, margin=req.margin, depth=req.depth)
    return best.model_copy(update={"options": o, "estimate": e, "label": "cluster",
                                   "why": _describe(spec, hw, e, best, o)})


def _describe(spec: ModelSpec, hw: HardwareProfile, e, best: PlanOption, o: RuntimeOptions) -> str:
    where = ", ".join(f"{d.n_layers} on {d.name}" for d in e.devices if d.kind == "gpu" and d.n_layers)
    kv = "" if o.cache_type_k == "f16" else f", {o.cache_type_k} KV cache"
    return (f"{spec.n_layers} layers: {where}; at {best.bits_per_weight:.2f} bits/weight{kv}, {o.n_ctx} context: "
            f"predicted KLD {best.predicted_kld:.4f}, {e.throughput.decode_tps:.1f} tok/s")


def _ordered(workers: list[Node]) -> list[Node]:
    """--rpc order: the cluster file's (it changes no per-token cost; module doc)."""
    return workers


def _splits(spec: ModelSpec, hw: HardwareProfile, req: PlanRequest) -> list[list[float] | None]:
    if req.tensor_split:
        return [req.tensor_split]
    fast = speed_split(spec, hw, req) if len(hw.gpus) > 1 else None
    return [None] + ([fast] if fast else [])


def _uses(cluster: Cluster, used: list[Node], hw: HardwareProfile, best: PlanOption) -> list[NodeUse]:
    devs = best.estimate.devices
    out = []
    for node in [cluster.main, *used]:
        idx = [g.index for g in hw.gpus if (g.rpc.node if g.rpc else cluster.main.name) == node.name]
        wbytes = sum(devs[i].memory.weights_bytes for i in idx)
        link = cluster.link_to(node)
        out.append(NodeUse(node=node.name, host=node.host, port=None if node.main else node.port, main=node.main,
                           devices=idx, rpc_devices=[hw.gpus[i].rpc.device for i in idx if hw.gpus[i].rpc],
                           weights_bytes=wbytes,
                           send_seconds=0.0 if node.main else round(wbytes * 8 / (link.gbit_s * 1e9), 1)))
    return out


def _network_ms(spec: ModelSpec, hw: HardwareProfile, best: PlanOption) -> float:
    from planner.estimate.throughput import rpc_seconds
    layers = {d.index if d.kind == "gpu" else -1: d.n_layers for d in best.estimate.devices}
    tg, _ = rpc_seconds(spec, hw, layers, 0, best.options.n_ubatch)
    return round(tg * 1e3, 3)
