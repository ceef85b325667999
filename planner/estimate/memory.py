"""Per-device memory: exact weight bytes placed by llama.cpp's rules, KV cache, compute, overhead.

Pure functions of (ModelSpec with types, HardwareProfile, RuntimeOptions); no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from planner.estimate.compute import compute_buffers, pipeline_buffers
from planner.estimate.constants import backend
from planner.estimate.graph import layer_nodes
from planner.estimate.options import RuntimeOptions
from planner.estimate.placement import CPU, INPUT_TENSORS, layer_devices, tensor_device
from planner.estimate.quant_mix import source_type
from planner.model.ggml_types import block_size, row_bytes, tensor_bytes
from planner.model.spec import PREFILL_SKIPS, ModelSpec
from planner.profile.hardware import HardwareProfile
from planner.units import MiB

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


# The AMX buffer (ggml-cpu/amx/amx.cpp), first of the CPU's extra buffer types when llama.cpp is built for
# a CPU with AMX-INT8 and AVX512-VNNI (a native build there, or the sapphirerapids variant of the
# all-variants build): matrices multiplied by MUL_MAT (not experts' MUL_MAT_ID) of these types, whose
# rows (ne0) are a multiple
# of the type's alignment and whose output width (ne1) a multiple of 2 TILE_N = 32 (supports_op). Their
# bytes per block there (amx/mmq.cpp get_row_size): Q8_0 keeps an int32 compensation per block, Q4_K and
# Q5_K 4 more bytes, IQ4_XS 2; F16 is stored as it is.
AMX_ALIGN = {"Q4_0": 32, "Q4_1": 32, "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256, "IQ4_XS": 256, "F16": 16}
AMX_EXTRA_PER_BLOCK = {"Q8_0": 4, "Q4_K": 4, "Q5_K": 4, "IQ4_XS": 2}


def has_amx(flags: list[str]) -> bool:
    """Whether llama.cpp's CPU backend has the AMX buffer type on this CPU."""
    return {"amx_int8", "avx512_vnni"} <= set(flags)


def amx_bytes(ty: str, shape: list[int]) -> int | None:
    """A matrix's bytes in the AMX buffer, or None when the AMX buffer does not take it."""
    align = AMX_ALIGN.get(ty)
    if align is None or len(shape) < 2 or shape[0] % align or shape[1] % 32:
        return None
    if ty == "F16":
        return tensor_bytes(ty, shape)  # stored as it is (ggml_nbytes)
    # ggml_backend_amx_get_alloc_size: ne1 rows of the packed row size (a 3-D matrix's ne2 is not counted)
    return shape[1] * (row_bytes(ty, shape[0]) + AMX_EXTRA_PER_BLOCK.get(ty, 0) * (shape[0] // block_size(ty)))


@dataclass
class Breakdown:
    weights: dict[int, int] = field(default_factory=dict)
    repack: int = 0
    amx: int = 0  # bytes in the AMX buffer (as allocated there)
    mapped: int = 0
    kv: dict[int, int] = field(default_factory=dict)
    rs: dict[int, int] = field(default_factory=dict)  # recurrent state (llama.cpp's RS buffers)
    compute: dict[int, int] = field(default_factory=dict)
    overhead: dict[int, int] = field(default_factory=dict)
    output: int = 0
    layers: dict[int, int] = field(default_factory=dict)
    nodes: dict[int, float] = field(default_factory=dict)  # predicted graph nodes per device (graph.py)
    read_per_token: dict[int, int] = field(default_factory=dict)  # decode bytes read per device
    read_types: dict[int, dict[str, int]] = field(default_factory=dict)  # the weights' part of it by ggml type
    n_ctx: int = 0
    cells_full: int = 0
    cells_swa: int = 0
    file_bytes: int = 0  # all weight tensors at their types


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


def v_width(model: ModelSpec, il: int) -> int:
    lay = model.layers[il]
    return lay.n_head_kv * (lay.head_dim or model.head_dim_v)


def kv_layer_bytes(model: ModelSpec, il: int, cells: int, ctk: str, ctv: str, v_padded: int | None = None) -> int:
    """K and V cache of layer il. v_padded: the V row width of every layer when llama.cpp pads them to the
    widest (V stored transposed, no flash attention, widths that vary: llama-kv-cache.cpp
    TAG_V_CACHE_VARIABLE, n_embd_v_gqa_max)."""
    lay = model.layers[il]
    if lay.attn in ("recurrent", "none") or lay.n_head_kv == 0 or lay.kv_shared:
        return 0
    k = row_bytes(ctk.upper(), lay.n_head_kv * (lay.head_dim or model.head_dim_k)) * cells
    v = 0 if model.mla else row_bytes(ctv.upper(), v_padded or v_width(model, il)) * cells
    return k + v


PIPELINE_COPIES = 4  # GGML_SCHED_MAX_COPIES (ggml-backend.h): copies of each split's inputs under pipeline parallelism

# Architectures whose loaders skip the multi-token-prediction blocks unless asked to load them for
# MTP drafting (models/<arch>.cpp: mtp_flags |= TENSOR_SKIP when !ml.load_mtp; llama-model-loader.cpp
# then never allocates them). The others (glm4, bailingmoe2) load them "preserved but unused".
SKIPS_MTP = frozenset({"bailingmoe3", "cohere2moe", "deepseek2", "deepseek32", "deepseek4", "glm-dsa", "glm4moe",
                       "glm5-next", "hy_v3", "mimo2", "nemotron_h", "nemotron_h_moe", "qwen35", "qwen35moe",
                       "qwen3next", "step35"})


# Loaders that create the tied output matrix before token_embd (models/gemma3n.cpp, gemma4.cpp): a
# separate host copy (+1 MiB on a Gemma-4 twin whose embedding is 1 MiB)
OUTPUT_BEFORE_EMBD = frozenset({"gemma3n", "gemma4"})


@dataclass(slots=True)
class WeightUnit:
    """Weight tensors that llama.cpp always places together: a block's expert tensors, the rest of
    a block, or one tensor outside the blocks (every tensor alone when -ot patterns may split a
    block). Summed once per typed spec (weight_units, read-only after), so an estimate walks ~2 units
    per layer, not ~10 tensors."""
    name: str  # the tensor's name; "blk.N" / "blk.N._exps" for a block's groups
    layer: int | None
    loaded: bool = True  # False: an MTP block's tensors, in the file but not loaded (SKIPS_MTP)
    nbytes: int = 0
    repack: int = 0  # bytes of it the CPU backend repacks (CPU_REPACK) when on the host
    amx: int = 0  # bytes the AMX buffer allocates for its matrices when on the host (amx_bytes)
    amx_file: int = 0  # those matrices' bytes in the file (amx - amx_file: what AMX adds)
    amx_as_output: int = 0  # token_embd: the AMX buffer's size of it as a tied output matrix (0: not taken)
    lo: int = -1  # file span of the rest, the part used from the map (-1: none)
    hi: int = 0
    attn2d: int = 0  # 2-D attention / FFN weights: a GPU stages these for big batches
    ffn2d: int = 0
    reads: int = 0  # bytes read per decoded token (the output matrix's for a tied token_embd)
    read_types: dict[str, int] = field(default_factory=dict)  # those bytes by ggml type (CPU kernel rates)


def _unit_layout(model: ModelSpec, per_tensor: bool) -> tuple[list[tuple], list[tuple]]:
    """What weight_units knows from names and shapes alone: the units (name, layer, loaded) and, per
    tensor, (its unit's index, repackable shape, 2-D block matrix: 0 none / 1 attention / 2 FFN, share of it
    read per decoded token as (num, den); den 0: not read). Memoised in ModelSpec.shape_memo, which the
    optimizer's re-typed copies share."""
    key = ("units", per_tensor)
    hit = model.shape_memo.get(key)
    if hit is not None:
        return hit
    moe = model.moe
    first_skipped = model.n_layers - model.n_nextn if model.architecture in SKIPS_MTP else model.n_layers
    index: dict[object, int] = {}
    units: list[tuple] = []
    per: list[tuple] = []
    for t in model.tensors:
        il, name, shape = t.layer, t.name, t.shape
        exps = "_exps" in name
        skipped = il is not None and il >= first_skipped
        if skipped:
            k, uname = (il, "skipped"), f"blk.{il} (MTP, not loaded)"
        elif per_tensor or il is None:
            k, uname = name, name
        else:
            k, uname = (il, exps), f"blk.{il}._exps" if exps else f"blk.{il}"
        ui = index.get(k)
        if ui is None:
            ui = index[k] = len(units)
            units.append((uname, il, not skipped))
        if skipped:
            per.append((ui, False, 0, 0, 0))
            continue
        repackable = (len(shape) >= 2 and name not in INPUT_TENSORS and shape[1] % 8 == 0
                      and "ffn_gate_inp" not in name)
        kind2d = 0 if il is None or len(shape) < 2 else 1 if t.role.startswith("attn") else 2
        read = il is not None or name == "output.weight" or (name == "token_embd.weight" and model.tied_embeddings)
        num, den = ((moe.n_expert_used, moe.n_expert) if moe and exps else (1, 1)) if read else (0, 0)
        per.append((ui, repackable, kind2d, num, den))
    out = model.shape_memo[key] = (units, per)
    return out


def weight_units(model: ModelSpec, rp: frozenset[str], per_tensor: bool = False,
                 amx: bool = False) -> list[WeightUnit]:
    """The model's weight units in file order, AMX (when `amx`) then repack for types `rp` counted as the CPU
    backend takes them (extra buffer types in llama.cpp's order); memoised on the spec."""
    key = ("units", rp, per_tensor, amx)
    hit = model.memo.get(key)
    if hit is not None and hit[0] is model.tensors:
        return hit[1]
    layout, per = _unit_layout(model, per_tensor)
    units = [WeightUnit(name, il, loaded=loaded) for name, il, loaded in layout]
    offset = 0
    for t, (ui, repackable, kind2d, num, den) in zip(model.tensors, per, strict=True):
        ty = t.type or source_type(t)
        nb = tensor_bytes(ty, t.shape)
        u = units[ui]
        u.nbytes += nb
        amx_nb = amx_bytes(ty, t.shape) if amx and repackable and "_exps" not in t.name else None
        if amx and t.name == "token_embd.weight":
            u.amx_as_output = amx_bytes(ty, t.shape) or 0
        if u.loaded:
            if amx_nb is not None:
                u.amx += amx_nb
                u.amx_file += nb
            elif repackable and ty in rp:
                u.repack += nb
            else:
                u.lo = offset if u.lo < 0 else u.lo
                u.hi = offset + nb
            if kind2d == 1:
                u.attn2d += nb
            elif kind2d == 2:
                u.ffn2d += nb
            if den:
                r = nb * num // den
                u.reads += r
                u.read_types[ty] = u.read_types.get(ty, 0) + r
        offset = pad(offset + nb, GGUF_ALIGN)
    model.memo[key] = (model.tensors, units)
    return units


def _matmul_counted(model: ModelSpec) -> list[tuple[int, bool, int, int]]:
    """(tensor index, expert matrix, elements a prefill token multiplies, output rows it multiplies them into) of
    ModelSpec.n_matmul_params' matrices, of names and shapes alone (an expert matrix: its share of the experts)."""
    counted = model.shape_memo.get("matmul")
    if counted is None:
        moe = model.moe
        first_mtp = model.n_layers - model.n_nextn
        counted = model.shape_memo["matmul"] = [
            (i, expert, *((t.n_elements * moe.n_expert_used // moe.n_expert,
                           math.prod(t.shape[1:]) * moe.n_expert_used // moe.n_expert) if expert
                          else (t.n_elements, math.prod(t.shape[1:]))))
            for i, t in enumerate(model.tensors)
            if not (len(t.shape) < 2 or t.name in PREFILL_SKIPS or (t.layer is not None and t.layer >= first_mtp))
            for expert in [bool(moe) and "_exps" in t.name]]
    return counted


def _by_type(model: ModelSpec, key: str, col: int) -> dict[tuple[str, bool], int]:
    hit = model.memo.get(key)
    if hit is not None and hit[0] is model.tensors:
        return hit[1]
    tensors = model.tensors
    out: dict[tuple[str, bool], int] = {}
    for row in _matmul_counted(model):
        k = (source_type(tensors[row[0]]), row[1])
        out[k] = out.get(k, 0) + row[col]
    model.memo[key] = (model.tensors, out)
    return out


def matmul_types(model: ModelSpec) -> dict[tuple[str, bool], int]:
    """Weights a prefill token is multiplied with (ModelSpec.n_matmul_params' matrices), by (ggml type, expert
    matrix): the CPU multiplies each type with its own kernel (planner/data/cpu_kernels.yaml), and experts with
    mul_mat_id. Memoised on the spec."""
    return _by_type(model, "matmul_types", 2)


def matmul_rows(model: ModelSpec) -> dict[tuple[str, bool], int]:
    """The output rows of those products, by the same keys: a prompt token's dot products, each with a fixed cost
    beside its length (short rows multiply slower per weight: SmolLM2's 576-wide Q4_1 at 0.7 of 2048-wide's rate).
    Memoised on the spec."""
    return _by_type(model, "matmul_rows", 3)


@dataclass(frozen=True)
class _Layout:
    """Where things go: each block's device, the output's, the -ot patterns, and the CPU's buffer types."""
    layer_dev: list[int]
    out_dev: int
    patterns: list[re.Pattern]
    repack_types: frozenset[str]
    amx: bool


@dataclass
class _HostWeights:
    """What placing the weights leaves for the later steps: non-layer tensors by name, and each host
    layer's 2D attention/FFN bytes (what a GPU stages for big batches: op offload)."""
    by_name: dict[str, WeightUnit] = field(default_factory=dict)
    staged_layer: dict[int, dict[str, int]] = field(default_factory=dict)


def memory_breakdown(model: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions) -> Breakdown:
    """Every buffer llama.cpp allocates, per device (GPU index, or CPU): weights, the KV cache and
    recurrent state, compute buffers, the logits output and the backend's own overhead, with the bytes
    decode reads per token. Each step below mirrors one allocation site of llama.cpp."""
    lay = _layout(model, hw, opts)
    units = weight_units(model, lay.repack_types, per_tensor=bool(lay.patterns), amx=lay.amx)
    b = Breakdown(file_bytes=sum(u.nbytes for u in units))
    host = _place_weights(b, units, lay, opts, n_gpus=len(hw.gpus))
    _tied_output(b, model, host.by_name, lay.out_dev)
    _blocks(b, model, opts, lay.layer_dev)
    _kv_and_state(b, model, opts, lay.layer_dev)
    _compute(b, model, opts, lay, host, n_gpus=len(hw.gpus))
    b.output = model.n_vocab * opts.n_seq * 4  # logits output buffer on the host: n_vocab x n_seq outputs x f32
    _overheads(b, hw)
    return b


def _layout(model: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions) -> _Layout:
    n_gpus = len(hw.gpus)
    layer_dev, out_dev = layer_devices(model.n_layers, n_gpus, opts, [g.usable_bytes for g in hw.gpus])
    # with a GPU, its host buffer type comes before the repack types in llama.cpp's CPU
    # buffer list (llama-model.cpp make_cpu_buft_list), so nothing is repacked
    extra = n_gpus == 0 and opts.repack
    rp = frozenset(repack_types(hw.cpu.flags, hw.cpu.arch)) if extra else frozenset()
    return _Layout(layer_dev, out_dev, [re.compile(p) for p in opts.override_tensor], rp,
                   extra and has_amx(hw.cpu.flags))


def _place_weights(b: Breakdown, units: list[WeightUnit], lay: _Layout, opts: RuntimeOptions,
                   n_gpus: int) -> _HostWeights:
    """Weights per device, repacked and AMX copies, the mmap span, and bytes read per token."""
    weights, reads_of = b.weights, b.read_per_token
    span_lo, span_hi = None, 0
    host = _HostWeights()
    for u in units:
        if not u.loaded:
            continue
        d = tensor_device(u.name, u.layer, lay.layer_dev, lay.out_dev, opts, lay.patterns)
        weights[d] = weights.get(d, 0) + u.nbytes
        il = u.layer
        if il is None:
            host.by_name[u.name] = u
        if d == CPU:
            b.repack += u.repack
            b.amx += u.amx
            weights[d] += u.amx - u.amx_file
            if opts.mmap and u.lo >= 0:
                span_lo = u.lo if span_lo is None else min(span_lo, u.lo)
                span_hi = max(span_hi, u.hi)
            if n_gpus and il is not None:
                per = host.staged_layer.setdefault(il, {"attention": 0, "ffn": 0})
                per["attention"] += u.attn2d
                per["ffn"] += u.ffn2d
        if u.reads:
            if u.name == "token_embd.weight":
                d = lay.out_dev  # tied: read as the output matrix
            reads_of[d] = reads_of.get(d, 0) + u.reads
            by_type = b.read_types.setdefault(d, {})
            for ty, r in u.read_types.items():
                by_type[ty] = by_type.get(ty, 0) + r
    if opts.mmap and span_lo is not None:
        # llama.cpp maps the file span of host tensors (llama_model_loader::get_mapping_range)
        # and reports it whole, GPU and repacked tensors inside the span included. What must
        # stay resident is less: the repacked copies plus the host tensors used from the map,
        # which is what weights_bytes (and so "fits") counts.
        b.mapped = span_hi - span_lo
    return host


def _tied_output(b: Breakdown, model: ModelSpec, by_name: dict[str, WeightUnit], out_dev: int) -> None:
    """A tied token_embd used as the output matrix: where llama.cpp keeps a second copy of it."""
    embd = by_name.get("token_embd.weight")
    if embd is None or not model.tied_embeddings:
        return
    tied_amx = embd.amx_as_output if out_dev == CPU else 0
    if tied_amx:
        # the output's MUL_MAT takes the AMX buffer and token_embd's GET_ROWS the plain one: two copies on the host
        b.weights[CPU] = b.weights.get(CPU, 0) + tied_amx
        b.amx += tied_amx
    elif out_dev != CPU or model.architecture in OUTPUT_BEFORE_EMBD:
        # the output layer's device gets its own copy of the tied matrix (output.weight duplicated); on the
        # host too where the model creates it before token_embd (the loader shares a duplicate only with an
        # original already in that buffer: llama-model-loader.cpp create_tensor)
        b.weights[out_dev] = b.weights.get(out_dev, 0) + embd.nbytes


def _blocks(b: Breakdown, model: ModelSpec, opts: RuntimeOptions, layer_dev: list[int]) -> None:
    """Blocks per device as llama.cpp numbers them for -ngl (MTP blocks included), and their graph nodes."""
    for d, n in zip(layer_dev, layer_nodes(model, opts.flash_attn), strict=True):
        b.layers[d] = b.layers.get(d, 0) + 1
        b.nodes[d] = b.nodes.get(d, 0) + n


def _kv_and_state(b: Breakdown, model: ModelSpec, opts: RuntimeOptions, layer_dev: list[int]) -> None:
    """The KV cache of each attention layer and the recurrent state of each recurrent one, on its layer's
    device (or the host with --no-kv-offload)."""
    b.n_ctx, b.cells_full, b.cells_swa = kv_cells(model, opts)
    kv_of: dict[tuple, int] = {}  # layers alike hold alike caches
    widths = {v_width(model, il) for il in range(model.n_layers)}
    v_padded = max(widths) if not opts.flash_attn and len(widths) > 1 and not model.mla else None
    for il, lay in enumerate(model.layers):
        d = layer_dev[il] if opts.offload_kqv else CPU
        key = (lay.attn, lay.n_head_kv, lay.head_dim, lay.kv_shared)
        kv = kv_of.get(key)
        if kv is None:
            cells = b.cells_swa if lay.attn == "swa" else b.cells_full
            kv = kv_of[key] = kv_layer_bytes(model, il, cells, opts.cache_type_k, opts.cache_type_v, v_padded)
        b.kv[d] = b.kv.get(d, 0) + kv
        if lay.attn == "recurrent" or (model.recurrent and model.recurrent.in_attention_layers):
            rs = rs_layer_bytes(model, opts.n_seq)
            b.rs[d] = b.rs.get(d, 0) + rs
            b.read_per_token[d] = b.read_per_token.get(d, 0) + rs  # read (and written) whole every token


def _compute(b: Breakdown, model: ModelSpec, opts: RuntimeOptions, lay: _Layout, host: _HostWeights,
             n_gpus: int) -> None:
    """Compute buffers: the host's alone, one per GPU beside the host's, or a pipeline's per device."""
    per_stream_swa = b.cells_swa // (1 if opts.kv_unified else opts.n_seq)
    per_stream_full = b.cells_full // (1 if opts.kv_unified else opts.n_seq)
    args = (model, per_stream_full, opts.n_ubatch, opts.flash_attn, per_stream_swa)
    if n_gpus == 0:
        b.compute[CPU], _ = compute_buffers(*args, False, n_seq=opts.n_seq, n_outputs=opts.n_outputs)
        return
    layer_dev, out_dev = lay.layer_dev, lay.out_dev
    logits = host.by_name.get("output.weight") or host.by_name.get("token_embd.weight")
    staged = staged_host_weights(logits.nbytes if logits and out_dev == CPU else 0, host.staged_layer)
    dev_buf, host_buf = compute_buffers(*args, True, staged, n_seq=opts.n_seq, n_outputs=opts.n_outputs)
    # pipeline parallelism (llama-context.cpp): several GPUs, every layer and the output on them, KV
    # with its layers, no tensor overrides
    pipeline = (n_gpus > 1 and CPU not in layer_dev and out_dev != CPU and opts.offload_kqv
                and not opts.override_tensor and opts.n_cpu_moe == 0 and not opts.cpu_moe)
    if pipeline:
        kinds = [{la.attn for la, d in zip(model.layers, layer_dev, strict=True) if d == g} & {"full", "swa"}
                 for g in range(n_gpus)]
        devs, b.compute[CPU] = pipeline_buffers(*args, [g == out_dev for g in range(n_gpus)],
                                                kinds, PIPELINE_COPIES, n_seq=opts.n_seq, n_outputs=opts.n_outputs,
                                                ends_recurrent=_mamba_splits(model, layer_dev, n_gpus))
        for g in range(n_gpus):
            b.compute[g] = devs[g]
        return
    # every GPU gets a compute buffer: big batches run host weights there too (op offload)
    for g in range(n_gpus):
        b.compute[g] = dev_buf
    host_full, _ = compute_buffers(*args, False, n_seq=opts.n_seq, n_outputs=opts.n_outputs)
    b.compute[CPU] = host_full if CPU in layer_dev else host_buf


def _overheads(b: Breakdown, hw: HardwareProfile) -> None:
    """Each backend's runtime overhead: a profile's own figure, else what verify measured here, else the
    backend's table value (planner/data/backends.yaml)."""
    cal = hw.calibration
    for g, gpu in enumerate(hw.gpus):
        measured = cal.gpu_overhead_bytes[g] if cal and g < len(cal.gpu_overhead_bytes) else None
        b.overhead[g] = (gpu.overhead_bytes if gpu.overhead_bytes is not None else measured if measured is not None
                         else backend(gpu.backend).overhead_mib * MiB)
    b.overhead[CPU] = (cal.host_overhead_bytes if cal and cal.host_overhead_bytes is not None
                       else backend("cpu").overhead_mib * MiB)


def _mamba_splits(model: ModelSpec, layer_dev: list[int], n_gpus: int) -> list[bool]:
    """Per GPU: its last layer is a Mamba layer and the next GPU's first is not an attention layer (then
    llama.cpp's scheduler splits that Mamba layer over both; compute.pipeline_buffers)."""
    out = []
    for g in range(n_gpus):
        mine = [il for il, d in enumerate(layer_dev) if d == g]
        nxt = mine[-1] + 1 if mine else None
        out.append(bool(mine) and model.layers[mine[-1]].attn == "recurrent" and nxt is not None
                   and nxt < len(model.layers) and model.layers[nxt].attn not in ("full", "swa"))
    return out


def staged_host_weights(logits_bytes: int, per_layer: dict[int, dict[str, int]]) -> dict[str, int]:
    """Host weights the GPU copies into its compute buffer per phase when it runs their ops.
    per_layer: bytes of each host layer's attention and FFN weights (2D tensors).
    Checked on the H100 runs (bench/data): ngl 0 puts output.weight (Q6_K, 411 MiB) beside the
    logits: 258.5 + 411 = 669.5 MiB, measured 669.48; ngl 16 puts one host layer's attention
    weights beside the attention scores: 564 + 23.5 = 587.5, measured 585.0.
    """
    staged = {"logits": logits_bytes, "attention": 0, "ffn": 0}
    for d in per_layer.values():
        for k, v in d.items():
            staged[k] = max(staged[k], v)
    return staged
