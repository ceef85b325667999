"""Published GGUF files per catalog model (planner/data/published.yaml): what users download, and how
each file's per-tensor types follow from its quant name and its publisher's recipe."""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel, ConfigDict

from planner.data import Table, data_yaml

# bartowski's _L / _XL names: the stem's ftype with the embeddings and output at Q8_0 (their cards:
# "Uses Q8_0 for embed and output weights")
_Q8_EDGES = {"Q6_K_L": "Q6_K", "Q5_K_L": "Q5_K_M", "Q4_K_L": "Q4_K_M", "Q3_K_XL": "Q3_K_L", "Q2_K_L": "Q2_K"}
_NAMED = {"MXFP4": "MXFP4_MOE"}  # a published name that is not llama-quantize's ftype name
EDGE_TENSORS = ("token_embd.weight", "output.weight")


class _Publisher(Table):
    imatrix: bool
    source: str


class _OllamaTag(Table):
    tag: str
    quant: str


class _Repo(Table):
    repo: str
    publisher: str
    quants: list[str]
    source: str


class _Entry(Table):
    files: list[_Repo] = []
    ollama: list[_OllamaTag] = []


class _Published(Table):
    about: str
    publishers: dict[str, _Publisher]
    models: dict[str, _Entry]


class PublishedFile(BaseModel):
    """One downloadable file: a quant of a repository (or an Ollama library tag), how to name it to
    llama.cpp's and Ollama's downloaders, and the recipe its tensors' types follow."""
    model_config = ConfigDict(frozen=True)
    repo: str  # ORG/REPO on Hugging Face, or "ollama" for the library
    quant: str  # as the publisher names it (Q4_K_M, Q6_K_L, MXFP4)
    ftype: str  # llama-quantize's ftype the file was made with
    imatrix: bool
    q8_edges: bool  # token_embd and output at Q8_0
    tag: str | None = None  # Ollama library tag
    source: str

    @property
    def ref(self) -> str:
        """What the launch lines name: hf.co/ORG/REPO:QUANT (llama-server -hf, Ollama) or the library tag."""
        return self.tag if self.tag else f"hf.co/{self.repo}:{self.quant}"

    @property
    def label(self) -> str:
        return f"ollama {self.tag}" if self.tag else f"{self.repo}:{self.quant}"

    def type_overrides(self, tensor_names: set[str]) -> dict[str, str]:
        return {n: "Q8_0" for n in EDGE_TENSORS if n in tensor_names} if self.q8_edges else {}


@cache
def _table() -> _Published:
    return _Published(**data_yaml("published.yaml"))


def ftype_of(quant: str) -> tuple[str, bool]:
    """(llama-quantize ftype, Q8_0 edges) for a published quant name."""
    q = quant.upper()
    if q in _Q8_EDGES:
        return _Q8_EDGES[q], True
    return _NAMED.get(q, q), False


def published_files(model_id: str | None) -> list[PublishedFile]:
    """The files published for a catalog model, repositories first, then Ollama's library; [] when none is known."""
    t = _table()
    entry = t.models.get(model_id or "")
    if entry is None:
        return []
    out = []
    for r in entry.files:
        pub = t.publishers[r.publisher]
        for q in r.quants:
            ftype, edges = ftype_of(q)
            out.append(PublishedFile(repo=r.repo, quant=q, ftype=ftype, imatrix=pub.imatrix, q8_edges=edges,
                                     source=r.source))
    lib = t.publishers["ollama"]
    for o in entry.ollama:
        ftype, edges = ftype_of(o.quant)
        out.append(PublishedFile(repo="ollama", quant=o.quant, ftype=ftype, imatrix=lib.imatrix, q8_edges=edges,
                                 tag=o.tag, source=lib.source))
    return out


def models_with_files() -> list[str]:
    return sorted(_table().models)
