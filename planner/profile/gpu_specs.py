"""Look up a GPU in the bundled spec table (planner/data/gpus.yaml)."""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel

from planner.data import data_yaml


class GPUSpec(BaseModel):
    name: str
    match: list[str]
    vram_gib: float
    bandwidth_gbps: float
    fp16_tflops: float
    source: str


@cache
def gpu_specs() -> tuple[GPUSpec, ...]:
    return tuple(GPUSpec(**g) for g in data_yaml("gpus.yaml")["gpus"])


def lookup_gpu_spec(name: str) -> GPUSpec | None:
    """The entry whose longest match string occurs in the reported name (so '4060 ti' beats '4060')."""
    low = f" {name.lower()} "
    tight = low.replace(" ", "").replace("-", "")
    best, best_len = None, 0
    for spec in gpu_specs():
        for m in spec.match:
            hit = m in low or (len(m.strip()) > 3 and m.replace(" ", "") in tight)
            if hit and len(m) > best_len:
                best, best_len = spec, len(m)
    return best
