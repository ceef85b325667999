"""Throughput laws: CPU decode and prefill by ggml type (planner/data/cpu_kernels.yaml), cores and memory."""

from __future__ import annotations

import pytest

from planner.estimate import RuntimeOptions, estimate
from planner.estimate.constants import backend, cpu_kernels
from planner.estimate.memory import matmul_types, memory_breakdown
from planner.estimate.placement import CPU
from planner.model import load_model
from planner.profile.hardware import CPU as CPUSpec
from planner.profile.hardware import RAM, HardwareProfile

OPTS = RuntimeOptions(n_ctx=2048)


def box(cores: int, copy_gbps: float, flags=("avx", "avx2", "fma", "f16c")) -> HardwareProfile:
    return HardwareProfile(cpu=CPUSpec(model="test", cores=cores, threads=cores, flags=list(flags)),
                           ram=RAM(total_bytes=256 << 30, bandwidth_gbps=copy_gbps,
                                   bandwidth_source="measured: single-thread 64 MiB copy test"))


def typed(model, ty: str):
    return model.with_types({t.name: ty for t in model.tensors if len(t.shape) >= 2})


@pytest.fixture(scope="module")
def llama8b():
    return load_model("llama3.1-8b")


def read_rate(model, hw, opts=OPTS) -> float:
    """Weight bytes a decoded token reads x tok/s: the rate the estimator says the box reads them at."""
    e = estimate(model, hw, opts)
    return sum(memory_breakdown(model, hw, opts).read_per_token.values()) * e.throughput.decode_tps


def test_read_bytes_by_type_add_up_to_the_weights_read(llama8b):
    m = llama8b.with_types({"output.weight": "Q6_K"} | {t.name: "Q4_K" for t in llama8b.tensors
                                                         if t.layer is not None and len(t.shape) == 2})
    b = memory_breakdown(m, box(2, 17.0), OPTS)
    by_type = b.read_types[CPU]
    assert set(by_type) == {"Q4_K", "Q6_K", "F32"}  # the norms stay F32
    assert sum(by_type.values()) == b.read_per_token[CPU]


def test_prefill_matmuls_leave_out_the_embedding_lookup_and_the_output_matrix(llama8b):
    # the embedding is only looked up, and the output matrix multiplies only the prompt's last token
    m = typed(llama8b, "Q8_0")
    layers = sum(t.n_elements for t in m.tensors if t.layer is not None and len(t.shape) == 2)
    assert matmul_types(m) == {("Q8_0", False): layers}
    assert m.n_matmul_params == pytest.approx(layers, rel=1e-4)  # the norms' 1-D weights aside
    assert m.n_params - layers > 0.12 * layers  # 2 x 525M of 7.5B: enough to matter


def test_matmul_types_count_the_used_experts_apart():
    m = load_model("qwen3-30b-a3b")
    m = typed(m, "Q4_K")
    mm = matmul_types(m)
    assert set(mm) == {("Q4_K", False), ("Q4_K", True)}
    exps = sum(t.n_elements for t in m.tensors if "_exps" in t.name)
    assert mm["Q4_K", True] == pytest.approx(exps * 8 / 128, rel=1e-6)  # 8 of 128 experts per token


def test_slow_kernels_read_below_memory_speed_on_few_cores(llama8b):
    # on 2 AVX2 cores the 1-bit IQ1_S kernel, not the memory, sets the pace; Q8_0's is far faster per byte
    hw = box(2, 17.0)
    assert read_rate(typed(llama8b, "IQ1_S"), hw) < 0.5 * read_rate(typed(llama8b, "Q8_0"), hw)


def test_a_kernel_bound_type_is_named_in_the_notes(llama8b):
    notes = " ".join(estimate(typed(llama8b, "IQ2_XXS"), box(2, 17.0), OPTS).throughput.notes)
    assert "the kernel, not the memory, paces IQ2_XXS (3.1x Q4_K's time per byte)" in notes
    assert "paces" not in " ".join(estimate(typed(llama8b, "Q4_K"), box(2, 17.0), OPTS).throughput.notes)
    assert "paces" not in " ".join(estimate(typed(llama8b, "IQ2_XXS"), box(64, 40.0), OPTS).throughput.notes)


def test_many_cores_make_every_type_memory_bound(llama8b):
    # 64 cores outrun 40 GB/s of memory for every kernel: a token's time differs between types only by the
    # bytes they read at the memory's rate (the same graph, the same node cost)
    hw = box(64, 40.0)
    mem = 40e9 * backend("cpu").decode_bw_efficiency_measured
    secs, reads = {}, {}
    for ty in ("IQ1_S", "Q4_K", "Q8_0"):
        m = typed(llama8b, ty)
        secs[ty] = 1 / estimate(m, hw, OPTS).throughput.decode_tps
        reads[ty] = sum(memory_breakdown(m, hw, OPTS).read_per_token.values())
    for ty in ("IQ1_S", "Q4_K"):
        assert secs["Q8_0"] - secs[ty] == pytest.approx((reads["Q8_0"] - reads[ty]) / mem, rel=0.01)


def test_kernel_rates_cover_llama_quantize_types():
    types = cpu_kernels().types
    for ty in ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0", "IQ4_XS", "IQ4_NL", "Q3_K", "Q2_K",
               "IQ3_S", "IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "MXFP4"):
        assert types[ty].decode_gbps_per_core > 0 and types[ty].prefill_gflops_per_core > 0, ty


def test_threads_beyond_the_cores_add_nothing_and_fewer_are_slower(llama8b):
    m, hw = typed(llama8b, "Q4_K"), box(4, 17.0)
    tps = {t: estimate(m, hw, RuntimeOptions(n_ctx=2048, threads=t)).throughput for t in (1, 4, 8)}
    assert tps[8].decode_tps == tps[4].decode_tps and tps[8].prefill_tps == tps[4].prefill_tps
    assert tps[1].decode_tps < tps[4].decode_tps and tps[1].prefill_tps < tps[4].prefill_tps / 3


def test_prefill_of_a_mix_lies_between_its_types(llama8b):
    hw = box(2, 17.0)
    half = {t.name: "Q6_K" for t in llama8b.tensors if t.layer is not None and t.layer % 2 and len(t.shape) == 2}
    pp = {name: estimate(m, hw, OPTS).throughput.prefill_tps
          for name, m in (("Q4_0", typed(llama8b, "Q4_0")), ("Q6_K", typed(llama8b, "Q6_K")),
                          ("mix", typed(llama8b, "Q4_0").with_types(half)))}
    assert min(pp["Q4_0"], pp["Q6_K"]) < pp["mix"] < max(pp["Q4_0"], pp["Q6_K"])


def test_partial_offload_follows_a_public_ngl_sweep():
    """A public -ngl sweep (Qwen2.5-Coder-14B Q4_K_M, RTX 5060 Ti on PCIe 3.0 x8, i7-8700 with DDR4-2400: held out,
    bench/data/public-offload.jsonl) from the spec sheets alone: every step within 15%, and the steep end (the last
    8 layers and the output matrix leaving the host triple the rate) where the run has it."""
    from bench.accuracy import public_offload
    runs = public_offload()
    assert len(runs) >= 7
    for r, e in runs:
        assert e.throughput.decode_tps == pytest.approx(r["tg_tps"], rel=0.15), r["ngl"]
    by = {r["ngl"]: e.throughput.decode_tps for r, e in runs}
    assert by[99] / by[40] > 3 and by[40] / by[32] > 1.4


def test_a_measured_cost_per_row_slows_a_narrow_models_prompt():
    """The self-benchmark's prompt cost per output row (per type): a prompt token pays its products' rows x it
    (SmolLM2: 30 layers of 5,184 rows), and nothing of it where the type's cost was not measured."""
    from planner.estimate.memory import matmul_rows
    from planner.profile.hardware import CPUSpeed
    m = typed(load_model("smollm2-135m"), "Q4_1")
    hw = box(2, 20.0)
    speed = CPUSpeed(threads=2, memory_gbps=25.0, kernel_scale=1.0, decode_node_us=1.0, prefill_scale=1.0,
                     prefill_node_us=0.5)
    assert matmul_rows(m) == {("Q4_1", False): 30 * (576 + 192 + 192 + 576 + 1536 + 1536 + 576)}

    def t_pp(row_ns):
        s = speed.model_copy(update={"prefill_row_ns": row_ns})
        return 1 / estimate(m, hw.model_copy(update={"cpu_speed": s}), OPTS).throughput.prefill_tps
    assert t_pp({"Q4_1": 10.0}) - t_pp({}) == pytest.approx(155520 * 10e-9, rel=0.02)
    assert t_pp({"Q4_K": 10.0}) == pytest.approx(t_pp({}), rel=1e-3)
