"""Plans on published files: for each file a user can download (model/published.py), the best
placement, context and KV type for the goal with its own per-tensor types (its ftype, its publisher's
imatrix recipe), then the best of them; and, beside it, what a per-tensor mix of one's own gains over it.
Pure: no I/O."""

from __future__ import annotations

from pydantic import BaseModel

from planner.model.published import PublishedFile
from planner.model.spec import ModelSpec
from planner.optimize.plan import PlanOption, PlanRequest
from planner.optimize.search import _score, make_plan
from planner.profile.hardware import HardwareProfile

# a mix of one's own is worth its steps (original weights, convert, imatrix, quantize) when it is
# predicted this much better than the best published file at no lower speed, or this much faster at no
# worse quality
WORTH_KLD = 0.15
WORTH_SPEED = 0.10


class PublishedPlan(BaseModel):
    file: PublishedFile
    option: PlanOption


class Upgrade(BaseModel):
    """The custom per-tensor mix against the best published file."""
    worth_it: bool
    kld_gain: float  # 1 - custom KLD / published KLD
    speed_gain: float  # custom decode tok/s / published - 1
    why: str


def plan_files(model: ModelSpec, hw: HardwareProfile, req: PlanRequest,
               files: list[PublishedFile]) -> list[PublishedPlan]:
    """Each published file's best plan for the goal (those that fit), best first."""
    names = {t.name for t in model.tensors}
    out = []
    for f in files:
        r = req.model_copy(update={"quant": f.ftype, "imatrix": f.imatrix, "type_overrides": f.type_overrides(names),
                                   "tensor_errors": None})
        best = make_plan(model, hw, r).best
        if best is not None:
            out.append(PublishedPlan(file=f, option=best.model_copy(update={"label": f.label})))
    return sorted(out, key=lambda p: _score(p.option, req.goal))


def smallest_need(model: ModelSpec, hw: HardwareProfile, req: PlanRequest,
                  files: list[PublishedFile]) -> tuple[PublishedFile, int, int] | None:
    """The published file that needs the least memory in all (its weights, KV and buffers at the least context),
    those bytes, and what the box's devices hold in all with the margin: what a box must have to run anything
    published of this model."""
    from planner.estimate import estimate, ftype_tensor_types
    from planner.optimize.search import _least_ctx, _opts
    if not files:
        return None
    names = {t.name for t in model.tensors}
    o = _opts(req, n_ctx=req.n_ctx or _least_ctx(model, req, default=2048), n_gpu_layers=-1 if hw.gpus else 0)
    need = []
    for f in files:
        m = model.with_types({**ftype_tensor_types(model, f.ftype, imatrix=f.imatrix), **f.type_overrides(names)})
        e = estimate(m, hw, o, margin=req.margin)
        need.append((sum(d.memory.total_bytes for d in e.devices), f,
                     sum(int(d.capacity_bytes * (1 - req.margin)) for d in e.devices)))
    n, f, have = min(need, key=lambda x: x[0])
    return f, n, have


def upgrade(custom: PlanOption, published: PlanOption, goal: str) -> Upgrade:
    """Is a mix of one's own worth making, against the best published file (both with their recipes)? When it
    scores better for the goal (search._score, the same objective the plans are chosen by) and is clearly better
    in quality or speed."""
    kc, kp = custom.predicted_kld, max(published.predicted_kld, 1e-9)
    tc, tp = custom.estimate.throughput.decode_tps, max(published.estimate.throughput.decode_tps, 1e-9)
    kld_gain, speed_gain = 1 - kc / kp, tc / tp - 1
    better = _score(custom, goal) < _score(published, goal)
    worth = better and (kld_gain >= WORTH_KLD or speed_gain >= WORTH_SPEED)
    if worth:
        why = (f"predicted KLD {kc:.4f} against the published file's {kp:.4f} ({abs(kld_gain):.0%} "
               f"{'lower' if kld_gain >= 0 else 'higher'}), {tc:.1f} against {tp:.1f} tok/s")
    else:
        why = (f"a mix of your own is predicted at KLD {kc:.4f} and {tc:.1f} tok/s against {kp:.4f} and {tp:.1f}: "
               f"not enough better for the {goal} goal to be worth making")
    return Upgrade(worth_it=worth, kld_gain=round(kld_gain, 4), speed_gain=round(speed_gain, 4), why=why)
