"""Launch configs from a plan: llama-server, llama-quantize, Ollama Modelfile, llama-cpp-python
kwargs, YAML/JSON. Flags are those of the vendored llama.cpp (2026-10): --load-mode replaces
--mlock/--no-mmap there; the tests check every flag against its argument list."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import defaultdict

import yaml

from planner.estimate.memory import SKIPS_MTP
from planner.estimate.placement import CPU, tensor_devices
from planner.estimate.quant_mix import allows_quantization
from planner.model.ggml_types import type_id
from planner.model.resolve import local_gguf
from planner.model.spec import ModelSpec
from planner.optimize.plan import PlanOption

KINDS = ("llama-server", "llama-cli", "llama-quantize", "ollama", "llama-cpp-python", "yaml", "json")
FILE_NAMES = {"ollama": "Modelfile", "yaml": "plan.yaml", "json": "plan.json", "llama-cpp-python": "run.py"}


def file_name(kind: str) -> str:
    """The file a user saves an export of this kind as (a shell line: KIND.sh)."""
    return FILE_NAMES.get(kind, f"{kind}.sh")
OLLAMA_KV = ("f16", "q8_0", "q4_0")  # what OLLAMA_KV_CACHE_TYPE accepts


def _ngl(opt: PlanOption, model: ModelSpec) -> str:
    n = opt.options.n_gpu_layers
    return "all" if n < 0 or n > model.n_layers else str(n)


def llama_server(opt: PlanOption, model: ModelSpec, model_path: str, threads: int | None = None,
                 binary: str = "llama-server") -> str:
    o = opt.options
    args = [binary, "-m", model_path, "-c", str(o.n_ctx * o.n_seq), "-ngl", _ngl(opt, model),
            "-fa", "on" if o.flash_attn else "off", "-ctk", o.cache_type_k, "-ctv", o.cache_type_v,
            "-b", str(o.n_batch), "-ub", str(o.n_ubatch)]
    if o.n_seq > 1:
        args += ["-np", str(o.n_seq)]
    if o.tensor_split:
        args += ["-ts", ",".join(f"{x:g}" for x in o.tensor_split)]
    if o.cpu_moe:
        args += ["--cpu-moe"]
    elif o.n_cpu_moe:
        args += ["--n-cpu-moe", str(o.n_cpu_moe)]
    for pat in o.override_tensor:
        args += ["-ot", f"{pat}=CPU"]
    if threads:
        args += ["-t", str(threads)]
    if not o.repack:
        args += ["--no-repack"]
    args += ["--load-mode", "mlock" if o.mlock and not o.mmap else "mmap+mlock" if o.mlock else "mmap" if o.mmap else "none"]
    return shlex.join(args)


def _layers_regex(layers: list[int]) -> str:
    return "(" + "|".join(str(i) for i in sorted(layers)) + ")"


def tensor_type_patterns(opt: PlanOption | dict[str, str], model: ModelSpec) -> list[tuple[str, str]]:
    """--tensor-type REGEX=TYPE for every quantizable block tensor, grouped by role and type.
    The verifier quantizes with these same patterns, so a wrong pattern fails its type check."""
    types = opt if isinstance(opt, dict) else opt.types
    by_role: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for t in model.tensors:
        if t.layer is None or not allows_quantization(t):
            continue
        by_role[t.role][types[t.name]].append(t.layer)
    out = []
    for role, types in sorted(by_role.items()):
        for ty, layers in sorted(types.items(), key=lambda kv: -len(kv[1])):
            name = re.escape(f".{role}.weight")
            pat = rf"\.{role}\.weight$" if len(types) == 1 else rf"^blk\.{_layers_regex(layers)}{name}$"
            out.append((pat, ty.lower()))
    return out


def planned_file(model: ModelSpec, opt: PlanOption) -> tuple[str, bool]:
    """The GGUF the launch lines name, and whether it is the source file as it is: a local GGUF
    whose plan keeps every tensor's type needs no quantizing."""
    src = local_gguf(model.source)
    if src and all(opt.types.get(t.name, t.type) == t.type for t in model.tensors):
        return src, True
    return f"{model.name.split('/')[-1].removesuffix('.gguf')}-plan.gguf", False


def llama_quantize(opt: PlanOption, model: ModelSpec, src: str, dst: str, imatrix: str | None = None) -> str:
    counts: dict[str, int] = defaultdict(int)
    for t in model.tensors:
        if allows_quantization(t):
            counts[opt.types[t.name]] += t.n_elements
    base = max(counts, key=counts.get)
    args = ["llama-quantize"]
    if any(t.origin for t in model.tensors):
        args.append("--allow-requantize")  # the source is quantized already (llama-quant.cpp refuses otherwise)
    if imatrix or "imatrix" in opt.label:
        args += ["--imatrix", imatrix or "imatrix.gguf"]
    args += ["--token-embedding-type", opt.types["token_embd.weight"].lower()]
    if "output.weight" in opt.types:
        args += ["--output-tensor-type", opt.types["output.weight"].lower()]
    for pat, ty in tensor_type_patterns(opt, model):
        args += ["--tensor-type", f"{pat}={ty}"]
    args += [src, dst, base]
    return shlex.join(args)


def ollama(opt: PlanOption, model: ModelSpec, model_path: str, threads: int | None = None) -> str:
    o = opt.options
    n = o.n_gpu_layers
    lines = [f"# Plan for {model.name}: {opt.why}", f"FROM {model_path}",
             f"PARAMETER num_ctx {o.n_ctx}", f"PARAMETER num_gpu {model.n_layers + 1 if n < 0 else n}",
             f"PARAMETER num_batch {o.n_ubatch}"]
    if threads:
        lines.append(f"PARAMETER num_thread {threads}")
    env = [f"OLLAMA_FLASH_ATTENTION={1 if o.flash_attn else 0}"]
    kv = o.cache_type_k if o.cache_type_k in OLLAMA_KV else "f16"
    if kv != "f16":
        env.append(f"OLLAMA_KV_CACHE_TYPE={kv}")
    lines.append("# Ollama reads these from the server's environment, not the Modelfile:")
    lines.append("#   " + " ".join(env) + " ollama serve")
    if o.cpu_moe or o.n_cpu_moe or o.override_tensor or o.tensor_split:
        lines.append("# This plan keeps experts/tensors on the CPU or splits GPUs, which a Modelfile cannot "
                     "say: run llama-server with the plan's command instead.")
    return "\n".join(lines) + "\n"


def llama_cpp_python(opt: PlanOption, model: ModelSpec, model_path: str) -> dict:
    o = opt.options
    kw = {"model_path": model_path, "n_ctx": o.n_ctx, "n_gpu_layers": o.n_gpu_layers, "flash_attn": o.flash_attn,
          "n_batch": o.n_batch, "n_ubatch": o.n_ubatch, "use_mmap": o.mmap, "use_mlock": o.mlock,
          "swa_full": o.swa_full,
          "type_k": type_id(o.cache_type_k),
          "type_v": type_id(o.cache_type_v)}
    if o.tensor_split:
        kw["tensor_split"] = o.tensor_split
    return kw


def plan_dict(opt: PlanOption, model: ModelSpec, basis: str = "priors: planner/data/quality.yaml") -> dict:
    d = opt.estimate.to_json()
    d.update({"model": model.name, "source": model.source, "label": opt.label, "why": opt.why,
              "options": opt.options.model_dump(), "bits_per_weight": opt.bits_per_weight,
              "quality": {"kld": opt.predicted_kld, "basis": basis}})
    devs = tensor_devices(model, sum(1 for x in opt.estimate.devices if x.kind == "gpu"), opt.options,
                          [x.capacity_bytes for x in opt.estimate.devices if x.kind == "gpu"])
    names = [x.name for x in opt.estimate.devices]
    # an MTP block that the loader skips (SKIPS_MTP) is in the file but on no device
    first_skipped = model.n_layers - model.n_nextn if model.architecture in SKIPS_MTP else model.n_layers

    def device(t) -> str | None:
        if t.layer is not None and t.layer >= first_skipped:
            return None
        return names[-1] if devs[t.name] == CPU else names[devs[t.name]]
    d["tensors"] = [{"name": t.name, "shape": t.shape, "type": opt.types.get(t.name, t.type), "device": device(t)}
                    for t in model.tensors]
    return d


def render(kind: str, opt: PlanOption, model: ModelSpec, model_path: str, threads: int | None = None,
           src: str | None = None, basis: str = "priors: planner/data/quality.yaml", imatrix: str | None = None) -> str:
    if kind in ("llama-server", "llama-cli"):
        return llama_server(opt, model, model_path, threads, binary=kind) + "\n"
    if kind == "llama-quantize":
        src = src or local_gguf(model.source) or model_path.replace(".gguf", "-F16.gguf")
        if os.path.abspath(src) == os.path.abspath(model_path):
            return (f"# nothing to quantize: the plan keeps every tensor of {os.path.basename(src)} at its type;"
                    " run the file as it is\n")
        return llama_quantize(opt, model, src, model_path, imatrix) + "\n"
    if kind == "ollama":
        return ollama(opt, model, model_path, threads)
    if kind == "llama-cpp-python":
        kw = llama_cpp_python(opt, model, model_path)
        body = "".join(f"    {k}={v!r},\n" for k, v in kw.items())
        return f"from llama_cpp import Llama\n\nllm = Llama(\n{body})\n"
    if kind == "json":
        return json.dumps(plan_dict(opt, model, basis), indent=1) + "\n"
    if kind == "yaml":
        return yaml.safe_dump(plan_dict(opt, model, basis), sort_keys=False)
    raise ValueError(kind)
