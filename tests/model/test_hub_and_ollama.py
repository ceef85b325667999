"""Network sources without network: what the Hub and Ollama would return, recorded as fixtures."""

import json
import os
import shutil

import numpy as np
import pytest
from gguf import GGUFWriter

from planner.errors import ModelNotFoundError, OfflineError
from planner.model import hub, load_model
from planner.model.catalog import catalog

QWEN_CONFIG = next(e.config for e in catalog() if e.id == "qwen2.5-7b")


def test_hf_repo_reads_config_json_through_huggingface_hub(monkeypatch, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(QWEN_CONFIG))
    calls = []
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, f: calls.append((repo, f)) or str(cfg))
    monkeypatch.setattr(hub, "_param_count", lambda repo: 7_615_616_512)
    m = load_model("someone/Qwen2.5-7B-finetune")
    assert calls == [("someone/Qwen2.5-7B-finetune", "config.json")]
    assert m.architecture == "qwen2" and m.source == "hf:someone/Qwen2.5-7B-finetune"
    assert any("7,615,616,512" in n for n in m.notes)


def test_offline_without_cache_is_one_clear_error(monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    def offline(repo, f):
        raise LocalEntryNotFoundError("offline")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(OfflineError, match="cache"):
        load_model("someone/not-cached-model")


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
