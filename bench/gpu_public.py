"""GPU speed from public measurements: fit each GPU generation's constants (planner/data/gpu_speed.yaml) to
llama-bench results published with numbers (bench/data/public-gpu-bench.jsonl, each row with its source), and
check the fit: decode within 15%, prefill within 25%, and no implausible order (a card with more bandwidth
and more compute never predicted slower on a model that fits both, among cards of one backend: across vendors
the public rows themselves disagree with the spec sheets, e.g. the RX 7900 XTX decodes slower than the RTX 3090).
Exit 1 on a miss.

Decode, per token: (weights + KV at the mean depth) / (spec bandwidth x e) + layers x c, the same formula as
planner/estimate/throughput.py; e and c by least squares on relative errors over the family's short runs
(tg <= 512 at depth 0; the longer and deeper runs are held out: they check the KV term). Prefill: 2 x the
weights a token multiplies / (fp16 TFLOPS x p), F16 weights at p x f; p per family, f per backend.

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


def box(gpu_name: str) -> HardwareProfile:
    """One GPU of the named spec with room for any model (only bytes and layers are read from it)."""
    s = lookup_gpu_spec(gpu_name)
    backend = "metal" if "apple" in s.name.lower() else "rocm" if "amd" in s.name.lower() else "cuda"
    g = GPU(name=s.name, vram_total_bytes=1 << 40, bandwidth_gbps=s.bandwidth_gbps, fp16_tflops=s.fp16_tflops,
            backend=backend, vendor="apple" if backend == "metal" else "amd" if backend == "rocm" else "nvidia")
    return HardwareProfile(cpu=CPU(cores=16, threads=16), ram=RAM(total_bytes=1 << 40, bandwidth_gbps=100),
                           gpus=[g])


def facts(r: dict) -> dict:
    """What the formulas read of a row: bytes a token reads, KV read at its mean depth, layers, FLOPs a prompt
    token needs by kind (quantized or F16 weights, attention at its mean depth)."""
    m = spec(r["model"], r["quant"])
    hw = box(r["gpu"])
    gen = r.get("n_gen", 0)
    prompt = r.get("n_prompt", 0)
    n_ctx = max(256, r["depth"] + gen + prompt)
    b = memory_breakdown(m, hw, RuntimeOptions(n_ctx=n_ctx, n_gpu_layers=-1, flash_attn=False))
    depth = r["depth"] + gen / 2 if gen else r["depth"] + prompt / 2
    mm = matmul_types(m)
    attn = 4 * m.n_layers * m.n_head * m.head_dim_k * depth
    return {"bytes": b.read_per_token.get(0, 0), "kv": b.kv.get(0, 0) * depth / n_ctx, "layers": b.layers.get(0, 0),
            "q_flops": 2 * sum(n for (ty, _), n in mm.items() if ty not in F16) + attn,
            "f16_flops": 2 * sum(n for (ty, _), n in mm.items() if ty in F16),
            "bw": hw.gpus[0].bandwidth_gbps * 1e9, "tflops": hw.gpus[0].fp16_tflops * 1e12,
            "family": lookup_gpu_spec(r["gpu"]).family, "backend": hw.gpus[0].backend}


def is_fit(r: dict) -> bool:
    if r["test"].startswith("tg"):
        return r["depth"] == 0 and r["n_gen"] <= 512
    return r["depth"] == 0 and r["n_prompt"] <= 2048 and r["n_prompt"] in (512, 2048)


def is_deep_fit(r: dict) -> bool:
    """The rows the no-flash-attention KV factor is fitted on (tg4096: mean depth 2048); tg1024 and tg8192 are held
    out."""
    return r["test"] == "tg4096"


def fit_family(rs: list[dict], fx: list[dict], f16_factor: float, c: float) -> dict:
    """e (and p) for one family, its backend's layer cost c given: e = the median over its short decode runs of
    the bandwidth term's share of the time left after the layers."""
    tg = [(r, f) for r, f in zip(rs, fx, strict=True) if r["test"].startswith("tg") and is_fit(r)]
    if not tg:  # no decode rows of its own: the backend's pooled efficiency (set by the caller)
        inv_e = float("nan")
    else:
        inv_e = median((1 / r["tps"] - f["layers"] * c) / ((f["bytes"] + f["kv"]) / f["bw"]) for r, f in tg)
    pp = [(r, f) for r, f in zip(rs, fx, strict=True) if r["test"].startswith("pp") and is_fit(r)]
    p = median(((f["q_flops"] + f["f16_flops"] / f16_factor) / f["tflops"]) * r["tps"] for r, f in pp) if pp else None
    return {"decode_bw_efficiency": None if math.isnan(inv_e) else round(1 / inv_e, 3), "decode_layer_ms": round(c * 1e3, 4),
            "prefill_flops_efficiency": round(p, 4) if p else None}


def layer_costs(rs: list[dict], fx: list[dict]) -> dict[str, float]:
    """Per backend, the fixed time per layer and token (s): least squares over the cards measured at more than
    one model size, each card with its own bandwidth efficiency (a card's two sizes separate the two terms);
    ROCm, with no card measured at two sizes, takes CUDA's (an assumption)."""
    out: dict[str, list[float]] = {}
    for gpu in sorted({r["gpu"] for r in rs}):
        sel = [(r, f) for r, f in zip(rs, fx, strict=True) if r["gpu"] == gpu and r["test"].startswith("tg")
               and is_fit(r)]
        if len({(r["model"], r["quant"]) for r, _ in sel}) < 2:
            continue
        y = np.array([1 / r["tps"] for r, _ in sel])
        a = np.c_[[(f["bytes"] + f["kv"]) / f["bw"] for _, f in sel], [f["layers"] for _, f in sel]]
        (_, c), *_ = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)
        if c > 0:
            out.setdefault(sel[0][1]["backend"], []).append(float(c))
    costs = {b: median(v) for b, v in out.items()}
    costs.setdefault("rocm", costs.get("cuda", 0.0))
    return costs


def kv_factors(rs: list[dict], fx: list[dict], fams: dict) -> dict[str, float]:
    """Per backend: how much slower than its bytes the KV cache reads without flash attention (these tables' runs
    had it off): the median over the tg4096 rows of (time - weights - layers) / (KV bytes / bandwidth)."""
    out: dict[str, list[float]] = {}
    for r, f in zip(rs, fx, strict=True):
        if is_deep_fit(r) and f["kv"] > 0:
            k = fams.get(f["family"]) or fams.get(f"backend:{f['backend']}")
            bw = f["bw"] * k["decode_bw_efficiency"]
            rest = 1 / r["tps"] - f["bytes"] / bw - f["layers"] * k["decode_layer_ms"] / 1e3
            out.setdefault(f["backend"], []).append(rest / (f["kv"] / bw))
    return {b: round(max(1.0, median(v)), 3) for b, v in out.items()}


def predict(f: dict, k: dict) -> tuple[float, float]:
    kv = f["kv"] * k.get("kv_factor_no_flash", 1.0)
    dec = (f["bytes"] + kv) / (f["bw"] * k["decode_bw_efficiency"]) + f["layers"] * k["decode_layer_ms"] / 1e3
    pre = (f["q_flops"] + f["f16_flops"] / k["prefill_f16_factor"]) / (f["tflops"] * k["prefill_flops_efficiency"])
    return 1 / dec, 1 / pre


def f16_factors(rs: list[dict], fx: list[dict]) -> dict[str, float]:
    """Per backend: F16 prompts' speed over the same card's quantized prompt, over the FLOPs (median)."""
    out: dict[str, list[float]] = {}
    for r, f in zip(rs, fx, strict=True):
        if r["quant"] == "F16" and r["test"] == "pp512":
            q = next((x for x in rs if x["gpu"] == r["gpu"] and x["model"] == r["model"] and x["quant"] != "F16"
                      and x["test"] == "pp512"), None)
            if q:
                fq = facts(q)
                out.setdefault(f["backend"], []).append((r["tps"] * f["f16_flops"]) / (q["tps"] * fq["q_flops"]))
    return {b: round(median(v), 3) for b, v in out.items()}


def fit(rs: list[dict]) -> dict:
    fx = [facts(r) for r in rs]
    ff = f16_factors(rs, fx)
    fams: dict[str, dict] = {}
    costs = layer_costs(rs, fx)
    # each family, then each backend pooled over its families (for a card whose family has no public rows)
    for key in sorted({f"backend:{f['backend']}" for f in fx}) + sorted({f["family"] for f in fx}):
        sel = [(r, f) for r, f in zip(rs, fx, strict=True) if key in (f["family"], f"backend:{f['backend']}")]
        backend = sel[0][1]["backend"]
        k = fit_family([r for r, _ in sel], [f for _, f in sel], ff.get(backend, 1.0), costs.get(backend, 0.0))
        if k["decode_bw_efficiency"] is None:
            k["decode_bw_efficiency"] = fams[f"backend:{backend}"]["decode_bw_efficiency"]
        if k["prefill_flops_efficiency"] is None:
            continue
        k["prefill_f16_factor"] = ff.get(backend, 1.0)
        err = {"decode": [], "prefill": []}
        for r, f in sel:
            d, p = predict(f, k)
            if is_fit(r):
                err["decode" if r["test"].startswith("tg") else "prefill"].append(
                    (d if r["test"].startswith("tg") else p) / r["tps"] - 1)
        fams[key] = k | {"cards": sorted({r["gpu"] for r, _ in sel}), "rows": len(sel),
                         "rms_decode": round(float(np.sqrt(np.mean(np.square(err["decode"] or [0])))), 4),
                         "rms_prefill": round(float(np.sqrt(np.mean(np.square(err["prefill"] or [0])))), 4)}
    kf = kv_factors(rs, fx, fams)
    for key, k in fams.items():
        k["kv_factor_no_flash"] = kf.get(_family_backend(key, fx), 1.0)
    return fams


def _family_backend(key: str, fx: list[dict]) -> str:
    return key.split(":", 1)[1] if key.startswith("backend:") else next(f["backend"] for f in fx if f["family"] == key)


def constants_for(name: str, fams: dict) -> dict:
    """The card's family constants, else its backend's pooled ones, else planner/data/backends.yaml's (what the
    estimator does)."""
    from planner.estimate.constants import backend as backend_constants
    s = lookup_gpu_spec(name)
    for key in (s.family, f"backend:{_backend(name)}"):
        if key in fams:
            return fams[key]
    c = backend_constants(_backend(name))
    return {"decode_bw_efficiency": c.decode_bw_efficiency, "decode_layer_ms": c.decode_layer_ms,
            "prefill_flops_efficiency": c.prefill_flops_efficiency, "prefill_f16_factor": 1.0}


def check(rs: list[dict], fams: dict) -> tuple[list[str], list[tuple]]:
    misses, table = [], []
    for r in rs:
        f = facts(r)
        k = constants_for(r["gpu"], fams)
        d, p = predict(f, k)
        kind = "decode" if r["test"].startswith("tg") else "prefill"
        pred = d if kind == "decode" else p
        e = pred / r["tps"] - 1
        held = not (is_fit(r) or is_deep_fit(r))
        table.append((r["gpu"], f"{r['model']} {r['quant']} {r['test']}", kind, r["tps"], pred, e, held))
        deep = kind == "prefill" and (r.get("n_prompt", 0) > 2048 or r["depth"] > 0)
        if abs(e) > GOALS[kind] and not deep:
            misses.append(f"{r['gpu']} {r['model']} {r['quant']} {r['test']}: {e:+.0%}")
    return misses, table


def order(fams: dict) -> list[str]:
    """Pairs of bundled cards where one has at least the other's bandwidth and compute yet is predicted slower."""
    bad = []
    cards = list(gpu_specs())
    for model, quant in (("llama3-8b", "Q4_K_M"), ("llama3-8b", "F16"), ("llama3-70b", "Q4_K_M")):
        r = {"model": model, "quant": quant, "depth": 0, "n_gen": 128}
        pred = {}
        for s in cards:
            f = facts(r | {"gpu": s.name})
            pred[s.name] = predict(f, constants_for(s.name, fams))
        fits = {s.name for s in cards if _fits(model, quant, s.vram_gib)}
        for a, b in combinations([c for c in cards if c.name in fits], 2):
            if _backend(a.name) != _backend(b.name):
                continue
            for x, y in ((a, b), (b, a)):
                if x.bandwidth_gbps >= y.bandwidth_gbps and x.fp16_tflops >= y.fp16_tflops \
                        and (pred[x.name][0] < pred[y.name][0] * 0.999 or pred[x.name][1] < pred[y.name][1] * 0.999):
                    bad.append(f"{x.name} ({x.bandwidth_gbps:g} GB/s, {x.fp16_tflops:g} TFLOPS) predicted slower "
                               f"than {y.name} on {model} {quant}: decode {pred[x.name][0]:.1f} vs {pred[y.name][0]:.1f}"
                               f", prefill {pred[x.name][1]:.0f} vs {pred[y.name][1]:.0f}")
    return bad


def _backend(name: str) -> str:
    return box(name).gpus[0].backend


def _fits(model: str, quant: str, vram_gib: float) -> bool:
    """The weights and 4K of KV within the card's memory (the order check compares cards a model fits)."""
    f = facts({"model": model, "quant": quant, "depth": 0, "n_gen": 4096, "gpu": "NVIDIA H100 80GB HBM3"})
    m = spec(model, quant)
    return sum(tensor_bytes(t.type or "F32", t.shape) for t in m.tensors) + f["kv"] * 2 < vram_gib * (1 << 30)


def main() -> int:
    rs = rows()
    fams = fit(rs)
    misses, table = check(rs, fams)
    for key, k in fams.items():
        print(f"{key:18s} decode eff {k['decode_bw_efficiency']:.3f} layer {k['decode_layer_ms']:.4f} ms, prefill eff "
              f"{k['prefill_flops_efficiency']:.4f} (F16 x{k['prefill_f16_factor']}); rms {k['rms_decode']:.1%} / "
              f"{k['rms_prefill']:.1%} over {len(k['cards'])} card(s)")
    for g, what, kind, m, p, e, held in table:
        print(f"  {g:28s} {what:30s} {kind:7s} {m:9.1f} {p:9.1f} {e:+6.1%}{' (held out)' if held else ''}")
    bad = order(fams)
    for b in bad:
        print("ORDER:", b)
    for m in misses:
        print("MISSED:", m)
    if "--write" in sys.argv:
        write(fams, table)
    return 1 if misses or bad else 0


def write(fams: dict, table: list[tuple]) -> None:
    from bench.plot import svg_plot
    doc = {"source": "bench/gpu_public.py --write: each GPU family's constants (gpus.yaml family) and each backend's "
                     "pooled over its families (backend:NAME, for a card whose family has no public rows), fitted to the "
                     "llama-bench results in bench/data/public-gpu-bench.jsonl (XiongjieDai/GPU-Benchmarks-on-LLM-Inference's "
                     "LLaMA 3 tables, llama.cpp PR #26284's RX 7900 XTX rows, the kept H100 prompt run), each row with its "
                     "source; decode_layer_ms per backend from the cards measured at several model sizes (ROCm: CUDA's, "
                     "assumed); kv_factor_no_flash per backend from the tg4096 rows",
           "families": fams}
    with open(OUT, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False, width=120)
    series = {"decode (fit)": [], "decode (held out)": [], "prefill": []}
    for _, _, kind, m, p, _, held in table:
        key = "prefill" if kind == "prefill" else "decode (held out)" if held else "decode (fit)"
        series[key].append((math.log10(m), p / m))
    with open(SVG, "w", encoding="utf-8") as f:
        f.write(svg_plot(series, "measured tok/s (log10)", "predicted / measured", logy=False, lines=False))


if __name__ == "__main__":
    sys.exit(main())
