"""Calibration that a busy or odd run cannot poison (planner/verify/calibration.py, load.py)."""

from __future__ import annotations

import math
import multiprocessing
import subprocess
import sys
import time

import pytest

from planner.profile.targets import resolve_target
from planner.verify import calibration
from planner.profile.load import Window, load_figures, since, snapshot


@pytest.fixture
def hw(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    return resolve_target("laptop-16gb")


QUIET = {"cpu_share": 0.97, "other_cores": 0.02, "cores": 2, "busy": False}
BUSY = {"cpu_share": 0.41, "other_cores": 1.6, "cores": 2, "busy": True}


def test_a_run_timed_on_a_busy_machine_keeps_its_memory_but_not_its_speed(hw):
    rec = calibration.record(hw, {"decode_ratio": 0.17, "prefill_ratio": 0.2, "host_overhead_bytes": 7 << 20,
                                  "load": BUSY})
    assert not rec.speed_kept and rec.runs == 1 and "busy" in rec.why and "1.60 of 2 cores" in rec.why
    cal = calibration.load(hw)  # its speed applies to no later plan; what llama.cpp allocated does
    assert (cal.runs, cal.kept, cal.decode_factor, cal.prefill_factor) == (0, 1, 1.0, 1.0)
    assert cal.host_overhead_bytes == 7 << 20
    assert calibration.record(hw, {"decode_ratio": 0.9, "load": QUIET}).speed_kept
    assert calibration.load(hw).runs == 1


def test_one_odd_run_moves_plans_only_part_of_the_way(hw):
    calibration.record(hw, {"decode_ratio": 0.17, "load": QUIET})
    cal = calibration.load(hw)
    assert cal.decode_factor == pytest.approx(0.17 ** (1 / 3))  # x0.55, not x0.17
    assert cal.prefill_factor == 1.0


def test_agreeing_runs_apply_in_full_and_an_outlier_is_dropped(hw):
    for r in (0.80, 0.82, 0.78, 0.81, 0.17):
        calibration.record(hw, {"decode_ratio": r, "load": QUIET})
    cal = calibration.load(hw)
    assert cal.runs == 5 and cal.decode_factor == pytest.approx(0.805)  # the median of the four that agree
    factor, counted = calibration.robust_factor([0.80, 0.82, 0.78, 0.81, 0.17])
    assert 0.17 not in counted and len(counted) == 4


def test_two_disagreeing_runs_stay_shrunk(hw):
    factor, counted = calibration.robust_factor([0.5, 1.0])
    assert len(counted) == 2 and factor == pytest.approx(math.exp(math.log(0.75) * 2 / 4))


def _record(path: str, i: int) -> None:
    import os
    os.environ["PLANNER_CACHE_DIR"] = path
    calibration.record(resolve_target("laptop-16gb"), {"decode_ratio": 1.0 + i / 100, "load": QUIET})


def test_concurrent_recordings_all_keep_theirs(hw, tmp_path):
    ctx = multiprocessing.get_context("fork")  # separate processes (the lock is per open file), started fast
    procs = [ctx.Process(target=_record, args=(str(tmp_path), i)) for i in range(calibration.KEEP)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(calibration.runs_of(hw)) == calibration.KEEP


def test_reset_forgets_this_machine_only(hw):
    calibration.record(hw, {"decode_ratio": 0.8, "load": QUIET})
    other = resolve_target("rtx4090")
    calibration.record(other, {"decode_ratio": 0.9, "load": QUIET})
    assert calibration.reset(hw) == 1
    assert calibration.load(hw) is None and calibration.load(other) is not None


def test_the_busy_rule_counts_other_programs_cores():
    w = Window(wall_s=2.0, own_cpu_s=3.8, other_cpu_s=0.1)
    assert load_figures(w, threads=2, cores=2) == {"cpu_share": 0.95, "other_cores": 0.05, "cores": 2, "busy": False}
    assert load_figures(Window(2.0, 1.0, 2.4), threads=2, cores=2)["busy"]


def test_a_real_cpu_hog_beside_the_window_reads_busy():
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        time.sleep(0.5)
        s = snapshot()
        time.sleep(1.5)  # this process idles: the machine's busy time is the hog's
        w = since(s)
    finally:
        hog.kill()
        hog.wait()
    f = load_figures(w, threads=1)
    assert f["other_cores"] is not None and f["other_cores"] >= 0.6 and f["busy"], f


def test_plan_calibration_shows_and_resets(tmp_path, monkeypatch, capsys):
    from planner.cli.main import main
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    here = resolve_target("auto", measure_bandwidth=False)
    assert main(["calibration"]) == 0 and "no verify runs" in capsys.readouterr().out
    calibration.record(here, {"decode_ratio": 0.8, "prefill_ratio": 1.2, "load": QUIET, "model": "m"})
    assert main(["calibration"]) == 0
    out = capsys.readouterr().out
    assert "1 verify run(s) kept" in out and "decode   x0.928" in out
    assert main(["calibration", "--reset"]) == 0 and "forgot 1" in capsys.readouterr().out
    assert calibration.load(here) is None
