"""config.json (Hugging Face) -> ModelSpec, the way convert_hf_to_gguf.py + llama.cpp see it."""

from __future__ import annotations

from typing import Any

from planner.errors import ModelNotFoundError
from planner.model.inventory import Shape, build_tensors
from planner.model.spec import LayerSpec, MLASpec, ModelSpec, MoESpec

# HF `architectures[0]` -> llama.cpp general.architecture (convert_hf_to_gguf.py registrations)
HF_TO_GGUF_ARCH = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "MixtralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3moe",
    "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3", "Phi3ForCausalLM": "phi3",
    "DeepseekV3ForCausalLM": "deepseek2", "DeepseekV2ForCausalLM": "deepseek2",
    "GptOssForCausalLM": "gpt-oss",
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
    layers = [LayerSpec(attn="swa" if swa_of(il) else "full", n_head=n_head, n_head_kv=s.n_kv_heads,
                        window=window if swa_of(il) else None, moe=bool(s.n_expert) and il >= s.n_dense_lead)
              for il in range(n_layers)]
    tensors = build_tensors(s)
    quant = (config.get("quantization_config") or {}).get("quant_method")
    if quant == "mxfp4":
        # gpt-oss ships its experts in MXFP4 and convert_hf_to_gguf.py keeps them so: that is
        # their full precision (the rest is BF16)
        for t in tensors:
            if t.name.endswith("_exps.weight"):
                t.origin = "MXFP4"
    return ModelSpec(
        name=name, source=source, architecture=arch, n_layers=n_layers, n_embd=n_embd, n_head=n_head,
        n_kv_heads=s.n_kv_heads, head_dim_k=s.head_dim_k, head_dim_v=s.head_dim_v, n_ff=s.n_ff,
        n_vocab=s.n_vocab, tied_embeddings=s.tied,
        n_ctx_train=_get(cfg, "max_position_embeddings", default=4096),
        layers=layers, moe=moe, mla=mla, tensors=tensors)
