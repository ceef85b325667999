"""The verifier end to end on this machine's CPU, with llama.cpp doing the real work:
SmolLM2-135M dequantized once to F16 as the base (it ships as Q4_1: Q4_1 stays out of every
comparison, see shared research), quantized per plan; and the twin of a 1B-class model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from planner.errors import PlannerError
from planner.estimate import RuntimeOptions
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf, load_model
from planner.profile.targets import resolve_target
from planner.verify import calibration
from planner.verify.ggml import quantize_rows, roundtrip_error
from planner.verify.quantize import quantize
from planner.verify.run import read_plan, verify

MiB = 1 << 20
FAST = dict(pp=64, tg=8, reps=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    old = os.environ.get("PLANNER_CACHE_DIR")
    os.environ["PLANNER_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("PLANNER_CACHE_DIR", None)
    else:
        os.environ["PLANNER_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def hw():
    return resolve_target("auto")


@pytest.mark.llama
def test_ggml_quantizer_orders_types_by_error():
    x = np.random.default_rng(1).standard_normal((16, 512)).astype(np.float32)
    errs = [roundtrip_error(x, t) for t in ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K")]
    assert errs == sorted(errs) and errs[0] < 1e-4 < errs[-1]
    assert len(quantize_rows(x, "Q4_K")) == 16 * 512 // 256 * 144  # block_q4_K is 144 bytes


@pytest.mark.llama
def test_stock_ftypes_match_llama_quantize_byte_for_byte(base, tmp_path):
    m = load_gguf(base)
    for ftype, size in (("Q4_K_M", 105_454_144), ("Q8_0", 144_811_072)):  # quality.md, via llama_model_quantize
        r = quantize(base, str(tmp_path / f"{ftype}.gguf"), m, ftype_tensor_types(m, ftype))
        assert r.bytes == size and not r.requantized


@pytest.mark.llama
def test_mixed_plan_types_are_what_the_file_holds(base, tmp_path):
    m = load_gguf(base)
    types = ftype_tensor_types(m, "Q4_K_M")
    for t in m.tensors:
        if t.layer is not None and t.role == "attn_q":
            types[t.name] = "Q5_0" if t.layer % 2 else "IQ4_NL"
        if t.layer is not None and t.role == "ffn_down":
            types[t.name] = "Q6_K" if t.layer < 4 else "Q3_K"
    seen = []
    out = tmp_path / "mix.gguf"
    quantize(base, str(out), m, types, progress=lambda i, n, name: seen.append((i, n)))
    got = {t.name: t.type for t in load_gguf(str(out)).tensors}
    assert got == {n: types.get(n, t) for n, t in got.items()}
    assert seen[-1] == (272, 272) and not os.path.exists(str(out) + ".part")


@pytest.mark.llama
def test_requantizing_warns_and_disk_space_is_checked(smol_path, tmp_path, monkeypatch):
    m = load_gguf(smol_path)
    r = quantize(smol_path, str(tmp_path / "rq.gguf"), m, ftype_tensor_types(m, "Q8_0"))
    assert r.requantized and "loses quality" in r.warnings[0]
    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1 << 20))
    with pytest.raises(PlannerError, match="not enough disk space"):
        quantize(smol_path, str(tmp_path / "full.gguf"), m, ftype_tensor_types(m, "Q8_0"))
    assert not os.path.exists(tmp_path / "full.gguf")


@pytest.mark.llama
def test_verify_mixed_plan_memory_speed_quality_and_calibration(base, hw, cache, tmp_path):
    m = load_gguf(base)
    opts = RuntimeOptions(n_ctx=2048)
    kld = {}
    reps = {}
    for name in ("Q8_0", "Q4_K_M", "Q2_K"):
        types = ftype_tensor_types(m, name)
        rep = verify(m, types, opts, hw, source=base, out=str(tmp_path / f"{name}.gguf"), **FAST)
        assert rep.loaded and rep.measured is not None, rep.failure
        host = rep.errors
        dev = rep.predicted.devices[-1].name
        assert abs(host[f"{dev}.weights_bytes"]) < 1e-4 and abs(host[f"{dev}.kv_bytes"]) < 1e-4
        assert abs(host[f"{dev}.compute_bytes"]) <= 0.05
        assert rep.measured.decode_tps > 0 and rep.measured.prefill_tps > 0
        kld[name], reps[name] = rep.measured.kld, rep
    # quality is ordered by precision (KLD against the F16 source over the shipped text)
    assert 0 < kld["Q8_0"] < kld["Q4_K_M"] < kld["Q2_K"]
    assert reps["Q8_0"].measured.top1 > reps["Q2_K"].measured.top1
    # the first run taught the machine's overhead: later predictions of the total are within 5%
    dev = reps["Q2_K"].predicted.devices[-1].name
    assert abs(reps["Q2_K"].errors[f"{dev}.total_bytes"]) <= 0.05
    assert reps["Q2_K"].ok and reps["Q2_K"].calibration_runs == 3
    cal = calibration.load(hw)
    # memory is kept from every run, quiet or busy (speed only from quiet ones: tests/verify/test_calibration.py)
    assert cal is not None and cal.kept == 3 and cal.host_overhead_bytes


def test_speed_ratios_of_an_older_speed_model_are_not_applied(tmp_path, monkeypatch):
    # a verify run's measured/predicted ratio is about the model that predicted it; its overhead is about the machine
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    hw = resolve_target("laptop-16gb")
    calibration.record(hw, {"decode_ratio": 0.5, "prefill_ratio": 2.0, "host_overhead_bytes": 100 << 20})
    cal = calibration.load(hw)
    # one run moves plans by a third of its ratio in log space (shrunk toward 1 until 3 runs agree)
    assert (cal.runs, cal.kept) == (1, 1)
    assert cal.decode_factor == pytest.approx(0.5 ** (1 / 3)) and cal.prefill_factor == pytest.approx(2 ** (1 / 3))
    monkeypatch.setattr(calibration, "speed_model", lambda: "a later model")
    cal = calibration.load(hw)
    assert (cal.runs, cal.kept, cal.decode_factor, cal.prefill_factor) == (0, 1, 1.0, 1.0)
    assert cal.host_overhead_bytes == 100 << 20


@pytest.mark.llama
def test_twin_of_a_1b_model_loads_and_measures(hw, cache):
    m = load_model("llama3.2-1b")
    rep = verify(m, ftype_tensor_types(m, "Q4_K_M"), RuntimeOptions(n_ctx=4096), hw, twin=True, **FAST)
    assert rep.loaded, rep.failure
    dev = rep.predicted.devices[-1].name
    assert abs(rep.errors[f"{dev}.weights_bytes"]) < 1e-4 and abs(rep.errors[f"{dev}.kv_bytes"]) < 1e-4
    assert abs(rep.errors[f"{dev}.compute_bytes"]) <= 0.05
    assert rep.measured.kld is None  # a twin has no quality
    assert rep.file and not os.path.exists(rep.file)  # cleaned up


@pytest.mark.llama
def test_a_plan_that_cannot_fit_is_reported_not_fatal(hw, cache):
    m = load_model("llama3.2-1b")
    rep = verify(m, ftype_tensor_types(m, "Q4_K_M"), RuntimeOptions(n_ctx=1_000_000), hw, twin=True,
                 replan=lambda h: "smaller context", **FAST)
    assert not rep.ok and not rep.loaded
    assert rep.failure.startswith("does not fit: needed 32.") and rep.replanned == "smaller context"


def test_plan_file_round_trip_and_bad_files(tmp_path):
    from planner.cli.main import main
    p = tmp_path / "plan.yaml"
    assert main(["--model", "smollm2-135m", "--target", "rtx4090", "--emit", "yaml", "-o", str(p)]) == 0
    plan = read_plan(str(p))
    assert plan.types["blk.0.attn_v.weight"] and plan.options.n_ctx >= 4096
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: text\n")
    with pytest.raises(PlannerError, match="not a plan file"):
        read_plan(str(bad))
    bad.write_text("{{{")
    with pytest.raises(PlannerError, match="not a plan file"):
        read_plan(str(bad))


@pytest.mark.llama
def test_cli_verify_twin_json_and_user_errors(tmp_path, cache, capsys):
    import json

    from planner.cli.main import main
    p = tmp_path / "plan.yaml"
    assert main(["--model", "smollm2-135m", "--target", "auto", "--ctx", "1024", "--emit", "yaml", "-o", str(p)]) == 0
    capsys.readouterr()
    rc = main(["verify", str(p), "--twin", "--json", "--pp", "32", "--tg", "4", "--reps", "1"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["ok"] and d["loaded"]
    assert {"predicted", "measured", "errors"} <= set(d)
    assert d["measured"]["devices"][0]["memory"]["total_bytes"] > 0 and d["measured"]["decode_tps"] > 0
    assert main(["verify", str(p)]) == 2
    assert "needs --source" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "nope.yaml"), "--twin"]) == 2
    assert "cannot read plan" in capsys.readouterr().err


@pytest.mark.llama
def test_measured_errors_make_a_mix_that_beats_stock_q4_k_m(base, cache, tmp_path):
    """The optimizer with errors measured on the weights, at Q4_K_M's bytes, against
    llama.cpp's own Q4_K_M: real KLD over the shipped text (bench/quality.py does every ftype)."""
    from planner.model.ggml_types import tensor_bytes
    from planner.optimize.allocate import allocate
    from planner.optimize.quality import predicted_kld
    from planner.verify.child import run_probe
    from planner.verify.run import TEXT, base_logprobs
    from planner.verify.tensor_error import measure_errors
    m = load_gguf(base)
    errors = measure_errors(base, m)
    assert set(errors["blk.0.ffn_down.weight"]) >= {"Q8_0", "Q6_K", "Q4_K", "Q2_K"}
    assert errors["blk.0.attn_q.weight"].keys().isdisjoint({"Q4_1", "Q4_K"})  # 576-wide rows; Q4_1 excluded
    stock = ftype_tensor_types(m, "Q4_K_M")
    budget = sum(tensor_bytes(stock[t.name] if t.name in stock else t.type, t.shape) for t in m.tensors)
    ours = allocate(m.tensors, budget, m.n_layers, m.tied_embeddings, errors=errors)
    assert sum(tensor_bytes(ours[t.name], t.shape) for t in m.tensors) <= budget
    assert len({ours[t.name] for t in m.tensors if t.role == "ffn_up"} | {ours["blk.0.attn_v.weight"]}) > 1
    assert predicted_kld(m.with_types(ours), errors) < predicted_kld(m.with_types(stock), errors)
    from tests.conftest import AMX_SAFE
    npy, _ = base_logprobs(base, **AMX_SAFE)
    kld = {}
    for name, types in (("stock", stock), ("ours", ours)):
        p = str(tmp_path / f"{name}.gguf")
        quantize(base, p, m, types)
        r = run_probe(dict(mode="logits", model=p, text=TEXT, base=npy, **AMX_SAFE), timeout_s=600)
        kld[name] = r["kld"]
    assert kld["ours"] < 0.8 * kld["stock"], kld


@pytest.mark.llama
def test_an_importance_matrix_changes_the_quantization(base, tmp_path):
    """A GGUF imatrix (llama-imatrix's layout: <tensor>.in_sum2 and <tensor>.counts) reaches
    ggml's quantizer: the same plan quantizes to other bytes, and IQ2 types become possible."""
    from gguf import GGUFWriter

    from planner.verify.imatrix import load_imatrix
    m = load_gguf(base)
    path = tmp_path / "imatrix.gguf"
    w = GGUFWriter(str(path), "imatrix")
    rng = np.random.default_rng(0)
    for t in m.tensors:
        if t.layer is not None and len(t.shape) == 2:
            w.add_tensor(f"{t.name}.in_sum2", (rng.random(t.shape[0]) * 50 + 1).astype(np.float32))
            w.add_tensor(f"{t.name}.counts", np.array([10.0], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    im = load_imatrix(str(path))
    assert im["blk.0.ffn_down.weight"].shape == (1, 1536) and im["blk.0.ffn_down.weight"].min() >= 0.1
    types = ftype_tensor_types(m, "Q4_K_M")
    types.update({t.name: "IQ2_XS" for t in m.tensors if t.role == "ffn_down"})
    a, b = tmp_path / "with.gguf", tmp_path / "plain.gguf"
    quantize(base, str(a), m, types, imatrix=str(path))
    quantize(base, str(b), m, ftype_tensor_types(m, "Q4_K_M"), imatrix=str(path))
    c = tmp_path / "noim.gguf"
    quantize(base, str(c), m, ftype_tensor_types(m, "Q4_K_M"))
    assert load_gguf(str(a)).tensor("blk.3.ffn_down.weight").type == "IQ2_XS"
    assert b.stat().st_size == c.stat().st_size and b.read_bytes() != c.read_bytes()
    with pytest.raises(PlannerError, match="not a GGUF imatrix|no imatrix entries"):
        load_imatrix(base)
