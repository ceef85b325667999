"""Resolve an Ollama name (llama3.1:70b) to its GGUF blob in the local Ollama store."""

from __future__ import annotations

import json
import os
from pathlib import Path


def ollama_models_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


def ollama_blob(name: str, models_dir: Path | None = None) -> Path | None:
    """The model layer's blob path for `name`, or None when Ollama has not pulled it."""
    root = models_dir or ollama_models_dir()
    base, _, tag = name.partition(":")
    tag = tag or "latest"
    parts = base.split("/")
    if len(parts) == 1:
        parts = ["registry.ollama.ai", "library", parts[0]]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    manifest = root / "manifests" / Path(*parts) / tag
    if not manifest.is_file():
        return None
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
    except (OSError, ValueError):
        return None
    for layer in layers:
        if layer.get("mediaType") == "application/vnd.ollama.image.model":
            blob = root / "blobs" / layer["digest"].replace(":", "-")
            return blob if blob.is_file() else None
    return None
