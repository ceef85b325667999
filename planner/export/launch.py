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

from planner.errors import PlannerError
from planner.estimate.memory import SKIPS_MTP
from planner.estimate.placement import CPU, tensor_devices
from planner.estimate.programs import program
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


# The build each form of the launch line needs. The vendored llama.cpp (llama-cpp-python 0.3.36) is
# ggml-org/llama.cpp@0c1e57098; --load-mode replaced --mlock/--no-mmap in PR #20834 (in build 10114,
# 2026-07-24: ggml-org/llama.cpp#26110); -fa takes on|off|auto since 2025-08 (ggml-org/llama.cpp#15746
# adds its numeric aliases, 2025-09-02). The legacy form (--legacy-flags) uses --no-mmap/--mlock and
# -ngl 999, which builds before #20834 accept.
_NEEDS = {"current": "llama.cpp b10114 or newer (2026-07-24: --load-mode); --legacy-flags prints the form older "
                    "builds take",
         "legacy": "llama.cpp from 2025-09 on (-fa on|off); builds after b10114 still take --mlock/--no-mmap, "
                   "with a deprecation warning (#20834)"}


def needs(legacy: bool = False) -> str:
    """The llama.cpp build a launch line's form needs."""
    return _NEEDS["legacy" if legacy else "current"]


def hf_ref(model_path: str) -> tuple[str, str] | None:
    """(ORG/REPO, QUANT) for a published file named hf.co/ORG/REPO:QUANT, else None (a local path)."""
    if not model_path.startswith("hf.co/") or ":" not in model_path:
        return None
    repo, quant = model_path.removeprefix("hf.co/").rsplit(":", 1)
    return repo, quant


def _model_args(model_path: str) -> list[str]:
    ref = hf_ref(model_path)
    return ["-hf", f"{ref[0]}:{ref[1]}"] if ref else ["-m", model_path]


def _ngl(opt: PlanOption, model: ModelSpec, legacy: bool = False) -> str:
    n = opt.options.n_gpu_layers
    if n < 0 or n > model.n_layers:
        return "999" if legacy else "all"
    return str(n)


def _load_mode(o, legacy: bool) -> list[str]:
    if legacy:
        return (["--no-mmap"] if not o.mmap else []) + (["--mlock"] if o.mlock else [])
    return ["--load-mode", "mlock" if o.mlock and not o.mmap else "mmap+mlock" if o.mlock else "mmap" if o.mmap
            else "none"]


def llama_server(opt: PlanOption, model: ModelSpec, model_path: str, threads: int | None = None,
                 binary: str = "llama-server", legacy: bool = False) -> str:
    """The launch line, with every setting that changes memory pinned: -c is llama.cpp's whole context (all
    slots together), -np the slots (llama-server's default is 4 with a unified cache: estimate/programs.py)."""
    o = opt.options
    args = [binary, *_model_args(model_path), "-c", str(o.n_ctx), "-ngl", _ngl(opt, model, legacy),
            "-fa", "on" if o.flash_attn else "off", "-ctk", o.cache_type_k, "-ctv", o.cache_type_v,
            "-b", str(o.n_batch), "-ub", str(o.n_ubatch)]
    if binary == "llama-server" or o.n_seq > 1:
        args += ["-np", str(o.n_seq)]
    if o.n_seq > 1:
        args += ["--kv-unified" if o.kv_unified else "--no-kv-unified"]
    if o.swa_full:
        args += ["--swa-full"]
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
    args += _load_mode(o, legacy)
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
    """A Modelfile. Ollama's runner sets n_ubatch = num_batch, n_batch = num_batch x slots, one KV type for K and
    V, and a context of num_ctx per slot (estimate/programs.py); a plan for Ollama is estimated that way."""
    o = opt.options
    n = o.n_gpu_layers
    ref = hf_ref(model_path)
    lines = [f"# Plan for {model.name}: {opt.why}",
             *(["# FROM hf.co/...: Ollama downloads the file from Hugging Face"] if ref else []),
             f"FROM {model_path}",
             f"PARAMETER num_ctx {max(1, o.n_ctx // o.n_seq)}",
             f"PARAMETER num_gpu {model.n_layers + 1 if n < 0 else n}",
             f"PARAMETER num_batch {o.n_ubatch}"]
    if threads:
        lines.append(f"PARAMETER num_thread {threads}")
    env = [f"OLLAMA_FLASH_ATTENTION={1 if o.flash_attn else 0}"]
    if o.cache_type_k != "f16":
        env.append(f"OLLAMA_KV_CACHE_TYPE={o.cache_type_k}")
    if o.n_seq > 1:
        env.append(f"OLLAMA_NUM_PARALLEL={o.n_seq}")
    lines.append("# Ollama reads these from the server's environment, not the Modelfile:")
    lines.append("#   " + " ".join(env) + " ollama serve")
    if o.tensor_split:
        lines.append("# A Modelfile cannot set a tensor split: Ollama splits over the GPUs by itself, so the per-GPU "
                     "figures of this plan may differ")
    _carried("ollama", opt, "this plan keeps tensors on the CPU by pattern (--n-cpu-moe/-ot), which a Modelfile "
                            "cannot say: plan with --emit ollama (it plans without them) or run the llama-server line")
    return "\n".join(lines) + "\n"


def _carried(kind: str, opt: PlanOption, overrides: str) -> None:
    """Refuse, with the reason, a plan the program cannot run as estimated (estimate/programs.py says what each
    can carry): tensors kept on the CPU by pattern (`overrides` says why not), two KV types where it takes one."""
    p, o = program(kind), opt.options
    if not p.tensor_overrides and (o.cpu_moe or o.n_cpu_moe or o.override_tensor):
        raise PlannerError(overrides)
    if p.one_kv_type and o.cache_type_v != o.cache_type_k:
        raise PlannerError(f"Ollama uses one KV cache type for K and V; this plan has {o.cache_type_k}/"
                           f"{o.cache_type_v}: plan with --emit {kind}")


def llama_cpp_python(opt: PlanOption, model: ModelSpec, model_path: str, threads: int | None = None) -> dict:
    """Llama() kwargs for the plan; llama-cpp-python cannot keep tensors on the CPU by pattern (no
    tensor_buft_overrides in 0.3.36), so such a plan is refused with the reason."""
    o = opt.options
    _carried("llama-cpp-python", opt, "llama-cpp-python 0.3.36 cannot keep tensors on the CPU by pattern "
                                      "(--n-cpu-moe/-ot): plan with --emit llama-cpp-python (it plans without them) "
                                      "or run the llama-server line")
    kw = {"model_path": model_path, "n_ctx": o.n_ctx, "n_gpu_layers": o.n_gpu_layers, "flash_attn": o.flash_attn,
          "n_batch": o.n_batch, "n_ubatch": o.n_ubatch, "use_mmap": o.mmap, "use_mlock": o.mlock,
          "swa_full": o.swa_full,
          "type_k": type_id(o.cache_type_k),
          "type_v": type_id(o.cache_type_v)}
    if threads:
        kw["n_threads"] = threads
    if o.n_seq > 1:
        kw["n_seq_max"] = o.n_seq
        kw["kv_unified"] = o.kv_unified
    if o.tensor_split:
        kw["tensor_split"] = o.tensor_split
    return kw


def _python_source(kw: dict) -> str:
    ref = hf_ref(kw["model_path"])
    if ref:
        rest = {k: v for k, v in kw.items() if k != "model_path"}
        # fnmatch over the repository's files, one match or Llama.from_pretrained raises: '*-Q6_K.gguf' is not Q6_K_L's
        body = f"    repo_id={ref[0]!r},\n    filename={'*-' + ref[1] + '.gguf'!r},\n"
        body += "".join(f"    {k}={v!r},\n" for k, v in rest.items())
        return f"from llama_cpp import Llama\n\nllm = Llama.from_pretrained(\n{body})\n"
    body = "".join(f"    {k}={v!r},\n" for k, v in kw.items())
    return f"from llama_cpp import Llama\n\nllm = Llama(\n{body})\n"


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
           src: str | None = None, basis: str = "priors: planner/data/quality.yaml", imatrix: str | None = None,
           legacy: bool = False) -> str:
    if kind in ("llama-server", "llama-cli"):
        return llama_server(opt, model, model_path, threads, binary=kind, legacy=legacy) + "\n"
    if kind == "llama-quantize":
        src = src or local_gguf(model.source) or model_path.replace(".gguf", "-F16.gguf")
        if os.path.abspath(src) == os.path.abspath(model_path):
            return (f"# nothing to quantize: the plan keeps every tensor of {os.path.basename(src)} at its type;"
                    " run the file as it is\n")
        return llama_quantize(opt, model, src, model_path, imatrix) + "\n"
    if kind == "ollama":
        return ollama(opt, model, model_path, threads)
    if kind == "llama-cpp-python":
        return _python_source(llama_cpp_python(opt, model, model_path, threads))
    if kind in ("json", "yaml"):
        d = plan_dict(opt, model, basis)
        d["file"] = model_path  # the GGUF the plan runs: a published file (hf.co/ORG/REPO:QUANT) or the one to make
        return json.dumps(d, indent=1) + "\n" if kind == "json" else yaml.safe_dump(d, sort_keys=False)
    raise ValueError(kind)
