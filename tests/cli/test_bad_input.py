"""Every user mistake of issue 22: exit 2 and one line that says what is wrong and what to do; nothing lost.
Their time and memory are measured by bench/bad_input.py, not here."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from planner.cli.main import main
from tests.gguf_raw import F32, LLAMA_KV, STRING, auto, data_size, gguf_bytes, llama_tensors

T = llama_tensors()
DATA = b"\0" * data_size(T)


def _kv(**over):
    return [(k, *auto(v)) for k, v in {**LLAMA_KV, **over}.items()]


GGUFS = {
    "align-string": (_kv() + [("general.alignment", STRING, "x")], T),
    "align-nan": (_kv() + [("general.alignment", F32, float("nan"))], T),
    "arch-int": (_kv(**{"general.architecture": 7}), T),
    "blocks-string": (_kv(**{"llama.block_count": "two"}), T),
    "blocks-huge": (_kv(**{"llama.block_count": 10**7}), T),
    "blk-x": (_kv(), [(n.replace("blk.0.", "blk.x."), s, t, o) for n, s, t, o in T]),
    "unaligned": (_kv(), [(n, s, t, o + 3 if i == 4 else o) for i, (n, s, t, o) in enumerate(T)]),
    "impossible-offset": (_kv(), [(n, s, t, o + (1 << 60) if i == 4 else o) for i, (n, s, t, o) in enumerate(T)]),
}
YAMLS = {"cpu-5": "name: bad\ncpu: 5\n", "ram-nan": "name: bad\nram: {total_gib: .nan, bandwidth_gbps: 50}\n",
         "ram-string": "name: x\nram: {total_gib: 1e300, bandwidth_gbps: 50}\n",
         "gpus-not-list": "name: x\nram: {total_gib: 16, bandwidth_gbps: 50}\ngpus: rtx4090\n"}
M = ["--model", "llama3.1-8b", "--target", "rtx4090"]
OPTIONS = {
    "vram-nan": (M + ["--vram", "nan"], "--vram: expected a finite number"),
    "vram-inf": (M + ["--vram", "inf"], "--vram: expected a finite number"),
    "vram-negative": (M + ["--vram", "-1"], "--vram: expected more than 0"),
    "ram-nan": (M + ["--ram", "nan"], "--ram: expected a finite number"),
    "ot-regex": (M + ["-ot", "([=CPU"], "not a regular expression"),
    "ngl-negative": (M + ["--ngl", "-5"], "--ngl: expected 0 to"),
    "ts-nan": (["--model", "llama3.1-8b", "--target", "2x-rtx3090", "--tensor-split", "nan,1", "--emit",
                "llama-server"], "--tensor-split: takes a finite share"),
    "o-without-emit": (M + ["-o", "x.txt"], "-o writes the file --emit makes"),
    "gpus-million": (M + ["--gpus", "1000000"], "llama.cpp drives at most 16"),
    "ctx-zero": (M + ["--ctx", "0"], "--ctx: expected 1 to"),
    "parallel-too-many": (M + ["--parallel", "1000"], "LLAMA_MAX_SEQ"),
    "min-tps-nan": (M + ["--min-tps", "nan"], "--min-tps: expected a finite number"),
    "models-size-word": (["models", "--size", "big"], "--size: expected billions of parameters"),
    "models-size-reversed": (["models", "--size", "14-7"], "--size: expected 0 <= MIN <= MAX"),
    "models-month-13": (["models", "--released-after", "2025-13"], "--released-after: expected a month"),
    "recommend-use-unknown": (["recommend", "--target", "rtx4090", "--use", "poetry"], "--use: invalid choice"),
}


def _one_line(capsys, args, msg):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err, (code, err)


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_a_bad_option_is_one_line(capsys, case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, msg = OPTIONS[case]
    _one_line(capsys, args, msg)
    assert os.listdir(tmp_path) == []  # nothing written


@pytest.mark.parametrize("case", sorted(GGUFS))
def test_a_hostile_gguf_is_one_line(capsys, case, tmp_path):
    kv, tensors = GGUFS[case]
    p = tmp_path / f"{case}.gguf"
    p.write_bytes(gguf_bytes(kv, tensors, data=DATA))
    _one_line(capsys, ["--model", str(p), "--target", "rtx4090"], "corrupt")


@pytest.mark.parametrize("case", sorted(YAMLS))
def test_a_malformed_target_yaml_is_one_line(capsys, case, tmp_path):
    p = tmp_path / f"{case}.yaml"
    p.write_text(YAMLS[case])
    _one_line(capsys, ["--model", "llama3.1-8b", "--target", str(p)], "is malformed")


@pytest.mark.parametrize("make,what", [(lambda d: d, "is a directory"), (lambda d: _fifo(d), "is a FIFO"),
                                       (lambda d: "/dev/zero", "is a character device")])
def test_a_model_path_that_is_not_a_file_says_what_it_is(capsys, tmp_path, make, what):
    _one_line(capsys, ["--model", str(make(tmp_path))], what)


def _fifo(d):
    p = d / "pipe.gguf"
    os.mkfifo(p)
    return p


def test_a_header_only_download_plans_with_priors_and_says_so(smol_path, tmp_path, capsys):
    from planner.model.gguf_header import read_gguf_file
    head = read_gguf_file(smol_path).header_bytes
    part = tmp_path / "partial.gguf"
    with open(smol_path, "rb") as f:
        part.write_bytes(f.read(head))
    assert main(["--model", str(part), "--target", "rtx4090"]) == 0
    out = capsys.readouterr().out
    assert "holds the data of 0 of its 272 tensors" in out and "every tensor uses the priors" in out


@pytest.mark.llama
def test_a_truncated_download_measures_the_tensors_it_holds(smol_path, tmp_path, capsys):
    from planner.model.gguf_header import read_gguf_file
    h = read_gguf_file(smol_path)
    part = tmp_path / "partial.gguf"
    with open(smol_path, "rb") as f:
        part.write_bytes(f.read(h.header_bytes + h.tensors[40].offset))
    assert main(["--model", str(part), "--target", "rtx4090", "--json"]) == 0
    out = capsys.readouterr().out
    assert "holds the data of 40 of its 272 tensors" in out and "measured per-tensor errors" in out


def test_output_to_a_device_or_a_symlink_never_replaces_it(capsys, tmp_path):
    before = os.stat("/dev/full")
    _one_line(capsys, ["--model", "llama3.1-8b", "--emit", "yaml", "-o", "/dev/full", "--force"],
              "character device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode) and os.stat("/dev/full").st_rdev == before.st_rdev
    target = tmp_path / "real.yaml"
    target.write_text("mine")
    link = tmp_path / "plan.yaml"
    link.symlink_to(target)
    _one_line(capsys, ["--model", "llama3.1-8b", "--emit", "yaml", "-o", str(link)], "exists; add --force")
    assert main(["--model", "llama3.1-8b", "--emit", "yaml", "-o", str(link), "--force"]) == 0
    assert link.is_symlink() and "llama3.1-8b" in target.read_text()


def test_verify_output_needs_force(capsys, tmp_path):
    plan = tmp_path / "plan.yaml"
    assert main(["--model", "smollm2", "--target", "auto", "--emit", "yaml", "-o", str(plan)]) == 0
    out = tmp_path / "mine.gguf"
    out.write_bytes(b"the user's file")
    capsys.readouterr()
    _one_line(capsys, ["verify", str(plan), "--twin", "-o", str(out)], "exists; add --force")
    assert out.read_bytes() == b"the user's file"


@pytest.mark.llama
def test_a_child_killed_by_a_signal_is_reported_as_such(smol_path):
    """What the kernel's OOM killer does: SIGKILL the llama.cpp child mid-run; the report names the signal."""
    import threading
    import time

    import psutil

    from planner.verify.child import run_probe
    from tests.conftest import AMX_SAFE
    out = {}
    t = threading.Thread(target=lambda: out.update(run_probe(
        dict(model=smol_path, ctx=512, speed=True, pp=64, tg=4000, reps=3, **AMX_SAFE), timeout_s=300)))
    t.start()
    deadline = time.monotonic() + 120
    killed = False
    while not killed and time.monotonic() < deadline:
        for c in psutil.Process().children(recursive=True):
            if "planner.verify.probe" in " ".join(c.cmdline()):
                time.sleep(1.0)
                c.kill()
                killed = True
        time.sleep(0.1)
    t.join(120)
    assert killed and not out["ok"] and "killed by signal 9 (SIGKILL" in out["error"], out


def test_the_console_script_is_installed():
    """`plan` on PATH (the installed entry point), as a user runs it."""
    import shutil
    exe = shutil.which("plan")
    assert exe, "the plan console script is not on PATH: pip install ."
    p = subprocess.run([exe, "show", "smollm2"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "30 layers" in p.stdout, p.stderr
    assert sys.executable  # the same interpreter's environment
