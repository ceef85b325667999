"""Measure CPU decode/prefill on this machine for the estimator's CPU constants.

Usage: python -m bench.cpu_decode [--rounds N] [--cases a,b] [--twins DIR]   (about 15 min a round)
       python -m bench.cpu_decode --fit [--write]
Writes bench/data/cpu-decode.jsonl (appends: one row per case and round); --fit --write writes
planner/data/cpu_kernels.yaml (each ggml type's CPU kernel rates) and prints backends.yaml's CPU constants.

Shape twins (ggml-quantized random blocks, so every byte is real) of dense, MoE and hybrid layouts
are written once, then timed in N rounds, each over every case in a rotated order (reversed on odd
rounds), like llama-bench: a warm-up, then 3 runs of pp256 and of tg64, all cores. This shared
2-core box drifts by 10-20% within an hour and from day to day, so a case is its median over the
rounds, and every case of a round is measured within ~10 minutes of the others.
Each row records the bytes the estimator says a token reads, llama.cpp's graph node count (its
reserve log) and the copy-test bandwidth of the profile, from which planner/data/backends.yaml's
CPU constants follow (`--fit` prints that least-squares fit over the cases marked "fit" and the
one-type "type" twins); the "held out" cases check it.
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
from planner.profile.hardware import CPU as CPUSpec
from planner.profile.hardware import RAM, HardwareProfile
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

# case -> (spec, ftype or one ggml type, role): "fit" (backends.yaml's constants), "held out" (checks them),
# "type" (every weight matrix in one ggml type: that type's kernel rate, planner/data/cpu_types.yaml)
CASES = {
    "llama3.2-1b": (_catalog("llama3.2-1b"), "Q4_K_M", "fit"),
    "smollm2-135m": (_catalog("smollm2-135m"), "Q4_K_M", "fit"),
    "qwen3-0.6b": (_catalog("qwen3-0.6b"), "Q4_K_M", "fit"),
    "gemma3-1b": (_catalog("gemma3-1b"), "Q4_K_M", "fit"),
    "llama3.1-8b-8L": (lambda: _variant("llama3.1-8b", num_hidden_layers=8), "Q4_K_M", "fit"),
    "qwen3-30b-a3b-12L": (lambda: _variant("qwen3-30b-a3b", num_hidden_layers=12), "Q4_K_M", "fit"),
    "gpt-oss-20b-6L": (lambda: _variant("gpt-oss-20b", num_hidden_layers=6), "MXFP4_MOE", "fit"),
    "qwen3moe-tinyshape": (lambda: spec_from_hf_config(_QWEN3MOE_SMALL, "qwen3moe-tinyshape", "bench"), "Q4_K_M",
                           "fit"),
    "granite-tiny": (_catalog("granite-4.0-h-tiny"), "Q4_K_M", "fit"),
    "granite-tiny-dense": (lambda: _variant("granite-4.0-h-tiny", num_local_experts=0, shared_intermediate_size=4096),
                           "Q4_K_M", "fit"),
    "lfm2-1.2b": (_catalog("lfm2-1.2b"), "Q4_K_M", "fit"),
    "qwen3.5-4b": (_catalog("qwen3.5-4b"), "Q4_K_M", "fit"),
    # held out: other types (kernels), sizes and layouts
    "llama3.2-1b-Q8_0": (_catalog("llama3.2-1b"), "Q8_0", "held out"),
    "llama3.2-1b-Q6_K": (_catalog("llama3.2-1b"), "Q6_K", "held out"),
    "llama3.2-1b-Q5_K_M": (_catalog("llama3.2-1b"), "Q5_K_M", "held out"),
    "llama3.2-1b-Q4_0": (_catalog("llama3.2-1b"), "Q4_0", "held out"),
    "llama3.2-1b-IQ4_XS": (_catalog("llama3.2-1b"), "IQ4_XS", "held out"),
    "qwen2.5-1.5b": (_catalog("qwen2.5-1.5b"), "Q4_K_M", "held out"),
    "smollm2-360m-Q6_K": (_catalog("smollm2-360m"), "Q6_K", "held out"),
    "mixtral-8x7b-4L": (lambda: _variant("mixtral-8x7b", num_hidden_layers=4), "Q4_K_M", "held out"),
    "phi3-mini-8L": (lambda: _variant("phi3-mini-4k", num_hidden_layers=8), "Q4_K_M", "held out"),
}
# one kernel at a time: 4 layers of Mistral-7B (and its 32K output matrix) with every matrix in that type
TYPES = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "IQ4_NL", "IQ4_XS", "MXFP4",
         "Q3_K", "IQ3_S", "IQ3_XXS", "Q2_K", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ2_0", "TQ1_0")
CASES |= {f"mistral-4L-{t}": (lambda: _variant("mistral-7b", num_hidden_layers=4), t, "type") for t in TYPES}


def case_spec(name: str) -> ModelSpec:
    """The case's spec with the types its twin holds."""
    make, ftype, role = CASES[name]
    m = make()
    if role == "type":
        return m.with_types({t.name: ftype for t in m.tensors if len(t.shape) >= 2})
    return m.with_types(ftype_tensor_types(m, ftype))


def medians(rows: list[dict]) -> dict[str, dict]:
    """Per case: the median tg and pp over its rounds, with the case's fixed facts."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("ok"):
            by.setdefault(r["case"], []).append(r)
    return {c: rs[0] | {"tg_tps": median(r["tg_tps"] for r in rs), "pp_tps": median(r["pp_tps"] for r in rs),
                        "rounds": len(rs), "ram_copy_gbps": round(median(r["ram_copy_gbps"] for r in rs), 1)}
            for c, rs in by.items()}


def box(row: dict) -> HardwareProfile:
    """The measured box as the estimator sees it: its cores, AVX2, and the copy test taken with the row."""
    return HardwareProfile(cpu=CPUSpec(model=row["cpu"], cores=row["cores"], threads=row["cores"],
                                       flags=["avx", "avx2", "fma", "f16c"]),
                           ram=RAM(total_bytes=24 << 30, bandwidth_gbps=row["ram_copy_gbps"],
                                   bandwidth_source="measured: single-thread 64 MiB copy test"))


def _facts(row: dict) -> tuple[dict[str, int], int, dict[tuple[str, bool], int], float]:
    """(weight bytes a token reads by type, other bytes it reads, weights a prefill token multiplies by (type,
    expert), graph nodes), as the estimator counts them."""
    from planner.estimate.graph import layer_nodes
    from planner.estimate.memory import matmul_types
    from planner.estimate.placement import CPU
    spec = case_spec(row["case"])
    b = memory_breakdown(spec, box(row), OPTS)
    typed = b.read_types.get(CPU, {})
    return typed, b.read_per_token.get(CPU, 0) - sum(typed.values()), matmul_types(spec), \
        sum(layer_nodes(spec, OPTS.flash_attn))


def fit(rows: list[dict]) -> dict:
    """The CPU constants, by least squares on relative errors (nodes as the estimator predicts them).

    The box drifts 10-20% within the hour, so the "type" twins (one ggml type each, timed in the same rounds)
    give each type's kernel speed *relative to Q4_K* (per round, then the median), and all of them with the "fit"
    cases (mixed types, dense, MoE, hybrid; 6 rounds in another hour) the absolute level: decode s/token =
    Σ_T bytes_T / (cores x k_T x r) + nodes x t_node, prefill s/token = Σ_T 2 x weights_T / (cores x p_T x g)
    + nodes x t_node_pp, where each type's read rate is capped by the memory: the highest rate any twin reached
    (F16's) over its copy test.
    Prints what planner/data/cpu_kernels.yaml and backends.yaml hold, and returns it."""
    import numpy as np

    role = {c: v[2] for c, v in CASES.items()}
    typed_rows = [r for r in rows if r.get("ok") and role.get(r["case"]) == "type"]
    fits = [r for r in medians(rows).values() if role.get(r["case"]) in ("fit", "type")]
    facts = {c: _facts(next(r for r in rows if r["case"] == c)) for c in {r["case"] for r in typed_rows + fits}}
    t_node, t_node_pp, eff = 5.37e-6, 1.85e-6, 1.0
    for _ in range(4):
        x_dec: dict[str, list[float]] = {}  # bytes/s, then relative to Q4_K in the same round
        x_pre: dict[str, list[float]] = {}
        for rnd in sorted({r["round"] for r in typed_rows}):
            got = {}
            for r in (r for r in typed_rows if r["round"] == rnd):
                typed, other, mm, nodes = facts[r["case"]]
                ty, bw = r["ftype"], r["ram_copy_gbps"] * 1e9
                got[ty] = (typed[ty] / (1 / r["tg_tps"] - nodes * t_node - other / (eff * bw)),
                           2 * mm[ty, False] / (1 / r["pp_tps"] - nodes * t_node_pp), bw)
            if "Q4_K" not in got:
                continue
            for ty, (xd, xp, bw) in got.items():
                x_dec.setdefault(ty, []).append(xd / got["Q4_K"][0])
                x_pre.setdefault(ty, []).append(xp / got["Q4_K"][1])
                eff = max(eff, xd / bw)
        rel_d = {ty: median(v) for ty, v in x_dec.items()}
        rel_p = {ty: median(v) for ty, v in x_pre.items()}
        # absolute level and node costs from all cases, mixed and one-type (linear least squares, relative errors)
        y = np.array([1 / r["tg_tps"] for r in fits])
        known = np.array([facts[r["case"]][1] / (eff * r["ram_copy_gbps"] * 1e9) for r in fits])  # states, KV
        n = np.array([facts[r["case"]][3] for r in fits])
        a = np.array([sum(v / rel_d.get(k, 1.0) for k, v in facts[r["case"]][0].items()) / r["cores"] for r in fits])
        c, *_ = np.linalg.lstsq(np.c_[a, n] / y[:, None], 1 - known / y, rcond=None)
        q4k_gbps, t_node = 1 / c[0] / 1e9, float(c[1])
        err_dec = (np.c_[a, n] @ c + known - y) / y
        # prefill: dense and expert (mul_mat_id) products apart, each type at its relative rate
        yp = np.array([1 / r["pp_tps"] for r in fits])
        ap = np.array([[sum(2 * v / rel_p.get(ty, 1.0) for (ty, x), v in facts[r["case"]][2].items() if x == exp)
                        / r["cores"] for exp in (False, True)] for r in fits])
        xp = np.c_[ap, n]
        cp, *_ = np.linalg.lstsq(xp / yp[:, None], np.ones_like(yp), rcond=None)
        q4k_gflops, expert_eff, t_node_pp = 1 / cp[0] / 1e9, float(cp[0] / cp[1]), float(cp[2])
        err_pp = (xp @ cp - yp) / yp
    copy_bw = median(r["ram_copy_gbps"] for r in fits)
    print(f"memory: reads reach {eff:.2f} x the copy test (the fastest type twin)")
    print(f"decode: Q4_K {q4k_gbps:.2f} GB/s per core, {t_node * 1e6:.2f} us per node; rms "
          f"{np.sqrt(np.mean(err_dec ** 2)):.1%}, max {np.max(np.abs(err_dec)):.1%} over {len(fits)} cases "
          f"(copy test median {copy_bw} GB/s)")
    print(f"prefill: Q4_K {q4k_gflops:.1f} GFLOPS per core, experts (mul_mat_id) at {expert_eff:.2f} of it, "
          f"{t_node_pp * 1e6:.2f} us per node and token; rms "
          f"{np.sqrt(np.mean(err_pp ** 2)):.1%}, max {np.max(np.abs(err_pp)):.1%}")
    for case, e1, e2 in zip([r["case"] for r in fits], err_dec, err_pp, strict=True):
        if role[case] == "type":
            continue  # their level is in the figures above; their types' rates below
        print(f"  {case:24s} decode {e1:+.1%} prefill {e2:+.1%}")
    out = {ty: dict(decode_gbps_per_core=round(float(rel_d[ty] * q4k_gbps), 2),
                    prefill_gflops_per_core=round(float(rel_p[ty] * q4k_gflops), 1)) for ty in rel_d}
    print(f"types, relative to Q4_K over {len(x_dec.get('Q4_K', []))} rounds (decode, prefill) -> per core:")
    for ty, v in sorted(out.items(), key=lambda kv: -kv[1]["decode_gbps_per_core"]):
        print(f"  {ty:8s} {rel_d[ty]:5.2f} {rel_p[ty]:5.2f} -> {v['decode_gbps_per_core']:6.2f} GB/s "
              f"{v['prefill_gflops_per_core']:6.1f} GFLOPS")
    return dict(memory_vs_copy_test=round(float(eff), 2), decode_node_us=round(t_node * 1e6, 2),
                prefill_node_us=round(t_node_pp * 1e6, 2), prefill_expert_efficiency=round(expert_eff, 2), types=out)


KERNELS = os.path.join(os.path.dirname(__file__), "..", "planner", "data", "cpu_kernels.yaml")


def write_kernels(got: dict) -> None:
    """planner/data/cpu_kernels.yaml from a fit (the file the estimator reads; its sources in its header)."""
    import yaml
    types = got["types"]
    doc = {
        "source": (
            "bench/cpu_decode.py --fit --write on bench/data/cpu-decode.jsonl: on a 2-core AMD EPYC VM (AVX2, "
            "llama.cpp's CPU backend with its repacking), twins of 4 Mistral-7B layers with every matrix in one type "
            "(mistral-4L-<type>), timed in the same rounds, give each type's speed relative to Q4_K (median over the "
            "rounds); they and the fit cases (12 mixed-type twins: dense, MoE, hybrid, measured in another hour) give "
            "the absolute level. decode: the "
            "GB/s of that type's weights one core reads and dots during decode (a matrix-vector product is "
            "memory-bound only where cores x this exceeds the memory's rate); prefill: the GFLOPS one core reaches "
            "on that type's matrix-matrix products (ubatch 512, pp256). Other ISAs scale by their SIMD width "
            "(throughput.py _isa_scale). F16 reads at the memory's rate here (backends.yaml cpu "
            "decode_bw_efficiency_measured): its kernel may be faster. Rows of other widths run at other rates "
            "(Llama-3.2-1B's 2048-wide matrices prefill Q6_K/Q5_K/Q4_0/IQ4_XS 13-23% slower than these say)."),
        "default_prefill_gflops_per_core": types["F16"]["prefill_gflops_per_core"],
        "default_source": "types not measured (F32, I-types, NVFP4...): prefill at F16's rate; decode memory-bound",
        "types": {ty: types[ty] for ty in sorted(types, key=lambda t: -types[t]["decode_gbps_per_core"])},
    }
    with open(KERNELS, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False, width=120)
    print(f"wrote {os.path.normpath(KERNELS)}")


def measure(rounds: int, names: list[str], twins: str) -> None:
    from planner.verify.child import run_probe
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
        got = fit([json.loads(line) for line in open(OUT)])
        if "--write" in argv:
            write_kernels(got)
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
