"""Know the model: catalog, config.json, GGUF headers (local, remote, Ollama)."""

from planner.model.resolve import load_gguf, load_model, local_gguf
from planner.model.spec import LayerSpec, ModelSpec, MoESpec, TensorSpec

__all__ = ["LayerSpec", "ModelSpec", "MoESpec", "TensorSpec", "load_gguf", "load_model", "local_gguf"]
