"""Plans on published files: each file planned with its own types, ranked by the goal's score; the own mix
offered only when it is worth its steps; the nearest runnable things when nothing fits."""

from planner.api import plan, plan_runnable
from planner.estimate import ftype_tensor_types
from planner.model import load_model
from planner.model.published import published_files
from planner.optimize import PlanRequest
from planner.optimize.published import plan_files, upgrade
from planner.optimize.search import score
from planner.profile.targets import load_target


def test_each_file_is_planned_with_its_own_types_and_ranked_by_the_goal():
    m, hw = load_model("llama3.1-8b"), load_target("rtx4060")
    req = PlanRequest()
    files = published_files("llama3.1-8b")
    plans = plan_files(m, hw, req, files, top=len(files))
    assert len(plans) >= 5 and all(p.option.estimate.fits for p in plans)
    # branch and bound gives the same best three as planning every file
    assert [p.file.label for p in plan_files(m, hw, req, files)] == [p.file.label for p in plans[:3]]
    scores = [score(p.option, req.goal) for p in plans]
    assert scores == sorted(scores)
    q4 = next(p for p in plans if p.file.quant == "Q4_K_M" and not p.file.tag)
    assert q4.option.types == ftype_tensor_types(m, "Q4_K_M", imatrix=True)
    lib = next(p for p in plans if p.file.tag == "llama3.1:8b")
    assert lib.option.predicted_kld > q4.option.predicted_kld  # the same ftype without an imatrix loses more


def test_the_own_mix_is_worth_it_only_when_it_beats_the_file_for_the_goal():
    m, hw = load_model("llama3.1-70b"), load_target("rtx4090")
    run = plan_runnable(m, hw, PlanRequest())
    assert run.published and run.upgrade is not None
    assert run.upgrade.worth_it and run.upgrade.kld_gain >= 0.15  # 2-bit published files vs a mix of IQ2/IQ3
    same = upgrade(run.published[0].option, run.published[0].option, "balanced")
    assert not same.worth_it and "not enough better" in same.why


def test_nothing_fits_names_runnable_lines():
    m, hw = load_model("llama3.1-70b"), load_target("laptop-16gb")
    req = PlanRequest()
    run = plan_runnable(m, hw, req, plan(m, hw, req))
    assert run.custom.best is None and not run.published
    need, *models = run.nearest
    assert "the smallest published file" in need and "GiB" in need  # what a box needs to run any of them
    assert models and all("llama-server -hf " in line for line in models)
    assert models[0].startswith("llama3.1-8b")  # the same family first


def test_a_pinned_quant_plans_no_published_file():
    m, hw = load_model("llama3.1-8b"), load_target("rtx4090")
    run = plan_runnable(m, hw, PlanRequest(quant="Q4_K_M"))
    assert run.published == [] and run.custom.best is not None


def test_a_plan_under_a_token_a_second_names_faster_models():
    from planner.profile.targets import resolve_target
    m = load_model("llama3.1-70b")
    hw = resolve_target("laptop-16gb", ram_gib=25)  # a 2-bit 70B fits in RAM, and crawls on 4 cores
    run = plan_runnable(m, hw, PlanRequest())
    top = run.published[0].option if run.published else run.custom.best
    assert top is not None and top.estimate.throughput.decode_tps < 1.0
    assert run.nearest and all("llama-server -hf " in line for line in run.nearest)
