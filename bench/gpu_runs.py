"""Measure llama.cpp on a GPU box: real loads (buffers, NVML, RSS, pp/tg speed) and dry runs.

Usage (device machine): python -m bench.gpu_runs OUT_DIR
Writes OUT_DIR/gpu_runs.jsonl, one line per run. Twins are written to /tmp (sparse).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_model
from planner.verify.child import run_probe
from planner.verify.twin import write_twin

REAL = [  # (model, ftype, [(ngl, ctx, fa, ctk, ctv)])
    ("llama3.1-8b", "Q4_K_M", [(99, 4096, False, None, None), (99, 32768, False, None, None),
                               (99, 32768, True, None, None), (99, 32768, True, 8, 8),
                               (16, 8192, True, None, None), (0, 8192, True, None, None)]),
    ("qwen3-30b-a3b", "Q4_K_M", [(99, 8192, True, None, None), (20, 8192, True, None, None)]),
    ("gemma3-4b", "Q4_K_M", [(99, 32768, True, None, None), (99, 8192, False, None, None)]),
    ("llama3.2-1b", "Q8_0", [(99, 8192, True, None, None)]),
    ("gpt-oss-20b", "MXFP4_MOE", [(99, 8192, True, None, None)]),
    ("qwen2.5-7b", "Q5_K_M", [(99, 16384, True, None, None)]),
]
DRY = ["llama3.1-8b", "qwen3-30b-a3b", "gemma3-4b", "gpt-oss-20b"]


def main() -> None:
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    out = open(os.path.join(out_dir, "gpu_runs.jsonl"), "a")
    paths = {}
    for name, ftype, runs in REAL:
        m = load_model(name)
        m = m.with_types(ftype_tensor_types(m, ftype))
        path = f"/tmp/{name}-{ftype}.gguf"
        t = time.time()
        size = write_twin(m, path)
        paths[name] = path
        print(name, ftype, size, f"{time.time() - t:.1f}s", flush=True)
        for ngl, ctx, fa, ctk, ctv in runs:
            cfg = dict(model=path, ngl=ngl, ctx=ctx, fa=fa, ctk=ctk, ctv=ctv, speed=True, pp=512, tg=64)
            r = run_probe(cfg, timeout_s=300)
            r["cfg"].update(model=name, ftype=ftype, file_bytes=size)
            r.pop("log_tail", None)
            out.write(json.dumps(r) + "\n")
            out.flush()
            print(json.dumps({k: r.get(k) for k in ("cfg", "ok", "error", "bufs_mib", "gpu_delta_mib", "pp_tps", "tg_tps")}), flush=True)
    for name in DRY:
        for ngl, ctx, ub, fa in itertools.product([0, 8, 99], [4096, 32768], [512], [False, True]):
            cfg = dict(model=paths[name], dry=True, ngl=ngl, ctx=ctx, n_ubatch=ub, n_batch=max(2048, ub), fa=fa)
            r = run_probe(cfg, timeout_s=120)
            r["cfg"].update(model=name)
            out.write(json.dumps(r) + "\n")
            out.flush()
    print("done", flush=True)


if __name__ == "__main__":
    main()
