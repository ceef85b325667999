"""The bundled catalog (planner/data/catalog.json): popular models by the names people type."""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel

from planner.model.hf_config import spec_from_hf_config
from planner.model.spec import ModelSpec


class ConfigCopy(BaseModel):
    """Where an entry's config was checked field by field: a public copy of the model's config.json that can be
    opened (a repository file at a commit) or the header of a published GGUF file."""
    where: str  # "github:owner/name/path@commit", or "gguf:<PyPI package>/<file>"
    of: str  # the model the copy is of, as it names it (a base model's copy checks its instruct twin's shapes)
    fields: list[str]  # the entry's config fields compared with it: every one equal
    note: str = ""


class CatalogEntry(BaseModel):
    id: str
    repo: str
    family: str
    aliases: list[str]
    use: list[str]
    source: str  # the maker's config.json (not reachable offline: `checked` says where it was compared)
    config: dict[str, Any]
    checked: ConfigCopy | None = None  # None: not yet compared with a copy ("plan models" marks it)


def normalize(name: str) -> str:
    """'meta-llama/Llama-3.1-70B-Instruct' -> 'llama3170b'; 'llama3.1:70b' -> 'llama3170b'."""
    n = name.strip().lower()
    n = re.sub(r":latest$", "", n)
    n = n.split("/")[-1]
    n = re.sub(r"(-|_)?(instruct|it|chat|hf)(-\d+)?$", "", n)
    n = re.sub(r"^meta-", "", n)
    return re.sub(r"[^a-z0-9]", "", n)


@cache
def catalog() -> tuple[CatalogEntry, ...]:
    text = resources.files("planner.data").joinpath("catalog.json").read_text(encoding="utf-8")
    return tuple(CatalogEntry(**m) for m in json.loads(text)["models"])


@cache
def _index() -> dict[str, CatalogEntry]:
    idx: dict[str, CatalogEntry] = {}
    for e in catalog():
        for key in (e.id, e.repo, *e.aliases):
            idx.setdefault(normalize(key), e)
            idx.setdefault(key.lower(), e)
    return idx


def find_entry(name: str) -> CatalogEntry | None:
    return _index().get(name.strip().lower()) or _index().get(normalize(name))


def suggest(name: str, n: int = 3) -> list[str]:
    ids = [e.id for e in catalog()]
    close = difflib.get_close_matches(name.lower(), ids, n=n, cutoff=0.5)
    if not close:
        key = normalize(name)
        close = [e.id for e in catalog() if key and (key in normalize(e.id) or normalize(e.id) in key)][:n]
    return close


def search(query: str | None = None) -> list[CatalogEntry]:
    """Catalog entries whose id, repo, family, aliases or uses contain every word of the query."""
    if not query:
        return list(catalog())
    words = query.lower().split()
    out = []
    for e in catalog():
        hay = " ".join([e.id, e.repo, e.family, *e.aliases, *e.use]).lower()
        if all(w in hay or normalize(w) in normalize(hay) for w in words):
            out.append(e)
    return out


@cache
def spec_for(entry_id: str) -> ModelSpec:
    e = next(x for x in catalog() if x.id == entry_id)
    return spec_from_hf_config(e.config, name=e.id, source=f"catalog ({e.repo})")
