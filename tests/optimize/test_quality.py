"""The quality model's per-tensor loss: measured weight errors plus the activations' rounding."""

from __future__ import annotations

import pytest

from planner.model.spec import TensorSpec
from planner.optimize.allocate import allocate
from planner.optimize.quality import act_format, priors, tensor_loss

K = priors().measured.kld_per_rel_error
A = priors().measured.activation_factor
DOWN = TensorSpec(name="blk.3.ffn_down.weight", shape=[2048, 640])
# measured-style table: weights' errors per type, and the activations' rounding per format
ERR = {DOWN.name: {"F16": 0.0, "Q8_0": 1e-5, "Q6_K": 4e-5, "Q5_K": 2e-3, "Q4_K": 8e-3, "IQ4_XS": 1e-2, "Q3_K": 4e-2,
                   "Q2_K": 0.2, "Q5_1": 2e-4, "@f16": 1e-7, "@bf16": 4e-6, "@q8_0": 3e-5, "@q8_K": 2e-4}}


def test_activation_formats_follow_each_backends_matmul():
    assert [act_format(t, "cpu") for t in ("F16", "Q8_0", "Q4_1", "Q6_K", "IQ4_XS", "IQ4_NL")] == \
        ["f16", "q8_0", "q8_0", "q8_K", "q8_K", "q8_0"]
    assert [act_format(t, "cuda") for t in ("F16", "Q8_0", "Q6_K", "IQ2_XS")] == ["f16", "q8_0", "q8_0", "q8_0"]
    assert act_format("Q6_K", "metal") is None  # not described: no term rather than a guess


def test_the_loss_adds_the_rounding_beyond_the_f16_reference():
    assert tensor_loss(DOWN, "F16", ERR, False) == 0.0
    assert tensor_loss(DOWN, "Q8_0", ERR, False) == pytest.approx(K * (1e-5 + A * (3e-5 - 1e-7)))
    assert tensor_loss(DOWN, "Q6_K", ERR, False) == pytest.approx(K * (4e-5 + A * (2e-4 - 1e-7)))
    assert tensor_loss(DOWN, "Q6_K", ERR, False, "cuda") == pytest.approx(K * (4e-5 + A * (3e-5 - 1e-7)))
    plain = {DOWN.name: {k: v for k, v in ERR[DOWN.name].items() if not k.startswith("@")}}
    assert tensor_loss(DOWN, "Q6_K", plain, False) == pytest.approx(K * 4e-5)  # llama-imatrix's files
    typed = DOWN.retyped("Q6_K")  # a spec with its types set (predicted_kld's case) judges the same
    assert tensor_loss(typed, "Q6_K", ERR, False) == tensor_loss(DOWN, "Q6_K", ERR, False)
    assert tensor_loss(DOWN, "BF16", {DOWN.name: {**ERR[DOWN.name], "BF16": 0.0}}, False) == \
        pytest.approx(K * A * (4e-6 - 1e-7))
    shipped = DOWN.model_copy(update={"origin": "Q8_0"})  # kept as it came: nothing lost
    assert tensor_loss(shipped, "Q8_0", ERR, False) == 0.0
    assert tensor_loss(shipped, "Q6_K", ERR, False) == pytest.approx(K * (4e-5 + A * (2e-4 - 3e-5)))


def test_where_activations_round_badly_the_allocator_cuts_elsewhere(monkeypatch):
    """Q8_0's bytes for both matrices do not fit; one must drop. On the CPU ffn_down at Q6_K takes
    Q8_K activations (blocks of 256), whose rounding of its outlier-heavy input costs more than
    ffn_up at Q5_1: ffn_up drops. On CUDA every quantized type takes Q8_1 (blocks of 32): ffn_down
    drops, as the weights' errors alone would have it. (The shipped factor is 0, see quality.yaml;
    the mechanism is checked at 1.)"""
    from planner.model.ggml_types import tensor_bytes
    from planner.optimize import quality
    shipped = priors()
    at_1 = shipped.model_copy(update={"measured": shipped.measured.model_copy(update={"activation_factor": 1.0})})
    monkeypatch.setattr(quality, "priors", lambda: at_1)
    up = TensorSpec(name="blk.3.ffn_up.weight", shape=[640, 2048])
    err = {**ERR, up.name: {"F16": 0.0, "Q8_0": 1e-5, "Q5_1": 1e-4, "Q5_0": 2e-3, "IQ4_NL": 8e-3, "Q4_0": 1e-2,
                            "@f16": 1e-7, "@bf16": 4e-6, "@q8_0": 3e-5}}
    budget = tensor_bytes("Q8_0", DOWN.shape) + tensor_bytes("Q8_0", up.shape) - \
        (tensor_bytes("Q8_0", DOWN.shape) - tensor_bytes("Q6_K", DOWN.shape))
    cpu = allocate([DOWN, up], budget, 16, False, errors=err)
    cuda = allocate([DOWN, up], budget, 16, False, errors=err, backend="cuda")
    assert (cpu[DOWN.name], cpu[up.name]) == ("Q8_0", "Q5_1")
    assert (cuda[DOWN.name], cuda[up.name]) == ("Q6_K", "Q8_0")


def test_a_models_predicted_kld_is_its_weighted_parts_combined():
    """predicted_kld = combine(predicted_parts): weights and activations of block matrices, the
    output matrix at its own factor, priors where nothing was measured."""
    from planner.model import load_model
    from planner.optimize.quality import combine, predicted_kld, predicted_parts
    emb = TensorSpec(name="token_embd.weight", shape=[640, 1000])
    q = TensorSpec(name="blk.3.attn_q.weight", shape=[640, 640])
    m = load_model("llama3.2-1b").model_copy(update={"tied_embeddings": True, "n_layers": 16, "tensors": [
        DOWN.retyped("Q6_K"), emb.retyped("Q8_0"), q.retyped("Q5_1")]})
    err = {**ERR, emb.name: {"Q8_0": 2e-5}}
    parts = predicted_parts(m, err)
    assert set(parts) == {"weights", "activations", "output", "prior"}
    assert predicted_kld(m, err) == pytest.approx(combine(parts))
    f = priors().measured
    assert combine({"weights": 1.0, "activations": 1.0, "output": 1.0, "prior": 0.5}) == \
        pytest.approx(K * (1 + f.activation_factor + f.output_factor) + 0.5)


def test_measured_errors_take_the_calibrated_role_sensitivities():
    """attn_k measured 8-9x its predicted KLD change (relative to the median role) on both bench
    models: with measured errors its weight rises past ffn_down's; the priors keep llama.cpp #1256's."""
    from planner.optimize.quality import tensor_weight
    k = TensorSpec(name="blk.3.attn_k.weight", shape=[2048, 640])
    assert tensor_weight(k, 16, False) < tensor_weight(DOWN, 16, False)
    assert tensor_weight(k, 16, False, measured=True) > tensor_weight(DOWN, 16, False, measured=True)
    first = TensorSpec(name="blk.0.attn_k.weight", shape=[2048, 640])
    assert tensor_weight(first, 16, False, True) == 1.5 * tensor_weight(k, 16, False, True)  # depth factor
