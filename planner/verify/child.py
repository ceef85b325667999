"""llama.cpp in a child process, from the parent's side: start planner.verify.probe, read back its
report and llama.cpp's buffer log, and say in words how it ended. llama.cpp runs in children so
that its crash or out-of-memory is a report, never a dead caller."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from typing import Any

_WHY = {signal.SIGKILL: "often the kernel's out-of-memory killer, or a user's kill -9",
        signal.SIGSEGV: "a crash inside llama.cpp", signal.SIGABRT: "llama.cpp aborted (GGML_ASSERT)",
        signal.SIGBUS: "a memory-mapped file changed or vanished under it", signal.SIGTERM: "asked to stop"}


def exit_text(returncode: int | None) -> str:
    """'exit 1', or 'killed by signal 9 (SIGKILL: ...)' for a negative subprocess return code."""
    if returncode is None or returncode >= 0:
        return f"exit {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"killed by signal {-returncode}"
    why = _WHY.get(sig)
    return f"killed by signal {-returncode} ({sig.name}{': ' + why if why else ''})"


def parse_buffers(log: str) -> dict[str, float]:
    """{'CPU_Mapped model': 281.81, 'CUDA0 KV': 512.0, ...} summed over repeated lines."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        line = line.strip()
        # an RPC device's buffers are named RPC<i>[host:port], i its index on that server: kept as RPC@host:port
        line = re.sub(r"RPC\d+\[([^\]]*)\]", r"RPC@\1", line)
        m = re.search(r"(?P<buf>[\w\-@.:]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB", line)
        if not m:
            m2 = re.search(r"(?P<buf>[\w\-]+)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB", line)
            if not m2:
                continue
            key = f"{m2.group('buf')} model"
            out[key] = round(out.get(key, 0.0) + float(m2.group("mib")), 2)
            continue
        key = f"{m.group('buf')} {m.group('kind')}"
        out[key] = round(out.get(key, 0.0) + float(m.group("mib")), 2)
    return out


def run_probe(cfg: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
    """Run probe() in a child process; a crash or OOM comes back as ok=False with the reason."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("GGML_NO_BACKTRACE", "1")
    try:
        p = subprocess.run([sys.executable, "-m", "planner.verify.probe", json.dumps(cfg)],
                           capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"cfg": cfg, "ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            res = json.loads(line)
            res["bufs_mib"] = parse_buffers(p.stderr)
            res["flash_attn"] = "enabled" if re.search(r"flash_attn\s+= enabled", p.stderr) else "disabled"
            g = re.search(r"graph(?: \(pp[^)]*\))?: nodes = (\d+)(?: / (\d+))?", p.stderr)
            if g:  # the prompt and the one-token graphs' node counts (llama_context's reserve log)
                res["graph_nodes"] = [int(g.group(1)), int(g.group(2) or g.group(1))]
            return res
    tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:]) or "no output"
    if p.returncode < 0:  # a signal: that is the reason; the log's last lines are only what came before
        return {"cfg": cfg, "ok": False, "returncode": p.returncode, "signal": -p.returncode,
                "error": f"the llama.cpp child process was {exit_text(p.returncode)}; its log ended: {tail[-300:]}",
                "log_tail": tail}
    return {"cfg": cfg, "ok": False, "returncode": p.returncode, "error": tail}
