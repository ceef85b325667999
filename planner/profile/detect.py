"""Detect this machine. Every probe is isolated: a missing library, a driver error or no GPU
gives a profile with a note, never a crash."""

from __future__ import annotations

import glob
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import psutil

from planner.profile.gpu_specs import lookup_gpu_spec
from planner.profile.hardware import CPU, GPU, RAM, HardwareProfile
from planner.units import GiB, MiB

T = TypeVar("T")

# ISA features that change which llama.cpp kernels run (ggml-cpu's feature list).
_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
          "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve", "dotprod",
          "i8mm", "bf16", "sme")


def _probe(notes: list[str], what: str, fn: Callable[[], T], default: T) -> T:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a probe must never take the profile down
        notes.append(f"{what}: {type(exc).__name__}: {exc}")
        return default


def _cpu(cpuinfo: str = "/proc/cpuinfo") -> CPU:
    name, flags = platform.processor() or "unknown CPU", set()
    if os.path.exists(cpuinfo):
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and value.strip():
                    name = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    elif platform.system() == "Darwin":
        name = _sysctl("machdep.cpu.brand_string") or name
        if platform.machine() == "arm64":
            flags.update(("neon", "asimd", "dotprod"))
    return CPU(
        model=name,
        cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        threads=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        arch=platform.machine() or "unknown",
        flags=sorted(f for f in flags if f in _FLAGS),
    )


def _sysctl(key: str) -> str | None:
    out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=2)
    return out.stdout.strip() or None if out.returncode == 0 else None


class Bandwidth(NamedTuple):
    gbps: float
    source: str
    busy: bool


def _copy_round(bufs: list[tuple[object, object]]) -> float:
    """One round: every thread copies its own 64 MiB buffer at once (numpy releases the GIL in copyto);
    GB/s over all of them. A copy reads and writes each byte, so bytes moved = 2 x size."""
    import numpy as np

    start = threading.Barrier(len(bufs) + 1)
    done: list[float] = []

    def work(src, dst) -> None:
        start.wait()
        np.copyto(dst, src)
        done.append(time.perf_counter())

    threads = [threading.Thread(target=work, args=b) for b in bufs]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(2 * d.nbytes for _, d in bufs) / (max(done) - t0) / 1e9


def measure_ram_bandwidth(threads: int | None = None, rounds: int = 7) -> Bandwidth:
    """A copy test on every physical core at once (one 64 MiB buffer each, past the caches), repeated: the
    median round, so one round that lost its cores to another program does not set it. It says when other
    programs kept the cores busy meanwhile (/proc/stat), which reads low: plan again when the box is quiet."""
    import numpy as np

    from planner.profile.load import load_figures, since, snapshot

    n = max(1, threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    bufs = [(np.ones(64 << 20, dtype=np.uint8), np.empty(64 << 20, dtype=np.uint8)) for _ in range(n)]
    for src, dst in bufs:
        np.copyto(dst, src)  # fault the pages in
    s = snapshot()
    gbps = statistics.median(_copy_round(bufs) for _ in range(rounds))
    busy = bool(load_figures(since(s), n).get("busy"))
    src = f"measured: {n}-thread 64 MiB copy test, median of {rounds}" + (", the machine was busy" if busy else "")
    return Bandwidth(round(gbps, 1), src, busy)


def _ram(notes: list[str]) -> RAM:
    vm = psutil.virtual_memory()
    bw = _probe(notes, "RAM bandwidth test", measure_ram_bandwidth, Bandwidth(0.0, "", False))
    if bw.busy:
        notes.append("other programs were busy while the RAM bandwidth was measured: it may read low")
    if bw.gbps <= 0:
        return RAM(total_bytes=vm.total, available_bytes=vm.available, bandwidth_gbps=20.0,
                   bandwidth_source="fallback: one DDR4 channel (no measurement)")
    return RAM(total_bytes=vm.total, available_bytes=vm.available, bandwidth_gbps=bw.gbps,
               bandwidth_source=bw.source)


def _nvidia(notes: list[str]) -> list[GPU]:
    import pynvml

    pynvml.nvmlInit()
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            spec = lookup_gpu_spec(name)
            bw = _probe(notes, f"GPU {i} bandwidth", lambda h=h: _nvml_bandwidth(pynvml, h), 0.0)
            if bw <= 0 and spec:
                bw = spec.bandwidth_gbps
            cc = _probe(notes, f"GPU {i} compute capability",
                        lambda h=h: "{}.{}".format(*pynvml.nvmlDeviceGetCudaComputeCapability(h)), None)
            gen = _probe(notes, f"GPU {i} PCIe", lambda h=h: pynvml.nvmlDeviceGetMaxPcieLinkGeneration(h), None)
            width = _probe(notes, f"GPU {i} PCIe", lambda h=h: pynvml.nvmlDeviceGetMaxPcieLinkWidth(h), None)
            gpus.append(GPU(index=i, vendor="nvidia", name=name, vram_total_bytes=mem.total,
                            vram_free_bytes=mem.free, bandwidth_gbps=bw or 100.0,
                            fp16_tflops=spec.fp16_tflops if spec else None,
                            compute_capability=cc, pcie_gen=gen, pcie_width=width,
                            backend="cuda"))
    finally:
        pynvml.nvmlShutdown()
    return gpus


def _nvml_bandwidth(pynvml, handle) -> float:
    """Bus width (bits) x max memory clock (MHz) x 2 transfers per clock (DDR/HBM)."""
    bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
    clock_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    return round(bus_bits / 8 * clock_mhz * 1e6 * 2 / 1e9, 1)


def _amd(notes: list[str], sysfs: str = "/sys") -> list[GPU]:
    gpus = []
    for card in sorted(glob.glob(os.path.join(sysfs, "class/drm/card[0-9]*/device"))):
        vendor_file = os.path.join(card, "vendor")
        total_file = os.path.join(card, "mem_info_vram_total")
        if not (os.path.exists(vendor_file) and os.path.exists(total_file)):
            continue
        if open(vendor_file).read().strip() != "0x1002":
            continue
        total = int(open(total_file).read())
        used = int(open(os.path.join(card, "mem_info_vram_used")).read()) if os.path.exists(
            os.path.join(card, "mem_info_vram_used")) else 0
        name = "AMD GPU " + open(os.path.join(card, "device")).read().strip()
        spec = lookup_gpu_spec(name)
        gpus.append(GPU(index=len(gpus), vendor="amd", name=spec.name if spec else name,
                        vram_total_bytes=total, vram_free_bytes=total - used,
                        bandwidth_gbps=spec.bandwidth_gbps if spec else 200.0,
                        fp16_tflops=spec.fp16_tflops if spec else None, backend="rocm"))
        if not spec:
            notes.append(f"{name}: not in the GPU spec table, bandwidth assumed 200 GB/s")
    return gpus


def _apple(notes: list[str]) -> list[GPU]:
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return []
    memsize = int(_sysctl("hw.memsize") or 0)
    chip = _sysctl("machdep.cpu.brand_string") or "Apple Silicon"
    wired = int(_sysctl("iogpu.wired_limit_mb") or 0)
    # Metal's recommendedMaxWorkingSetSize defaults to ~75% of RAM on >36 GB machines and
    # ~66% below; iogpu.wired_limit_mb (when non-zero) replaces it.
    usable = wired * MiB if wired else int(memsize * (0.75 if memsize > 36 * GiB else 0.66))
    spec = lookup_gpu_spec(chip)
    if not spec:
        notes.append(f"{chip}: not in the GPU spec table, bandwidth assumed 100 GB/s")
    return [GPU(vendor="apple", name=chip, vram_total_bytes=usable, vram_free_bytes=usable,
                bandwidth_gbps=spec.bandwidth_gbps if spec else 100.0,
                fp16_tflops=spec.fp16_tflops if spec else None, unified_memory=True,
                backend="metal")]


def detect_hardware(measure_bandwidth: bool = True) -> HardwareProfile:
    """Profile this machine. Never raises: what a probe cannot tell becomes a note."""
    notes: list[str] = []
    cpu = _probe(notes, "CPU", _cpu, CPU())
    if measure_bandwidth:
        ram = _ram(notes)
    else:
        vm = psutil.virtual_memory()
        ram = RAM(total_bytes=vm.total, available_bytes=vm.available, bandwidth_gbps=20.0,
                  bandwidth_source="not measured")
    gpus: list[GPU] = []
    gpus += _probe(notes, "NVIDIA (NVML)", lambda: _nvidia(notes), [])
    gpus += _probe(notes, "AMD (sysfs)", lambda: _amd(notes), [])
    gpus += _probe(notes, "Apple (sysctl)", lambda: _apple(notes), [])
    if not gpus:
        notes.append("no GPU found: planning for CPU only")
    os_name = {"Darwin": "macos", "Windows": "windows"}.get(platform.system(), "linux")
    return HardwareProfile(name=platform.node() or "this machine", source="detected", os=os_name,
                           cpu=cpu, ram=ram, gpus=gpus, notes=notes)
