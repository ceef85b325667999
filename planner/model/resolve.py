"""load_model(): what the user typed -> ModelSpec, trying sources in a sensible order."""

from __future__ import annotations

import os
from pathlib import Path

from planner.errors import ModelNotFoundError
from planner.model import catalog
from planner.model.gguf_header import read_gguf_file
from planner.model.gguf_spec import spec_from_gguf
from planner.model.ollama import ollama_blob
from planner.model.spec import ModelSpec

LOCAL = "gguf:"  # ModelSpec.source of a local file


def load_gguf(path: str | os.PathLike) -> ModelSpec:
    path = str(path)
    return spec_from_gguf(read_gguf_file(path), name=Path(path).name, source=f"{LOCAL}{path}")


def local_gguf(source: str | None) -> str | None:
    """The path of a ModelSpec.source that names a local file ('gguf:/path/x.gguf'), else None."""
    return source[len(LOCAL):] if source and source.startswith(LOCAL) else None


def load_model(name: str) -> ModelSpec:
    """A local GGUF path, an Ollama name pulled locally, a catalog name or alias, a Hugging
    Face repo id (config.json), a Hub GGUF ('repo:Q4_K_M' / 'repo/file.gguf') or a GGUF's https URL
    (only its header is read)."""
    name = name.strip()
    if not name:
        raise ModelNotFoundError("no model given: pass --model NAME (see 'plan models')")
    if name.startswith("hf.co/") and name.count("/") >= 2:  # the name Ollama and the plans' lines give a Hub GGUF
        name = name.removeprefix("hf.co/")
    p = Path(name).expanduser()
    if p.is_file():
        return load_gguf(p)
    if p.exists():
        from planner.fileio import kind_of
        raise ModelNotFoundError(f"{name} is {kind_of(p)}, not a GGUF file; give the path of a .gguf file")
    looks_local = name.startswith(("/", "./", "../", "~")) or (name.endswith(".gguf") and p.parent.is_dir())
    if looks_local:
        raise ModelNotFoundError(f"GGUF file {name} does not exist; check the path")
    if name.startswith(("https://", "http://")):
        from planner.model import hub
        return hub.spec_from_url(name)
    if ":" in name and "/" not in name:
        blob = ollama_blob(name)
        if blob is not None:
            return load_gguf(blob).model_copy(update={"name": name, "source": f"ollama:{name} ({blob})"})
    entry = catalog.find_entry(name)
    if entry is not None:
        return catalog.spec_for(entry.id).model_copy(deep=True)
    if "/" in name:
        from planner.model import hub
        repo, sep, want = name.partition(":")
        parts = repo.split("/")
        if sep:
            return hub.spec_from_remote_gguf(repo, want)
        if len(parts) > 2 and repo.endswith(".gguf"):
            return hub.spec_from_remote_gguf("/".join(parts[:2]), "/".join(parts[2:]))
        if len(parts) == 2:
            return hub.spec_from_hf_repo(repo)
    hint = catalog.suggest(name)
    raise ModelNotFoundError(
        f"unknown model '{name}'." + (f" Did you mean {', '.join(hint)}?" if hint else "")
        + " Give a catalog name ('plan models'), a .gguf path, or a Hugging Face repo id.")
