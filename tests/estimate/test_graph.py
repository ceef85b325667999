"""Predicted graph nodes against llama.cpp's own count (its reserve log) on twins it builds."""

import pytest

from planner.estimate import RuntimeOptions, estimate
from planner.estimate.graph import layer_nodes
from planner.model.hf_config import spec_from_hf_config
from planner.model.hybrid import hybrid_spec, lfm2_spec
from planner.profile.targets import load_target
from planner.verify.child import run_probe
from planner.verify.twin import write_twin
from tests.conftest import tiny_config

TWINS = {
    "llama": lambda: spec_from_hf_config(tiny_config(), "tiny-llama", "test"),
    "qwen3moe": lambda: spec_from_hf_config(tiny_config("Qwen3MoeForCausalLM", head_dim=64, num_experts=8,
                                                        num_experts_per_tok=4, moe_intermediate_size=256),
                                            "tiny-qwen3moe", "test"),
    "granite-hybrid-moe": lambda: hybrid_spec(n_layer=8, attn_layers=(3,), n_expert=8, n_expert_used=2,
                                              n_ff=256, shared_ff=512),
    "lfm2": lambda: lfm2_spec("CCACCACC"),
}


@pytest.mark.llama
@pytest.mark.parametrize("name", list(TWINS))
def test_node_count_follows_llama_cpp(tmp_path, name):
    """Within 20% (the fit's worst over the catalog is 18.6%); a layer count alone, as the CPU cost
    was before, is 2x off between these layouts."""
    m = TWINS[name]()
    path = str(tmp_path / "twin.gguf")
    write_twin(m, path)
    for fa in (True, False):
        r = run_probe(dict(model=path, dry=True, ctx=512, n_ubatch=512, n_batch=512, fa=fa))
        assert r["ok"], r.get("error")
        ours = sum(layer_nodes(m, fa))
        assert abs(ours / r["graph_nodes"][1] - 1) <= 0.20, (name, fa, ours, r["graph_nodes"])


def test_nodes_follow_the_layers_to_their_device():
    m = spec_from_hf_config(tiny_config(num_hidden_layers=8), "tiny-llama", "test")
    hw = load_target("rtx4090")
    per_layer = layer_nodes(m, True)
    e_all = estimate(m, hw, RuntimeOptions(n_ctx=512, n_gpu_layers=0))
    e_half = estimate(m, hw, RuntimeOptions(n_ctx=512, n_gpu_layers=4))
    assert e_half.throughput.decode_tps > e_all.throughput.decode_tps
    from planner.estimate.memory import memory_breakdown
    b = memory_breakdown(m, hw, RuntimeOptions(n_ctx=512, n_gpu_layers=4))
    # -ngl 4 counts the output layer: the last 3 blocks go to the GPU, the first 5 stay on the CPU
    assert b.nodes[-1] == pytest.approx(sum(per_layer[:5])) and b.nodes[0] == pytest.approx(sum(per_layer[5:]))
