"""Per-tensor bit widths under a byte budget: a multiple-choice knapsack.

Minimise sum(w_t * kld(type_t)) subject to sum(bytes_t) <= budget. Tensors of the same
shape, candidates and weight form a group (a 70B has ~700 tensors but ~20 groups). A
Lagrangian relaxation (bisection on the price of a byte, lambda) picks one type per group
on each group's lower convex hull; a greedy exchange then spends what is left, one tensor
at a time, on the best loss reduction per byte. Pure; no I/O.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from planner.estimate.ggml_types import tensor_bytes
from planner.model.spec import TensorSpec
from planner.optimize.quality import candidates, tensor_loss, tensor_weight


@dataclass
class Group:
    names: list[str]
    options: list[tuple[int, float, str]]  # (bytes, loss, type) on the lower convex hull, bytes ascending


def _hull(opts: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    opts = sorted(set(opts))
    pareto: list[tuple[int, float, str]] = []
    for o in opts:  # keep strictly better loss as bytes grow
        if not pareto or o[1] < pareto[-1][1]:
            pareto.append(o)
    hull: list[tuple[int, float, str]] = []
    for o in pareto:  # lower convex hull in (bytes, loss)
        while len(hull) >= 2:
            (b1, l1, _), (b2, l2, _) = hull[-2], hull[-1]
            if (l2 - l1) * (o[0] - b1) >= (o[1] - l1) * (b2 - b1):
                hull.pop()
            else:
                break
        hull.append(o)
    return hull


def groups_of(tensors: list[TensorSpec], n_layers: int, tied: bool, imatrix: bool = False,
              errors: dict[str, dict[str, float]] | None = None) -> list[Group]:
    """Tensors that share shape, candidates and weight share a group; with measured errors each
    tensor is its own group (its errors are its own)."""
    by: dict[tuple, list[TensorSpec]] = defaultdict(list)
    for t in tensors:
        w = tensor_weight(t, n_layers, tied)
        own = t.name if errors and t.name in errors else None
        by[(tuple(t.shape), tuple(candidates(t, imatrix)), round(w, 3), own)].append(t)
    out = []
    for (shape, cands, w, _), ts in by.items():
        opts = [(tensor_bytes(c, list(shape)), w * tensor_loss(ts[0], c, errors), c) for c in cands]
        out.append(Group(names=[t.name for t in ts], options=_hull(opts)))
    return out


def allocate(tensors: list[TensorSpec], budget_bytes: int, n_layers: int, tied: bool,
             imatrix: bool = False, errors: dict[str, dict[str, float]] | None = None) -> dict[str, str] | None:
    """Types for `tensors` within budget_bytes, lowest predicted loss; None if even the
    smallest types do not fit."""
    groups = groups_of(tensors, n_layers, tied, imatrix, errors)
    min_bytes = sum(g.options[0][0] * len(g.names) for g in groups)
    if min_bytes > budget_bytes:
        return None

    def pick(lam: float) -> list[int]:
        return [min(range(len(g.options)), key=lambda i, g=g: g.options[i][1] + lam * g.options[i][0])
                for g in groups]

    def used(choice: list[int]) -> int:
        return sum(g.options[i][0] * len(g.names) for g, i in zip(groups, choice, strict=True))

    best = pick(0.0)
    if used(best) > budget_bytes:
        lo, hi = 0.0, 1.0
        while used(pick(hi)) > budget_bytes:
            hi *= 10
        for _ in range(60):
            mid = (lo + hi) / 2
            if used(pick(mid)) > budget_bytes:
                lo = mid
            else:
                hi = mid
        best = pick(hi)
    # per-tensor state, then greedy exchange with the bytes left
    level = {}
    group_of = {}
    for g, i in zip(groups, best, strict=True):
        for n in g.names:
            level[n], group_of[n] = i, g
    left = budget_bytes - used(best)
    heap = []

    def push(n: str) -> None:
        g, i = group_of[n], level[n]
        if i + 1 < len(g.options):
            db = g.options[i + 1][0] - g.options[i][0]
            dl = g.options[i][1] - g.options[i + 1][1]
            heapq.heappush(heap, (-dl / max(db, 1), db, n))

    for n in level:
        push(n)
    while heap:
        _, db, n = heapq.heappop(heap)
        if db <= left:
            level[n] += 1
            left -= db
            push(n)
    return {n: group_of[n].options[i][2] for n, i in level.items()}
