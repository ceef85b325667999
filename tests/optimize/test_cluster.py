"""Plans over several machines: the nodes used, the split, the network's cost, and the lines to run."""

import shlex

import pytest

from planner.estimate.throughput import rpc_seconds
from planner.export import cluster as cx
from planner.model import load_model
from planner.optimize import PlanRequest
from planner.optimize.cluster import plan_cluster
from planner.profile.cluster import load_cluster


def _plan(model, cluster, **req):
    return plan_cluster(load_model(model), load_cluster(cluster), PlanRequest(**req))


def test_a_70b_over_two_3090_boxes_uses_both_with_a_pinned_split_that_fits_each_card():
    cp = _plan("llama3.1-70b", "two-3090-10gbe")
    b = cp.result.best
    gpus = [d for d in b.estimate.devices if d.kind == "gpu"]
    assert len(gpus) == 2 and all(d.memory.total_bytes <= d.capacity_bytes * 0.95 for d in gpus)
    assert sum(d.n_layers for d in gpus) == 80 and sum(b.options.tensor_split) == 81
    assert b.bits_per_weight > 4 and b.estimate.fits
    # llama.cpp names the worker's device by its server and the main host's own CUDA0
    assert any(k.startswith("RPC0[192.168.1.11:50052] ") for k in gpus[0].buffers_mib)
    assert any(k.startswith("CUDA0 ") for k in gpus[1].buffers_mib)
    line = shlex.split(cx.main_line(cp, load_model("llama3.1-70b"), "m.gguf", 12))
    assert line[line.index("--rpc") + 1] == "192.168.1.11:50052"
    assert line[line.index("-ts") + 1] == ",".join(f"{x:g}" for x in b.options.tensor_split)
    assert line[line.index("-ngl") + 1] == "all"
    assert cx.rpc_server_line(cp, "den") == "ggml-rpc-server -H 192.168.1.11 -p 50052 -d CUDA0 -c"


def test_a_model_one_box_holds_stays_on_it_every_hop_costs_a_round_trip():
    cp = _plan("llama3.1-8b", "two-3090-10gbe")
    assert [n.node for n in cp.nodes] == ["desk"] and "--rpc" not in cx.main_line(cp, load_model("llama3.1-8b"),
                                                                                    "m.gguf")


def test_the_network_cost_is_the_links_round_trip_and_bytes_per_server(tmp_path):
    m = load_model("llama3.1-70b")
    fast, slow = tmp_path / "fast.yaml", tmp_path / "slow.yaml"
    for f, link in ((fast, "{gbit_s: 100, rtt_ms: 0.0}"), (slow, "{gbit_s: 1, rtt_ms: 5}")):
        f.write_text(f"name: {f.stem}\nlink: {link}\nnodes:\n  - {{name: a, profile: rtx3090, host: h}}\n"
                     "  - {name: b, profile: rtx3090, host: g}\n")
    req = PlanRequest(quant="Q4_K_M", n_ctx=4096, tensor_split=[41, 40])
    a, b = (plan_cluster(m, load_cluster(str(f)), req).result.best for f in (fast, slow))
    ta, tb = 1 / a.estimate.throughput.decode_tps, 1 / b.estimate.throughput.decode_tps
    layers = {d.index if d.kind == "gpu" else -1: d.n_layers for d in b.estimate.devices}
    cp = plan_cluster(m, load_cluster(str(slow)), req)
    net, _ = rpc_seconds(m, cp.hardware, layers, 0, 512)
    assert net == pytest.approx(5e-3 + (8 * 8192 + 2) / (1e9 / 8), rel=1e-6)
    assert tb - ta == pytest.approx(net - (8 * 8192 + 2) / (100e9 / 8), rel=0.02)


def test_a_moe_over_three_boxes_puts_layers_on_the_laptops_cpu_and_says_what_crosses_each_link():
    m = load_model("qwen3-235b-a22b-2507")
    cp = _plan("qwen3-235b-a22b-2507", "three-boxes-1gbe")
    b = cp.result.best
    assert b is not None and len(cp.nodes) == 3
    cpu = [d for d in b.estimate.devices if d.name.startswith("laptop")]
    assert cpu and cpu[0].n_layers > 0
    line = cx.rpc_server_line(cp, "laptop")
    assert "-d CPU" in line and "-t " in line
    notes = cx.copy_notes(cp)
    assert len(notes) == 2 and all("over the link" in n for n in notes)
    assert cx.main_line(cp, m, "m.gguf").endswith("--rpc 192.168.1.11:50052,192.168.1.12:50052")


def test_a_128_gb_mac_over_thunderbolt_holds_a_235b_with_the_4090_desktop():
    cp = _plan("qwen3-235b-a22b-2507", "4090-m3max-tb4")
    b = cp.result.best
    mac = next(d for d in b.estimate.devices if d.name.startswith("laptop"))
    host = b.estimate.devices[-1]
    assert mac.n_layers > 60 and b.bits_per_weight > 3.5
    # the Mac's memory is its own: the desktop's RAM is not reduced by it
    assert host.capacity_bytes > 50 << 30
