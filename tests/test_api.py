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


def test_recommend_ranks_what_fits_bigger_models_first_at_low_kld():
    rows = api.recommend(load_target("rtx4090"), use="long-context")
    assert rows and all(r.n_params > 0 and r.decode_tps > 0 for r in rows)
    good = [r for r in rows if r.kld <= 0.1]
    assert [r.n_params for r in good] == sorted((r.n_params for r in good), reverse=True)


def test_an_unknown_model_is_one_planner_error():
    with pytest.raises(ModelNotFoundError):
        api.evaluate("no-such-model-xyz", "rtx4090")
