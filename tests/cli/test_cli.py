"""The command line as a user and a script see it."""

import json
import os
import subprocess
import sys

import pytest

from planner.cli.main import main


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_main_job_json_keys(capsys):
    code, out, _ = run(["--model", "llama3.1-70b", "--target", "rtx4090", "--ngl", "30", "--json"], capsys)
    d = json.loads(out)
    assert code == (0 if d["fits"] else 3)
    gpu = d["devices"][0]
    assert gpu["kind"] == "gpu" and gpu["name"].endswith("4090")
    assert set(gpu["memory"]) >= {"weights_bytes", "kv_bytes", "compute_bytes", "overhead_bytes", "total_bytes"}
    assert d["devices"][-1]["kind"] == "cpu"
    assert d["throughput"]["decode_tps"] > 0 and d["throughput"]["prefill_tps"] > 0


def test_8b_fits_a_4090_and_70b_q4_does_not_fit_a_laptop(capsys):
    assert run(["--model", "llama3.1-8b", "--target", "rtx4090"], capsys)[0] == 0
    code, out, _ = run(["--model", "llama3.1-70b", "--target", "laptop-16gb"], capsys)
    assert code == 3 and "does not fit" in out and "GiB more RAM" in out


def test_pinned_options_change_the_estimate(capsys):
    pins = ["--model", "qwen3-8b", "--target", "rtx4090", "--quant", "Q4_K_M", "--ngl", "99", "--json"]
    base = json.loads(run(pins + ["--ctx", "4096"], capsys)[1])
    long = json.loads(run(pins + ["--ctx", "32768", "--cache-type-k", "q8_0", "--cache-type-v", "q8_0"], capsys)[1])
    assert long["devices"][0]["memory"]["kv_bytes"] == base["devices"][0]["memory"]["kv_bytes"] * 8 * 17 // 32
    moe = json.loads(run(["--model", "qwen3-30b-a3b", "--target", "rtx4060", "--n-cpu-moe", "48", "--ngl", "99",
                          "--quant", "Q4_K_M", "--json"], capsys)[1])
    assert moe["devices"][0]["memory"]["weights_bytes"] < 2 * 1024**3


def test_show_json(capsys):
    code, out, _ = run(["show", "llama3.1-70b", "--json"], capsys)
    d = json.loads(out)
    assert (code, d["architecture"], d["n_layers"], d["n_kv_heads"]) == (0, "llama", 80, 8)
    assert abs(d["n_params"] / 70.55e9 - 1) < 0.005
    assert {"name", "shape", "type"} <= set(d["tensors"][0])


def test_profile_json_keys(capsys):
    code, out, _ = run(["profile", "--target", "2x-rtx3090", "--json"], capsys)
    d = json.loads(out)
    assert d["cpu"]["cores"] == 16 and d["ram"]["total_bytes"] > 0 and d["ram"]["bandwidth_gbps"] > 0
    assert [g["vram_total_bytes"] for g in d["gpus"]] == [24576 * 1024**2] * 2
    assert all(g["bandwidth_gbps"] == 936 for g in d["gpus"])


def test_models_and_targets_list(capsys):
    code, out, _ = run(["models", "gemma3"], capsys)
    assert code == 0 and "gemma3-27b" in out and "llama" not in out
    code, out, _ = run(["targets"], capsys)
    assert "m3-max-128gb" in out


@pytest.mark.parametrize("args,msg", [
    (["--model", "llama9-7b", "--target", "rtx4090"], "unknown model"),
    (["--model", "llama3.1-8b", "--target", "rtx9090"], "unknown target"),
    (["--model", "llama3.1-8b", "--target", "rtx4090", "--quant", "Q9_K"], "unknown quant type"),
    (["--model", "llama3.1-8b", "--target", "rtx4090", "--cache-type-v", "q4_0", "--flash-attn", "off"],
     "flash attention"),
    (["--model", "/nonexistent/x.gguf"], "does not exist"),
    (["imatrix", "/nonexistent/x.gguf", "--text", "t.txt", "-o", "x.imatrix.gguf"], "does not exist"),
    (["--model", "llama3.1-8b", "--imatrix-file", "/nonexistent/im.gguf"], "plan imatrix"),
    # llama.cpp would drop the third share unseen and plan a split the user did not ask for
    (["--model", "llama3.1-8b", "--target", "2x-rtx3090", "--tensor-split", "1,2,3"], "3 shares but the target has 2"),
    (["--model", "llama3.1-8b", "--target", "laptop-16gb", "--tensor-split", "1,1"], "has no GPU"),
    (["--model", "llama3.1-8b", "--target", "2x-rtx3090", "--tensor-split", "1,-1"], "none negative"),
    (["--model", "llama3.1-8b", "--target", "2x-rtx3090", "--tensor-split", "0,0"], "not all 0"),
    (["--model", "llama3.1-8b", "--target", "laptop-16gb", "--threads", "0"], "expected 1 to 4096 threads"),
    (["--model", "llama3.1-8b", "--margin", "150"], "expected 0 to 99 percent"),
    (["--model", "llama3.1-8b", "--ctx", "4096", "--depth", "5000"], "past the --ctx 4096"),
    # llama.cpp takes it and does nothing: the user meant --ngl
    (["--model", "llama3.1-8b", "--target", "rtx3060", "--n-cpu-moe", "10"], "has none (a dense model)"),
])
def test_user_mistakes_are_one_line_and_exit_2(capsys, args, msg):
    code, out, err = run(args, capsys)
    assert code == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_runs_as_a_user_would():
    import shutil
    plan = shutil.which("plan") or os.path.join(os.path.dirname(sys.executable), "plan")
    assert os.path.exists(plan), "the `plan` console script is not installed: pip install -e . (or pip install .)"
    p = subprocess.run([plan, "show", "smollm2"], capture_output=True, text=True)
    assert p.returncode == 0 and "30 layers" in p.stdout


def test_override_tensor_and_depth(capsys):
    pins = ["--model", "qwen3-30b-a3b", "--target", "rtx4090", "--quant", "Q4_K_M", "--ngl", "99", "--ctx", "8192",
            "--json"]
    base = json.loads(run(pins, capsys)[1])
    ot = json.loads(run(pins + ["-ot", "ffn_.*_exps=CPU"], capsys)[1])
    assert ot["devices"][0]["memory"]["weights_bytes"] < base["devices"][0]["memory"]["weights_bytes"] / 5
    deep = json.loads(run(pins + ["--depth", "8000"], capsys)[1])
    assert deep["throughput"]["decode_tps"] < base["throughput"]["decode_tps"]
    code, _, err = run(["--model", "qwen3-30b-a3b", "-ot", "exps=CUDA0"], capsys)
    assert code == 2 and "REGEX=CPU" in err


@pytest.mark.llama
def test_imatrix_from_the_command_line_reaches_the_quantize_line(base, tmp_path, capsys):
    from planner.verify.run import TEXT
    out = str(tmp_path / "smol.imatrix.gguf")
    code, o, _ = run(["imatrix", base, "--text", TEXT, "-o", out, "--ctx", "64", "--chunks", "1", "--json"], capsys)
    assert code == 0 and json.loads(o)["n_entries"] == 210
    code, _, err = run(["imatrix", base, "--text", TEXT, "-o", out], capsys)
    assert code == 2 and "--force" in err
    code, o, _ = run(["--model", base, "--target", "laptop-16gb", "--measure", "off", "--imatrix-file", out,
                      "--emit", "llama-quantize"], capsys)
    assert code == 0 and f"--imatrix {out}" in o


def test_threads_pin_the_cpu_speed_and_the_launch_line(capsys):
    pins = ["--model", "llama3.2-1b", "--target", "laptop-16gb", "--quant", "IQ2_XXS", "--ctx", "4096"]
    one = json.loads(run(pins + ["--threads", "1", "--json"], capsys)[1])
    four = json.loads(run(pins + ["--json"], capsys)[1])  # the profile's 4 physical cores
    assert one["options"]["threads"] == 1 and four["options"]["threads"] is None
    assert one["throughput"]["prefill_tps"] < four["throughput"]["prefill_tps"] / 3
    assert one["throughput"]["decode_tps"] < four["throughput"]["decode_tps"]  # one core's IQ2 kernel < the memory
    code, line, _ = run(pins + ["--threads", "1", "--emit", "llama-server"], capsys)
    assert code == 0 and " -t 1" in line


def test_plan_on_a_cluster_prints_each_nodes_line_and_the_json_carries_them(capsys):
    assert main(["--model", "llama3.1-70b", "--target", "two-3090-10gbe"]) == 0
    out = capsys.readouterr().out
    assert "on den:" in out and "ggml-rpc-server -H 192.168.1.11 -p 50052 -d CUDA0 -c" in out
    assert "--rpc 192.168.1.11:50052" in out and "RTX 3090" in out and "over the link" in out
    assert main(["--model", "llama3.1-70b", "--target", "two-3090-10gbe", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fits"] and [n["node"] for n in d["nodes"]] == ["desk", "den"]
    assert d["nodes"][1]["run"].startswith("ggml-rpc-server") and "--rpc" in d["nodes"][0]["run"]
    assert sum(d["tensor_split"]) == 81 and d["plan"]["tensors"]


def test_emit_rpc_server_gives_the_workers_lines_and_only_with_a_cluster(capsys):
    assert main(["--model", "qwen3-235b-a22b-2507", "--target", "three-boxes-1gbe", "--emit", "rpc-server"]) == 0
    out = capsys.readouterr().out
    assert out.count("ggml-rpc-server") == 2 and "# on laptop" in out
    assert main(["--model", "llama3.1-8b", "--target", "rtx4090", "--emit", "rpc-server"]) == 2
    assert "cluster" in capsys.readouterr().err
    assert main(["--model", "llama3.1-70b", "--target", "two-3090-10gbe", "--emit", "ollama"]) == 2


def test_plan_targets_lists_the_example_clusters(capsys):
    assert main(["targets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows if r["kind"] == "cluster"} >= {"two-3090-10gbe", "three-boxes-1gbe"}
