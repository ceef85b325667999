"""This CPU measured by llama.cpp: a self-benchmark (60-90 s on 2 cores) that fits the CPU speed constants
(profile.hardware.CPUSpeed) to this machine, kept per boot in the user's cache dir.

Shape twins, written to a temporary folder and deleted after:
- nodes: 32 layers 256 wide, 7 MB of Q4_K that stays in the caches: a token is llama.cpp's fixed cost per graph
  node; timed again after DEPTH tokens of context (its 64 MiB of KV past the caches): the KV read rate at depth
  and a prompt's attention rate;
- one per type of TYPES: 4 layers of a 3B model (2048 wide, FFN 5632), 116-219 MB, past the caches: a token is
  mostly reading its weights;
- narrow, one per type of TYPES, its prompt only: 8 layers 512 wide (SmolLM2's width), 4.5x the output rows a
  weight of the bytes twin.
Each is timed like llama-bench (probe.py bench: llama_decode in a loop, random tokens, a warm-up, the median of
REPS runs) on all physical cores (decode and prompt) and on one (decode), the first type's twin and the nodes twin
once more at the end (the drift between the passes says whether the machine held still; the cost per node is the
median over both passes). With the estimator's own facts of each
twin (estimate.cpu_facts: bytes by type, nodes, KV per cell):
- t_node = the nodes twin's decode time (the median over both passes) / its nodes;
- each type's read rate R_T = its bytes / (its decode time - nodes x t_node); the memory's ceiling is the
  fastest R_T (or the copy test, if higher); a type read at MEMORY_BOUND_AT of it on all cores is paced by the
  memory, and one core's rate tells its kernel; each type's scale is its per-core rate over the reference
  kernels' (cpu_kernels.yaml); untimed types take SCALE_LIKE's;
- the prompt (PP tokens): a token's time is FLOPs / rate + output rows x a cost per row (a dot product each, a
  fixed cost beside its length: short rows multiply slower per weight) + nodes x a cost per node; the nodes, Q4_K
  and narrow Q4_K twins give Q4_K's three, then each type's rate and row cost come from its two twins;
- at depth: the decode time's growth over the KV bytes it reads, and the prompt's over its attention FLOPs.
docs/speed.md has the formulas and the accuracy; bench/cpu_truth.py checks the fit against llama-bench.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import statistics

from planner.estimate.constants import cpu_kernels
from planner.estimate.estimate import CPUFacts, cpu_facts
from planner.estimate.options import RuntimeOptions
from planner.fileio import write_cache
from planner.model.hf_config import spec_from_hf_config
from planner.model.spec import ModelSpec
from planner.profile.hardware import UNSTEADY, CPUSpeed, HardwareProfile

BENCH_VERSION = 5  # bump when the twins, the loop or the fit change: cached results of another version are re-measured
# types not timed take the scale of the timed type whose kernel family they share (an assumption, not measured):
# legacy blocks without a repacked kernel like Q4_1, the other K and I types like Q4_K, F16/BF16 like Q8_0
SCALE_LIKE = {"Q5_0": "Q4_1", "Q5_1": "Q4_1", "IQ4_NL": "Q4_0", "MXFP4": "Q4_0", "F16": "Q8_0", "BF16": "Q8_0",
              "Q2_K": "Q4_K", "Q3_K": "Q4_K", "Q5_K": "Q4_K", "IQ4_XS": "Q4_K", "IQ3_S": "Q4_K", "IQ3_XXS": "Q4_K",
              "IQ2_S": "Q4_K", "IQ2_XS": "Q4_K", "IQ2_XXS": "Q4_K", "IQ1_M": "Q4_K", "IQ1_S": "Q4_K"}
REPS = 5  # timed runs per twin and thread count (the median counts): a shared box's noise comes in bursts
DEPTH = 4096  # the nodes twin is timed again after this much context: its 64 MiB of KV is past the caches
MEMORY_BOUND_AT = 0.9  # a type read at this share of the fastest type's rate on all cores is paced by the memory
BUSY_KEEP_S = 600  # a result timed on a busy machine is kept this long, then measured again
AGAIN = "again"  # the first type's twin timed once more at the end: how far the machine's memory moved meanwhile
NODES_AGAIN = "nodes_again"  # the nodes twin timed once more at the end: its thread barriers move on their own (a
# VM's vCPUs co-scheduled or not: 1.7-3.3 ms a token within one minute here), so its cost per node is the median
# over both passes, and the drift is the larger of the two
OPTS = RuntimeOptions(n_ctx=512, n_gpu_layers=0)
TYPES = ("Q4_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1")  # one twin each: the types published files are made of
SHAPES = {  # twin -> (layers, width, FFN, heads, KV heads)
    "nodes": (32, 256, 512, 4, 2),  # 7 MB of Q4_K: a token is mostly llama.cpp's fixed cost per graph node
    "bytes": (4, 2048, 5632, 16, 4),  # 4 layers of a 3B model, 116-219 MB, past the caches: mostly reading weights
    "narrow": (8, 512, 1536, 8, 2),  # 512 wide (SmolLM2's width): 4.5x the bytes twin's output rows a weight, so a
    # prompt's fixed cost per dot product separates from its rate per weight
}
NARROW = "narrow"  # one narrow twin per type of TYPES, timed for its prompt only
PP = 128  # prompt tokens the one-type twins are timed at: at 64 the Q4_K twin ran 380-423 tok/s, at 128 and 512
# 496-540 (llama-bench, one call: bench/cpu_truth.py's docs), so 64 reads the matrix products slow


# what the self-benchmark is doing, for a front end to show (the CLI prints it on stderr, the wizard as a notice)
log = logging.getLogger(__name__)

def twin_spec(name: str, ty: str = "Q4_K") -> ModelSpec:
    layers, width, ff, heads, kv = SHAPES[name]
    cfg = dict(architectures=["LlamaForCausalLM"], hidden_size=width, intermediate_size=ff, num_hidden_layers=layers,
               num_attention_heads=heads, num_key_value_heads=kv, vocab_size=1024, tie_word_embeddings=True,
               max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0)
    m = spec_from_hf_config(cfg, f"cpu-bench-{name}-{ty}", "planner self-benchmark twin")
    return m.with_types({t.name: ty for t in m.tensors if len(t.shape) >= 2})


def available() -> bool:
    """llama-cpp-python importable, and not switched off (PLANNER_SELF_BENCH=0)."""
    if os.environ.get("PLANNER_SELF_BENCH", "1") == "0":
        return False
    try:
        import llama_cpp  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or a broken build: fall back to the copy test
        return False
    return True


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        try:
            import psutil
            return str(int(psutil.boot_time()))
        except Exception:  # noqa: BLE001
            return "unknown boot"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return "?"


def _key(hw: HardwareProfile) -> str:
    from planner.verify.calibration import fingerprint
    return "|".join((fingerprint(hw), _boot_id(), _version(), str(BENCH_VERSION)))


def _path() -> str:
    from planner.verify.calibration import cache_dir
    return os.path.join(cache_dir(), "cpu-speed.json")


def _read() -> dict:
    from planner.verify.calibration import read_cache
    return read_cache(_path())


def cached(hw: HardwareProfile) -> CPUSpeed | None:
    """This boot's result for this machine, when there is one still good (a busy one for BUSY_KEEP_S)."""
    hit = _read().get(_key(hw))
    if not hit:
        return None
    try:
        speed = CPUSpeed.model_validate(hit["speed"])
    except (KeyError, ValueError):
        return None
    if speed.busy and (datetime.datetime.now(datetime.UTC).timestamp() - hit.get("time", 0)) > BUSY_KEEP_S:
        return None
    return speed


def _time(paths: dict[str, str], threads: list[int]) -> dict:
    from planner.verify.child import run_probe
    jobs = [{"model": p, "pp": 128, "tg": 256, "depth": DEPTH, "tg_deep": 64} if k == "nodes"
            else {"model": p, "pp": 16, "tg": 256} if k == NODES_AGAIN
            else {"model": p, "pp": PP, "tg": 8} if k.startswith(NARROW)
            else {"model": p, "pp": PP, "tg": 48} for k, p in paths.items()]
    r = run_probe({"mode": "bench", "models": jobs, "threads": threads, "pp_threads": threads[:1], "reps": REPS},
                  timeout_s=300)
    if not r.get("ok"):
        raise RuntimeError(f"the llama.cpp self-benchmark failed: {r.get('error')}")
    return {k: {"pp": j["pp"], "tg": j["tg"], "tg_deep": job.get("tg_deep", j["tg"]),
                "runs": {str(run["threads"]): run for run in j["runs"]}}
            for k, j, job in zip(paths, r["models"], jobs, strict=True)}


def measure(hw: HardwareProfile) -> dict:
    """Write the twins to a temporary folder and time them on all physical cores (decode and prompt) and on one
    (decode), in one llama.cpp child (about 35 s on 2 cores); returns what fit() takes."""
    import tempfile

    from planner.verify.twin import write_twin
    n = hw.cpu.cores
    with tempfile.TemporaryDirectory(prefix="planner-cpu-bench-") as d:
        paths = {k: os.path.join(d, f"{k}.gguf") for k in ("nodes", *TYPES, *(f"{NARROW}-{ty}" for ty in TYPES))}
        for k, p in paths.items():
            write_twin(_twin_of(k), p, fill="random", default_type="F32")
        t = _time(paths | {AGAIN: paths[TYPES[0]], NODES_AGAIN: paths["nodes"]}, [n, 1] if n > 1 else [1])
    narrow = {ty: t.pop(f"{NARROW}-{ty}") for ty in TYPES}
    return {"cores": n, "copy_gbps": hw.ram.bandwidth_gbps, "nodes": t.pop("nodes"), AGAIN: t.pop(AGAIN),
            NODES_AGAIN: t.pop(NODES_AGAIN), NARROW: narrow, "bytes": t}


def _twin_of(key: str) -> ModelSpec:
    """measure()'s file keys: "nodes", a type (its bytes twin), "narrow-<type>"."""
    if key in SHAPES:
        return twin_spec(key)
    if key.startswith(NARROW):
        return twin_spec(NARROW, key.split("-", 1)[1])
    return twin_spec("bytes", key)


def _solve(a: tuple[float, float], b: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
    """x1, x2 with a_i x1 + b_i x2 = y_i (Cramer's rule)."""
    det = a[0] * b[1] - a[1] * b[0]
    return (y[0] * b[1] - y[1] * b[0]) / det, (a[0] * y[1] - a[1] * y[0]) / det


def _per_token(t: dict, threads: int, kind: str) -> float:
    return statistics.median(t["runs"][str(threads)][f"{kind}_s"]) / t[kind]


def _node_token(m: dict, threads: int) -> float:
    """The nodes twin's decode time per token: the median over its runs at the start and at the end."""
    per = [s / t["tg"] for t in (m["nodes"], m.get(NODES_AGAIN)) if t for s in t["runs"][str(threads)]["tg_s"]]
    return statistics.median(per)


def _drift(m: dict, threads: int) -> tuple[float, str] | None:
    """(how far the machine moved between the start and the end, which twin shows it): the larger of the Q4_K
    twin's (memory) and the nodes twin's (thread barriers); None for a result without the second passes."""
    pairs = [(m.get(AGAIN), m["bytes"].get(TYPES[0]), f"the {TYPES[0]} twin"),
             (m.get(NODES_AGAIN), m["nodes"], "the nodes twin")]
    moves = [(_per_token(end, threads, "tg") / _per_token(start, threads, "tg") - 1, what)
             for end, start, what in pairs if end and start]
    return max(moves, key=lambda x: abs(x[0])) if moves else None


def _prompt_terms(spec: ModelSpec, ty: str) -> tuple[float, float, float]:
    """(FLOPs of ty's products, their output rows, graph nodes) of a prompt token of a twin."""
    f = cpu_facts(spec, _box(), OPTS)
    return 2 * f.matmul_types.get((ty, False), 0), f.matmul_rows.get((ty, False), 0), f.nodes


def _prompt_costs(m: dict, threads: int, rows: bool = True) -> tuple[float, dict[str, tuple[float, float]]]:
    """(s per node and prompt token, {type: (GFLOPS, s per output row)}). A prompt token's time is FLOPs / rate +
    output rows x a cost per row + nodes x a cost per node: Q4_K's three from the nodes, Q4_K and narrow Q4_K
    twins, then each other type's rate and row cost from its two twins. The row cost is a difference of two twins
    timed seconds apart, so it is read only where `rows` (the machine held still: on this VM a moving run read
    Q4_1's at 3.5 ns in one run and 27.5 in the next); else, where the noise makes a cost negative, or for an
    earlier result without narrow twins, it is 0 and the rate is read from the wide twin alone."""
    import numpy as np
    narrow = m.get(NARROW, {}) if rows else {}
    twins = {"nodes": (twin_spec("nodes"), m["nodes"]), "bytes": (twin_spec("bytes"), m["bytes"]["Q4_K"])}
    if "Q4_K" in narrow:
        twins[NARROW] = (twin_spec(NARROW), narrow["Q4_K"])
    a = np.array([_prompt_terms(spec, "Q4_K") for spec, _ in twins.values()])
    y = np.array([_per_token(t, threads, "pp") for _, t in twins.values()])
    solved = np.linalg.solve(a, y) if len(twins) == 3 else None
    if solved is not None and min(solved) > 0:
        t_pp = float(solved[2])
    else:  # two equations in 1 / rate and the cost per node, no cost per row
        t_pp = max(_solve(tuple(a[:2, 0]), tuple(a[:2, 2]), tuple(y[:2]))[1], 0.0)
    out = {}
    for ty in m["bytes"]:
        wide = _prompt_terms(twin_spec("bytes", ty), ty)
        left_w = _per_token(m["bytes"][ty], threads, "pp") - wide[2] * t_pp
        rate, row = wide[0] / max(left_w, 1e-9), 0.0
        if ty in narrow:
            thin = _prompt_terms(twin_spec(NARROW, ty), ty)
            left_n = _per_token(narrow[ty], threads, "pp") - thin[2] * t_pp
            inv, r = _solve((wide[0], thin[0]), (wide[1], thin[1]), (left_w, left_n))
            if inv > 0 and r > 0:
                rate, row = 1 / inv, r
        out[ty] = (rate / 1e9, row)
    return t_pp, out


def _box() -> HardwareProfile:
    """Any CPU-only profile: the twins' facts (bytes, nodes) do not depend on the box."""
    from planner.profile.hardware import CPU, RAM
    return HardwareProfile(cpu=CPU(), ram=RAM(total_bytes=64 << 30, bandwidth_gbps=20.0))


def _read_rate(m: dict, ty: str, threads: int, t_node: float, copy: float) -> float:
    """GB/s its weights are read at in decode at this thread count, the node costs taken off."""
    f = cpu_facts(twin_spec("bytes", ty), _box(), OPTS)
    dec = _per_token(m["bytes"][ty], threads, "tg") - f.nodes * t_node - f.other_bytes / (copy * 1e9)
    return f.read_types[ty] / max(dec, 1e-9) / 1e9


def _depth_rates(m: dict, threads: int) -> tuple[float | None, float | None]:
    """(GB/s the KV cache is read at, attention GFLOPS): the nodes twin's decode and prompt after DEPTH tokens
    against the same from an empty cache; None where the noise leaves no difference to read."""
    from planner.estimate.throughput import attention_flops
    t = m["nodes"]
    run = t["runs"][str(threads)]
    if not run.get("tg_deep_s") or not run.get("pp_deep_s"):
        return None, None
    spec = twin_spec("nodes")
    f = cpu_facts(spec, _box(), OPTS)
    depth = run.get("depth") or DEPTH
    tg_deep = t.get("tg_deep", t["tg"])
    dt_tg = statistics.median(run["tg_deep_s"]) / tg_deep - _per_token(t, threads, "tg")
    dt_pp = statistics.median(run["pp_deep_s"]) / t["pp"] - _per_token(t, threads, "pp")
    kv = f.kv_per_cell * (depth + tg_deep / 2)
    extra = attention_flops(spec, depth + tg_deep + t["pp"] / 2) - attention_flops(spec, t["pp"] / 2)
    return (round(kv / dt_tg / 1e9, 2) if dt_tg > 0 else None), (round(extra / dt_pp / 1e9, 2) if dt_pp > 0 else None)


def fit(m: dict, hw: HardwareProfile) -> CPUSpeed:
    """The CPU's constants from measure()'s times (see the module's docstring)."""
    n, copy = m["cores"], m["copy_gbps"]
    nodes = cpu_facts(twin_spec("nodes"), _box(), OPTS).nodes
    t_node = _node_token(m, n) / nodes
    t_node_1 = _node_token(m, 1) / nodes if n > 1 else t_node
    moved = _drift(m, n)
    steady = moved is None or abs(moved[0]) <= UNSTEADY
    t_pp, prompt = _prompt_costs(m, n, rows=steady)
    at_n = {ty: _read_rate(m, ty, n, t_node, copy) for ty in m["bytes"]}
    at_1 = {ty: _read_rate(m, ty, 1, t_node_1, copy) for ty in m["bytes"]} if n > 1 else at_n
    mem = max([copy, *at_n.values()])
    ref = cpu_kernels().types
    decode, prefill, row_ns, bound = {}, {}, {}, []
    for ty, r in at_n.items():
        if n > 1 and r >= MEMORY_BOUND_AT * mem:  # the memory paces it on all cores: one core tells its kernel
            per_core = at_1[ty]
            bound.append(ty)
        else:
            per_core = r / n
        decode[ty] = round(per_core / ref[ty].decode_gbps_per_core, 3)
        prefill[ty] = round(prompt[ty][0] / n / ref[ty].prefill_gflops_per_core, 3)
        row_ns[ty] = round(prompt[ty][1] * 1e9, 3)
    kv_gbps, attn_gflops = _depth_rates(m, n)
    for ty, like in SCALE_LIKE.items():
        if ty not in decode and like in decode:
            decode[ty], prefill[ty], row_ns[ty] = decode[like], prefill[like], row_ns[like]
    busy = any(run["load"].get("busy") for t in [m["nodes"], *m["bytes"].values()] for run in t["runs"].values())
    drift = round(moved[0], 3) if moved else None
    rates = ", ".join(f"{ty} {r:.1f}" for ty, r in at_n.items())
    return CPUSpeed(threads=n, memory_gbps=round(mem, 2), kernel_scale=decode["Q4_K"], decode_type_scale=decode,
                    decode_node_us=round(t_node * 1e6, 3), prefill_scale=prefill["Q4_K"],
                    prefill_type_scale=prefill, prefill_node_us=round(t_pp * 1e6, 3), prefill_row_ns=row_ns,
                    kv_read_gbps=kv_gbps, attention_gflops=attn_gflops, busy=busy, drift=drift,
                    measured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    source=f"measured here: llama.cpp (llama-cpp-python {_version()}) "
                           f"self-benchmark on one-type twins at {n} threads, weights read at GB/s: {rates}"
                           + (f" ({', '.join(bound)} at the memory's pace)" if bound else "")
                           + f"; {t_node * 1e6:.2f} us per node"
                           + "; prompt GFLOPS " + ", ".join(f"{ty} {g:.0f}" for ty, (g, _) in prompt.items())
                           + ("" if steady else " (its cost per row not read: the machine moved)")
                           + ("; other programs were busy meanwhile: it may read slow" if busy else "")
                           + (f"; the machine's speed moved {abs(drift):.0%} while it was timed ({moved[1]} "
                              f"{'slower' if drift > 0 else 'faster'} at the end): its figures carry that much"
                              if drift is not None and abs(drift) > UNSTEADY else ""))


def self_benchmark(hw: HardwareProfile, *, force: bool = False) -> CPUSpeed:
    """This boot's measured constants: the cached ones, else measured now (and kept)."""
    if not force and (hit := cached(hw)):
        return hit
    log.info("measuring this CPU with llama.cpp (a minute or two, once per boot; PLANNER_SELF_BENCH=0 skips it)")
    speed = fit(measure(hw), hw)
    d = _read()
    d[_key(hw)] = {"speed": speed.model_dump(), "time": datetime.datetime.now(datetime.UTC).timestamp(),
                   "machine": platform.node()}
    write_cache(_path(), json.dumps(d, indent=1))
    return speed


def measured(hw: HardwareProfile, *, force: bool = False) -> HardwareProfile:
    """The detected profile with this CPU's own constants when llama.cpp can measure them; else unchanged (the
    multi-thread copy test and the reference kernels), with a note saying so."""
    if not available():
        note = ("CPU speed: from the copy test and reference kernel rates; `pip install llama-cpp-python` lets "
                "`plan profile` measure this CPU with llama.cpp itself (a minute or two, once per boot)")
        return hw.model_copy(update={"notes": [*hw.notes, note]})
    try:
        speed = self_benchmark(hw, force=force)
    except Exception as exc:  # noqa: BLE001 - a failed benchmark leaves the copy-test model, with the reason
        return hw.model_copy(update={"notes": [*hw.notes, f"CPU self-benchmark failed ({exc}); speed from the "
                                                          "copy test"]})
    return hw.model_copy(update={"cpu_speed": speed})

