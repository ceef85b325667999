"""Load planner/data/backends.yaml and cpu_kernels.yaml once: the estimator's measured constants, with sources."""

from __future__ import annotations

from functools import cache
from typing import Any

from planner.data import data_yaml


@cache
def backends() -> dict[str, Any]:
    return data_yaml("backends.yaml")


@cache
def cpu_kernels() -> dict[str, Any]:
    return data_yaml("cpu_kernels.yaml")


def backend(name: str) -> dict[str, Any]:
    return backends().get(name) or backends()["vulkan"]
