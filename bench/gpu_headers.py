"""GPU runs from twin headers written elsewhere: extend each header to its full size with
sparse zeros (valid blocks), then load it with llama.cpp and record buffers, NVML, speed.

Usage (device machine): python -m bench.gpu_headers HEADER_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from planner.verify.child import run_probe

RUNS = {  # file -> [(ngl, ctx, fa, extra)]
    "llama3.1-8b-Q4_K_M.gguf": [(99, 8192, True, {}), (99, 8192, False, {}), (20, 8192, True, {})],
    "qwen3-30b-a3b-Q4_K_M.gguf": [(99, 8192, True, {}), (24, 8192, True, {})],
    "gemma3-4b-Q4_K_M.gguf": [(99, 32768, True, {"swa_full": False}), (99, 8192, False, {"swa_full": False})],
    "gpt-oss-20b-MXFP4_MOE.gguf": [(99, 8192, True, {"swa_full": False})],
}


def main() -> None:
    src, out_dir = sys.argv[1], sys.argv[2]
    sizes = json.load(open(os.path.join(src, "sizes.json")))
    out = open(os.path.join(out_dir, "gpu_headers.jsonl"), "a")
    for name, runs in RUNS.items():
        path = f"/tmp/{name}"
        shutil.copy(os.path.join(src, name), path)
        with open(path, "r+b") as f:
            f.truncate(sizes[name])
        for ngl, ctx, fa, extra in runs:
            kw = {}
            if "swa_full" in extra:
                kw["swa_full"] = extra["swa_full"]
            cfg = dict(model=path, ngl=ngl, ctx=ctx, fa=fa, speed=True, pp=512, tg=64, kwargs=kw)
            r = run_probe(cfg, timeout_s=240)
            r["cfg"]["model"] = name
            r.pop("log_tail", None)
            out.write(json.dumps(r) + "\n")
            out.flush()
            print(json.dumps({k: r.get(k) for k in ("cfg", "ok", "error", "bufs_mib", "gpu_delta_mib", "tg_tps", "pp_tps")}),
                  flush=True)
        os.remove(path)


if __name__ == "__main__":
    main()
