"""Data tables, each with its sources in the file, and the one way to read them."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster at start-up


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)


def data_digest(*names: str) -> str:
    """A short digest of data tables' bytes: what was computed from them is stale once it changes."""
    import hashlib
    h = hashlib.sha256()
    for name in names:
        h.update(resources.files(__name__).joinpath(name).read_bytes())
    return h.hexdigest()[:12]


def data_yaml(name: str) -> Any:
    """A YAML table shipped in planner/data."""
    return load_yaml(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


def data_json(name: str) -> Any:
    """A JSON table shipped in planner/data."""
    import json
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


class Table(BaseModel):
    """A data table's typed form: a key missing, misspelt or unknown fails at load, naming it."""
    model_config = ConfigDict(extra="forbid", frozen=True)
