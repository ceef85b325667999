"""Per-device memory: exact weight bytes placed by llama.cpp's rules, KV cache, compute, overhead.

Pure functions of (ModelSpec with types, HardwareProfile, RuntimeOptions); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.estimate.compute import compute_buffers
from planner.estimate.constants import backend
from planner.estimate.ggml_types import row_bytes, tensor_bytes
from planner.estimate.options import RuntimeOptions
from planner.estimate.placement import CPU, layer_devices, tensor_devices
from planner.estimate.quant_mix import source_type
from planner.model.spec import ModelSpec
from planner.profile.hardware import HardwareProfile

MiB = 1024 * 1024
GGUF_ALIGN = 32
KV_PAD = 256  # llama-context.cpp: cparams.n_ctx = GGML_PAD(n_ctx, 256)


def pad(x: int, n: int) -> int:
    return (x + n - 1) // n * n


def repack_types(flags: list[str], arch: str) -> set[str]:
    """Types the CPU backend repacks into CPU_REPACK (ggml-cpu/repack.cpp, optimal_repack_type)."""
    f = set(flags)
    if arch.startswith(("arm", "aarch")) or "neon" in f:
        out = {"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"}
        if "i8mm" in f or "dotprod" in f:
            out |= {"Q5_K", "Q6_K", "Q8_0"}
        return out
    out = set()
    if "avx2" in f:
        out |= {"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"}
    if "avx512f" in f:
        out.add("Q2_K")
    return out


@dataclass
class Breakdown:
    weights: dict[int, int] = field(default_factory=dict)
    repack: int = 0
    mapped: int = 0
    kv: dict[int, int] = field(default_factory=dict)
    rs: dict[int, int] = field(default_factory=dict)  # recurrent state (llama.cpp's RS buffers)
    compute: dict[int, int] = field(default_factory=dict)
    overhead: dict[int, int] = field(default_factory=dict)
    output: int = 0
    layers: dict[int, int] = field(default_factory=dict)
    read_per_token: dict[int, int] = field(default_factory=dict)  # decode bytes read per device
    n_ctx: int = 0
    cells_full: int = 0
    cells_swa: int = 0


def kv_cells(model: ModelSpec, opts: RuntimeOptions) -> tuple[int, int, int]:
    """(n_ctx after padding, cells of a full layer, cells of an SWA layer), all streams together."""
    n_ctx = pad(opts.n_ctx, KV_PAD)
    n_seq = opts.n_seq
    if opts.kv_unified:
        per_stream, n_stream = n_ctx, 1
    else:
        per_stream = pad(n_ctx // n_seq, KV_PAD)
        n_ctx, n_stream = per_stream * n_seq, n_seq
    windows = [lay.window for lay in model.layers if lay.attn == "swa" and lay.window]
    swa = per_stream
    if windows and not opts.swa_full:
        swa = pad(min(per_stream, max(windows) * (n_seq if opts.kv_unified else 1) + opts.n_ubatch), KV_PAD)
    return n_ctx, per_stream * n_stream, swa * n_stream


def rs_layer_bytes(model: ModelSpec, n_seq: int) -> int:
    """Recurrent state of one recurrent layer: n_embd_r + n_embd_s f32 values per sequence slot
    (llama-memory-recurrent.cpp: cache_r_l/cache_s_l of mem_size = max(1, n_seq_max) rows, F32 as
    llama-model.cpp creates it; no rollback snapshots, n_rs_seq = 0 by default)."""
    rec = model.recurrent
    if rec is None:
        return 0
    return (rec.r_elements + rec.s_elements) * 4 * max(1, n_seq)


def kv_layer_bytes(model: ModelSpec, il: int, cells: int, ctk: str, ctv: str) -> int:
    lay = model.layers[il]
    if lay.attn in ("recurrent", "none") or lay.n_head_kv == 0:
        return 0
    k = row_bytes(ctk.upper(), lay.n_head_kv * model.head_dim_k) * cells
    v = 0 if model.mla else row_bytes(ctv.upper(), lay.n_head_kv * model.head_dim_v) * cells
    return k + v


def tensor_sizes(model: ModelSpec) -> list[int]:
    """Bytes of each tensor at its type (the source type when none is set), in file order."""
    return [tensor_bytes(t.type or source_type(t), t.shape) for t in model.tensors]


def memory_breakdown(model: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions,
                     sizes: list[int] | None = None) -> Breakdown:
    """sizes: tensor_sizes(model), when the caller has it already."""
    n_gpus = len(hw.gpus)
    free = [g.usable_bytes for g in hw.gpus]
    devs = tensor_devices(model, n_gpus, opts, free)
    layer_dev, out_dev = layer_devices(model.n_layers, n_gpus, opts, free)
    sizes = sizes if sizes is not None else tensor_sizes(model)
    # with a GPU, its host buffer type comes before the repack types in llama.cpp's CPU
    # buffer list (llama-model.cpp make_cpu_buft_list), so nothing is repacked
    rp = repack_types(hw.cpu.flags, hw.cpu.arch) if n_gpus == 0 else set()
    b = Breakdown()
    weights, reads_of = b.weights, b.read_per_token
    moe, tied = model.moe, model.tied_embeddings
    # one pass in file order: weights per device, repacked copies, the mmap span, bytes read
    # per token, and the host layers' weights a GPU stages for big batches (op offload)
    offset, span_lo, span_hi = 0, None, 0
    staged_layer: dict[int, dict[str, int]] = {}
    for t, nb in zip(model.tensors, sizes, strict=True):
        d = devs[t.name]
        weights[d] = weights.get(d, 0) + nb
        il = t.layer
        if d == CPU:
            ty = t.type or source_type(t)
            if ty in rp and len(t.shape) >= 2 and t.name != "token_embd.weight" and t.shape[1] % 8 == 0 \
                    and "ffn_gate_inp" not in t.name:
                b.repack += nb
            elif opts.mmap:
                span_lo = offset if span_lo is None else span_lo
                span_hi = offset + nb
            if n_gpus and il is not None and len(t.shape) >= 2:
                kind = "attention" if t.role.startswith("attn") else "ffn"
                per = staged_layer.setdefault(il, {"attention": 0, "ffn": 0})
                per[kind] += nb
        if il is not None or t.name == "output.weight" or (t.name == "token_embd.weight" and tied):
            reads = nb
            if moe and "_exps" in t.name:
                reads = nb * moe.n_expert_used // moe.n_expert
            if t.name == "token_embd.weight":
                d = out_dev  # tied: read as the output matrix
            reads_of[d] = reads_of.get(d, 0) + reads
        offset = (offset + nb + GGUF_ALIGN - 1) // GGUF_ALIGN * GGUF_ALIGN  # pad(), inline: hot loop
    dup = "output.weight (token_embd duplicated)"
    if dup in devs:
        emb = model.tensor("token_embd.weight")
        weights[devs[dup]] = weights.get(devs[dup], 0) + tensor_bytes(emb.type or source_type(emb), emb.shape)
    if opts.mmap and span_lo is not None:
        # llama.cpp maps the file span of host tensors (llama_model_loader::get_mapping_range)
        # and reports it whole, GPU and repacked tensors inside the span included. What must
        # stay resident is less: the repacked copies plus the host tensors used from the map,
        # which is what weights_bytes (and so "fits") counts.
        b.mapped = span_hi - span_lo
    for d in layer_dev:
        b.layers[d] = b.layers.get(d, 0) + 1
    # KV cache
    n_ctx, cells_full, cells_swa = kv_cells(model, opts)
    b.n_ctx, b.cells_full, b.cells_swa = n_ctx, cells_full, cells_swa
    for il, lay in enumerate(model.layers):
        cells = cells_swa if lay.attn == "swa" else cells_full
        d = layer_dev[il] if opts.offload_kqv else CPU
        b.kv[d] = b.kv.get(d, 0) + kv_layer_bytes(model, il, cells, opts.cache_type_k, opts.cache_type_v)
        if lay.attn == "recurrent" or (model.recurrent and model.recurrent.in_attention_layers):
            rs = rs_layer_bytes(model, opts.n_seq)
            b.rs[d] = b.rs.get(d, 0) + rs
            reads_of[d] = reads_of.get(d, 0) + rs  # read (and written) whole every token
    # compute buffers
    per_stream_swa = cells_swa // (1 if opts.kv_unified else opts.n_seq)
    per_stream_full = cells_full // (1 if opts.kv_unified else opts.n_seq)
    if n_gpus == 0:
        b.compute[CPU], _ = compute_buffers(model, per_stream_full, opts.n_ubatch, opts.flash_attn, per_stream_swa,
                                            False, n_seq=opts.n_seq)
    else:
        staged = staged_host_weights(model, devs, out_dev, staged_layer)
        dev_buf, host_buf = compute_buffers(model, per_stream_full, opts.n_ubatch, opts.flash_attn, per_stream_swa,
                                            True, staged, n_seq=opts.n_seq)
        copies = 4 if (n_gpus > 1 and CPU not in layer_dev and not opts.override_tensor and opts.n_cpu_moe == 0
                       and not opts.cpu_moe) else 1  # pipeline parallel: GGML_SCHED_MAX_COPIES
        # every GPU gets a compute buffer: big batches run host weights there too (op offload)
        for g in range(n_gpus):
            b.compute[g] = dev_buf * copies
        host_full, _ = compute_buffers(model, per_stream_full, opts.n_ubatch, opts.flash_attn, per_stream_swa, False,
                                       n_seq=opts.n_seq)
        b.compute[CPU] = host_full if CPU in layer_dev else host_buf
    # logits output buffer on the host: n_vocab x n_seq outputs x f32
    b.output = model.n_vocab * opts.n_seq * 4
    # runtime overhead
    cal = hw.calibration
    for g, gpu in enumerate(hw.gpus):
        measured = cal.gpu_overhead_bytes[g] if cal and g < len(cal.gpu_overhead_bytes) else None
        b.overhead[g] = (gpu.overhead_bytes if gpu.overhead_bytes is not None else measured if measured is not None
                         else backend(gpu.backend)["overhead_mib"] * MiB)
    b.overhead[CPU] = (cal.host_overhead_bytes if cal and cal.host_overhead_bytes is not None
                       else backend("cpu")["overhead_mib"] * MiB)
    return b


def staged_host_weights(model: ModelSpec, devs: dict[str, int], out_dev: int,
                        per_layer: dict[int, dict[str, int]]) -> dict[str, int]:
    """Host weights the GPU copies into its compute buffer per phase when it runs their ops.

    per_layer: bytes of each host layer's attention and FFN weights (2D tensors).
    Checked on the H100 runs (bench/data): ngl 0 puts output.weight (Q6_K, 411 MiB) beside the
    logits: 258.5 + 411 = 669.5 MiB, measured 669.48; ngl 16 puts one host layer's attention
    weights beside the attention scores: 564 + 23.5 = 587.5, measured 585.0.
    """
    staged = {"logits": 0, "attention": 0, "ffn": 0}
    if out_dev == CPU:
        name = "output.weight" if "output.weight" in devs else "token_embd.weight"
        t = model.tensor(name)
        staged["logits"] = tensor_bytes(t.type or source_type(t), t.shape)
    for d in per_layer.values():
        for k, v in d.items():
            staged[k] = max(staged[k], v)
    return staged
