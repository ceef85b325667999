"""Nodes of llama.cpp's graph per layer (pure; coefficients in planner/data/backends.yaml `graph_nodes`).

ggml's CPU backend runs a graph node by node and ends every node with a barrier of its threads
(ggml-cpu.c, ggml_graph_compute_thread), and each node's elementwise work grows with the batch: on
a CPU the per-token cost beyond reading the weights follows the node count, not the layer count (a
Mamba-2 + MoE layer of Granite-4.0-H has 84 nodes, a Llama layer 31). The count is a fit of
llama.cpp's own (its reserve log, `graph: nodes = N`) over the catalog's twins:

    nodes(layer) = a + b * tensors in the layer + MoE * (c + d * n_expert_used)
                   + e * recurrent + f * (attention layer without flash attention)

MTP blocks are not in the main graph and count 0.
"""

from __future__ import annotations

from functools import lru_cache

from planner.estimate.constants import backends
from planner.model.spec import ModelSpec

TERMS = ("per_layer", "per_tensor", "moe_layer", "per_expert_used", "recurrent_layer", "attention_without_flash")


def layer_terms(model: ModelSpec, flash_attn: bool) -> tuple[tuple[int, ...], ...]:
    """Each layer's count of every term in TERMS (all 0 for an MTP block): what the coefficients
    multiply, and what bench/graph_nodes.py fits them on."""
    n_tensors, moe_layers = model.layer_tensors
    return _terms(n_tensors, moe_layers, tuple(lay.attn for lay in model.layers),
                  model.moe.n_expert_used if model.moe else 0, model.n_layers - model.n_nextn, flash_attn)


def layer_nodes(model: ModelSpec, flash_attn: bool) -> tuple[float, ...]:
    """Predicted graph nodes of each layer."""
    return _nodes(layer_terms(model, flash_attn))


# cached on the structure alone: the optimizer's re-typed copies of a spec share it
@lru_cache(maxsize=256)
def _terms(n_tensors: tuple[int, ...], moe_layers: frozenset[int], attn: tuple[str, ...], used: int,
           first_mtp: int, flash_attn: bool) -> tuple[tuple[int, ...], ...]:
    out = []
    for il, kind in enumerate(attn):
        if il >= first_mtp:
            out.append((0,) * len(TERMS))
            continue
        moe = il in moe_layers
        out.append((1, n_tensors[il], moe, moe * used, kind == "recurrent",
                    kind in ("full", "swa") and not flash_attn))
    return tuple(out)


@lru_cache(maxsize=256)
def _nodes(terms: tuple[tuple[int, ...], ...]) -> tuple[float, ...]:
    c = backends().graph_nodes
    coef = [getattr(c, k) for k in TERMS]
    return tuple(sum(a * b for a, b in zip(coef, t, strict=True)) for t in terms)
