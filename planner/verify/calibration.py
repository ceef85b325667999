"""What verify runs taught us about this machine, kept in the user's cache dir.

One JSON file: {fingerprint: [run, ...]} where a run holds measured/predicted ratios of decode
and prefill tok/s and the measured process overheads (host and each GPU). A profile with the
same fingerprint gets a Calibration: the median of its last runs. The estimator stays pure;
this module is the edge that reads and writes the file (atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time

from planner.estimate.throughput import speed_model
from planner.fileio import write_cache
from planner.profile.hardware import Calibration, HardwareProfile

KEEP = 20  # runs kept per machine


def cache_dir() -> str:
    """$PLANNER_CACHE_DIR, else $XDG_CACHE_HOME/planner, else ~/.cache/planner."""
    d = os.environ.get("PLANNER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "planner")
    os.makedirs(d, exist_ok=True)
    return d


def file_key(path: str) -> str:
    """A file's identity for cache keys: its path, size and mtime (a changed file is a new key)."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{int(st.st_mtime)}"


def cached_path(kind: str, source: str, suffix: str, *extra: object) -> str:
    """Where a result derived from the file `source` is cached: keyed by file_key(source) plus
    whatever else the result depends on."""
    key = "|".join(str(x) for x in (file_key(source), *extra))
    d = os.path.join(cache_dir(), kind)
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, hashlib.sha256(key.encode()).hexdigest()[:16] + suffix)


def fingerprint(hw: HardwareProfile) -> str:
    """CPU model and cores, RAM size, each GPU's name, VRAM and backend: what the ratios depend on."""
    parts = [hw.cpu.model, str(hw.cpu.cores), str(round(hw.ram.total_bytes / 2**30))]
    parts += [f"{g.name}:{round(g.vram_total_bytes / 2**30)}:{g.backend}" for g in hw.gpus]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _path() -> str:
    return os.path.join(cache_dir(), "calibration.json")


def _read() -> dict:
    try:
        with open(_path(), encoding="utf-8") as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}  # no file or a damaged one: start over rather than fail a plan


def record(hw: HardwareProfile, run: dict) -> int:
    """Append one verify run's ratios; returns the number of runs now kept for this machine."""
    d = _read()
    fp = fingerprint(hw)
    runs = d.get(fp, []) + [dict(run, time=time.time(), speed_model=speed_model())]
    d[fp] = runs[-KEEP:]
    write_cache(_path(), json.dumps(d, indent=1))
    return len(d[fp])


def load(hw: HardwareProfile) -> Calibration | None:
    runs = _read().get(fingerprint(hw), [])
    if not runs:
        return None

    def med(key: str, default, of=runs):
        vals = [r[key] for r in of if isinstance(r.get(key), (int, float)) and r[key] > 0]
        return statistics.median(vals) if vals else default

    # speed ratios hold for the model that predicted them: after an upgrade of the formulas or constants the
    # old runs teach nothing about speed (their memory overheads still hold)
    current = [r for r in runs if r.get("speed_model") == speed_model()]

    n_gpu = len(hw.gpus)
    gpu_ov = []
    for i in range(n_gpu):
        vals = [r["gpu_overhead_bytes"][i] for r in runs
                if len(r.get("gpu_overhead_bytes") or []) > i and r["gpu_overhead_bytes"][i] is not None]
        gpu_ov.append(int(statistics.median(vals)) if vals else None)
    host = med("host_overhead_bytes", None)
    return Calibration(runs=len(current), kept=len(runs), decode_factor=med("decode_ratio", 1.0, current),
                       prefill_factor=med("prefill_ratio", 1.0, current),
                       host_overhead_bytes=int(host) if host else None, gpu_overhead_bytes=gpu_ov,
                       source=_path())


def calibrated(hw: HardwareProfile) -> HardwareProfile:
    """The profile with this machine's calibration, when there is one."""
    cal = load(hw)
    return hw.model_copy(update={"calibration": cal}) if cal else hw
