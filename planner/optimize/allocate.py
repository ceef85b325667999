"""Per-tensor bit widths under a byte budget: a multiple-choice knapsack.

Minimise sum(w_t * kld(type_t)) subject to sum(bytes_t) <= budget. Tensors of the same
shape, candidates and weight form a group (a 70B has ~700 tensors but ~20 groups). The
Lagrangian relaxation picks one type per group on each group's lower convex hull: sorting
all hull steps by loss reduction per byte, it takes the longest prefix that fits (the same
answer as bisecting on the price of a byte, without the 60 passes); a greedy exchange then
spends what is left, one tensor at a time, on the best loss reduction per byte. Pure; no I/O.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from planner.model.ggml_types import tensor_bytes
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
              errors: dict[str, dict[str, float]] | None = None, backend: str = "cpu",
              cost: dict[str, float] | None = None) -> list[Group]:
    """Tensors that share shape, candidates and weight share a group; with measured errors each
    tensor is its own group (its errors are its own). cost: a factor per type on its bytes (the CPU's decode
    time per byte, relative: the budget is then one of time, not of memory)."""
    by: dict[tuple, list[TensorSpec]] = defaultdict(list)
    for t in tensors:
        w = tensor_weight(t, n_layers, tied, bool(errors and t.name in errors))
        own = t.name if errors and t.name in errors else None
        by[(tuple(t.shape), tuple(candidates(t, imatrix)), round(w, 3), own)].append(t)
    out = []
    for (shape, cands, w, _), ts in by.items():
        opts = [(int(tensor_bytes(c, list(shape)) * (cost or {}).get(c, 1.0)),
                 w * tensor_loss(ts[0], c, errors, tied, backend), c) for c in cands]
        out.append(Group(names=[t.name for t in ts], options=_hull(opts)))
    return out


class Allocator:
    """The groups of a tensor set, built once; solve() then answers any byte budget (the
    optimizer asks the same tensors for many budgets)."""

    def __init__(self, tensors: list[TensorSpec], n_layers: int, tied: bool, imatrix: bool = False,
                 errors: dict[str, dict[str, float]] | None = None, backend: str = "cpu",
                 cost: dict[str, float] | None = None):
        self.groups = groups_of(tensors, n_layers, tied, imatrix, errors, backend, cost)
        self.min_bytes = sum(g.options[0][0] * len(g.names) for g in self.groups)
        # every step up a group's hull, best loss reduction per byte first: the Lagrangian
        # relaxation's solution for a budget is the longest prefix of this list that fits
        steps = []
        for gi, g in enumerate(self.groups):
            for i in range(len(g.options) - 1):
                db = g.options[i + 1][0] - g.options[i][0]
                dl = g.options[i][1] - g.options[i + 1][1]
                steps.append((-dl / max(db, 1), gi, i, db * len(g.names)))
        self.steps = sorted(steps)
        self.group_of = {n: g for g in self.groups for n in g.names}
        top = sum(g.options[-1][0] * len(g.names) for g in self.groups)
        self.big = [gi for gi, g in enumerate(self.groups)
                    if len(g.names) == 1 and len(g.options) > 1 and g.options[-1][0] > 0.05 * top]

    def solve(self, budget_bytes: int) -> dict[str, str] | None:
        """Types within budget_bytes, lowest predicted loss; None if even the smallest types do not fit.

        The relaxation plus greedy can strand a single big tensor (a tied 262K-token embedding is
        62% of Gemma 3 270M): its next step does not fit, and the bytes go to small steps that
        save less than a smaller type there would. So each big tensor (over 5% of the model) is
        also tried at every type on its hull with the rest solved around it; the lowest loss wins."""
        if budget_bytes < self.min_bytes:
            return None
        best = self._solve(budget_bytes, None)
        for gi in self.big:
            for lv in range(len(self.groups[gi].options)):
                r = self._solve(budget_bytes, (gi, lv))
                if r is not None and r[1] < best[1] * (1 - 1e-9):
                    best = r
        level, _ = best
        group_of = self.group_of
        return {n: group_of[n].options[i][2] for n, i in level.items()}

    def _solve(self, budget_bytes: int, forced: tuple[int, int] | None) -> tuple[dict[str, int], float] | None:
        groups = self.groups
        left = budget_bytes - self.min_bytes
        best = [0] * len(groups)
        if forced is not None:
            fg, fl = forced
            g = groups[fg]
            left -= (g.options[fl][0] - g.options[0][0]) * len(g.names)
            if left < 0:
                return None
            best[fg] = fl
        for _, gi, i, cost in self.steps:  # a group's steps come in order: its hull is convex
            if forced is not None and gi == forced[0]:
                continue
            if cost > left:
                break
            best[gi] = i + 1
            left -= cost
        # per-tensor state, then greedy exchange with the bytes left
        level = {}
        group_of = self.group_of
        for g, i in zip(groups, best, strict=True):
            for n in g.names:
                level[n] = i
        fixed = set(groups[forced[0]].names) if forced is not None else set()
        heap = []

        def push(n: str) -> None:
            g, i = group_of[n], level[n]
            if i + 1 < len(g.options):
                db = g.options[i + 1][0] - g.options[i][0]
                dl = g.options[i][1] - g.options[i + 1][1]
                heapq.heappush(heap, (-dl / max(db, 1), db, n))

        for n in level:
            if n not in fixed:
                push(n)
        while heap:
            _, db, n = heapq.heappop(heap)
            if db <= left:
                level[n] += 1
                left -= db
                push(n)
        return level, sum(group_of[n].options[i][1] for n, i in level.items())


def allocate(tensors: list[TensorSpec], budget_bytes: int, n_layers: int, tied: bool,
             imatrix: bool = False, errors: dict[str, dict[str, float]] | None = None,
             backend: str = "cpu") -> dict[str, str] | None:
    """Types for `tensors` within budget_bytes, lowest predicted loss (activations rounded as
    `backend` does); None if even the smallest types do not fit."""
    return Allocator(tensors, n_layers, tied, imatrix, errors, backend).solve(budget_bytes)
