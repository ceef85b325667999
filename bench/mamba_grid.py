"""Compute buffers of Mamba-1/2 and hybrid shape twins from llama.cpp's no_alloc dry runs: the data
behind the SSM phase and the hybrid terms of planner/estimate/compute.py. Hybrids: Granite-4.0-H
(Mamba-2 mixers, sparse attention, dense or MoE FFNs), Nemotron-H (Mamba-2, attention and FFN-only
layers), Jamba (Mamba-1, attention, MoE every other layer), LFM2 (short convolutions and attention),
Falcon-H1 (attention and Mamba-2 side by side), Qwen3.5/Qwen3-Next (gated delta net), Kimi-Linear
(Kimi Delta Attention and MLA) and RWKV-7 (no attention); small twins over a grid, and twins at the
real models' sizes (sparse files: a dry run reads no weights). Writes bench/data/cpu-mamba-compute.jsonl
and prints each case with the estimate; exits 1 when one is off by more than 5%.

The hybrid twins have 16 layers with attention at layers 4 and 12: real hybrids put one attention
layer in 6-10 (Granite-4.0-H, Jamba, Nemotron-H), and ggml-alloc's peak with few layers differs
(4-layer twins measure up to 1 MiB less, 8-layer twins 0.25 MiB less; 16 and 32 layers alike).

Usage: python -m bench.mamba_grid
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from planner.estimate import RuntimeOptions, estimate
from planner.model import load_gguf
from planner.model.hybrid import (
    falcon_h1_spec,
    hybrid_spec,
    jamba_spec,
    kimi_linear_spec,
    lfm2_spec,
    mamba_spec,
    nemotron_h_spec,
    qwen35_spec,
    rwkv7_spec,
)
from planner.profile.targets import resolve_target
from planner.verify.child import run_probe
from planner.verify.twin import write_twin

CASES = [(2, dict(e=256, d_inner=512, d_state=64, n_group=2, head=64)),
         (2, dict(e=256, d_inner=1024, d_state=64, n_group=2, head=64)),
         (2, dict(e=256, d_inner=512, d_state=128, n_group=2, head=64)),
         (2, dict(e=256, d_inner=512, d_state=64, n_group=4, head=64)),
         (2, dict(e=512, d_inner=512, d_state=64, n_group=2, head=64)),
         (2, dict(e=256, d_inner=512, d_state=64, n_group=2, head=32)),
         (2, dict(e=256, d_inner=512, d_state=64, n_group=1, head=64)),
         (2, dict(e=2560, d_inner=5120, d_state=128, n_group=1, head=64, vocab=50288)),
         (1, dict(e=256, d_inner=512, d_state=16)), (1, dict(e=256, d_inner=512, d_state=32)),
         (1, dict(e=384, d_inner=768, d_state=16)), (1, dict(e=512, d_inner=1024, d_state=16)),
         (1, dict(e=1024, d_inner=2048, d_state=16))]
LAYOUT = dict(n_layer=16, attn_layers=(4, 12), vocab=256)
HYBRID = [dict(), dict(n_ff=1536), dict(n_ff=3072), dict(e=512), dict(e=512, n_ff=3072),
          dict(d_state=128, n_group=2), dict(head=32), dict(n_ff=3072, n_head=8, n_head_kv=2),
          dict(n_expert=8, n_expert_used=2, n_ff=512), dict(n_expert=16, n_expert_used=4, n_ff=256, shared_ff=512),
          dict(n_expert=32, n_expert_used=8, n_ff=384, shared_ff=1024, e=512), dict(vocab=8192)]

# Other hybrids, 16 (Jamba 8) layers with sparse attention as the real ones have
NEMOTRON = "M-M-M-M*-M-M-M*-"  # hybrid_override_pattern: Mamba-2, FFN-only, attention
LFM2 = "CCACCACCACACACAC"      # LFM2-1.2B's layer types: short convolution, attention
OTHER = {
    "nemotron_h": (lambda **k: nemotron_h_spec(**dict(pattern=NEMOTRON) | k),
                   [{}, dict(n_ff=3072), dict(e=512), dict(d_state=128, n_ff=256), dict(vocab=8192)]),
    "jamba": (jamba_spec, [{}, dict(n_ff=3072), dict(n_expert=8, n_expert_used=2), dict(e=512), dict(vocab=8192),
                           dict(moe_layers=())]),
    "lfm2": (lambda **k: lfm2_spec(**dict(pattern=LFM2) | k),
             [{}, dict(n_ff=3072), dict(e=512), dict(vocab=8192), dict(n_ff=256)]),
    # Falcon-H1: attention and a Mamba-2 mixer side by side in every layer (4 layers: all alike)
    "falcon-h1": (falcon_h1_spec, [{}, dict(e=512), dict(e=512, n_ff=1536), dict(d_inner=1024), dict(n_ff=3072)]),
    # Qwen3.5 / Qwen3-Next: gated delta net, attention every 4th layer, an MTP block (not loaded)
    "qwen35": (lambda **k: qwen35_spec(**dict(n_mtp=1) | k),
               [{}, dict(e=512), dict(d_state=128), dict(n_ff=3072), dict(n_ff=256, n_v_heads=16),
                dict(n_expert=8, n_expert_used=2, expert_ff=256, shared_ff=512),
                dict(next_=True, n_mtp=0, n_expert=16, n_expert_used=4, expert_ff=256, shared_ff=256)]),
    # Kimi-Linear: Kimi Delta Attention layers and MLA every 4th, a dense layer 0 then MoE
    "kimi-linear": (lambda **k: kimi_linear_spec(**dict(pattern="KKKAKKKA") | k),
                    [{}, dict(e=512), dict(n_ff=256, expert_ff=64, n_head=8, kda_head=64),
                     dict(n_ff=256, expert_ff=64, n_head=16, kda_head=64), dict(expert_ff=512), dict(vocab=8192)]),
    # RWKV-7: no attention, so one context; the grid's n_ctx only repeats it
    "rwkv7": (rwkv7_spec, [{}, dict(e=512), dict(e=1024), dict(head_size=128), dict(n_ff=4096), dict(vocab=8192),
                           dict(lora_decay=128)]),
}
# At about the real models' sizes (Nemotron-H-8B-Base: its config.json; the others as released, to our best
# knowledge); the twins' weights are sparse zeros
REAL = {
    "Nemotron-H-8B": lambda: nemotron_h_spec("M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-", e=4096,
                                             vocab=131072, d_state=128, n_group=8, head=64, n_head=32, n_head_kv=8,
                                             head_dim=128, n_ff=21504),
    "Jamba-Mini": lambda: jamba_spec(32, attn_layers=tuple(range(4, 32, 8)), moe_layers=tuple(range(1, 32, 2)),
                                     e=4096, vocab=65536, d_state=16, n_head=32, n_head_kv=8, n_ff=14336,
                                     n_expert=16, n_expert_used=2),
    "LFM2-1.2B": lambda: lfm2_spec(LFM2, e=2048, vocab=65536, n_head=32, n_head_kv=8, n_ff=8192),
    "Granite-4.0-H-Tiny": lambda: hybrid_spec(e=1536, n_layer=40, attn_layers=(5, 15, 25, 35), vocab=100352,
                                              d_state=128, n_group=1, head=64, n_head=12, n_head_kv=4, head_dim=128,
                                              n_ff=512, n_expert=64, n_expert_used=6, shared_ff=1024),
    "Falcon-H1-1.5B": lambda: falcon_h1_spec(e=2048, n_layer=24, vocab=65537, d_inner=3072, d_state=256, n_group=1,
                                             head=64, n_head=8, n_head_kv=2, head_dim=128, n_ff=4608),
    "Qwen3.5-4B": lambda: qwen35_spec(n_layer=32, e=2560, vocab=248320, n_head=16, n_head_kv=4, head_dim=256, n_ff=9216,
                                      d_state=128, n_k_heads=16, n_v_heads=32, n_mtp=1, tied=True),
    "Qwen3.5-35B-A3B": lambda: qwen35_spec(n_layer=40, e=2048, vocab=248320, n_head=16, n_head_kv=2, head_dim=256,
                                           d_state=128, n_k_heads=16, n_v_heads=32, n_expert=256, n_expert_used=8,
                                           expert_ff=512, shared_ff=512, n_mtp=1),
    "Kimi-Linear-48B-A3B": lambda: kimi_linear_spec("KKKA" * 6 + "KKK", e=2304, vocab=163840, n_head=32, kda_head=128,
                                                    kv_lora=512, rope=64, nope=128, v_head=128, n_ff=9216,
                                                    n_expert=256, n_expert_used=8, expert_ff=1024),
    "RWKV-7 2.9B": lambda: rwkv7_spec(e=2560, n_layer=32, vocab=65536, n_ff=10240, lora_decay=96, lora_iclr=64,
                                      lora_value=32, lora_gate=320),
}
GRID = ((1024, 512), (4096, 512), (4096, 256), (16384, 512))
REAL_GRID = ((4096, 512, True), (32768, 512, True), (8192, 512, False), (4096, 2048, True))


def _case(hw, path: str, ctx: int, ub: int, n_seq: int, fa: bool) -> tuple[float, float]:
    r = run_probe(dict(model=path, ctx=ctx, n_ubatch=ub, n_batch=2048, fa=fa, dry=True, n_seq=n_seq), timeout_s=300)
    if not r.get("ok"):
        raise RuntimeError(r.get("error"))
    est = estimate(load_gguf(path), hw, RuntimeOptions(n_ctx=ctx, n_ubatch=ub, flash_attn=fa, n_seq=n_seq))
    return r["bufs_mib"]["CPU compute"], est.devices[-1].buffers_mib["CPU compute"]


def main() -> int:
    hw = resolve_target("auto")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.gguf")
        try:
            for version, shape in CASES:
                write_twin(mamba_spec(version, n_layer=2, **{"vocab": 256} | shape), path)
                for ub, n_seq in ((512, 1), (256, 1), (512, 4)):
                    meas, est = _case(hw, path, 4096, ub, n_seq, False)
                    rows.append(dict(version=version, **shape, ubatch=ub, n_seq=n_seq, measured_mib=meas,
                                     estimate_mib=est))
                    print(f"mamba{version} {shape} ub {ub} seqs {n_seq}: measured {meas:.2f} MiB, "
                          f"estimate {est:.2f} ({est / meas - 1:+.1%})", flush=True)
            for shape in HYBRID:
                write_twin(hybrid_spec(**LAYOUT | shape), path)
                for ctx, ub in ((1024, 512), (4096, 512), (4096, 256), (16384, 512)):
                    for fa in (True, False):
                        meas, est = _case(hw, path, ctx, ub, 1, fa)
                        rows.append(dict(arch="granitehybrid", **LAYOUT | shape, ctx=ctx, flash_attn=fa, ubatch=ub,
                                         n_seq=1, measured_mib=meas, estimate_mib=est))
                        print(f"hybrid {shape} ctx {ctx} ub {ub} fa {fa:d}: measured {meas:.2f} MiB, "
                              f"estimate {est:.2f} ({est / meas - 1:+.1%})", flush=True)
            for arch, (make, shapes) in OTHER.items():
                for shape in shapes:
                    write_twin(make(**shape), path)
                    for ctx, ub in GRID if arch != "rwkv7" else ((4096, 512), (4096, 256)):
                        for fa in (True, False) if arch != "rwkv7" else (True,):
                            meas, est = _case(hw, path, ctx, ub, 1, fa)
                            rows.append(dict(arch=arch, **shape, ctx=ctx, flash_attn=fa, ubatch=ub, n_seq=1,
                                             measured_mib=meas, estimate_mib=est))
                            print(f"{arch} {shape} ctx {ctx} ub {ub} fa {fa:d}: measured {meas:.2f} MiB, "
                                  f"estimate {est:.2f} ({est / meas - 1:+.1%})", flush=True)
            for name, make in REAL.items():
                spec = make()
                write_twin(spec, path)
                for ctx, ub, fa in REAL_GRID:
                    meas, est = _case(hw, path, ctx, ub, 1, fa)
                    rows.append(dict(arch=spec.architecture, real=name, ctx=ctx, flash_attn=fa, ubatch=ub, n_seq=1,
                                     measured_mib=meas, estimate_mib=est))
                    print(f"{name} ctx {ctx} ub {ub} fa {fa:d}: measured {meas:.2f} MiB, "
                          f"estimate {est:.2f} ({est / meas - 1:+.1%})", flush=True)
        except RuntimeError as e:
            print(f"dry run failed: {e}", file=sys.stderr)
            return 1
    worst = max(abs(r["estimate_mib"] / r["measured_mib"] - 1) for r in rows)
    out = os.path.join(os.path.dirname(__file__), "data", "cpu-mamba-compute.jsonl")
    with open(out + ".part", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(out + ".part", out)
    groups = [("mamba", [r for r in rows if "arch" not in r])]
    groups += [(a, [r for r in rows if r.get("arch") == a and "real" not in r])
               for a in ("granitehybrid", *OTHER)]
    groups.append(("real sizes", [r for r in rows if "real" in r]))
    for name, group in groups:
        errs = [r["estimate_mib"] / r["measured_mib"] - 1 for r in group]
        print(f"{name}: {sum(abs(e) <= 0.05 for e in errs)}/{len(errs)} within 5%, "
              f"from {min(errs):+.1%} to {max(errs):+.1%}")
    print(f"{len(rows)} cases, worst {worst:.1%} (goal 5%)")
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
