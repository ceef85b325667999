"""Load planner/data/backends.yaml once: the estimator's measured constants, with sources."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


@cache
def backends() -> dict[str, Any]:
    text = resources.files("planner.data").joinpath("backends.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=_LOADER)


def backend(name: str) -> dict[str, Any]:
    return backends().get(name) or backends()["vulkan"]
