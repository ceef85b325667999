import struct

import pytest

from planner.errors import GGUFError
from planner.model import load_gguf, load_model
from planner.model.gguf_header import read_gguf_file


def test_real_gguf_header(smol_path):
    h = read_gguf_file(smol_path)
    assert h.get("general.architecture") == "llama" and len(h.tensors) == 272
    m = load_gguf(smol_path)
    assert m.file_type == "Q4_1" and m.n_vocab == 49152 and m.tied_embeddings


def test_file_cut_right_after_the_tensor_list_still_reads(smol_path, tmp_path):
    h = read_gguf_file(smol_path)
    cut = tmp_path / "partial.gguf"
    with open(smol_path, "rb") as f:
        cut.write_bytes(f.read(h.header_bytes))
    m = load_gguf(cut)
    assert len(m.tensors) == 272 and m.n_layers == 30


def test_file_cut_inside_the_header_says_so(smol_path, tmp_path):
    cut = tmp_path / "short.gguf"
    with open(smol_path, "rb") as f:
        cut.write_bytes(f.read(50_000))
    with pytest.raises(GGUFError, match="truncated"):
        load_gguf(cut)


def _hostile(path, n_tensors=1, n_kv=1, key_len=None):
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv))
        f.write(struct.pack("<Q", key_len if key_len is not None else 4) + b"abcd")
        f.write(struct.pack("<I", 4) + struct.pack("<I", 1))


@pytest.mark.parametrize("kw", [dict(n_tensors=1 << 62), dict(n_kv=1 << 40), dict(key_len=1 << 60)])
def test_hostile_header_is_rejected_before_it_is_believed(tmp_path, kw):
    # a reader that believed these counts would allocate exabytes; how fast the refusal is, bench/bad_input.py
    # measures (28 cases: under 0.7 s and 32 MiB each)
    p = tmp_path / "evil.gguf"
    _hostile(p, **kw)
    with pytest.raises(GGUFError, match="hostile|truncated"):
        load_gguf(p)


def test_not_a_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(GGUFError, match="not a GGUF"):
        load_gguf(p)


def test_twin_roundtrip_keeps_names_shapes_and_types(make_twin):
    path, m = make_twin("gemma3-1b", "Q4_K_M")
    back = load_gguf(path)
    assert {t.name: (t.shape, t.type) for t in back.tensors} == {t.name: (t.shape, t.type) for t in m.tensors}
    assert [lay.attn for lay in back.layers] == [lay.attn for lay in load_model("gemma3-1b").layers]
