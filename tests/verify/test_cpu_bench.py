"""The CPU self-benchmark: its fit recovers known constants from timings made with them, and on this machine it
runs llama.cpp, is kept per boot and feeds the estimate."""

from __future__ import annotations

import pytest

from planner.estimate.constants import cpu_kernels
from planner.estimate.estimate import cpu_facts
from planner.verify import cpu_bench as cb


def _timings(rate: dict[str, float], t_node: float, gflops: float, t_pp: float, cores: int = 2,
             row_s: float = 0.0) -> dict:
    """What measure() would return on a CPU with these true constants (no noise); row_s: a prompt's cost per
    output row of a matrix product."""
    def run(spec, ty: str, cached: bool = False) -> dict:
        f = cpu_facts(spec, cb._box(), cb.OPTS)
        # the nodes twin's 7 MB stay in the caches: its decode is its nodes (the fit's premise)
        tg = (0 if cached else f.read_types.get(ty, 0) / (rate[ty] * 1e9)) + f.nodes * t_node
        pp = 2 * f.matmul_types.get((ty, False), 0) / (gflops * 1e9) + f.nodes * t_pp \
            + f.matmul_rows.get((ty, False), 0) * row_s
        one = {"pp_s": [pp * 64] * 3, "tg_s": [tg * 16] * 3, "load": {"busy": False}}
        return {"pp": 64, "tg": 16, "runs": {str(cores): one, "1": one}}
    return {"cores": cores, "copy_gbps": 20.0, "nodes": run(cb.twin_spec("nodes"), "Q4_K", cached=True),
            "again": run(cb.twin_spec("bytes", "Q4_K"), "Q4_K"),
            "nodes_again": run(cb.twin_spec("nodes"), "Q4_K", cached=True),
            "narrow": {ty: run(cb.twin_spec("narrow", ty), ty) for ty in rate},
            "bytes": {ty: run(cb.twin_spec("bytes", ty), ty) for ty in rate}}


@pytest.mark.parametrize("row_s", [0.0, 6e-9])
def test_fit_recovers_the_constants_it_was_timed_with(row_s):
    """With and without a prompt's cost per output row: the narrow twins (4.5x the rows a weight) separate it from
    the rate per weight, and a narrow model's prompt carries it."""
    rate = {"Q4_K": 18.0, "Q6_K": 24.0, "Q8_0": 25.0, "Q4_0": 16.0, "Q4_1": 11.0}
    m = _timings(rate, t_node=1.5e-6, gflops=150.0, t_pp=0.4e-6, row_s=row_s)
    s = cb.fit(m, cb._box())
    assert s.prefill_node_us == pytest.approx(0.4, rel=0.02)
    assert s.prefill_row_ns["Q4_1"] == pytest.approx(row_s * 1e9, abs=0.01)
    assert s.decode_node_us == pytest.approx(1.5, rel=0.1)
    assert s.memory_gbps == pytest.approx(25.0, rel=0.01)
    ref = cpu_kernels().types
    assert s.decode_type_scale["Q4_1"] == pytest.approx(11.0 / 2 / ref["Q4_1"].decode_gbps_per_core, rel=0.1)
    assert s.prefill_scale == pytest.approx(150.0 / 2 / ref["Q4_K"].prefill_gflops_per_core, rel=0.15)


def test_a_machine_that_moves_while_timed_says_so():
    """The first twin is timed again at the end: a VM whose neighbours change its speed shows there (its own load
    figures do not), and the profile and the plans say how far it moved."""
    rate = {"Q4_K": 18.0, "Q6_K": 24.0, "Q8_0": 25.0, "Q4_0": 16.0, "Q4_1": 11.0}
    m = _timings(rate, t_node=1.5e-6, gflops=150.0, t_pp=0.4e-6)
    assert cb.fit(m, cb._box()).drift == pytest.approx(0.0, abs=1e-9)
    slow = _timings({**rate, "Q4_K": 18.0 / 1.3}, t_node=1.5e-6, gflops=150.0, t_pp=0.4e-6)["again"]
    s = cb.fit(m | {"again": slow}, cb._box())
    assert s.drift > 0.2 and "moved" in s.source and "Q4_K twin" in s.source
    from planner.views import profile_text
    assert "speed moved" in profile_text(cb._box().model_copy(update={"cpu_speed": s}))
    # the thread barriers move on their own: the nodes twin's second pass shows it, and its cost per node is the
    # median over both passes
    barriers = _timings(rate, t_node=3.0e-6, gflops=150.0, t_pp=0.4e-6)["nodes_again"]
    s = cb.fit(m | {"nodes_again": barriers}, cb._box())
    assert s.drift > 0.5 and "nodes twin" in s.source
    assert 1.5 < s.decode_node_us < 3.0
    # a prompt's cost per row is a difference of two twins: not read from a run that moved
    rows = _timings(rate, t_node=1.5e-6, gflops=150.0, t_pp=0.4e-6, row_s=6e-9)
    assert cb.fit(rows, cb._box()).prefill_row_ns["Q4_1"] > 5
    s = cb.fit(rows | {"again": slow}, cb._box())
    assert set(s.prefill_row_ns.values()) == {0.0} and "cost per row not read" in s.source


def test_off_switch_and_missing_llama_cpp_leave_the_copy_test(monkeypatch):
    from planner.profile.detect import detect_hardware
    monkeypatch.setenv("PLANNER_SELF_BENCH", "0")
    hw = cb.measured(detect_hardware(measure_bandwidth=False))
    assert hw.cpu_speed is None and any("pip install llama-cpp-python" in n for n in hw.notes)


@pytest.mark.llama
def test_self_benchmark_runs_llama_cpp_once_per_boot_and_feeds_the_estimate(smol_path, monkeypatch):
    from planner.estimate import RuntimeOptions, estimate
    from planner.model import load_gguf
    from planner.profile.detect import detect_hardware
    monkeypatch.setenv("PLANNER_SELF_BENCH", "1")
    base = detect_hardware()
    hw = cb.measured(base, force=True)
    s = hw.cpu_speed
    assert s and s.threads == base.cpu.cores and s.memory_gbps > 1 and s.decode_node_us > 0
    assert set(cb.TYPES) <= set(s.decode_type_scale)  # timed, and the untimed ones their family's
    calls = []
    monkeypatch.setattr(cb, "measure", lambda hw: calls.append(1))
    assert cb.measured(base).cpu_speed == s and not calls  # this boot's result, not measured again
    opts = RuntimeOptions(n_ctx=1024, n_gpu_layers=0)
    spec = load_gguf(smol_path)
    assert estimate(spec, hw, opts).throughput.decode_tps != estimate(spec, base, opts).throughput.decode_tps


def test_the_cli_says_it_is_measuring_while_it_does(monkeypatch, capsys):
    """The first plan of a boot waits for the self-benchmark: the CLI says so on stderr, stdout stays the answer."""
    from planner.cli.main import main
    rate = {"Q4_K": 18.0, "Q6_K": 24.0, "Q8_0": 25.0, "Q4_0": 16.0, "Q4_1": 11.0}
    monkeypatch.setattr(cb, "available", lambda: True)
    monkeypatch.setattr(cb, "cached", lambda hw: None)
    monkeypatch.setattr(cb, "measure", lambda hw: _timings(rate, t_node=1.5e-6, gflops=150.0, t_pp=0.4e-6))
    assert main(["profile"]) == 0
    out, err = capsys.readouterr()
    assert "measuring this CPU with llama.cpp" in err and "measuring" not in out
    assert "CPU measured by llama.cpp" in out
