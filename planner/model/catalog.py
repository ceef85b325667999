"""The bundled catalog (planner/data/catalog.json): popular models by the names people type."""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel

from planner.errors import ModelNotFoundError
from planner.model.hf_config import spec_from_hf_config
from planner.model.spec import ModelSpec


class ConfigCopy(BaseModel):
    """Where an entry's config was checked field by field: a public copy of the model's config.json that can be
    opened (a repository file at a commit) or the header of a published GGUF file."""
    where: str  # "github:owner/name/path@commit", or "gguf:<PyPI package>/<file>"
    of: str  # the model the copy is of, as it names it (a base model's copy checks its instruct twin's shapes)
    fields: list[str]  # the entry's config fields compared with it: every one equal
    note: str = ""


class QualityScore(BaseModel):
    """A cited score of the full-precision model on one public benchmark: its maker's reported figure or a
    leaderboard's, with where it was read."""
    score: float  # percent correct
    metric: str  # the benchmark and its setting, e.g. "MMLU-Pro (5-shot CoT)"
    where: str  # "github:owner/name/path@commit" or an https URL
    note: str = ""


# what an entry's `use` may say; `plan models --use` and `plan recommend --use` take these
USES = ("chat", "code", "reasoning", "math", "vision", "long-context", "base")


class CatalogEntry(BaseModel):
    id: str
    repo: str
    family: str
    aliases: list[str]
    use: list[str]
    released: str  # "YYYY-MM": the month the maker published the weights
    license: str  # the model card's license tag (SPDX id where there is one)
    source: str  # the maker's config.json (not reachable offline: `checked` says where it was compared)
    config: dict[str, Any]
    checked: ConfigCopy | None = None  # None: not yet compared with a copy ("plan models" marks it)
    quality: QualityScore | None = None  # None: no cited score yet (recommend ranks it after the scored ones)


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


@cache
def not_modeled(entry_id: str) -> str | None:
    """None when the estimator builds the entry from its config.json; else the one line saying why not
    (an architecture or layout it does not model yet: listed, not guessed)."""
    try:
        spec_for(entry_id)
    except ModelNotFoundError as exc:
        return str(exc)
    return None


class Filter(BaseModel):
    """What `plan models`, `plan recommend` and the wizard's picker narrow the catalog by (None: any)."""
    query: str | None = None
    use: str | None = None
    family: str | None = None
    license: str | None = None
    min_b: float | None = None  # total parameters, billions
    max_b: float | None = None
    released_after: str | None = None  # "YYYY-MM" (or "YYYY"): released in or after that month


_KEYS = {"use": "use", "family": "family", "license": "license", "after": "released_after",
         "released": "released_after", "size": "size"}


def parse_filter(text: str) -> Filter:
    """The wizard's picker query: words to search for, and key:value filters as `plan models` takes them
    (use:code family:qwen license:apache size:7-14 after:2025-06). A malformed value is kept as a search word."""
    words, fields = [], {}
    for tok in text.split():
        key, sep, val = tok.partition(":")
        if sep and key.lower() in _KEYS and val:
            name = _KEYS[key.lower()]
            if name == "size":
                lo, _, hi = val.lower().rstrip("b").partition("-")
                try:
                    fields["min_b"], fields["max_b"] = (float(lo) if lo else None), (float(hi) if hi else None)
                    if "-" not in val:
                        fields["min_b"], fields["max_b"] = None, float(lo)
                    continue
                except ValueError:
                    pass
            else:
                fields[name] = val
                continue
        words.append(tok)
    return Filter(query=" ".join(words) or None, **fields)


def _size_ok(e: CatalogEntry, f: Filter) -> bool:
    if f.min_b is None and f.max_b is None:
        return True
    if not_modeled(e.id):
        return False  # no parameter count to compare
    b = spec_for(e.id).n_params / 1e9
    return (f.min_b is None or b >= f.min_b) and (f.max_b is None or b <= f.max_b)


def select(f: Filter) -> list[CatalogEntry]:
    """The entries that pass every filter given, in catalog order."""
    after = f.released_after
    return [e for e in search(f.query)
            if (not f.use or f.use in e.use) and (not f.family or f.family.lower() == e.family.lower())
            and (not f.license or f.license.lower() in e.license.lower())
            and (not after or e.released >= after) and _size_ok(e, f)]
