"""planner.api: the one entry the CLI and the wizard call (evaluate, plan, recommend, verify)."""

from __future__ import annotations

import pytest

from planner import api
from planner.errors import ModelNotFoundError
from planner.optimize import PlanRequest
from planner.profile.targets import load_target


def test_evaluate_types_the_model_and_names_the_defaults_it_used():
    ev = api.evaluate("llama3.1-8b", "rtx4090", quant="Q4_K_M", n_ctx=8192)
    assert ev.quant == "Q4_K_M" and ev.options.n_ctx == 8192 and ev.estimate.fits and ev.nearest_fit is None
    assert "n_gpu_layers" in ev.defaults_used and "n_ctx" not in ev.defaults_used
    gpu = ev.estimate.devices[0]
    assert gpu.kind == "gpu" and gpu.memory.weights_bytes > 4 << 30


def test_evaluate_of_what_does_not_fit_suggests_the_most_precise_stock_quant_that_does():
    ev = api.evaluate("llama3.1-8b", "rtx4060", quant="Q8_0", n_ctx=4096)
    assert not ev.estimate.fits
    assert ev.nearest_fit.startswith("--quant ") and "Q8_0" not in ev.nearest_fit
    fitting = api.evaluate("llama3.1-8b", "rtx4060", quant=ev.nearest_fit.split()[1], n_ctx=4096)
    assert fitting.estimate.fits


def test_evaluate_of_a_model_too_big_for_any_quant_says_how_much_is_missing():
    ev = api.evaluate("llama3.1-70b", "laptop-16gb", quant="Q4_K_M", n_gpu_layers=0)
    assert ev.nearest_fit.startswith("nothing fits, even IQ1_M") and "GiB more memory" in ev.nearest_fit


def test_plan_and_plan_model_agree():
    hw = load_target("rtx4090")
    spec, hw2, res = api.plan_model("qwen3-8b", hw, PlanRequest(goal="speed"))
    assert hw2 is hw and res.best is not None
    assert api.plan(spec, hw, PlanRequest(goal="speed")).model_dump_json() == res.model_dump_json()


def test_recommend_ranks_by_the_cited_score_at_each_plan_above_the_readable_floor():
    from planner.optimize.rank import READABLE_TPS_GPU, score_at_plan
    rec = api.recommend(load_target("rtx4090"), top=8)
    assert rec.floor_tps == READABLE_TPS_GPU and len(rec.rows) == 8
    assert all(r.decode_tps >= rec.floor_tps for r in rec.rows)
    scored = [r for r in rec.rows if r.score is not None]
    assert scored == rec.rows[:len(scored)]  # models without a cited score come after
    assert [r.score_at_plan for r in scored] == sorted((r.score_at_plan for r in scored), reverse=True)
    assert all(abs(r.score_at_plan - score_at_plan(r.score, r.kld)) < 0.01 and r.metric and r.score_source
               for r in scored)
    assert scored[0].rank_why.startswith(scored[0].metric)


def test_recommend_stops_planning_early_and_gets_the_same_top_as_planning_every_model():
    """Models are planned in score order and planning stops once no unplanned model can enter the top: the top
    is what ranking every model's plan gives."""
    from planner.model.catalog import Filter, catalog, not_modeled, spec_for
    from planner.optimize import PlanRequest
    from planner.optimize.rank import score_at_plan
    hw, f = load_target("rtx4060"), Filter(family="gemma")
    rec = api.recommend(hw, top=3, catalog_filter=f)
    every = []
    for e in catalog():
        if e.family == "gemma" and e.quality and not not_modeled(e.id):
            best = api.plan(spec_for(e.id), hw, PlanRequest(goal="balanced", min_tps=rec.floor_tps)).best
            if best:
                every.append((score_at_plan(e.quality.score, best.predicted_kld), e.id))
    assert [r.model for r in rec.rows] == [m for _, m in sorted(every, reverse=True)[:3]]
    assert rec.considered < sum(e.family == "gemma" and not not_modeled(e.id) for e in catalog())


def test_recommend_says_which_better_models_need_more_than_the_box_has():
    rec = api.recommend(load_target("laptop-16gb"), top=3)
    assert rec.floor_tps == 5.0 and rec.rows
    assert rec.needs_more and all(s.score > rec.rows[-1].score_at_plan for s in rec.needs_more)
    assert all("tok/s" in s.why or "GiB" in s.why for s in rec.needs_more)
    slow = api.recommend(load_target("laptop-16gb"), top=3, min_tps=500)
    assert not slow.rows and slow.needs_more[0].why.startswith("no plan that fits reaches 500 tok/s")


def test_an_unknown_model_is_one_planner_error():
    with pytest.raises(ModelNotFoundError):
        api.evaluate("no-such-model-xyz", "rtx4090")
