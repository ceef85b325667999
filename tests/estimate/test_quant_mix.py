"""Our port of llama-quantize's per-tensor rules against llama-quantize itself."""

import ctypes

import pytest

from planner.estimate.quant_mix import FTYPE_DEFAULT, ftype_tensor_types
from planner.model import load_gguf, load_model
from planner.model.ggml_types import tensor_bytes
from planner.model.hf_config import spec_from_hf_config
from planner.verify.twin import write_twin
from tests.conftest import tiny_config

FTYPE_ID = {"Q4_0": 2, "Q8_0": 7, "Q5_0": 8, "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13,
            "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ4_XS": 30, "IQ4_NL": 25}


def llama_quantize(src: str, dst: str, ftype: str) -> None:
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = FTYPE_ID[ftype]
    p.allow_requantize = True
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    assert rc == 0, f"llama_model_quantize failed ({rc})"


# Sizes measured with llama_model_quantize on SmolLM2-135M (../shared/research/quality.md);
# every file is the tensor bytes plus the same 1,785,664-byte header.
QUALITY_MD_FILE_BYTES = {"Q8_0": 144_811_072, "Q6_K": 138_382_912, "Q5_K_M": 112_103_488, "Q4_K_M": 105_454_144,
                         "Q4_K_S": 102_039_616, "Q3_K_M": 93_510_208, "Q3_K_S": 88_201_792, "Q2_K": 88_201_792}


def test_stock_mixes_reproduce_measured_smollm2_file_sizes():
    m = load_model("smollm2-135m")
    header = {ft: size - sum(tensor_bytes(t, s.shape) for s in m.tensors
                              for t in [ftype_tensor_types(m, ft)[s.name]])
              for ft, size in QUALITY_MD_FILE_BYTES.items()}
    assert set(header.values()) == {1_785_664}


def _assert_llama_quantize_types(src: str, model, ftypes: list[str], tmp_path) -> None:
    """Each ftype: llama-quantize the source and compare every tensor's type with ours."""
    for ft in ftypes:
        dst = str(tmp_path / f"{ft}.gguf")
        llama_quantize(src, dst, ft)
        real = {t.name: t.type for t in load_gguf(dst).tensors}
        ours = ftype_tensor_types(model, ft)
        diff = {n: (ours[n], real[n]) for n in real if ours[n] != real[n]}
        assert not diff, f"{model.architecture} {ft}: ours vs llama-quantize {diff}"


@pytest.mark.parametrize("arch_kw,ftypes", [
    (dict(), ["Q4_K_M", "Q3_K_M", "Q5_K_M", "Q2_K", "Q4_K_S", "IQ4_XS", "Q6_K", "Q3_K_L"]),
    (dict(arch="MixtralForCausalLM", num_local_experts=8, num_experts_per_tok=2), ["Q4_K_M", "Q2_K", "Q3_K_M"]),
    (dict(arch="Qwen2ForCausalLM", hidden_size=320, tie_word_embeddings=True), ["Q4_K_M", "Q5_K_M", "Q8_0"]),
])
@pytest.mark.llama
def test_per_tensor_types_equal_llama_quantize(tmp_path, arch_kw, ftypes):
    arch = arch_kw.pop("arch", "LlamaForCausalLM")
    spec = spec_from_hf_config(tiny_config(arch, **arch_kw), name="tiny", source="test")
    src = str(tmp_path / "f16.gguf")
    write_twin(spec.with_types({}), src)
    _assert_llama_quantize_types(src, spec, ftypes, tmp_path)


@pytest.mark.parametrize("arch", ["nemotron_h", "nemotron_h_moe", "jamba", "lfm2", "granitehybrid", "rwkv7",
                                  "kimi-linear", "qwen35", "qwen35moe", "qwen3next", "glm4moe",
                                  "minimax-m2"])
@pytest.mark.llama
def test_hybrid_per_tensor_types_equal_llama_quantize(tmp_path, arch):
    """Hybrids: Nemotron-H has ffn_down in only some layers (llama-quantize counts them, so the
    use_more_bits layers are the count's, not the layer index's), LFM2's short-conv kernel and the
    Mamba conv1d stay unquantized, Jamba's and Granite's experts take the name's layer; RWKV-7's LoRA and
    lerp weights stay F32 (by name, and [n, 1, 1] counts as 1-D as ggml_n_dims has it); Qwen3.5's and GLM's MTP
    blocks are quantized with the rest."""
    from planner.model.hybrid import (
        hybrid_spec,
        jamba_spec,
        kimi_linear_spec,
        lfm2_spec,
        nemotron_h_spec,
        qwen35_spec,
        rwkv7_spec,
    )
    moe = dict(n_expert=8, n_expert_used=2, expert_ff=256, shared_ff=512)
    from planner.model.hf_config import spec_from_hf_config
    from tests.conftest import GLM_TWIN, MINIMAX_M2_TWIN
    spec = {"glm4moe": lambda: spec_from_hf_config(GLM_TWIN, "glm-twin", "test"),
            "minimax-m2": lambda: spec_from_hf_config(MINIMAX_M2_TWIN, "minimax-twin", "test"),
            "qwen35": lambda: qwen35_spec(n_mtp=1), "qwen35moe": lambda: qwen35_spec(n_mtp=1, **moe),
            "qwen3next": lambda: qwen35_spec(next_=True, **moe),
            "nemotron_h": lambda: nemotron_h_spec("M-M-M-M*-M-M-M*-"), "jamba": jamba_spec,
            "nemotron_h_moe": lambda: nemotron_h_spec("MEMEM*EMEMEM*EME", n_expert=8, n_expert_used=2,
                                                      expert_ff=256, shared_ff=512),
            "rwkv7": lambda: rwkv7_spec(n_layer=8), "kimi-linear": lambda: kimi_linear_spec("KKKAKKKA"),
            "lfm2": lambda: lfm2_spec("CCACCACCACACACAC"),
            "granitehybrid": lambda: hybrid_spec(n_layer=16, attn_layers=(4, 12), n_expert=8, n_expert_used=2,
                                                 n_ff=256, shared_ff=512)}[arch]()
    src = str(tmp_path / "f16.gguf")
    write_twin(spec, src)
    _assert_llama_quantize_types(src, load_gguf(src), ["Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_XS", "Q5_K_M"], tmp_path)


@pytest.mark.llama
def test_requantizing_the_real_smollm2_matches(smol_path, tmp_path):
    dst = str(tmp_path / "smol-q4km.gguf")
    llama_quantize(smol_path, dst, "Q4_K_M")
    real = {t.name: t.type for t in load_gguf(dst).tensors}
    ours = ftype_tensor_types(load_gguf(smol_path), "Q4_K_M")
    assert ours == real


def test_every_ftype_has_a_default_type():
    m = load_model("llama3.1-8b")
    for ft in FTYPE_DEFAULT:
        types = ftype_tensor_types(m, ft)
        assert types["blk.0.attn_norm.weight"] == "F32"


@pytest.mark.llama
def test_gpt_oss_biases_stay_f32_and_llama_cpp_runs_the_twin(tmp_path):
    """convert_hf_to_gguf writes every tensor not named *.weight in F32: gpt-oss's 2-D expert biases
    were typed F16 like a weight, 13 MB short on gpt-oss-20b, and ggml's CPU add asserts on an F16
    bias, so a twin could be sized but never run."""
    from planner.verify.child import run_probe
    cfg = tiny_config("GptOssForCausalLM", head_dim=64, num_local_experts=4, num_experts_per_tok=2, sliding_window=128,
                      quantization_config={"quant_method": "mxfp4"})
    spec = spec_from_hf_config(cfg, name="tiny-gpt-oss", source="test")
    types = ftype_tensor_types(spec, "MXFP4_MOE")
    biases = [t.name for t in spec.tensors if t.name.endswith("_exps.bias")]
    assert biases and all(types[n] == "F32" for n in biases)
    path = str(tmp_path / "gpt-oss.gguf")
    write_twin(spec.with_types(types), path, fill="random")
    from tests.conftest import AMX_SAFE
    r = run_probe(dict(model=path, ctx=256, speed=True, pp=16, tg=2, reps=1, **AMX_SAFE))
    assert r["ok"], r.get("error")
    assert r["tg_tps"] > 0 and r["graph_nodes"][0] > 0
