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


def test_ram_bandwidth_is_measured():
    # how long it takes is bench/speed.py's business; here: a plausible figure
    assert 0.5 < detect.measure_ram_bandwidth(rounds=3).gbps < 2000


def test_cpu_flags_keep_only_the_ones_llama_cpp_cares_about(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu vme sse4_2 avx avx2 fma f16c "
                    "avx512f avx512_vnni amx_int8 made_up_flag\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    cpu = detect._cpu(str(info))
    assert cpu.model == "Some Xeon"
    assert cpu.flags == ["amx_int8", "avx", "avx2", "avx512_vnni", "avx512f", "f16c", "fma"]


def test_amd_gpu_from_sysfs(tmp_path):
    dev = tmp_path / "class" / "drm" / "card0" / "device"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x1002\n")
    (dev / "device").write_text("0x744c\n")
    (dev / "mem_info_vram_total").write_text(str(24 * 1024**3))
    (dev / "mem_info_vram_used").write_text(str(1024**3))
    notes = []
    gpus = detect._amd(notes, sysfs=str(tmp_path))
    assert len(gpus) == 1 and gpus[0].vendor == "amd" and gpus[0].backend == "rocm"
    assert gpus[0].vram_free_bytes == 23 * 1024**3
    assert notes  # an unknown device id says its bandwidth is assumed


def test_apple_unified_memory_share(monkeypatch):
    monkeypatch.setattr(detect.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(detect.platform, "machine", lambda: "arm64")
    vals = {"hw.memsize": str(128 * 1024**3), "machdep.cpu.brand_string": "Apple M3 Max", "iogpu.wired_limit_mb": "0"}
    monkeypatch.setattr(detect, "_sysctl", lambda k: vals.get(k))
    g = detect._apple([])[0]
    assert g.unified_memory and g.vram_total_bytes == 96 * 1024**3 and g.bandwidth_gbps == 400
    vals["iogpu.wired_limit_mb"] = str(120 * 1024)
    assert detect._apple([])[0].vram_total_bytes == 120 * 1024**3
