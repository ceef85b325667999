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

from planner.estimate.constants import backends
from planner.model.spec import ModelSpec


def layer_nodes(model: ModelSpec, flash_attn: bool) -> list[float]:
    """Predicted graph nodes of each layer."""
    c = backends()["graph_nodes"]
    n_tensors, moe_layers = model.layer_tensors
    used = model.moe.n_expert_used if model.moe else 0
    first_mtp = model.n_layers - model.n_nextn
    nodes = []
    for il, lay in enumerate(model.layers):
        if il >= first_mtp:
            nodes.append(0.0)
            continue
        n = c["per_layer"] + c["per_tensor"] * n_tensors[il]
        if il in moe_layers:
            n += c["moe_layer"] + c["per_expert_used"] * used
        if lay.attn == "recurrent":
            n += c["recurrent_layer"]
        elif lay.attn in ("full", "swa") and not flash_attn:
            n += c["attention_without_flash"]
        nodes.append(n)
    return nodes
