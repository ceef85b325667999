"""Where the quality model is blind: single changes to Gemma 3 270M's stock Q8_0 file, measured.

Usage: python -m bench.quality_probes [--model gemma3-270m|smollm2]

bench/quality misses its goal at Q6_K and Q8_0 on Gemma 3 270M. This measures why, on the same
perturbed F16 base, text and quantizer: stock Q8_0 and Q6_K; Q8_0 weights dequantized back to F16
(the weights' own error, without the Q8_0 activations ggml's CPU matmul makes); and Q8_0 with one
tensor class changed. Each row prints the measured KLD beside the one the allocator's model
predicts (planner/optimize/quality.py). Writes bench/data/quality-probes-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from bench.quality import MODELS, _measure, _mix, prepare
from planner.estimate.quant_mix import ftype_tensor_types
from planner.optimize.quality import predicted_kld
from planner.verify.quantize import quantize, to_float

# (name, {substring of a tensor name: type}) applied to the Q8_0 file's quantized weights
SWAPS = [("ffn_down -> Q6_K", {"ffn_down": "Q6_K"}), ("attn_output -> Q6_K", {"attn_output": "Q6_K"}),
         ("ffn_down, attn_output -> Q5_1", {"ffn_down": "Q5_1", "attn_output": "Q5_1"}),
         ("ffn_down, attn_output -> F16", {"ffn_down": "F16", "attn_output": "F16"}),
         ("token_embd -> Q5_1", {"token_embd": "Q5_1"})]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(MODELS), default="gemma3-270m")
    a = ap.parse_args()
    if MODELS[a.model]["find"]() is None:
        print(f"{a.model}: {MODELS[a.model]['install']} first", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as d:
        base, m, errors, npy, _ = prepare(a.model, d)
        q8 = ftype_tensor_types(m, "Q8_0")

        def run(name: str, types: dict[str, str], path: str | None = None) -> None:
            q = os.path.join(d, "probe.gguf")
            quantize(base, q, m, types)
            size = os.path.getsize(q)
            if path:  # measure the dequantized copy instead
                to_float(q, path, "F16")
                q = path
            r = _measure(q, npy) | dict(name=name, bytes=size, predicted=predicted_kld(m.with_types(types), errors),
                                        mix=_mix(m, types))
            rows.append(r)
            print(f"{name:34s} {size / 1e6:8.1f} MB  KLD {r['kld']:.4f}  predicted {r['predicted']:.5f}", flush=True)

        run("stock Q8_0", q8)
        run("stock Q6_K", ftype_tensor_types(m, "Q6_K"))
        run("Q8_0 weights, stored as F16", q8, os.path.join(d, "q8-as-f16.gguf"))
        for name, swap in SWAPS:
            t = dict(q8)
            t.update({k: ty for k, v in q8.items() for pat, ty in swap.items() if pat in k and v == "Q8_0"})
            run("Q8_0, " + name, t)
    out = os.path.join(os.path.dirname(__file__), "data", f"quality-probes-{a.model}.json")
    with open(out + ".part", "w") as f:
        json.dump(rows, f, indent=1)
    os.replace(out + ".part", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
