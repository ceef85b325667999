"""How much of the CPU a timed run got, and how much other programs took meanwhile.

A run timed while something else was busy reads slow (a verify on a busy 2-core box read 13-23
tok/s where a quiet one reads 176), and a calibration kept from it would make every later plan
slow. So each timed window records: its wall time, this process's CPU time (all its threads), and
the whole machine's busy CPU time (/proc/stat: every state but idle and iowait), from which the
other programs' share follows. Linux only; elsewhere the machine's share is unknown (None).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# A window is "busy" when other programs kept at least this many cores working on average during it,
# or this share of the cores (the larger): a quarter of a core is already a 12% slower decode on 2 cores.
BUSY_OTHER_CORES = 0.25
BUSY_OTHER_SHARE = 0.10


def _machine_busy_s() -> float | None:
    """Seconds of CPU time all cores spent busy since boot (/proc/stat's first line)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # user..steal: steal is time another VM took, which this one did not get either (guest time is in user)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    wall: float
    own_cpu: float
    machine_busy: float | None


def snapshot() -> Snapshot:
    return Snapshot(time.perf_counter(), time.process_time(), _machine_busy_s())


@dataclass(frozen=True)
class Window:
    """What one timed span got: wall seconds, this process's CPU seconds, other programs' CPU seconds."""
    wall_s: float
    own_cpu_s: float
    other_cpu_s: float | None

    def __add__(self, o: Window) -> Window:
        other = None if self.other_cpu_s is None or o.other_cpu_s is None else self.other_cpu_s + o.other_cpu_s
        return Window(self.wall_s + o.wall_s, self.own_cpu_s + o.own_cpu_s, other)


def since(s: Snapshot) -> Window:
    now = snapshot()
    own = now.own_cpu - s.own_cpu
    other = None
    if now.machine_busy is not None and s.machine_busy is not None:
        other = max(0.0, now.machine_busy - s.machine_busy - own)
    return Window(now.wall - s.wall, own, other)


def load_figures(w: Window, threads: int, cores: int | None = None) -> dict[str, float | bool | None]:
    """{cpu_share: CPU time / (wall x threads), other_cores: other programs' mean busy cores, busy: bool}."""
    cores = cores or os.cpu_count() or 1
    share = w.own_cpu_s / (w.wall_s * max(threads, 1)) if w.wall_s > 0 else None
    other = w.other_cpu_s / w.wall_s if (w.other_cpu_s is not None and w.wall_s > 0) else None
    busy = other is not None and other >= max(BUSY_OTHER_CORES, BUSY_OTHER_SHARE * cores)
    return {"cpu_share": None if share is None else round(share, 3),
            "other_cores": None if other is None else round(other, 3), "cores": cores, "busy": busy}
