"""optimize/rank.py: the agreement a plan keeps, from the measured KLD and top-1 pairs it is fitted to."""

from __future__ import annotations

import json
import math
from pathlib import Path

from planner.optimize.rank import AGREEMENT_PER_SQRT_KLD, agreement, readable_floor, score_at_plan
from planner.profile.targets import load_target

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"


def _pairs():
    for name in ("quality-smollm2.json", "quality-gemma3-270m.json"):
        for row in json.loads((DATA / name).read_text()):
            for side in ("stock", "ours"):
                yield row[side]["kld"], row[side]["top1"]


def test_the_agreement_constant_is_the_least_squares_fit_of_the_measurements_and_predicts_each():
    pts = list(_pairs())
    assert len(pts) == 24
    fit = sum((1 - t) * math.sqrt(k) for k, t in pts) / sum(k for k, _ in pts)
    assert abs(fit - AGREEMENT_PER_SQRT_KLD) < 5e-4
    errors = [agreement(k) - t for k, t in pts]
    assert max(map(abs, errors)) < 0.055 and math.sqrt(sum(x * x for x in errors) / len(errors)) < 0.026


def test_the_score_at_a_plan_never_rises_with_kld_and_the_floor_follows_the_box():
    assert score_at_plan(70.0, 0.0) == 70.0
    values = [score_at_plan(70.0, k) for k in (0.001, 0.01, 0.1, 1.0, 10.0)]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0
    assert readable_floor(load_target("rtx4090")) == 10.0 and readable_floor(load_target("laptop-16gb")) == 5.0
