"""Every emitted flag exists in the vendored llama.cpp; the kwargs load the real SmolLM2."""

import json
import os
import shlex

import pytest
import yaml

from planner.cli.main import main
from planner.errors import PlannerError
from planner.export import render
from planner.model import load_gguf, load_model
from planner.optimize import PlanRequest, make_plan
from planner.profile.targets import load_target

FLAGS = json.load(open(os.path.join(os.path.dirname(__file__), "..", "fixtures", "llama_cpp_flags.json")))
# Ollama's documented Modelfile instructions and PARAMETER names (docs/modelfile.md, docs/api.md options)
OLLAMA_INSTR = {"FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE", "REQUIRES"}
OLLAMA_PARAMS = {"num_ctx", "num_gpu", "num_thread", "num_batch", "num_keep", "num_predict", "temperature", "top_k",
                 "top_p", "min_p", "seed", "stop", "repeat_last_n", "repeat_penalty", "main_gpu", "use_mmap"}


CASES = (("llama3.1-8b", "rtx4090", {}), ("qwen3-30b-a3b", "rtx4060", {}),
         ("llama3.1-70b", "2x-rtx3090", {"goal": "quality"}), ("llama3.1-70b", "rtx4090", {"goal": "speed"}))


def _plans(program="llama-server"):
    out = []
    for name, target, kw in CASES:
        m = load_model(name)
        out.append((m, make_plan(m, load_target(target), PlanRequest(program=program, **kw)).best))
    return out


PLANS = _plans()
OLLAMA_PLANS = _plans("ollama")


@pytest.mark.parametrize("m,opt", PLANS)
def test_llama_server_flags_exist_in_the_vendored_llama_cpp(m, opt):
    args = shlex.split(render("llama-server", opt, m, "x.gguf", threads=8))
    flags = [a for a in args[1:] if a.startswith("-") and not a.lstrip("-").replace(".", "").isdigit()]
    assert flags and set(flags) <= set(FLAGS["llama-server"]), set(flags) - set(FLAGS["llama-server"])


@pytest.mark.parametrize("m,opt", PLANS)
def test_llama_quantize_flags_exist_and_cover_every_tensor(m, opt):
    import re
    args = shlex.split(render("llama-quantize", opt, m, "out.gguf", src="in.gguf"))
    flags = [a for a in args[1:] if a.startswith("--")]
    assert set(flags) <= set(FLAGS["llama-quantize"])
    pats = [re.compile(args[i + 1].rsplit("=", 1)[0]) for i, a in enumerate(args) if a == "--tensor-type"]
    for t in m.tensors:
        if t.layer is not None and len(t.shape) >= 2 and "norm" not in t.name and "gate_inp" not in t.name:
            hits = [p for p in pats if p.search(t.name)]
            assert len(hits) == 1, (t.name, len(hits))


@pytest.mark.parametrize("m,opt", OLLAMA_PLANS)
def test_modelfile_uses_only_documented_instructions_and_parameters(m, opt):
    text = render("ollama", opt, m, "./model.gguf", threads=8)
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        instr, *rest = line.split()
        assert instr in OLLAMA_INSTR
        if instr == "PARAMETER":
            assert rest[0] in OLLAMA_PARAMS


def test_a_plan_with_experts_on_the_cpu_is_refused_where_the_program_cannot_say_so():
    m, opt = PLANS[1]  # Qwen3-30B-A3B on an 8 GB card: --n-cpu-moe
    assert opt.options.n_cpu_moe or opt.options.cpu_moe
    for kind in ("ollama", "llama-cpp-python"):
        with pytest.raises(PlannerError, match="cannot"):
            render(kind, opt, m, "x.gguf")
    m, ours = OLLAMA_PLANS[1]  # planned for Ollama: no pattern overrides, and it still fits
    assert not (ours.options.n_cpu_moe or ours.options.cpu_moe or ours.options.override_tensor)
    assert ours.estimate.fits and ours.options.cache_type_k == ours.options.cache_type_v
    assert ours.options.n_batch == ours.options.n_ubatch * ours.options.n_seq  # Ollama's runner


def test_server_line_pins_the_context_and_slots_it_was_estimated_with():
    m = load_model("llama3.1-8b")
    opt = make_plan(m, load_target("rtx4090"), PlanRequest(n_ctx=8192, n_seq=4)).best
    args = shlex.split(render("llama-server", opt, m, "x.gguf"))
    assert args[args.index("-c") + 1] == "8192" and args[args.index("-np") + 1] == "4"
    assert "--no-kv-unified" in args and opt.options.n_outputs == 4
    one = make_plan(m, load_target("rtx4090"), PlanRequest(n_ctx=8192)).best
    args = shlex.split(render("llama-server", one, m, "x.gguf"))
    assert args[args.index("-np") + 1] == "1"  # llama-server's own default is 4 slots


def test_published_files_are_named_for_the_downloaders():
    m, opt = PLANS[0]
    args = shlex.split(render("llama-server", opt, m, "hf.co/bartowski/X-GGUF:Q4_K_M"))
    assert args[1:3] == ["-hf", "bartowski/X-GGUF:Q4_K_M"] and "-m" not in args
    m, opt = OLLAMA_PLANS[0]
    froms = [x for x in render("ollama", opt, m, "hf.co/bartowski/X-GGUF:Q4_K_M").splitlines() if x.startswith("FROM")]
    assert froms == ["FROM hf.co/bartowski/X-GGUF:Q4_K_M"]  # nothing after the name: Ollama would read it as one
    m, opt = _plans("llama-cpp-python")[0]
    code = render("llama-cpp-python", opt, m, "hf.co/bartowski/X-GGUF:Q4_K_M")
    assert "Llama.from_pretrained(" in code and "repo_id='bartowski/X-GGUF'" in code and "'*-Q4_K_M.gguf'" in code


def test_legacy_flags_for_older_builds():
    m, opt = PLANS[0]
    args = shlex.split(render("llama-server", opt, m, "x.gguf", legacy=True))
    assert "--load-mode" not in args and args[args.index("-ngl") + 1] == "999"


def test_yaml_and_json_plans_carry_the_keys(tmp_path):
    m, opt = PLANS[0]
    d = yaml.safe_load(render("yaml", opt, m, "x.gguf"))
    assert {"devices", "throughput", "fits", "tensors", "quality"} <= set(d)
    assert {"name", "type", "device"} <= set(d["tensors"][0]) and d["quality"]["kld"] >= 0
    assert json.loads(render("json", opt, m, "x.gguf"))["fits"] is True


@pytest.mark.llama
def test_llama_cpp_python_kwargs_load_smollm2(smol_path):
    m = load_gguf(smol_path)
    opt = make_plan(m, load_target("laptop-16gb"), PlanRequest(quant="Q4_1", n_ctx=1024)).best
    code = render("llama-cpp-python", opt, m, smol_path)
    code = code.replace("llm = Llama(", "llm = Llama(verbose=False, ")
    ns: dict = {}
    exec(code, ns)  # noqa: S102 - the generated snippet, run as a user would
    llm = ns["llm"]
    assert llm.n_ctx() == 1024 and len(llm.tokenize(b"hello world")) > 1


def test_emit_writes_atomically_and_never_overwrites_without_force(tmp_path, capsys):
    out = tmp_path / "Modelfile"
    args = ["--model", "llama3.1-8b", "--target", "rtx4090", "--emit", "ollama", "-o", str(out)]
    assert main(args) == 0 and out.read_text().startswith("# Plan")
    out.write_text("mine")
    assert main(args) == 2 and out.read_text() == "mine"
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0 and "FROM" in out.read_text()
    assert not list(tmp_path.glob("*.part"))


def test_plan_file_puts_a_skipped_mtp_block_on_no_device():
    m = load_model("glm-4.5-air")  # 46 layers and one MTP block, which llama.cpp's loader skips
    opt = make_plan(m, load_target("2x-rtx3090"), PlanRequest()).best
    tensors = json.loads(render("json", opt, m, "x.gguf"))["tensors"]
    skipped = {t["name"] for t in tensors if t["device"] is None}
    assert skipped and all(n.startswith("blk.46.") for n in skipped)
    assert len(skipped) == sum(1 for t in m.tensors if t.layer == 46)
