"""Load a GGUF with llama-cpp-python in *this* process and report what llama.cpp allocated.

Run it as a child (`python -m planner.verify.probe '<json>'`: planner.verify.child.run_probe) so that an
out-of-memory or a crash inside llama.cpp becomes a report, never a dead caller. It parses
llama.cpp's own "<buffer> <kind> buffer size = X MiB" log lines, and measures the process
RSS and (when NVML works) GPU memory before and after, and optionally pp/tg speed.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import sys
import time
from typing import Any

from planner.units import MiB
from planner.verify.llama_lib import add_rpc_servers, eval_chunks, set_context_defaults, set_model_defaults


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


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
    if cfg.get("repack") is False:
        mp.use_extra_bufts = False
    if cfg.get("tensor_split"):
        import ctypes
        n = max(len(cfg["tensor_split"]), int(llama_cpp.llama_max_devices()))  # llama.cpp reads that many
        split = (ctypes.c_float * n)(*cfg["tensor_split"])
        mp.tensor_split = ctypes.cast(split, ctypes.POINTER(ctypes.c_float))
    model = llama_cpp.llama_model_load_from_file(cfg["model"].encode(), mp)
    if not model:
        raise RuntimeError("llama.cpp could not load the model (dry run)")
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = int(cfg.get("ctx", 4096)), int(cfg.get("n_batch", 2048)), int(cfg.get("n_ubatch", 512))
    cp.n_seq_max = int(cfg.get("n_seq", 1))
    cp.flash_attn_type = {None: -1, True: 1, False: 0}[cfg.get("fa")]
    if cfg.get("n_outputs"):  # llama-server's reserve: one output per slot (estimate/programs.py)
        cp.n_outputs_max = int(cfg["n_outputs"])
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


def _decoder(lc, ctx, n_vocab: int, n_batch: int, lowest: int = 0):
    """llama-bench's loop on a context: decode(n) feeds n random tokens (ids lowest..n_vocab-1) in batches of at
    most n_batch, one llama_decode each with nothing between the calls, and waits for them."""
    import random
    rng = random.Random(0)

    def decode(n_tok: int) -> None:
        for start in range(0, n_tok, n_batch):
            n = min(n_batch, n_tok - start)
            toks = (lc.llama_token * n)(*(rng.randrange(lowest, n_vocab) for _ in range(n)))
            if lc.llama_decode(ctx, lc.llama_batch_get_one(toks, n)) != 0:
                raise RuntimeError("llama_decode failed")
        lc.llama_synchronize(ctx)
    return decode


def _speed(llm, cfg: dict[str, Any]) -> dict[str, Any]:
    """llama-bench's method and loop: random tokens, one warm-up run, then `reps` timed runs of pp (the prompt in
    n_batch batches) and of tg (one token at a time, after `depth` tokens), each a llama_decode on the loaded
    context with nothing between the calls (llama-cpp-python's eval, which reads half of llama-bench's tg on a
    135M model, is not in the timed loop)."""
    import llama_cpp as lc

    from planner.profile.load import Window, load_figures, since, snapshot
    mem = lc.llama_get_memory(llm.ctx)
    pp, tg, depth = int(cfg.get("pp", 512)), int(cfg.get("tg", 128)), int(cfg.get("depth", 0))
    reps = max(1, int(cfg.get("reps", 1)))
    decode = _decoder(lc, llm.ctx, llm.n_vocab(), llm.n_batch, lowest=3)

    pp_t, tg_t = [], []
    timed = Window(0.0, 0.0, 0.0)  # the timed runs' CPU: this process's and the other programs'
    for r in range(reps + 1):  # run 0 is the warm-up
        lc.llama_memory_clear(mem, True)
        s = snapshot()
        decode(pp)
        if r:
            w = since(s)
            pp_t.append(w.wall_s)
            timed += w
    for r in range(reps + 1):
        lc.llama_memory_clear(mem, True)
        if depth:
            decode(depth)
        s = snapshot()
        for _ in range(tg if r else min(tg, 4)):
            decode(1)
        if r:
            w = since(s)
            tg_t.append(w.wall_s)
            timed += w
    threads = int(cfg.get("threads") or os.cpu_count() or 1)
    return {"pp_tps": pp / (sum(pp_t) / len(pp_t)), "tg_tps": tg / (sum(tg_t) / len(tg_t)),
            "pp": pp, "tg": tg, "depth": depth, "reps": reps, "load": load_figures(timed, threads)}


def bench(cfg: dict[str, Any]) -> dict[str, Any]:
    """llama-bench's loop in llama.cpp's own API (no Python work per token beyond the call), for each model of
    cfg["models"] and each thread count of cfg["threads"]: a warm-up, then `reps` runs of `tg` tokens decoded one
    at a time from an empty cache and (at the thread counts of cfg["pp_threads"]) `reps` prompts of `pp` random
    tokens in one batch, each call synchronised. Returns the seconds of each run."""
    import llama_cpp as lc
    lc.llama_backend_init()
    out = []
    for job in cfg["models"]:
        mp = lc.llama_model_default_params()
        if job.get("repack") is False:  # --no-repack: the weights as the file has them (the kernels llama.cpp
            mp.use_extra_bufts = False  # uses for a tensor it does not repack, like a tied output matrix)
        model = lc.llama_model_load_from_file(job["model"].encode(), mp)
        if not model:
            raise RuntimeError(f"llama.cpp could not load {job['model']}")
        runs = [_bench_threads(lc, model, job, int(t), int(t) in cfg.get("pp_threads", cfg["threads"]),
                               max(1, int(cfg.get("reps", 3)))) for t in cfg["threads"]]
        lc.llama_model_free(model)
        out.append({"model": job["model"], "pp": int(job["pp"]), "tg": int(job["tg"]), "runs": runs})
    return {"cfg": cfg, "ok": True, "models": out}


def _bench_threads(lc, model, job: dict[str, Any], threads: int, with_pp: bool, reps: int) -> dict[str, Any]:
    """One thread count of bench(): tg and pp from an empty cache, and (job["depth"] > 0) job["tg_deep"] tokens
    and the prompt again after that many tokens of context (like llama-bench -d), the context filled once."""
    from planner.profile.load import load_figures, since, snapshot
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    pp, tg, depth = int(job["pp"]), int(job["tg"]), int(job.get("depth", 0))
    tg_deep = int(job.get("tg_deep", tg))
    cp = lc.llama_context_default_params()
    cp.n_ctx = depth + pp + max(tg, tg_deep) + 64
    cp.n_batch = cp.n_ubatch = max(pp, 512 if depth else 1)
    cp.n_threads = cp.n_threads_batch = threads
    ctx = lc.llama_init_from_model(model, cp)
    mem = lc.llama_get_memory(ctx)
    decode = _decoder(lc, ctx, n_vocab, cp.n_batch)

    def fill(at: int) -> None:
        lc.llama_memory_clear(mem, True)
        decode(at)  # the context first, untimed

    def timed(n_calls: int, n_tok: int, at: int | None = 0):
        if at is not None:
            fill(at)
        s = snapshot()
        for _ in range(n_calls):
            decode(n_tok)
        return since(s)

    timed(1, pp)  # warm-up: pages in, repacked weights, the thread pool up
    timed(min(tg, 4), 1)
    windows: dict[str, list] = {"pp": [], "tg": [], "pp_deep": [], "tg_deep": []}
    for _ in range(reps):
        if with_pp:
            windows["pp"].append(timed(1, pp))
        windows["tg"].append(timed(tg, 1))
    if depth and with_pp:  # the context filled once; each run: tg_deep tokens at depth, then the prompt after them
        fill(depth)
        for _ in range(reps):
            lc.llama_memory_seq_rm(mem, 0, depth, -1)  # back to the filled context
            windows["tg_deep"].append(timed(tg_deep, 1, None))
            windows["pp_deep"].append(timed(1, pp, None))
    lc.llama_free(ctx)
    total = functools.reduce(operator.add, (w for ws in windows.values() for w in ws))
    return {"threads": threads, "depth": depth, **{f"{k}_s": [w.wall_s for w in ws] for k, ws in windows.items()},
            "load": load_figures(total, threads)}


def logits(cfg: dict[str, Any]) -> dict[str, Any]:
    """Next-token log-probabilities over a text, scored like llama-perplexity: chunks of n_ctx
    tokens (first one BOS), the second half of each chunk scored. With `base` (an .npy of the
    source's log-probs) returns KLD(base || this), top-1 agreement and PPL; with `out` saves
    this model's log-probs there (the base)."""
    import llama_cpp
    import numpy as np
    n_ctx, n_chunks = int(cfg.get("n_ctx", 512)), int(cfg.get("n_chunks", 4))
    llm = llama_cpp.Llama(model_path=cfg["model"], n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=min(n_ctx, 512),
                          logits_all=True, verbose=False, n_gpu_layers=int(cfg.get("ngl", 0)),
                          n_threads=cfg.get("threads") or os.cpu_count(), flash_attn=bool(cfg.get("fa", False)))
    first = n_ctx // 2
    base = np.load(cfg["base"], mmap_mode="r") if cfg.get("base") else None
    outs, nll, kld, top1, n = [], 0.0, 0.0, 0, 0
    for c, chunk in enumerate(eval_chunks(llm, cfg["text"], n_ctx, n_chunks)):
        lg = np.asarray(llm.scores[first:n_ctx - 1], dtype=np.float64)
        lp = lg - lg.max(axis=1, keepdims=True)
        lp -= np.log(np.exp(lp).sum(axis=1, keepdims=True))
        nxt = np.asarray(chunk[first + 1:n_ctx])
        nll -= float(lp[np.arange(len(nxt)), nxt].sum())
        if base is not None:
            b = np.asarray(base[c * len(nxt):(c + 1) * len(nxt)], dtype=np.float64)
            pb = np.exp(b)
            kld += float((pb * (b - lp)).sum())
            top1 += int((b.argmax(axis=1) == lp.argmax(axis=1)).sum())
        else:
            outs.append(lp.astype(np.float32))
        n += len(nxt)
    res: dict[str, Any] = {"cfg": cfg, "ok": True, "n_tokens": n, "ppl": float(np.exp(nll / n))}
    if base is not None:
        res.update(kld=kld / n, top1=top1 / n)
    if cfg.get("out"):
        from planner.fileio import atomic_output
        with atomic_output(cfg["out"], force=True, suffix=".npy") as tmp:
            np.save(tmp, np.concatenate(outs))
    return res


def probe(cfg: dict[str, Any]) -> dict[str, Any]:
    """In the child: llama.cpp logs to our stderr (no ctypes log hook: a Python callback
    called from CUDA's threads crashed the CUDA build); the parent parses that stderr."""
    import llama_cpp

    if cfg.get("repack") is False:  # --no-repack, for every mode: Llama() has no parameter for it
        set_model_defaults(use_extra_bufts=False)
    if cfg.get("rpc"):
        add_rpc_servers(cfg["rpc"])
    if cfg.get("dry"):
        return dry_run(cfg)
    if cfg.get("mode") == "logits":
        return logits(cfg)
    if cfg.get("mode") == "bench":
        return bench(cfg)
    if cfg.get("mode") == "imatrix":
        from planner.verify.imatrix import collect
        return collect(cfg)
    kwargs = dict(model_path=cfg["model"], n_gpu_layers=cfg.get("ngl", 0), n_ctx=cfg.get("ctx", 4096),
                  n_batch=cfg.get("n_batch", 2048), n_ubatch=cfg.get("n_ubatch", 512),
                  use_mmap=cfg.get("mmap", True), n_threads=cfg.get("threads") or os.cpu_count(),
                  logits_all=False, verbose=True, seed=1)
    if cfg.get("swa_full") is not None:
        kwargs["swa_full"] = bool(cfg["swa_full"])
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
    ctx_fields: dict[str, Any] = {}
    if cfg.get("n_seq", 1) != 1 or cfg.get("kv_unified"):  # llama.cpp's defaults: 1 sequence, split KV
        ctx_fields.update(n_seq_max=int(cfg.get("n_seq", 1)), kv_unified=bool(cfg.get("kv_unified", False)))
    if cfg.get("n_outputs"):  # the outputs llama-server reserves (one per slot), for the memory it allocates
        ctx_fields["n_outputs_max"] = int(cfg["n_outputs"])
    if ctx_fields:
        set_context_defaults(**ctx_fields)
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
        out.update(_speed(llm, cfg))
        if gpu0 is not None:
            out["gpu_delta_after_run_mib"] = ((_gpu_used() or 0) - gpu0) / MiB
    out["rss_after_run_mib"] = (_rss() - rss0) / MiB
    out["rss_baseline_mib"], out["rss_peak_mib"] = rss0 / MiB, _rss_peak() / MiB
    out["ok"] = True
    del llm
    return out


if __name__ == "__main__":
    _cfg = json.loads(sys.argv[1])
    try:
        _res = probe(_cfg)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        _res = {"cfg": _cfg, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    print(json.dumps(_res), flush=True)
