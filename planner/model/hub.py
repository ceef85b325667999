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
# One deadline for a remote header read, all requests together: a server that trickles one byte a second
# never trips a per-socket timeout. PLANNER_REMOTE_TIMEOUT overrides it (seconds).
REMOTE_DEADLINE_S = 120.0


def remote_deadline_s() -> float:
    import os
    try:
        v = float(os.environ.get("PLANNER_REMOTE_TIMEOUT", REMOTE_DEADLINE_S))
    except ValueError:
        return REMOTE_DEADLINE_S
    return v if v > 0 else REMOTE_DEADLINE_S


def with_deadline(fn, what: str, seconds: float | None = None):
    """fn() in a worker thread, abandoned after `seconds` with one OfflineError (its sockets close when the
    process exits: the worker is a daemon)."""
    import threading
    seconds = seconds or remote_deadline_s()
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out["error"] = exc
    t = threading.Thread(target=work, daemon=True, name="planner-remote-read")
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise OfflineError(f"reading {what} took more than {seconds:.0f} s (a slow or stalled server); try again, "
                           "set PLANNER_REMOTE_TIMEOUT=SECONDS, or download the file and pass its path")
    if "error" in out:
        raise out["error"]
    return out["value"]


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the Hub's endpoint. Without it, a dead network costs ~24 s of huggingface_hub's
    retries (and a warning line per try) before the answer that the cache would have given at once.
    Behind a proxy the endpoint is not dialled directly: assume reachable."""
    import os
    import socket
    from urllib.parse import urlsplit
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    u = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _download_config(repo: str) -> dict[str, Any]:
    """config.json via huggingface_hub; its cache and HF_HUB_OFFLINE are honoured, and an unreachable Hub
    leaves only the cache to ask."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    try:
        path = (hf_hub_download(repo, "config.json") if _hub_reachable()
                else hf_hub_download(repo, "config.json", local_files_only=True))
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
        spec = spec.model_copy(update={"notes": [*spec.notes, f"safetensors metadata: {n:,} parameters "
                                                                f"(GGUF inventory: {spec.n_params:,})"]})
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
    if fs is None:
        if not _hub_reachable():
            raise OfflineError(f"cannot reach the Hub to read {repo}'s GGUF header; connect, or download the "
                               "file and pass its path")
        fs = _RemoteFS()
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
    path, header = with_deadline(lambda: read_remote_header(repo, want, fs), f"{repo}'s GGUF header")
    return spec_from_gguf(header, name=f"{repo}:{path}", source=f"hf-gguf:{repo}/{path}")


# --- any https URL of a .gguf: the header by HTTP range requests (no Hub client, no listing) ---

class _HttpFile:
    """A read-only, seekable view of a remote file: each read is one Range request."""

    def __init__(self, url: str, size: int, headers: dict[str, str]) -> None:
        self.url, self.size, self.headers, self.pos = url, size, headers, 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else self.size + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self.size, self.pos + n)
        if end <= self.pos:
            return b""
        with _http(self.url, self.headers | {"Range": f"bytes={self.pos}-{end - 1}"}) as r:
            if r.status != 206:
                raise GGUFError(f"{self.url}: the server ignores range requests, so reading the header "
                                "would download the whole file; download it and pass its path")
            data = r.read(end - self.pos)
        self.pos += len(data)
        return data

    def __enter__(self) -> _HttpFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _http(url: str, headers: dict[str, str], method: str = "GET"):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, headers={"User-Agent": "planner"} | headers, method=method)
    try:
        return urllib.request.urlopen(req, timeout=20)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ModelNotFoundError(f"{url}: HTTP {exc.code} (gated or private: set HF_TOKEN for the Hub)") from None
        raise ModelNotFoundError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OfflineError(f"cannot reach {url}: {reason}; check the address or the network, or download "
                           "the file and pass its path") from None


class _UrlFS:
    """The _RemoteFS calls over plain HTTP for files in one URL directory: `ls` cannot list a web
    server, so it offers the file asked for (split parts are named from it)."""

    def __init__(self, base: str, name: str) -> None:
        import os
        self.base, self.name = base, name
        self._sizes: dict[str, int] = {}
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        host = base.split("/")[2]
        self.headers = {"Authorization": f"Bearer {token}"} if token and host.endswith("huggingface.co") else {}

    def ls(self, repo: str) -> list[str]:
        return [self.name]

    def size(self, repo: str, path: str) -> int:
        """One HEAD request per file (read_remote_header asks for the size after open has)."""
        if path not in self._sizes:
            with _http(f"{self.base}/{path}", self.headers, method="HEAD") as r:
                n = r.headers.get("Content-Length")
            if n is None:
                raise GGUFError(f"{self.base}/{path}: the server gives no size; download the file and pass its path")
            self._sizes[path] = int(n)
        return self._sizes[path]

    def open(self, repo: str, path: str) -> _HttpFile:
        return _HttpFile(f"{self.base}/{path}", self.size(repo, path), self.headers)


def spec_from_url(url: str, fs: Any | None = None) -> ModelSpec:
    """A GGUF at an http(s) URL (a Hub 'blob' page link is read as its 'resolve' file); split files by
    their first part's name."""
    from urllib.parse import unquote, urlsplit
    u = urlsplit(url)
    path = u.path
    if u.netloc.endswith("huggingface.co"):
        path = re.sub(r"^(/[^/]+/[^/]+)/blob/", r"\1/resolve/", path)
    if not path.endswith(".gguf"):
        raise ModelNotFoundError(f"{url} does not name a .gguf file; give the file's URL (on the Hub: "
                                 "https://huggingface.co/ORG/REPO/resolve/main/FILE.gguf) or 'ORG/REPO:Q4_K_M'")
    base, _, name = f"{u.scheme}://{u.netloc}{path}".rpartition("/")
    fs = fs or _UrlFS(base, name)
    first, header = with_deadline(lambda: read_remote_header(base, name, fs), url)
    return spec_from_gguf(header, name=unquote(first), source=f"url:{base}/{first}")
