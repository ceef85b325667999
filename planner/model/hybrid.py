"""Tensor inventories of recurrent and hybrid models, as llama.cpp's models/<arch>.cpp creates them:
Mamba-1/2, Granite-4.0-H, Nemotron-H, Jamba, LFM2. From a config.json (hf_config.py) and for the
shape twins the tests and benches write (verify/twin.py). Matrices are F16, the small SSM tensors
F32 (as convert_hf_to_gguf.py writes them); llama.cpp loads every one of these layouts.
"""

from __future__ import annotations

from functools import partial

from planner.model.spec import LayerSpec, MLASpec, ModelSpec, MoESpec, RecurrentSpec, TensorSpec


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
                     recurrent=RecurrentSpec(r_elements=(d_conv - 1) * conv_dim, s_elements=d_state * d_inner, gguf=g),
                     tensors=ts)


def hybrid_spec(e=256, n_layer=4, attn_layers=(1,), vocab=2048, d_state=64, n_group=1, head=64, n_head=4,
                n_head_kv=1, head_dim=64, n_ff=768, n_expert=0, n_expert_used=0, shared_ff=0, arch="granitehybrid",
                d_inner=None, tied=False):
    """A Granite-4.0-H style hybrid (llama.cpp models/granite-hybrid.cpp): Mamba-2 mixers (d_inner = 2 n_embd,
    the only expansion it supports) except at attn_layers, each layer followed by a dense or MoE FFN.
    A layer is recurrent where its KV-head count is 0, as the loader reads it."""
    m2 = mamba_spec(2, e=e, n_layer=n_layer, vocab=vocab, d_inner=d_inner or 2 * e, d_state=d_state,
                    n_group=n_group, head=head)
    q, kv = n_head * head_dim, n_head_kv * head_dim
    ts = _head(m2, tied)
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
                     n_ff=n_ff, n_vocab=vocab, tied_embeddings=tied, layers=layers, moe=moe,
                     recurrent=m2.recurrent, tensors=ts)


def _t(name: str, *shape: int, ty: str = "F16") -> TensorSpec:
    return TensorSpec(name=name, shape=list(shape), type=ty)


def _head(m: ModelSpec, tied: bool) -> list[TensorSpec]:
    """token_embd, output_norm and, unless the embeddings are tied, output."""
    return [t for t in m.tensors[:3] if not (tied and t.name == "output.weight")]


def _attn_tensors(b: str, e: int, n_head: int, n_head_kv: int, head_dim: int) -> list[TensorSpec]:
    q, kv = n_head * head_dim, n_head_kv * head_dim
    return [TensorSpec(name=b + "attn_q.weight", shape=[e, q], type="F16"),
            TensorSpec(name=b + "attn_k.weight", shape=[e, kv], type="F16"),
            TensorSpec(name=b + "attn_v.weight", shape=[e, kv], type="F16"),
            TensorSpec(name=b + "attn_output.weight", shape=[q, e], type="F16")]


def nemotron_h_spec(pattern="M-M*M-", e=256, vocab=2048, d_inner=None, d_state=64, n_group=2, head=64, n_head=4,
                    n_head_kv=2, head_dim=64, n_ff=768, tied=False, n_expert=0, n_expert_used=0, expert_ff=0,
                    shared_ff=0):
    """A Nemotron-H (llama.cpp models/nemotron-h.cpp) from its hybrid_override_pattern: 'M' a Mamba-2 mixer
    (d_inner: 2 n_embd unless given), '*' an attention layer, '-' an FFN-only layer (ReLU^2 up/down, no
    gate), 'E' a MoE layer (ReLU^2 experts up/down, sigmoid router with a bias, one shared expert; the
    architecture is then nemotron_h_moe). A layer is recurrent where both its KV-head count and FFN
    width are 0, as the loader reads them."""
    m2 = mamba_spec(2, e=e, n_layer=len(pattern), vocab=vocab, d_inner=d_inner or 2 * e, d_state=d_state,
                    n_group=n_group, head=head)
    ts = _head(m2, tied)
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
        elif kind == "E" and n_expert:
            ts += [TensorSpec(name=b + "attn_norm.weight", shape=[e], type="F32"),
                   TensorSpec(name=b + "ffn_gate_inp.weight", shape=[e, n_expert], type="F32"),
                   TensorSpec(name=b + "exp_probs_b.bias", shape=[n_expert], type="F32"),
                   TensorSpec(name=b + "ffn_down_exps.weight", shape=[expert_ff, e, n_expert], type="F16"),
                   TensorSpec(name=b + "ffn_up_exps.weight", shape=[e, expert_ff, n_expert], type="F16"),
                   TensorSpec(name=b + "ffn_down_shexp.weight", shape=[shared_ff, e], type="F16"),
                   TensorSpec(name=b + "ffn_up_shexp.weight", shape=[e, shared_ff], type="F16")]
            layers.append(LayerSpec(attn="none", n_head=n_head, n_head_kv=0, n_ff=expert_ff, moe=True))
        else:
            raise ValueError(f"pattern letters are M, *, - and E (with experts), not {kind!r}")
    moe = MoESpec(n_expert=n_expert, n_expert_used=n_expert_used, expert_ff=expert_ff, n_shared_expert=1,
                  shared_ff=shared_ff) if "E" in pattern else None
    return ModelSpec(name="nemotron_h-twin", source="test", architecture="nemotron_h_moe" if moe else "nemotron_h",
                     n_layers=len(pattern), n_embd=e, n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=head_dim,
                     head_dim_v=head_dim, n_ff=n_ff, n_vocab=vocab, tied_embeddings=tied, layers=layers, moe=moe,
                     recurrent=m2.recurrent, tensors=ts)


def jamba_spec(n_layer=8, attn_layers=(4,), moe_layers=(1, 3, 5, 7), e=256, vocab=2048, d_state=16, n_head=4,
               n_head_kv=2, n_ff=768, n_expert=4, n_expert_used=2, tied=False):
    """A Jamba (llama.cpp models/jamba.cpp): Mamba-1 mixers with dt/B/C norms (d_inner = 2 n_embd) except at
    attn_layers (no RoPE), a MoE FFN at moe_layers and a dense one elsewhere (Jamba: attention every 8th
    layer from 4, MoE every 2nd from 1). Experts are n_ff wide."""
    m1 = mamba_spec(1, e=e, n_layer=n_layer, vocab=vocab, d_inner=2 * e, d_state=d_state)
    dt_rank = m1.recurrent.gguf["ssm.time_step_rank"]
    head_dim = e // n_head
    ts = _head(m1, tied)
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
                     n_vocab=vocab, tied_embeddings=tied, layers=layers, moe=moe, recurrent=m1.recurrent,
                     tensors=ts)


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


def kimi_linear_spec(pattern="KKKA", e=256, vocab=2048, n_head=4, kda_head=32, d_conv=4, kv_lora=64, rope=16,
                     nope=32, v_head=32, n_ff=768, n_expert=8, n_expert_used=2, expert_ff=128, tied=False, n_dense=1,
                     n_shared=1):
    """A Kimi-Linear (llama.cpp models/kimi-linear.cpp): 'K' a Kimi Delta Attention layer (q/k/v with short
    convolutions, gated delta rule; recurrent), 'A' an MLA attention layer with split k_b/v_b (the
    latent cache); the first n_dense layers' FFN dense, the others MoE with n_shared shared experts. KDA
    layers have no KV heads, MLA ones one latent head."""
    proj, sh = n_head * kda_head, expert_ff * n_shared
    t = _t
    ts = [t("token_embd.weight", e, vocab), t("output_norm.weight", e, ty="F32")]
    if not tied:
        ts.append(t("output.weight", e, vocab))
    layers = []
    for i, kind in enumerate(pattern):
        b = f"blk.{i}."
        ts.append(t(b + "attn_norm.weight", e, ty="F32"))
        if kind == "K":
            ts += [t(b + f"ssm_conv1d_{x}.weight", d_conv, 1, proj, ty="F32") for x in "qkv"]
            ts += [t(b + "attn_q.weight", e, proj), t(b + "attn_k.weight", e, proj), t(b + "attn_v.weight", e, proj),
                   t(b + "ssm_f_a.weight", e, kda_head), t(b + "ssm_f_b.weight", kda_head, proj),
                   t(b + "ssm_beta.weight", e, n_head), t(b + "ssm_a", 1, n_head, ty="F32"),
                   t(b + "ssm_dt.bias", proj, ty="F32"), t(b + "ssm_g_a.weight", e, kda_head),
                   t(b + "ssm_g_b.weight", kda_head, proj), t(b + "ssm_norm.weight", kda_head, ty="F32"),
                   t(b + "attn_output.weight", proj, e)]
            layers.append(LayerSpec(attn="recurrent", n_head=n_head, n_head_kv=0, moe=i >= n_dense))
        elif kind == "A":
            ts += [t(b + "attn_kv_a_norm.weight", kv_lora, ty="F32"), t(b + "attn_q.weight", e, n_head * (nope + rope)),
                   t(b + "attn_kv_a_mqa.weight", e, kv_lora + rope), t(b + "attn_k_b.weight", nope, kv_lora, n_head),
                   t(b + "attn_v_b.weight", kv_lora, v_head, n_head), t(b + "attn_output.weight", n_head * v_head, e)]
            layers.append(LayerSpec(attn="full", n_head=n_head, n_head_kv=1, moe=i >= n_dense))
        else:
            raise ValueError(f"pattern letters are K and A, not {kind!r}")
        ts.append(t(b + "ffn_norm.weight", e, ty="F32"))
        if i < n_dense:
            ts += [t(b + "ffn_gate.weight", e, n_ff), t(b + "ffn_down.weight", n_ff, e),
                   t(b + "ffn_up.weight", e, n_ff)]
        else:
            ts += [t(b + "ffn_gate_inp.weight", e, n_expert, ty="F32"),
                   t(b + "ffn_gate_exps.weight", e, expert_ff, n_expert),
                   t(b + "ffn_down_exps.weight", expert_ff, e, n_expert),
                   t(b + "ffn_up_exps.weight", e, expert_ff, n_expert),
                   t(b + "ffn_gate_shexp.weight", e, sh), t(b + "ffn_down_shexp.weight", sh, e),
                   t(b + "ffn_up_shexp.weight", e, sh), t(b + "exp_probs_b.bias", n_expert, ty="F32")]
    g = {"kda.head_dim": kda_head, "ssm.conv_kernel": d_conv}
    return ModelSpec(name="kimi-linear-twin", source="test", architecture="kimi-linear", n_layers=len(pattern),
                     n_embd=e, n_head=n_head, n_kv_heads=1, head_dim_k=kv_lora + rope, head_dim_v=kv_lora,
                     n_ff=n_ff, n_vocab=vocab, tied_embeddings=tied, layers=layers,
                     moe=MoESpec(n_expert=n_expert, n_expert_used=n_expert_used, expert_ff=expert_ff,
                                 n_shared_expert=n_shared, shared_ff=sh, n_dense_lead=n_dense),
                     mla=MLASpec(kv_lora_rank=kv_lora, q_lora_rank=None, rope_dim=rope, nope_dim=nope,
                                 v_head_dim=v_head),
                     recurrent=RecurrentSpec(r_elements=3 * (d_conv - 1) * proj,
                                             s_elements=kda_head * kda_head * n_head, gguf=g), tensors=ts)


def rwkv7_spec(e=256, n_layer=4, vocab=2048, head_size=64, n_ff=1024, lora_decay=32, lora_iclr=32,
               lora_value=32, lora_gate=64):
    """An RWKV-7 (llama.cpp models/rwkv7.cpp): every layer a time-mix (the WKV-7 recurrence with LoRA'd
    decay, in-context learning rate, value residual and gate) and a channel-mix (squared-ReLU FFN);
    the state per layer is 2 token shifts of n_embd and an n_embd x head_size WKV matrix."""
    t = partial(_t, ty="F32")  # RWKV's small mixing and LoRA weights are F32; matrices say F16

    ts = [t("token_embd.weight", e, vocab, ty="F16"), t("token_embd_norm.weight", e), t("token_embd_norm.bias", e),
          t("output_norm.weight", e), t("output_norm.bias", e), t("output.weight", e, vocab, ty="F16")]
    for i in range(n_layer):
        b = f"blk.{i}."
        lv = lora_iclr if i == 0 else lora_value
        ts += [t(b + "attn_norm.weight", e), t(b + "attn_norm.bias", e), t(b + "attn_norm_2.weight", e),
               t(b + "attn_norm_2.bias", e),
               t(b + "time_mix_w0.weight", e), t(b + "time_mix_w1.weight", e, lora_decay),
               t(b + "time_mix_w2.weight", lora_decay, e),
               t(b + "time_mix_a0.weight", e), t(b + "time_mix_a1.weight", e, lora_iclr),
               t(b + "time_mix_a2.weight", lora_iclr, e),
               t(b + "time_mix_v0.weight", e), t(b + "time_mix_v1.weight", e, lv), t(b + "time_mix_v2.weight", lv, e),
               t(b + "time_mix_g1.weight", e, lora_gate), t(b + "time_mix_g2.weight", lora_gate, e),
               t(b + "time_mix_lerp_fused.weight", e, 1, 1, 6),
               t(b + "time_mix_k_k.weight", e), t(b + "time_mix_k_a.weight", e), t(b + "time_mix_r_k.weight", e),
               t(b + "time_mix_key.weight", e, e, ty="F16"), t(b + "time_mix_value.weight", e, e, ty="F16"),
               t(b + "time_mix_receptance.weight", e, e, ty="F16"),
               t(b + "time_mix_ln.weight", e), t(b + "time_mix_ln.bias", e),
               t(b + "time_mix_output.weight", e, e, ty="F16"),
               t(b + "channel_mix_lerp_k.weight", e, 1, 1),
               t(b + "channel_mix_key.weight", e, n_ff, ty="F16"), t(b + "channel_mix_value.weight", n_ff, e, ty="F16")]
    g = {"wkv.head_size": head_size, "token_shift_count": 2, "attention.decay_lora_rank": lora_decay,
         "attention.iclr_lora_rank": lora_iclr, "attention.value_residual_mix_lora_rank": lora_value,
         "attention.gate_lora_rank": lora_gate}
    return ModelSpec(name="rwkv7-twin", source="test", architecture="rwkv7", n_layers=n_layer, n_embd=e, n_head=0,
                     n_kv_heads=0, head_dim_k=0, head_dim_v=0, n_ff=n_ff, n_vocab=vocab,
                     layers=[LayerSpec(attn="recurrent", n_head=0, n_head_kv=0) for _ in range(n_layer)],
                     recurrent=RecurrentSpec(r_elements=2 * e, s_elements=e * head_size, gguf=g), tensors=ts)


def falcon_h1_spec(e=256, n_layer=4, vocab=2048, d_inner=512, d_state=64, n_group=1, head=64, n_head=4,
                   n_head_kv=2, head_dim=64, n_ff=768, tied=False):
    """A Falcon-H1 (llama.cpp models/falcon-h1.cpp): every layer runs a Mamba-2 mixer and attention side by
    side, then a SwiGLU FFN; so every layer holds both a KV cache and the recurrent state."""
    m2 = mamba_spec(2, e=e, n_layer=n_layer, vocab=vocab, d_inner=d_inner, d_state=d_state, n_group=n_group,
                    head=head)
    ts = _head(m2, tied)
    for i in range(n_layer):
        b = f"blk.{i}."
        ts += [t for t in m2.tensors if t.name.startswith(b)]  # attn_norm and the ssm_* tensors
        ts += _attn_tensors(b, e, n_head, n_head_kv, head_dim)
        ts += [TensorSpec(name=b + "ffn_norm", shape=[e], type="F32"),  # llama.cpp names it without .weight
               TensorSpec(name=b + "ffn_gate.weight", shape=[e, n_ff], type="F16"),
               TensorSpec(name=b + "ffn_down.weight", shape=[n_ff, e], type="F16"),
               TensorSpec(name=b + "ffn_up.weight", shape=[e, n_ff], type="F16")]
    return ModelSpec(name="falcon-h1-twin", source="test", architecture="falcon-h1", n_layers=n_layer, n_embd=e,
                     n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=head_dim, head_dim_v=head_dim, n_ff=n_ff,
                     n_vocab=vocab, tied_embeddings=tied,
                     layers=[LayerSpec(attn="full", n_head=n_head, n_head_kv=n_head_kv) for _ in range(n_layer)],
                     recurrent=m2.recurrent.model_copy(update={"in_attention_layers": True}), tensors=ts)


def qwen35_spec(n_layer=8, interval=4, e=256, vocab=2048, n_head=4, n_head_kv=2, head_dim=64, n_ff=768,
                d_state=64, n_k_heads=2, n_v_heads=4, d_conv=4, n_expert=0, n_expert_used=0, expert_ff=0,
                shared_ff=0, n_mtp=0, tied=False, next_=False):
    """A Qwen3.5 (llama.cpp models/qwen35.cpp, qwen35moe.cpp with experts): gated delta-net layers, every
    `interval`-th layer gated attention (q carries its gate: 2 n_head head_dim rows), each followed by a
    SwiGLU FFN or routed experts with a shared one; n_mtp trailing multi-token-prediction blocks (llama.cpp
    loads them only for MTP drafting). next_: Qwen3-Next's layout (models/qwen3next.cpp: experts required,
    beta and alpha in one ssm_ba matrix). The delta net's state is Mamba-2 shaped in llama_hparams: conv
    (d_conv - 1)(2 n_k_heads d_state + d_inner), state d_state d_inner, d_inner = n_v_heads d_state."""
    key_dim, d_inner = n_k_heads * d_state, n_v_heads * d_state
    conv_dim = 2 * key_dim + d_inner
    g = {"ssm.conv_kernel": d_conv, "ssm.inner_size": d_inner, "ssm.state_size": d_state,
         "ssm.time_step_rank": n_v_heads, "ssm.group_count": n_k_heads, "full_attention_interval": interval}
    ts = [_t("token_embd.weight", e, vocab), _t("output_norm.weight", e, ty="F32")]
    if not tied:
        ts.append(_t("output.weight", e, vocab))
    layers = []
    q, kv = n_head * head_dim, n_head_kv * head_dim
    for i in range(n_layer + n_mtp):
        b = f"blk.{i}."
        ts += [_t(b + "attn_norm.weight", e, ty="F32"), _t(b + "post_attention_norm.weight", e, ty="F32")]
        if i >= n_layer or (i + 1) % interval == 0:
            ts += [_t(b + "attn_q.weight", e, 2 * q), _t(b + "attn_k.weight", e, kv), _t(b + "attn_v.weight", e, kv),
                   _t(b + "attn_output.weight", q, e), _t(b + "attn_q_norm.weight", head_dim, ty="F32"),
                   _t(b + "attn_k_norm.weight", head_dim, ty="F32")]
            kind = "full" if i < n_layer else "none"  # an MTP block holds no cache in the main context
        else:
            ts += [_t(b + "attn_qkv.weight", e, conv_dim), _t(b + "attn_gate.weight", e, d_inner),
                   _t(b + "ssm_conv1d.weight", d_conv, conv_dim, ty="F32"),
                   _t(b + "ssm_dt.bias", n_v_heads, ty="F32"), _t(b + "ssm_a", n_v_heads, ty="F32"),
                   *([_t(b + "ssm_ba.weight", e, 2 * n_v_heads)] if next_ else
                     [_t(b + "ssm_beta.weight", e, n_v_heads), _t(b + "ssm_alpha.weight", e, n_v_heads)]),
                   _t(b + "ssm_norm.weight", d_state, ty="F32"), _t(b + "ssm_out.weight", d_inner, e)]
            kind = "recurrent"
        if n_expert:
            ts += [_t(b + "ffn_gate_inp.weight", e, n_expert, ty="F32"),
                   _t(b + "ffn_gate_exps.weight", e, expert_ff, n_expert),
                   _t(b + "ffn_up_exps.weight", e, expert_ff, n_expert),
                   _t(b + "ffn_down_exps.weight", expert_ff, e, n_expert),
                   _t(b + "ffn_gate_inp_shexp.weight", e, ty="F32"), _t(b + "ffn_gate_shexp.weight", e, shared_ff),
                   _t(b + "ffn_up_shexp.weight", e, shared_ff), _t(b + "ffn_down_shexp.weight", shared_ff, e)]
        else:
            ts += [_t(b + "ffn_gate.weight", e, n_ff), _t(b + "ffn_up.weight", e, n_ff),
                   _t(b + "ffn_down.weight", n_ff, e)]
        if i >= n_layer:
            ts += [_t(b + "nextn.eh_proj.weight", 2 * e, e), _t(b + "nextn.enorm.weight", e, ty="F32"),
                   _t(b + "nextn.hnorm.weight", e, ty="F32"), _t(b + "nextn.shared_head_norm.weight", e, ty="F32")]
        # one head_count_kv for all layers (the loader's is_recr comes from full_attention_interval)
        layers.append(LayerSpec(attn=kind, n_head=n_head, n_head_kv=n_head_kv, moe=bool(n_expert)))
    moe = MoESpec(n_expert=n_expert, n_expert_used=n_expert_used, expert_ff=expert_ff, n_shared_expert=1,
                  shared_ff=shared_ff) if n_expert else None
    arch = "qwen3next" if next_ else "qwen35moe" if n_expert else "qwen35"
    return ModelSpec(name="qwen35-twin", source="test", architecture=arch,
                     n_layers=n_layer + n_mtp, n_embd=e, n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=head_dim,
                     head_dim_v=head_dim, n_ff=n_ff if not n_expert else expert_ff, n_vocab=vocab, tied_embeddings=tied,
                     layers=layers, moe=moe, n_nextn=n_mtp,
                     recurrent=RecurrentSpec(r_elements=(d_conv - 1) * conv_dim, s_elements=d_state * d_inner, gguf=g),
                     tensors=ts)
