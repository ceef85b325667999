"""Compute buffers of Mamba-1/2 shape twins from llama.cpp's no_alloc dry runs: the data behind
the SSM phase of planner/estimate/compute.py. Writes bench/data/cpu-mamba-compute.jsonl and
prints each case with the estimate; exits 1 when one is off by more than 5%.

Usage: python -m bench.mamba_grid
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from planner.estimate import RuntimeOptions, estimate
from planner.model import load_gguf
from planner.profile.targets import resolve_target
from planner.verify.probe import run_probe
from planner.verify.twin import mamba_spec, write_twin

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


def main() -> int:
    hw = resolve_target("auto")
    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.gguf")
        for version, shape in CASES:
            write_twin(mamba_spec(version, n_layer=2, **{"vocab": 256} | shape), path)
            m = load_gguf(path)
            for ub, n_seq in ((512, 1), (256, 1), (512, 4)):
                r = run_probe(dict(model=path, ctx=4096, n_ubatch=ub, n_batch=2048, fa=False, dry=True, n_seq=n_seq),
                              timeout_s=300)
                if not r.get("ok"):
                    print(f"mamba{version} {shape}: {r.get('error')}", file=sys.stderr)
                    return 1
                est = estimate(m, hw, RuntimeOptions(n_ctx=4096, n_ubatch=ub, flash_attn=False, n_seq=n_seq))
                row = dict(version=version, **shape, ubatch=ub, n_seq=n_seq,
                           measured_mib=r["bufs_mib"]["CPU compute"],
                           estimate_mib=est.devices[-1].buffers_mib["CPU compute"])
                err = row["estimate_mib"] / row["measured_mib"] - 1
                worst = max(worst, abs(err))
                rows.append(row)
                print(f"mamba{version} {shape} ub {ub} seqs {n_seq}: measured {row['measured_mib']:.2f} MiB, "
                      f"estimate {row['estimate_mib']:.2f} ({err:+.1%})", flush=True)
    out = os.path.join(os.path.dirname(__file__), "data", "cpu-mamba-compute.jsonl")
    with open(out + ".part", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(out + ".part", out)
    print(f"{len(rows)} cases, worst {worst:.1%} (goal 5%)")
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
