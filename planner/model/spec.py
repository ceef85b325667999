"""The ModelSpec contract: architecture facts plus the exact tensor inventory.

Tensor names and shapes are as llama.cpp names them inside a GGUF; shapes are in ggml
order (ne0 first: the row length, i.e. the input dimension of a matmul weight).
"""

from __future__ import annotations

import math
import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AttnKind = Literal["full", "swa", "recurrent", "none"]


# not multiplied by every prompt token: lookups and the output matrix (a tied token_embd is the output matrix)
PREFILL_SKIPS = frozenset({"token_embd.weight", "per_layer_token_embd.weight", "output.weight"})


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    shape: list[int]
    type: str | None = Field(None, description="ggml type name (Q4_K, F16...), None = not decided")
    origin: str | None = Field(None, description="quantized type of the weights as released or in the source "
                                                 "file (MXFP4 experts, a Q4_K_M GGUF); None: float weights. "
                                                 "Kept as is, such a tensor loses nothing; more bits gain nothing")

    @cached_property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @cached_property
    def layer(self) -> int | None:
        """Block index for blk.N.* tensors, None for token_embd/output/norms outside blocks."""
        if self.name.startswith("blk."):
            return int(self.name.split(".", 2)[1])
        return None

    @cached_property
    def role(self) -> str:
        """blk.3.attn_v.weight -> attn_v ; output.weight -> output."""
        parts = self.name.split(".")
        return parts[2] if parts[0] == "blk" else parts[0]

    def retyped(self, ty: str) -> TensorSpec:
        """A copy at type `ty`. What pydantic's model_copy does, without its deep-copy
        machinery: no re-validation, and the cached layer/role/n_elements come along. A 70B has
        724 tensors and the optimizer re-types them for every candidate plan, mostly to the same
        few types, so each tensor keeps its copies per type (specs are never mutated)."""
        variants = self.__dict__.setdefault("_variants", {})
        new = variants.get(ty)
        if new is None:
            new = variants[ty] = TensorSpec.__new__(TensorSpec)
            d = dict(self.__dict__)
            del d["_variants"]
            d["type"] = ty
            object.__setattr__(new, "__dict__", d)
            object.__setattr__(new, "__pydantic_fields_set__", self.__pydantic_fields_set__ | {"type"})
            object.__setattr__(new, "__pydantic_extra__", None)
            object.__setattr__(new, "__pydantic_private__", None)
        return new


# tensors convert_hf_to_gguf.py always writes in F32 whatever the output type (conversion/base.py,
# prepare_tensors: its MODEL_TENSOR list, matched as "<name>.weight")
_CONVERTER_F32 = re.compile(r"(?:^|\.)(?:ffn_gate_inp(?:_shexp)?|position_embd|token_types|ssm_conv1d(?:_[qkv])?"
                            r"|shortconv\.conv|time_mix_(?:first|w1|w2|decay_w1|decay_w2|lerp_fused)"
                            r"|altup_(?:correct|predict)_coef|indexer\.proj|posnet\.\d+\.norm[12])\.weight$")


def converter_type(name: str, shape: list[int], base: str = "F16") -> str:
    """The type convert_hf_to_gguf.py writes a float tensor in: F32 for 1-D tensors and norms, for
    anything not named *.weight (biases: gpt-oss's 2-D expert biases) and for the tensors it lists
    (routers, convolutions, RWKV's small mixing matrices), else the base type."""
    if len(shape) < 2 or name.endswith("_norm.weight") or not name.endswith((".weight", ".lora_a", ".lora_b")) \
            or _CONVERTER_F32.search(name):
        return "F32"
    return base


class LayerSpec(BaseModel):
    attn: AttnKind = "full"
    n_head: int
    n_head_kv: int
    window: int | None = Field(None, description="sliding window in tokens (swa layers)")
    head_dim: int | None = Field(None, description="this layer's K/V head width where it differs from the model's "
                                                   "(sliding layers' key_length_swa: Gemma 4)")
    kv_shared: bool = Field(False, description="attends over an earlier layer's cache and holds none (Gemma 3n/4's "
                                               "shared-KV layers, llama_hparams::has_kv)")
    moe: bool = False
    n_ff: int | None = Field(None, description="this layer's FFN width where layers differ (Nemotron-H: 0 in its "
                                               "Mamba and attention layers); None: the model's n_ff")


class MoESpec(BaseModel):
    n_expert: int
    n_expert_used: int
    expert_ff: int
    n_shared_expert: int = 0
    shared_ff: int = 0
    n_dense_lead: int = Field(0, description="leading layers with a dense FFN")


class MLASpec(BaseModel):
    kv_lora_rank: int
    q_lora_rank: int | None
    rope_dim: int
    nope_dim: int
    v_head_dim: int


class RecurrentSpec(BaseModel):
    """Fixed per-sequence state of the layers whose attn is 'recurrent', in elements per layer
    (llama-hparams.cpp n_embd_r / n_embd_s: the conv or token-shift state, and the SSM/WKV state)."""
    r_elements: int
    s_elements: int
    gguf: dict[str, int] = Field(default_factory=dict,
                                 description="the GGUF hyperparameters they come from ({arch}.ssm.*, wkv.*), "
                                             "so a shape twin can write them back")
    in_attention_layers: bool = Field(False, description="every layer runs attention and the recurrent mixer side "
                                                         "by side and holds both KV and state (Falcon-H1)")


class ModelSpec(BaseModel):
    """A model as llama.cpp would load it. Frozen: a changed model is a copy (with_types, model_copy)."""

    model_config = ConfigDict(frozen=True)

    name: str
    source: str = Field(..., description="where the facts came from: catalog, hf:repo, gguf:path")
    architecture: str = Field(..., description="llama.cpp architecture name (general.architecture)")
    n_layers: int
    n_embd: int
    n_head: int
    n_kv_heads: int = Field(..., description="KV heads of a full-attention layer")
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    tied_embeddings: bool = False
    n_ctx_train: int = 4096
    layers: list[LayerSpec]
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    recurrent: RecurrentSpec | None = None
    tensors: list[TensorSpec]
    n_nextn: int = Field(0, description="trailing multi-token-prediction blocks ({arch}.nextn_predict_layers, counted "
                                        "in n_layers): no KV cache in the main context, and not loaded at all by "
                                        "the architectures that load them only for MTP drafting (SKIPS_MTP)")
    file_type: str | None = Field(None, description="ftype of the GGUF when read from one")
    notes: list[str] = Field(default_factory=list)

    @cached_property
    def memo(self) -> dict:
        """Facts the estimator derives from the tensors, computed once per spec (not a field: not
        dumped, not compared). Entries hold the tensor list they came from and are used only while
        it is still `self.tensors`; with_types() copies start with an empty one."""
        return {}

    @cached_property
    def _shape_store(self) -> dict:
        return {}

    @property
    def shape_memo(self) -> dict:
        """Like memo, for facts of the tensors' names and shapes, not of their types: with_types() copies
        share it (the same dict), so the optimizer's many re-typed copies of one model derive such facts
        once. Checked once per tensor list against the names and shapes it was filled for, so a copy
        made with other tensors (model_copy copies cached values) starts afresh."""
        store, memo = self._shape_store, self.memo
        if memo.get("_shape_checked") is not self.tensors:
            sig = [(t.name, t.shape) for t in self.tensors]
            if store.get("_sig") != sig:
                store = self.__dict__["_shape_store"] = {"_sig": sig}
            memo["_shape_checked"] = self.tensors
        return store

    # cached: with_types() copies keep them, which is right, as it changes types, not shapes
    @cached_property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @cached_property
    def n_active_params(self) -> int:
        """Parameters read per token: for MoE only n_expert_used of n_expert expert rows; MTP blocks do not
        run in the main pass."""
        if not self.moe and not self.n_nextn:
            return self.n_params
        total = 0
        first_mtp = self.n_layers - self.n_nextn
        for t in self.tensors:
            if t.layer is not None and t.layer >= first_mtp:
                continue
            if "_exps" in t.name and self.moe:
                total += t.n_elements * self.moe.n_expert_used // self.moe.n_expert
            else:
                total += t.n_elements
        return total

    @cached_property
    def n_matmul_params(self) -> int:
        """Weights a prompt token is multiplied with (prefill FLOPs = 2 x this): the active parameters less the
        tables only looked up (an untied token embedding; Gemma 3n/4's per-layer token embedding) and less the
        output matrix, which multiplies only the tokens whose logits are asked for (llama.cpp's inp_out_ids: the
        prompt's last; llama-bench and llama-server alike)."""
        skip = sum(t.n_elements for t in self.tensors if t.name in PREFILL_SKIPS)
        return self.n_active_params - skip

    @cached_property
    def layer_tensors(self) -> tuple[tuple[int, ...], frozenset[int]]:
        """(tensors in each layer, the layers holding experts): structure the graph-size model reads
        (cached: with_types() copies keep it, the names do not change)."""
        counts = [0] * self.n_layers
        moe = set()
        for t in self.tensors:
            if t.layer is not None and t.layer < self.n_layers:
                counts[t.layer] += 1
                if "_exps" in t.name:
                    moe.add(t.layer)
        return tuple(counts), frozenset(moe)

    @cached_property
    def per_layer_inputs(self) -> int:
        """Per-layer input values per token, n_layer x their width (Gemma 3n/4 E-models' per-layer token
        embedding, per_layer_token_embd: embedding_length_per_layer_input in the GGUF); 0 without."""
        return next((t.shape[0] for t in self.tensors if t.name == "per_layer_token_embd.weight"), 0)

    def tensor(self, name: str) -> TensorSpec:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def with_types(self, types: dict[str, str]) -> ModelSpec:
        """A copy whose tensors carry the given ggml types (names not in `types` keep theirs)."""
        tensors = [t if types.get(t.name, t.type) == t.type else t.retyped(types[t.name]) for t in self.tensors]
        self.shape_memo  # noqa: B018 -- created (and checked) here, so that the copy shares it
        out = self.model_copy(update={"tensors": tensors})
        out.__dict__.pop("memo", None)
        out.memo["_shape_checked"] = tensors  # same names and shapes by construction: no need to compare them
        return out
