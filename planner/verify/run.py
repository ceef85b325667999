"""`plan verify`: make a plan a fact on this machine.

Quantize the source to the plan's per-tensor types (or write a shape twin), load the result in
a child process with the plan's runtime options, record llama.cpp's buffers per device and the
process / GPU memory, time prefill and decode like llama-bench, measure KLD / PPL / top-1
against the source, and compare every figure with the estimate for *this* machine. Measured
ratios are kept per machine (calibration.py) for later plans.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, Field

from planner.errors import PlannerError
from planner.estimate import RuntimeOptions, estimate
from planner.estimate.result import Estimate, gpu_buffer_index
from planner.model.spec import ModelSpec
from planner.profile.hardware import HardwareProfile
from planner.units import GiB, MiB
from planner.verify import calibration
from planner.verify.child import exit_text, run_probe
from planner.verify.quantize import quantize
from planner.verify.twin import twin_bytes, write_twin

TEXT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "eval-text.txt")
Step = Callable[[str, int, int, str], None]  # (step, done, total, detail)


class PlanFile(BaseModel):
    """What verify needs from a plan file (`plan --emit yaml|json`)."""
    model: str
    source: str | None = None
    label: str = ""
    types: dict[str, str]
    options: RuntimeOptions
    margin: float = 0.05
    target: str | None = None
    predicted_kld: float | None = None


def read_plan(path: str) -> PlanFile:
    try:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f)  # JSON is YAML
    except OSError as exc:
        raise PlannerError(f"cannot read plan {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PlannerError(f"{path} is not a plan file (YAML/JSON: {str(exc).splitlines()[0]}); "
                           "write one with plan --model M --emit yaml -o plan.yaml") from None
    if not isinstance(d, dict) or "tensors" not in d or "options" not in d:
        raise PlannerError(f"{path} is not a plan file (no tensors/options); "
                           "write one with plan --model M --emit yaml -o plan.yaml")
    try:
        return PlanFile(model=d["model"], source=d.get("source"), label=d.get("label", ""),
                        types={t["name"]: t["type"] for t in d["tensors"] if t.get("type")},
                        options=RuntimeOptions(**d["options"]), margin=d.get("margin", 0.05),
                        target=d.get("target"), predicted_kld=(d.get("quality") or {}).get("kld"))
    except (KeyError, TypeError, ValueError) as exc:
        raise PlannerError(f"{path}: malformed plan ({type(exc).__name__}: {exc}); regenerate it with --emit yaml") \
            from None


class DeviceFigures(BaseModel):
    name: str
    kind: str
    memory: dict[str, int]
    buffers_mib: dict[str, float] = Field(default_factory=dict)


class Figures(BaseModel):
    devices: list[DeviceFigures]
    decode_tps: float | None = None
    prefill_tps: float | None = None
    kld: float | None = None
    ppl: float | None = None
    top1: float | None = None
    base_ppl: float | None = None


class VerifyReport(BaseModel):
    model: str
    machine: str
    mode: str = Field(..., description="quantized | twin")
    file: str | None = None
    file_bytes: int | None = None
    predicted: Figures
    measured: Figures | None = None
    errors: dict[str, float] = Field(default_factory=dict, description="(predicted - measured) / measured")
    ok: bool = False
    margin: float = 0.05
    loaded: bool = False
    failure: str | None = None
    replanned: str | None = None
    calibration_runs: int | None = None
    timing_load: dict[str, Any] | None = Field(None, description="how much of the CPU the timed runs got: "
                                               "cpu_share, other_cores, cores, busy (planner/profile/load.py)")
    notes: list[str] = Field(default_factory=list)


def _kv_int(name: str) -> int:
    from gguf import GGMLQuantizationType
    return int(GGMLQuantizationType[name.upper()])


def _ngl(o: RuntimeOptions) -> int:
    return o.n_gpu_layers if o.n_gpu_layers >= 0 else 999  # llama.cpp's "all"


def probe_config(path: str, o: RuntimeOptions, *, pp: int, tg: int, reps: int, depth: int) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(model=path, ngl=_ngl(o), ctx=o.n_ctx, n_seq=o.n_seq, kv_unified=o.kv_unified,
                               n_batch=o.n_batch, n_ubatch=o.n_ubatch, fa=o.flash_attn, mmap=o.mmap, repack=o.repack,
                               ctk=_kv_int(o.cache_type_k), ctv=_kv_int(o.cache_type_v), swa_full=o.swa_full,
                               threads=o.threads, speed=bool(pp or tg), pp=pp, tg=tg, reps=reps, depth=depth,
                               n_outputs=o.n_outputs)
    if o.tensor_split:
        cfg["tensor_split"] = o.tensor_split
    return cfg


def _parts(bufs: dict[str, float]) -> dict[str, int]:
    def part(*kinds: str) -> int:
        return int(round(sum(v for k, v in bufs.items() if k.rsplit(" ", 1)[-1] in kinds) * MiB))
    return {"weights_bytes": part("model"), "kv_bytes": part("KV", "RS"), "compute_bytes": part("compute", "output")}


def _predicted(e: Estimate) -> Figures:
    """Per device as llama.cpp allocates it (its buffers: the whole mapped span, repacked copies
    and all) plus the overhead, so both sides of the comparison count the same things."""
    devs = []
    for d in e.devices:
        mem = _parts(d.buffers_mib)
        mem["overhead_bytes"] = d.memory.overhead_bytes
        mem["total_bytes"] = sum(mem.values())
        devs.append(DeviceFigures(name=d.name, kind=d.kind, buffers_mib=d.buffers_mib, memory=mem))
    return Figures(devices=devs, decode_tps=e.throughput.decode_tps, prefill_tps=e.throughput.prefill_tps)


def measured_devices(e: Estimate, r: dict[str, Any]) -> list[DeviceFigures]:
    """llama.cpp's buffers grouped per device like the estimate's, plus measured totals:
    GPU = NVML used after the run minus before the load; host = its buffers plus the child's
    resident memory before loading (interpreter and libraries: the process baseline)."""
    per: dict[int | None, dict[str, float]] = {}
    for key, mib in r.get("bufs_mib", {}).items():
        per.setdefault(gpu_buffer_index(key.rsplit(" ", 1)[0]), {})[key] = mib
    out = []
    for d in e.devices:
        bufs = per.get(d.index if d.kind == "gpu" else None, {})
        mem = _parts(bufs)
        if d.kind == "gpu":
            delta = r.get("gpu_delta_after_run_mib", r.get("gpu_delta_mib"))
            if delta is not None and d.index == 0:
                mem["total_bytes"] = int(delta * MiB)
                mem["overhead_bytes"] = mem["total_bytes"] - sum(mem.values())
        else:
            base = r.get("rss_baseline_mib")
            if base is not None:
                mem["overhead_bytes"] = int(base * MiB)
                mem["total_bytes"] = sum(mem.values())
            if r.get("rss_peak_mib") is not None:
                mem["rss_peak_bytes"] = int(r["rss_peak_mib"] * MiB)
        out.append(DeviceFigures(name=d.name, kind=d.kind, memory=mem, buffers_mib=bufs))
    return out


def base_logprobs(source: str, step: Step | None = None, repack: bool = True) -> tuple[str, float]:
    """The source's log-probs over the shipped text, cached per source file: (npy path, PPL)."""
    with open(TEXT, "rb") as f:
        text_hash = hashlib.sha256(f.read()).hexdigest()
    npy = calibration.cached_path("logits", source, ".npy", text_hash, *([] if repack else ["no-repack"]))
    meta = npy[:-4] + ".json"
    if os.path.exists(npy) and os.path.exists(meta):
        with open(meta) as f:
            return npy, json.load(f)["ppl"]
    if step:
        step("quality", 0, 1, "source logits (cached afterwards)")
    r = run_probe(dict(mode="logits", model=source, text=TEXT, out=npy, repack=repack), timeout_s=3600)
    if not r.get("ok"):
        raise PlannerError(f"could not run the source model for reference logits: {r.get('error')}")
    with open(meta, "w") as f:
        json.dump({"ppl": r["ppl"], "n_tokens": r["n_tokens"], "source": source}, f)
    return npy, r["ppl"]


def _err(pred: float | None, meas: float | None) -> float | None:
    if pred is None or not meas:
        return None
    return (pred - meas) / meas


def _failure_text(e: Estimate, r: dict[str, Any]) -> str:
    err = r.get("error") or "llama.cpp failed"
    if r.get("signal"):  # the reason is the signal, not the last lines the log had printed before it
        return err
    over = [d for d in e.devices if d.memory.total_bytes > d.capacity_bytes]
    if over or re.search(r"alloc|out of memory|memory", err, re.I):
        d = max(e.devices, key=lambda x: x.memory.total_bytes / max(x.capacity_bytes, 1))
        return (f"does not fit: needed {d.memory.total_bytes / GiB:.2f} GiB on {d.name}, had "
                f"{d.capacity_bytes / GiB:.2f} GiB (llama.cpp: {err[-200:]})")
    return f"llama.cpp could not load the plan: {err[-300:]}"


@dataclass
class _Run:
    """One verify run's state between its steps: the plan as typed, what is predicted for it, and the file."""
    typed: ModelSpec
    opts: RuntimeOptions
    hw: HardwareProfile
    hw_cal: HardwareProfile
    margin: float
    depth: int
    e_raw: Estimate
    e: Estimate
    out: str | None
    step: Step | None
    made_out: bool = False
    workdir: str | None = None

    def estimate_again(self) -> None:
        self.e_raw, self.e = _estimates(self.typed, self.hw, self.hw_cal, self.opts, self.margin, self.depth)


def verify(model: ModelSpec, types: dict[str, str], opts: RuntimeOptions, hw: HardwareProfile, *,
           source: str | None = None, twin: bool = False, out: str | None = None, margin: float = 0.05,
           imatrix: str | None = None, pp: int = 512, tg: int = 128, reps: int = 2, depth: int = 0,
           quality: bool = True, keep: bool = False, record: bool = True, step: Step | None = None,
           replan: Callable[[HardwareProfile], str] | None = None, force: bool = False) -> VerifyReport:
    """Verify a plan (types + options) for `model` on `hw` (this machine, uncalibrated): write the file
    (quantized from `source`, or a shape twin), load and time it in a llama.cpp child, measure quality
    against the source, compare with the estimate and record the run for calibration. An existing file
    at `out` is replaced only with force (refused before any work)."""
    out = _destination(source, twin, out, force)
    typed = model.with_types({**{t.name: t.type for t in model.tensors if t.type}, **types})
    hw_cal = calibration.calibrated(hw) if record else hw
    e_raw, e = _estimates(typed, hw, hw_cal, opts, margin, depth)
    run = _Run(typed, opts, hw, hw_cal, margin, depth, e_raw, e, out, step)
    rep = VerifyReport(model=model.name, machine=hw.name, mode="twin" if twin else "quantized",
                       predicted=_predicted(e), margin=margin, notes=_plan_notes(opts, hw, hw_cal))
    try:
        if twin:
            _write_twin(run, rep, keep, force)
        else:
            q = quantize(source, run.out, typed, types, imatrix=imatrix, force=force,
                         progress=_progress(step, "quantize"))
            rep.notes += q.warnings
        rep.file, rep.file_bytes = run.out, os.path.getsize(run.out)
        r = _load_and_time(run, rep, pp, tg, reps)
        if not r.get("ok"):
            rep.failure = _failure_text(run.e, r)
            rep.replanned = replan(hw) if replan else None
            return rep
        rep.loaded = True
        meas = Figures(devices=measured_devices(run.e, r), decode_tps=r.get("tg_tps"), prefill_tps=r.get("pp_tps"))
        if quality and source and not twin:
            _measure_quality(run, rep, meas, source)
        rep.measured, rep.timing_load = meas, r.get("load")
        _compare(rep, run.e)
        if rep.timing_load:
            rep.notes.append(_load_note(rep.timing_load))
        if record:
            _record(run, rep, meas)
        return rep
    finally:
        if twin and not keep and run.made_out and os.path.exists(run.out):
            os.remove(run.out)  # the twin this run wrote, never a file that was there before
        if run.workdir:
            shutil.rmtree(run.workdir, ignore_errors=True)


def _destination(source: str | None, twin: bool, out: str | None, force: bool) -> str | None:
    """Where the verified file goes (a quantized file beside the source's name by default; a twin in a
    temporary folder unless -o), refused up front when it exists and force is not given."""
    from planner.fileio import destination
    if not twin and not source:
        raise PlannerError("verify needs --source MODEL.gguf (an F16/BF16/F32 GGUF of the model), "
                           "or --twin to check memory and speed with a shape twin")
    if not out and not twin:
        out = os.path.splitext(os.path.basename(source))[0] + "-plan.gguf"
    if out:
        destination(out, force)
    return out


def _plan_notes(opts: RuntimeOptions, hw: HardwareProfile, hw_cal: HardwareProfile) -> list[str]:
    notes = []
    if hw.gpus and (opts.override_tensor or opts.n_cpu_moe or opts.cpu_moe):
        notes.append("llama-cpp-python cannot apply -ot/--n-cpu-moe/--cpu-moe (no tensor buffer overrides in "
                     "its API): the load keeps those tensors with their layers, so GPU figures differ from "
                     "the plan's placement")
    if hw_cal.calibration:
        c = hw_cal.calibration
        notes.append(f"predicted with this machine's calibration ({c.kept} earlier run(s)"
                     + (f", {c.runs} taken with this speed model" if c.runs != c.kept else "") + ")")
    return notes


def _progress(step: Step | None, stage: str) -> Callable[[int, int, str], None] | None:
    return (lambda i, n, name: step(stage, i, n, name)) if step else None


def _write_twin(run: _Run, rep: VerifyReport, keep: bool, force: bool) -> None:
    """A shape twin of the plan (random rows, the plan's types), after checking the disk has room."""
    need = twin_bytes(run.typed) + (64 << 20)
    d = os.path.dirname(os.path.abspath(run.out)) if run.out else tempfile.gettempdir()
    free = shutil.disk_usage(d).free
    if free < need:
        raise PlannerError(f"the twin needs {need / GiB:.1f} GiB of disk in {d}, {free / GiB:.1f} GiB "
                           "free; pass -o on a bigger disk")
    if not run.out:
        run.workdir = tempfile.mkdtemp(prefix="planner-twin-")
        run.out = os.path.join(run.workdir, "twin.gguf")
    rep.notes.append(f"twin: {need / GiB:.2f} GiB written to {run.out}" + ("" if keep else ", removed afterwards"))
    write_twin(run.typed, run.out, fill="random", force=force, progress=_progress(run.step, "twin"))
    run.made_out = True


def _load_and_time(run: _Run, rep: VerifyReport, pp: int, tg: int, reps: int) -> dict[str, Any]:
    """Load the file with the plan's options in a llama.cpp child and time it. llama.cpp's AMX kernels crash
    in some builds (llama-cpp-python 0.3.36's, natively built on an AMX Xeon: SIGSEGV in decode): then the
    configuration that runs here (--no-repack) is measured and predicted again, and the report says so."""
    if run.step:
        run.step("load", 0, 1, "loading with the plan's options and timing it")
    cfg = lambda: probe_config(run.out, run.opts, pp=pp, tg=tg, reps=reps, depth=run.depth)  # noqa: E731
    r = run_probe(cfg(), timeout_s=3600)
    if _amx_crash(r, run.opts, run.hw):
        run.opts = run.opts.model_copy(update={"repack": False})
        rep.notes.append(f"llama.cpp was {exit_text(r.get('returncode'))} with its AMX buffer on this CPU; "
                         "measured with --no-repack (launch with -nr too)")
        run.estimate_again()
        rep.predicted = _predicted(run.e)
        r = run_probe(cfg(), timeout_s=3600)
    if run.step:
        run.step("load", 1, 1, "done")
    return r


def _measure_quality(run: _Run, rep: VerifyReport, meas: Figures, source: str) -> None:
    """KLD, perplexity and top-1 agreement of the file against the source over the shipped text."""
    npy, base_ppl = base_logprobs(source, run.step, repack=run.opts.repack)
    if run.step:
        run.step("quality", 0, 1, "KLD / PPL / top-1 against the source")
    qr = run_probe(dict(mode="logits", model=run.out, text=TEXT, base=npy, ngl=_ngl(run.opts),
                        repack=run.opts.repack), timeout_s=3600)
    if qr.get("ok"):
        meas.kld, meas.ppl, meas.top1, meas.base_ppl = qr["kld"], qr["ppl"], qr["top1"], base_ppl
    else:
        rep.notes.append(f"quality not measured: {qr.get('error')}")
    if run.step:
        run.step("quality", 1, 1, "done")


def _record(run: _Run, rep: VerifyReport, meas: Figures) -> None:
    rec = calibration.record(run.hw, _calibration_run(run.e_raw, meas, run.typed.name, rep.timing_load))
    rep.calibration_runs = rec.runs
    if rec.why:
        rep.notes.append(rec.why)


def _estimates(typed: ModelSpec, hw: HardwareProfile, hw_cal: HardwareProfile, opts: RuntimeOptions,
               margin: float, depth: int) -> tuple[Estimate, Estimate]:
    """(raw, shown): the raw estimate is what calibration ratios are taken against; the shown one is
    calibrated, as plans see it."""
    raw = estimate(typed, hw.model_copy(update={"calibration": None}), opts, margin=margin, depth=depth)
    return raw, estimate(typed, hw_cal, opts, margin=margin, depth=depth)


def _amx_crash(r: dict[str, Any], opts: RuntimeOptions, hw: HardwareProfile) -> bool:
    """A load that died of SIGSEGV/SIGABRT on a CPU-only AMX box with the extra buffer types on."""
    import signal

    from planner.estimate.memory import has_amx
    return (not r.get("ok") and r.get("signal") in (signal.SIGSEGV, signal.SIGABRT) and opts.repack
            and not hw.gpus and has_amx(hw.cpu.flags))


def _compare(rep: VerifyReport, e: Estimate) -> None:
    assert rep.measured is not None
    ok = True
    for p, m in zip(rep.predicted.devices, rep.measured.devices, strict=True):
        for part in ("weights_bytes", "kv_bytes", "compute_bytes", "total_bytes"):
            err = _err(p.memory.get(part), m.memory.get(part))
            if err is not None:
                rep.errors[f"{p.name}.{part}"] = round(err, 4)
        # under-prediction beyond the margin is what makes a plan crash; over-prediction is reported
        pt, mt = p.memory["total_bytes"], m.memory.get("total_bytes")
        if mt is not None and mt > pt * (1 + rep.margin):
            ok = False
            rep.notes.append(f"{p.name}: measured {mt / MiB:.0f} MiB, more than predicted {pt / MiB:.0f} MiB "
                             f"+ {rep.margin:.0%}")
    for key in ("decode_tps", "prefill_tps"):
        err = _err(getattr(rep.predicted, key), getattr(rep.measured, key))
        if err is not None:
            rep.errors[key] = round(err, 4)
    rep.ok = ok and rep.loaded


def _load_note(load: dict[str, Any]) -> str:
    share = load.get("cpu_share")
    other = load.get("other_cores")
    return ("timing: " + (f"the probe got {share:.0%} of its threads' CPU time" if share is not None else
                          "the probe's CPU share is unknown")
            + (f", other programs used {other:.2f} of {load.get('cores')} cores" if other is not None else "")
            + (" (busy)" if load.get("busy") else ""))


def _calibration_run(e: Estimate, m: Figures, name: str, load: dict[str, Any] | None = None) -> dict[str, Any]:
    run: dict[str, Any] = {"model": name, "load": load}
    if m.decode_tps and e.throughput.decode_tps:
        run["decode_ratio"] = m.decode_tps / e.throughput.decode_tps
    if m.prefill_tps and e.throughput.prefill_tps:
        run["prefill_ratio"] = m.prefill_tps / e.throughput.prefill_tps
    host = m.devices[-1].memory.get("overhead_bytes")
    if host:
        run["host_overhead_bytes"] = host
    run["gpu_overhead_bytes"] = [d.memory.get("overhead_bytes") for d in m.devices if d.kind == "gpu"]
    return run


def report_text(rep: VerifyReport) -> str:
    def mib(b):
        return "-" if b is None else f"{b / MiB:,.1f}"

    def pct(k):
        v = rep.errors.get(k)
        return "" if v is None else f"{v:+.1%}"

    lines = [f"verify {rep.model} on {rep.machine} ({rep.mode}{': ' + rep.file if rep.file else ''}"
             + (f", {rep.file_bytes / GiB:.2f} GiB" if rep.file_bytes else "") + ")"]
    if rep.failure:
        lines.append(f"  FAILED: {rep.failure}")
        if rep.replanned:
            lines.append(f"  re-planned with what was measured: {rep.replanned}")
        return "\n".join(lines + [f"  note: {n}" for n in rep.notes])
    m = rep.measured
    assert m is not None
    lines.append(f"  {'':34s} {'predicted':>12s} {'measured':>12s} {'error':>8s}")
    for p, d in zip(rep.predicted.devices, m.devices, strict=True):
        for part, label in (("weights_bytes", "weights"), ("kv_bytes", "KV cache"), ("compute_bytes", "compute+output"),
                            ("total_bytes", "total")):
            lines.append(f"  {(p.name[:22] + ' ' + label):34s} {mib(p.memory.get(part)):>12s} "
                         f"{mib(d.memory.get(part)):>12s} {pct(f'{p.name}.{part}'):>8s}")
        if "rss_peak_bytes" in d.memory:
            lines.append(f"  {(p.name[:22] + ' peak RSS'):34s} {'':>12s} {mib(d.memory['rss_peak_bytes']):>12s}")
    for key, label in (("prefill_tps", "prefill tok/s"), ("decode_tps", "decode tok/s")):
        pv, mv = getattr(rep.predicted, key), getattr(m, key)
        lines.append(f"  {label:34s} {pv or 0:12.1f} {mv or 0:12.1f} {pct(key):>8s}")
    if m.kld is not None:
        lines.append(f"  quality vs source: KLD {m.kld:.4f}, top-1 {m.top1:.1%}, PPL {m.ppl:.2f} "
                     f"(source {m.base_ppl:.2f})")
    lines.append(f"  {'PASS' if rep.ok else 'FAIL'}: memory within the plan's {rep.margin:.0%} margin"
                 if rep.ok else f"  FAIL: measured memory above prediction + {rep.margin:.0%}")
    if rep.calibration_runs:
        lines.append(f"  calibration: {rep.calibration_runs} run(s) kept for this machine; later plans use them "
                     "(--no-calibration to ignore)")
    return "\n".join(lines + [f"  note: {n}" for n in rep.notes])
