"""Look up a GPU in the bundled spec table (planner/data/gpus.yaml)."""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel

from planner.data import data_yaml


class GPUSpec(BaseModel):
    name: str
    family: str = ""  # the generation whose speed constants apply (planner/data/gpu_speed.yaml)
    memory: str = ""  # "hbm" for stacked memory (a card without its family's rows takes its backend's HBM pool)
    match: list[str]
    vram_gib: float
    bandwidth_gbps: float
    fp16_tflops: float
    source: str


@cache
def gpu_specs() -> tuple[GPUSpec, ...]:
    return tuple(GPUSpec(**g) for g in data_yaml("gpus.yaml")["gpus"])


def _ends_a_word(text: str, m: str) -> bool:
    """m occurs in text and is not the start of a longer name there ("a10" in "a100", "l4" in "l40s")."""
    i = text.find(m)
    while i >= 0:
        if not text[i + len(m):i + len(m) + 1].isalnum():
            return True
        i = text.find(m, i + 1)
    return False


def lookup_gpu_spec(name: str) -> GPUSpec | None:
    """The entry whose longest match string occurs in the reported name as a whole word (so '4060 ti' beats
    '4060', and an A100 is not an A10)."""
    low = f" {name.lower()} "
    tight = low.replace(" ", "").replace("-", "")
    best, best_len = None, 0
    for spec in gpu_specs():
        for m in spec.match:
            hit = _ends_a_word(low, m.rstrip()) or (len(m.strip()) > 3
                                                    and _ends_a_word(tight, m.replace(" ", "")))
            if hit and len(m) > best_len:
                best, best_len = spec, len(m)
    return best
