"""The published-files table: every entry sourced, every model in the catalog, every quant a type llama.cpp
makes, and the _L names' Q8_0 edges."""

from planner.estimate.quant_mix import FTYPES
from planner.model.catalog import catalog
from planner.model.published import _table, ftype_of, models_with_files, published_files


def test_every_entry_is_a_catalog_model_with_a_source_and_known_quants():
    ids = {e.id for e in catalog()}
    t = _table()
    assert set(models_with_files()) <= ids
    for pub in t.publishers.values():
        assert pub.source.startswith("https://")
    for mid, entry in t.models.items():
        assert entry.files or entry.ollama, mid
        for r in entry.files:
            assert r.source.startswith("https://") and r.publisher in t.publishers and "/" in r.repo
            for q in r.quants:
                assert ftype_of(q)[0] in FTYPES, (mid, q)


def test_names_the_downloaders_take_and_the_recipes():
    files = published_files("llama3.1-8b")
    refs = {f.ref for f in files}
    assert "hf.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M" in refs and "llama3.1:8b" in refs
    q6l = next(f for f in files if f.quant == "Q6_K_L")
    assert q6l.ftype == "Q6_K" and q6l.imatrix
    assert q6l.type_overrides({"token_embd.weight", "output.weight", "blk.0.attn_q.weight"}) == {
        "token_embd.weight": "Q8_0", "output.weight": "Q8_0"}
    lib = next(f for f in files if f.tag)
    assert lib.ftype == "Q4_K_M" and not lib.imatrix  # Ollama quantizes its library without an imatrix
    assert ftype_of("MXFP4") == ("MXFP4_MOE", False)
    assert published_files("no-such-model") == []
