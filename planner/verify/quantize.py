"""Quantize a GGUF to a plan's per-tensor types with llama.cpp's own quantizer.

`llama_model_quantize` (what llama-quantize runs: ggml_quantize_chunk on all cores, in row
chunks, metadata and tokenizer copied) is driven with the same `--tensor-type` patterns the
plan's llama-quantize export prints, plus the token-embedding and output types. It runs in a
child process so a crash is a report; its per-tensor log lines drive a progress callback.
The result is written under a temporary name and renamed when complete; afterwards every
tensor's type is read back and compared with the plan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from planner.errors import PlannerError
from planner.estimate.quant_mix import FTYPE_DEFAULT, allows_quantization
from planner.fileio import atomic_output
from planner.model.ggml_types import tensor_bytes
from planner.model.spec import ModelSpec
from planner.units import GiB
from planner.verify.child import exit_text

FLOAT_TYPES = ("F32", "F16", "BF16")
Progress = Callable[[int, int, str], None]


class QuantizeResult(BaseModel):
    path: str
    bytes: int
    n_tensors: int
    requantized: bool
    warnings: list[str] = []


def _ftype_for(types: dict[str, str], model: ModelSpec) -> str:
    """A quantized ftype named after the dominant type (its name lands in general.file_type).
    Patterns only apply when the ftype's default type is quantized, hence never F16 here."""
    c: Counter = Counter()
    for t in model.tensors:
        if allows_quantization(t):
            c[types.get(t.name, t.type or "F16")] += t.n_elements
    for ty, _ in c.most_common():
        names = [f for f, d in FTYPE_DEFAULT.items() if d == ty and f not in FLOAT_TYPES]
        if names:
            return ty if ty in names else ("Q4_K_M" if ty == "Q4_K" else "Q5_K_M" if ty == "Q5_K" else names[0])
    return "Q8_0"


def quantize_args(model: ModelSpec, types: dict[str, str]) -> dict[str, Any]:
    """The llama_model_quantize parameters for a per-tensor plan (JSON-able, for the child)."""
    from planner.export.launch import tensor_type_patterns
    pats = tensor_type_patterns(types, model)
    for t in model.tensors:  # quantizable tensors outside blocks other than embd/output: exact names
        if t.layer is None and allows_quantization(t) and t.name not in ("token_embd.weight", "output.weight"):
            pats.append(("^" + re.escape(t.name) + "$", types[t.name].lower()))
    return {"ftype": _ftype_for(types, model), "patterns": pats,
            "token_embd": types.get("token_embd.weight"), "output": types.get("output.weight")}


def _child(cfg: dict[str, Any]) -> int:
    import ctypes

    import llama_cpp
    from gguf import GGMLQuantizationType as Q
    llama_cpp.llama_backend_init()
    p = llama_cpp.llama_model_quantize_default_params()
    p.nthread = int(cfg.get("nthread") or os.cpu_count() or 1)
    p.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{cfg['ftype']}")
    p.allow_requantize = True
    if cfg.get("token_embd"):
        p.token_embedding_type = int(Q[cfg["token_embd"].upper()])
    if cfg.get("output"):
        p.output_tensor_type = int(Q[cfg["output"].upper()])
    pats = cfg["patterns"]
    arr = (llama_cpp.llama_model_tensor_override * (len(pats) + 1))()
    keep = []
    for i, (pat, ty) in enumerate(pats):
        b = pat.encode()
        keep.append(b)
        arr[i].pattern, arr[i].type = b, int(Q[ty.upper()])
    arr[len(pats)].pattern = None
    p.tt_overrides = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    if cfg.get("imatrix"):
        import numpy as np

        from planner.verify.imatrix import load_imatrix
        data = {k: np.ascontiguousarray(v.reshape(-1), dtype=np.float32)
                for k, v in load_imatrix(cfg["imatrix"]).items()}
        im = (llama_cpp.llama_model_imatrix_data * (len(data) + 1))()
        for i, (name, vals) in enumerate(data.items()):
            keep += [name.encode(), vals]  # alive until llama_model_quantize returns
            im[i].name, im[i].size = keep[-2], vals.size
            im[i].data = vals.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        im[len(data)].name = None
        p.imatrix = ctypes.cast(im, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    rc = llama_cpp.llama_model_quantize(cfg["src"].encode(), cfg["dst"].encode(), ctypes.byref(p))
    return int(rc)


def quantize(src: str, dst: str, model: ModelSpec, types: dict[str, str], *, imatrix: str | None = None,
             nthread: int | None = None, progress: Progress | None = None, timeout_s: float = 7200,
             _ftype: str | None = None, force: bool = False) -> QuantizeResult:
    """Quantize `src` (a GGUF with every tensor of `model`) to `dst` with the plan's types; an existing
    `dst` is replaced only with force."""
    from planner.model.resolve import load_gguf
    if not os.path.isfile(src):
        raise PlannerError(f"source model {src} not found")
    srcm = load_gguf(src)
    missing = [t.name for t in model.tensors if t.name not in {x.name for x in srcm.tensors}]
    if missing:
        raise PlannerError(f"{src} is not the plan's model: {len(missing)} planned tensors are missing "
                           f"(first: {missing[0]})")
    warnings = []
    requant = any(allows_quantization(t) and t.type not in FLOAT_TYPES for t in srcm.tensors)
    if requant and not _ftype:
        warnings.append(f"{os.path.basename(src)} is already quantized ({srcm.file_type}): requantizing loses "
                        "quality; an F16/BF16/F32 source gives the plan's predicted quality")
    need = sum(tensor_bytes(types.get(t.name) or t.type, t.shape) for t in srcm.tensors)
    need += 64 << 20  # metadata, tokenizer, alignment
    d = os.path.dirname(os.path.abspath(dst))
    free = shutil.disk_usage(d).free
    if free < need:
        raise PlannerError(f"not enough disk space in {d}: the quantized model needs {need / GiB:.2f} GiB, "
                           f"{free / GiB:.2f} GiB free; pass another output path")
    with atomic_output(dst, force) as tmp:
        _run_quantizer(src, tmp, srcm, types, nthread, imatrix, _ftype, progress, timeout_s)
    got = {t.name: t.type for t in load_gguf(dst).tensors}
    wrong = [f"{n}: planned {ty}, got {got.get(n)}" for n, ty in types.items() if n in got and got[n] != ty]
    if wrong:
        raise PlannerError(f"quantized file differs from the plan in {len(wrong)} tensors ({wrong[0]})")
    return QuantizeResult(path=dst, bytes=os.path.getsize(dst), n_tensors=len(got), requantized=requant,
                          warnings=warnings)


def _run_quantizer(src, tmp, srcm, types, nthread, imatrix, _ftype, progress, timeout_s) -> None:
    """ggml's quantizer in a child process (a crash there is not ours), writing `tmp`."""
    cfg = dict(quantize_args(srcm, {**{t.name: t.type for t in srcm.tensors}, **types}),
               src=src, dst=tmp, nthread=nthread, imatrix=imatrix)
    if _ftype:  # a float ftype: no patterns (they only apply to quantized defaults)
        cfg.update(ftype=_ftype, patterns=[], token_embd=None, output=None)
    tail: list[str] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1", GGML_NO_BACKTRACE="1")
    proc = subprocess.Popen([sys.executable, "-m", "planner.verify.quantize", json.dumps(cfg)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.match(r"\[\s*(\d+)/\s*(\d+)\]\s+(\S+)", line)
        if m and progress:
            progress(int(m.group(1)), int(m.group(2)), m.group(3))
        tail = (tail + [line.rstrip()])[-8:]
    rc = proc.wait(timeout=timeout_s)
    if rc != 0 or not os.path.getsize(tmp):
        raise PlannerError(f"llama.cpp's quantizer failed ({exit_text(rc)}): " +
                           " | ".join(x for x in tail if x.strip())[-400:])


def to_float(src: str, dst: str, type_name: str = "F16", *, progress: Progress | None = None,
             force: bool = False) -> QuantizeResult:
    """Dequantize a GGUF to F16/BF16/F32 (a base for quality comparisons; 1-D tensors stay F32)."""
    from planner.model.resolve import load_gguf
    m = load_gguf(src)
    types = {t.name: (type_name if allows_quantization(t) else t.type) for t in m.tensors}
    return quantize(src, dst, m, types, progress=progress, _ftype=type_name, force=force)


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.argv[1])))
