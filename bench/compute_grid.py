"""Collect llama.cpp's compute-buffer sizes (no_alloc dry runs) over a grid of shape twins.

Usage: python -m bench.compute_grid OUT.jsonl [--models a,b] [--ngl N]
Each line: the config and llama.cpp's buffers. Used to fit and check planner/estimate/compute.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile

from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_model
from planner.verify.child import run_probe
from planner.verify.twin import write_twin

DEFAULT_MODELS = ["smollm2-135m", "llama3.2-1b", "qwen2.5-0.5b", "qwen3-0.6b", "gemma2-2b", "gemma3-1b",
                  "phi3-mini-4k", "qwen3-30b-a3b", "gpt-oss-20b", "llama3.1-8b"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--ngl", default="0")
    ap.add_argument("--ctx", default="512,4096,16384")
    ap.add_argument("--ubatch", default="128,512")
    ap.add_argument("--fa", default="0,1")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="twins-")
    with open(a.out, "a") as out:
        for name in a.models.split(","):
            m = load_model(name)
            m = m.with_types(ftype_tensor_types(m, "Q4_K_M"))
            path = os.path.join(tmp, f"{name}.gguf")
            write_twin(m, path)
            for ngl, ctx, ub, fa in itertools.product(a.ngl.split(","), a.ctx.split(","), a.ubatch.split(","), a.fa.split(",")):
                cfg = dict(model=path, dry=True, ngl=int(ngl), ctx=int(ctx), n_ubatch=int(ub), fa=fa == "1")
                r = run_probe(cfg, timeout_s=120)
                r["cfg"]["model"] = name
                out.write(json.dumps(r) + "\n")
                out.flush()
                print(name, ngl, ctx, ub, fa, r.get("bufs_mib") or r.get("error"), flush=True)
            os.remove(path)


if __name__ == "__main__":
    main()
