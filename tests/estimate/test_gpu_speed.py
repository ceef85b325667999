"""GPU speed from public measurements: every row has its source, the fitted families are what plans use, and
cards order as their bandwidth says (the A100 was once planned as an A10 and decoded below an RTX 3090)."""

from __future__ import annotations

import json
import os

import pytest

from planner.api import evaluate
from planner.estimate.constants import gpu_constants, gpu_speed

ROWS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench", "data", "public-gpu-bench.jsonl")


def test_every_public_row_says_where_it_comes_from():
    rows = [json.loads(x) for x in open(ROWS, encoding="utf-8") if x.strip()]
    assert len(rows) > 150
    for r in rows:
        assert r["source"] and r["tps"] > 0 and r["gpu"] and r["test"], r


def test_plans_use_the_family_fit_and_say_so():
    fams = gpu_speed().families
    assert {"nvidia-ampere", "nvidia-ada", "apple-m3", "backend:cuda"} <= set(fams)
    basis, k = gpu_constants("NVIDIA GeForce RTX 4090", "cuda")
    assert "nvidia-ada" in basis and k is fams["nvidia-ada"]
    assert "pooled" in gpu_constants("NVIDIA GeForce RTX 5090", "cuda")[0]  # no public rows of Blackwell yet
    assert gpu_constants("Intel Arc A770", "sycl") is None  # none for SYCL: backends.yaml's constants hold
    t = evaluate("llama3.1-8b", "rtx4090", quant="Q4_K_M", n_ctx=4096).estimate.throughput
    assert any("public llama-bench results of nvidia-ada" in n for n in t.notes)


@pytest.mark.parametrize("fast,slow", [("a100-80gb", "rtx3090"), ("h100-80gb", "a100-80gb"),
                                       ("rtx4090", "rtx4060"), ("rtx5090", "rtx4090")])
def test_more_bandwidth_and_compute_decodes_faster(fast, slow):
    def tps(t):
        return evaluate("llama3.1-8b", t, quant="Q4_K_M", n_ctx=4096).estimate.throughput
    assert tps(fast).decode_tps > tps(slow).decode_tps and tps(fast).prefill_tps > tps(slow).prefill_tps


def test_flash_attention_off_reads_the_cache_slower_at_depth():
    on = evaluate("llama3.1-8b", "rtx3090", quant="Q4_K_M", n_ctx=8192, flash_attn=True, depth=8000)
    off = evaluate("llama3.1-8b", "rtx3090", quant="Q4_K_M", n_ctx=8192, flash_attn=False, depth=8000)
    assert off.estimate.throughput.decode_tps < on.estimate.throughput.decode_tps
