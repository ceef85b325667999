"""Tensor inventories: every weight tensor named and shaped as llama.cpp creates it.

Each builder follows the architecture's `load_arch_tensors` in llama.cpp
(vendor/llama.cpp/src/models/<arch>.cpp); shapes are ggml order, {row length, rows, ...}.
Tied embeddings have no output.weight in the file (llama.cpp duplicates token_embd).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.model.spec import TensorSpec


@dataclass
class Shape:
    """What the builders need; derived from a config.json or a GGUF header."""
    arch: str
    n_layers: int
    n_embd: int
    n_head: int
    n_kv_heads: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    tied: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    rope_freqs: bool = False          # llama3 rope scaling: one rope_freqs.weight {head_dim/2}
    longrope: bool = False            # phi3 long/short factors
    n_rot: int | None = None
    # MoE
    n_expert: int = 0
    n_expert_used: int = 0
    expert_ff: int = 0
    n_shared_expert: int = 0
    shared_ff: int = 0
    n_dense_lead: int = 0
    # MLA (deepseek2)
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    rope_dim: int = 0
    nope_dim: int = 0
    v_head_dim: int = 0
    extra: dict = field(default_factory=dict)


def _t(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name=name, shape=list(shape))


def _head(s: Shape, out: list[TensorSpec]) -> None:
    out.append(_t("token_embd.weight", s.n_embd, s.n_vocab))
    out.append(_t("output_norm.weight", s.n_embd))
    if not s.tied:
        out.append(_t("output.weight", s.n_embd, s.n_vocab))


def _qkv(s: Shape, i: int, out: list[TensorSpec]) -> None:
    p = f"blk.{i}."
    q, k, v = s.n_head * s.head_dim_k, s.n_kv_heads * s.head_dim_k, s.n_kv_heads * s.head_dim_v
    out += [_t(p + "attn_q.weight", s.n_embd, q), _t(p + "attn_k.weight", s.n_embd, k),
            _t(p + "attn_v.weight", s.n_embd, v)]
    if s.qkv_bias:
        out += [_t(p + "attn_q.bias", q), _t(p + "attn_k.bias", k), _t(p + "attn_v.bias", v)]
    out.append(_t(p + "attn_output.weight", q, s.n_embd))


def _dense_ffn(s: Shape, i: int, out: list[TensorSpec], n_ff: int | None = None) -> None:
    p, ff = f"blk.{i}.", n_ff or s.n_ff
    out += [_t(p + "ffn_gate.weight", s.n_embd, ff), _t(p + "ffn_down.weight", ff, s.n_embd),
            _t(p + "ffn_up.weight", s.n_embd, ff)]


def _moe_ffn(s: Shape, i: int, out: list[TensorSpec]) -> None:
    p, e, ff = f"blk.{i}.", s.n_expert, s.expert_ff
    out.append(_t(p + "ffn_gate_inp.weight", s.n_embd, e))
    out += [_t(p + "ffn_gate_exps.weight", s.n_embd, ff, e), _t(p + "ffn_down_exps.weight", ff, s.n_embd, e),
            _t(p + "ffn_up_exps.weight", s.n_embd, ff, e)]


def llama_like(s: Shape) -> list[TensorSpec]:
    """llama (incl. Mistral, Mixtral, SmolLM), smollm3, mistral3 (models/smollm3.cpp, mistral3.cpp: Llama's tensors),
    qwen2, qwen3, qwen3moe, gemma2, gemma3."""
    out: list[TensorSpec] = []
    _head(s, out)
    if s.rope_freqs:
        out.append(_t("rope_freqs.weight", (s.n_rot or s.head_dim_k) // 2))
    gemma = s.arch in ("gemma2", "gemma3")
    for i in range(s.n_layers):
        p = f"blk.{i}."
        out.append(_t(p + "attn_norm.weight", s.n_embd))
        _qkv(s, i, out)
        if s.qk_norm:
            out += [_t(p + "attn_k_norm.weight", s.head_dim_k), _t(p + "attn_q_norm.weight", s.head_dim_k)]
        if gemma:
            out.append(_t(p + "post_attention_norm.weight", s.n_embd))
        out.append(_t(p + "ffn_norm.weight", s.n_embd))
        if s.n_expert:
            _moe_ffn(s, i, out)
        else:
            _dense_ffn(s, i, out)
        if gemma:
            out.append(_t(p + "post_ffw_norm.weight", s.n_embd))
    return out


def phi3(s: Shape) -> list[TensorSpec]:
    """Fused attn_qkv and a fused gate+up in ffn_up {n_embd, 2*n_ff} (models/phi3.cpp)."""
    out: list[TensorSpec] = []
    _head(s, out)
    for i in range(s.n_layers):
        p = f"blk.{i}."
        qkv = s.n_head * s.head_dim_k + 2 * s.n_kv_heads * s.head_dim_k
        out += [_t(p + "attn_norm.weight", s.n_embd), _t(p + "attn_qkv.weight", s.n_embd, qkv),
                _t(p + "attn_output.weight", s.n_embd, s.n_embd), _t(p + "ffn_norm.weight", s.n_embd),
                _t(p + "ffn_down.weight", s.n_ff, s.n_embd), _t(p + "ffn_up.weight", s.n_embd, 2 * s.n_ff)]
    if s.longrope:
        half = (s.n_rot or s.head_dim_k) // 2
        out += [_t("rope_factors_long.weight", half), _t("rope_factors_short.weight", half)]
    return out


def deepseek2(s: Shape) -> list[TensorSpec]:
    """MLA attention with split k_b/v_b, leading dense layers, shared experts (models/deepseek2.cpp)."""
    out: list[TensorSpec] = []
    _head(s, out)
    qk_head = s.nope_dim + s.rope_dim
    for i in range(s.n_layers):
        p = f"blk.{i}."
        out.append(_t(p + "attn_norm.weight", s.n_embd))
        if s.q_lora_rank:
            out += [_t(p + "attn_q_a_norm.weight", s.q_lora_rank)]
        out.append(_t(p + "attn_kv_a_norm.weight", s.kv_lora_rank))
        if s.q_lora_rank:
            out += [_t(p + "attn_q_a.weight", s.n_embd, s.q_lora_rank),
                    _t(p + "attn_q_b.weight", s.q_lora_rank, s.n_head * qk_head)]
        else:
            out.append(_t(p + "attn_q.weight", s.n_embd, s.n_head * qk_head))
        out += [_t(p + "attn_kv_a_mqa.weight", s.n_embd, s.kv_lora_rank + s.rope_dim),
                _t(p + "attn_k_b.weight", s.nope_dim, s.kv_lora_rank, s.n_head),
                _t(p + "attn_v_b.weight", s.kv_lora_rank, s.v_head_dim, s.n_head),
                _t(p + "attn_output.weight", s.n_head * s.v_head_dim, s.n_embd),
                _t(p + "ffn_norm.weight", s.n_embd)]
        if i < s.n_dense_lead:
            _dense_ffn(s, i, out)
        else:
            out.append(_t(p + "ffn_gate_inp.weight", s.n_embd, s.n_expert))
            out.append(_t(p + "exp_probs_b.bias", s.n_expert))
            ff, e = s.expert_ff, s.n_expert
            out += [_t(p + "ffn_down_exps.weight", ff, s.n_embd, e),
                    _t(p + "ffn_gate_exps.weight", s.n_embd, ff, e),
                    _t(p + "ffn_up_exps.weight", s.n_embd, ff, e)]
            sh = ff * s.n_shared_expert
            out += [_t(p + "ffn_gate_shexp.weight", s.n_embd, sh), _t(p + "ffn_down_shexp.weight", sh, s.n_embd),
                    _t(p + "ffn_up_shexp.weight", s.n_embd, sh)]
    return out


def gpt_oss(s: Shape) -> list[TensorSpec]:
    """Attention sinks, biases everywhere, MoE with expert biases (models/openai-moe.cpp)."""
    out: list[TensorSpec] = []
    _head(s, out)
    for i in range(s.n_layers):
        p = f"blk.{i}."
        out += [_t(p + "attn_norm.weight", s.n_embd), _t(p + "post_attention_norm.weight", s.n_embd)]
        _qkv(s, i, out)
        out += [_t(p + "attn_sinks.weight", s.n_head), _t(p + "attn_output.bias", s.n_embd)]
        _moe_ffn(s, i, out)
        ff, e = s.expert_ff, s.n_expert
        out += [_t(p + "ffn_gate_inp.bias", e), _t(p + "ffn_gate_exps.bias", ff, e),
                _t(p + "ffn_down_exps.bias", s.n_embd, e), _t(p + "ffn_up_exps.bias", ff, e)]
    return out


def glm4moe(s: Shape) -> list[TensorSpec]:
    """GLM-4.5/4.6/4.7 (models/glm4-moe.cpp): biased q/k/v, optional q/k norms, a post-attention norm before
    the FFN, leading dense layers, then sigmoid-routed experts (with a bias) and shared experts; the
    trailing MTP blocks (extra["n_mtp"]) as convert_hf_to_gguf writes them, which llama.cpp skips."""
    out: list[TensorSpec] = []
    _head(s, out)
    n_mtp = s.extra.get("n_mtp", 0)
    for i in range(s.n_layers + n_mtp):
        p = f"blk.{i}."
        out.append(_t(p + "attn_norm.weight", s.n_embd))
        _qkv(s, i, out)
        if s.qk_norm:
            out += [_t(p + "attn_q_norm.weight", s.head_dim_k), _t(p + "attn_k_norm.weight", s.head_dim_k)]
        out.append(_t(p + "post_attention_norm.weight", s.n_embd))
        if i < s.n_dense_lead:
            _dense_ffn(s, i, out)
        else:
            _moe_ffn(s, i, out)
            out.append(_t(p + "exp_probs_b.bias", s.n_expert))
            sh = s.expert_ff * s.n_shared_expert
            if sh:
                out += [_t(p + "ffn_gate_shexp.weight", s.n_embd, sh), _t(p + "ffn_down_shexp.weight", sh, s.n_embd),
                        _t(p + "ffn_up_shexp.weight", s.n_embd, sh)]
        if i >= s.n_layers:
            out += [_t(p + "nextn.eh_proj.weight", 2 * s.n_embd, s.n_embd), _t(p + "nextn.enorm.weight", s.n_embd),
                    _t(p + "nextn.hnorm.weight", s.n_embd), _t(p + "nextn.shared_head_norm.weight", s.n_embd)]
    return out


def minimax_m2(s: Shape) -> list[TensorSpec]:
    """MiniMax-M2 (models/minimax-m2.cpp): full-width q/k norms (n_head x head_dim, n_kv x head_dim),
    sigmoid-routed experts with a bias, no shared expert."""
    out: list[TensorSpec] = []
    _head(s, out)
    for i in range(s.n_layers):
        p = f"blk.{i}."
        out.append(_t(p + "attn_norm.weight", s.n_embd))
        _qkv(s, i, out)
        out += [_t(p + "attn_q_norm.weight", s.n_head * s.head_dim_k),
                _t(p + "attn_k_norm.weight", s.n_kv_heads * s.head_dim_k), _t(p + "ffn_norm.weight", s.n_embd)]
        _moe_ffn(s, i, out)
        out.append(_t(p + "exp_probs_b.bias", s.n_expert))
    return out


BUILDERS = {
    "llama": llama_like, "qwen2": llama_like, "qwen3": llama_like, "qwen3moe": llama_like,
    "gemma2": llama_like, "gemma3": llama_like, "mistral3": llama_like, "smollm3": llama_like,
    "phi3": phi3, "deepseek2": deepseek2, "gpt-oss": gpt_oss, "glm4moe": glm4moe,
    "minimax-m2": minimax_m2,
}


def build_tensors(s: Shape) -> list[TensorSpec]:
    return BUILDERS[s.arch](s)
