"""Load planner/data/backends.yaml once: the estimator's measured constants, with sources."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def backends() -> dict[str, Any]:
    return yaml.safe_load(resources.files("planner.data").joinpath("backends.yaml").read_text(encoding="utf-8"))


def backend(name: str) -> dict[str, Any]:
    return backends().get(name) or backends()["vulkan"]
