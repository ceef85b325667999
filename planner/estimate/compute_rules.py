"""What each architecture family keeps live in the compute graph: one small entry per family,
read by compute.phases() the same way for every model.

A rule's widths are f32 values per token of the micro-batch, as a sum of named widths times a
coefficient (`{"q_dim": 5.5}` = 5.5 rows of max(n_embd, n_head x head_dim)). The names:
  embd    n_embd, one hidden state
  q_dim   max(n_embd, n_head x head_dim_k), one row of the attention heads' width
  heads   n_head x head_dim_k
  n_ff    the dense FFN's width
  d_inner a recurrent layer's inner width (ssm.inner_size)
Every constant was fitted on llama.cpp's own no_alloc dry runs (bench/data/cpu-compute-grid.jsonl,
bench/mamba_grid.py twins) or RPC-device loads (bench/data/rpc-multi-device.jsonl); `source` says
which. A family absent here follows DEFAULT (Llama's graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

Widths = Mapping[str, float]


def _w(**coeffs: float) -> Widths:
    return MappingProxyType(coeffs)


@dataclass(frozen=True)
class ComputeRule:
    source: str
    # hidden states alive beside the logits (None: 2, or 3 for a Mamba-style recurrent model); without
    # flash attention, hidden_no_fa where given
    hidden_beside_logits: float | None = None
    hidden_beside_logits_no_fa: float | None = None
    # attention temporaries without flash attention (beside the scores and masks), and with it (beside the mask)
    attention_temps: Widths = field(default_factory=lambda: _w(q_dim=5.5))
    flash_temps: Widths = field(default_factory=lambda: _w(q_dim=5))
    # a dense FFN: gate, up and their product beside the hidden states; fused_whole_graph* replace it when
    # the whole graph runs on one device (phi3's fused gate+up), with and without flash attention
    dense_ffn: Widths = field(default_factory=lambda: _w(n_ff=3, embd=2))
    dense_ffn_whole: Widths | None = None
    dense_ffn_whole_fa: Widths | None = None
    # the FFN rule was fitted where that phase was a whole graph's peak: it already holds the graph's inputs
    ffn_holds_inputs: bool = False
    # the routed experts' outputs, one hidden state each, wait for the shared expert
    moe_outputs_wait: bool = False
    # the full and sliding masks and one hidden state stay live under the FFN phase
    masks_under_ffn: bool = False
    # hybrids (recurrent and attention layers): what the SSM and FFN phases keep beside the attention mask
    hybrid_ssm_extra: Widths = field(default_factory=_w)
    hybrid_dense_ffn_extra: Widths = field(default_factory=_w)
    hybrid_moe_ffn_extra: Widths = field(default_factory=lambda: _w(embd=1))
    # under pipeline parallelism a Mamba layer ending a GPU's share, before an MLP layer, is split over
    # that GPU and the next (compute.pipeline_buffers)
    splits_mamba_across_gpus: bool = False
    # the flash-attention rule was fitted where that phase set a whole graph's peak, its 2 hidden inputs included
    flash_holds_inputs: bool = False
    # a recurrent mixer whose live set is its own rule in compute.ssm_bytes (None: read from the GGUF keys)
    mixer: Literal["gated_delta_net", "rwkv7"] | None = None


DEFAULT = ComputeRule(
    source="Llama-3.2-1B, Qwen3, SmolLM2 dry runs (bench/data/cpu-compute-grid.jsonl); the hybrid MoE extra: "
           "Jamba twins (bench/mamba_grid.py)")

GEMMA = replace(DEFAULT, hidden_beside_logits=3,
                source="Gemma 2/3 dry runs: the final soft-capping keeps a third hidden state beside the logits "
                       "(bench/data/cpu-compute-grid.jsonl)")

# Qwen3-Next / Qwen3.5: gated attention and the gated delta net
GATED_DELTA_NET = replace(
    DEFAULT, attention_temps=_w(embd=3, heads=4), dense_ffn=_w(n_ff=3, embd=3), moe_outputs_wait=True,
    hybrid_moe_ffn_extra=_w(), mixer="gated_delta_net",
    source="Qwen3.5 twins, 7 shapes, n_embd 256 and 512, 2 and 4 experts used: attention with its gate 3 hidden "
           "states and 4 rows of the heads' width; SwiGLU beside one more hidden state than Llama's "
           "(bench/mamba_grid.py)")

RULES: Mapping[str, ComputeRule] = MappingProxyType({
    "gpt-oss": replace(DEFAULT, hidden_beside_logits=3, hidden_beside_logits_no_fa=7,
                       source="gpt-oss-20b-layout dry runs: 3 hidden states beside the logits with flash "
                              "attention, 7 without (bench/data/cpu-compute-grid.jsonl)"),
    "glm4moe": replace(DEFAULT, hidden_beside_logits=4.5, attention_temps=_w(q_dim=3.5, embd=2),
                       flash_temps=_w(q_dim=5, embd=7), ffn_holds_inputs=True, flash_holds_inputs=True,
                       source="a GLM-4.5-Air-size twin: 332.01 MiB measured at 4K, ubatch 512, and 1328.05 at "
                              "2048 (4.5 hidden states beside the logits); small twins: 7 beside flash "
                              "attention's temporaries, 3.5 heads' rows and 2 hidden states without"),
    "phi3": replace(DEFAULT, dense_ffn_whole=_w(n_ff=4.3, embd=2), dense_ffn_whole_fa=_w(n_ff=4.7, embd=2),
                    ffn_holds_inputs=True,
                    source="Phi-3 whole-graph dry runs: fused gate+up is 2 n_ff, then n_ff, with more temporaries "
                           "under flash attention; a split GPU's share measures within 6% of the plain rule"),
    "lfm2": replace(DEFAULT, dense_ffn=_w(n_ff=3, embd=3),
                    source="LFM2 twins: one more hidden state beside SwiGLU (bench/mamba_grid.py)"),
    "rwkv7": replace(DEFAULT, dense_ffn=_w(n_ff=1, embd=14), ffn_holds_inputs=True, mixer="rwkv7",
                     source="RWKV-7 twins, n_embd 256-1024: the channel mix's squared-ReLU key beside the time "
                            "mix's leftovers (bench/mamba_grid.py)"),
    "nemotron_h": replace(DEFAULT, dense_ffn=_w(n_ff=1, embd=10), splits_mamba_across_gpus=True,
                          source="Nemotron-H twins: ReLU^2 FFN (up, relu and sqr in place, down), one n_ff row "
                                 "beside ~10 hidden states; the 8B split over RPC devices after layer 26 "
                                 "(bench/data/rpc-multi-device.jsonl)"),
    "nemotron_h_moe": replace(DEFAULT, splits_mamba_across_gpus=True,
                              source="as nemotron_h for the split Mamba layer (bench/data/rpc-multi-device.jsonl)"),
    "granitehybrid": replace(DEFAULT, hybrid_ssm_extra=_w(d_inner=1), hybrid_dense_ffn_extra=_w(embd=7),
                             hybrid_moe_ffn_extra=_w(q_dim=3),
                             source="Granite-4.0-H twins (residual and embedding multipliers: more scaled copies): "
                                    "one more d_inner row in the SSM phase, 7 hidden states in a dense FFN phase, "
                                    "3 attention-width rows in a MoE one (bench/mamba_grid.py)"),
    "gemma4": replace(GEMMA, ffn_holds_inputs=True, masks_under_ffn=True,
                      source="Gemma 4 twins: n_ctx 1K-16K, ubatch 256/512, n_embd 256/512, vocabulary 2K/8K: the "
                             "full and sliding masks and one more hidden state under the FFN phase"),
    "qwen3next": GATED_DELTA_NET,
    "qwen35": GATED_DELTA_NET,
    "qwen35moe": GATED_DELTA_NET,
})
# families named by a prefix of the architecture (gemma, gemma2, gemma3, gemma3n, ...)
PREFIXES: Mapping[str, ComputeRule] = MappingProxyType({"gemma": GEMMA})


def rule_for(architecture: str) -> ComputeRule:
    """The family's rule: its own entry, else a prefix family's, else DEFAULT."""
    if architecture in RULES:
        return RULES[architecture]
    return next((r for p, r in PREFIXES.items() if architecture.startswith(p)), DEFAULT)


def per_token(coeffs: Widths, widths: Mapping[str, int]) -> float:
    """f32 values per token: the sum of each named width times its coefficient."""
    return sum(c * widths[name] for name, c in coeffs.items())
