"""config.json (Hugging Face) -> ModelSpec, the way convert_hf_to_gguf.py + llama.cpp see it."""

from __future__ import annotations

from typing import Any

from planner.errors import ModelNotFoundError
from planner.model import hybrid
from planner.model.inventory import Shape, build_tensors
from planner.model.spec import LayerSpec, MLASpec, ModelSpec, MoESpec, converter_type

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
}


def _get(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def spec_from_hf_config(config: dict[str, Any], name: str, source: str) -> ModelSpec:
    archs = config.get("architectures") or []
    hf_arch = archs[0] if archs else ""
    arch = HF_TO_GGUF_ARCH.get(hf_arch)
    if arch is None:
        raise ModelNotFoundError(
            f"{name}: architecture '{hf_arch or 'unknown'}' is not supported yet "
            f"(supported: {', '.join(sorted(set(HF_TO_GGUF_ARCH)))}); a GGUF of it can still be read")
    if arch in HYBRIDS:
        return _hybrid(arch, config, name, source)
    cfg = config.get("text_config", config) if arch == "gemma3" and "text_config" in config else config
    n_embd = cfg["hidden_size"]
    n_head = cfg["num_attention_heads"]
    n_kv = _get(cfg, "num_key_value_heads", default=n_head)
    head_dim = _get(cfg, "head_dim", default=n_embd // n_head)
    n_layers = cfg["num_hidden_layers"]
    vocab = _get(cfg, "vocab_size", default=config.get("vocab_size"))
    tied = bool(_get(cfg, "tie_word_embeddings", default=config.get("tie_word_embeddings", False)))
    rope = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type")
    s = Shape(arch=arch, n_layers=n_layers, n_embd=n_embd, n_head=n_head, n_kv_heads=n_kv,
              head_dim_k=head_dim, head_dim_v=head_dim, n_ff=_get(cfg, "intermediate_size", default=0),
              n_vocab=vocab, tied=tied)
    window = None
    swa_of = lambda il: False  # noqa: E731
    moe = mla = None

    if arch == "llama":
        s.rope_freqs = rope_type == "llama3"
        if hf_arch == "MixtralForCausalLM":
            s.n_expert, s.n_expert_used = cfg["num_local_experts"], cfg["num_experts_per_tok"]
            s.expert_ff = s.n_ff
    elif arch == "qwen2":
        s.qkv_bias = True
    elif arch == "qwen3":
        s.qk_norm = True
    elif arch == "qwen3moe":
        s.qk_norm = True
        s.n_expert, s.n_expert_used = cfg["num_experts"], cfg["num_experts_per_tok"]
        s.expert_ff = cfg["moe_intermediate_size"]
    elif arch == "gemma2":
        s.tied = True
        window = cfg.get("sliding_window") or 4096
        swa_of = lambda il: il % 2 < 1  # noqa: E731  set_swa_pattern(2)
    elif arch == "gemma3":
        s.tied, s.qk_norm = True, True
        s.n_vocab = vocab or 262208
        window = cfg.get("sliding_window") or 1024
        n_pat = cfg.get("sliding_window_pattern") or 6
        swa_of = lambda il: il % n_pat < n_pat - 1  # noqa: E731  set_swa_pattern(6)
    elif arch == "phi3":
        s.longrope = rope_type in ("longrope", "su")
    elif arch == "deepseek2":
        s.q_lora_rank = cfg.get("q_lora_rank")
        s.kv_lora_rank = cfg["kv_lora_rank"]
        s.rope_dim, s.nope_dim = cfg["qk_rope_head_dim"], cfg["qk_nope_head_dim"]
        s.v_head_dim = cfg["v_head_dim"]
        s.n_expert, s.n_expert_used = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
        s.expert_ff, s.n_shared_expert = cfg["moe_intermediate_size"], cfg.get("n_shared_experts", 0)
        s.n_dense_lead = cfg.get("first_k_dense_replace", 0)
        # MLA cache: one KV "head" of kv_lora_rank + rope dims, no V cache (llama.cpp PR #19067)
        s.n_kv_heads = 1
        s.head_dim_k, s.head_dim_v = s.kv_lora_rank + s.rope_dim, s.kv_lora_rank
        mla = MLASpec(kv_lora_rank=s.kv_lora_rank, q_lora_rank=s.q_lora_rank, rope_dim=s.rope_dim,
                      nope_dim=s.nope_dim, v_head_dim=s.v_head_dim)
    elif arch == "glm4moe":
        s.qkv_bias = bool(cfg.get("attention_bias", True))
        s.qk_norm = bool(cfg.get("use_qk_norm", False))
        s.n_expert, s.n_expert_used = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
        s.expert_ff, s.n_shared_expert = cfg["moe_intermediate_size"], cfg.get("n_shared_experts", 0)
        s.n_dense_lead = cfg.get("first_k_dense_replace", 0)
        # convert_hf_to_gguf (conversion/glm.py) appends the MTP blocks unless --no-mtp
        s.extra["n_mtp"] = cfg.get("num_nextn_predict_layers", 0) or 0
    elif arch == "minimax-m2":  # conversion/minimax.py: the experts' width is intermediate_size
        s.n_expert, s.n_expert_used = cfg["num_local_experts"], cfg["num_experts_per_tok"]
        s.expert_ff = s.n_ff
    elif arch == "gpt-oss":
        s.qkv_bias = True
        s.n_expert, s.n_expert_used = cfg["num_local_experts"], cfg["num_experts_per_tok"]
        s.expert_ff = s.n_ff
        window = cfg.get("sliding_window") or 128
        swa_of = lambda il: il % 2 < 1  # noqa: E731  set_swa_pattern(2)

    if s.n_expert:
        moe = MoESpec(n_expert=s.n_expert, n_expert_used=s.n_expert_used, expert_ff=s.expert_ff,
                      n_shared_expert=s.n_shared_expert, shared_ff=s.expert_ff * s.n_shared_expert,
                      n_dense_lead=s.n_dense_lead)
    n_mtp = s.extra.get("n_mtp", 0)
    layers = [LayerSpec(attn="swa" if swa_of(il) else "full", n_head=n_head, n_head_kv=s.n_kv_heads,
                        window=window if swa_of(il) else None, moe=bool(s.n_expert) and il >= s.n_dense_lead)
              for il in range(n_layers)]
    layers += [LayerSpec(attn="none", n_head=n_head, n_head_kv=s.n_kv_heads, moe=bool(s.n_expert))] * n_mtp
    tensors = build_tensors(s)
    quant = (config.get("quantization_config") or {}).get("quant_method")
    if quant == "mxfp4":
        # gpt-oss ships its experts in MXFP4 and convert_hf_to_gguf.py keeps them so: that is
        # their full precision (the rest is BF16)
        for t in tensors:
            if t.name.endswith("_exps.weight"):
                t.origin = "MXFP4"
    return ModelSpec(
        name=name, source=source, architecture=arch, n_layers=n_layers + n_mtp, n_embd=n_embd, n_head=n_head,
        n_kv_heads=s.n_kv_heads, head_dim_k=s.head_dim_k, head_dim_v=s.head_dim_v, n_ff=s.n_ff,
        n_vocab=s.n_vocab, tied_embeddings=s.tied,
        n_ctx_train=_get(cfg, "max_position_embeddings", default=4096),
        layers=layers, moe=moe, mla=mla, tensors=tensors, n_nextn=n_mtp)


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


def _hybrid(arch: str, cfg: dict[str, Any], name: str, source: str) -> ModelSpec:
    """Recurrent hybrids: their layer layout (pattern, periods or layer types) decides which layers
    hold attention, a Mamba mixer or a short convolution (planner/model/hybrid.py builds the tensors)."""
    if arch in ("qwen35", "qwen35moe"):
        cfg = cfg.get("text_config", cfg)  # the ConditionalGeneration configs nest the language model
    e, n_layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    n_head = cfg["num_attention_heads"]
    n_kv = _get(cfg, "num_key_value_heads", default=n_head)
    vocab = cfg["vocab_size"]
    tied = bool(cfg.get("tie_word_embeddings", arch in ("lfm2", "granitehybrid")))
    if arch == "nemotron_h":
        pattern = cfg["hybrid_override_pattern"]
        unknown = set(pattern) - set("M*-E") or ("E" in pattern and not cfg.get("n_routed_experts"))
        if unknown or cfg.get("moe_latent_size"):
            raise ModelNotFoundError(f"{name}: this Nemotron-H layout (blocks {''.join(sorted(set(pattern)))}"
                                     f"{', latent MoE' if cfg.get('moe_latent_size') else ''}) is not supported "
                                     f"from config.json yet; a GGUF of it can still be read")
        moe = dict(n_expert=cfg.get("n_routed_experts", 0), n_expert_used=cfg.get("num_experts_per_tok", 0),
                   expert_ff=cfg.get("moe_intermediate_size", 0),
                   shared_ff=cfg.get("moe_shared_expert_intermediate_size", 0) * cfg.get("n_shared_experts", 1)) \
            if "E" in pattern else {}
        d_head = cfg.get("mamba_head_dim", 64)
        m = hybrid.nemotron_h_spec(pattern, e=e, vocab=vocab, d_inner=cfg.get("mamba_num_heads", 128) * d_head,
                                   d_state=cfg.get("ssm_state_size", 128),
                                   n_group=cfg.get("n_groups", cfg.get("mamba_num_groups", 8)), head=d_head,
                                   n_head=n_head, n_head_kv=n_kv, head_dim=_get(cfg, "head_dim", default=e // n_head),
                                   n_ff=cfg.get("intermediate_size") or cfg.get("moe_intermediate_size", 0), tied=tied,
                                   **moe)
    elif arch == "jamba":
        if cfg.get("mamba_expand", 2) != 2:
            raise ModelNotFoundError(f"{name}: llama.cpp runs Jamba only with mamba_expand 2")
        ap, ao = cfg.get("attn_layer_period", 8), cfg.get("attn_layer_offset", 4)
        ep, eo = cfg.get("expert_layer_period", 2), cfg.get("expert_layer_offset", 1)
        n_exp = cfg.get("num_experts", 16)
        m = hybrid.jamba_spec(n_layers, attn_layers=tuple(i for i in range(n_layers) if i % ap == ao),
                              moe_layers=tuple(i for i in range(n_layers) if n_exp > 1 and i % ep == eo),
                              e=e, vocab=vocab, d_state=cfg.get("mamba_d_state", 16), n_head=n_head, n_head_kv=n_kv,
                              n_ff=cfg["intermediate_size"], n_expert=n_exp,
                              n_expert_used=cfg.get("num_experts_per_tok", 2), tied=tied)
    elif arch == "lfm2":
        attn = cfg.get("full_attn_idxs")
        if attn is None:
            attn = [i for i, t in enumerate(cfg.get("layer_types") or []) if "attention" in t]
        m = hybrid.lfm2_spec("".join("A" if i in attn else "C" for i in range(n_layers)), e=e, vocab=vocab,
                             n_head=n_head, n_head_kv=n_kv, n_ff=_lfm2_ff(cfg), l_cache=cfg.get("conv_L_cache", 3))
    elif arch == "falcon-h1":
        d_head = cfg.get("mamba_d_head", 64)
        n_ssm_head = cfg.get("mamba_n_heads", 2 * e // d_head)
        m = hybrid.falcon_h1_spec(e=e, n_layer=n_layers, vocab=vocab,
                                  d_inner=cfg.get("mamba_d_ssm") or n_ssm_head * d_head,
                                  d_state=cfg.get("mamba_d_state", 256), n_group=cfg.get("mamba_n_groups", 1),
                                  head=d_head, n_head=n_head, n_head_kv=n_kv,
                                  head_dim=_get(cfg, "head_dim", default=e // n_head), n_ff=cfg["intermediate_size"],
                                  tied=tied)
    elif arch in ("qwen3next", "qwen35", "qwen35moe"):
        m = _qwen_delta_net(arch, cfg, name, e, n_layers, n_head, n_kv, vocab, tied)
    elif arch == "kimi-linear":
        m = _kimi_linear(cfg, name, e, n_layers, n_head, vocab, tied)
    else:  # granitehybrid
        types = cfg.get("layer_types") or ["mamba"] * n_layers
        n_exp = cfg.get("num_local_experts", 0)
        d_head = cfg.get("mamba_d_head", 64)
        attn = tuple(i for i, t in enumerate(types) if t == "attention")
        m = hybrid.hybrid_spec(e=e, n_layer=n_layers, attn_layers=attn,
                               vocab=vocab, d_state=cfg.get("mamba_d_state", 128), n_group=cfg.get("mamba_n_groups", 1),
                               head=d_head, d_inner=cfg.get("mamba_n_heads", 2 * e // d_head) * d_head,
                               n_head=n_head, n_head_kv=n_kv, head_dim=e // n_head,
                               n_ff=cfg["intermediate_size"] if n_exp else cfg["shared_intermediate_size"],
                               n_expert=n_exp, n_expert_used=cfg.get("num_experts_per_tok", 0) if n_exp else 0,
                               shared_ff=cfg.get("shared_intermediate_size", 0) if n_exp else 0, tied=tied)
    # float weights of undecided type, except the small SSM tensors convert_hf_to_gguf keeps in F32
    tensors = [t.model_copy(update={"type": None}) if t.type == converter_type(t.name, t.shape) else t
               for t in m.tensors]
    return m.model_copy(update={"name": name, "source": source, "tensors": tensors,
                                "n_ctx_train": _get(cfg, "max_position_embeddings", default=4096)})


HYBRIDS = ("nemotron_h", "jamba", "lfm2", "granitehybrid", "falcon-h1", "qwen3next", "qwen35", "qwen35moe",
           "kimi-linear")


def _kimi_linear(cfg: dict[str, Any], name: str, e: int, n_layers: int, n_head: int, vocab: int,
                 tied: bool) -> ModelSpec:
    """Kimi-Linear: KDA layers and MLA at linear_attn_config.full_attn_layers (1-based, as
    conversion/kimi_linear.py reads them), a dense lead, then MoE with shared experts."""
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


def _qwen_delta_net(arch: str, cfg: dict[str, Any], name: str, e: int, n_layers: int, n_head: int, n_kv: int,
                    vocab: int, tied: bool) -> ModelSpec:
    """Qwen3-Next / Qwen3.5 (dense or MoE): gated delta-net layers and every k-th layer gated attention
    (full_attention_interval, or the period of layer_types), MTP blocks as convert_hf_to_gguf keeps them."""
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
