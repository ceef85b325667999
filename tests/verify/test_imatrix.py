"""The importance-matrix collector against a numpy forward pass, and its file against ggml's quantizer."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFReader

from planner.errors import PlannerError
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf
from planner.verify.imatrix import load_act_errors, load_imatrix, make_imatrix, weight_name
from planner.verify.quantize import quantize
from planner.verify.run import TEXT


@pytest.fixture(scope="module")
def smol_imatrix(base, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("imatrix") / "smol.imatrix.gguf")
    r = make_imatrix(base, TEXT, out, n_ctx=128, n_chunks=2)
    assert r["n_tokens"] == 256
    return out


@pytest.mark.llama
def test_every_block_matrix_is_collected_with_its_rows(base, smol_imatrix):
    m = load_gguf(base)
    im = load_imatrix(smol_imatrix)
    mats = {t.name for t in m.tensors if t.layer is not None and len(t.shape) == 2}
    assert set(im) == mats and len(mats) == 30 * 7  # the last layer too: every row is an output
    r = GGUFReader(smol_imatrix)
    counts = {t.name: float(t.data.reshape(-1)[0]) for t in r.tensors if t.name.endswith(".counts")}
    assert set(counts.values()) == {256.0}
    assert {f for f in r.fields if f.startswith("imatrix.")} >= {"imatrix.datasets", "imatrix.chunk_count",
                                                                  "imatrix.chunk_size"}
    act = load_act_errors(smol_imatrix)
    assert set(act) == mats and all(set(v) >= {"f16", "bf16", "q8_0"} for v in act.values())


@pytest.mark.llama
def test_the_first_projection_sees_what_numpy_computes(base, smol_imatrix):
    """attn_q of layer 0 reads RMSNorm(embedding) x attn_norm: mean x^2 per column equals a numpy
    forward pass over the same 2 x 128 tokens to float precision (SmolLM2 adds no BOS)."""
    import llama_cpp
    llm = llama_cpp.Llama(base, vocab_only=True, verbose=False)
    assert not llm._model.add_bos_token()
    with open(TEXT, "rb") as f:
        toks = llm.tokenize(f.read(), add_bos=False, special=False)[:256]
    r = GGUFReader(base)
    ts = {t.name: t for t in r.tensors}
    emb = np.asarray(ts["token_embd.weight"].data, dtype=np.float32).reshape(-1, 576)[toks]
    x = emb / np.sqrt((emb * emb).mean(1, keepdims=True) + 1e-5) * np.asarray(ts["blk.0.attn_norm.weight"].data)
    ref = (x.astype(np.float64) ** 2).mean(0)
    im = load_imatrix(smol_imatrix)
    assert np.abs(im["blk.0.attn_q.weight"][0] / ref - 1).max() < 1e-4
    assert np.array_equal(im["blk.0.attn_k.weight"], im["blk.0.attn_q.weight"])  # the same input
    from planner.verify.imatrix import act_qerr2
    ref_q = act_qerr2(x.astype(np.float32))["q8_0"] / len(x)
    got_q = load_act_errors(smol_imatrix)["blk.0.attn_q.weight"]["q8_0"][0]
    assert abs(got_q.sum() / ref_q.sum() - 1) < 1e-3  # a few roundings fall the other way


@pytest.mark.llama
def test_ggml_quantizes_with_the_collected_file(base, smol_imatrix, tmp_path):
    m = load_gguf(base)
    st = ftype_tensor_types(m, "Q4_K_M")
    a, b = tmp_path / "with.gguf", tmp_path / "plain.gguf"
    quantize(base, str(a), m, st, imatrix=smol_imatrix)
    quantize(base, str(b), m, st)
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()


@pytest.mark.llama
def test_bad_inputs_say_what_is_wrong(base, tmp_path):
    with pytest.raises(PlannerError, match="text file .* does not exist"):
        make_imatrix(base, str(tmp_path / "none.txt"), str(tmp_path / "o.gguf"))
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(PlannerError, match="fewer than one chunk"):
        make_imatrix(base, str(short), str(tmp_path / "o.gguf"))
    assert not (tmp_path / "o.gguf").exists() and not (tmp_path / "o.gguf.part").exists()


def test_backend_copies_map_to_the_weight():
    assert weight_name("CUDA0#blk.0.attn_k.weight#0") == "blk.0.attn_k.weight"
    assert weight_name("blk.3.ffn_down.weight") == "blk.3.ffn_down.weight"


@pytest.mark.llama
def test_errors_weighted_by_the_activations(base, smol_imatrix):
    """With an importance matrix the measured error is the relative error of the outputs: block
    matrices change, the embedding (not covered) does not; quantizing with the matrix as well
    lowers the weighted error it is measured by (ggml's quantizer minimises exactly that)."""
    from planner.verify.tensor_error import measure_errors
    full = load_gguf(base)
    m = full.model_copy(update={"tensors": [t for t in full.tensors if t.layer in (0, 3, 29) or t.layer is None]})
    plain = measure_errors(base, m, cache=False)
    weighted = measure_errors(base, m, importance=smol_imatrix, quantize_with_importance=False, cache=False)
    both = measure_errors(base, m, importance=smol_imatrix, cache=False)
    assert weighted["token_embd.weight"] == plain["token_embd.weight"]
    name = "blk.3.ffn_down.weight"
    assert weighted[name]["Q4_K"] != plain[name]["Q4_K"]
    assert weighted[name]["Q8_0"] == pytest.approx(both[name]["Q8_0"], rel=1e-6)  # Q8_0 has no quant_weights
    blocks = [t.name for t in m.tensors if t.layer is not None and len(t.shape) == 2]
    assert sum(both[n]["Q4_K" if "ffn_down" in n else "Q4_0"] for n in blocks) < \
        sum(weighted[n]["Q4_K" if "ffn_down" in n else "Q4_0"] for n in blocks)
    assert "IQ2_XS" in both[name] and "IQ2_XS" not in weighted[name]  # the quantizer has the matrix
    # the activations' rounding, per format: ffn_down's input (rows of 1536) has all four, the
    # others (576 = 18 x 32) no Q8_K; the embedding is not an activation matmul of the blocks
    assert 0 < weighted[name]["@f16"] < weighted[name]["@q8_0"] < weighted[name]["@q8_K"] < 1e-2
    assert {k for k in weighted["blk.3.attn_q.weight"] if k[0] == "@"} == {"@f16", "@bf16", "@q8_0"}
    assert not any(k[0] == "@" for k in weighted["token_embd.weight"])
    assert not any(k[0] == "@" for k in plain[name])


@pytest.mark.llama
def test_an_importance_matrix_of_another_model_is_refused(base, smol_imatrix, tmp_path):
    from planner.verify.imatrix import write_imatrix
    from planner.verify.tensor_error import measure_errors
    m = load_gguf(base)
    other = str(tmp_path / "other.imatrix.gguf")
    write_imatrix(other, {"blk.0.attn_q.weight": np.ones((1, 640))}, {"blk.0.attn_q.weight": np.ones(1)},
                  dataset="x", chunk_count=1, chunk_size=512)
    with pytest.raises(PlannerError, match="for another model: blk.0.attn_q.weight has 640 columns"):
        measure_errors(base, m, importance=other, cache=False)


def _ggml_q8_K_roundtrip(x: np.ndarray) -> np.ndarray:
    """quantize_row_q8_K_ref then dequantize_row_q8_K, the CPU backend's own (libggml-base)."""
    import ctypes

    from planner.verify.ggml import _lib
    lib = _lib()
    lib.quantize_row_q8_K_ref.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.dequantize_row_q8_K.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    blocks = ctypes.create_string_buffer(x.size // 256 * (4 + 256 + 2 * 16))  # block_q8_K: d, qs, bsums
    lib.quantize_row_q8_K_ref(x.ctypes.data, blocks, x.size)
    y = np.empty_like(x)
    lib.dequantize_row_q8_K(blocks, y.ctypes.data, x.size)
    return y


@pytest.mark.llama
def test_activation_rounding_is_ggmls():
    """act_qerr2 rounds as ggml's CPU backend converts activations: Q8_0 (blocks of 32, F16
    scale) as ggml_quantize_chunk writes it, Q8_K (blocks of 256) as quantize_row_q8_K_ref, F16 as
    numpy; heavy-tailed rows (a few outlier columns, as real activations have) cost Q8_K more."""
    from planner.verify.ggml import dequantize_rows, quantize_rows
    from planner.verify.imatrix import act_qerr2
    rng = np.random.default_rng(1)
    x = rng.standard_t(3, size=(16, 512)).astype(np.float32)
    x[:, 7] *= 40
    got = act_qerr2(x)
    q8 = dequantize_rows(quantize_rows(x, "Q8_0"), "Q8_0", 512)
    assert got["q8_0"] == pytest.approx(((x - q8).astype(np.float64) ** 2).sum(0), rel=1e-5, abs=1e-12)
    qk = _ggml_q8_K_roundtrip(x).reshape(x.shape)
    assert got["q8_K"] == pytest.approx(((x - qk).astype(np.float64) ** 2).sum(0), rel=1e-5, abs=1e-12)
    f16 = x.astype(np.float16).astype(np.float32)
    assert got["f16"] == pytest.approx(((x - f16).astype(np.float64) ** 2).sum(0))
    assert got["f16"].sum() < got["bf16"].sum() < got["q8_0"].sum() < got["q8_K"].sum()
    assert set(act_qerr2(x[:, :96])) == {"f16", "bf16", "q8_0"}  # Q8_K needs rows of 256


@pytest.mark.llama
def test_experts_are_collected_per_expert_by_their_routing(tmp_path):
    """MUL_MAT_ID: each expert's rows are the tokens routed to it, so the counts over the experts
    of a layer add up to tokens x experts used; its sums and rounding errors are its rows' only."""
    from planner.model.hf_config import spec_from_hf_config
    from planner.verify.twin import write_twin
    from tests.conftest import tiny_config
    m = spec_from_hf_config(tiny_config("Qwen3MoeForCausalLM", num_experts=8, num_experts_per_tok=2,
                                        moe_intermediate_size=256, num_hidden_layers=2),
                            name="tiny-moe", source="test")
    path = str(tmp_path / "moe.gguf")
    write_twin(m.with_types({t.name: "F16" for t in m.tensors if len(t.shape) > 1}), path, fill="random")
    out = str(tmp_path / "moe.imatrix.gguf")
    make_imatrix(path, TEXT, out, n_ctx=64, n_chunks=2)
    r = GGUFReader(out)
    counts = {t.name[:-len(".counts")]: np.asarray(t.data).reshape(-1) for t in r.tensors
              if t.name.endswith(".counts")}
    exps = [n for n in counts if "_exps" in n]
    assert exps and all(counts[n].size == 8 and counts[n].sum() == 2 * 128 for n in exps)
    im, act = load_imatrix(out), load_act_errors(out)
    for n in exps:
        used = counts[n] > 0
        assert np.all(im[n][used] > 0) and np.all(im[n][~used] == 1.0)  # never routed: weight 1
        q = act[n]["q8_0"]  # a column far below its block's max rounds to 0: its error is all of it
        assert q.shape == im[n].shape and np.all(q[used] <= im[n][used] * 1.0001)
        assert q[used].sum() < 1e-3 * im[n][used].sum()
