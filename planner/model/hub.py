"""Hugging Face sources: config.json (cached, offline-aware) and GGUF headers by range reads."""

from __future__ import annotations

import json
import re
from typing import Any

from planner.errors import GGUFError, ModelNotFoundError, OfflineError
from planner.model.gguf_header import GGUFHeader, read_gguf_header
from planner.model.gguf_spec import spec_from_gguf
from planner.model.hf_config import spec_from_hf_config
from planner.model.spec import ModelSpec

_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def _download_config(repo: str) -> dict[str, Any]:
    """config.json via huggingface_hub; its cache and HF_HUB_OFFLINE are honoured."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    try:
        path = hf_hub_download(repo, "config.json")
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"no Hugging Face repo '{repo}' (or it is gated: run "
                                 "'huggingface-cli login')") from None
    except LocalEntryNotFoundError:  # subclass of EntryNotFoundError, so first
        raise OfflineError(f"'{repo}' is not in the local Hugging Face cache and the Hub cannot be "
                           "reached; connect once or use a catalog name ('plan models')") from None
    except EntryNotFoundError:
        raise ModelNotFoundError(f"repo '{repo}' has no config.json; for a GGUF repo use "
                                 f"'{repo}:Q4_K_M' or the .gguf file name") from None
    except Exception as exc:  # network errors of many kinds
        raise OfflineError(f"cannot fetch {repo}/config.json: {exc}") from None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _param_count(repo: str) -> int | None:
    """Exact parameter count from safetensors metadata (None when unavailable or offline)."""
    try:
        from huggingface_hub import get_safetensors_metadata
        meta = get_safetensors_metadata(repo)
        return int(sum(meta.parameter_count.values()))
    except Exception:  # noqa: BLE001 - a count is a bonus, never a failure
        return None


def spec_from_hf_repo(repo: str) -> ModelSpec:
    spec = spec_from_hf_config(_download_config(repo), name=repo, source=f"hf:{repo}")
    n = _param_count(repo)
    if n:
        spec.notes.append(f"safetensors metadata: {n:,} parameters "
                          f"(GGUF inventory: {spec.n_params:,})")
    return spec


class _RemoteFS:
    """The few HfFileSystem calls we need; a seam for tests (recorded fixtures)."""

    def __init__(self) -> None:
        from huggingface_hub import HfFileSystem
        self.fs = HfFileSystem()

    def ls(self, repo: str) -> list[str]:
        return [p.split("/", 2)[-1] for p in self.fs.glob(f"{repo}/**/*.gguf")]

    def size(self, repo: str, path: str) -> int:
        return int(self.fs.size(f"{repo}/{path}"))

    def open(self, repo: str, path: str):
        # 2 MiB blocks: the header of a big model (tokenizer tables included) is a few MiB
        return self.fs.open(f"{repo}/{path}", "rb", block_size=2 << 20)


def pick_gguf_file(files: list[str], want: str) -> str:
    """'Q4_K_M' -> the file whose name carries that quant (first split part for split files)."""
    if want.endswith(".gguf"):
        if want in files:
            return want
        matches = [f for f in files if f.endswith("/" + want) or f == want]
    else:
        tag = want.lower().replace("-", "_")
        matches = [f for f in files if tag in f.lower().replace("-", "_")]
    matches = [m for m in matches if not _SPLIT.search(m) or _SPLIT.search(m).group(1) == "00001"]
    if not matches:
        raise ModelNotFoundError(f"no GGUF file matching '{want}' in the repo; it has: "
                                 + ", ".join(sorted(files)[:8]) + (" ..." if len(files) > 8 else ""))
    return sorted(matches, key=len)[0]


def read_remote_header(repo: str, want: str, fs: Any | None = None) -> tuple[str, GGUFHeader]:
    """Read only the header(s) by range requests; merge the tensor lists of split files."""
    fs = fs or _RemoteFS()
    try:
        files = fs.ls(repo)
    except Exception as exc:  # noqa: BLE001
        raise OfflineError(f"cannot list {repo} on the Hub: {exc}") from None
    first = pick_gguf_file(files, want)
    parts = [first]
    m = _SPLIT.search(first)
    if m:
        n = int(m.group(2))
        parts = [first[: m.start()] + f"-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
    header = None
    for p in parts:
        with fs.open(repo, p) as f:
            h = read_gguf_header(f, fs.size(repo, p), what=f"{repo}/{p}")
        if header is None:
            header = h
        else:
            header.tensors.extend(h.tensors)
    assert header is not None
    expected = header.get("split.tensors.count")
    if expected is not None and int(expected) != len(header.tensors):
        raise GGUFError(f"{repo}/{first}: split parts list {len(header.tensors)} tensors, "
                        f"the first part says {expected}")
    return first, header


def spec_from_remote_gguf(repo: str, want: str, fs: Any | None = None) -> ModelSpec:
    path, header = read_remote_header(repo, want, fs)
    return spec_from_gguf(header, name=f"{repo}:{path}", source=f"hf-gguf:{repo}/{path}")
