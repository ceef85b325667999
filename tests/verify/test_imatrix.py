"""The importance-matrix collector against a numpy forward pass, and its file against ggml's quantizer."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFReader

from planner.errors import PlannerError
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf
from planner.verify.imatrix import load_imatrix, make_imatrix, weight_name
from planner.verify.quantize import quantize
from planner.verify.run import TEXT


@pytest.fixture(scope="module")
def smol_imatrix(base, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("imatrix") / "smol.imatrix.gguf")
    r = make_imatrix(base, TEXT, out, n_ctx=128, n_chunks=2)
    assert r["n_tokens"] == 256
    return out


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


def test_ggml_quantizes_with_the_collected_file(base, smol_imatrix, tmp_path):
    m = load_gguf(base)
    st = ftype_tensor_types(m, "Q4_K_M")
    a, b = tmp_path / "with.gguf", tmp_path / "plain.gguf"
    quantize(base, str(a), m, st, imatrix=smol_imatrix)
    quantize(base, str(b), m, st)
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()


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


def test_an_importance_matrix_of_another_model_is_refused(base, smol_imatrix, tmp_path):
    from planner.verify.imatrix import write_imatrix
    from planner.verify.tensor_error import measure_errors
    m = load_gguf(base)
    other = str(tmp_path / "other.imatrix.gguf")
    write_imatrix(other, {"blk.0.attn_q.weight": np.ones((1, 640))}, {"blk.0.attn_q.weight": np.ones(1)},
                  dataset="x", chunk_count=1, chunk_size=512)
    with pytest.raises(PlannerError, match="for another model: blk.0.attn_q.weight has 640 columns"):
        measure_errors(base, m, importance=other, cache=False)
