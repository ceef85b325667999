"""config.json (Hugging Face) -> ModelSpec, the way convert_hf_to_gguf.py + llama.cpp see it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.errors import ModelNotFoundError
from planner.model import hybrid
from planner.model.inventory import Shape, build_tensors
from planner.model.spec import LayerSpec, MLASpec, ModelSpec, MoESpec, TensorSpec, converter_type

# HF `architectures[0]` -> llama.cpp general.architecture (convert_hf_to_gguf.py registrations)
HF_TO_GGUF_ARCH = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "MixtralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3moe",
    "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3", "Phi3ForCausalLM": "phi3",
    "DeepseekV3ForCausalLM": "deepseek2", "DeepseekV2ForCausalLM": "deepseek2",
    "GptOssForCausalLM": "gpt-oss", "Glm4MoeForCausalLM": "glm4moe",
    "MiniMaxM2ForCausalLM": "minimax-m2",
    "NemotronHForCausalLM": "nemotron_h", "JambaForCausalLM": "jamba", "Lfm2ForCausalLM": "lfm2",
    "GraniteMoeHybridForCausalLM": "granitehybrid", "FalconH1ForCausalLM": "falcon-h1",
    "Qwen3NextForCausalLM": "qwen3next", "Qwen3_5ForConditionalGeneration": "qwen35",
    "Qwen3_5ForCausalLM": "qwen35", "Qwen3_5MoeForConditionalGeneration": "qwen35moe",
    "Qwen3_5MoeForCausalLM": "qwen35moe", "KimiLinearForCausalLM": "kimi-linear",
    "SmolLM3ForCausalLM": "smollm3", "Mistral3ForConditionalGeneration": "mistral3",
    "Ministral3ForCausalLM": "mistral3",
    # Kimi K2.5's language model is DeepSeek-V3's layout (conversion/deepseek.py converts it with DeepseekV2Model)
    "KimiK25ForConditionalGeneration": "deepseek2",
}
# the ConditionalGeneration configs that nest their language model under text_config
NESTS_TEXT = frozenset({"gemma3", "mistral3"})


def _get(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


@dataclass(frozen=True)
class _Attention:
    """What a transformer family's reader says beside the shape it fills: the sliding window, its
    period (every period-th layer full, llama.cpp's set_swa_pattern), and the MLA cache."""
    window: int | None = None
    swa_period: int | None = None
    mla: MLASpec | None = None

    def is_swa(self, il: int) -> bool:
        return bool(self.swa_period) and il % self.swa_period < self.swa_period - 1


def spec_from_hf_config(config: dict[str, Any], name: str, source: str) -> ModelSpec:
    """The model as convert_hf_to_gguf.py would write it: the family's reader (READERS, or HYBRID_READERS for
    recurrent hybrids) fills in what differs from Llama's layout."""
    archs = config.get("architectures") or []
    hf_arch = archs[0] if archs else ""
    arch = HF_TO_GGUF_ARCH.get(hf_arch)
    if arch is None:
        raise ModelNotFoundError(
            f"{name}: architecture '{hf_arch or 'unknown'}' is not supported yet "
            f"(supported: {', '.join(sorted(set(HF_TO_GGUF_ARCH)))}); a GGUF of it can still be read")
    if arch in HYBRID_READERS:
        return _hybrid(arch, config, name, source)
    cfg = config.get("text_config", config) if arch in NESTS_TEXT and "text_config" in config else config
    s = _shape(arch, cfg, config)
    att = READERS.get(arch, _plain)(s, cfg, hf_arch)
    tensors = _origins(build_tensors(s), config)
    n_mtp = s.extra.get("n_mtp", 0)
    return ModelSpec(
        name=name, source=source, architecture=arch, n_layers=s.n_layers + n_mtp, n_embd=s.n_embd, n_head=s.n_head,
        n_kv_heads=s.n_kv_heads, head_dim_k=s.head_dim_k, head_dim_v=s.head_dim_v, n_ff=s.n_ff,
        n_vocab=s.n_vocab, tied_embeddings=s.tied,
        n_ctx_train=_get(cfg, "max_position_embeddings", default=4096),
        layers=_layers(s, att, n_mtp), moe=_moe(s), mla=att.mla, tensors=tensors, n_nextn=n_mtp)


def _shape(arch: str, cfg: dict[str, Any], config: dict[str, Any]) -> Shape:
    """Llama's layout from the common keys; a family's reader changes what differs."""
    n_embd, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = _get(cfg, "head_dim", default=n_embd // n_head)
    return Shape(arch=arch, n_layers=cfg["num_hidden_layers"], n_embd=n_embd, n_head=n_head,
                 n_kv_heads=_get(cfg, "num_key_value_heads", default=n_head), head_dim_k=head_dim,
                 head_dim_v=head_dim, n_ff=_get(cfg, "intermediate_size", default=0),
                 n_vocab=_get(cfg, "vocab_size", default=config.get("vocab_size")),
                 tied=bool(_get(cfg, "tie_word_embeddings", default=config.get("tie_word_embeddings", False))))


def _rope_type(cfg: dict[str, Any]) -> str | None:
    rope = cfg.get("rope_scaling") or {}
    return rope.get("rope_type") or rope.get("type")


def _experts(s: Shape, cfg: dict[str, Any], count_key: str, expert_ff: int) -> None:
    s.n_expert, s.n_expert_used, s.expert_ff = cfg[count_key], cfg["num_experts_per_tok"], expert_ff


def _plain(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    return _Attention()


def _llama(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.rope_freqs = _rope_type(cfg) == "llama3"
    if hf_arch == "MixtralForCausalLM":
        _experts(s, cfg, "num_local_experts", s.n_ff)
    return _Attention()


def _qwen2(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.qkv_bias = True
    return _Attention()


def _qwen3(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.qk_norm = True
    return _Attention()


def _qwen3moe(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.qk_norm = True
    _experts(s, cfg, "num_experts", cfg["moe_intermediate_size"])
    return _Attention()


def _gemma2(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.tied = True
    return _Attention(window=cfg.get("sliding_window") or 4096, swa_period=2)  # set_swa_pattern(2)


def _gemma3(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.tied, s.qk_norm = True, True
    s.n_vocab = s.n_vocab or 262208
    return _Attention(window=cfg.get("sliding_window") or 1024,
                      swa_period=cfg.get("sliding_window_pattern") or 6)  # set_swa_pattern(6)


def _phi3(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.longrope = _rope_type(cfg) in ("longrope", "su")
    return _Attention()


def _deepseek2(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.q_lora_rank = cfg.get("q_lora_rank")
    s.kv_lora_rank = cfg["kv_lora_rank"]
    s.rope_dim, s.nope_dim = cfg["qk_rope_head_dim"], cfg["qk_nope_head_dim"]
    s.v_head_dim = cfg["v_head_dim"]
    _shared_experts(s, cfg)
    # MLA cache: one KV "head" of kv_lora_rank + rope dims, no V cache (llama.cpp PR #19067)
    s.n_kv_heads = 1
    s.head_dim_k, s.head_dim_v = s.kv_lora_rank + s.rope_dim, s.kv_lora_rank
    return _Attention(mla=MLASpec(kv_lora_rank=s.kv_lora_rank, q_lora_rank=s.q_lora_rank, rope_dim=s.rope_dim,
                                  nope_dim=s.nope_dim, v_head_dim=s.v_head_dim))


def _shared_experts(s: Shape, cfg: dict[str, Any]) -> None:
    """DeepSeek's and GLM's routed experts, shared experts and leading dense layers."""
    _experts(s, cfg, "n_routed_experts", cfg["moe_intermediate_size"])
    s.n_shared_expert = cfg.get("n_shared_experts", 0)
    s.n_dense_lead = cfg.get("first_k_dense_replace", 0)


def _glm4moe(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.qkv_bias = bool(cfg.get("attention_bias", True))
    s.qk_norm = bool(cfg.get("use_qk_norm", False))
    _shared_experts(s, cfg)
    # convert_hf_to_gguf (conversion/glm.py) appends the MTP blocks unless --no-mtp
    s.extra["n_mtp"] = cfg.get("num_nextn_predict_layers", 0) or 0
    return _Attention()


def _minimax_m2(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    _experts(s, cfg, "num_local_experts", s.n_ff)  # conversion/minimax.py: the experts' width is intermediate_size
    return _Attention()


def _gpt_oss(s: Shape, cfg: dict[str, Any], hf_arch: str) -> _Attention:
    s.qkv_bias = True
    _experts(s, cfg, "num_local_experts", s.n_ff)
    return _Attention(window=cfg.get("sliding_window") or 128, swa_period=2)  # set_swa_pattern(2)


# llama.cpp architecture -> what its config.json changes in Llama's layout (convert_hf_to_gguf.py's model classes)
READERS: dict[str, Callable[[Shape, dict[str, Any], str], _Attention]] = {
    "llama": _llama, "qwen2": _qwen2, "qwen3": _qwen3, "qwen3moe": _qwen3moe, "gemma2": _gemma2, "gemma3": _gemma3,
    "phi3": _phi3, "deepseek2": _deepseek2, "glm4moe": _glm4moe, "minimax-m2": _minimax_m2, "gpt-oss": _gpt_oss,
}


def _moe(s: Shape) -> MoESpec | None:
    if not s.n_expert:
        return None
    return MoESpec(n_expert=s.n_expert, n_expert_used=s.n_expert_used, expert_ff=s.expert_ff,
                   n_shared_expert=s.n_shared_expert, shared_ff=s.expert_ff * s.n_shared_expert,
                   n_dense_lead=s.n_dense_lead)


def _layers(s: Shape, att: _Attention, n_mtp: int) -> list[LayerSpec]:
    layers = [LayerSpec(attn="swa" if att.is_swa(il) else "full", n_head=s.n_head, n_head_kv=s.n_kv_heads,
                        window=att.window if att.is_swa(il) else None, moe=bool(s.n_expert) and il >= s.n_dense_lead)
              for il in range(s.n_layers)]
    return layers + [LayerSpec(attn="none", n_head=s.n_head, n_head_kv=s.n_kv_heads, moe=bool(s.n_expert))] * n_mtp


def _origins(tensors: list[TensorSpec], config: dict[str, Any]) -> list[TensorSpec]:
    """gpt-oss ships its experts in MXFP4 and convert_hf_to_gguf.py keeps them so: that is their full
    precision (the rest is BF16)."""
    if (config.get("quantization_config") or {}).get("quant_method") != "mxfp4":
        return tensors
    return [t.model_copy(update={"origin": "MXFP4"}) if t.name.endswith("_exps.weight") else t for t in tensors]


def _lfm2_ff(cfg: dict[str, Any]) -> int:
    """LFM2's FFN width as its modeling code derives it (block_auto_adjust_ff_dim: 2/3, the
    multiplier, rounded up to block_multiple_of): 12288 -> 8192 for LFM2-1.2B."""
    ff = int(cfg.get("block_ff_dim") or cfg.get("intermediate_size"))
    if cfg.get("block_auto_adjust_ff_dim", True):
        ff = int(2 * ff / 3)
        if cfg.get("block_ffn_dim_multiplier"):
            ff = int(cfg["block_ffn_dim_multiplier"] * ff)
        mult = int(cfg.get("block_multiple_of", 256))
        ff = mult * ((ff + mult - 1) // mult)
    return ff


@dataclass(frozen=True)
class _Common:
    """The keys every hybrid's config.json shares."""
    name: str
    e: int
    n_layers: int
    n_head: int
    n_kv: int
    vocab: int
    tied: bool


def _hybrid(arch: str, cfg: dict[str, Any], name: str, source: str) -> ModelSpec:
    """Recurrent hybrids: their layer layout (pattern, periods or layer types) decides which layers
    hold attention, a Mamba mixer or a short convolution (planner/model/hybrid.py builds the tensors)."""
    if arch in ("qwen35", "qwen35moe"):
        cfg = cfg.get("text_config", cfg)  # the ConditionalGeneration configs nest the language model
    n_head = cfg["num_attention_heads"]
    c = _Common(name=name, e=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"], n_head=n_head,
                n_kv=_get(cfg, "num_key_value_heads", default=n_head), vocab=cfg["vocab_size"],
                tied=bool(cfg.get("tie_word_embeddings", arch in ("lfm2", "granitehybrid"))))
    m = HYBRID_READERS[arch](arch, cfg, c)
    # float weights of undecided type, except the small SSM tensors convert_hf_to_gguf keeps in F32
    tensors = [t.model_copy(update={"type": None}) if t.type == converter_type(t.name, t.shape) else t
               for t in m.tensors]
    return m.model_copy(update={"name": name, "source": source, "tensors": tensors,
                                "n_ctx_train": _get(cfg, "max_position_embeddings", default=4096)})


def _nemotron_h(arch: str, cfg: dict[str, Any], c: _Common) -> ModelSpec:
    pattern = cfg["hybrid_override_pattern"]
    unknown = set(pattern) - set("M*-E") or ("E" in pattern and not cfg.get("n_routed_experts"))
    if unknown or cfg.get("moe_latent_size"):
        raise ModelNotFoundError(f"{c.name}: this Nemotron-H layout (blocks {''.join(sorted(set(pattern)))}"
                                 f"{', latent MoE' if cfg.get('moe_latent_size') else ''}) is not supported "
                                 f"from config.json yet; a GGUF of it can still be read")
    moe = dict(n_expert=cfg.get("n_routed_experts", 0), n_expert_used=cfg.get("num_experts_per_tok", 0),
               expert_ff=cfg.get("moe_intermediate_size", 0),
               shared_ff=cfg.get("moe_shared_expert_intermediate_size", 0) * cfg.get("n_shared_experts", 1)) \
        if "E" in pattern else {}
    d_head = cfg.get("mamba_head_dim", 64)
    return hybrid.nemotron_h_spec(pattern, e=c.e, vocab=c.vocab, d_inner=cfg.get("mamba_num_heads", 128) * d_head,
                                  d_state=cfg.get("ssm_state_size", 128),
                                  n_group=cfg.get("n_groups", cfg.get("mamba_num_groups", 8)), head=d_head,
                                  n_head=c.n_head, n_head_kv=c.n_kv,
                                  head_dim=_get(cfg, "head_dim", default=c.e // c.n_head),
                                  n_ff=cfg.get("intermediate_size") or cfg.get("moe_intermediate_size", 0),
                                  tied=c.tied, **moe)


def _jamba(arch: str, cfg: dict[str, Any], c: _Common) -> ModelSpec:
    if cfg.get("mamba_expand", 2) != 2:
        raise ModelNotFoundError(f"{c.name}: llama.cpp runs Jamba only with mamba_expand 2")
    ap, ao = cfg.get("attn_layer_period", 8), cfg.get("attn_layer_offset", 4)
    ep, eo = cfg.get("expert_layer_period", 2), cfg.get("expert_layer_offset", 1)
    n_exp, n = cfg.get("num_experts", 16), c.n_layers
    return hybrid.jamba_spec(n, attn_layers=tuple(i for i in range(n) if i % ap == ao),
                             moe_layers=tuple(i for i in range(n) if n_exp > 1 and i % ep == eo),
                             e=c.e, vocab=c.vocab, d_state=cfg.get("mamba_d_state", 16), n_head=c.n_head,
                             n_head_kv=c.n_kv, n_ff=cfg["intermediate_size"], n_expert=n_exp,
                             n_expert_used=cfg.get("num_experts_per_tok", 2), tied=c.tied)


def _lfm2(arch: str, cfg: dict[str, Any], c: _Common) -> ModelSpec:
    attn = cfg.get("full_attn_idxs")
    if attn is None:
        attn = [i for i, t in enumerate(cfg.get("layer_types") or []) if "attention" in t]
    return hybrid.lfm2_spec("".join("A" if i in attn else "C" for i in range(c.n_layers)), e=c.e, vocab=c.vocab,
                            n_head=c.n_head, n_head_kv=c.n_kv, n_ff=_lfm2_ff(cfg), l_cache=cfg.get("conv_L_cache", 3))


def _falcon_h1(arch: str, cfg: dict[str, Any], c: _Common) -> ModelSpec:
    d_head = cfg.get("mamba_d_head", 64)
    n_ssm_head = cfg.get("mamba_n_heads", 2 * c.e // d_head)
    return hybrid.falcon_h1_spec(e=c.e, n_layer=c.n_layers, vocab=c.vocab,
                                 d_inner=cfg.get("mamba_d_ssm") or n_ssm_head * d_head,
                                 d_state=cfg.get("mamba_d_state", 256), n_group=cfg.get("mamba_n_groups", 1),
                                 head=d_head, n_head=c.n_head, n_head_kv=c.n_kv,
                                 head_dim=_get(cfg, "head_dim", default=c.e // c.n_head),
                                 n_ff=cfg["intermediate_size"], tied=c.tied)


def _granite_hybrid(arch: str, cfg: dict[str, Any], c: _Common) -> ModelSpec:
    types = cfg.get("layer_types") or ["mamba"] * c.n_layers
    n_exp = cfg.get("num_local_experts", 0)
    d_head = cfg.get("mamba_d_head", 64)
    attn = tuple(i for i, t in enumerate(types) if t == "attention")
    return hybrid.hybrid_spec(e=c.e, n_layer=c.n_layers, attn_layers=attn, vocab=c.vocab,
                              d_state=cfg.get("mamba_d_state", 128), n_group=cfg.get("mamba_n_groups", 1),
                              head=d_head, d_inner=cfg.get("mamba_n_heads", 2 * c.e // d_head) * d_head,
                              n_head=c.n_head, n_head_kv=c.n_kv, head_dim=c.e // c.n_head,
                              n_ff=cfg["intermediate_size"] if n_exp else cfg["shared_intermediate_size"],
                              n_expert=n_exp, n_expert_used=cfg.get("num_experts_per_tok", 0) if n_exp else 0,
                              shared_ff=cfg.get("shared_intermediate_size", 0) if n_exp else 0, tied=c.tied)


def _kimi_linear(arch: str, cfg: dict[str, Any], c: _Common) -> ModelSpec:
    """Kimi-Linear: KDA layers and MLA at linear_attn_config.full_attn_layers (1-based, as
    conversion/kimi_linear.py reads them), a dense lead, then MoE with shared experts."""
    name, e, n_layers, n_head, vocab, tied = c.name, c.e, c.n_layers, c.n_head, c.vocab, c.tied
    la = cfg["linear_attn_config"]
    if cfg.get("q_lora_rank") or la.get("num_heads", n_head) != n_head:
        raise ModelNotFoundError(f"{name}: this Kimi-Linear layout (a q LoRA, or KDA heads other than the attention "
                                 f"heads) is not built from config.json yet; a GGUF of it can still be read")
    full = set(la["full_attn_layers"])
    return hybrid.kimi_linear_spec("".join("A" if il + 1 in full else "K" for il in range(n_layers)), e=e,
                                   vocab=vocab, n_head=n_head, kda_head=la["head_dim"],
                                   d_conv=la.get("short_conv_kernel_size", 4), kv_lora=cfg["kv_lora_rank"],
                                   rope=cfg["qk_rope_head_dim"], nope=cfg["qk_nope_head_dim"],
                                   v_head=cfg["v_head_dim"], n_ff=cfg["intermediate_size"],
                                   n_expert=cfg["num_experts"], n_expert_used=cfg["num_experts_per_token"],
                                   expert_ff=cfg["moe_intermediate_size"], tied=tied,
                                   n_dense=cfg.get("first_k_dense_replace", 1),
                                   n_shared=cfg.get("num_shared_experts", 1))


def _qwen_delta_net(arch: str, cfg: dict[str, Any], c: _Common) -> ModelSpec:
    """Qwen3-Next / Qwen3.5 (dense or MoE): gated delta-net layers and every k-th layer gated attention
    (full_attention_interval, or the period of layer_types), MTP blocks as convert_hf_to_gguf keeps them."""
    name, e, n_layers, n_head, n_kv, vocab, tied = c.name, c.e, c.n_layers, c.n_head, c.n_kv, c.vocab, c.tied
    types = cfg.get("layer_types")
    interval = cfg.get("full_attention_interval", 4)
    if types:
        attn = [i for i, t in enumerate(types) if t == "full_attention"]
        interval = attn[0] + 1 if attn else 0
        if not attn or attn != list(range(interval - 1, n_layers, interval)):
            raise ModelNotFoundError(f"{name}: attention layers {attn} are not every k-th layer; this layout is "
                                     f"not built from config.json yet (a GGUF of it can still be read)")
    k_dim = cfg.get("linear_key_head_dim", 128)
    if cfg.get("linear_value_head_dim", k_dim) != k_dim:
        raise ModelNotFoundError(f"{name}: llama.cpp's gated delta net needs equal key and value head widths "
                                 f"(linear_key_head_dim {k_dim}, linear_value_head_dim {cfg['linear_value_head_dim']})")
    n_exp = cfg.get("num_experts", 0) if arch != "qwen35" else 0
    moe = dict(n_expert=n_exp, n_expert_used=cfg.get("num_experts_per_tok", 0),
               expert_ff=cfg.get("moe_intermediate_size", 0),
               shared_ff=cfg.get("shared_expert_intermediate_size", 0)) if n_exp else {}
    return hybrid.qwen35_spec(n_layer=n_layers, interval=interval, e=e, vocab=vocab, n_head=n_head, n_head_kv=n_kv,
                              head_dim=_get(cfg, "head_dim", default=e // n_head),
                              n_ff=cfg.get("intermediate_size", 0), d_state=k_dim,
                              n_k_heads=cfg.get("linear_num_key_heads", 16),
                              n_v_heads=cfg.get("linear_num_value_heads", 32),
                              d_conv=cfg.get("linear_conv_kernel_dim", 4),
                              # convert_hf_to_gguf (conversion/qwen.py _QwenMtpMixin) appends the MTP blocks unless
                              # --no-mtp; Qwen3-Next's config does not count them, its checkpoint has one
                              n_mtp=cfg.get("mtp_num_hidden_layers") or 1,
                              tied=tied, next_=arch == "qwen3next", **moe)


# recurrent hybrids: llama.cpp architecture -> its config.json reader (planner/model/hybrid.py builds the layout)
HYBRID_READERS: dict[str, Callable[[str, dict[str, Any], _Common], ModelSpec]] = {
    "nemotron_h": _nemotron_h, "jamba": _jamba, "lfm2": _lfm2, "granitehybrid": _granite_hybrid,
    "falcon-h1": _falcon_h1, "qwen3next": _qwen_delta_net, "qwen35": _qwen_delta_net, "qwen35moe": _qwen_delta_net,
    "kimi-linear": _kimi_linear,
}
