"""Every user mistake of issue 22 through the installed `plan`: exit code, wall time, peak memory.

    python -m bench.bad_input            # prints a table; exit 1 if a case misses its goal

Goal per case: exit 2, one line on stderr, no traceback, under GOAL_S seconds and GOAL_MIB of peak
memory (the Python start and imports are most of both). Results are kept in
bench/data/bad-input.jsonl with the date and the machine.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from tests.cli.test_bad_input import DATA, GGUFS, OPTIONS, YAMLS
from tests.gguf_raw import gguf_bytes

GOAL_S = 1.0
GOAL_MIB = 100
OUT = os.path.join(os.path.dirname(__file__), "data", "bad-input.jsonl")


# runs one command and prints its own peak resident memory (KiB) as its last stdout line: each case's own
WRAP = ("import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(p.returncode)")


def _run(args: list[str], cwd: str) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAP, shutil.which("plan") or "plan", *args], capture_output=True,
                       text=True, cwd=cwd, timeout=600)
    wall = time.perf_counter() - t
    peak_kib = int(p.stdout.strip().splitlines()[-1])
    err = p.stderr.strip()
    return {"exit": p.returncode, "wall_s": round(wall, 3), "peak_mib": round(peak_kib / 1024, 1),
            "lines": err.count("\n") + 1 if err else 0, "traceback": "Traceback" in p.stderr,
            "message": err.splitlines()[-1] if err else ""}


def cases(d: str) -> dict[str, list[str]]:
    out = {f"option {k}": v[0] for k, v in OPTIONS.items()}
    for k, (kv, tensors) in GGUFS.items():
        p = os.path.join(d, f"{k}.gguf")
        with open(p, "wb") as f:
            f.write(gguf_bytes(kv, tensors, data=DATA))
        out[f"gguf {k}"] = ["--model", p, "--target", "rtx4090"]
    for k, text in YAMLS.items():
        p = os.path.join(d, f"{k}.yaml")
        with open(p, "w") as f:
            f.write(text)
        out[f"target {k}"] = ["--model", "llama3.1-8b", "--target", p]
    os.mkfifo(os.path.join(d, "pipe.gguf"))
    out["model is a FIFO"] = ["--model", os.path.join(d, "pipe.gguf")]
    out["model is a directory"] = ["--model", d]
    out["model is /dev/zero"] = ["--model", "/dev/zero"]
    out["-o /dev/full --force"] = ["--model", "llama3.1-8b", "--emit", "yaml", "-o", "/dev/full", "--force"]
    return out


def main() -> int:
    rows, missed = [], 0
    with tempfile.TemporaryDirectory() as d:
        for name, args in cases(d).items():
            r = _run(args, d)
            ok = r["exit"] == 2 and r["lines"] == 1 and not r["traceback"] and r["wall_s"] < GOAL_S \
                and r["peak_mib"] < GOAL_MIB
            missed += not ok
            rows.append({"case": name, **r, "ok": ok})
            print(f"{'ok  ' if ok else 'MISS'} {name:28s} exit {r['exit']}  {r['wall_s']:5.2f} s  "
                  f"{r['peak_mib']:5.1f} MiB  {r['message'][:90]}")
    print(f"{len(rows) - missed}/{len(rows)} cases: exit 2, one line, < {GOAL_S:g} s, < {GOAL_MIB} MiB")
    stamp = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores", "python": sys.version.split()[0]}
    with open(OUT, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({**stamp, **r}) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
