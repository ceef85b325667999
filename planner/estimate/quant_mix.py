"""llama.cpp ftypes (Q4_K_M...) -> the per-tensor types llama-quantize would write.

A port of `llama_tensor_get_type` and friends in vendor/llama.cpp/src/llama-quant.cpp
(llama-cpp-python 0.3.36): which tensors may be quantized, the per-category rules of each
ftype (use_more_bits, attn_v for GQA and 70B, 8-expert bumps), and the row-length fallbacks.
Checked tensor-by-tensor against real llama_model_quantize output in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planner.errors import InvalidOptionError
from planner.model.ggml_types import block_size
from planner.model.spec import ModelSpec, TensorSpec, converter_type

# LLAMA_FTYPE -> default ggml type (llama_ftype_get_default_type)
FTYPE_DEFAULT = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0",
    "Q5_1": "Q5_1", "Q8_0": "Q8_0", "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K",
    "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K", "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K",
    "Q5_K_M": "Q5_K", "Q6_K": "Q6_K", "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS",
    "IQ2_M": "IQ2_S", "IQ3_XXS": "IQ3_XXS", "IQ3_XS": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S",
    "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "MXFP4_MOE": "MXFP4",
}
FTYPES = tuple(FTYPE_DEFAULT)
_IQ12 = {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"}
_FALLBACK = {"IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL",
             "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
             "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "Q4_K": "Q5_0",
             "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_NO_QUANT = ("_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d", "shortconv.conv.weight", "attn_rel_b.weight",
             "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
             "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
             "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
             "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
             "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight")


_NO_QUANT_RE = re.compile("|".join(re.escape(s) for s in _NO_QUANT))


def allows_quantization(t: TensorSpec) -> bool:
    """tensor_allows_quantization: 2D+ tensors (ggml_n_dims: trailing 1s do not count) named *weight,
    not norms, expert routers or the small tensors llama-quant.cpp lists. (Hot: the search asks it
    ~10,000 times for a 70B plan, so the answer is kept on the spec, whose name and shape never change.)"""
    d = t.__dict__
    ok = d.get("_allows_quantization")
    if ok is None:
        shape = t.shape
        ok = d["_allows_quantization"] = (len(shape) >= 2 and t.name.endswith("weight")
                                           and (shape[1] > 1 or max(shape[2:], default=1) > 1)
                                           and _NO_QUANT_RE.search(t.name) is None)
    return ok


def source_type(t: TensorSpec, base: str = "F16") -> str:
    """The type a converter writes when none is known: F32 for 1D and routers (convert_hf_to_gguf)."""
    return t.type or converter_type(t.name, t.shape, base)


def category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                     ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                     ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                     ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def fallback(t: TensorSpec, qtype: str) -> str:
    """tensor_type_fallback: rows that are not a multiple of the block size take another type."""
    ncols = t.shape[0]
    if ncols % block_size(qtype) == 0:
        return qtype
    ret = _FALLBACK.get(qtype, qtype)
    if ncols % block_size(ret) != 0:
        ret = "F16"
    return ret


def _layer(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else 0


def _ordinal(st: dict, key: str, t: TensorSpec, n_expert: int, by_name: bool = True) -> int:
    """The layer llama-quant.cpp uses for an FFN tensor: its running count of the category
    (qs.i_ffn_down...) over tensors sorted by layer, or the name's layer when the model has experts
    (layer_info). They differ where some layers have no FFN (Nemotron-H's Mamba/attention layers)."""
    i = st[key]
    st[key] += 1
    return _layer(t.name) if by_name and n_expert > 1 else i


@dataclass
class _Q:
    """One tensor's question to llama_tensor_get_type: the model's shape facts, the ftype, the running counts."""
    t: TensorSpec
    new: str  # the ftype's default type for this tensor
    ftype: str
    st: dict
    imatrix: bool
    n_gqa: int
    n_expert: int
    n_layer: int
    is_70b: bool


def _impl(model: ModelSpec, t: TensorSpec, new: str, ftype: str, cat: str, st: dict, imatrix: bool) -> str:
    """llama-quant.cpp llama_tensor_get_type, one function per tensor category in its order of checks."""
    q = _Q(t, new, ftype, st, imatrix, n_gqa=model.n_head // max(1, model.n_kv_heads),
           n_expert=model.moe.n_expert if model.moe else 0, n_layer=model.n_layers,
           is_70b=model.n_layers == 80 and model.architecture in ("llama", "qwen2"))
    attn_v = cat in ("attn_v", "attn_qkv", "attn_kv_b")
    if cat == "output" or (model.tied_embeddings and cat == "token_embd"):
        return _output(q)
    if ftype == "MXFP4_MOE":
        return "MXFP4" if len(t.shape) > 2 and t.shape[2] > 1 else "Q8_0"
    if cat == "token_embd":
        return _token_embd(q)
    if ftype in _IQ12:
        return _iq12(q, cat, attn_v)
    if attn_v:
        return _attn_v(q)
    rule = _BY_CATEGORY.get(cat)
    return rule(q, cat) if rule else new


def _output(q: _Q) -> str:
    if q.ftype == "MXFP4_MOE" or q.t.shape[0] % block_size(q.new) != 0:
        return "Q8_0"
    if q.ftype in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
        return "Q5_K"
    return "Q6_K" if q.new != "Q8_0" else q.new


def _token_embd(q: _Q) -> str:
    if q.ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
        return "Q2_K"
    if q.ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
        return "IQ3_S"
    return q.new


def _iq12(q: _Q, cat: str, attn_v: bool) -> str:
    """The 1-2 bit i-quants' own rules (llama.cpp checks them before the rest)."""
    ftype, new = q.ftype, q.new
    if attn_v:
        q.st["i_wv"] += 1
        if q.n_gqa >= 4 or q.n_expert >= 4:
            return "Q4_K"
        return "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
    if q.n_expert == 8 and cat == "attn_k":
        return "Q4_K"
    if cat == "ffn_down":
        i = _ordinal(q.st, "i_down", q.t, q.n_expert, by_name=False)
        if i < q.n_layer // 8:
            new = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
        return new
    if cat == "attn_output":
        if q.n_expert == 8:
            return "Q5_K"
        if ftype in ("IQ1_S", "IQ1_M"):
            return "IQ2_XXS"
        if ftype in ("IQ2_S", "IQ2_M"):
            return "IQ3_S"
    return new


def _attn_v(q: _Q) -> str:
    ftype, new, n_gqa = q.ftype, q.new, q.n_gqa
    i_wv, n_wv = q.st["i_wv"], q.st["n_wv"]
    if ftype == "Q2_K":
        new = "Q4_K" if n_gqa >= 4 else "Q3_K"
    elif ftype == "Q2_K_S" and n_gqa >= 4:
        new = "Q4_K"
    elif ftype == "IQ3_XXS":
        new = "Q4_K" if n_gqa >= 4 else ("IQ3_S" if not q.imatrix else "IQ3_XXS")
    elif ftype in ("IQ3_XS", "IQ3_S") and n_gqa >= 4:
        new = "Q4_K"
    elif ftype == "IQ3_M":
        new = "Q4_K"
    elif ftype == "Q3_K_M":
        new = "Q5_K" if i_wv < 2 else "Q4_K"
    elif ftype == "Q3_K_L":
        new = "Q5_K"
    elif ftype in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
        new = "Q5_K"
    elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_wv, n_wv):
        new = "Q6_K"
    elif ftype == "Q4_K_S" and i_wv < 4:
        new = "Q5_K"
    if q.is_70b and new in ("Q3_K", "Q4_K"):
        new = "Q5_K"
    if q.n_expert == 8:
        new = "Q8_0"
    q.st["i_wv"] += 1
    return new


def _attn_k(q: _Q, cat: str) -> str:
    if q.n_expert == 8:
        return "Q8_0"
    if q.ftype == "IQ3_XS":
        return "IQ3_XXS"
    if q.ftype == "IQ3_XXS":
        return "IQ2_S"
    return q.new


def _attn_q(q: _Q, cat: str) -> str:
    return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(q.ftype, q.new)


def _ffn_down(q: _Q, cat: str) -> str:
    ftype, new, n_layer, imatrix = q.ftype, q.new, q.n_layer, q.imatrix
    i = _ordinal(q.st, "i_down", q.t, q.n_expert)
    if ftype == "Q2_K":
        return "Q3_K"
    if ftype == "Q2_K_S":
        return "Q4_K" if i < n_layer // 8 else new
    if ftype == "IQ3_XXS" and not imatrix:
        return "Q4_K" if i < n_layer // 8 else "Q3_K"
    if ftype == "Q3_K_M":
        return "Q5_K" if i < n_layer // 16 else "Q4_K"
    if ftype == "IQ3_M" and (i < n_layer // 8 or (q.n_expert == 8 and use_more_bits(i, n_layer))):
        return "Q4_K"
    if ftype == "Q3_K_L":
        return "Q5_K"
    if ftype == "Q4_K_M":
        return "Q6_K" if use_more_bits(i, n_layer) else new
    if i < n_layer // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not imatrix:
        return "Q5_K"
    if ftype == "Q5_K_M" and use_more_bits(i, n_layer):
        return "Q6_K"
    if ftype == "Q4_K_S" and i < n_layer // 8:
        return "Q5_K"
    if ftype in ("Q4_0", "Q5_0") and imatrix and i < n_layer // 8:
        return "Q4_1" if ftype == "Q4_0" else "Q5_1"
    return new


def _attn_output(q: _Q, cat: str) -> str:
    if q.n_expert == 8:
        if q.ftype in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M",
                       "IQ3_S", "IQ3_M", "IQ4_XS"):
            return "Q5_K"
        return q.new
    return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
            "IQ3_M": "Q4_K"}.get(q.ftype, q.new)


def _ffn_gate_up(q: _Q, cat: str) -> str:
    i = _ordinal(q.st, "i_" + cat[4:], q.t, q.n_expert)
    if q.ftype == "IQ3_XS" and q.n_layer // 8 <= i < 7 * q.n_layer // 8:
        return "IQ3_XXS"
    return q.new


# the remaining categories' rules (attn_qkv is handled as attn_v, as in llama.cpp)
_BY_CATEGORY = {"attn_k": _attn_k, "attn_q": _attn_q, "ffn_down": _ffn_down, "attn_output": _attn_output,
                "ffn_gate": _ffn_gate_up, "ffn_up": _ffn_gate_up}


def ftype_tensor_types(model: ModelSpec, ftype: str, *, imatrix: bool = False,
                       overrides: dict[str, str] | None = None, base: str = "F16") -> dict[str, str]:
    """Every tensor's type after `llama-quantize <ftype>` of a `base`-typed source.

    overrides: regex -> type, as llama-quantize --tensor-type (they win over the built-in rules).
    Memoised on the spec without overrides (the optimizer asks for the same mixes each plan).
    """
    ftype = ftype.upper()
    if ftype not in FTYPE_DEFAULT:
        raise InvalidOptionError(f"unknown quant type '{ftype}'; llama.cpp ftypes: {', '.join(FTYPES)}")
    key = ("ftype", ftype, imatrix, base)
    hit = None if overrides else model.memo.get(key)
    if hit is not None and hit[0] is model.tensors:
        return dict(hit[1])
    default = FTYPE_DEFAULT[ftype]
    quantized = default not in ("F32", "F16", "BF16")
    pats = [(re.compile(p), q.upper()) for p, q in (overrides or {}).items()]
    n_wv = sum(category(t.name) in ("attn_v", "attn_qkv", "attn_kv_b") for t in model.tensors)
    st = {"i_down": 0, "i_gate": 0, "i_up": 0, "i_wv": 0, "n_wv": n_wv}
    out: dict[str, str] = {}
    # llama-quantize walks the tensors sorted by layer (llama-quant.cpp), not in file order;
    # the attn_v counter of use_more_bits depends on it
    for t in sorted(model.tensors, key=lambda x: -1 if x.layer is None else x.layer):
        src = source_type(t, base)
        if not allows_quantization(t):
            out[t.name] = src
            continue
        new = default
        if quantized:
            manual = next((q for p, q in pats if p.search(t.name)), None)
            if manual:
                new = manual
            else:
                new = _impl(model, t, new, ftype, category(t.name), st, imatrix)
            new = fallback(t, new)
        out[t.name] = new
    if not overrides:
        model.memo[key] = (model.tensors, dict(out))
    return out
