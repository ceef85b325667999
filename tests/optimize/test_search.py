"""The optimizer on the cases the issue names, with bundled target profiles."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.estimate import ftype_tensor_types
from planner.model import load_model
from planner.optimize import PlanRequest, allocate, make_plan, predicted_kld
from planner.optimize.quality import bytes_of
from planner.profile.targets import apply_overrides, load_target


def test_llama_8b_on_a_4090_runs_fully_on_the_gpu_at_high_precision_and_long_context():
    r = make_plan(load_model("llama3.1-8b"), load_target("rtx4090"), PlanRequest())
    b = r.best
    assert b.placement == "gpu" and b.bits_per_weight >= 6 and b.options.n_ctx >= 32768
    assert b.estimate.fits and b.estimate.devices[0].n_layers == 32


def test_llama_70b_on_a_4090_the_goal_decides_between_low_bit_on_gpu_and_4_bit_split():
    m, hw = load_model("llama3.1-70b"), apply_overrides(load_target("rtx4090"), ram_gib=64)
    fast = make_plan(m, hw, PlanRequest(goal="speed")).best
    good = make_plan(m, hw, PlanRequest(goal="quality")).best
    assert fast.placement.startswith("gpu") and fast.bits_per_weight < 3.2
    assert good.placement == "partial" and good.bits_per_weight >= 4
    assert fast.estimate.throughput.decode_tps > 5 * good.estimate.throughput.decode_tps
    assert good.predicted_kld < fast.predicted_kld / 5


def test_llama_70b_on_m3_max_uses_high_precision_within_the_gpu_share():
    b = make_plan(load_model("llama3.1-70b"), load_target("m3-max-128gb"), PlanRequest()).best
    gpu = b.estimate.devices[0]
    assert b.placement == "gpu" and b.bits_per_weight >= 6
    assert gpu.memory.total_bytes <= gpu.capacity_bytes * 0.95


def test_a_model_whose_4_bit_reference_overflows_unified_memory_still_plans_within_the_gpu_share():
    """Qwen3-235B-A22B on a 128 GB M3 Max: Q4_K_M (133 GiB) is over the 96 GiB the GPU may wire, which left
    the host a negative share of unified memory when the budget was taken from that reference; the plan
    is all on the GPU near 3 bpw, inside its share."""
    b = make_plan(load_model("qwen3-235b-a22b-2507"), load_target("m3-max-128gb"), PlanRequest()).best
    assert b is not None and b.placement == "gpu" and 2.5 < b.bits_per_weight < 4
    gpu, host = b.estimate.devices
    assert gpu.memory.total_bytes <= gpu.capacity_bytes * 0.95 and host.capacity_bytes > 0


def test_balanced_takes_a_big_speed_up_over_a_quality_gain_below_q5_k_m_level():
    """Qwen3-30B-A3B on a 4090: all on the GPU at ~6 bpw (141 tok/s) beats 8.5 bpw with experts
    in RAM (28 tok/s); the quality goal still takes the latter."""
    m, hw = load_model("qwen3-30b-a3b"), load_target("rtx4090")
    b = make_plan(m, hw, PlanRequest()).best
    q = make_plan(m, hw, PlanRequest(goal="quality")).best
    assert b.placement == "gpu" and b.bits_per_weight >= 5 and b.estimate.throughput.decode_tps > 100
    assert q.bits_per_weight >= 8 and q.predicted_kld < b.predicted_kld


def test_moe_on_a_small_gpu_keeps_experts_in_ram():
    """Attention and shared weights on the GPU, experts in RAM: all of them (--cpu-moe), or those
    of the first N layers (--n-cpu-moe N) when the GPU has room for some."""
    from planner.export import render
    for name, target in (("qwen3-30b-a3b", "rtx4060"), ("gpt-oss-120b", "rtx4090")):
        m = load_model(name)
        b = make_plan(m, load_target(target), PlanRequest()).best
        assert b.placement in ("moe-cpu", "moe-partial"), (name, b.why)
        assert b.options.n_gpu_layers == -1 and (b.options.cpu_moe or 0 < b.options.n_cpu_moe < m.n_layers)
        gpu = b.estimate.devices[0]
        assert gpu.n_layers == m.n_layers and gpu.memory.total_bytes <= gpu.capacity_bytes * 0.95
        line = render("llama-server", b, m, "x.gguf")
        assert "--cpu-moe" in line or f"--n-cpu-moe {b.options.n_cpu_moe}" in line


def test_n_cpu_moe_always_moves_experts():
    """--n-cpu-moe N keeps the experts of layers 0..N-1 in RAM; where the first layers are dense
    (Jamba: MoE from layer 1; DeepSeek: from layer 3) a smaller N moves nothing and is not offered."""
    seen = 0
    for name, first_moe, target in (("jamba-v0.1", 1, "h100-80gb"), ("jamba-v0.1", 1, "rtx4090"),
                                    ("deepseek-v3", 3, "rtx4090")):
        r = make_plan(load_model(name), apply_overrides(load_target(target), ram_gib=512), PlanRequest())
        for o in [r.best, *r.alternatives]:
            if o.placement == "moe-partial":
                seen += 1
                assert o.options.n_cpu_moe > first_moe, (name, target, o.why)
    assert seen


def test_nothing_fits_says_how_much_is_missing():
    r = make_plan(load_model("llama3.1-405b"), load_target("laptop-16gb"), PlanRequest())
    assert r.best is None and "GiB more RAM" in r.nearest


def test_a_speed_floor_nothing_reaches_is_named_with_the_fastest_that_fits():
    r = make_plan(load_model("llama3.1-8b"), load_target("laptop-16gb"), PlanRequest(min_tps=1000))
    assert r.best is None and "reaches 1000 tok/s" in r.nearest and "GiB more" not in r.nearest


def test_depth_asks_for_a_context_that_holds_it():
    r = make_plan(load_model("llama3.1-8b"), load_target("rtx4090"), PlanRequest(depth=40000))
    assert r.best.options.n_ctx > 40000 and all(a.options.n_ctx > 40000 for a in r.alternatives)


def test_mixes_beat_uniform_types_at_the_same_bytes():
    m = load_model("llama3.1-8b")
    for ft in ("Q4_K_M", "Q3_K_M", "Q5_K_M"):
        stock = m.with_types(ftype_tensor_types(m, ft))
        types = allocate(m.tensors, bytes_of(stock), m.n_layers, m.tied_embeddings)
        mix = m.with_types(types)
        assert bytes_of(mix) <= bytes_of(stock)
        assert predicted_kld(mix) < predicted_kld(stock)
        assert len(set(types.values())) > 2  # it really mixes


def test_pinned_options_stay_pinned():
    r = make_plan(load_model("qwen3-8b"), load_target("rtx4090"),
                  PlanRequest(quant="Q4_K_M", n_ctx=12288, cache_type_k="q8_0", cache_type_v="q8_0", n_gpu_layers=20))
    o = r.best.options
    assert (o.n_ctx, o.cache_type_k, o.n_gpu_layers) == (12288, "q8_0", 20)
    assert r.best.types == ftype_tensor_types(load_model("qwen3-8b"), "Q4_K_M")


@settings(max_examples=8, deadline=None)
@given(vram=st.sampled_from([8, 12, 16, 24, 32, 48]))
def test_more_vram_never_gives_a_worse_plan(vram):
    m = load_model("llama3.1-8b")
    a = make_plan(m, apply_overrides(load_target("rtx4090"), vram_gib=str(vram)), PlanRequest(goal="quality")).best
    b = make_plan(m, apply_overrides(load_target("rtx4090"), vram_gib=str(vram * 2)), PlanRequest(goal="quality")).best
    assert b.predicted_kld <= a.predicted_kld + 1e-9


def test_budget_is_respected_and_more_budget_never_hurts():
    m = load_model("qwen2.5-7b")
    prev = None
    for gib in (3, 4, 5, 6, 8):
        types = allocate(m.tensors, gib * 2**30, m.n_layers, m.tied_embeddings)
        mm = m.with_types(types)
        assert bytes_of(mm) <= gib * 2**30
        k = predicted_kld(mm)
        assert prev is None or k <= prev
        prev = k


def test_a_quantized_gguf_runs_as_it_is_when_it_fits_and_is_never_requantized_upwards(smol_path):
    """SmolLM2's file is Q4_1 with a Q8_0 embedding: kept as is it loses nothing; more bits
    would only cost bytes. With less room, tensors go to smaller types only."""
    from planner.export import planned_file, render
    from planner.model import load_gguf
    from planner.model.ggml_types import bits_per_weight
    m = load_gguf(smol_path)
    b = make_plan(m, load_target("rtx4060"), PlanRequest()).best
    assert all(b.types[t.name] == t.type for t in m.tensors) and b.predicted_kld == 0
    assert planned_file(m, b) == (smol_path, True)
    assert render("llama-quantize", b, m, smol_path).startswith("# nothing to quantize")
    squeezed = allocate(m.tensors, int(bytes_of(m) * 0.9), m.n_layers, m.tied_embeddings)
    assert squeezed is not None and any(squeezed[t.name] != t.type for t in m.tensors)
    assert all(bits_per_weight(squeezed[t.name]) <= bits_per_weight(t.type) for t in m.tensors)
    typed = m.with_types(squeezed)
    assert predicted_kld(typed) > 0 and bytes_of(typed) <= int(bytes_of(m) * 0.9)
    line = render("llama-quantize", b.model_copy(update={"types": squeezed}), m, "out.gguf")
    assert line.startswith("llama-quantize --allow-requantize") and smol_path in line


def test_a_gpu_too_small_for_its_own_runtime_is_named_in_the_answer():
    r = make_plan(load_model("llama3.2-1b"), apply_overrides(load_target("rtx4060"), vram_gib="0.5"), PlanRequest())
    assert r.best is None and "cannot hold even its runtime" in r.nearest and "--gpus 0" in r.nearest


def test_gpt_oss_experts_stay_in_mxfp4_the_precision_they_ship_in():
    """openai/gpt-oss ships its experts in MXFP4 (config.json quantization_config): a plan with room
    keeps them so, and the estimate with no --quant is the release's MXFP4_MOE file (12.1 GB)."""
    from planner.api import typed_model
    m = load_model("gpt-oss-20b")
    b = make_plan(m, load_target("rtx4090"), PlanRequest()).best
    assert all(b.types[t.name] == "MXFP4" for t in m.tensors if t.name.endswith("_exps.weight"))
    typed, q = typed_model(m, None)
    assert q == "MXFP4_MOE" and 11.9e9 < bytes_of(typed) < 12.2e9


@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m", "qwen3-0.6b", "llama3.2-1b"])
def test_the_mix_never_predicts_worse_than_the_stock_ftype_it_replaces(name):
    """At each stock ftype's bytes the allocation's predicted KLD is at most the stock mix's,
    also where one tensor is most of the model (Gemma 3 270M's tied 262K-token embedding) and the
    relaxation alone strands it."""
    m = load_model(name)
    for f in ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"):
        stock = m.with_types(ftype_tensor_types(m, f))
        ours = allocate(m.tensors, bytes_of(stock), m.n_layers, m.tied_embeddings)
        assert bytes_of(m.with_types(ours)) <= bytes_of(stock)
        assert predicted_kld(m.with_types(ours)) <= predicted_kld(stock) * (1 + 1e-9), f


def test_gemma3n_per_layer_embeddings_are_budgeted_on_the_host_where_llama_cpp_keeps_them():
    """Gemma 3n/4's per-layer token embedding is an input tensor: llama.cpp keeps it in RAM. On a GPU with
    room for the layers at Q8_0 but not for that table too, the plan still runs every layer on the GPU
    (budgeting the table against VRAM made it split the layers)."""
    from planner.estimate import RuntimeOptions, estimate
    from tests.conftest import gemma3n_twin
    m = gemma3n_twin(vocab=32768)
    m = m.model_copy(update={"tensors": [t.model_copy(update={"type": None}) if t.type == "F16" else t
                                         for t in m.tensors]})
    hw = load_target("rtx3060")
    need = estimate(m.with_types(ftype_tensor_types(m, "Q8_0")), hw,
                    RuntimeOptions(n_ctx=4096, n_gpu_layers=-1, flash_attn=True)).devices[0].memory.total_bytes
    gpu = hw.gpus[0].model_copy(update={"vram_total_bytes": int(need / 0.95) + 2**20, "vram_free_bytes": None})
    best = make_plan(m, hw.model_copy(update={"gpus": [gpu]}), PlanRequest(n_ctx=4096)).best
    assert best.placement == "gpu", best.why
    host = best.estimate.devices[-1].memory.weights_bytes
    ple = [t for t in m.tensors if t.name == "per_layer_token_embd.weight"][0]
    assert host >= ple.n_elements  # the table (at 8+ bits here) is in host memory


def test_speed_on_few_cpu_cores_budgets_decode_time_not_bytes(monkeypatch):
    # 2 AVX2 cores: the IQ kernels, not the memory, pace decode (a byte of IQ3 costs ~3x a byte of Q4_K), so the
    # capped mixes are also sized by time; with bytes alone the fastest mix keeps IQ3 tensors and is slower
    from planner.optimize import search
    from planner.profile.hardware import CPU, RAM, HardwareProfile
    hw = HardwareProfile(cpu=CPU(model="test", cores=2, threads=2, flags=["avx", "avx2", "fma", "f16c"]),
                         ram=RAM(total_bytes=24 << 30, bandwidth_gbps=17.0,
                                 bandwidth_source="measured: single-thread 64 MiB copy test"))
    m = load_model("llama3.1-8b")
    timed = make_plan(m, hw, PlanRequest(goal="speed")).best
    monkeypatch.setattr(search, "cpu_time_per_byte", lambda hw, threads=None: {"Q4_K": 1.0})
    by_bytes = make_plan(m, hw, PlanRequest(goal="speed")).best
    assert any(t.startswith("IQ3") for t in by_bytes.types.values())
    assert not any(t.startswith(("IQ1", "IQ2", "IQ3")) for t in timed.types.values())
    assert timed.estimate.throughput.decode_tps > 1.1 * by_bytes.estimate.throughput.decode_tps
