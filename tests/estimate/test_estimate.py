"""estimate(): the notes it adds beside the figures."""

from planner.estimate import RuntimeOptions, estimate
from planner.model import load_model
from planner.profile.targets import load_target


def _notes(model: str, target: str, **opts) -> str:
    return " ".join(estimate(load_model(model), load_target(target), RuntimeOptions(**opts)).notes)


def test_context_beyond_training_is_named_per_sequence_as_llama_cpp_counts_it():
    # llama-3.2-1b was trained on 131072 tokens; llama-context.cpp compares n_ctx / n_seq with it
    assert "200000 tokens of context per sequence is beyond the 131072" in _notes("llama3.2-1b", "rtx4090",
                                                                                  n_ctx=200000)
    assert "beyond" not in _notes("llama3.2-1b", "rtx4090", n_ctx=200000, n_seq=2)
    assert "beyond" in _notes("llama3.2-1b", "rtx4090", n_ctx=200000, n_seq=2, kv_unified=True)
    assert "beyond" not in _notes("llama3.2-1b", "rtx4090", n_ctx=131072)


def test_layers_pinned_to_a_gpu_the_target_lacks_are_named():
    cpu_box = load_target("rtx4090").model_copy(update={"gpus": []})
    notes = " ".join(estimate(load_model("llama3.2-1b"), cpu_box, RuntimeOptions(n_gpu_layers=4)).notes)
    assert "--ngl 4 has no effect: the target has no GPU" in notes
    assert "--ngl" not in _notes("llama3.2-1b", "rtx4090", n_gpu_layers=4)


def test_ubatch_is_cut_to_the_batch_as_llama_cpp_does():
    from planner.estimate import RuntimeOptions
    assert RuntimeOptions(n_batch=512, n_ubatch=4096).n_ubatch == 512
    assert RuntimeOptions(n_ubatch=4096).n_ubatch == 2048
