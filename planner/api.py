"""The Python API, and the one entry the CLI and the wizard call: load a model, resolve a box, evaluate a
config, plan, recommend what runs, verify a plan."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from planner.estimate import Estimate, RuntimeOptions, estimate, ftype_tensor_types
from planner.model import ModelSpec, load_model
from planner.optimize.plan import PlanResult
from planner.optimize.published import SLOW_TPS, PublishedPlan, Upgrade, usable
from planner.optimize.search import nearest_quant
from planner.profile import HardwareProfile
from planner.profile.targets import resolve_target

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
    hw = resolve_hardware(target, vram_gib=vram_gib, ram_gib=ram_gib, gpus=gpus) if isinstance(target, str) else target
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


class RunnablePlan(BaseModel):
    """A plan a user can follow: the best published files for the box and goal (download and run), the custom
    per-tensor mix beside them with what it gains, and, where nothing fits, the nearest things that do."""
    published: list[PublishedPlan] = []  # best first
    custom: PlanResult  # the per-tensor search
    upgrade: Upgrade | None = None  # the custom mix against the best published file
    nearest: list[str] = []  # nothing fits, or it crawls: the smallest published file's needs, smaller models
    known_files: int = 0  # published files the catalog knows for the model


def catalog_entry(spec: ModelSpec):
    """The catalog entry a spec was made from (published files and the original repository are known per entry),
    else None."""
    from planner.model.catalog import find_entry
    return find_entry(spec.name) if spec.source.startswith("catalog") else None


def catalog_id(spec: ModelSpec) -> str | None:
    e = catalog_entry(spec)
    return e.id if e else None


def plan_runnable(spec: ModelSpec, hw: HardwareProfile, request=None, custom=None) -> RunnablePlan:
    """The published files' plans and the custom plan for one goal (custom: a PlanResult already made)."""
    from planner.model.published import published_files
    from planner.optimize import PlanRequest
    from planner.optimize.published import plan_files, upgrade
    req = request or PlanRequest()
    custom = custom or plan(spec, hw, req)
    files = published_files(catalog_id(spec)) if req.quant is None else []
    fitting = plan_files(spec, hw, req, files) if files else []
    pub = [p for p in fitting if usable(p.option)]
    up = upgrade(_with_imatrix(spec, hw, req, custom.best), pub[0].option, req.goal) if pub and custom.best else None
    top = pub[0].option if pub else custom.best
    if top is None:
        near = nearest_runnable(spec, hw, req, files, [p for p in fitting if not usable(p.option)])
    elif top.estimate.throughput.decode_tps < SLOW_TPS:
        near = nearest_runnable(spec, hw, req, [], [])  # it runs, but slowly: smaller models that run faster
    else:
        near = []
    return RunnablePlan(published=pub[:3], custom=custom, upgrade=up, nearest=near, known_files=len(files))


def _with_imatrix(spec: ModelSpec, hw: HardwareProfile, req, best):
    """The custom plan's predicted KLD as its steps make it (with an importance matrix), to weigh it against a
    published file made with one."""
    from planner.optimize.quality import predicted_kld
    backend = "cpu" if best.placement == "cpu" or not hw.gpus else hw.gpus[0].backend
    kld = predicted_kld(spec.with_types(best.types), req.tensor_errors, backend, imatrix=True)
    return best.model_copy(update={"predicted_kld": round(kld, 5)})


def nearest_runnable(spec: ModelSpec, hw: HardwareProfile, req, files, poor=()) -> list[str]:
    """Where nothing fits: what the smallest published file needs, and the biggest smaller catalog models of the
    same family (else any) with a published file that fits this box, as lines a user can run."""
    from planner.model.catalog import catalog, spec_for
    from planner.model.published import published_files
    from planner.optimize.published import plan_files, smallest_need
    from planner.export.launch import llama_server
    from planner.units import GiB
    threads = hw.cpu.cores
    out = [f"{p.file.label} fits but is barely usable: {p.option.why}\n      "
           f"{llama_server(p.option, spec, p.file.ref, threads)}" for p in poor[:1]]
    small = smallest_need(spec, hw, req, files) if not poor else None
    if small:
        f, need, have = small
        out.append(f"the smallest published file, {f.label}, needs about {need / GiB:.1f} GiB of memory in all at "
                   f"{req.n_ctx or 2048} context; this box has {have / GiB:.1f} GiB usable")
    me = catalog_entry(spec)
    from planner.model.catalog import not_modeled
    smaller = sorted((e for e in catalog() if not not_modeled(e.id) and spec_for(e.id).n_params < spec.n_params
                      and published_files(e.id)),
                     key=lambda e: (me is None or e.family != me.family, -spec_for(e.id).n_params))
    for e in smaller:
        other = spec_for(e.id)
        pub = [p for p in plan_files(other, hw, req, published_files(e.id)) if usable(p.option)]
        if pub:
            p = pub[0]
            line = llama_server(p.option, other, p.file.ref, threads)
            out.append(f"{e.id} ({p.file.label}): {p.option.why}\n      {line}")
            if len(out) >= 4:
                break
    return out


def resolve_hardware(target: str = "auto", *, vram_gib: str | None = None, ram_gib: float | None = None,
                     gpus: str | None = None, calibrate: bool = True, remeasure: bool = False) -> HardwareProfile:
    """resolve_target, plus what was measured on this machine when the target is this machine as detected:
    llama.cpp's self-benchmark of its CPU (planner/verify/cpu_bench.py: a minute or two, once per boot) and the
    calibration of `plan verify` runs (unless calibrate=False). Overrides describe another box, so they get
    neither. remeasure: run the self-benchmark again rather than take this boot's result."""
    hw = resolve_target(target, vram_gib=vram_gib, ram_gib=ram_gib, gpus=gpus)
    if target in ("auto", "local", "this") and not (vram_gib or ram_gib or gpus):
        from planner.verify.calibration import calibrated
        from planner.verify.cpu_bench import measured
        hw = measured(hw, force=remeasure)
        if calibrate:
            hw = calibrated(hw)
    return hw


def plan(spec: ModelSpec, hw: HardwareProfile, request=None):
    """make_plan: the best plan for a goal and its alternatives (a PlanResult)."""
    from planner.optimize import PlanRequest, make_plan
    return make_plan(spec, hw, request or PlanRequest())


class Recommendation(BaseModel):
    model: str
    n_params: int
    kld: float
    bits_per_weight: float
    decode_tps: float
    n_ctx: int
    why: str  # the plan: its placement, bits, context, speed
    score: float | None = None  # the cited score of the full model (catalog `quality`), None when there is none
    metric: str | None = None
    score_source: str | None = None
    agreement: float = 1.0  # predicted share of next-token choices the plan keeps (optimize/rank.py)
    score_at_plan: float | None = None  # score x agreement: what ranks it
    rank_why: str = ""


class Shortfall(BaseModel):
    """A catalog model ranked above the last recommendation that this box cannot run at the floor."""
    model: str
    score: float | None
    why: str


class Recommendations(BaseModel):
    target: str
    floor_tps: float
    rows: list[Recommendation]
    needs_more: list[Shortfall]
    considered: int  # catalog entries planned (the rest were ranked out before planning, or filtered)


def _ranked_entries(f):
    """Catalog entries the estimator models, passing the filter: those with a cited score first, best first,
    then the rest, biggest first (the order recommend plans them in)."""
    from planner.model.catalog import not_modeled, select, spec_for
    entries = [e for e in select(f) if not not_modeled(e.id)]
    scored = sorted((e for e in entries if e.quality), key=lambda e: -e.quality.score)
    rest = sorted((e for e in entries if not e.quality), key=lambda e: -spec_for(e.id).n_params)
    return scored, rest


def _too_big(spec: ModelSpec, hw: HardwareProfile) -> str | None:
    """Weights alone over all the box's memory even at 2 bits per weight: why, without planning."""
    from planner.units import GiB
    have = sum(g.vram_total_bytes for g in hw.gpus) + (0 if hw.unified else hw.ram.total_bytes)
    need = spec.n_params * 2 / 8
    if need > have:
        return f"needs over {need / GiB:.0f} GiB even at 2 bits per weight; this box has {have / GiB:.0f} GiB"
    return None


def recommend(hw: HardwareProfile, *, use: str | None = None, min_ctx: int | None = None,
              min_tps: float | None = None, top: int = 10, catalog_filter=None) -> Recommendations:
    """The best catalog models a box runs at a readable speed, best first: each model's balanced plan at the
    speed floor (min_tps, default optimize.rank.readable_floor), ranked by its cited score at that plan
    (score x the next-token agreement its predicted KLD keeps); models without a cited score after, biggest
    first. Plans models in rank order and stops once no unplanned model can reach the top `top`; the better
    models the box cannot run are returned as needs_more with why."""
    from planner.model.catalog import Filter, spec_for
    from planner.optimize import PlanRequest
    from planner.optimize.rank import agreement, readable_floor, score_at_plan
    floor = readable_floor(hw) if min_tps is None else min_tps
    f = (catalog_filter or Filter()).model_copy(update={"use": use} if use else {})
    req = PlanRequest(goal="balanced", min_ctx=min_ctx, min_tps=floor or None)
    scored, rest = _ranked_entries(f)
    rows: list[Recommendation] = []
    short: list[Shortfall] = []
    planned = 0
    for e in scored + rest:
        q = e.quality
        if len(rows) >= top and (q is None or q.score <= rows[top - 1].score_at_plan):
            break  # nothing after this can rank above the top `top`
        spec = spec_for(e.id)
        why_not = _too_big(spec, hw)
        res = None if why_not else plan(spec, hw, req)
        planned += res is not None
        best = res.best if res else None
        if best is None:
            if q is not None:
                short.append((why_not is not None, Shortfall(model=e.id, score=q.score,
                                                            why=why_not or res.nearest or "no plan fits")))
            continue
        kld = best.predicted_kld
        rows.append(Recommendation(
            model=e.id, n_params=spec.n_params, kld=kld, bits_per_weight=best.bits_per_weight,
            decode_tps=best.estimate.throughput.decode_tps, n_ctx=best.options.n_ctx, why=best.why,
            score=q.score if q else None, metric=q.metric if q else None, score_source=q.where if q else None,
            agreement=round(agreement(kld), 4), score_at_plan=round(score_at_plan(q.score, kld), 2) if q else None))
        rows.sort(key=lambda r: (r.score_at_plan is None, -(r.score_at_plan or 0), -r.n_params, r.kld))
    rows = [_with_rank_why(r) for r in rows[:top]]
    last = rows[-1].score_at_plan if rows and rows[-1].score_at_plan is not None else 0.0
    # the better models that fit but miss the floor first (what a faster box or a lower floor would run), then
    # those too big for the box at any type
    needs = [s for _, s in sorted(short, key=lambda x: (x[0], -x[1].score)) if s.score > last][:3]
    return Recommendations(target=hw.name, floor_tps=floor, rows=rows, needs_more=needs, considered=planned)


def _with_rank_why(r: Recommendation) -> Recommendation:
    if r.score is None:
        why = "no cited score: ranked after the scored models, by size"
    else:
        why = (f"{r.metric} {r.score:.1f} x {r.agreement:.3f} next-token agreement at KLD {r.kld:.4f} = "
               f"{r.score_at_plan:.1f}")
    return r.model_copy(update={"rank_why": why})


def verify(model: ModelSpec, types: dict[str, str], opts: RuntimeOptions, hw: HardwareProfile, **kw):
    """planner.verify.run.verify: quantize (or twin) the plan, load and time it with llama.cpp, measure
    its quality, record the run (a VerifyReport). Needs llama-cpp-python."""
    from planner.verify.run import verify as run_verify
    return run_verify(model, types, opts, hw, **kw)
