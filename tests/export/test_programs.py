"""Each export run by the program it is for, built from the vendored llama.cpp: the buffers the program logs
are the plan's. llama-server answers /health and a completion; llama-cli one turn; llama-fit-params
projects the plan's memory; llama-quantize writes the plan's types; llama-cpp-python loads the kwargs.

The programs come from LLAMA_CPP_BIN (the folder ../shared/tools/build-llama-cpp-tools.sh prints; .ci/run
builds it and sets it) or PATH."""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from planner.cli.main import main
from planner.verify.child import parse_buffers
from tests.llama_bin import llama_bin

pytestmark = pytest.mark.llama
MiB = 1 << 20
PROGRAMS = ("llama-server", "llama-cli", "llama-fit-params", "llama-quantize")


@pytest.fixture(scope="module")
def bin_dir():
    return llama_bin(PROGRAMS)


def _plan(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def _line(capsys, kind: str, model: str, *extra) -> list[str]:
    out = _plan(capsys, "--model", model, "--target", "auto", "--emit", kind, "--threads", "2", *extra)
    lines = [x for x in out.splitlines() if x and not x.startswith("#")]
    assert len(lines) == 1, out
    return shlex.split(lines[0])


def _estimate(capsys, model: str, *extra) -> dict[str, float]:
    d = json.loads(_plan(capsys, "--model", model, "--target", "auto", "--json", "--threads", "2", *extra))
    mem = d["devices"][-1]["memory"]  # this box: the host alone
    # the model buffers llama.cpp logs: the file's mapped span plus the repacked (and AMX) copies
    return {"model": (mem["mapped_bytes"] + mem["repack_bytes"] + mem["amx_bytes"]) / MiB, "KV": mem["kv_bytes"] / MiB,
            "compute": mem["compute_bytes"] / MiB, "output": mem["output_bytes"] / MiB}


def _same_buffers(logged: dict[str, float], plan: dict[str, float]) -> None:
    got = {"model": sum(v for k, v in logged.items() if k.endswith(" model")),
           "KV": logged.get("CPU KV", 0.0), "compute": logged.get("CPU compute", 0.0),
           "output": logged.get("CPU output", 0.0)}
    for k, v in plan.items():
        assert abs(got[k] - v) <= max(0.02 * v, 0.05), (k, got, plan)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("extra", [(), ("--parallel", "4", "--ctx", "8192")])
def test_llama_server_line_serves_and_allocates_the_plan(bin_dir, smol_path, capsys, tmp_path, extra):
    args = _line(capsys, "llama-server", smol_path, *extra)
    plan = _estimate(capsys, smol_path, *extra)
    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as f:
        p = subprocess.Popen([os.path.join(bin_dir, args[0]), *args[1:], "--port", str(port), "-lv", "4"],
                             stdout=f, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("llama-server never became healthy: " + log.read_text()[-500:])
        out = _post(base + "/completion", {"prompt": "The capital of France is", "n_predict": 4})
        assert out["tokens_predicted"] >= 1 and out["content"]
    finally:
        p.terminate()
        p.wait(30)
    text = log.read_text()
    _same_buffers(parse_buffers(text), plan)
    if extra:  # the slots the plan was estimated with, not llama-server's default 4 unified
        assert re.search(r"n_slots = 4, n_ctx_slot = 2048, kv_unified = 'false'", text), text[-2000:]


def test_llama_cli_line_runs_one_turn_with_the_plans_buffers(bin_dir, smol_path, capsys):
    args = _line(capsys, "llama-cli", smol_path)
    plan = _estimate(capsys, smol_path)
    r = subprocess.run([os.path.join(bin_dir, args[0]), *args[1:], "-p", "Hello", "-n", "4", "-st", "--simple-io",
                        "-lv", "4"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-800:]
    _same_buffers(parse_buffers(r.stdout + r.stderr), plan)


def test_llama_fit_params_projects_the_plans_memory(bin_dir, smol_path, capsys):
    """llama-fit-params reserves n_batch outputs (common's n_outputs_max 0), as llama-cpp-python does: the plan
    for llama-cpp-python is the one it measures."""
    d = json.loads(_plan(capsys, "--model", smol_path, "--target", "auto", "--json", "--threads", "2",
                         "--program", "llama-cpp-python"))
    o = d["options"]
    r = subprocess.run([os.path.join(bin_dir, "llama-fit-params"), "-m", smol_path, "-c", str(o["n_ctx"]),
                        "-ngl", "0", "-fa", "on" if o["flash_attn"] else "off", "-b", str(o["n_batch"]),
                        "-ub", str(o["n_ubatch"]), "-lv", "4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-800:]
    m = re.search(r"Host\s*\|\s*(\d+) =\s*(\d+) \+\s*(\d+) \+\s*(\d+)", r.stdout + r.stderr)
    assert m, (r.stdout + r.stderr)[-1500:]
    total, model, context, compute = (int(x) for x in m.groups())
    mem = d["devices"][-1]["memory"]
    assert abs(model - mem["weights_bytes"] / MiB) <= 1
    assert abs(context - (mem["kv_bytes"] + mem["output_bytes"]) / MiB) <= 1
    assert abs(compute - mem["compute_bytes"] / MiB) <= 1


def test_llama_quantize_line_writes_the_plans_types(bin_dir, smol_path, capsys, tmp_path):
    from gguf import GGUFReader
    out = tmp_path / "plan.gguf"
    common = ["--model", smol_path, "--target", "laptop-16gb", "--own-mix", "--goal", "speed", "--threads", "2",
              "--measure", "off"]
    args = shlex.split(_plan(capsys, *common, "--emit", "llama-quantize", "--source-path", smol_path,
                             "--model-path", str(out)).strip().splitlines()[-1])
    d = json.loads(_plan(capsys, *common, "--emit", "json"))
    want = {t["name"]: t["type"] for t in d["tensors"]}
    assert len(set(want.values())) > 1  # a mix, not one type
    r = subprocess.run([os.path.join(bin_dir, args[0]), *args[1:]], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-800:]
    got = {t.name: t.tensor_type.name for t in GGUFReader(str(out)).tensors}
    assert got == want


def test_llama_cpp_python_kwargs_allocate_the_plan(smol_path, capsys, tmp_path):
    code = _plan(capsys, "--model", smol_path, "--target", "auto", "--emit", "llama-cpp-python", "--threads", "2")
    plan = _estimate(capsys, smol_path, "--program", "llama-cpp-python")
    script = tmp_path / "run.py"
    script.write_text(code.replace("llm = Llama(", "llm = Llama(verbose=True, ") + "print(llm.n_ctx())\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    _same_buffers(parse_buffers(r.stderr), plan)
