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

from planner.estimate.quant_mix import source_type
from planner.model.ggml_types import tensor_bytes
from planner.model.spec import ModelSpec

ALIGN = 32


def _metadata(w: GGUFWriter, m: ModelSpec, n_ctx_train: int | None) -> None:
    """The hyperparameters llama.cpp's loader reads for this architecture, in the order it reads them, then a
    minimal vocabulary of the model's size."""
    for keys in (_dims, _swa, _moe, _mla, _family, _recurrent):
        keys(w, m, m.architecture, n_ctx_train)
    _vocab(w, m.n_vocab)


def _dims(w: GGUFWriter, m: ModelSpec, a: str, n_ctx_train: int | None) -> None:
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
    if not m.mla:  # MLA: the latent's lengths, in _mla
        w.add_uint32(f"{a}.attention.key_length", m.head_dim_k)
        w.add_uint32(f"{a}.attention.value_length", m.head_dim_v)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32(f"{a}.attention.layer_norm_epsilon", 1e-5)  # nemotron_h reads both
    w.add_float32(f"{a}.rope.freq_base", 10000.0)
    w.add_uint32(f"{a}.rope.dimension_count", m.mla.rope_dim if m.mla else m.head_dim_k)


def _swa(w: GGUFWriter, m: ModelSpec, a: str, n_ctx_train: int | None) -> None:
    swa = [lay.window for lay in m.layers if lay.attn == "swa" and lay.window]
    if swa:
        w.add_uint32(f"{a}.attention.sliding_window", swa[0])
        w.add_array(f"{a}.attention.sliding_window_pattern", [lay.attn == "swa" for lay in m.layers])


def _moe(w: GGUFWriter, m: ModelSpec, a: str, n_ctx_train: int | None) -> None:
    if not m.moe:
        return
    w.add_uint32(f"{a}.expert_count", m.moe.n_expert)
    w.add_uint32(f"{a}.expert_used_count", m.moe.n_expert_used)
    w.add_uint32(f"{a}.expert_feed_forward_length", m.moe.expert_ff)
    if m.moe.n_shared_expert:
        w.add_uint32(f"{a}.expert_shared_count", m.moe.n_shared_expert)
    if m.moe.shared_ff:  # qwen2moe, granite: the shared expert's own width
        w.add_uint32(f"{a}.expert_shared_feed_forward_length", m.moe.shared_ff)
    if m.moe.n_dense_lead:
        w.add_uint32(f"{a}.leading_dense_block_count", m.moe.n_dense_lead)


def _mla(w: GGUFWriter, m: ModelSpec, a: str, n_ctx_train: int | None) -> None:
    if not m.mla:
        return
    w.add_uint32(f"{a}.attention.kv_lora_rank", m.mla.kv_lora_rank)
    if m.mla.q_lora_rank:
        w.add_uint32(f"{a}.attention.q_lora_rank", m.mla.q_lora_rank)
    w.add_uint32(f"{a}.attention.key_length_mla", m.mla.nope_dim + m.mla.rope_dim)
    w.add_uint32(f"{a}.attention.value_length_mla", m.mla.v_head_dim)
    w.add_uint32(f"{a}.attention.key_length", m.mla.kv_lora_rank + m.mla.rope_dim)
    w.add_uint32(f"{a}.attention.value_length", m.mla.kv_lora_rank)


def _family(w: GGUFWriter, m: ModelSpec, a: str, n_ctx_train: int | None) -> None:
    """Keys some families' loaders require (their src/models/<arch>.cpp and load_hparams)."""
    swa_dims = {lay.head_dim for lay in m.layers if lay.attn == "swa" and lay.head_dim}
    if swa_dims or a == "gemma4":  # sliding layers' own head width (Gemma 4 requires the keys)
        d = min(swa_dims) if swa_dims else m.head_dim_k
        w.add_uint32(f"{a}.attention.key_length_swa", d)
        w.add_uint32(f"{a}.attention.value_length_swa", d)
    if a == "gemma4":
        w.add_uint32(f"{a}.attention.shared_kv_layers", sum(lay.kv_shared for lay in m.layers))
        w.add_uint32(f"{a}.embedding_length_per_layer_input", m.per_layer_inputs // m.n_layers)
    if m.n_nextn:
        w.add_uint32(f"{a}.nextn_predict_layers", m.n_nextn)
    if a in ("qwen35", "qwen35moe"):  # M-RoPE sections, required by the loader
        w.add_array(f"{a}.rope.dimension_sections", [m.head_dim_k // 6, m.head_dim_k // 6,
                                                     m.head_dim_k // 2 - 2 * (m.head_dim_k // 6), 0])
    if a in ("kimi-linear", "minimax-m2"):
        w.add_uint32(f"{a}.expert_gating_func", 2)  # sigmoid, as their converters write it; the graph needs it


def _recurrent(w: GGUFWriter, m: ModelSpec, a: str, n_ctx_train: int | None) -> None:
    if m.recurrent:
        for key, v in m.recurrent.gguf.items():  # {arch}.ssm.*, wkv.*: the recurrent state's shape
            w.add_uint32(f"{a}.{key}", v)


def _vocab(w: GGUFWriter, n: int) -> None:
    """A minimal SentencePiece vocabulary: specials, 256 byte tokens, then filler pieces."""
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
               default_type: str = "F16", fill: str = "zeros", progress=None, force: bool = True) -> int:
    """Write the twin; returns the file size in bytes. Types: each tensor's own, else source_type.
    fill='random' writes ggml-quantized random rows (real bytes on disk), 'zeros' a sparse file.
    An existing file at `path` is replaced only with force (planner.fileio's rules)."""
    from planner.fileio import atomic_output
    with atomic_output(str(path), force) as tmp:
        _write_twin(model, Path(tmp), n_ctx_train, default_type, fill, progress)
    return Path(path).stat().st_size


def _write_twin(model: ModelSpec, tmp: Path, n_ctx_train: int | None, default_type: str, fill: str,
                progress) -> None:
    if fill not in ("zeros", "random"):
        raise ValueError(f"fill is zeros or random, not {fill}")
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
