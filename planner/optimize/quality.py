"""Predicted quality of a per-tensor type assignment, from priors (planner/data/quality.yaml)."""

from __future__ import annotations

from functools import cache
from typing import Any

from planner.data import data_yaml
from planner.estimate.ggml_types import bits_per_weight, block_size, tensor_bytes
from planner.estimate.quant_mix import allows_quantization, source_type
from planner.model.spec import ModelSpec, TensorSpec

LADDER_256 = ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "IQ4_XS", "Q3_K", "IQ3_S", "IQ3_XXS", "Q2_K", "IQ2_S", "IQ2_XS")
LADDER_32 = ("Q8_0", "Q5_1", "Q5_0", "IQ4_NL", "Q4_0")


@cache
def priors() -> dict[str, Any]:
    return data_yaml("quality.yaml")


def role(t: TensorSpec, tied: bool) -> str:
    """The tensor's role for quality: a tied embedding is the output matrix."""
    return "output" if (t.name == "token_embd.weight" and tied) else t.role


def tensor_weight(t: TensorSpec, n_layers: int, tied: bool) -> float:
    return t.n_elements * _role_depth(role(t, tied), t.layer, n_layers)


@cache
def _role_depth(role: str, il: int | None, n_layers: int) -> float:
    p = priors()
    s = p["role_sensitivity"].get(role, p["role_sensitivity"]["default"])
    d = p["depth_factor_ends"] if il is not None and (il < n_layers // 8 or il >= 7 * n_layers // 8) else 1.0
    return s * d


def candidates(t: TensorSpec, imatrix: bool = False) -> list[str]:
    """Types this tensor may take: K/IQ types need rows that are a multiple of 256. Weights that
    come quantized (t.origin) stay as they are or go to a smaller type: requantizing them to more
    bits costs bytes and gains nothing."""
    if not allows_quantization(t):
        return [source_type(t)]
    if t.origin:
        return list(_below(t.origin, t.shape[0], imatrix))
    return list(_ladder(t.shape[0], imatrix))


@cache
def _below(origin: str, row: int, imatrix: bool) -> tuple[str, ...]:
    bpw = bits_per_weight(origin)
    return (origin, *(q for q in _ladder(row, imatrix) if bits_per_weight(q) < bpw))


@cache
def _ladder(row: int, imatrix: bool) -> tuple[str, ...]:
    needs = set(priors()["needs_imatrix"])
    ladder = LADDER_256 if row % 256 == 0 else LADDER_32
    return ("F16", *(q for q in ladder if row % block_size(q) == 0 and (imatrix or q not in needs)))


def kld_of(t_type: str) -> float:
    return float(priors()["kld"].get(t_type, 1.0))


def act_format(ty: str, backend: str) -> str | None:
    """The format `backend` converts activations to for weights of type ty (quality.yaml
    `activations`); None where it keeps them in F32 or is not described there."""
    table = priors()["activations"].get(backend)
    if table is None:
        return None
    return table.get(ty, table["default"])


def tensor_loss(t: TensorSpec, ty: str, errors: dict[str, dict[str, float]] | None, tied: bool,
                backend: str = "cpu") -> float:
    """Predicted KLD of tensor t at type ty, before weighting: measured when the weights were at
    hand (relative squared error x the calibrated factor), else the type's prior. A tensor kept
    at the type it came in loses nothing. With the activations' rounding measured ('@<format>'
    entries), the error the backend's matmul adds for this type, beyond the reference's (the
    quantized type it came in, else F16: what KLD is measured against), counts too."""
    if ty == t.origin:
        return 0.0
    if errors and t.name in errors and ty in errors[t.name]:
        e = errors[t.name]
        k = priors()["measured"]["kld_per_rel_error"]
        if role(t, tied) == "output":
            k *= priors()["measured"]["output_factor"]
        err = e[ty]
        f, f0 = act_format(ty, backend), act_format(t.origin or "F16", backend)
        if f != f0:
            err += max(0.0, e.get(f"@{f}", 0.0) - e.get(f"@{f0}", 0.0))
        return err * k
    return kld_of(ty)


def predicted_kld(model: ModelSpec, errors: dict[str, dict[str, float]] | None = None,
                  backend: str = "cpu") -> float:
    """Weighted mean of per-tensor predicted KLD over the model's tensors (their types set), the
    activations rounded as `backend` does."""
    num = den = 0.0
    for t in model.tensors:
        if not allows_quantization(t):
            continue
        w = tensor_weight(t, model.n_layers, model.tied_embeddings)
        num += w * tensor_loss(t, t.type or "F16", errors, model.tied_embeddings, backend)
        den += w
    return num / den if den else 0.0


def bytes_of(model: ModelSpec) -> int:
    return sum(tensor_bytes(t.type or source_type(t), t.shape) for t in model.tensors)
