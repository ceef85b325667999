"""Plain-text views of a profile, a model and an estimate: what the CLI prints and the wizard shows
(--json bypasses all of this)."""

from __future__ import annotations

from collections import defaultdict

from planner.estimate.result import DeviceEstimate, Estimate
from planner.model.ggml_types import tensor_bytes
from planner.model.spec import ModelSpec
from planner.profile.hardware import HardwareProfile
from planner.units import GiB, gib


def fmt_params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.0f} M"


def cluster_text(c) -> str:
    """A cluster as the wizard shows it: each node's box, its role and its link to the main host."""
    lines = [f"cluster {c.name}  ({c.source})" + (f": {c.title}" if c.title else "")]
    for n in c.nodes:
        role = "main host (llama-server)" if n.main else \
            f"worker {n.host}:{n.port}, {c.link_to(n).gbit_s:g} Gbit/s, {c.link_to(n).rtt_ms:g} ms round trip"
        gpus = ", ".join(f"{g.name} {gib(g.vram_total_bytes)}" for g in n.profile.gpus) or \
            f"CPU only ({n.profile.cpu.model}, {gib(n.profile.ram.total_bytes)} RAM)"
        lines.append(f"  {n.name:16s} {role}: {gpus}")
    return "\n".join(lines)


def profile_text(p: HardwareProfile) -> str:
    lines = [f"{p.name}  ({p.source}, {p.os})",
             f"  CPU   {p.cpu.model}: {p.cpu.cores} cores / {p.cpu.threads} threads, {p.cpu.arch}"
             + (f", {' '.join(p.cpu.flags)}" if p.cpu.flags else ""),
             f"  RAM   {gib(p.ram.total_bytes)} total"
             + (f", {gib(p.ram.available_bytes)} available" if p.ram.available_bytes else "")
             + (f" ({gib(p.ram.reserve_bytes)} kept for the OS)" if p.ram.reserve_bytes else "")
             + f", {p.ram.bandwidth_gbps:.1f} GB/s ({p.ram.bandwidth_source})"]
    if p.cpu_speed:
        c = p.cpu_speed
        lines.append(f"  speed CPU measured by llama.cpp at {c.threads} threads ({c.measured_at}): weights read at up "
                     f"to {c.memory_gbps:.1f} GB/s, kernels x{c.kernel_scale:.2f} / prompt x{c.prefill_scale:.2f} "
                     f"the reference box's per core, {c.decode_node_us:.2f} us per graph node"
                     + (" (other programs were busy: plan profile --remeasure when it is quiet)" if c.busy else "")
                     + (f" (the machine's speed moved {c.moved():.0%} while it was timed: speed figures carry "
                        "that much)" if c.moved() else ""))
    if not p.gpus:
        lines.append("  GPU   none")
    for g in p.gpus:
        free = f", {gib(g.vram_free_bytes)} free" if g.vram_free_bytes is not None else ""
        extra = ", unified memory (GPU-usable share)" if g.unified_memory else ""
        tf = f", {g.fp16_tflops:g} fp16 TFLOPS" if g.fp16_tflops else ""
        lines.append(f"  GPU{g.index}  {g.name}: {gib(g.vram_total_bytes)}{free}, {g.bandwidth_gbps:.0f} GB/s{tf}, "
                     f"{g.backend}{extra}")
    for n in p.notes:
        lines.append(f"  note  {n}")
    return "\n".join(lines)


def model_text(m: ModelSpec, tensors: bool = False) -> str:
    moe = (f", MoE {m.moe.n_expert} experts ({m.moe.n_expert_used} active, ff {m.moe.expert_ff}"
           + (f", {m.moe.n_shared_expert} shared" if m.moe.n_shared_expert else "")
           + (f", {m.moe.n_dense_lead} dense first" if m.moe.n_dense_lead else "") + ")") if m.moe else ""
    swa = [lay for lay in m.layers if lay.attn == "swa"]
    attn = f"{len(swa)} of {m.n_layers} layers sliding-window ({swa[0].window})" if swa else "full attention"
    lines = [f"{m.name}  [{m.source}]",
             f"  architecture {m.architecture}, {m.n_layers} layers, hidden {m.n_embd}, FFN {m.n_ff}{moe}",
             f"  heads {m.n_head}, KV heads {m.n_kv_heads}, head dim {m.head_dim_k}/{m.head_dim_v}, {attn}"
             + (f", MLA rank {m.mla.kv_lora_rank}" if m.mla else ""),
             f"  vocab {m.n_vocab}, {'tied' if m.tied_embeddings else 'separate'} output, trained context {m.n_ctx_train}",
             f"  parameters {fmt_params(m.n_params)}" + (f" ({fmt_params(m.n_active_params)} active)" if m.moe else "")
             + f", {len(m.tensors)} tensors" + (f", file type {m.file_type}" if m.file_type else "")]
    for n in m.notes:
        lines.append(f"  note  {n}")
    if tensors:
        for t in m.tensors:
            lines.append(f"    {t.name:40s} {str(t.shape):28s} {t.type or '-'}")
    return "\n".join(lines)


def estimate_text(e: Estimate, header: str) -> str:
    lines = [header, "",
             f"  {'device':34s} {'weights':>10s} {'KV':>10s} {'compute':>10s} {'overhead':>10s} {'total':>10s} "
             f"{'capacity':>10s} {'free':>10s}"]
    for d in e.devices:
        m = d.memory
        w = m.weights_bytes + m.output_bytes
        name = (d.name[:26] + f" ({d.n_layers} L)") if d.kind == "gpu" or d.n_layers else d.name[:34]
        lines.append(f"  {name:34s} {gib(w):>10s} {gib(m.kv_bytes):>10s} {gib(m.compute_bytes):>10s} "
                     f"{gib(m.overhead_bytes):>10s} {gib(m.total_bytes):>10s} {gib(d.capacity_bytes):>10s} "
                     f"{gib(d.free_bytes):>10s}")
    host = e.devices[-1].memory
    if host.mapped_bytes:
        lines.append(f"  (host weights are read through a {gib(host.mapped_bytes)} memory map of the file"
                     + (f"; {gib(host.repack_bytes)} of them are repacked into RAM for the CPU's kernels" if host.repack_bytes else "")
                     + ")")
    t = e.throughput
    lines += ["", f"  decode  {t.decode_tps:8.1f} tok/s    prefill {t.prefill_tps:9.1f} tok/s    "
                  f"context {e.n_ctx}", ""]
    verdict = "FITS" if e.fits else "DOES NOT FIT"
    lines.append(f"  {verdict} (each device keeps a {e.margin:.0%} margin)")
    for n in e.notes + t.notes:
        lines.append(f"  note  {n}")
    return "\n".join(lines)


def memory_bar(d: DeviceEstimate, width: int = 30) -> str:
    """weights █, KV ▓, compute ▒, overhead ░, free · against the device's capacity."""
    m, cap = d.memory, max(d.capacity_bytes, 1)
    parts = [(m.weights_bytes, "█"), (m.kv_bytes, "▓"), (m.compute_bytes + m.output_bytes, "▒"),
             (m.overhead_bytes, "░")]
    cells = ""
    for nbytes, ch in parts:
        cells += ch * round(width * nbytes / cap)
    cells = cells[:width] + "·" * max(0, width - len(cells))
    over = " OVER" if m.total_bytes > cap else ""
    return f"{d.name[:20]:20s} {cells} {m.total_bytes / GiB:5.1f}/{cap / GiB:.0f} GiB{over}"


def layer_map(model: ModelSpec, types: dict[str, str]) -> str:
    """Mean bits per weight of each layer as one digit (9 = 9+ bits), embeddings/output apart."""
    nb: dict[int, float] = defaultdict(float)
    ne: dict[int, int] = defaultdict(int)
    for t in model.tensors:
        if t.layer is not None and len(t.shape) > 1:
            nb[t.layer] += tensor_bytes(types.get(t.name) or t.type or "F16", t.shape) * 8
            ne[t.layer] += t.n_elements
    digits = "".join(str(min(9, round(nb[i] / ne[i]))) if ne[i] else "-" for i in range(model.n_layers))
    rows = [digits[i:i + 60] for i in range(0, len(digits), 60)]
    emb = types.get("token_embd.weight", "?")
    out = types.get("output.weight", "tied")
    return "bits per layer: " + "\n                ".join(rows) + f"\nembedding {emb}, output {out}"
