"""What verify runs taught us about this machine, kept in the user's cache dir.

One JSON file: {fingerprint: [run, ...]} where a run holds measured/predicted ratios of decode
and prefill tok/s, the measured process overheads (host and each GPU) and how much of the CPU the
timing got. A profile with the same fingerprint gets a Calibration that a busy or odd run cannot
poison (robust_factor). The estimator stays pure; this module is the edge that reads and writes
the file (atomically, under a lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Iterator

from pydantic import BaseModel, Field

from planner.estimate.throughput import speed_model
from planner.fileio import write_cache
from planner.profile.hardware import Calibration, HardwareProfile
from planner.units import GiB

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
    parts = [hw.cpu.model, str(hw.cpu.cores), str(round(hw.ram.total_bytes / GiB))]
    parts += [f"{g.name}:{round(g.vram_total_bytes / GiB)}:{g.backend}" for g in hw.gpus]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _path() -> str:
    return os.path.join(cache_dir(), "calibration.json")


# How runs become a factor (docs/verify.md "Calibration"): a run timed while other programs were busy is
# not kept; an outlier (more than OUTLIER x off the others' median) is dropped; the median of the rest
# applies in full once AGREE runs lie within AGREE_BAND of it, and before that only its share
# n / (n + PRIOR_RUNS) in log space: one run of x0.17 moves plans by x0.55, not x0.17.
OUTLIER = 1.5
AGREE, AGREE_BAND = 3, 0.15
PRIOR_RUNS = 2


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """An exclusive lock on the calibration file's read-modify-write: concurrent runs all keep theirs."""
    with open(_path() + ".lock", "a") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock (Windows, some network file systems): best effort
            pass
        yield


def read_cache(path: str) -> dict:
    """A JSON object kept in the cache dir: {} when there is none or it is damaged (start over rather than fail
    a plan)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _read() -> dict:
    return read_cache(_path())


SPEED_KEYS = ("decode_ratio", "prefill_ratio")


class Recorded(BaseModel):
    speed_kept: bool = Field(..., description="its speed ratios count; False when it was timed on a busy machine")
    runs: int = Field(..., description="runs now kept for this machine")
    why: str | None = Field(None, description="why its speed was not kept")


def record(hw: HardwareProfile, run: dict) -> Recorded:
    """Keep one verify run for this machine. A run timed on a busy machine keeps its memory figures
    (other programs do not change what llama.cpp allocates) but not its speed ratios."""
    load = run.get("load") or {}
    busy = bool(load.get("busy"))
    if busy:
        run = {k: v for k, v in run.items() if k not in SPEED_KEYS}
    with _locked():
        d = _read()
        fp = fingerprint(hw)
        d[fp] = (d.get(fp, []) + [dict(run, time=time.time(), speed_model=speed_model())])[-KEEP:]
        write_cache(_path(), json.dumps(d, indent=1))
        return Recorded(speed_kept=not busy, runs=len(d[fp]), why=busy_text(load) if busy else None)


def busy_text(load: dict) -> str:
    return (f"the machine was busy while it was timed (other programs used {load.get('other_cores', 0):.2f} of "
            f"{load.get('cores', '?')} cores): its speed is not kept for calibration; verify again when it is quiet")


def reset(hw: HardwareProfile) -> int:
    """Forget this machine's runs; returns how many were dropped."""
    with _locked():
        d = _read()
        n = len(d.pop(fingerprint(hw), []))
        write_cache(_path(), json.dumps(d, indent=1))
        return n


def runs_of(hw: HardwareProfile) -> list[dict]:
    return list(_read().get(fingerprint(hw), []))


def robust_factor(ratios: list[float]) -> tuple[float, list[float]]:
    """(the factor applied, the ratios that count after dropping outliers): see the constants above."""
    vals = [r for r in ratios if isinstance(r, (int, float)) and math.isfinite(r) and r > 0]
    if not vals:
        return 1.0, []
    med = statistics.median(vals)
    if len(vals) >= 3:
        vals = [r for r in vals if 1 / OUTLIER <= r / med <= OUTLIER] or vals
        med = statistics.median(vals)
    agree = sum(1 for r in vals if abs(r / med - 1) <= AGREE_BAND)
    if agree >= AGREE:
        return med, vals
    return math.exp(math.log(med) * len(vals) / (len(vals) + PRIOR_RUNS)), vals


def load(hw: HardwareProfile) -> Calibration | None:
    runs = _read().get(fingerprint(hw), [])
    if not runs:
        return None
    # speed ratios hold for the model that predicted them: after an upgrade of the formulas or constants the
    # old runs teach nothing about speed (their memory overheads still hold)
    current = [r for r in runs if r.get("speed_model") == speed_model() and any(k in r for k in SPEED_KEYS)]
    decode, _ = robust_factor([r.get("decode_ratio") for r in current])
    prefill, _ = robust_factor([r.get("prefill_ratio") for r in current])

    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and r[key] > 0]
        return statistics.median(vals) if vals else None

    gpu_ov = []
    for i in range(len(hw.gpus)):
        vals = [r["gpu_overhead_bytes"][i] for r in runs
                if len(r.get("gpu_overhead_bytes") or []) > i and r["gpu_overhead_bytes"][i] is not None]
        gpu_ov.append(int(statistics.median(vals)) if vals else None)
    host = med("host_overhead_bytes")
    return Calibration(runs=len(current), kept=len(runs), decode_factor=decode, prefill_factor=prefill,
                       host_overhead_bytes=int(host) if host else None, gpu_overhead_bytes=gpu_ov,
                       source=_path())


def calibrated(hw: HardwareProfile) -> HardwareProfile:
    """The profile with this machine's calibration, when there is one."""
    cal = load(hw)
    return hw.model_copy(update={"calibration": cal}) if cal else hw
