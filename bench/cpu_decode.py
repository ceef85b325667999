"""Measure CPU decode/prefill on this machine for the estimator's CPU constants.

Usage: python -m bench.cpu_decode [--rounds N] [--cases a,b] [--twins DIR]   (about 15 min a round)
       python -m bench.cpu_decode --fit
Writes bench/data/cpu-decode.jsonl (appends: one row per case and round).

Shape twins (ggml-quantized random blocks, so every byte is real) of dense, MoE and hybrid layouts
are written once, then timed in N rounds, each over every case in a rotated order (reversed on odd
rounds), like llama-bench: a warm-up, then 3 runs of pp256 and of tg64, all cores. This shared
2-core box drifts by 10-20% within an hour and from day to day, so a case is its median over the
rounds, and every case of a round is measured within ~10 minutes of the others.
Each row records the bytes the estimator says a token reads, llama.cpp's graph node count (its
reserve log) and the copy-test bandwidth of the profile, from which planner/data/backends.yaml's
CPU constants follow (`--fit` prints that least-squares fit over the cases marked `fit`); the rest
(`fit: False`) are held out to check it.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time
from statistics import median

from planner.estimate import RuntimeOptions
from planner.estimate.memory import memory_breakdown
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf, load_model
from planner.model.catalog import find_entry
from planner.model.hf_config import spec_from_hf_config
from planner.model.spec import ModelSpec
from planner.profile.targets import resolve_target

OUT = os.path.join(os.path.dirname(__file__), "data", "cpu-decode.jsonl")
OPTS = RuntimeOptions(n_ctx=2048)


def _variant(name: str, **change) -> ModelSpec:
    cfg = copy.deepcopy(find_entry(name).config)
    cfg.update(change)
    return spec_from_hf_config(cfg, f"{name} ({', '.join(f'{k}={v}' for k, v in change.items())})", "bench")


def _catalog(name: str):
    return lambda: load_model(name)


# a Qwen3-MoE layout the size of Granite-4.0-H-Tiny's FFN (64 experts of 512, 6 used), attention only
_QWEN3MOE_SMALL = dict(architectures=["Qwen3MoeForCausalLM"], hidden_size=1536, intermediate_size=4096,
                       num_hidden_layers=40, num_attention_heads=12, num_key_value_heads=4, head_dim=128,
                       vocab_size=100352, tie_word_embeddings=True, max_position_embeddings=40960, num_experts=64,
                       num_experts_per_tok=6, moe_intermediate_size=512)

# case -> (spec, ftype, used in the fit)
CASES = {
    "llama3.2-1b": (_catalog("llama3.2-1b"), "Q4_K_M", True),
    "smollm2-135m": (_catalog("smollm2-135m"), "Q4_K_M", True),
    "qwen3-0.6b": (_catalog("qwen3-0.6b"), "Q4_K_M", True),
    "gemma3-1b": (_catalog("gemma3-1b"), "Q4_K_M", True),
    "llama3.1-8b-8L": (lambda: _variant("llama3.1-8b", num_hidden_layers=8), "Q4_K_M", True),
    "qwen3-30b-a3b-12L": (lambda: _variant("qwen3-30b-a3b", num_hidden_layers=12), "Q4_K_M", True),
    "gpt-oss-20b-6L": (lambda: _variant("gpt-oss-20b", num_hidden_layers=6), "MXFP4_MOE", True),
    "qwen3moe-tinyshape": (lambda: spec_from_hf_config(_QWEN3MOE_SMALL, "qwen3moe-tinyshape", "bench"), "Q4_K_M", True),
    "granite-tiny": (_catalog("granite-4.0-h-tiny"), "Q4_K_M", True),
    "granite-tiny-dense": (lambda: _variant("granite-4.0-h-tiny", num_local_experts=0, shared_intermediate_size=4096),
                           "Q4_K_M", True),
    "lfm2-1.2b": (_catalog("lfm2-1.2b"), "Q4_K_M", True),
    "qwen3.5-4b": (_catalog("qwen3.5-4b"), "Q4_K_M", True),
    # held out: other types (kernels), sizes and layouts
    "llama3.2-1b-Q8_0": (_catalog("llama3.2-1b"), "Q8_0", False),
    "llama3.2-1b-Q6_K": (_catalog("llama3.2-1b"), "Q6_K", False),
    "llama3.2-1b-Q5_K_M": (_catalog("llama3.2-1b"), "Q5_K_M", False),
    "llama3.2-1b-Q4_0": (_catalog("llama3.2-1b"), "Q4_0", False),
    "llama3.2-1b-IQ4_XS": (_catalog("llama3.2-1b"), "IQ4_XS", False),
    "qwen2.5-1.5b": (_catalog("qwen2.5-1.5b"), "Q4_K_M", False),
    "smollm2-360m-Q6_K": (_catalog("smollm2-360m"), "Q6_K", False),
    "mixtral-8x7b-4L": (lambda: _variant("mixtral-8x7b", num_hidden_layers=4), "Q4_K_M", False),
    "phi3-mini-8L": (lambda: _variant("phi3-mini-4k", num_hidden_layers=8), "Q4_K_M", False),
}


def case_spec(name: str) -> ModelSpec:
    """The case's spec with the types its twin holds."""
    make, ftype, _ = CASES[name]
    m = make()
    return m.with_types(ftype_tensor_types(m, ftype))


def medians(rows: list[dict]) -> dict[str, dict]:
    """Per case: the median tg and pp over its rounds, with the case's fixed facts."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("ok"):
            by.setdefault(r["case"], []).append(r)
    return {c: rs[0] | {"tg_tps": median(r["tg_tps"] for r in rs), "pp_tps": median(r["pp_tps"] for r in rs),
                        "rounds": len(rs), "ram_copy_gbps": median(r["ram_copy_gbps"] for r in rs)}
            for c, rs in by.items()}


def fit(rows: list[dict]) -> None:
    """Least squares, relative errors, over the fit cases: decode s/token = bytes/bw + nodes x t_node;
    prefill s/token = 2 x matmul params / FLOPS + nodes x t_node_pp (nodes as the estimator predicts them)."""
    import numpy as np

    from planner.estimate.graph import layer_nodes
    ms = [r for r in medians(rows).values() if CASES.get(r["case"], (0, 0, False))[2]]
    nodes = [sum(layer_nodes(case_spec(r["case"]), True)) for r in ms]
    mm = [case_spec(r["case"]).n_matmul_params for r in ms]
    tg = np.array([1 / r["tg_tps"] for r in ms])
    pp = np.array([1 / r["pp_tps"] for r in ms])
    for what, x, y in (("decode", np.c_[[r["read_bytes_per_token"] for r in ms], nodes], tg),
                       ("prefill", np.c_[[2 * p for p in mm], nodes], pp)):
        c, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
        err = (x @ c - y) / y
        copy_bw = median(r["ram_copy_gbps"] for r in ms)
        rate = 1 / c[0] / 1e9
        first = (f"{rate:.1f} GB/s effective = {rate / copy_bw:.2f} x the copy test ({copy_bw} GB/s)"
                 if what == "decode" else f"{rate:.0f} GFLOPS")
        print(f"{what}: {first}, {c[1] * 1e6:.2f} us per graph node; rms {np.sqrt(np.mean(err ** 2)):.1%}, "
              f"max {np.max(np.abs(err)):.1%} over {len(ms)} cases")


def measure(rounds: int, names: list[str], twins: str) -> None:
    from planner.verify.probe import run_probe
    from planner.verify.run import probe_config
    from planner.verify.twin import write_twin
    os.makedirs(twins, exist_ok=True)
    paths = {}
    for name in names:
        p = os.path.join(twins, f"{name}-{CASES[name][1]}.gguf")
        if not os.path.exists(p):
            write_twin(case_spec(name), p, fill="random")
        paths[name] = p
    with open(OUT, "a") as out:
        for rnd in range(rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order[::-1] if rnd % 2 else order:
                hw = resolve_target("auto")  # the copy test at the time of the run
                spec = load_gguf(paths[name])
                reads = sum(memory_breakdown(spec, hw, OPTS).read_per_token.values())
                r = run_probe(probe_config(paths[name], OPTS, pp=256, tg=64, reps=3, depth=0), timeout_s=900)
                row = dict(case=name, ftype=CASES[name][1], round=rnd, time=round(time.time()), ok=r.get("ok"),
                           read_bytes_per_token=reads, n_layers=spec.n_layers, graph_nodes=r.get("graph_nodes"),
                           tg_tps=r.get("tg_tps"), pp_tps=r.get("pp_tps"), ram_copy_gbps=hw.ram.bandwidth_gbps,
                           cpu=hw.cpu.model, cores=hw.cpu.cores, error=r.get("error"))
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
                out.flush()


def main(argv: list[str]) -> int:
    if "--fit" in argv:
        fit([json.loads(line) for line in open(OUT)])
        return 0
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 3
    names = argv[argv.index("--cases") + 1].split(",") if "--cases" in argv else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(CASES)}", file=sys.stderr)
        return 2
    twins = (argv[argv.index("--twins") + 1] if "--twins" in argv
             else os.path.join(tempfile.gettempdir(), "cpu-decode-twins"))
    measure(rounds, names, twins)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
