"""Ranking models for a box: a cited score of the full model, scaled by what its plan keeps of it.

A plan's predicted KLD says how far its next-token distribution moves from the full model's. What a user
loses is the answers that change: the measured share of next tokens whose most likely choice is kept
(top-1 agreement) falls as 1 - c * sqrt(KLD), with c = 0.4385 fitted over every stock and per-tensor
quantization measured here (24 points, SmolLM2-135M and Gemma 3 270M, KLD 0.011-1.9:
bench/data/quality-smollm2.json, quality-gemma3-270m.json; RMS error 0.025, the worst 0.052). The score at a plan is the
cited score times that agreement: as if every answer hung on one such choice, a bound from below (an answer
can survive a changed token), so a model is never ranked above a better one for being over-quantized.
"""

from __future__ import annotations

import math

from planner.profile.hardware import HardwareProfile

AGREEMENT_PER_SQRT_KLD = 0.4385  # least squares of 1 - top1 on sqrt(KLD), the 24 measurements above

# The default speed floor of `recommend`: text is readable at silent-reading speed, 238 words a minute
# (Brysbaert 2019, J. Memory and Language 109:104047) = 4.0 words/s = 5.3 tokens/s at 0.75 words a token
# (OpenAI's tokenizer help: "1 token ~= 3/4 words"); a CPU box is held to that, a GPU box to twice it.
READABLE_TPS_CPU = 5.0
READABLE_TPS_GPU = 10.0


def agreement(kld: float) -> float:
    """Predicted share of next-token choices a plan keeps from the full model."""
    return max(0.0, 1.0 - AGREEMENT_PER_SQRT_KLD * math.sqrt(max(kld, 0.0)))


def score_at_plan(score: float, kld: float) -> float:
    """The cited score of the full model, at a plan with this predicted KLD."""
    return score * agreement(kld)


def readable_floor(hw: HardwareProfile) -> float:
    """The speed floor `recommend` holds plans to unless told otherwise (tok/s)."""
    return READABLE_TPS_GPU if hw.gpus else READABLE_TPS_CPU
