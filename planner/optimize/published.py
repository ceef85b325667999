"""Plans on published files: for each file a user can download (model/published.py), the best
placement, context and KV type for the goal with its own per-tensor types (its ftype, its publisher's
imatrix recipe), then the best of them; and, beside it, what a per-tensor mix of one's own gains over it.
Pure: no I/O."""

from __future__ import annotations

from pydantic import BaseModel

from planner.model.published import PublishedFile
from planner.model.spec import ModelSpec
from planner.optimize.plan import PlanOption, PlanRequest
from planner.estimate import estimate, ftype_tensor_types
from planner.optimize.quality import predicted_kld
from planner.optimize.search import KLD_CAP, ctx_list, least_ctx, make_plan, run_options, score, score_of
from planner.profile.hardware import HardwareProfile

# a mix of one's own is worth its steps (original weights, convert, imatrix, quantize) when it is
# predicted this much better than the best published file giving up little speed, or this much faster
# giving up little quality
WORTH_KLD = 0.15
WORTH_SPEED = 0.10
GIVE_SPEED = 0.10  # at most this much slower for its quality
GIVE_KLD = 0.10  # at most this much higher KLD for its speed
SLOW_TPS = 1.0  # below a token a second a plan runs but is barely usable: the nearest faster models are named too


def usable(opt: PlanOption) -> bool:
    """A published file is the default answer only within the loss the speed goal accepts (a pure Q2_K's, KLD 0.6:
    search.KLD_CAP); past it the file fits but is barely usable, and it is named among the nearest."""
    return opt.predicted_kld <= KLD_CAP["speed"]


def typed(model: ModelSpec, f: PublishedFile) -> ModelSpec:
    """The model as the published file holds it: its ftype's per-tensor types, its publisher's recipe."""
    return model.with_types({**ftype_tensor_types(model, f.ftype, imatrix=f.imatrix),
                             **f.type_overrides({t.name for t in model.tensors})})


class PublishedPlan(BaseModel):
    file: PublishedFile
    option: PlanOption


class Upgrade(BaseModel):
    """The custom per-tensor mix against the best published file."""
    worth_it: bool
    kld_gain: float  # 1 - custom KLD / published KLD
    speed_gain: float  # custom decode tok/s / published - 1
    why: str


def plan_files(model: ModelSpec, hw: HardwareProfile, req: PlanRequest, files: list[PublishedFile],
               top: int = 3) -> list[PublishedPlan]:
    """The `top` published files' best plans for the goal (those that fit), best first.

    Branch and bound: a file's predicted KLD is fixed by its types, and no plan of it decodes faster than all
    of it on the GPU at the shortest context, nor holds more context than the longest tried; the goal's score
    is monotone in each, so that ceiling bounds the file's best score. Files are planned best bound first, and
    the search stops once `top` plans score better than the next file's bound (the same answer as planning
    every file, in a fraction of the time)."""
    ceilings = ((_ceiling(model, hw, req, f), i, f) for i, f in enumerate(files))
    bounded = sorted((c for c in ceilings if c[0] is not None), key=lambda x: x[:2])
    names = {t.name for t in model.tensors}
    out: list[PublishedPlan] = []
    for bound, _, f in bounded:
        if len(out) >= top and score(out[top - 1].option, req.goal) <= bound:
            break
        r = req.model_copy(update={"quant": f.ftype, "imatrix": f.imatrix, "type_overrides": f.type_overrides(names),
                                   "tensor_errors": None})
        best = make_plan(model, hw, r).best
        if best is not None:
            out.append(PublishedPlan(file=f, option=best.model_copy(update={"label": f.label})))
            out.sort(key=lambda p: score(p.option, req.goal))
    return out[:top]


def _ceiling(model: ModelSpec, hw: HardwareProfile, req: PlanRequest, f: PublishedFile) -> tuple | None:
    """The best score any plan of this file could have (see plan_files); None when no plan of it can fit: its
    weights and KV cache at the shortest context alone exceed all the memory the box's devices have."""
    m = typed(model, f)
    ctxs = ctx_list(model, req)
    o = run_options(req, n_ctx=min(ctxs), n_gpu_layers=-1 if hw.gpus else 0)
    e = estimate(m, hw, o, margin=req.margin, depth=req.depth)
    if not hw.unified:
        least = sum(d.memory.weights_bytes + d.memory.kv_bytes for d in e.devices)
        if least > sum(int(d.capacity_bytes * (1 - req.margin)) for d in e.devices):
            return None
    tps = e.throughput.decode_tps * 1.05
    gpu_room = sum(int(d.capacity_bytes * (1 - req.margin)) for d in e.devices if d.kind == "gpu")
    if hw.gpus and e.weights_file_bytes > gpu_room and not hw.unified:
        # at most gpu_room of the weights on the GPUs: at best the time per token of all-GPU and all-CPU mixed in
        # that share (the rest of each device's memory only lowers the share), with a slack for what the share
        # leaves out (1.2; 1.5 for MoE, whose experts on the CPU cost less than their bytes' share: 1.2 missed a
        # third-best Qwen3-30B-A3B file on 2 of 720 model x box x goal cases, 1.5 none)
        cpu = estimate(m, hw, o.model_copy(update={"n_gpu_layers": 0}), margin=req.margin, depth=req.depth)
        share = gpu_room / e.weights_file_bytes
        t = share / max(e.throughput.decode_tps, 1e-9) + (1 - share) / max(cpu.throughput.decode_tps, 1e-9)
        tps = min(tps, (1.5 if model.moe else 1.2) / t)
    return score_of(round(predicted_kld(m, None, "cpu", f.imatrix), 5), tps, max(ctxs), req.goal)


def smallest_need(model: ModelSpec, hw: HardwareProfile, req: PlanRequest,
                  files: list[PublishedFile]) -> tuple[PublishedFile, int, int] | None:
    """The published file that needs the least memory in all (its weights, KV and buffers at the least context),
    those bytes, and what the box's devices hold in all with the margin: what a box must have to run anything
    published of this model."""
    if not files:
        return None
    o = run_options(req, n_ctx=req.n_ctx or least_ctx(model, req, default=2048), n_gpu_layers=-1 if hw.gpus else 0)
    def need(e) -> int:
        return sum(d.memory.total_bytes for d in e.devices)
    e, f = min(((estimate(typed(model, f), hw, o, margin=req.margin), f) for f in files), key=lambda x: need(x[0]))
    return f, need(e), sum(int(d.capacity_bytes * (1 - req.margin)) for d in e.devices)


def upgrade(custom: PlanOption, published: PlanOption, goal: str) -> Upgrade:
    """Is a mix of one's own worth making, against the best published file (both with their recipes)? When it
    scores better for the goal (search.score, the same objective the plans are chosen by) and is clearly better
    in quality or speed."""
    kc, kp = custom.predicted_kld, max(published.predicted_kld, 1e-9)
    tc, tp = custom.estimate.throughput.decode_tps, max(published.estimate.throughput.decode_tps, 1e-9)
    kld_gain, speed_gain = 1 - kc / kp, tc / tp - 1
    better = score(custom, goal) < score(published, goal)
    worth = better and ((kld_gain >= WORTH_KLD and speed_gain >= -GIVE_SPEED)
                        or (speed_gain >= WORTH_SPEED and kld_gain >= -GIVE_KLD))
    if worth:
        why = (f"made with an importance matrix, predicted KLD {kc:.4f} against the published file's {kp:.4f} "
               f"({abs(kld_gain):.0%} {'lower' if kld_gain >= 0 else 'higher'}), {tc:.1f} against {tp:.1f} tok/s")
    else:
        why = (f"made with an importance matrix, a mix of your own is predicted at KLD {kc:.4f} and {tc:.1f} tok/s "
               f"against {kp:.4f} and {tp:.1f}: not enough better for the {goal} goal to be worth making")
    return Upgrade(worth_it=worth, kld_gain=round(kld_gain, 4), speed_gain=round(speed_gain, 4), why=why)
