"""Load a GGUF with llama-cpp-python in *this* process and report what llama.cpp allocated.

Run it as a child (`python -m planner.verify.probe '<json>'`, see run_probe) so that an
out-of-memory or a crash inside llama.cpp becomes a report, never a dead caller. It parses
llama.cpp's own "<buffer> <kind> buffer size = X MiB" log lines, and measures the process
RSS and (when NVML works) GPU memory before and after, and optionally pp/tg speed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

MiB = 1024 * 1024


def parse_buffers(log: str) -> dict[str, float]:
    """{'CPU_Mapped model': 281.81, 'CUDA0 KV': 512.0, ...} summed over repeated lines."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        line = line.strip()
        m = re.search(r"(?P<buf>[\w\-]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB", line)
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


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _gpu_used() -> int | None:
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        return int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
    except Exception:  # noqa: BLE001 - no GPU is a normal answer
        return None


def dry_run(cfg: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's no_alloc load: graph and buffers sized, nothing allocated or read (mmap off).

    Exact compute-buffer sizes in well under a second for any model size, the same way
    llama.cpp's own --fit measures. Weight and KV buffers are not reported in this mode.
    """
    import llama_cpp

    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.no_alloc, mp.load_mode, mp.n_gpu_layers = True, 0, int(cfg.get("ngl", 0))
    model = llama_cpp.llama_model_load_from_file(cfg["model"].encode(), mp)
    if not model:
        raise RuntimeError("llama.cpp could not load the model (dry run)")
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = int(cfg.get("ctx", 4096)), int(cfg.get("n_batch", 2048)), int(cfg.get("n_ubatch", 512))
    cp.n_seq_max = int(cfg.get("n_seq", 1))
    cp.flash_attn_type = {None: -1, True: 1, False: 0}[cfg.get("fa")]
    if cfg.get("ctk") is not None:
        cp.type_k = int(cfg["ctk"])
    if cfg.get("ctv") is not None:
        cp.type_v = int(cfg["ctv"])
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError("llama.cpp could not create the context (dry run)")
    out = {"cfg": cfg, "ok": True, "dry": True, "n_ctx": int(llama_cpp.llama_n_ctx(ctx))}
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return out


def probe(cfg: dict[str, Any]) -> dict[str, Any]:
    """In the child: llama.cpp logs to our stderr (no ctypes log hook: a Python callback
    called from CUDA's threads crashed the CUDA build); the parent parses that stderr."""
    import llama_cpp

    if cfg.get("dry"):
        return dry_run(cfg)
    kwargs = dict(model_path=cfg["model"], n_gpu_layers=cfg.get("ngl", 0), n_ctx=cfg.get("ctx", 4096),
                  n_batch=cfg.get("n_batch", 2048), n_ubatch=cfg.get("n_ubatch", 512),
                  use_mmap=cfg.get("mmap", True), n_threads=cfg.get("threads") or os.cpu_count(),
                  logits_all=False, verbose=True, seed=1)
    if cfg.get("fa") is not None:
        kwargs["flash_attn"] = bool(cfg["fa"])
    if cfg.get("ctk") is not None:
        kwargs["type_k"] = int(cfg["ctk"])
    if cfg.get("ctv") is not None:
        kwargs["type_v"] = int(cfg["ctv"])
    if cfg.get("tensor_split"):
        kwargs["tensor_split"] = cfg["tensor_split"]
    if cfg.get("kwargs"):
        kwargs.update(cfg["kwargs"])
    gpu0, rss0 = _gpu_used(), _rss()
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(**kwargs)
    out: dict[str, Any] = {"cfg": cfg, "load_s": time.perf_counter() - t0}
    gpu1, rss1 = _gpu_used(), _rss()
    out["rss_delta_mib"] = (rss1 - rss0) / MiB
    if gpu0 is not None and gpu1 is not None:
        out["gpu_delta_mib"] = (gpu1 - gpu0) / MiB
    out["model_size_bytes"] = int(llama_cpp.llama_model_size(llm.model))
    out["n_ctx"] = int(llama_cpp.llama_n_ctx(llm.ctx))
    if cfg.get("speed"):
        import random
        rng = random.Random(0)
        n_vocab = llm.n_vocab()
        pp = int(cfg.get("pp", 512))
        toks = [rng.randrange(3, n_vocab) for _ in range(pp)]
        llm.eval(toks[:16])  # warm-up
        llm.reset()
        t = time.perf_counter()
        llm.eval(toks)
        out["pp_tps"] = pp / (time.perf_counter() - t)
        tg = int(cfg.get("tg", 32))
        t = time.perf_counter()
        for _ in range(tg):
            llm.eval([rng.randrange(3, n_vocab)])
        out["tg_tps"] = tg / (time.perf_counter() - t)
        if gpu0 is not None:
            out["gpu_delta_after_run_mib"] = ((_gpu_used() or 0) - gpu0) / MiB
    out["ok"] = True
    del llm
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
            return res
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    return {"cfg": cfg, "ok": False, "returncode": p.returncode, "error": " | ".join(tail) or "no output"}


if __name__ == "__main__":
    _cfg = json.loads(sys.argv[1])
    try:
        _res = probe(_cfg)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        _res = {"cfg": _cfg, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    print(json.dumps(_res), flush=True)
