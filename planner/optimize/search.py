"""make_plan(): search placement, context, KV type and per-tensor bit widths for a goal.

For each (context, KV type, placement) the estimator gives the bytes left for weights on
each pool of memory; allocate() spends them tensor by tensor; the estimator then checks the
whole configuration exactly (and the budget shrinks a little when a device overflows). Each
feasible configuration is scored for the goal; the best and a short Pareto set come back.
Pinned options stay pinned. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from planner.estimate import RuntimeOptions, estimate, ftype_tensor_types
from planner.estimate.placement import INPUT_TENSORS
from planner.estimate.programs import for_program, program
from planner.estimate.result import Estimate
from planner.estimate.throughput import cpu_time_per_byte
from planner.model.spec import ModelSpec
from planner.optimize.allocate import Allocator
from planner.optimize.plan import PlanOption, PlanRequest, PlanResult
from planner.optimize.quality import bytes_of, predicted_kld
from planner.profile.hardware import HardwareProfile
from planner.units import GiB

CTX_LADDER = (4096, 32768, 131072)
# stock ftypes from most to least precise: what `plan --quant X` suggests instead when X does not fit
FTYPE_LADDER = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "IQ3_XXS", "Q2_K", "IQ2_XS", "IQ1_M")
BPW_CAPS = (None, 8.5, 4.5)  # None = spend all the memory there is
KLD_FLOOR = 0.002  # below Q8_0-level differences are noise: do not trade speed for them
KLD_CAP = {"speed": 0.6, "context": 0.08}  # the worst predicted KLD those goals accept (0.6: pure Q2_K)
# balanced: speed counts fully up to reading pace and half as much beyond it (a reply in 3 s,
# not 15, still matters); quality differences below the Q5_K_M level (KLD ~0.01 on Llama-3-8B,
# llama.cpp's perplexity README, ../shared/research/bit-allocation.md) count little
READING_TPS = 30.0
FAST_WEIGHT = 0.75
KLD_SCALE = 0.01


def run_options(req: PlanRequest, **kw) -> RuntimeOptions:
    base = dict(flash_attn=True if req.flash_attn is None else req.flash_attn, mmap=req.mmap,
                override_tensor=list(req.override_tensor))
    for k in ("n_ubatch", "n_batch", "tensor_split", "cache_type_k", "cache_type_v", "threads"):
        if getattr(req, k) is not None:
            base[k] = getattr(req, k)
    if req.n_seq is not None:
        base["n_seq"] = req.n_seq
    if req.n_cpu_moe is not None:
        base["n_cpu_moe"] = req.n_cpu_moe
    base.update(kw)
    return for_program(RuntimeOptions(**base), program(req.program))


def _avail(e, margin: float, unified: bool = False) -> list[int]:
    """Bytes each device of estimate e has for weights. With unified memory the host has what the GPUs leave
    (estimate.py): budget it as if each GPU held its own budget, not the reference mix that overflows it."""
    out = [int(d.capacity_bytes * (1 - margin)) - (d.memory.total_bytes - d.memory.weights_bytes) for d in e.devices]
    if unified:
        over = sum(max(0, d.memory.total_bytes - int(d.capacity_bytes * (1 - margin))) for d in e.devices[:-1])
        out[-1] += int(over * (1 - margin))
    return out


def ctx_list(model: ModelSpec, req: PlanRequest) -> list[int]:
    if req.n_ctx:
        return [req.n_ctx]
    lo = least_ctx(model, req)
    out = [c for c in CTX_LADDER if lo <= c <= max(model.n_ctx_train, lo)]
    return out or [lo]


def least_ctx(model: ModelSpec, req: PlanRequest, default: int | None = None) -> int:
    """The shortest context a plan may have: --min-ctx (else `default`, else 4096 or the trained length),
    and room for --depth tokens before the one decoded."""
    return max(req.min_ctx or default or min(4096, model.n_ctx_train), req.depth + 1)


def _placements(model: ModelSpec, hw: HardwareProfile, req: PlanRequest, gpu_only: bool = False) -> list[str]:
    if req.n_gpu_layers is not None or not hw.gpus:
        return [] if gpu_only else ["pinned" if hw.gpus else "cpu"]
    out = ["gpu"] if gpu_only else ["gpu", "partial"]
    if model.moe and req.n_cpu_moe is None and program(req.program).tensor_overrides:
        out.append("moe-cpu")
        if not gpu_only:
            out.append("moe-partial")  # --n-cpu-moe N: the GPU keeps attention and as many experts as fit
    return out


def _all_on_gpus(req: PlanRequest, model: ModelSpec) -> bool:
    """A pinned -ngl that offloads every layer (and no --n-cpu-moe): sized as the all-on-GPU placement is."""
    n = req.n_gpu_layers
    return n is not None and (n < 0 or n > model.n_layers) and not req.n_cpu_moe and not req.override_tensor


def _allocate_for(model: ModelSpec, placement: str, avail: list[int], cap_bytes: int | None,
                  req: PlanRequest, pools: dict[str, Allocator], gpu_backend: str = "cpu",
                  time_cost: dict[str, float] | None = None) -> dict[str, str] | None:
    """Types for a placement within the memory it leaves for weights. `pools` keeps the
    allocator of each tensor set, built once per search. Tensors the GPU runs are judged with
    its backend's activation rounding (partial offload too: llama.cpp sends big batches there),
    the rest with the CPU's. time_cost (CPU only, with a cap): the cap is one of decode time, each type's
    bytes weighed by its time per byte on this CPU (throughput.cpu_time_per_byte)."""
    tied = model.tied_embeddings
    gpu_avail = sum(avail[:-1])
    host_avail = avail[-1]
    # input-layer tensors llama.cpp keeps on the host (an untied token_embd, Gemma 3n/4's per-layer
    # embeddings); a tied token_embd is the output matrix too, so it goes with the layers
    host = [t for t in model.tensors if t.name in INPUT_TENSORS and not (tied and t.name == "token_embd.weight")]

    def alloc(pool: str, budget: int) -> dict[str, str] | None:
        backend = "cpu" if placement == "cpu" or pool in ("emb", "experts") else gpu_backend
        key = f"{pool}@{backend}" + ("@time" if time_cost else "")
        if key not in pools:
            rest = [t for t in model.tensors
                    if t.name not in INPUT_TENSORS or (tied and t.name == "token_embd.weight")]
            tensors = {"all": model.tensors, "emb": host, "rest": rest,
                       "dense": [t for t in rest if "_exps" not in t.name],
                       "experts": [t for t in rest if "_exps" in t.name] + host}[pool]
            pools[key] = Allocator(tensors, model.n_layers, tied, req.imatrix, req.tensor_errors, backend, time_cost)
        return pools[key].solve(budget)

    if placement == "cpu":
        return alloc("all", min(host_avail, cap_bytes or host_avail))
    if placement == "moe-cpu":
        a = alloc("dense", gpu_avail)
        cap = None
        if cap_bytes is not None:
            n_host = sum(t.n_elements for t in model.tensors if "_exps" in t.name)
            n_host += sum(t.n_elements for t in host)
            cap = int(cap_bytes * n_host / model.n_params)
        b = alloc("experts", min(host_avail, cap or host_avail))
        return None if a is None or b is None else {**a, **b}
    if placement == "gpu" or (placement == "pinned" and _all_on_gpus(req, model)):
        # every layer on the GPUs (a pinned -ngl all too): the layers' types within the VRAM alone
        a = alloc("rest", min(gpu_avail, cap_bytes or gpu_avail))
        if a is None:
            return None
        if host:
            a.update(alloc("emb", host_avail) or dict.fromkeys((t.name for t in host), "Q4_K"))
        return a
    # partial / moe-partial / pinned ngl: the whole model over VRAM + RAM, then as many layers
    # (or experts) on the GPU as fit
    return alloc("all", min(gpu_avail + host_avail, cap_bytes or gpu_avail + host_avail))


def _fit_ngl(model: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions, margin: float):
    """Largest -ngl whose estimate fits. One GPU: interpolate on its memory per layer (3-4
    estimates instead of ~7); several GPUs or anything odd: binary search."""
    n = model.n_layers + 1

    def at(g: int):
        o = opts.model_copy(update={"n_gpu_layers": g})
        return o, estimate(model, hw, o, margin=margin)

    if len(hw.gpus) == 1:
        o_hi, e_hi = at(n)
        if e_hi.fits:
            return n, o_hi, e_hi
        o_lo, e_lo = at(0)
        cap = e_lo.devices[0].capacity_bytes * (1 - margin)
        u0, u1 = e_lo.devices[0].memory.total_bytes, e_hi.devices[0].memory.total_bytes
        if u1 > u0:
            per = (u1 - u0) / n
            g = max(0, min(n - 1, int((cap - u0) / per)))
            seen: dict[int, tuple] = {0: (o_lo, e_lo), n: (o_hi, e_hi)}
            for _ in range(8):
                o, e = seen[g] if g in seen else at(g)
                seen[g] = (o, e)
                if e.fits:
                    o2, e2 = seen[g + 1] if g + 1 in seen else at(g + 1)
                    seen[g + 1] = (o2, e2)
                    if not e2.fits:
                        return g, o, e
                    g += 1
                elif e.devices[0].memory.total_bytes > cap and g > 0:
                    g = max(0, g - max(1, int((e.devices[0].memory.total_bytes - cap) / per + 0.999)))
                else:
                    break  # the host does not fit at g: fall back to the search below
    lo, hi, best = 0, n, None
    while lo <= hi:
        mid = (lo + hi) // 2
        o = opts.model_copy(update={"n_gpu_layers": mid})
        e = estimate(model, hw, o, margin=margin)
        if e.fits:
            best, lo = (mid, o, e), mid + 1
        else:
            hi = mid - 1
    return best


def _fit_ncmoe(model: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions, margin: float):
    """Smallest --n-cpu-moe (experts of the first N layers in RAM, all else on the GPU) that fits:
    fewer experts in RAM is faster, so the first N that fits is the one (binary search). N starts
    past the first layer with experts: below it the flag moves nothing (Jamba: MoE from layer 1)."""
    first = next((i for i, lay in enumerate(model.layers) if lay.moe), 0)
    lo, hi, best = first + 1, model.n_layers, None
    while lo <= hi:
        mid = (lo + hi) // 2
        o = opts.model_copy(update={"n_cpu_moe": mid, "cpu_moe": False, "n_gpu_layers": -1})
        e = estimate(model, hw, o, margin=margin)
        if e.fits:
            best, hi = (mid, o, e), mid - 1
        else:
            lo = mid + 1
    return best


def _describe(model: ModelSpec, placement: str, e, bpw: float, kld: float, opts: RuntimeOptions) -> str:
    gpu_layers = sum(d.n_layers for d in e.devices if d.kind == "gpu")
    where = {"gpu": f"all {model.n_layers} layers on the GPU",
             "moe-cpu": "attention and shared weights on the GPU, experts in RAM",
             "partial": f"{gpu_layers} of {model.n_layers} layers on the GPU, the rest on the CPU",
             "moe-partial": f"all on the GPU but the experts of {opts.n_cpu_moe} of {model.n_layers} layers "
                            "(in RAM, --n-cpu-moe)",
             "pinned": f"{gpu_layers} of {model.n_layers} layers on the GPU (pinned)",
             "cpu": "CPU only"}[placement]
    kv = "" if opts.cache_type_k == "f16" else f", {opts.cache_type_k} KV cache"
    return (f"{where} at {bpw:.2f} bits/weight{kv}, {opts.n_ctx} context: predicted KLD {kld:.4f}, "
            f"{e.throughput.decode_tps:.1f} tok/s")


@dataclass
class _Search:
    """What every candidate of one search shares."""
    model: ModelSpec
    hw: HardwareProfile
    req: PlanRequest
    ref: ModelSpec  # the model at Q4_K_M: what the memory budget of each configuration is measured with
    gpu_backend: str  # whose matmuls round the activations
    time_cost: dict[str, float]
    pools: dict[str, Allocator] = field(default_factory=dict)
    pinned: _Sized | None = None  # with --quant: the model at that ftype

    def estimate(self, m: ModelSpec, o: RuntimeOptions) -> Estimate:
        return estimate(m, self.hw, o, margin=self.req.margin, depth=self.req.depth)


def _candidates(model: ModelSpec, hw: HardwareProfile, req: PlanRequest, gpu_only: bool = False) -> list[PlanOption]:
    """Every feasible plan over context x KV type x placement x size cap: each configuration's memory budget,
    the per-tensor types that fill it (or the pinned ftype), then the placement's own fit (-ngl, --n-cpu-moe)."""
    s = _Search(model, hw, req, model.with_types(ftype_tensor_types(model, "Q4_K_M")),
                hw.gpus[0].backend if hw.gpus else "cpu", cpu_time_per_byte(hw, req.threads))
    out: list[PlanOption] = []
    for placement, o in _configurations(s, gpu_only):
        # a pinned ftype needs no budget for its types: the placement's own fit says whether it fits
        avail = _budget(s, placement, o) if not req.quant else []
        if avail is None:
            continue
        tried: list[dict[str, str]] = []  # a cap above what memory allows repeats the uncapped mix
        for cap, by_time in _caps(s, placement):
            sized = _sized(s, placement, o, avail, cap, by_time, tried)
            placed = _placed(s, placement, o, sized) if sized else None
            if placed is None:
                continue
            m, types, oo, e = placed
            if not e.fits or (req.min_tps and e.throughput.decode_tps < req.min_tps):
                continue
            out.append(_option(s, placement, m, types, oo, e))
            if req.quant:
                break
    return out


def _configurations(s: _Search, gpu_only: bool) -> Iterator[tuple[str, RuntimeOptions]]:
    """(placement, options) for each context, KV cache type and placement worth trying."""
    req = s.req
    kv_list = [(req.cache_type_k or "f16", req.cache_type_v or "f16")]
    if req.cache_type_k is None and req.cache_type_v is None and req.flash_attn is not False:
        kv_list.append(("q8_0", "q8_0"))
    for ctx in ctx_list(s.model, req):
        for ctk, ctv in kv_list:
            if ctk != "f16" and ctx < 16384 and len(kv_list) > 1:
                continue  # a quantized cache only pays at long context
            for placement in _placements(s.model, s.hw, req, gpu_only):
                # "cpu" keeps a pinned -ngl (llama.cpp ignores it without a GPU; the estimate says so)
                ngl = {"gpu": -1, "moe-cpu": -1, "moe-partial": -1, "partial": 0,
                       "cpu": req.n_gpu_layers or 0}.get(placement, req.n_gpu_layers)
                yield placement, run_options(req, n_ctx=ctx, cache_type_k=ctk, cache_type_v=ctv, n_gpu_layers=ngl,
                                       cpu_moe=placement in ("moe-cpu", "moe-partial"))


def _budget(s: _Search, placement: str, o: RuntimeOptions) -> list[int] | None:
    """Bytes each device has for weights under this configuration (None: the devices the placement fills have
    none): a partial placement budgets the GPUs as if they held every layer, the host as with none."""
    e0 = s.estimate(s.ref, o)
    if placement in ("partial", "moe-partial"):
        e_full = s.estimate(s.ref, o.model_copy(update={"n_gpu_layers": -1}))
        avail = _avail(e_full, s.req.margin)[:-1] + [_avail(e0, s.req.margin, s.hw.unified)[-1]]
    else:
        avail = _avail(e0, s.req.margin, s.hw.unified)
    if min(avail[-1:] + (avail[:-1] if placement in ("gpu", "moe-cpu") else [])) <= 0:
        return None
    return avail


def _caps(s: _Search, placement: str) -> list[tuple[float | None, bool]]:
    """(bits-per-weight cap, sized by decode time) to try. On a CPU whose kernels, not its memory, pace some
    types (few cores), the capped mixes are also sized by decode time: a byte of IQ3 costs ~3x a byte of Q4_K
    there (throughput.cpu_time_per_byte)."""
    caps = [(cap, False) for cap in BPW_CAPS]
    if placement == "cpu" and max(s.time_cost.values()) > 1.05 and not s.req.quant:
        caps += [(cap, True) for cap in BPW_CAPS if cap]
    return caps


@dataclass
class _Sized:
    types: dict[str, str]
    model: ModelSpec
    found: tuple | None = None  # moe-partial: the --n-cpu-moe fit, found while sizing the types
    estimate: Estimate | None = None  # the estimate of the last sizing, when it is the final one


def _sized(s: _Search, placement: str, o: RuntimeOptions, avail: list[int], cap: float | None, by_time: bool,
           tried: list[dict[str, str]]) -> _Sized | None:
    """The per-tensor types for this budget and cap (the pinned ftype with --quant), shrunk by 3% and 7% when
    the first mix does not fit with its compute buffers; None when no mix is new or fits."""
    model, req = s.model, s.req
    if req.quant:  # one typed model per search: every configuration shares it
        if s.pinned is None:
            types = {**ftype_tensor_types(model, req.quant, imatrix=req.imatrix), **req.type_overrides}
            s.pinned = _Sized(types, model.with_types(types))
        return _Sized(s.pinned.types, s.pinned.model)
    cap_bytes = None if cap is None else int(model.n_params * cap / 8)
    sized = None
    for shrink in (1.0, 0.97, 0.93):
        types = _allocate_for(model, placement, [int(x * shrink) for x in avail], cap_bytes, req, s.pools,
                              s.gpu_backend, s.time_cost if by_time else None)
        if types is None:
            return None
        if shrink == 1.0:
            if types in tried:
                return None
            tried.append(types)
        sized = _Sized(types, model.with_types(types))
        if placement == "moe-partial":
            sized.found = _fit_ncmoe(sized.model, s.hw, o, req.margin)
            if sized.found and sized.found[0] < model.n_layers:
                break  # else: fewer bytes, so that some experts fit on the GPU
        elif placement == "partial" or (placement == "pinned" and not _all_on_gpus(req, model)):
            break
        else:
            sized.estimate = s.estimate(sized.model, o)
            if sized.estimate.fits:
                break
    return sized


def _placed(s: _Search, placement: str, o: RuntimeOptions,
            sized: _Sized) -> tuple[ModelSpec, dict[str, str], RuntimeOptions, Estimate] | None:
    """The placement's own fit for the sized model: the most layers on the GPU (partial), the fewest experts in
    RAM (moe-partial), else the options as they are."""
    m, n = sized.model, s.model.n_layers
    if placement == "partial":
        found = _fit_ngl(m, s.hw, o, s.req.margin)
        if not found or found[0] == 0 or found[0] > n:
            return None
        _, oo, e = found
    elif placement == "moe-partial":
        found = sized.found or _fit_ncmoe(m, s.hw, o, s.req.margin)
        if not found or found[0] >= n:
            return None  # all experts in RAM: that is moe-cpu
        _, oo, e = found
    else:
        oo, e = o, sized.estimate or s.estimate(m, o)
    return m, sized.types, oo, e


def _option(s: _Search, placement: str, m: ModelSpec, types: dict[str, str], oo: RuntimeOptions,
            e: Estimate) -> PlanOption:
    kld = predicted_kld(m, s.req.tensor_errors, "cpu" if placement == "cpu" else s.gpu_backend, s.req.imatrix)
    bpw = 8 * bytes_of(m) / s.model.n_params
    return PlanOption(label=placement, why=_describe(s.model, placement, e, bpw, kld, oo), types=types, options=oo,
                      estimate=e, predicted_kld=round(kld, 5), bits_per_weight=round(bpw, 3), placement=placement)


def score(c: PlanOption, goal: str) -> tuple:
    """The goal's objective for a plan (smaller is better): what every plan is chosen and ranked by."""
    return score_of(c.predicted_kld, c.estimate.throughput.decode_tps, c.options.n_ctx, goal)


def score_of(kld: float, tps: float, ctx: int, goal: str) -> tuple:
    """score() from the three figures it weighs; monotone in each (optimize/published.py bounds with it)."""
    tps = max(tps, 1e-3)
    kld = max(kld, KLD_FLOOR)
    if goal == "quality":
        return (round(kld, 4), -tps, -min(ctx, 32768))
    if goal == "speed":
        return (kld > KLD_CAP["speed"], -tps, kld)
    if goal == "context":
        return (kld > KLD_CAP["context"], -ctx, kld, -tps)
    # balanced: log-utility of speed (half weight beyond reading pace) and quality (on the KLD_SCALE),
    # context up to 32K a little
    speed = 1.5 * math.log(min(tps, READING_TPS)) + FAST_WEIGHT * math.log(max(tps, READING_TPS) / READING_TPS)
    utility = speed - math.log(kld + KLD_SCALE) + 0.25 * math.log(min(ctx, 32768))
    return (-round(utility, 3), -tps)


def pareto(cands: list[PlanOption]) -> list[PlanOption]:
    def dom(a: PlanOption, b: PlanOption) -> bool:
        ka, kb = a.predicted_kld, b.predicted_kld
        ta, tb = a.estimate.throughput.decode_tps, b.estimate.throughput.decode_tps
        ca, cb = a.options.n_ctx, b.options.n_ctx
        return ka <= kb and ta >= tb and ca >= cb and (ka < kb or ta > tb or ca > cb)
    return [c for c in cands if not any(dom(o, c) for o in cands if o is not c)]


def _key(c: PlanOption) -> tuple:
    return (c.placement, round(c.predicted_kld, 3), round(c.estimate.throughput.decode_tps, 0), c.options.n_ctx)


def make_plan(model: ModelSpec, hw: HardwareProfile, req: PlanRequest) -> PlanResult:
    cands = _candidates(model, hw, req)
    if hw.gpus and not req.imatrix and not req.quant and not any(c.placement in ("gpu", "moe-cpu") for c in cands):
        # nothing fits on the GPU alone: try the 2-bit IQ types, which need an importance matrix
        extra = _candidates(model, hw, req.model_copy(update={"imatrix": True}), gpu_only=True)
        for c in extra:
            if c.placement in ("gpu", "moe-cpu"):
                c.why += " (needs an importance matrix: llama-imatrix, then llama-quantize --imatrix)"
                c.label += "+imatrix"
                cands.append(c)
    res = PlanResult(model=model.name, target=hw.name, goal=req.goal, best=None, considered=len(cands))
    if not cands:
        res.nearest = nearest(model, hw, req)
        return res
    cands.sort(key=lambda c: score(c, req.goal))
    best = cands[0]
    res.best = best
    front = [c for c in pareto(cands) if c is not best]
    alts: list[PlanOption] = []
    seen = {_key(best)}
    gains = {"quality": lambda c: c.predicted_kld < best.predicted_kld,  # what each label promises
             "speed": lambda c: c.estimate.throughput.decode_tps > best.estimate.throughput.decode_tps,
             "context": lambda c: c.options.n_ctx > best.options.n_ctx}
    for goal, label in (("quality", "higher quality"), ("speed", "faster"), ("context", "more context")):
        pick = min((c for c in front if gains[goal](c)), key=lambda c, g=goal: score(c, g), default=None)
        if pick is not None and _key(pick) not in seen and score(pick, goal) < score(best, goal):
            seen.add(_key(pick))
            alts.append(pick.model_copy(update={"label": label}))
    res.alternatives = alts
    return res


def nearest(model: ModelSpec, hw: HardwareProfile, req: PlanRequest) -> str:
    if req.min_tps:
        # memory may be fine: is it the speed floor that nothing reaches?
        fit = _candidates(model, hw, req.model_copy(update={"min_tps": None}))
        if fit:
            top = max(fit, key=lambda c: c.estimate.throughput.decode_tps)
            return (f"no plan that fits reaches {req.min_tps:g} tok/s; the fastest is {top.why}; lower --min-tps "
                    "or pick a smaller model ('plan recommend')")
    o = run_options(req, n_ctx=req.n_ctx or least_ctx(model, req, default=2048), n_gpu_layers=0 if not hw.gpus else -1)
    smallest = model.with_types(ftype_tensor_types(model, "Q2_K"))
    e = estimate(smallest, hw, o, margin=req.margin, depth=req.depth)
    if not hw.gpus:
        short = e.devices[-1].memory.total_bytes - int(e.devices[-1].capacity_bytes * (1 - req.margin))
        return (f"even at Q2_K ({bytes_of(smallest) / GiB:.1f} GiB) and {o.n_ctx} context it needs "
                f"{short / GiB:.1f} GiB more RAM; pick a smaller model ('plan recommend')")
    # a GPU holds its runtime and compute buffers whatever -ngl is: can it hold even those?
    e0 = estimate(smallest, hw, o.model_copy(update={"n_gpu_layers": 0}), margin=req.margin, depth=req.depth)
    for d in e0.devices:
        cap = int(d.capacity_bytes * (1 - req.margin))
        if d.kind == "gpu" and d.memory.total_bytes > cap:
            return (f"{d.name} cannot hold even its runtime and compute buffers with no layers on it "
                    f"({d.memory.total_bytes / GiB:.2f} GiB needed, {cap / GiB:.2f} GiB usable); "
                    "plan for the CPU alone (--gpus 0) or free VRAM")
    need = sum(d.memory.total_bytes for d in e.devices)
    have = sum(int(d.capacity_bytes * (1 - req.margin)) for d in e.devices)
    if need <= have:
        return (f"at Q2_K ({bytes_of(smallest) / GiB:.1f} GiB) VRAM + RAM add up, but no split of the layers "
                "fits each device with its margin under these constraints; relax --ctx/--min-tps or the --margin")
    return (f"even at Q2_K ({bytes_of(smallest) / GiB:.1f} GiB) and {o.n_ctx} context, VRAM + RAM fall "
            f"{max(need - have, 0) / GiB:.1f} GiB short; add memory or pick a smaller model ('plan recommend')")


def nearest_quant(spec: ModelSpec, hw: HardwareProfile, opts: RuntimeOptions, margin: float, tried: str) -> str:
    """The most precise stock ftype that fits with the same options, else how much is missing."""
    for q in FTYPE_LADDER:
        if q == tried:
            continue
        e = estimate(spec.with_types(ftype_tensor_types(spec, q)), hw, opts, margin=margin)
        if e.fits:
            return f"--quant {q} ({e.weights_file_bytes / GiB:.1f} GiB of weights)"
    e = estimate(spec.with_types(ftype_tensor_types(spec, FTYPE_LADDER[-1])), hw, opts, margin=margin)
    short = max(d.memory.total_bytes - int(d.capacity_bytes * (1 - margin)) for d in e.devices)
    return (f"nothing fits, even {FTYPE_LADDER[-1]}: about {short / GiB:.1f} GiB more memory is needed on the "
            "fullest device; try a smaller model ('plan models') or a bigger --target")
