"""Measure CPU decode/prefill on this machine for the estimator's CPU constants.

Usage: python -m bench.cpu_decode SMOL_F16.gguf  (writes bench/data/cpu-decode.jsonl)
       python -m bench.cpu_decode --hybrids       (replaces the hybrid rows only)
Loads SmolLM2 quantized to Q4_K_M and Q8_0 (from an F16 base) and a Llama-3.2-1B twin
(random ggml blocks) with llama-cpp-python on all cores, times pp/tg like llama-bench, and
records each run with the bytes the estimator says a token reads and the detected RAM
bandwidth (single-thread copy test), from which backends.yaml's CPU decode constants follow.
--hybrids: Q4_K_M twins of the catalog's recurrent hybrids (LFM2-1.2B, Granite-4.0-H-Tiny's MoE,
Nemotron-H-8B): the same constants on layers that read a fixed state instead of a growing cache.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from planner.estimate import RuntimeOptions
from planner.estimate.memory import memory_breakdown
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf, load_model
from planner.profile.targets import resolve_target
from planner.verify.probe import run_probe
from planner.verify.quantize import quantize
from planner.verify.run import probe_config
from planner.verify.twin import write_twin

OUT = os.path.join(os.path.dirname(__file__), "data", "cpu-decode.jsonl")


HYBRIDS = ("lfm2-1.2b", "granite-4.0-h-tiny", "nemotron-h-8b")


def _run(name: str, p: str, hw, o: RuntimeOptions, **extra) -> dict:
    spec = load_gguf(p)
    reads = sum(memory_breakdown(spec, hw, o).read_per_token.values())
    r = run_probe(probe_config(p, o, pp=256, tg=64, reps=3, depth=0), timeout_s=900)
    row = dict(case=name, **extra, read_bytes_per_token=reads, n_layers=spec.n_layers, tg_tps=r["tg_tps"],
               pp_tps=r["pp_tps"], ram_copy_gbps=hw.ram.bandwidth_gbps, cpu=hw.cpu.model, cores=hw.cpu.cores,
               effective_gbps=reads * r["tg_tps"] / 1e9)
    print(json.dumps(row), flush=True)
    return row


def hybrids() -> int:
    """This shared box's speed drifts from day to day (the same Llama-3.2-1B twin: 25.4 tok/s on the
    day the constants were fitted, 19.3 on another), so each hybrid row carries a dense reference
    measured in the same run: the accuracy check compares hybrids to dense, machine state aside."""
    hw = resolve_target("auto")
    o = RuntimeOptions(n_ctx=2048)
    rows = [json.loads(line) for line in open(OUT)] if os.path.exists(OUT) else []
    rows = [r for r in rows if r.get("model") not in HYBRIDS]
    with tempfile.TemporaryDirectory() as d:
        ref = None
        for name in ("llama3.2-1b", *HYBRIDS):
            m = load_model(name)
            m = m.with_types(ftype_tensor_types(m, "Q4_K_M"))
            p = os.path.join(d, f"{name}-Q4_K_M.gguf")
            write_twin(m, p, fill="random")
            row = _run(f"{name} twin Q4_K_M", p, hw, o, model=name)
            os.remove(p)
            if ref is None:
                ref = {k: row[k] for k in ("tg_tps", "pp_tps", "read_bytes_per_token", "n_layers", "ram_copy_gbps")}
            else:
                rows.append(row | {"ref": ref})
    with open(OUT + ".part", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(OUT + ".part", OUT)
    return 0


def main() -> int:
    if sys.argv[1:] == ["--hybrids"]:
        return hybrids()
    src = sys.argv[1]
    hw = resolve_target("auto")
    o = RuntimeOptions(n_ctx=2048)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        base = load_gguf(src)
        files = []
        for q in ("Q4_K_M", "Q8_0"):
            p = os.path.join(d, f"smol-{q}.gguf")
            quantize(src, p, base, ftype_tensor_types(base, q))
            files.append((f"SmolLM2-135M {q}", p))
        m = load_model("llama3.2-1b")
        m = m.with_types(ftype_tensor_types(m, "Q4_K_M"))
        p = os.path.join(d, "llama3.2-1b-Q4_K_M.gguf")
        write_twin(m, p, fill="random")
        files.append(("Llama-3.2-1B twin Q4_K_M", p))
        for name, p in files:
            rows.append(_run(name, p, hw, o))
    with open(OUT, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
