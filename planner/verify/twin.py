"""Shape twins: GGUF files with a model's exact tensor names, shapes and types that llama.cpp
loads, for real memory and speed figures of models nobody downloaded.

Two fills. `random` (the verifier's): each tensor's data is a few rows of random weights
quantized by ggml's own quantizer to the tensor's type, repeated: valid blocks with real
scales, so kernels do exactly the work they do on real weights and no value path is special.
`zeros`: the file is sparse (a 70B twin takes no disk until read); an all-zero block is valid
for every ggml type. Memory and speed are real either way; quality is not. The tokenizer is a
minimal SentencePiece-style vocabulary of the model's size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from planner.estimate.ggml_types import tensor_bytes
from planner.estimate.quant_mix import source_type
from planner.model.spec import LayerSpec, ModelSpec, MoESpec, RecurrentSpec, TensorSpec

ALIGN = 32


def _metadata(w: GGUFWriter, m: ModelSpec, n_ctx_train: int | None) -> None:
    a = m.architecture
    w.add_uint32(f"{a}.block_count", m.n_layers)
    w.add_uint32(f"{a}.context_length", n_ctx_train or m.n_ctx_train)
    w.add_uint32(f"{a}.embedding_length", m.n_embd)
    ff = [m.n_ff if lay.n_ff is None else lay.n_ff for lay in m.layers]
    if len(set(ff)) > 1:
        w.add_array(f"{a}.feed_forward_length", ff)
    else:
        w.add_uint32(f"{a}.feed_forward_length", m.n_ff)
    w.add_uint32(f"{a}.attention.head_count", m.n_head)
    kv = [lay.n_head_kv for lay in m.layers]
    if len(set(kv)) == 1:
        w.add_uint32(f"{a}.attention.head_count_kv", kv[0])
    else:
        w.add_array(f"{a}.attention.head_count_kv", kv)
    w.add_uint32(f"{a}.attention.key_length", m.head_dim_k if not m.mla else m.mla.nope_dim + m.mla.rope_dim)
    w.add_uint32(f"{a}.attention.value_length", m.head_dim_v if not m.mla else m.mla.v_head_dim)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32(f"{a}.attention.layer_norm_epsilon", 1e-5)  # nemotron_h reads both
    w.add_float32(f"{a}.rope.freq_base", 10000.0)
    w.add_uint32(f"{a}.rope.dimension_count", m.mla.rope_dim if m.mla else m.head_dim_k)
    swa = [lay.window for lay in m.layers if lay.attn == "swa" and lay.window]
    if swa:
        w.add_uint32(f"{a}.attention.sliding_window", swa[0])
        w.add_array(f"{a}.attention.sliding_window_pattern", [lay.attn == "swa" for lay in m.layers])
    if m.moe:
        w.add_uint32(f"{a}.expert_count", m.moe.n_expert)
        w.add_uint32(f"{a}.expert_used_count", m.moe.n_expert_used)
        w.add_uint32(f"{a}.expert_feed_forward_length", m.moe.expert_ff)
        if m.moe.n_shared_expert:
            w.add_uint32(f"{a}.expert_shared_count", m.moe.n_shared_expert)
        if m.moe.shared_ff:  # qwen2moe, granite: the shared expert's own width
            w.add_uint32(f"{a}.expert_shared_feed_forward_length", m.moe.shared_ff)
        if m.moe.n_dense_lead:
            w.add_uint32(f"{a}.leading_dense_block_count", m.moe.n_dense_lead)
    if m.mla:
        w.add_uint32(f"{a}.attention.kv_lora_rank", m.mla.kv_lora_rank)
        if m.mla.q_lora_rank:
            w.add_uint32(f"{a}.attention.q_lora_rank", m.mla.q_lora_rank)
        w.add_uint32(f"{a}.attention.key_length_mla", m.mla.nope_dim + m.mla.rope_dim)
        w.add_uint32(f"{a}.attention.value_length_mla", m.mla.v_head_dim)
        w.add_uint32(f"{a}.attention.key_length", m.mla.kv_lora_rank + m.mla.rope_dim)
        w.add_uint32(f"{a}.attention.value_length", m.mla.kv_lora_rank)
    if m.recurrent:
        for key, v in m.recurrent.gguf.items():  # {arch}.ssm.*, wkv.*: the recurrent state's shape
            w.add_uint32(f"{a}.{key}", v)
    # minimal SentencePiece vocabulary: specials, 256 byte tokens, then filler pieces
    n = m.n_vocab
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"\u2581t{i}" for i in range(n - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (n - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens[:n])
    w.add_token_scores([0.0] * n)
    w.add_token_types(types[:n])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def _row_pattern(ty: str, n_per_row: int, rng: np.random.Generator, rows: int = 8) -> bytes:
    """`rows` rows of N(0, 0.02) weights (a typical init scale) in type `ty`, as ggml writes them."""
    x = (rng.standard_normal((rows, n_per_row)) * 0.02).astype(np.float32)
    if ty == "F32":
        return x.tobytes()
    if ty == "F16":
        return x.astype(np.float16).tobytes()
    if ty == "BF16":
        return (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    from planner.verify.ggml import quantize_rows, requires_imatrix
    im = np.ones(n_per_row, dtype=np.float32) if requires_imatrix(ty) else None
    return quantize_rows(x, ty, im)


def twin_bytes(model: ModelSpec, default_type: str = "F16") -> int:
    """Tensor data bytes of the twin (what a random fill writes to disk)."""
    return sum((tensor_bytes(t.type or source_type(t, default_type), t.shape) + ALIGN - 1) // ALIGN * ALIGN
               for t in model.tensors)


def write_twin(model: ModelSpec, path: str | os.PathLike, *, n_ctx_train: int | None = None,
               default_type: str = "F16", fill: str = "zeros", progress=None) -> int:
    """Write the twin; returns the file size in bytes. Types: each tensor's own, else source_type.
    fill='random' writes ggml-quantized random rows (real bytes on disk), 'zeros' a sparse file."""
    if fill not in ("zeros", "random"):
        raise ValueError(f"fill is zeros or random, not {fill}")
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    w = GGUFWriter(str(tmp), model.architecture)
    _metadata(w, model, n_ctx_train)
    sizes = []
    for t in model.tensors:
        ty = t.type or source_type(t, default_type)
        nbytes = tensor_bytes(ty, t.shape)
        qt = GGMLQuantizationType[ty]
        # ggml order {ne0, ne1, ...} -> numpy order (reversed); raw_shape is in bytes for quant types
        w.add_tensor_info(t.name, tensor_shape=list(reversed(t.shape)), tensor_dtype=np.float32,
                          tensor_nbytes=nbytes, raw_dtype=qt)
        sizes.append(nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    try:
        with open(tmp, "r+b") as f:
            f.seek(0, os.SEEK_END)
            pos = f.tell()
            pos = (pos + ALIGN - 1) // ALIGN * ALIGN
            if fill == "zeros":
                for nb in sizes:
                    pos += (nb + ALIGN - 1) // ALIGN * ALIGN
                f.truncate(pos)  # sparse zeros: valid blocks for every type
            else:
                f.truncate(pos)
                f.seek(pos)
                rng = np.random.default_rng(0)
                patterns: dict[tuple[str, int], bytes] = {}
                for i, (t, nb) in enumerate(zip(model.tensors, sizes, strict=True)):
                    ty = t.type or source_type(t, default_type)
                    key = (ty, t.shape[0])
                    if key not in patterns:
                        patterns[key] = _row_pattern(ty, t.shape[0], rng)
                    pat = patterns[key]
                    chunk = pat * max(1, min(nb // len(pat), (64 << 20) // len(pat)))  # <= 64 MiB writes
                    left = nb
                    while left >= len(chunk):
                        f.write(chunk)
                        left -= len(chunk)
                    if left:
                        f.write(chunk[:left])
                    f.write(b"\0" * ((nb + ALIGN - 1) // ALIGN * ALIGN - nb))
                    if progress:
                        progress(i + 1, len(model.tensors), t.name)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path.stat().st_size


def mamba_spec(version=2, e=256, n_layer=3, vocab=2048, d_inner=512, d_state=64, n_group=2, head=64):
    """A Mamba-1 or -2 of any size laid out as llama.cpp's llama-model.cpp creates its tensors
    (Mamba-1 needs d_inner = 2 n_embd): shape twins for the recurrent-state and compute checks."""
    d_conv, dt_rank = 4, (d_inner // head if version == 2 else e // 16)
    g = {"ssm.conv_kernel": d_conv, "ssm.inner_size": d_inner, "ssm.state_size": d_state, "ssm.time_step_rank": dt_rank}
    if version == 2:
        g["ssm.group_count"] = n_group
    conv_dim = d_inner + 2 * n_group * d_state if version == 2 else d_inner
    ts = [TensorSpec(name="token_embd.weight", shape=[e, vocab], type="F16"),
          TensorSpec(name="output_norm.weight", shape=[e], type="F32"),
          TensorSpec(name="output.weight", shape=[e, vocab], type="F16")]
    for i in range(n_layer):
        b = f"blk.{i}."
        ts += [TensorSpec(name=b + "attn_norm.weight", shape=[e], type="F32"),
               TensorSpec(name=b + "ssm_in.weight", shape=[e, d_inner + conv_dim + dt_rank if version == 2
                                                             else 2 * d_inner], type="F16"),
               TensorSpec(name=b + "ssm_conv1d.weight", shape=[d_conv, conv_dim], type="F32"),
               TensorSpec(name=b + "ssm_conv1d.bias", shape=[conv_dim], type="F32"),
               TensorSpec(name=b + "ssm_out.weight", shape=[d_inner, e], type="F16")]
        if version == 2:
            ts += [TensorSpec(name=b + "ssm_dt.bias", shape=[dt_rank], type="F32"),
                   TensorSpec(name=b + "ssm_a", shape=[1, dt_rank], type="F32"),
                   TensorSpec(name=b + "ssm_d", shape=[1, dt_rank], type="F32"),
                   TensorSpec(name=b + "ssm_norm.weight", shape=[d_inner // n_group, n_group], type="F32")]
        else:
            ts += [TensorSpec(name=b + "ssm_x.weight", shape=[d_inner, dt_rank + 2 * d_state], type="F16"),
                   TensorSpec(name=b + "ssm_dt.weight", shape=[dt_rank, d_inner], type="F16"),
                   TensorSpec(name=b + "ssm_dt.bias", shape=[d_inner], type="F32"),
                   TensorSpec(name=b + "ssm_a", shape=[d_state, d_inner], type="F32"),
                   TensorSpec(name=b + "ssm_d", shape=[d_inner], type="F32")]
    return ModelSpec(name=f"mamba{version}-twin", source="test", architecture="mamba2" if version == 2 else "mamba",
                     n_layers=n_layer, n_embd=e, n_head=0, n_kv_heads=0, head_dim_k=0, head_dim_v=0, n_ff=0,
                     n_vocab=vocab, layers=[LayerSpec(attn="recurrent", n_head=0, n_head_kv=0) for _ in range(n_layer)],
                     recurrent=RecurrentSpec(r_elements=0, s_elements=0, gguf=g), tensors=ts)


def hybrid_spec(e=256, n_layer=4, attn_layers=(1,), vocab=2048, d_state=64, n_group=1, head=64, n_head=4,
                n_head_kv=1, head_dim=64, n_ff=768, n_expert=0, n_expert_used=0, shared_ff=0, arch="granitehybrid"):
    """A Granite-4.0-H style hybrid (llama.cpp models/granite-hybrid.cpp): Mamba-2 mixers (d_inner = 2 n_embd,
    the only expansion it supports) except at attn_layers, each layer followed by a dense or MoE FFN.
    A layer is recurrent where its KV-head count is 0, as the loader reads it."""
    m2 = mamba_spec(2, e=e, n_layer=n_layer, vocab=vocab, d_inner=2 * e, d_state=d_state, n_group=n_group, head=head)
    q, kv = n_head * head_dim, n_head_kv * head_dim
    ts = list(m2.tensors[:3])
    layers = []
    for i in range(n_layer):
        b = f"blk.{i}."
        if i in attn_layers:
            ts += [TensorSpec(name=b + "attn_norm.weight", shape=[e], type="F32"),
                   TensorSpec(name=b + "attn_q.weight", shape=[e, q], type="F16"),
                   TensorSpec(name=b + "attn_k.weight", shape=[e, kv], type="F16"),
                   TensorSpec(name=b + "attn_v.weight", shape=[e, kv], type="F16"),
                   TensorSpec(name=b + "attn_output.weight", shape=[q, e], type="F16")]
            layers.append(LayerSpec(attn="full", n_head=n_head, n_head_kv=n_head_kv))
        else:
            ts += [t for t in m2.tensors if t.name.startswith(b)]
            layers.append(LayerSpec(attn="recurrent", n_head=0, n_head_kv=0))
        ts.append(TensorSpec(name=b + "ffn_norm.weight", shape=[e], type="F32"))
        if n_expert:
            ts += [TensorSpec(name=b + "ffn_gate_inp.weight", shape=[e, n_expert], type="F32"),
                   TensorSpec(name=b + "ffn_gate_exps.weight", shape=[e, n_ff, n_expert], type="F16"),
                   TensorSpec(name=b + "ffn_up_exps.weight", shape=[e, n_ff, n_expert], type="F16"),
                   TensorSpec(name=b + "ffn_down_exps.weight", shape=[n_ff, e, n_expert], type="F16")]
            if shared_ff:
                ts += [TensorSpec(name=b + "ffn_gate_shexp.weight", shape=[e, shared_ff], type="F16"),
                       TensorSpec(name=b + "ffn_up_shexp.weight", shape=[e, shared_ff], type="F16"),
                       TensorSpec(name=b + "ffn_down_shexp.weight", shape=[shared_ff, e], type="F16")]
        else:
            ts += [TensorSpec(name=b + "ffn_gate.weight", shape=[e, n_ff], type="F16"),
                   TensorSpec(name=b + "ffn_up.weight", shape=[e, n_ff], type="F16"),
                   TensorSpec(name=b + "ffn_down.weight", shape=[n_ff, e], type="F16")]
    moe = MoESpec(n_expert=n_expert, n_expert_used=n_expert_used, expert_ff=n_ff, n_shared_expert=int(bool(shared_ff)),
                  shared_ff=shared_ff) if n_expert else None
    return ModelSpec(name=f"{arch}-twin", source="test", architecture=arch, n_layers=n_layer, n_embd=e,
                     n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=head_dim, head_dim_v=head_dim,
                     n_ff=n_ff, n_vocab=vocab, layers=layers, moe=moe,
                     recurrent=m2.recurrent, tensors=ts)


def _attn_tensors(b: str, e: int, n_head: int, n_head_kv: int, head_dim: int) -> list[TensorSpec]:
    q, kv = n_head * head_dim, n_head_kv * head_dim
    return [TensorSpec(name=b + "attn_q.weight", shape=[e, q], type="F16"),
            TensorSpec(name=b + "attn_k.weight", shape=[e, kv], type="F16"),
            TensorSpec(name=b + "attn_v.weight", shape=[e, kv], type="F16"),
            TensorSpec(name=b + "attn_output.weight", shape=[q, e], type="F16")]


def nemotron_h_spec(pattern="M-M*M-", e=256, vocab=2048, d_inner=None, d_state=64, n_group=2, head=64, n_head=4,
                    n_head_kv=2, head_dim=64, n_ff=768):
    """A Nemotron-H (llama.cpp models/nemotron-h.cpp) from its hybrid_override_pattern: 'M' a Mamba-2 mixer
    (d_inner: 2 n_embd unless given), '*' an attention layer, '-' an FFN-only layer (ReLU^2 up/down, no gate). A layer
    is recurrent where both its KV-head count and FFN width are 0, as the loader reads them."""
    m2 = mamba_spec(2, e=e, n_layer=len(pattern), vocab=vocab, d_inner=d_inner or 2 * e, d_state=d_state,
                    n_group=n_group, head=head)
    ts = list(m2.tensors[:3])
    layers = []
    for i, kind in enumerate(pattern):
        b = f"blk.{i}."
        if kind == "M":
            ts += [t for t in m2.tensors if t.name.startswith(b)]
            layers.append(LayerSpec(attn="recurrent", n_head=0, n_head_kv=0, n_ff=0))
        elif kind == "*":
            ts += [TensorSpec(name=b + "attn_norm.weight", shape=[e], type="F32")]
            ts += _attn_tensors(b, e, n_head, n_head_kv, head_dim)
            layers.append(LayerSpec(attn="full", n_head=n_head, n_head_kv=n_head_kv, n_ff=0))
        elif kind == "-":
            ts += [TensorSpec(name=b + "attn_norm.weight", shape=[e], type="F32"),
                   TensorSpec(name=b + "ffn_up.weight", shape=[e, n_ff], type="F16"),
                   TensorSpec(name=b + "ffn_down.weight", shape=[n_ff, e], type="F16")]
            layers.append(LayerSpec(attn="none", n_head=n_head, n_head_kv=0, n_ff=n_ff))
        else:
            raise ValueError(f"pattern letters are M, * and -, not {kind!r}")
    return ModelSpec(name="nemotron_h-twin", source="test", architecture="nemotron_h", n_layers=len(pattern),
                     n_embd=e, n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=head_dim, head_dim_v=head_dim,
                     n_ff=n_ff, n_vocab=vocab, layers=layers, recurrent=m2.recurrent, tensors=ts)


def jamba_spec(n_layer=8, attn_layers=(4,), moe_layers=(1, 3, 5, 7), e=256, vocab=2048, d_state=16, n_head=4,
               n_head_kv=2, n_ff=768, n_expert=4, n_expert_used=2):
    """A Jamba (llama.cpp models/jamba.cpp): Mamba-1 mixers with dt/B/C norms (d_inner = 2 n_embd) except at
    attn_layers (no RoPE), a MoE FFN at moe_layers and a dense one elsewhere (Jamba: attention every 8th
    layer from 4, MoE every 2nd from 1). Experts are n_ff wide."""
    m1 = mamba_spec(1, e=e, n_layer=n_layer, vocab=vocab, d_inner=2 * e, d_state=d_state)
    dt_rank = m1.recurrent.gguf["ssm.time_step_rank"]
    head_dim = e // n_head
    ts = list(m1.tensors[:3])
    layers = []
    for i in range(n_layer):
        b = f"blk.{i}."
        if i in attn_layers:
            ts += [TensorSpec(name=b + "attn_norm.weight", shape=[e], type="F32")]
            ts += _attn_tensors(b, e, n_head, n_head_kv, head_dim)
            layers.append(LayerSpec(attn="full", n_head=n_head, n_head_kv=n_head_kv, moe=i in moe_layers))
        else:
            ts += [t for t in m1.tensors if t.name.startswith(b)]
            ts += [TensorSpec(name=b + "ssm_dt_norm.weight", shape=[dt_rank], type="F32"),
                   TensorSpec(name=b + "ssm_b_norm.weight", shape=[d_state], type="F32"),
                   TensorSpec(name=b + "ssm_c_norm.weight", shape=[d_state], type="F32")]
            layers.append(LayerSpec(attn="recurrent", n_head=n_head, n_head_kv=0, moe=i in moe_layers))
        ts.append(TensorSpec(name=b + "ffn_norm.weight", shape=[e], type="F32"))
        if i in moe_layers:
            ts += [TensorSpec(name=b + "ffn_gate_inp.weight", shape=[e, n_expert], type="F32"),
                   TensorSpec(name=b + "ffn_gate_exps.weight", shape=[e, n_ff, n_expert], type="F16"),
                   TensorSpec(name=b + "ffn_up_exps.weight", shape=[e, n_ff, n_expert], type="F16"),
                   TensorSpec(name=b + "ffn_down_exps.weight", shape=[n_ff, e, n_expert], type="F16")]
        else:
            ts += [TensorSpec(name=b + "ffn_gate.weight", shape=[e, n_ff], type="F16"),
                   TensorSpec(name=b + "ffn_up.weight", shape=[e, n_ff], type="F16"),
                   TensorSpec(name=b + "ffn_down.weight", shape=[n_ff, e], type="F16")]
    moe = MoESpec(n_expert=n_expert, n_expert_used=n_expert_used, expert_ff=n_ff) if moe_layers else None
    return ModelSpec(name="jamba-twin", source="test", architecture="jamba", n_layers=n_layer, n_embd=e,
                     n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=head_dim, head_dim_v=head_dim, n_ff=n_ff,
                     n_vocab=vocab, layers=layers, moe=moe, recurrent=m1.recurrent, tensors=ts)


def lfm2_spec(pattern="CCACCA", e=256, vocab=2048, n_head=4, n_head_kv=2, n_ff=768, l_cache=3):
    """An LFM2 (llama.cpp models/lfm2.cpp): 'C' a gated short-convolution layer (in_proj to 3 n_embd, a
    depthwise conv of l_cache taps, out_proj), 'A' an attention layer with q/k norms; a dense SwiGLU FFN
    after each. Its state is the conv's last l_cache - 1 inputs, n_embd wide."""
    head_dim = e // n_head
    ts = [TensorSpec(name="token_embd.weight", shape=[e, vocab], type="F16"),
          TensorSpec(name="token_embd_norm.weight", shape=[e], type="F32")]
    layers = []
    for i, kind in enumerate(pattern):
        b = f"blk.{i}."
        ts += [TensorSpec(name=b + "attn_norm.weight", shape=[e], type="F32"),
               TensorSpec(name=b + "ffn_norm.weight", shape=[e], type="F32"),
               TensorSpec(name=b + "ffn_gate.weight", shape=[e, n_ff], type="F16"),
               TensorSpec(name=b + "ffn_up.weight", shape=[e, n_ff], type="F16"),
               TensorSpec(name=b + "ffn_down.weight", shape=[n_ff, e], type="F16")]
        if kind == "A":
            ts += [TensorSpec(name=b + "attn_q_norm.weight", shape=[head_dim], type="F32"),
                   TensorSpec(name=b + "attn_k_norm.weight", shape=[head_dim], type="F32")]
            ts += _attn_tensors(b, e, n_head, n_head_kv, head_dim)
            layers.append(LayerSpec(attn="full", n_head=n_head, n_head_kv=n_head_kv))
        elif kind == "C":
            ts += [TensorSpec(name=b + "shortconv.conv.weight", shape=[l_cache, e], type="F32"),
                   TensorSpec(name=b + "shortconv.in_proj.weight", shape=[e, 3 * e], type="F16"),
                   TensorSpec(name=b + "shortconv.out_proj.weight", shape=[e, e], type="F16")]
            layers.append(LayerSpec(attn="recurrent", n_head=n_head, n_head_kv=0))
        else:
            raise ValueError(f"pattern letters are C and A, not {kind!r}")
    return ModelSpec(name="lfm2-twin", source="test", architecture="lfm2", n_layers=len(pattern), n_embd=e,
                     n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=head_dim, head_dim_v=head_dim, n_ff=n_ff,
                     n_vocab=vocab, tied_embeddings=True, layers=layers,
                     recurrent=RecurrentSpec(r_elements=e * (l_cache - 1), s_elements=0,
                                             gguf={"shortconv.l_cache": l_cache}), tensors=ts)
