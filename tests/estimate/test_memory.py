"""The estimator against llama.cpp itself: real loads and no_alloc dry runs on this CPU."""

import copy
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.estimate import RuntimeOptions, estimate
from planner.estimate.memory import kv_cells, kv_layer_bytes
from planner.model import load_gguf, load_model
from planner.model.catalog import find_entry
from planner.model.hf_config import spec_from_hf_config
from planner.model.hybrid import mamba_spec
from planner.profile.detect import detect_hardware
from planner.profile.hardware import CPU, RAM, HardwareProfile
from planner.profile.targets import load_target
from planner.verify.child import run_probe

# this machine's own ISA flags: which extra buffer types llama.cpp uses (CPU_REPACK on AVX2, AMX on AMX-INT8
# Xeons) decides where the weights it loads here go
THIS_CPU = HardwareProfile(cpu=CPU(model="x86-64", cores=2, threads=2,
                                   flags=detect_hardware(measure_bandwidth=False).cpu.flags),
                           ram=RAM(total_bytes=24 << 30, bandwidth_gbps=20))
KV = {"f16": None, "q8_0": 8}


def _need_avx2():
    from planner.profile.detect import detect_hardware
    if "avx2" not in detect_hardware(measure_bandwidth=False).cpu.flags:
        pytest.fail("these checks model the AVX2 CPU backend's repacking; run them on an AVX2 machine")


def _compare(est, meas: dict, compute_tol=0.05):
    host = est.devices[-1].buffers_mib
    for k, v in meas.items():
        if "compute" in k:
            assert abs(host[k] / v - 1) <= compute_tol, (k, host[k], v)
        else:
            assert abs(host.get(k, 0.0) - v) <= 0.011, (k, host.get(k), v)


REAL = [  # (model, ftype or None for the real SmolLM2, n_ctx, flash attention, mmap, K/V type)
    ("smollm2", None, 2048, True, True, "f16"),
    ("smollm2", None, 4096, False, False, "f16"),
    ("smollm2", None, 4096, True, True, "q8_0"),
    ("qwen3-0.6b", "Q4_K_M", 8192, True, True, "f16"),
    ("qwen3-0.6b", "Q4_K_M", 4096, False, False, "f16"),
    ("gemma3-270m", "Q8_0", 8192, True, True, "f16"),
    ("llama3.2-1b", "Q4_0", 4096, False, False, "f16"),
    ("qwen2.5-0.5b", "Q6_K", 8192, True, True, "q8_0"),
]


@pytest.mark.llama
@pytest.mark.parametrize("name,ftype,ctx,fa,mmap,kv", REAL)
@pytest.mark.parametrize("swa_full", [True, False])
def test_weights_and_kv_exact_compute_close_on_real_loads(name, ftype, ctx, fa, mmap, kv, swa_full, smol_path,
                                                          make_twin):
    _need_avx2()
    if name == "smollm2":
        path, model = smol_path, load_gguf(smol_path)
    else:
        path, model = make_twin(name, ftype)
    r = run_probe(dict(model=path, ctx=ctx, fa=fa, mmap=mmap, ctk=KV[kv], ctv=KV[kv],
                       kwargs={"swa_full": swa_full}), timeout_s=300)
    assert r["ok"], r.get("error")
    o = RuntimeOptions(n_ctx=ctx, flash_attn=fa, mmap=mmap, cache_type_k=kv, cache_type_v=kv, swa_full=swa_full)
    est = estimate(model, THIS_CPU, o)
    _compare(est, r["bufs_mib"])
    # what is resident never exceeds the file, but for the AMX buffer's own (larger) copies
    host = est.devices[-1].memory
    assert host.weights_bytes - host.amx_bytes <= r["model_size_bytes"] + (0 if mmap else 1)


DRY = [("llama3.1-8b", 16384, 512, False), ("llama3.1-8b", 32768, 512, True), ("qwen2.5-7b", 8192, 1024, False),
       ("gemma2-2b", 8192, 512, True), ("gemma3-4b", 32768, 512, False), ("qwen3-30b-a3b", 8192, 512, True),
       ("qwen3-30b-a3b", 4096, 256, False), ("mistral-7b", 8192, 2048, False), ("phi3-mini-4k", 4096, 512, False),
       ("gpt-oss-20b", 8192, 512, False), ("smollm2-135m", 8192, 512, True)]


@pytest.mark.llama
@pytest.mark.parametrize("name,ctx,ub,fa", DRY)
def test_compute_buffer_within_5_percent_of_llama_cpp_dry_run(name, ctx, ub, fa, make_twin):
    path, model = make_twin(name, "Q4_K_M")
    r = run_probe(dict(model=path, dry=True, ctx=ctx, n_ubatch=ub, n_batch=max(2048, ub), fa=fa), timeout_s=120)
    assert r["ok"], r.get("error")
    o = RuntimeOptions(n_ctx=ctx, n_ubatch=ub, n_batch=max(2048, ub), flash_attn=fa, swa_full=True, mmap=False)
    est = estimate(model, THIS_CPU, o).devices[-1].buffers_mib["CPU compute"]
    assert abs(est / r["bufs_mib"]["CPU compute"] - 1) <= 0.05, (est, r["bufs_mib"])


@pytest.mark.llama
@pytest.mark.parametrize("ctx", [512, 2048])
def test_absorbed_mla_scores_at_short_context_sit_in_a_freed_block(ctx, make_twin):
    """DeepSeek-V3 without flash attention: up to n_kv 768 the scores take no room of their own (a 5-layer twin:
    the compute buffer is one layer's peak), above it they do."""
    cfg = copy.deepcopy(find_entry("deepseek-v3").config) | {"num_hidden_layers": 5}
    path, model = make_twin("deepseek-v3-5L", "Q4_K_M", spec=spec_from_hf_config(cfg, "deepseek-v3-5L", "test"))
    r = run_probe(dict(model=path, dry=True, ctx=ctx, n_ubatch=128, fa=False), timeout_s=300)
    assert r["ok"], r.get("error")
    o = RuntimeOptions(n_ctx=ctx, n_ubatch=128, flash_attn=False, mmap=False)
    est = estimate(model, THIS_CPU, o).devices[-1].buffers_mib["CPU compute"]
    assert abs(est / r["bufs_mib"]["CPU compute"] - 1) <= 0.05, (est, r["bufs_mib"])


def test_h100_runs_are_reproduced_within_goals():
    """bench/data keeps the H100 runs; every buffer and the NVML total must come out right."""
    here = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "data", "h100-llama3-8b-q4k-calibration.jsonl")
    from bench.accuracy import h100_llama3_8b_types
    m = h100_llama3_8b_types(load_model("llama3-8b"))
    hw = load_target("h100-80gb")
    for line in open(here):
        r = json.loads(line)
        c = r["cfg"]
        o = RuntimeOptions(n_ctx=c["ctx"], flash_attn=c.get("fa", False), n_gpu_layers=c["ngl"],
                           n_ubatch=c.get("n_ubatch", 512), cache_type_k="q8_0" if c.get("ctk") else "f16",
                           cache_type_v="q8_0" if c.get("ctv") else "f16")
        gpu = estimate(m, hw, o).devices[0]
        b = r["bufs_mib"]
        assert abs(gpu.buffers_mib["CUDA0 model"] - b.get("CUDA0 model", 0)) <= 0.011
        assert abs(gpu.buffers_mib["CUDA0 KV"] - b.get("CUDA0 KV", 0)) <= 0.011
        assert abs(gpu.memory.total_bytes / 2**20 - r["gpu_delta_mib"]) <= max(64, 0.02 * r["gpu_delta_mib"])


def test_kv_cache_counts_only_the_window_for_swa_layers():
    m = load_model("gemma3-27b")
    o = RuntimeOptions(n_ctx=32768)
    n_ctx, full, swa = kv_cells(m, o)
    assert (full, swa) == (32768, 1536)  # PAD(1024 + 512, 256)
    assert kv_layer_bytes(m, 0, swa, "f16", "f16") == 1536 * 16 * 128 * 2 * 2
    assert kv_cells(m, RuntimeOptions(n_ctx=32768, swa_full=True))[2] == 32768


def test_mla_caches_one_latent_head_and_no_v():
    m = load_model("deepseek-v3")
    assert kv_layer_bytes(m, 0, 1024, "f16", "f16") == 1024 * 576 * 2


def test_ngl_offloads_the_output_layer_first():
    m = load_model("llama3.1-8b").with_types({})
    hw = load_target("rtx4090")
    one = estimate(m, hw, RuntimeOptions(n_gpu_layers=1)).devices[0]
    assert one.n_layers == 0 and one.memory.weights_bytes == 4096 * 128256 * 2 + 4096 * 4


@settings(max_examples=25, deadline=None)
@given(ctx=st.integers(256, 131072), extra=st.integers(1, 65536))
def test_more_context_never_needs_less_memory(ctx, extra):
    m = load_model("qwen3-8b").with_types({})
    hw = load_target("rtx4090")
    a = estimate(m, hw, RuntimeOptions(n_ctx=ctx))
    b = estimate(m, hw, RuntimeOptions(n_ctx=ctx + extra))
    assert all(y.memory.total_bytes >= x.memory.total_bytes for x, y in zip(a.devices, b.devices, strict=False))


@settings(max_examples=20, deadline=None)
@given(ngl=st.integers(0, 32))
def test_more_layers_on_the_gpu_never_lowers_gpu_weights(ngl):
    m = load_model("llama3.1-8b").with_types({})
    hw = load_target("rtx4090")
    a = estimate(m, hw, RuntimeOptions(n_gpu_layers=ngl)).devices[0].memory.weights_bytes
    b = estimate(m, hw, RuntimeOptions(n_gpu_layers=ngl + 1)).devices[0].memory.weights_bytes
    assert b >= a


@pytest.mark.llama
@pytest.mark.parametrize("n_seq", [1, 3])
def test_recurrent_state_of_a_mamba2_is_exact_against_llama_cpp(tmp_path, n_seq):
    """The GGUF's ssm.* keys -> n_embd_r/n_embd_s per layer, F32, one row per sequence: the RS
    buffer llama.cpp allocates, to its log's 0.01 MiB, and the weights with it."""
    from planner.verify.twin import write_twin
    path = str(tmp_path / "mamba2.gguf")
    write_twin(mamba_spec(), path, fill="random")
    m = load_gguf(path)
    assert m.recurrent and all(lay.attn == "recurrent" for lay in m.layers)
    assert m.recurrent.r_elements == 3 * (512 + 2 * 2 * 64) and m.recurrent.s_elements == 64 * 512
    r = run_probe(dict(model=path, ctx=1024, fa=False, mmap=False, n_seq=n_seq), timeout_s=300)
    assert r["ok"], r.get("error")
    est = estimate(m, THIS_CPU, RuntimeOptions(n_ctx=1024, flash_attn=False, mmap=False, n_seq=n_seq))
    host, meas = est.devices[-1].buffers_mib, r["bufs_mib"]
    assert meas["CPU RS"] > 0 and abs(host["CPU RS"] - meas["CPU RS"]) <= 0.011, (host, meas)
    assert abs(host["CPU model"] - meas["CPU model"]) <= 0.011 and "CPU KV" not in meas


@pytest.mark.parametrize("name,n_seq,unified", [("smollm2", 3, False), ("gemma3-270m", 2, False),
                                                ("gemma3-270m", 2, True)])
@pytest.mark.llama
def test_parallel_sequences_split_or_share_the_cache_as_llama_cpp_does(name, n_seq, unified, smol_path, make_twin):
    """-np N: N streams of n_ctx/N cells each (padded), or one shared cache with --kv-unified; the
    sliding-window layers' cells per stream follow the window."""
    _need_avx2()
    path, model = (smol_path, load_gguf(smol_path)) if name == "smollm2" else make_twin(name, "Q8_0")
    r = run_probe(dict(model=path, ctx=4096, fa=True, mmap=True, n_seq=n_seq, kv_unified=unified, swa_full=False),
                  timeout_s=300)
    assert r["ok"], r.get("error")
    est = estimate(model, THIS_CPU, RuntimeOptions(n_ctx=4096, flash_attn=True, n_seq=n_seq, kv_unified=unified))
    _compare(est, r["bufs_mib"])


@pytest.mark.parametrize("version,shape,ctx,ub", [
    (2, {}, 4096, 512), (2, {}, 32768, 256), (2, dict(d_inner=1024), 4096, 512), (2, dict(e=512), 4096, 512),
    (2, dict(n_group=1, d_state=128), 4096, 512),
    (2, dict(e=2560, n_layer=2, vocab=50288, d_inner=5120, d_state=128, n_group=1), 8192, 512),  # Mamba-2 2.7B
    (1, {}, 4096, 512), (1, dict(e=1024, d_inner=2048, d_state=16), 32768, 512)])
@pytest.mark.llama
def test_mamba_compute_buffer_within_5_percent_of_llama_cpp_dry_run(tmp_path, version, shape, ctx, ub):
    """No attention scores in a Mamba graph: the buffer does not grow with n_ctx; the SSM phase or
    the logits (beside 3 hidden states) sets it."""
    from planner.verify.twin import write_twin
    kw = dict(d_inner=512, d_state=16) if version == 1 else {}
    path = str(tmp_path / "m.gguf")
    write_twin(mamba_spec(version, **(kw | shape)), path)
    r = run_probe(dict(model=path, dry=True, ctx=ctx, n_ubatch=ub, n_batch=2048, fa=False), timeout_s=120)
    assert r["ok"], r.get("error")
    est = estimate(load_gguf(path), THIS_CPU, RuntimeOptions(n_ctx=ctx, n_ubatch=ub, flash_attn=False))
    got, want = est.devices[-1].buffers_mib["CPU compute"], r["bufs_mib"]["CPU compute"]
    assert abs(got / want - 1) <= 0.05, (got, want)


def _hybrid_exact_and_compute(m, path: str, ctx: int, ub: int, fa: bool) -> None:
    """KV, recurrent state and weights to llama.cpp's 0.01 MiB (a real load); compute within 5% of a dry run."""
    opts = RuntimeOptions(n_ctx=ctx, n_ubatch=ub, flash_attn=fa, mmap=False)
    est = estimate(m, THIS_CPU, opts).devices[-1].buffers_mib
    r = run_probe(dict(model=path, ctx=ctx, fa=fa, mmap=False, n_ubatch=ub, n_batch=2048), timeout_s=300)
    assert r["ok"], r.get("error")
    for part in ("CPU KV", "CPU RS", "CPU model"):
        assert abs(est[part] - r["bufs_mib"][part]) <= 0.011, (part, est, r["bufs_mib"])
    d = run_probe(dict(model=path, dry=True, ctx=ctx, n_ubatch=ub, n_batch=2048, fa=fa), timeout_s=300)
    assert d["ok"], d.get("error")
    got, want = est["CPU compute"], d["bufs_mib"]["CPU compute"]
    assert abs(got / want - 1) <= 0.05, (got, want)


def _twin_matches_llama_cpp(path: str, specs, parts=("CPU KV", "CPU model"), compute: bool = True, **opts) -> None:
    """With flash attention on and off: a real load of the twin allocates `parts` as each spec estimates
    them, to the 0.01 MiB of llama.cpp's log; a dry run's compute buffer is within 5% of the first spec's."""
    for fa in (True, False):
        r = run_probe(dict(model=path, ctx=4096, fa=fa, mmap=False, repack=opts.get("repack", True)), timeout_s=300)
        assert r["ok"], r.get("error")
        for spec in specs:
            est = estimate(spec, THIS_CPU, RuntimeOptions(n_ctx=4096, flash_attn=fa, mmap=False, **opts))
            for part in parts:
                got = est.devices[-1].buffers_mib[part]
                assert abs(got - r["bufs_mib"][part]) <= 0.011, (fa, part, got, r["bufs_mib"])
        if compute:
            d = run_probe(dict(model=path, dry=True, ctx=4096, fa=fa, n_ubatch=512, n_batch=2048,
                               repack=opts.get("repack", True)), timeout_s=300)
            assert d["ok"], d.get("error")
            est = estimate(specs[0], THIS_CPU, RuntimeOptions(n_ctx=4096, flash_attn=fa, **opts))
            got = est.devices[-1].buffers_mib["CPU compute"]
            assert abs(got / d["bufs_mib"]["CPU compute"] - 1) <= 0.05, (fa, got, d["bufs_mib"])


@pytest.mark.parametrize("shape,ctx,ub,fa", [
    ({}, 4096, 512, True), ({}, 16384, 512, False), (dict(n_ff=3072), 16384, 512, True),
    (dict(e=512), 1024, 512, False), (dict(n_expert=16, n_expert_used=4, n_ff=256, shared_ff=512), 4096, 256, True)])
@pytest.mark.llama
def test_hybrid_memory_is_exact_and_compute_within_5_percent_of_llama_cpp(tmp_path, shape, ctx, ub, fa):
    """A Granite-4.0-H layout (Mamba-2 mixers, attention at 2 of 16 layers, dense or MoE FFN): KV
    only for the attention layers, the recurrent state for the rest, both to llama.cpp's 0.01 MiB;
    the compute buffer holds the attention mask under the SSM and FFN phases."""
    from planner.model.hybrid import hybrid_spec
    from planner.verify.twin import write_twin
    path = str(tmp_path / "h.gguf")
    write_twin(hybrid_spec(**dict(n_layer=16, attn_layers=(4, 12), vocab=256) | shape), path)
    m = load_gguf(path)
    assert [i for i, lay in enumerate(m.layers) if lay.attn == "full"] == [4, 12]
    _hybrid_exact_and_compute(m, path, ctx, ub, fa)


@pytest.mark.parametrize("arch,ctx,ub,fa", [("nemotron_h", 4096, 512, True), ("jamba", 16384, 512, True),
                                             ("lfm2", 4096, 512, False)])
@pytest.mark.llama
def test_other_hybrids_memory_is_exact_and_compute_within_5_percent(tmp_path, arch, ctx, ub, fa):
    """Nemotron-H (Mamba-2, attention and FFN-only layers), Jamba (Mamba-1 mixers, MoE every other layer)
    and LFM2 (short convolutions): KV for the attention layers only, recurrent state for the mixers only
    (Nemotron-H's FFN-only layers hold neither: llama.cpp's is_recr needs n_ff == 0 too), to llama.cpp's
    0.01 MiB; the compute buffer from a dry run within 5%."""
    from planner.model.hybrid import jamba_spec, lfm2_spec, nemotron_h_spec
    from planner.verify.twin import write_twin
    spec = {"nemotron_h": lambda: nemotron_h_spec("M-M-M-M*-M-M-M*-"), "jamba": jamba_spec,
            "lfm2": lambda: lfm2_spec("CCACCACCACACACAC", n_ff=3072)}[arch]()
    path = str(tmp_path / f"{arch}.gguf")
    write_twin(spec, path)
    m = load_gguf(path)
    assert [lay.attn for lay in m.layers] == [lay.attn for lay in spec.layers]
    if arch == "jamba":
        assert [lay.moe for lay in m.layers] == [i % 2 == 1 for i in range(8)]
    _hybrid_exact_and_compute(m, path, ctx, ub, fa)


@pytest.mark.parametrize("name,ctx,ub,fa", [("Nemotron-H-8B", 4096, 2048, True), ("Jamba-Mini", 32768, 512, True),
                                             ("LFM2-1.2B", 8192, 512, False), ("Granite-4.0-H-Tiny", 4096, 512, True),
                                             ("RWKV-7 2.9B", 4096, 128, True)])
@pytest.mark.llama
def test_hybrid_compute_at_real_size_within_5_percent_of_llama_cpp(tmp_path, name, ctx, ub, fa):
    """Hybrids at their released sizes (sparse twins; a dry run reads no weights): the phase that sets
    the peak differs (logits, Jamba's MoE FFN under the attention mask, attention scores)."""
    from bench.mamba_grid import REAL
    from planner.verify.twin import write_twin
    path = str(tmp_path / "real.gguf")
    write_twin(REAL[name](), path)
    d = run_probe(dict(model=path, dry=True, ctx=ctx, n_ubatch=ub, n_batch=2048, fa=fa), timeout_s=300)
    assert d["ok"], d.get("error")
    est = estimate(load_gguf(path), THIS_CPU, RuntimeOptions(n_ctx=ctx, n_ubatch=ub, flash_attn=fa))
    got, want = est.devices[-1].buffers_mib["CPU compute"], d["bufs_mib"]["CPU compute"]
    assert abs(got / want - 1) <= 0.05, (got, want)


@pytest.mark.llama
def test_kimi_linear_state_and_latent_cache_are_exact(tmp_path):
    """Kimi-Linear: its KDA layers (no KV heads) hold 3 short-conv states of n_head x head_dim and a
    head_dim^2 state per head (llama-hparams.cpp n_embd_r/n_embd_s), its MLA layers one latent KV head;
    both and the weights to llama.cpp's 0.01 MiB; compute (the KDA phase under the mask, the dense
    layer 0's FFN, absorbed MLA without flash attention) within 5%."""
    from planner.model.hybrid import kimi_linear_spec
    from planner.verify.twin import write_twin
    path = str(tmp_path / "kimi.gguf")
    write_twin(kimi_linear_spec("KKKAKKKA"), path)
    m = load_gguf(path)
    assert [lay.attn for lay in m.layers] == ["recurrent"] * 3 + ["full"] + ["recurrent"] * 3 + ["full"]
    assert (m.recurrent.r_elements, m.recurrent.s_elements) == (3 * 3 * 4 * 32, 32 * 32 * 4)
    from tests.conftest import AMX_SAFE
    opts = RuntimeOptions(n_ctx=4096, flash_attn=True, mmap=False, n_seq=2, **AMX_SAFE)
    est = estimate(m, THIS_CPU, opts).devices[-1].buffers_mib
    r = run_probe(dict(model=path, ctx=4096, fa=True, mmap=False, n_seq=2, **AMX_SAFE), timeout_s=300)
    assert r["ok"], r.get("error")
    for part in ("CPU KV", "CPU RS", "CPU model"):
        assert abs(est[part] - r["bufs_mib"][part]) <= 0.011, (part, est, r["bufs_mib"])
    _twin_matches_llama_cpp(path, [m], parts=("CPU KV", "CPU RS", "CPU model"), **AMX_SAFE)  # 1 sequence, compute


@pytest.mark.llama
@pytest.mark.parametrize("shape,ub", [({}, 512), (dict(e=1024), 256), (dict(n_ff=4096), 512)])
def test_rwkv7_state_is_exact_and_compute_within_5_percent(tmp_path, shape, ub):
    """RWKV-7: 2 token shifts and an n_embd x head_size WKV state per layer (exact), no KV cache; the
    compute buffer is its time mix or its channel mix, whichever is wider (no attention phase)."""
    from planner.model.hybrid import rwkv7_spec
    from planner.verify.twin import write_twin
    path = str(tmp_path / "rwkv7.gguf")
    write_twin(rwkv7_spec(**shape), path)
    m = load_gguf(path)
    assert all(lay.attn == "recurrent" for lay in m.layers)
    opts = RuntimeOptions(n_ctx=4096, n_ubatch=ub, mmap=False)
    est = estimate(m, THIS_CPU, opts).devices[-1].buffers_mib
    r = run_probe(dict(model=path, ctx=4096, mmap=False, n_ubatch=ub, n_batch=2048), timeout_s=300)
    assert r["ok"], r.get("error")
    assert "CPU KV" not in r["bufs_mib"]
    for part in ("CPU RS", "CPU model"):
        assert abs(est[part] - r["bufs_mib"][part]) <= 0.011, (part, est, r["bufs_mib"])
    d = run_probe(dict(model=path, dry=True, ctx=4096, n_ubatch=ub, n_batch=2048), timeout_s=300)
    assert d["ok"], d.get("error")
    got, want = est["CPU compute"], d["bufs_mib"]["CPU compute"]
    assert abs(got / want - 1) <= 0.05, (got, want)


@pytest.mark.llama
def test_falcon_h1_layers_hold_both_kv_and_state(tmp_path):
    """Falcon-H1 runs attention and a Mamba-2 mixer side by side in every layer (llama.cpp: is_recr for all
    layers, and a KV cache for all): KV, recurrent state and weights to llama.cpp's 0.01 MiB."""
    from planner.model.hybrid import falcon_h1_spec
    from planner.verify.twin import write_twin
    path = str(tmp_path / "falcon-h1.gguf")
    write_twin(falcon_h1_spec(), path)
    m = load_gguf(path)
    assert m.recurrent.in_attention_layers and all(lay.attn == "full" for lay in m.layers)
    est = estimate(m, THIS_CPU, RuntimeOptions(n_ctx=4096, flash_attn=True, mmap=False)).devices[-1].buffers_mib
    r = run_probe(dict(model=path, ctx=4096, fa=True, mmap=False), timeout_s=300)
    assert r["ok"], r.get("error")
    for part in ("CPU KV", "CPU RS", "CPU model"):
        assert abs(est[part] - r["bufs_mib"][part]) <= 0.011, (part, est, r["bufs_mib"])


@pytest.mark.parametrize("kw", [dict(n_mtp=1), dict(n_mtp=1, n_expert=8, n_expert_used=2, expert_ff=256, shared_ff=512),
                                dict(next_=True, n_expert=16, n_expert_used=4, expert_ff=256, shared_ff=256)])
@pytest.mark.llama
def test_qwen35_delta_net_layers_hold_state_and_the_mtp_block_is_not_loaded(tmp_path, kw):
    """Qwen3.5 / Qwen3-Next: gated delta-net layers (with a fused attn_qkv, yet recurrent) hold the state,
    every 4th layer the KV cache; the trailing MTP block is in the file but llama.cpp neither loads it nor
    gives it a cache. Weights, KV and state to llama.cpp's 0.01 MiB, compute within 5% (dry runs), flash
    attention on and off."""
    from planner.model.hybrid import qwen35_spec
    from planner.verify.twin import write_twin
    path = str(tmp_path / "qwen35.gguf")
    write_twin(qwen35_spec(**kw), path)
    m = load_gguf(path)
    assert [lay.attn for lay in m.layers[:8]] == ["recurrent"] * 3 + ["full"] + ["recurrent"] * 3 + ["full"]
    assert m.n_nextn == kw.get("n_mtp", 0)
    _twin_matches_llama_cpp(path, [m], parts=("CPU KV", "CPU RS", "CPU model"))


@pytest.mark.llama
def test_minimax_m2_from_config_loads_in_llama_cpp_with_weights_and_kv_exact(tmp_path):
    """MiniMax-M2's layout from a config.json: llama.cpp loads its twin (every name and shape) and allocates
    the weights and KV we predict, to its 0.01 MiB (its compute is checked at full size: bench/data)."""
    from planner.model.hf_config import spec_from_hf_config
    from planner.verify.twin import write_twin
    from tests.conftest import MINIMAX_M2_TWIN
    m = spec_from_hf_config(MINIMAX_M2_TWIN, "minimax-twin", "test")
    path = str(tmp_path / "minimax.gguf")
    write_twin(m, path)
    _twin_matches_llama_cpp(path, [m, load_gguf(path)], compute=False)


@pytest.mark.llama
def test_glm4moe_from_config_skips_its_mtp_block_as_llama_cpp_does(tmp_path):
    """GLM-4.5's layout from a config.json (biased q/k/v, a dense lead layer, sigmoid-routed and shared experts,
    one MTP block): written as a twin, llama.cpp loads it, skips the MTP block's weights and gives it no KV
    cache; weights and KV to its 0.01 MiB, compute within 5% with and without flash attention."""
    from planner.model.hf_config import spec_from_hf_config
    from planner.verify.twin import write_twin
    from tests.conftest import GLM_TWIN
    m = spec_from_hf_config(GLM_TWIN, "glm-twin", "test")
    assert m.n_nextn == 1 and m.layers[-1].attn == "none"
    path = str(tmp_path / "glm.gguf")
    write_twin(m, path)
    g = load_gguf(path)
    assert g.n_nextn == 1
    _twin_matches_llama_cpp(path, [g, m])


@pytest.mark.llama
@pytest.mark.parametrize("per_layer", [0, 256])
def test_gemma4_shared_kv_layers_swa_head_width_and_padded_v_cache(tmp_path, per_layer):
    """Gemma 4: sliding layers have their own head width (key_length_swa), the last layers attend over
    earlier caches and hold none (shared_kv_layers), the tied output matrix gets its own host copy (created
    before token_embd), and without flash attention llama.cpp pads every layer's V cache to the widest;
    the E-models' per-layer inputs set the compute buffer. Weights and KV to the 0.01 MiB with flash
    attention on and off; compute within 5%."""
    from planner.verify.twin import write_twin
    from tests.conftest import gemma4_twin
    path = str(tmp_path / "gemma4.gguf")
    write_twin(gemma4_twin(per_layer=per_layer), path)
    m = load_gguf(path)
    assert [lay.kv_shared for lay in m.layers] == [False] * 8 + [True] * 4
    assert {lay.head_dim for lay in m.layers if lay.attn == "swa"} == {64}
    _twin_matches_llama_cpp(path, [m], swa_full=True)  # llama-cpp-python's default


@pytest.mark.llama
def test_gemma3n_layers_from_20_share_kv_and_per_layer_inputs_set_the_compute(tmp_path):
    """Gemma 3n: layers from 20 on attend over layers 18 and 19's caches and hold none (models/gemma3n.cpp
    n_layer_kv_from_start); its tied output gets a host copy of its own; AltUp, LAuReL and per-layer
    embeddings load as llama.cpp creates them. Weights and KV to the 0.01 MiB, flash attention on and off;
    the compute buffer's peak is the per-layer inputs' phase (within 5%)."""
    from planner.verify.twin import write_twin
    from tests.conftest import gemma3n_twin
    path = str(tmp_path / "gemma3n.gguf")
    write_twin(gemma3n_twin(), path)
    m = load_gguf(path)
    assert [lay.kv_shared for lay in m.layers] == [False] * 20 + [True] * 4
    _twin_matches_llama_cpp(path, [m], swa_full=True)  # llama-cpp-python's default


@pytest.mark.llama
def test_kimi_linear_from_config_loads_in_llama_cpp_with_state_and_latent_cache_exact(tmp_path):
    """KimiLinearForCausalLM: KDA layers and MLA at linear_attn_config.full_attn_layers (1-based, as the
    converter reads them), two dense lead layers, two shared experts: its twin loads in llama.cpp with the
    state, the latent cache and the weights we predict, and the compute within 5%. A q LoRA is refused with
    one line."""
    from planner.errors import ModelNotFoundError
    from planner.model.hf_config import spec_from_hf_config
    from planner.verify.twin import write_twin
    cfg = {"architectures": ["KimiLinearForCausalLM"], "hidden_size": 256, "num_hidden_layers": 8,
           "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 2048, "intermediate_size": 768,
           "moe_intermediate_size": 128, "num_experts": 8, "num_experts_per_token": 2, "num_shared_experts": 2,
           "first_k_dense_replace": 2, "kv_lora_rank": 64, "qk_rope_head_dim": 16, "qk_nope_head_dim": 32,
           "v_head_dim": 32, "linear_attn_config": {"full_attn_layers": [4, 8], "kda_layers": [1, 2, 3, 5, 6, 7],
                                                    "num_heads": 4, "head_dim": 32, "short_conv_kernel_size": 4}}
    m = spec_from_hf_config(cfg, "kimi-twin", "test")
    assert [lay.attn for lay in m.layers] == ["recurrent"] * 3 + ["full"] + ["recurrent"] * 3 + ["full"]
    path = str(tmp_path / "kimi.gguf")
    write_twin(m, path)
    from tests.conftest import AMX_SAFE
    _twin_matches_llama_cpp(path, [m, load_gguf(path)], parts=("CPU KV", "CPU RS", "CPU model"), **AMX_SAFE)
    with pytest.raises(ModelNotFoundError, match="q LoRA"):
        spec_from_hf_config(dict(cfg, q_lora_rank=128), "kimi-twin", "test")


def test_multi_device_split_matches_llama_cpp_rpc_devices():
    """Several devices, measured by llama.cpp with RPC devices as GPUs (bench/multi_device.py): each
    device's weights and KV exact at full and partial offload; under pipeline parallelism each GPU's
    compute buffer is its own layers' peak plus 4 copies of its inputs, not the whole buffer 4 times;
    where the FFN phase is the peak (small vocabularies, a split's first GPU) it holds what llama.cpp does."""
    from bench.multi_device import rows
    rs = rows()
    exact = [r for r in rs if r["part"] in ("model", "KV", "RS")]
    assert len(exact) >= 20 and all(abs(r["predicted_mib"] - r["measured_mib"]) <= 0.011 for r in exact)
    gpu = [(r["predicted_mib"] - r["measured_mib"]) / r["measured_mib"]
           for r in rs if r["part"] == "compute" and r["device"] != "CPU"]
    # 162 of 179 within 5%; the rest without flash attention Gemma 2/3 and Phi-3's attention (-10% at most), MoE
    # layouts and a Nemotron-H split (+9% at most)
    assert len(gpu) >= 100 and sum(abs(e) <= 0.05 for e in gpu) >= 0.9 * len(gpu)
    assert -0.11 <= min(gpu) and max(gpu) <= 0.10
