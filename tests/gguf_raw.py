"""GGUF bytes written by hand: any key with any value type, any tensor info, any offset.

gguf.GGUFWriter only writes well-formed files; the header reader's and GGUF->spec tests need
files a writer would never produce (a string alignment, an integer architecture, offsets out of
order), so this writes the format (GGUF v3, ggml/src/gguf.cpp) directly.
"""

from __future__ import annotations

import struct
from typing import Any

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
        U64: "<Q", I64: "<q", F64: "<d"}


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _value(vtype: int, v: Any) -> bytes:
    if vtype == STRING:
        return _str(v)
    if vtype == ARRAY:
        itype, items = v
        return struct.pack("<IQ", itype, len(items)) + b"".join(_value(itype, x) for x in items)
    return struct.pack(_FMT[vtype], v)


def auto(v: Any) -> tuple[int, Any]:
    """A Python value's natural GGUF type: str, int (u32 or u64), float (f32), bool, list of those."""
    if isinstance(v, bool):
        return BOOL, v
    if isinstance(v, int):
        return (U32 if 0 <= v < 1 << 32 else I64), v
    if isinstance(v, float):
        return F32, v
    if isinstance(v, str):
        return STRING, v
    if isinstance(v, list):
        it = auto(v[0])[0] if v else U32
        return ARRAY, (it, v)
    raise TypeError(type(v))


def gguf_bytes(kv: dict[str, Any] | list[tuple[str, int, Any]], tensors: list[tuple[str, list[int], int, int]] = (),
               alignment: int = 32, data: bytes = b"", version: int = 3) -> bytes:
    """kv: {key: python value} (types by auto()) or [(key, gguf type, value)]; tensors: (name, shape
    ne0-first, ggml type id, offset). The data section starts at the next multiple of `alignment`."""
    items = [(k, *auto(v)) for k, v in kv.items()] if isinstance(kv, dict) else list(kv)
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(items))
    for key, vtype, v in items:
        out += _str(key) + struct.pack("<I", vtype) + _value(vtype, v)
    for name, shape, ttype, offset in tensors:
        out += _str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ttype, offset)
    out += b"\0" * (-len(out) % alignment)
    return out + data


LLAMA_KV = {"general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 64,
            "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2, "llama.feed_forward_length": 128,
            "llama.context_length": 2048, "llama.vocab_size": 256}


def llama_tensors(n_layers: int = 2, n_embd: int = 64, n_ff: int = 128, n_vocab: int = 256,
                  kv_dim: int = 32) -> list[tuple[str, list[int], int, int]]:
    """A tiny Llama's F32 tensors with contiguous 32-aligned offsets, as llama.cpp requires."""
    shapes = [("token_embd.weight", [n_embd, n_vocab]), ("output_norm.weight", [n_embd]),
              ("output.weight", [n_embd, n_vocab])]
    for il in range(n_layers):
        p = f"blk.{il}."
        shapes += [(p + "attn_norm.weight", [n_embd]), (p + "attn_q.weight", [n_embd, n_embd]),
                   (p + "attn_k.weight", [n_embd, kv_dim]), (p + "attn_v.weight", [n_embd, kv_dim]),
                   (p + "attn_output.weight", [n_embd, n_embd]), (p + "ffn_norm.weight", [n_embd]),
                   (p + "ffn_gate.weight", [n_embd, n_ff]), (p + "ffn_up.weight", [n_embd, n_ff]),
                   (p + "ffn_down.weight", [n_ff, n_embd])]
    out, off = [], 0
    for name, shape in shapes:
        n = 4
        for d in shape:
            n *= d
        out.append((name, shape, 0, off))
        off += n + (-n % 32)
    return out


def data_size(tensors: list[tuple[str, list[int], int, int]]) -> int:
    """Bytes of the data section of llama_tensors() (F32)."""
    name, shape, _, off = tensors[-1]
    n = 4
    for d in shape:
        n *= d
    return off + n
