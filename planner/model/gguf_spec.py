"""GGUF header -> ModelSpec with the file's exact tensors and types (llama-model.cpp hparams)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from planner.errors import GGUFError
from planner.model.gguf_header import GGUFHeader
from planner.model.spec import LayerSpec, MLASpec, ModelSpec, MoESpec, RecurrentSpec, TensorSpec

LLAMA_FTYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
                11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
                17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
                23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
                29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE"}


@dataclass(frozen=True)
class ArchFacts:
    """What llama.cpp's per-architecture code (src/models/<arch>.cpp, llama-model.cpp load_hparams) knows
    that the header does not say."""
    swa_period: int | None = None  # the SWA pattern when the file carries none (set_swa_pattern(n))
    swa_window: int | None = None  # the window where llama.cpp hard-codes one
    swa_disabled: bool = False  # the layout has SWA keys but llama.cpp runs every layer full
    kv_from_layer: int | None = None  # layers from here on attend over an earlier layer's cache
    kv_shared_key: str | None = None  # ... or from n_layer minus this key's value
    attention_beside_recurrent: bool = False  # attention and a Mamba-2 mixer side by side in every layer


ARCH_FACTS: dict[str, ArchFacts] = {
    "gemma2": ArchFacts(swa_period=2, swa_window=4096),
    "gemma3": ArchFacts(swa_period=6),
    "gemma3n": ArchFacts(swa_period=5, kv_from_layer=20),  # models/gemma3n.cpp hard-codes 20
    "gemma4": ArchFacts(kv_shared_key="attention.shared_kv_layers"),
    "gpt-oss": ArchFacts(swa_period=2),
    "cohere2": ArchFacts(swa_period=4),
    "phi3": ArchFacts(swa_disabled=True),  # models/phi3.cpp: "Phi SWA is currently disabled"
    "falcon-h1": ArchFacts(attention_beside_recurrent=True),
}
NO_FACTS = ArchFacts()


# What a real model's hyperparameters can be: "{arch}.KEY" -> (least, most). A header beyond these is
# corrupt or hostile, and is refused before any work is sized by it (a block_count of 10^7 took
# minutes and gigabytes). Limits from llama.cpp where it has one (src/llama-hparams.h LLAMA_MAX_LAYERS
# 512, LLAMA_MAX_EXPERTS 1024), else about 10x the largest published model's value.
WIDTH = (0, 1 << 20)
HPARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "block_count": (1, 512), "leading_dense_block_count": (0, 512), "nextn_predict_layers": (0, 512),
    "attention.shared_kv_layers": (0, 512),
    "expert_count": (0, 1024), "expert_used_count": (0, 1024), "expert_shared_count": (0, 1024),
    "embedding_length": (1, 1 << 17), "feed_forward_length": WIDTH, "expert_feed_forward_length": WIDTH,
    "expert_shared_feed_forward_length": WIDTH,
    "attention.head_count": (0, 1 << 12), "attention.head_count_kv": (0, 1 << 12),
    "attention.key_length": (0, 1 << 14), "attention.value_length": (0, 1 << 14),
    "attention.key_length_swa": (0, 1 << 14), "attention.value_length_swa": (0, 1 << 14),
    "attention.key_length_mla": (0, 1 << 14), "attention.value_length_mla": (0, 1 << 14),
    "attention.kv_lora_rank": (0, 1 << 16), "attention.q_lora_rank": (0, 1 << 16), "rope.dimension_count": (0, 1 << 14),
    "attention.sliding_window": (0, 1 << 26), "attention.sliding_window_pattern": (0, 1 << 10),
    "context_length": (1, 1 << 26), "vocab_size": (0, 1 << 22),
    "ssm.conv_kernel": (0, 1 << 10), "ssm.inner_size": WIDTH, "ssm.state_size": WIDTH, "ssm.group_count": (0, 1 << 12),
    "ssm.time_step_rank": WIDTH, "wkv.head_size": (0, 1 << 14), "token_shift_count": (0, 16),
    "shortconv.l_cache": (0, 1 << 10), "kda.head_dim": (0, 1 << 14),
}
# keys llama.cpp reads per layer (get_key_or_arr) or as a per-layer pattern; the rest are one integer
PER_LAYER = {"attention.head_count", "attention.head_count_kv", "feed_forward_length",
             "attention.sliding_window_pattern"}
MAX_VOCAB = 1 << 22
_ARCH = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
_BLOCK = re.compile(r"blk\.(\d+)\.")


def check_header(h: GGUFHeader, what: str) -> str:
    """The architecture name, after checking every hyperparameter the planner reads: the right kind
    (an integer, or one per layer) and within HPARAM_BOUNDS, and every blk.N tensor inside block_count."""
    arch = h.get("general.architecture", "llama")
    if not isinstance(arch, str) or not _ARCH.fullmatch(arch):
        raise GGUFError(f"{what}: general.architecture is {arch!r}, not an architecture name like 'llama'; the file "
                        "is corrupt or not a llama.cpp model")
    for key, (lo, hi) in HPARAM_BOUNDS.items():
        if f"{arch}.{key}" in h.array_lengths:  # a list too long to keep (> 4096 items): no model has one
            raise GGUFError(f"{what}: {arch}.{key} is a list of {h.array_lengths[f'{arch}.{key}']} values, where a "
                            "model has one per layer at most; the file is corrupt or hostile")
        v = h.get(f"{arch}.{key}")
        if v is not None:
            _check_value(f"{arch}.{key}", v, lo, hi, what, key in PER_LAYER)
    n_layers = h.get(f"{arch}.block_count")
    if n_layers is None:
        raise GGUFError(f"{what}: no {arch}.block_count in the header: not a llama.cpp language model "
                        "(a vision projector or a damaged file?)")
    for t in h.tensors:
        m = _BLOCK.match(t.name)
        if t.name.startswith("blk.") and (m is None or int(m.group(1)) >= n_layers):
            raise GGUFError(f"{what}: tensor {t.name} names no block 0..{n_layers - 1} ({arch}.block_count "
                            f"{n_layers}); the file is corrupt")
    return arch


def _check_value(key: str, v: Any, lo: int, hi: int, what: str, per_layer: bool) -> None:
    items = v if isinstance(v, list) else [v]
    ok = (per_layer or not isinstance(v, list)) and len(items) <= 1024 \
        and all(_int_like(x) and lo <= x <= hi for x in items)
    if not ok:
        shown = v if not isinstance(v, list) else f"a list of {len(v)} ({v[:4]}...)"
        raise GGUFError(f"{what}: {key} is {shown!r}, where a model has an integer from {lo} to {hi}"
                        + (" (or one per layer)" if per_layer else "")
                        + "; the file is corrupt or hostile")


def _int_like(x: Any) -> bool:
    """A count from a header: an int (bool counts as 0/1, as gguf's readers do), or a whole finite float."""
    return isinstance(x, int) or (isinstance(x, float) and math.isfinite(x) and x.is_integer())


def _per_layer(v: Any, n: int, default: int) -> list[int]:
    if v is None:
        return [default] * n
    if isinstance(v, list):
        return [int(x) for x in v] + [int(v[-1]) if v else default] * (n - len(v))
    return [int(v)] * n


SSM_KEYS = ("ssm.conv_kernel", "ssm.inner_size", "ssm.state_size", "ssm.group_count", "ssm.time_step_rank")


def recurrent_state(h: GGUFHeader, arch: str, n_embd: int, n_head: int = 0) -> RecurrentSpec | None:
    """Per-layer recurrent state sizes as llama_hparams::n_embd_r()/n_embd_s() compute them
    (vendor/llama.cpp/src/llama-hparams.cpp): RWKV token shift + WKV state, LFM2's short conv,
    else Mamba's conv state (d_conv - 1)(d_inner + 2 n_group d_state) and SSM state d_state d_inner
    (Mamba 1/2, Jamba, Granite/Nemotron hybrids, Qwen3-Next's gated delta net)."""
    k = lambda key, default=0: int(h.get(f"{arch}.{key}", default) or default)  # noqa: E731
    if k("wkv.head_size"):
        g = {"wkv.head_size": k("wkv.head_size"), "token_shift_count": k("token_shift_count", 2)}
        return RecurrentSpec(r_elements=g["token_shift_count"] * n_embd, s_elements=n_embd * g["wkv.head_size"], gguf=g)
    if k("shortconv.l_cache"):
        g = {"shortconv.l_cache": k("shortconv.l_cache")}
        return RecurrentSpec(r_elements=n_embd * (g["shortconv.l_cache"] - 1), s_elements=0, gguf=g)
    if k("kda.head_dim"):
        # Kimi Delta Attention (kimi-linear, bailingmoe3, glm5-next): short convolutions of q, k and v
        # (d_conv - 1 columns each, n_head x head_dim wide) and a head_dim^2 state per head
        g = {"kda.head_dim": k("kda.head_dim"), "ssm.conv_kernel": k("ssm.conv_kernel")}
        hd, d_conv = g["kda.head_dim"], g["ssm.conv_kernel"]
        return RecurrentSpec(r_elements=3 * (d_conv - 1 if d_conv > 0 else 3) * n_head * hd,
                             s_elements=hd * hd * n_head, gguf=g)
    if arch.startswith("minimax"):
        return None  # MiniMax lightning attention: its layer layout is not read here
    if k("ssm.inner_size"):
        g = {key: k(key) for key in SSM_KEYS}
        d_conv, d_inner, d_state, n_group = (g["ssm.conv_kernel"], g["ssm.inner_size"], g["ssm.state_size"],
                                             g["ssm.group_count"])
        return RecurrentSpec(r_elements=max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state),
                             s_elements=d_state * d_inner, gguf=g)
    return None


def spec_from_gguf(h: GGUFHeader, name: str, source: str) -> ModelSpec:
    """The checked header as a ModelSpec; any header the rules below cannot read is one GGUFError."""
    arch = check_header(h, name)
    try:
        spec = _spec(h, arch, name, source)
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GGUFError(f"{name}: its header does not describe a {arch} model the planner can read ({first}); "
                        "the file is corrupt, or the architecture's keys differ from llama.cpp's") from exc
    if spec.n_vocab > MAX_VOCAB:
        raise GGUFError(f"{name}: a vocabulary of {spec.n_vocab} tokens (at most {MAX_VOCAB} makes sense); "
                        "the file is corrupt or hostile")
    return spec


@dataclass(frozen=True)
class _Dims:
    """The header's per-layer widths, as llama_model::load_hparams reads them."""
    n_layers: int
    n_embd: int
    heads: list[int]
    kv_heads: list[int]
    ff: list[int]
    hd_k: int
    hd_v: int
    hd_swa: int  # sliding layers' own head width (Gemma 4), else 0

    @property
    def n_head(self) -> int:
        return max(self.heads) if self.heads else 0


def _spec(h: GGUFHeader, arch: str, name: str, source: str) -> ModelSpec:
    k = lambda key, default=None: h.get(f"{arch}.{key}", default)  # noqa: E731
    facts = ARCH_FACTS.get(arch, NO_FACTS)
    d = _dims(k)
    tensors = [TensorSpec(name=t.name, shape=t.shape, type=t.type,
                          origin=None if t.type in ("F32", "F16", "BF16", "F64") else t.type) for t in h.tensors]
    by_name = {t.name: t for t in tensors}
    mla = _mla(k, d)
    if mla:  # one latent head of kv_lora + rope; 0 stays 0 (Kimi's KDA layers)
        d = replace(d, kv_heads=[1 if kv else 0 for kv in d.kv_heads], hd_k=mla.kv_lora_rank + mla.rope_dim,
                    hd_v=mla.kv_lora_rank)
    n_nextn = int(k("nextn_predict_layers", 0) or 0)
    layers = _layers(k, d, facts, tensors, n_nextn)
    recurrent, notes = _recurrent(h, arch, d, facts, layers)
    ftype = h.get("general.file_type")
    return ModelSpec(
        name=name, source=source, architecture=arch, n_layers=d.n_layers, n_embd=d.n_embd, n_head=d.n_head,
        n_kv_heads=max(d.kv_heads) if d.kv_heads else 0, head_dim_k=d.hd_k, head_dim_v=d.hd_v,
        n_ff=max(d.ff) if d.ff else 0, n_vocab=_vocab(h, k, by_name), tied_embeddings="output.weight" not in by_name,
        n_ctx_train=int(k("context_length", 4096)), layers=layers, moe=_moe(k, d, tensors), mla=mla,
        recurrent=recurrent, tensors=tensors, n_nextn=n_nextn,
        file_type=LLAMA_FTYPES.get(int(ftype)) if ftype is not None else None, notes=notes)


def _dims(k: Callable[..., Any]) -> _Dims:
    n_layers = int(k("block_count", 0))
    n_embd = int(k("embedding_length", 0))
    heads = _per_layer(k("attention.head_count"), n_layers, 0)
    n_head = max(heads) if heads else 0
    hd_k = int(k("attention.key_length", n_embd // n_head if n_head else 0))
    hd_v = int(k("attention.value_length", hd_k))
    hd_swa = int(k("attention.key_length_swa", 0) or 0)
    if hd_swa and int(k("attention.value_length_swa", hd_swa)) != hd_swa:
        hd_swa = 0  # llama.cpp's Gemma 4 requires equal K/V widths; other layouts are not modelled per layer
    return _Dims(n_layers, n_embd, heads, _per_layer(k("attention.head_count_kv"), n_layers, n_head),
                 _per_layer(k("feed_forward_length"), n_layers, 0), hd_k, hd_v, hd_swa)


def _vocab(h: GGUFHeader, k: Callable[..., Any], by_name: dict[str, TensorSpec]) -> int:
    """The tokenizer's token count, else vocab_size, else token_embd's rows."""
    return int(h.array_lengths.get("tokenizer.ggml.tokens") or len(h.get("tokenizer.ggml.tokens") or [])
               or int(k("vocab_size", 0))
               or (by_name["token_embd.weight"].shape[1] if "token_embd.weight" in by_name else 0))


def _swa(k: Callable[..., Any], n_layers: int, facts: ArchFacts) -> tuple[list[bool], int | None]:
    """(which layers slide, the window): the file's pattern (a list, or a period), else llama.cpp's default."""
    window = k("attention.sliding_window")
    pattern = k("attention.sliding_window_pattern")
    window = int(window) if window else facts.swa_window
    if facts.swa_disabled:
        return [False] * n_layers, window
    if isinstance(pattern, list):
        return [bool(x) for x in pattern] + [False] * (n_layers - len(pattern)), window
    n_pat = int(pattern) if pattern else facts.swa_period
    return [bool(window and n_pat and (il % n_pat < n_pat - 1)) for il in range(n_layers)], window


def _moe(k: Callable[..., Any], d: _Dims, tensors: list[TensorSpec]) -> MoESpec | None:
    n_expert = int(k("expert_count", 0) or 0)
    if not n_expert:
        return None
    eff = int(k("expert_feed_forward_length", 0) or 0)
    if not eff:
        exps = next((t for t in tensors if t.name.endswith("ffn_down_exps.weight")), None)
        eff = exps.shape[0] if exps else d.ff[0]
    n_sh = int(k("expert_shared_count", 0) or 0)
    # qwen2moe and granite give the shared expert its own width and no count
    sh_ff = int(k("expert_shared_feed_forward_length", 0) or 0)
    if sh_ff and not n_sh:
        n_sh = 1
    return MoESpec(n_expert=n_expert, n_expert_used=int(k("expert_used_count", 1)), expert_ff=eff,
                   n_shared_expert=n_sh, shared_ff=sh_ff * n_sh if sh_ff else eff * n_sh,
                   n_dense_lead=int(k("leading_dense_block_count", 0) or 0))


def _mla(k: Callable[..., Any], d: _Dims) -> MLASpec | None:
    kv_lora = k("attention.kv_lora_rank")
    if not kv_lora:
        return None
    rope = int(k("rope.dimension_count", 64))
    return MLASpec(kv_lora_rank=int(kv_lora), q_lora_rank=k("attention.q_lora_rank"), rope_dim=rope,
                   nope_dim=int(k("attention.key_length_mla", d.hd_k)) - rope,
                   v_head_dim=int(k("attention.value_length_mla", d.hd_v)))


def _contents(tensors: list[TensorSpec]) -> tuple[set[int], set[int], set[int]]:
    """(layers with attention, with a recurrent mixer, with a routed FFN), from their tensors' names:
    attention (q, fused qkv, MLA), a recurrent mixer (Mamba ssm_*, LFM2 shortconv.*, RWKV time_mix_*, KDA
    ssm_*), a router."""
    has_attn, has_recr, has_moe = set(), set(), set()
    for t in tensors:
        if t.layer is None:
            continue
        short = t.name.split(".", 2)[2]
        if short.startswith(("attn_q", "attn_kv_a")):
            has_attn.add(t.layer)
        elif short.startswith(("ssm_", "shortconv.", "time_mix_")):
            has_recr.add(t.layer)
        elif short.startswith("ffn_gate_inp"):
            has_moe.add(t.layer)
    return has_attn, has_recr, has_moe


def _layers(k: Callable[..., Any], d: _Dims, facts: ArchFacts, tensors: list[TensorSpec],
            n_nextn: int) -> list[LayerSpec]:
    n_layers, kv_heads, ff = d.n_layers, d.kv_heads, d.ff
    is_swa, window = _swa(k, n_layers, facts)
    n_expert = int(k("expert_count", 0) or 0)
    n_dense = int(k("leading_dense_block_count", 0) or 0)
    has_attn, has_recr, has_moe = _contents(tensors)
    ff_varies = len(set(ff)) > 1
    # layers from n_layer_kv_from_start on attend over an earlier layer's cache (llama_hparams::has_kv)
    kv_from = facts.kv_from_layer if facts.kv_from_layer is not None \
        else n_layers - int(k(facts.kv_shared_key, 0) or 0) if facts.kv_shared_key else n_layers
    layers = []
    for il in range(n_layers):
        if il >= n_layers - n_nextn:
            kind = "none"  # an MTP block: llama.cpp's main context gives it no cache (filter il < n_layer())
        elif il in has_recr and not facts.attention_beside_recurrent:
            kind = "recurrent"  # Qwen3.5's gated delta net has a fused attn_qkv too
        elif not tensors or (il in has_attn and kv_heads[il] > 0):
            kind = "swa" if is_swa[il] else "full"
        elif il not in has_attn and kv_heads[il] == 0 and ff[il] == 0 and not n_expert:
            kind = "recurrent"
        else:
            kind = "none"  # Nemotron-H's FFN-only layers: no KV, no recurrent state (is_recr: n_ff == 0 too)
        layers.append(LayerSpec(attn=kind, n_head=d.heads[il] or d.n_head, n_head_kv=kv_heads[il],
                                window=window if kind == "swa" else None,
                                head_dim=d.hd_swa if kind == "swa" and d.hd_swa and d.hd_swa != d.hd_k else None,
                                kv_shared=il >= kv_from and kind in ("full", "swa"),
                                moe=il in has_moe if tensors else bool(n_expert) and il >= n_dense,
                                n_ff=ff[il] if ff_varies else None))
    return layers


def _recurrent(h: GGUFHeader, arch: str, d: _Dims, facts: ArchFacts,
               layers: list[LayerSpec]) -> tuple[RecurrentSpec | None, list[str]]:
    if facts.attention_beside_recurrent:  # is_recr for every layer, and a KV cache for every layer
        rec = recurrent_state(h, arch, d.n_embd)
        return (rec.model_copy(update={"in_attention_layers": True}) if rec else None), []
    if not any(lay.attn == "recurrent" for lay in layers):
        return None, []
    rec = recurrent_state(h, arch, d.n_embd, d.heads[0] if d.heads else 0)
    if rec is None:
        return None, ["recurrent layers of an unknown kind: their fixed state is not in the estimate"]
    return rec, []
