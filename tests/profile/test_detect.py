import planner.profile.detect as detect
from planner.profile import detect_hardware


def test_detect_reports_this_machine_without_raising():
    p = detect_hardware(measure_bandwidth=False)
    assert p.cpu.cores >= 1 and p.cpu.threads >= p.cpu.cores
    assert p.ram.total_bytes > 1 << 30
    assert p.source == "detected"


def test_a_failing_gpu_probe_becomes_a_note_not_a_crash(monkeypatch):
    def boom(notes):
        raise RuntimeError("driver exploded")
    monkeypatch.setattr(detect, "_nvidia", boom)
    p = detect_hardware(measure_bandwidth=False)
    assert any("driver exploded" in n for n in p.notes)


def test_ram_bandwidth_is_measured_quickly():
    import time
    t = time.perf_counter()
    bw = detect.measure_ram_bandwidth_gbps(0.2)
    assert time.perf_counter() - t < 1.0
    assert 0.5 < bw < 2000


def test_cpu_flags_are_only_the_ones_llama_cpp_cares_about():
    p = detect_hardware(measure_bandwidth=False)
    assert set(p.cpu.flags) <= set(detect._FLAGS)
