"""The Python API the CLI and the wizard share: resolve a model and a box, evaluate a config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from planner.estimate import Estimate, RuntimeOptions, estimate, ftype_tensor_types
from planner.model import ModelSpec, load_model
from planner.optimize.search import nearest_quant
from planner.profile import HardwareProfile
from planner.profile.targets import resolve_target
from planner.units import GiB

DEFAULT_QUANT = "Q4_K_M"
DEFAULT_CTX = 4096


class Evaluation(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    model: ModelSpec
    hardware: HardwareProfile
    quant: str
    options: RuntimeOptions
    estimate: Estimate
    defaults_used: list[str]
    nearest_fit: str | None = None


def typed_model(model: ModelSpec, quant: str | None) -> tuple[ModelSpec, str]:
    """Apply an ftype's per-tensor mix; without one keep a GGUF's own types, else the release's
    own format for weights that ship quantized (gpt-oss: MXFP4_MOE), else Q4_K_M."""
    if quant is None and all(t.type for t in model.tensors):
        return model, model.file_type or "as in the file"
    native = "MXFP4_MOE" if any(t.origin == "MXFP4" for t in model.tensors) else None
    q = (quant or native or DEFAULT_QUANT).upper()
    return model.with_types(ftype_tensor_types(model, q)), q


def evaluate(model: str | ModelSpec, target: str | HardwareProfile = "auto", *, quant: str | None = None,
             n_gpu_layers: int | None = None, n_ctx: int | None = None, flash_attn: bool | None = None,
             cache_type_k: str | None = None, cache_type_v: str | None = None, n_ubatch: int | None = None,
             n_batch: int | None = None, tensor_split: list[float] | None = None, n_cpu_moe: int | None = None,
             mmap: bool = True, margin: float = 0.05, vram_gib: str | None = None, ram_gib: float | None = None,
             gpus: str | None = None, parallel: int | None = None, override_tensor: list[str] | None = None,
             depth: int = 0, threads: int | None = None) -> Evaluation:
    spec = load_model(model) if isinstance(model, str) else model
    hw = resolve_target(target, vram_gib=vram_gib, ram_gib=ram_gib, gpus=gpus) if isinstance(target, str) else target
    typed, q = typed_model(spec, quant)
    given = dict(n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, flash_attn=flash_attn, cache_type_k=cache_type_k,
                 cache_type_v=cache_type_v, n_ubatch=n_ubatch, n_batch=n_batch, tensor_split=tensor_split,
                 n_cpu_moe=n_cpu_moe, n_seq=parallel, threads=threads)
    defaults_used = [k for k, v in given.items()
                     if v is None and k not in ("tensor_split", "n_cpu_moe", "n_seq", "threads")]
    kw = {k: v for k, v in given.items() if v is not None}
    kw.setdefault("n_ctx", DEFAULT_CTX)
    opts = RuntimeOptions(mmap=mmap, override_tensor=override_tensor or [], **kw)
    est = estimate(typed, hw, opts, margin=margin, depth=depth)
    nearest = None if est.fits else nearest_quant(spec, hw, opts, margin, q)
    return Evaluation(model=spec, hardware=hw, quant=q, options=opts, estimate=est, defaults_used=defaults_used,
                      nearest_fit=nearest)


def plan_model(model: str | ModelSpec, target: str | HardwareProfile = "auto", request=None, *,
               vram_gib: str | None = None, ram_gib: float | None = None, gpus: str | None = None,
               calibrate: bool = True):
    """Resolve model and box, then search for the best plan: (ModelSpec, HardwareProfile, PlanResult).
    On this machine (target auto) what `plan verify` measured here calibrates the estimate."""
    from planner.optimize import PlanRequest, make_plan
    spec = load_model(model) if isinstance(model, str) else model
    hw = resolve_hardware(target, vram_gib=vram_gib, ram_gib=ram_gib, gpus=gpus, calibrate=calibrate) \
        if isinstance(target, str) else target
    return spec, hw, make_plan(spec, hw, request or PlanRequest())


def resolve_hardware(target: str = "auto", *, vram_gib: str | None = None, ram_gib: float | None = None,
                     gpus: str | None = None, calibrate: bool = True) -> HardwareProfile:
    """resolve_target, plus this machine's calibration (from `plan verify` runs) when the target
    is this machine as detected: overrides describe another box, so they get none."""
    hw = resolve_target(target, vram_gib=vram_gib, ram_gib=ram_gib, gpus=gpus)
    if calibrate and target == "auto" and not (vram_gib or ram_gib or gpus):
        from planner.verify.calibration import calibrated
        hw = calibrated(hw)
    return hw
