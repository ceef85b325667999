"""Multi-device placement measured by llama.cpp itself, on a box with no GPU: llama.cpp RPC servers.

Each RPC server (planner.verify.llama_lib.serve_rpc: this machine's CPU backend served over TCP, as
tools/rpc's rpc-server does) is a GPU-type device to llama.cpp: it splits layers over them by
-ts or free memory, keeps each layer's KV on its device, runs the graph in one split per device
and, with every layer offloaded, turns on pipeline parallelism (RPC devices have async compute
and events, llama-context.cpp), so the scheduler keeps GGML_SCHED_MAX_COPIES = 4 copies of each
split's inputs. What it does not share with CUDA: RPC runs no host weights on the device (no
op offload), so only full-offload compute is compared; weights and KV are compared at every -ngl.

Needs llama-cpp-python built with RPC (CMAKE_ARGS=-DGGML_RPC=ON); usage:
    python -m bench.multi_device --measure OUT.jsonl [--models a,b] [--only split|hybrid|ffn|loads]
    python -m bench.multi_device [bench/data/rpc-multi-device.jsonl]   # compare, exit 1 on a miss
Each line: the config, the endpoints in device order and llama.cpp's buffers per device.

Dry runs (no_alloc) give compute only; on every device after the first they report 4 hidden
states (the input copies) more than a real load of the same config does (Llama-3.2-1B, 2 devices:
302.55 vs 286.55 MiB), so a device that receives a hidden state is compared only where a load
measured it; the first device and the host agree between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_model
from planner.verify.child import run_probe
from planner.verify.twin import write_twin

PORT0 = 50152
# (model, ngl (-1: all), tensor split, ctx, ubatch, flash attention)
DRY = [(m, -1, ts, ctx, ub, fa)
       for m in ("llama3.2-1b", "qwen3-0.6b", "gemma3-1b", "gpt-oss-20b", "qwen3-30b-a3b")
       for ts in ((1, 1), (3, 1), (1, 1, 1))
       for ctx, ub in ((4096, 512), (16384, 512), (4096, 2048))
       for fa in (True, False)]
# recurrent/hybrid layouts split over two devices
HYBRID = [(m, -1, (1, 1), ctx, 512, fa)
          for m in ("granite-4.0-h-tiny", "qwen3.5-4b", "lfm2-1.2b", "nemotron-h-8b", "deepseek-v3", "glm-4.5-air",
                    "mixtral-8x7b", "gemma2-2b", "phi3-mini-4k")
          for ctx in (4096, 16384) for fa in (True, False)]
# Where the FFN phase is the peak: small-vocabulary variants (4-6 layers, 1024 tokens), the whole graph on the CPU
# (ngl 0, no RPC device), on one device, and split over two (the first one's peak is its FFN): (model, variant, ngl,
# tensor split, flash attention) at 4K context, ubatch 512
_SMALL = {"num_hidden_layers": 4, "vocab_size": 1024}
FFN = [(m, v, ngl, ts, fa)
       for m, v in (("llama3.2-1b", _SMALL), ("qwen3-0.6b", _SMALL), ("gemma3-1b", dict(_SMALL, num_hidden_layers=6)),
                    ("qwen3-30b-a3b", _SMALL), ("gpt-oss-20b", _SMALL),
                    ("qwen3-30b-a3b", dict(_SMALL, num_experts_per_tok=4)),
                    ("qwen3-30b-a3b", dict(_SMALL, moe_intermediate_size=1536)),
                    ("qwen3-30b-a3b", dict(_SMALL, hidden_size=1024)),
                    ("qwen3-30b-a3b", dict(_SMALL, num_experts_per_tok=2, moe_intermediate_size=3072)),
                    ("gpt-oss-20b", dict(_SMALL, num_experts_per_tok=8)))
       for ngl, ts in ((0, ()), (-1, (1,)), (-1, (1, 1)))
       for fa in (True, False)]
LOADS = [("llama3.2-1b", -1, (1, 1), 4096, 512, True), ("llama3.2-1b", 10, (1, 1), 4096, 512, True),
         ("llama3.2-1b", -1, (1, 2, 1), 8192, 512, False), ("gemma3-1b", -1, (1, 1), 8192, 512, True),
         ("qwen3-0.6b", 20, (2, 1), 4096, 512, True), ("nemotron-h-8b", -1, (1, 1), 4096, 512, True),
         ("nemotron-h-8b", -1, (3, 1), 4096, 512, True), ("nemotron-h-8b", -1, (5, 1), 4096, 1024, False)]


def spec(name: str, variant: dict | None):
    if not variant:
        return load_model(name)
    from bench.cpu_decode import _variant
    return _variant(name, **variant)


def start_servers(n: int) -> tuple[list[str], list[subprocess.Popen]]:
    eps = [f"127.0.0.1:{PORT0 + i}" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", f"from planner.verify.llama_lib import serve_rpc; serve_rpc({ep!r})"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for ep in eps]
    time.sleep(3)
    return eps, procs


def per_device(bufs: dict[str, float], eps: list[str]) -> dict[str, dict[str, float]]:
    """llama.cpp's buffers as {RPC0: {model, KV, compute}, ..., CPU: {...}} in device order."""
    out: dict[str, dict[str, float]] = {}
    for key, mib in bufs.items():
        buf, kind = key.rsplit(" ", 1)
        dev = f"RPC{eps.index(buf[4:])}" if buf.startswith("RPC@") else "CPU"
        out.setdefault(dev, {})
        out[dev][kind] = round(out[dev].get(kind, 0.0) + mib, 2)
    return out


DATA = os.path.join(os.path.dirname(__file__), "data", "rpc-multi-device.jsonl")
GOALS = {"model": 0.0, "KV": 0.0, "RS": 0.0, "compute": 0.05}  # exact to llama.cpp's 0.01 MiB; compute 5%


def rows(path: str = DATA) -> list[dict]:
    """Each measured buffer beside the estimate for the same split (RPC devices as GPUs of 24 GiB)."""
    from planner.estimate import RuntimeOptions, estimate
    from planner.profile.hardware import GPU
    from planner.profile.targets import load_target
    out = []
    for line in open(path):
        r = json.loads(line)
        if not r["ok"]:
            continue
        m = spec(r["model"], r.get("variant"))
        m = m.with_types(ftype_tensor_types(m, r["quant"]))
        n = len(r["tensor_split"])
        base = load_target("2x-rtx3090")
        gpus = [GPU(index=i, name=f"RPC{i}", vram_total_bytes=24 << 30, bandwidth_gbps=100.0,
                    overhead_bytes=0)
                for i in range(n)]
        hw = base.model_copy(update={"gpus": gpus})
        o = RuntimeOptions(n_gpu_layers=r["ngl"], tensor_split=r["tensor_split"] or None, n_ctx=r["ctx"],
                           n_ubatch=r["n_ubatch"], flash_attn=r["fa"], swa_full=True)  # swa_full: llama.h's default
        e = estimate(m, hw, o)
        for d in e.devices:
            dev = d.name if d.kind == "gpu" else "CPU"
            meas = r["devices"].get(dev, {})
            if d.kind == "gpu":
                bufs = {k.split(" ", 1)[1]: v for k, v in d.buffers_mib.items()}  # "CUDA0 KV" -> KV
                pred = {"model": bufs["model"], "KV": bufs.get("KV", 0.0), "RS": bufs.get("RS"),
                        "compute": d.memory.compute_bytes / 2**20}
            else:
                pred = {"KV": d.buffers_mib.get("CPU KV", 0.0), "RS": d.buffers_mib.get("CPU RS"),
                        "compute": d.memory.compute_bytes / 2**20}
            for part, p in pred.items():
                if part not in meas or p is None or (r["dry"] and part != "compute"):
                    continue
                if part == "compute" and r["ngl"] >= 0 and n:
                    continue  # host layers: CUDA runs their big batches on the GPU (op offload), RPC does not
                if r["dry"] and part == "compute" and d.kind == "gpu" and d.index > 0 and r["ngl"] < 0:
                    continue  # a dry run's receiving device: 4 hidden states over a load (module doc)
                var = "".join(f" {k}={v}" for k, v in (r.get("variant") or {}).items() if k != "vocab_size")
                ts = ",".join(map(str, r["tensor_split"]))
                run = "dry" if r["dry"] else "load"
                out.append({"case": f"{r['model']}{var} ngl={r['ngl']} ts={ts} ctx={r['ctx']} ub={r['n_ubatch']} "
                                    f"fa={int(r['fa'])} {run}",
                            "device": dev, "part": part, "measured_mib": meas[part],
                            "predicted_mib": round(p, 2)})
    return out


def compare(path: str = DATA) -> int:
    misses = 0
    rs = rows(path)
    for x in rs:
        err = (x["predicted_mib"] - x["measured_mib"]) / x["measured_mib"] if x["measured_mib"] else 0.0
        goal = GOALS[x["part"]]
        ok = abs(x["predicted_mib"] - x["measured_mib"]) <= 0.011 if goal == 0 else abs(err) <= goal
        misses += not ok
        print(f"{x['case']:58s} {x['device']:5s} {x['part']:8s} {x['measured_mib']:9.2f} {x['predicted_mib']:9.2f} "
              f"{err:+7.1%} {'' if ok else 'MISS'}")
    print(f"{len(rs) - misses}/{len(rs)} within goals (weights and KV exact, compute 5%)")
    return 1 if misses else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=DATA)
    ap.add_argument("--measure", metavar="OUT")
    ap.add_argument("--models", default="")
    ap.add_argument("--only", choices=("split", "hybrid", "ffn", "loads"), help="one of the three case lists")
    a = ap.parse_args()
    if not a.measure:
        sys.exit(compare(a.data))
    a.out = a.measure
    eps, procs = start_servers(3)
    tmp = tempfile.mkdtemp(prefix="twins-")
    paths: dict[str, str] = {}
    lists = {"split": [((m, None, *rest), True) for m, *rest in DRY],
             "hybrid": [((m, None, *rest), True) for m, *rest in HYBRID],
             "ffn": [((m, v, ngl, ts, 4096, 512, fa), True) for m, v, ngl, ts, fa in FFN],
             "loads": [((m, None, *rest), False) for m, *rest in LOADS]}
    cases = lists[a.only] if a.only else [c for v in lists.values() for c in v]
    try:
        with open(a.out, "a") as out:
            for (name, variant, ngl, ts, ctx, ub, fa), dry in cases:
                if a.models and name not in a.models.split(","):
                    continue
                key = f"{name}-{abs(hash(json.dumps(variant, sort_keys=True)))}"
                if key not in paths:
                    m = spec(name, variant)
                    paths[key] = os.path.join(tmp, f"{key}.gguf")
                    write_twin(m.with_types(ftype_tensor_types(m, "Q4_K_M")), paths[key])
                use = eps[:len(ts)]
                cfg = dict(model=paths[key], dry=dry, ngl=999 if ngl < 0 else ngl, ctx=ctx, n_ubatch=ub, fa=fa,
                           mmap=True, rpc=use, tensor_split=list(ts))
                r = run_probe(cfg, timeout_s=300)
                rec = {"model": name, "variant": variant, "quant": "Q4_K_M", "dry": dry, "ngl": ngl,
                       "tensor_split": list(ts), "ctx": ctx,
                       "n_ubatch": ub, "fa": fa, "ok": r.get("ok", False), "error": r.get("error"),
                       "devices": per_device(r.get("bufs_mib") or {}, use), "n_ctx": r.get("n_ctx")}
                out.write(json.dumps(rec) + "\n")
                out.flush()
                print(name, variant or "", ngl, ts, ctx, ub, fa, "dry" if dry else "load",
                      rec["devices"] or rec["error"], flush=True)
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    main()
