"""GPU speed from public measurements: fit each GPU generation's constants (planner/data/gpu_speed.yaml) to
llama.cpp's own public result threads (bench/data/public-gpu-bench.jsonl, each row with its source), and check the
fit: decode within 15%, prefill within 25%, on every card left out of the fit in turn; no implausible order (a card
with more bandwidth and more compute never predicted slower on a model that fits both, among cards of one backend:
across vendors the public rows themselves disagree with the spec sheets). Exit 1 on a miss.

The rows come from several llama.cpp builds, and the builds differ: the CUDA scoreboard's RTX 4090 decodes LLaMA 2 7B
Q4_0 at 186 tok/s (2025-26 builds), which its bandwidth allows only if the fixed cost per layer is a third of what
the May-2024 tables (before CUDA graphs) imply. So each backend is fitted on one build, the newest with a table of
many cards (FIT_BUILD): the CUDA, ROCm and Vulkan scoreboards of 2025-26, and for Metal the one fixed build (8e672ef,
2023-11) of discussion #4167 -- no newer Metal table of many chips exists in what we could read. Rows of other builds
are shown beside it and their offset reported: they are what llama.cpp did then, not what it does now. The ratios a
single build measures on one card (F16 prompts against quantized ones, the cache read at depth without flash
attention) are taken from whichever build has them.

Decode, per token: (weights + KV at the mean depth) / (spec bandwidth x e) + layers x c, the same formula as
planner/estimate/throughput.py; per backend one c and per family one e, by least squares on relative errors over
the fit build's short runs (tg <= 512 at depth 0): cards of one family at several bandwidths, or one card at several
model sizes, separate the two. Prefill: 2 x the weights a token multiplies / (fp16 TFLOPS x p), F16 weights at
p x f; p per family, f per backend.

Usage: python -m bench.gpu_public [--write]   (--write: planner/data/gpu_speed.yaml, which the estimator applies
(planner/estimate/throughput.py), and docs/gpu-speed.svg)
"""

from __future__ import annotations

import json
import math
import os
import sys
from functools import cache
from itertools import combinations
from statistics import median

import numpy as np
import yaml

from planner.estimate import RuntimeOptions
from planner.estimate.memory import matmul_types, memory_breakdown
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_model
from planner.model.ggml_types import tensor_bytes
from planner.profile.gpu_specs import gpu_specs, lookup_gpu_spec
from planner.profile.hardware import CPU, GPU, RAM, HardwareProfile

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data", "public-gpu-bench.jsonl")
OUT = os.path.join(HERE, os.pardir, "planner", "data", "gpu_speed.yaml")
SVG = os.path.join(HERE, os.pardir, "docs", "gpu-speed.svg")
GOALS = {"decode": 0.15, "prefill": 0.25}
F16 = ("F16", "BF16", "F32")
# the build each backend's constants are fitted on (the module docstring says why)
FIT_BUILD = {"cuda": "current", "rocm": "current", "vulkan": "current", "metal": "2023-11"}
# the backend a vendor's cards run on natively; a card measured on another (an RTX on Vulkan) is fitted apart
NATIVE = {"nvidia": "cuda", "amd": "rocm", "apple": "metal", "intel": "vulkan"}


def rows(excluded: bool = False) -> list[dict]:
    """The rows, without those marked excluded (each says why) unless asked for."""
    with open(DATA, encoding="utf-8") as f:
        rs = [json.loads(x) for x in f if x.strip()]
    return [r for r in rs if bool(r.get("excluded")) == excluded]


@cache
def spec(model: str, quant: str):
    m = load_model(model)
    if quant == "F16":
        return m.with_types({t.name: "F16" for t in m.tensors if len(t.shape) >= 2})
    return m.with_types(ftype_tensor_types(m, quant))


def is_hbm(gpu_name: str) -> bool:
    return lookup_gpu_spec(gpu_name).memory == "hbm"


def native_backend(gpu_name: str) -> str:
    return NATIVE[lookup_gpu_spec(gpu_name).family.split("-")[0]]


def box(gpu_name: str, backend: str | None = None) -> HardwareProfile:
    """One GPU of the named spec with room for any model (only bytes and layers are read from it)."""
    s = lookup_gpu_spec(gpu_name)
    b = backend or native_backend(gpu_name)
    g = GPU(name=s.name, vram_total_bytes=1 << 40, bandwidth_gbps=s.bandwidth_gbps, fp16_tflops=s.fp16_tflops,
            backend=b, vendor=s.family.split("-")[0])
    return HardwareProfile(cpu=CPU(cores=16, threads=16), ram=RAM(total_bytes=1 << 40, bandwidth_gbps=100),
                           gpus=[g])


def group(family: str, backend: str) -> str:
    """The key a card's constants are fitted and looked up under: its family on its vendor's own backend, else
    family@backend."""
    return family if NATIVE[family.split("-")[0]] == backend else f"{family}@{backend}"


def facts(r: dict) -> dict:
    return _facts(r["gpu"], r.get("backend") or native_backend(r["gpu"]), r["model"], r["quant"], r["depth"],
                  r.get("n_gen", 0), r.get("n_prompt", 0))


@cache
def _facts(gpu: str, backend: str, model: str, quant: str, depth0: int, gen: int, prompt: int) -> dict:
    """What the formulas read of a row: bytes a token reads, KV read at its mean depth, layers, FLOPs a prompt
    token needs by kind (quantized or F16 weights, attention at its mean depth)."""
    m = spec(model, quant)
    hw = box(gpu, backend)
    n_ctx = max(256, depth0 + gen + prompt)
    b = memory_breakdown(m, hw, RuntimeOptions(n_ctx=n_ctx, n_gpu_layers=-1, flash_attn=False))
    depth = depth0 + gen / 2 if gen else depth0 + prompt / 2
    mm = matmul_types(m)
    attn = 4 * m.n_layers * m.n_head * m.head_dim_k * depth
    family = lookup_gpu_spec(gpu).family
    return {"bytes": b.read_per_token.get(0, 0), "kv": b.kv.get(0, 0) * depth / n_ctx, "layers": b.layers.get(0, 0),
            "q_flops": 2 * sum(n for (ty, _), n in mm.items() if ty not in F16) + attn,
            "f16_flops": 2 * sum(n for (ty, _), n in mm.items() if ty in F16),
            "bw": hw.gpus[0].bandwidth_gbps * 1e9, "tflops": hw.gpus[0].fp16_tflops * 1e12,
            "family": family, "backend": backend, "group": group(family, backend)}


def is_decode(r: dict) -> bool:
    return r["test"].startswith("tg")


def is_fit(r: dict) -> bool:
    """A short run at depth 0 (the longer and deeper ones check the KV term and the prompt's attention)."""
    if is_decode(r):
        return r["depth"] == 0 and r["n_gen"] <= 512
    return r["depth"] == 0 and r["n_prompt"] in (512, 2048)


def in_fit_build(r: dict) -> bool:
    return r["build"] == FIT_BUILD.get(r["backend"])


def decode_fit(sel: list[tuple[dict, dict]], c_fixed: float | None = None,
               fit_c: bool = True) -> tuple[float, dict[str, float]]:
    """(c, {group: e}) for one backend: least squares of 1 = (bytes + kv) / bw / t x (1/e) + layers / t x c over its
    short decode runs. c is fitted (fit_c) only where some group has runs at two weights-per-bandwidth and comes out
    positive; else c_fixed (CUDA's, for a backend whose rows cannot separate the two terms: an assumption)."""
    sel = [(r, f) for r, f in sel if is_decode(r) and is_fit(r)]
    if not sel:
        return c_fixed or 0.0, {}
    groups = sorted({f["group"] for _, f in sel})
    t = np.array([1 / r["tps"] for r, _ in sel])
    a = np.zeros((len(sel), len(groups)))
    for i, (_, f) in enumerate(sel):
        a[i, groups.index(f["group"])] = (f["bytes"] + f["kv"]) / f["bw"]
    lay = np.array([f["layers"] for _, f in sel], dtype=float)
    c = c_fixed or 0.0
    if fit_c and any(len({round(v, 9) for v in a[:, j] if v}) > 1 for j in range(len(groups))):
        z, *_ = np.linalg.lstsq(np.c_[a, lay] / t[:, None], np.ones_like(t), rcond=None)
        c = float(z[-1]) if z[-1] > 0 else c
    z, *_ = np.linalg.lstsq(a / t[:, None], 1 - lay * c / t, rcond=None)
    return c, {g: round(float(1 / x), 3) for g, x in zip(groups, z, strict=True)}


def prefill_fit(sel: list[tuple[dict, dict]], f16_factor: float) -> dict[str, float]:
    """{group: p}: the median over its short prompts of the FLOPs rate reached over the fp16 TFLOPS."""
    out: dict[str, list[float]] = {}
    for r, f in sel:
        if not is_decode(r) and is_fit(r):
            out.setdefault(f["group"], []).append((f["q_flops"] + f["f16_flops"] / f16_factor) / f["tflops"] * r["tps"])
    return {g: round(median(v), 4) for g, v in out.items()}


def f16_factors(rs: list[dict]) -> dict[str, float]:
    """Per backend: F16 prompts' speed over the same card's quantized prompt of the same model and build, over
    the FLOPs (median)."""
    out: dict[str, list[float]] = {}
    for r in rs:
        if r["quant"] == "F16" and r["test"] == "pp512":
            q = next((x for x in rs if x["gpu"] == r["gpu"] and x["model"] == r["model"] and x["quant"] != "F16"
                      and x["test"] == "pp512" and x["build"] == r["build"]), None)
            if q:
                ratio = (r["tps"] * facts(r)["f16_flops"]) / (q["tps"] * facts(q)["q_flops"])
                out.setdefault(r["backend"], []).append(ratio)
    return {b: round(median(v), 3) for b, v in out.items()}


def kv_factors(rs: list[dict], costs: dict[str, float]) -> dict[str, float]:
    """Per backend: how much slower than its bytes the KV cache reads without flash attention (these tables' runs
    had it off), within one card and build: the time tg4096 adds over tg512 against the cache bytes it adds, at
    the card's own rate in that build (its tg512's bytes over its time less the layers)."""
    out: dict[str, list[float]] = {}
    for r in rs:
        if r["test"] != "tg4096":
            continue
        same = ("gpu", "model", "quant", "build")
        s = next((x for x in rs if x["test"] == "tg512" and all(x[k] == r[k] for k in same)), None)
        if not s:
            continue
        f, fs = facts(r), facts(s)
        rate = fs["bytes"] / (1 / s["tps"] - fs["layers"] * costs.get(r["backend"], 0.0))
        out.setdefault(r["backend"], []).append((1 / r["tps"] - 1 / s["tps"]) / ((f["kv"] - fs["kv"]) / rate))
    return {b: round(max(1.0, median(v)), 3) for b, v in out.items()}


def fit(rs: list[dict]) -> dict:
    """Each group's constants and each backend's pooled ones (backend:NAME, for a card whose group has no rows),
    from the fit build's rows."""
    ff = f16_factors(rs)
    fams: dict[str, dict] = {}
    costs: dict[str, float] = {}
    for b in sorted(FIT_BUILD, key=lambda x: x != "cuda"):  # CUDA first: a backend whose c cannot be fitted takes it
        sel = [(r, facts(r)) for r in rs if r["backend"] == b and in_fit_build(r)]
        if not sel:
            continue
        c, es = decode_fit(sel, costs.get("cuda"))
        costs[b] = c
        # the pools: every card of the backend, and its stacked-memory (HBM) cards apart
        pools = {f"backend:{b}": sel, f"backend:{b}:hbm": [(r, f) for r, f in sel if is_hbm(r["gpu"])]}
        pool_e = {k: decode_fit([(r, f | {"group": k}) for r, f in v], c, fit_c=False)[1].get(k)
                  for k, v in pools.items()}
        ps = prefill_fit(sel, ff.get(b, 1.0))
        pool_p = {k: prefill_fit([(r, f | {"group": k}) for r, f in v], ff.get(b, 1.0)).get(k)
                  for k, v in pools.items()}
        for g in [p for p, v in pools.items() if v] + sorted({f["group"] for _, f in sel}):
            pool = g in pools
            mine = pools[g] if pool else [(r, f) for r, f in sel if f["group"] == g]
            fallback = f"backend:{b}:hbm" if not pool and is_hbm(mine[0][0]["gpu"]) and pools[f"backend:{b}:hbm"] \
                else f"backend:{b}"
            e = pool_e[g] if pool else es.get(g) or pool_e[fallback]
            p = pool_p[g] if pool else ps.get(g) or pool_p[fallback]
            k = {"backend": b, "decode_bw_efficiency": e, "decode_layer_ms": round(c * 1e3, 4),
                 "prefill_flops_efficiency": p, "prefill_f16_factor": ff.get(b, 1.0)}
            if k["decode_bw_efficiency"] is None or k["prefill_flops_efficiency"] is None:
                continue
            fams[g] = k | {"cards": sorted({r["gpu"] for r, _ in mine}), "rows": len(mine)}
    kf = kv_factors(rs, costs)
    for k in fams.values():
        k["kv_factor_no_flash"] = kf.get(k["backend"], 1.0)
    return fams


def predict(f: dict, k: dict) -> tuple[float, float]:
    kv = f["kv"] * k.get("kv_factor_no_flash", 1.0)
    dec = (f["bytes"] + kv) / (f["bw"] * k["decode_bw_efficiency"]) + f["layers"] * k["decode_layer_ms"] / 1e3
    pre = (f["q_flops"] + f["f16_flops"] / k["prefill_f16_factor"]) / (f["tflops"] * k["prefill_flops_efficiency"])
    return 1 / dec, 1 / pre


def constants_for(name: str, backend: str, fams: dict) -> tuple[str, dict]:
    """(the key, the constants) a card gets on a backend: the fit constants.family_key names (the estimator's rule),
    else planner/data/backends.yaml's."""
    from planner.estimate.constants import backend as backend_constants
    from planner.estimate.constants import family_key
    key = family_key(name, backend, {k: v["backend"] for k, v in fams.items()})
    if key:
        return key, fams[key]
    c = backend_constants(backend)
    return "backends.yaml", {"decode_bw_efficiency": c.decode_bw_efficiency, "decode_layer_ms": c.decode_layer_ms,
                             "prefill_flops_efficiency": c.prefill_flops_efficiency or 0.2, "prefill_f16_factor": 1.0}


def check(rs: list[dict], fams: dict) -> tuple[list[str], list[tuple]]:
    """Every row against the fit; a fit-build row also against the fit made without its card (left out: what a
    card we have no rows of gets, from its family's other cards or its backend's pool). The goals hold for the fit
    build's short runs; the left-out errors are reported beside them."""
    misses, table = [], []
    loo = {gpu: fit([x for x in rs if x["gpu"] != gpu]) for gpu in sorted({r["gpu"] for r in rs if in_fit_build(r)})}
    for r in rs:
        f = facts(r)
        kind = "decode" if is_decode(r) else "prefill"
        key, k = constants_for(r["gpu"], r["backend"], fams)
        pred = predict(f, k)[kind == "prefill"]
        e = pred / r["tps"] - 1
        e_out = None
        if in_fit_build(r):
            _, k_out = constants_for(r["gpu"], r["backend"], loo[r["gpu"]])
            e_out = predict(f, k_out)[kind == "prefill"] / r["tps"] - 1
        table.append({"gpu": r["gpu"], "what": f"{r['model']} {r['quant']} {r['test']}", "kind": kind,
                      "backend": r["backend"], "build": r["build"], "measured": r["tps"], "predicted": pred,
                      "error": e, "left_out": e_out, "fit": in_fit_build(r) and is_fit(r), "key": key})
        if in_fit_build(r) and is_fit(r) and abs(e) > GOALS[kind]:
            misses.append(f"{r['gpu']} {r['model']} {r['quant']} {r['test']}: {e:+.0%}")
    return misses, table


def order(fams: dict) -> tuple[list[str], list[str]]:
    """Pairs of bundled cards of one backend where one has at least the other's bandwidth and compute yet is
    predicted slower: (implausible, measured). Across families the public rows do show such pairs (the RX 7900 XTX
    decodes faster than the MI210, a V100 prompts slower than an RTX 3060 Ti would: fp16 TFLOPS is not the rate
    llama.cpp's int8 kernels reach on every generation), so a pair counts as implausible only where one card's
    constants are its backend's pool, not its own family's measurements."""
    bad, measured = [], []
    cards = list(gpu_specs())
    for model, quant in (("llama3-8b", "Q4_K_M"), ("llama3-8b", "F16"), ("llama3-70b", "Q4_K_M")):
        r = {"model": model, "quant": quant, "depth": 0, "n_gen": 128}
        pred, key = {}, {}
        for s in cards:
            b = native_backend(s.name)
            key[s.name], k = constants_for(s.name, b, fams)
            pred[s.name] = predict(facts(r | {"gpu": s.name, "backend": b}), k)
        fits = {s.name for s in cards if _fits(model, quant, s.vram_gib)}
        for a, b in combinations([c for c in cards if c.name in fits], 2):
            if native_backend(a.name) != native_backend(b.name):
                continue
            for x, y in ((a, b), (b, a)):
                if x.bandwidth_gbps >= y.bandwidth_gbps and x.fp16_tflops >= y.fp16_tflops \
                        and (pred[x.name][0] < pred[y.name][0] * 0.999 or pred[x.name][1] < pred[y.name][1] * 0.999):
                    line = (f"{x.name} ({x.bandwidth_gbps:g} GB/s, {x.fp16_tflops:g} TFLOPS, {key[x.name]}) predicted "
                            f"slower than {y.name} ({key[y.name]}) on {model} {quant}: decode {pred[x.name][0]:.1f} vs "
                            f"{pred[y.name][0]:.1f}, prefill {pred[x.name][1]:.0f} vs {pred[y.name][1]:.0f}")
                    pooled = key[x.name].startswith("backend") or key[y.name].startswith("backend")
                    (bad if pooled else measured).append(line)
    return bad, measured


def _fits(model: str, quant: str, vram_gib: float) -> bool:
    """The weights and 4K of KV within the card's memory (the order check compares cards a model fits)."""
    f = facts({"model": model, "quant": quant, "depth": 0, "n_gen": 4096, "gpu": "NVIDIA H100 80GB HBM3"})
    m = spec(model, quant)
    return sum(tensor_bytes(t.type or "F32", t.shape) for t in m.tensors) + f["kv"] * 2 < vram_gib * (1 << 30)


def summary(table: list[dict]) -> list[tuple]:
    """(backend, build, kind, rows, median |error|, worst error, median |left-out error|, worst left out, median
    signed error) per class of rows."""
    out = []
    for key in sorted({(t["backend"], t["build"], t["kind"], t["fit"]) for t in table}):
        sel = [t for t in table if (t["backend"], t["build"], t["kind"], t["fit"]) == key]
        es = [t["error"] for t in sel]
        lo = [t["left_out"] for t in sel if t["left_out"] is not None]
        worst = max(es, key=abs)
        out.append((*key, len(sel), median(map(abs, es)), worst, median(map(abs, lo)) if lo else None,
                    max(lo, key=abs) if lo else None, median(es)))
    return out


def main() -> int:
    rs = rows()
    fams = fit(rs)
    misses, table = check(rs, fams)
    for key, k in fams.items():
        print(f"{key:26s} decode eff {k['decode_bw_efficiency']:.3f} layer {k['decode_layer_ms']:.4f} ms, prefill eff "
              f"{k['prefill_flops_efficiency']:.4f} (F16 x{k['prefill_f16_factor']}), "
              f"KV no-FA x{k['kv_factor_no_flash']}"
              f" over {len(k['cards'])} card(s)")
    for t in table:
        lo = f" left out {t['left_out']:+6.1%}" if t["left_out"] is not None else ""
        print(f"  {t['gpu']:30s} {t['backend']:6s} {t['build']:7s} {t['what']:26s} {t['kind']:7s} {t['measured']:9.1f}"
              f" {t['predicted']:9.1f} {t['error']:+6.1%}{lo}{'' if t['fit'] else ' (not fitted)'}")
    print("\nbackend build   kind    fitted rows  median|err| worst  left out: median worst  median signed")
    for b, build, kind, fitted, n, med, worst, lmed, lworst, signed in summary(table):
        lo = f"{lmed:6.1%} {lworst:+6.0%}" if lmed is not None else "      -      -"
        print(f"{b:7s} {build:7s} {kind:7s} {'yes' if fitted else 'no ':6s} {n:4d}  {med:6.1%} {worst:+6.0%}   {lo}"
              f"        {signed:+6.1%}")
    bad, measured = order(fams)
    print(f"\n{len(measured)} pairs of cards order against their spec sheets as their families' public rows do, e.g.")
    for m in measured[:5]:
        print("  ", m)
    for b in bad:
        print("ORDER:", b)
    for m in misses:
        print("MISSED:", m)
    if "--write" in sys.argv:
        write(fams, table)
    return 1 if misses or bad else 0


def write(fams: dict, table: list[dict]) -> None:
    from bench.plot import svg_plot
    doc = {"source": "bench/gpu_public.py --write: each GPU family's constants (gpus.yaml family; family@backend for a "
                     "card on another vendor's backend) and each backend's pooled over its cards (backend:NAME, for a "
                     "card whose family has no public rows), fitted to the llama-bench rows in "
                     "bench/data/public-gpu-bench.jsonl of one build per backend: llama.cpp's CUDA (#15013), ROCm "
                     "(#15021) and Vulkan (#10879) scoreboards of 2025-26, PR #26284's RX 7900 XTX rows and the kept "
                     "H100 prompt run; for Metal discussion #4167's fixed 2023-11 build. decode_layer_ms per backend "
                     "(Vulkan and ROCm, with no card at two weights-per-bandwidth, take CUDA's: assumed); F16 prompt "
                     "and no-flash-attention KV factors per backend from the same-card pairs of one build "
                     "(XiongjieDai/GPU-Benchmarks-on-LLM-Inference's May-2024 tables, #4167)",
           "families": fams}
    with open(OUT, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False, width=120)
    series = {"decode, card left out": [], "prefill, card left out": [], "other builds": []}
    for t in table:
        if t["left_out"] is not None and t["fit"]:
            series[f"{t['kind']}, card left out"].append((math.log10(t["measured"]), 1 + t["left_out"]))
        elif not t["fit"] and t["left_out"] is None:
            series["other builds"].append((math.log10(t["measured"]), t["predicted"] / t["measured"]))
    with open(SVG, "w", encoding="utf-8") as f:
        f.write(svg_plot(series, "measured tok/s (log10)", "predicted / measured", logy=False, lines=False))


if __name__ == "__main__":
    sys.exit(main())
