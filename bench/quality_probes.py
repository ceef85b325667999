"""Where the quality model is blind, and what any mix could reach: single changes to a stock Q8_0 file, measured.

Usage: python -m bench.quality_probes [--model gemma3-270m|smollm2]

bench/quality misses its goal at Q6_K and Q8_0 on Gemma 3 270M and at Q8_0 on SmolLM2. This
measures why, on the same F16 base, text and quantizer: stock Q8_0 and Q6_K, the Q8_0 weights
dequantized back to F16 (their own error, without the rounding of the activations that ggml's
CPU matmul adds), and for each tensor class one step from Q8_0: down to the next type (Q6_K
where rows are a multiple of 256, else Q5_1), measured as a file and dequantized (weights
only), and up to F16. Each row prints the measured KLD beside the allocator's prediction
(planner/optimize/quality.py, with the activations' rounding measured by `plan imatrix`).

The bound: taking the measured changes as additive (the quality model's own assumption), the
lowest KLD any class-wise mix of Q8_0, the step down and F16 reaches within a stock file's
bytes. When that bound is above 80% of the stock file's KLD, no class-wise mix meets the goal
there. Writes bench/data/quality-probes-<model>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile

from bench.quality import GOAL, MODELS, _measure, prepare
from planner.estimate.quant_mix import ftype_tensor_types
from planner.optimize.quality import bytes_of, combine, predicted_parts
from planner.verify.quantize import quantize, to_float

CLASSES = ("ffn_down", "attn_output", "ffn_up", "ffn_gate", "attn_q", "attn_k", "attn_v", "token_embd")


def bound(rows: list[dict], budget: int) -> dict:
    """Lowest additive KLD over class-wise choices {Q8_0, down, F16} within `budget` tensor bytes."""
    q8 = next(r for r in rows if r["name"] == "stock Q8_0")
    steps = {c: [(0, 0.0, "Q8_0")] + [(r["tensor_bytes"] - q8["tensor_bytes"], r["kld"] - q8["kld"], r["type"])
                                      for r in rows if r.get("class") == c and not r.get("weights_only")]
             for c in CLASSES}
    best = None
    for combo in itertools.product(*steps.values()):
        db = sum(s[0] for s in combo)
        if q8["tensor_bytes"] + db > budget:
            continue
        kld = q8["kld"] + sum(s[1] for s in combo)
        if best is None or kld < best["kld"]:
            best = dict(kld=kld, tensor_bytes=q8["tensor_bytes"] + db,
                        mix={c: s[2] for c, s in zip(steps, combo, strict=True) if s[2] != "Q8_0"})
    return best or {}


def fit(rows: list[dict]) -> dict[str, float]:
    """Factors of the quality model (quality.yaml `measured`) that best predict these files' KLD:
    linear least squares on the relative error over the weights, activations and output parts.
    Returns the factors and the median |error| before/after."""
    import numpy as np
    keys = ("weights", "activations", "output")
    x = np.array([[r["parts"].get(k, 0.0) for k in keys] for r in rows])
    y = np.array([r["kld"] for r in rows])
    prior = np.array([r["parts"].get("prior", 0.0) for r in rows])
    a = (x / y[:, None])
    b = 1 - prior / y
    used = [i for i in range(3) if x[:, i].any()]
    c = np.zeros(3)
    c[used] = np.linalg.lstsq(a[:, used], b, rcond=None)[0]
    before = np.array([r["predicted"] for r in rows])
    after = x @ c + prior
    return {"kld_per_rel_error": float(c[0]), "activation_factor": float(c[1] / c[0]) if c[1] else None,
            "output_factor": float(c[2] / c[0]) if c[2] else None,
            "median_abs_error_before": float(np.median(np.abs(before / y - 1))),
            "median_abs_error_after": float(np.median(np.abs(after / y - 1)))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(MODELS), default="gemma3-270m")
    a = ap.parse_args()
    if MODELS[a.model]["find"]() is None:
        print(f"{a.model}: {MODELS[a.model]['install']} first", file=sys.stderr)
        return 2
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        base, m, errors, npy, _ = prepare(a.model, d)
        q8 = ftype_tensor_types(m, "Q8_0")
        stock6 = ftype_tensor_types(m, "Q6_K")

        def run(name: str, types: dict[str, str], weights_only: bool = False, **extra) -> None:
            q = os.path.join(d, "probe.gguf")
            quantize(base, q, m, types)
            size = os.path.getsize(q)
            if weights_only:  # measure the dequantized copy instead
                to_float(q, os.path.join(d, "deq.gguf"), "F16")
                q = os.path.join(d, "deq.gguf")
            parts = predicted_parts(m.with_types(types), errors)
            if weights_only:  # the activations go through F16 matmuls: the reference's rounding
                parts.pop("activations", None)
            r = _measure(q, npy) | dict(name=name, bytes=size, tensor_bytes=bytes_of(m.with_types(types)),
                                        predicted=combine(parts), parts=parts, weights_only=weights_only, **extra)
            rows.append(r)
            print(f"{name:40s} {size / 1e6:8.1f} MB  KLD {r['kld']:.4f}  predicted {r['predicted']:.5f}", flush=True)

        run("stock Q8_0", q8)
        run("stock Q6_K", stock6)
        run("Q8_0 weights only (stored as F16)", q8, weights_only=True)
        for c in CLASSES:
            names = [n for n, v in q8.items() if v == "Q8_0" and (n.split(".")[-2] == c or n.startswith(c + "."))]
            if not names:
                continue
            row = next(t.shape[0] for t in m.tensors if t.name == names[0])
            down = "Q6_K" if row % 256 == 0 else "Q5_1"
            for ty, wo in ((down, False), (down, True), ("F16", False)):
                t = dict(q8) | dict.fromkeys(names, ty)
                run(f"Q8_0, {c} -> {ty}" + (" (weights only)" if wo else ""), t, wo, **{"class": c, "type": ty})
    budgets = {"Q6_K": bytes_of(m.with_types(stock6)), "Q8_0": bytes_of(m.with_types(q8))}
    bounds = {}
    for f, b in budgets.items():
        stock = next(r for r in rows if r["name"] == f"stock {f}")
        bd = bound(rows, b)
        bounds[f] = bd | dict(stock_kld=stock["kld"], goal_kld=stock["kld"] * (1 - GOAL))
        print(f"{f}: stock {stock['kld']:.4f}; best class-wise mix (additive) {bd['kld']:.4f} {bd['mix']}; "
              f"goal {stock['kld'] * (1 - GOAL):.4f}: {'reachable' if bd['kld'] <= stock['kld'] * (1 - GOAL) else 'out of reach'}")
    fitted = fit(rows)
    print("fit over these files: " + ", ".join(f"{k} {v:.3g}" for k, v in fitted.items() if v is not None))
    out = os.path.join(os.path.dirname(__file__), "data", f"quality-probes-{a.model}.json")
    with open(out + ".part", "w") as f:
        json.dump({"rows": rows, "bounds": bounds, "fit": fitted}, f, indent=1)
    os.replace(out + ".part", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
