"""Network sources without network: what the Hub and Ollama would return, recorded as fixtures."""

import json
import os
import shutil

import numpy as np
import pytest
from gguf import GGUFWriter

from planner.errors import GGUFError, ModelNotFoundError, OfflineError
from planner.model import hub, load_model
from planner.model.catalog import catalog

QWEN_CONFIG = next(e.config for e in catalog() if e.id == "qwen2.5-7b")


def test_hf_repo_reads_config_json_through_huggingface_hub(monkeypatch, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(QWEN_CONFIG))
    calls = []
    import huggingface_hub
    monkeypatch.setattr(hub, "_hub_reachable", lambda: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, f: calls.append((repo, f)) or str(cfg))
    monkeypatch.setattr(hub, "_param_count", lambda repo: 7_615_616_512)
    m = load_model("someone/Qwen2.5-7B-finetune")
    assert calls == [("someone/Qwen2.5-7B-finetune", "config.json")]
    assert m.architecture == "qwen2" and m.source == "hf:someone/Qwen2.5-7B-finetune"
    assert any("7,615,616,512" in n for n in m.notes)


def test_offline_without_cache_is_one_clear_error(monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    def offline(repo, f, local_files_only=False):
        raise LocalEntryNotFoundError("offline")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(OfflineError, match="cache"):
        load_model("someone/not-cached-model")


def test_an_unreachable_hub_asks_only_the_cache(monkeypatch, tmp_path):
    """No ~24 s of retries: with the Hub's endpoint unreachable, a cached config.json answers at once."""
    import huggingface_hub
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(QWEN_CONFIG))
    calls = []
    monkeypatch.setattr(hub, "_hub_reachable", lambda: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, f, local_files_only=False: calls.append(local_files_only) or str(cfg))
    assert load_model("someone/Qwen2.5-7B-cached").architecture == "qwen2" and calls == [True]
    with pytest.raises(OfflineError, match="cannot reach the Hub"):
        load_model("someone/Some-GGUF:Q4_K_M")


def _part(path, tensors, split_no, split_count, total):
    w = GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_uint32("llama.embedding_length", 64)
    w.add_uint32("llama.attention.head_count", 4)
    w.add_uint16("split.no", split_no)
    w.add_uint16("split.count", split_count)
    w.add_int32("split.tensors.count", total)
    for name, shape in tensors:
        w.add_tensor(name, np.zeros(shape[::-1], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class FakeFS:
    """Serves local files as if they were a Hub repo (what HfFileSystem would give)."""

    def __init__(self, root):
        self.root = root

    def ls(self, repo):
        return sorted(os.listdir(self.root))

    def size(self, repo, path):
        return os.path.getsize(os.path.join(self.root, path))

    def open(self, repo, path):
        return open(os.path.join(self.root, path), "rb")


def test_split_gguf_on_the_hub_merges_tensor_lists(tmp_path):
    t1 = [("token_embd.weight", [64, 100]), ("blk.0.attn_q.weight", [64, 64])]
    t2 = [("blk.1.attn_q.weight", [64, 64]), ("output.weight", [64, 100])]
    _part(tmp_path / "M-Q8_0-00001-of-00002.gguf", t1, 0, 2, 4)
    _part(tmp_path / "M-Q8_0-00002-of-00002.gguf", t2, 1, 2, 4)
    (tmp_path / "M-Q4_K_M.gguf").write_bytes(b"")
    m = hub.spec_from_remote_gguf("org/M-GGUF", "Q8_0", fs=FakeFS(tmp_path))
    assert [t.name for t in m.tensors] == [n for n, _ in t1 + t2]
    with pytest.raises(ModelNotFoundError, match="no GGUF file matching"):
        hub.spec_from_remote_gguf("org/M-GGUF", "IQ2_XS", fs=FakeFS(tmp_path))


def test_ollama_name_resolves_to_the_local_blob(tmp_path, monkeypatch, smol_path):
    store = tmp_path / "models"
    digest = "sha256:" + "ab" * 32
    (store / "blobs").mkdir(parents=True)
    shutil.copy(smol_path, store / "blobs" / digest.replace(":", "-"))
    man = store / "manifests" / "registry.ollama.ai" / "library" / "smollm2"
    man.mkdir(parents=True)
    (man / "135m").write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": digest}]}))
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    m = load_model("smollm2:135m")
    assert m.source.startswith("ollama:smollm2:135m") and m.file_type == "Q4_1"
    # not pulled: falls back to the catalog
    assert load_model("llama3.1:8b").source.startswith("catalog")


class _RangeHandler:
    """An HTTP file server that honours Range (as the Hub's CDN does); counts the bytes it sends."""

    @staticmethod
    def serve(root, ranges=True):
        import http.server
        import threading

        sent = []

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _file(self):
                p = os.path.join(root, self.path.lstrip("/"))
                return p if os.path.isfile(p) else None

            def do_HEAD(self):
                p = self._file()
                self.send_response(200 if p else 404)
                self.send_header("Content-Length", str(os.path.getsize(p)) if p else "0")
                self.end_headers()

            def do_GET(self):
                p = self._file()
                if not p:
                    self.send_error(404)
                    return
                size = os.path.getsize(p)
                rng = self.headers.get("Range")
                lo, hi = 0, size - 1
                if rng and ranges:
                    a, b = rng.split("=")[1].split("-")
                    lo, hi = int(a), min(int(b), size - 1)
                self.send_response(206 if rng and ranges else 200)
                self.send_header("Content-Length", str(hi - lo + 1))
                self.end_headers()
                with open(p, "rb") as f:
                    f.seek(lo)
                    data = f.read(hi - lo + 1)
                try:
                    self.wfile.write(data)
                    sent.append(len(data))
                except OSError:
                    pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv, sent


def test_a_gguf_url_is_read_by_its_header_alone(smol_path, tmp_path):
    shutil.copy(smol_path, tmp_path / "SmolLM2.gguf")
    t1 = [("token_embd.weight", [64, 100]), ("blk.0.attn_q.weight", [64, 64])]
    t2 = [("blk.1.attn_q.weight", [64, 64]), ("output.weight", [64, 100])]
    _part(tmp_path / "M-Q8_0-00001-of-00002.gguf", t1, 0, 2, 4)
    _part(tmp_path / "M-Q8_0-00002-of-00002.gguf", t2, 1, 2, 4)
    srv, sent = _RangeHandler.serve(tmp_path)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        m = load_model(f"{base}/SmolLM2.gguf")
        local = load_model(str(smol_path))
        assert [(t.name, t.shape, t.type) for t in m.tensors] == [(t.name, t.shape, t.type) for t in local.tensors]
        assert m.source == f"url:{base}/SmolLM2.gguf" and sum(sent) < os.path.getsize(smol_path) / 10
        split = load_model(f"{base}/M-Q8_0-00001-of-00002.gguf")
        assert [t.name for t in split.tensors] == [n for n, _ in t1 + t2]
        with pytest.raises(ModelNotFoundError, match="404"):
            load_model(f"{base}/missing.gguf")
    finally:
        srv.shutdown()
    srv, _ = _RangeHandler.serve(tmp_path, ranges=False)
    try:
        with pytest.raises(GGUFError, match="ignores range requests"):
            load_model(f"http://127.0.0.1:{srv.server_address[1]}/SmolLM2.gguf")
    finally:
        srv.shutdown()
