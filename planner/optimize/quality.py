"""Predicted quality of a per-tensor type assignment, from priors (planner/data/quality.yaml)."""

from __future__ import annotations

from functools import cache

from planner.data import Table, data_yaml
from planner.estimate.quant_mix import allows_quantization, source_type
from planner.model.ggml_types import bits_per_weight, block_size, tensor_bytes
from planner.model.spec import ModelSpec, TensorSpec

LADDER_256 = ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "IQ4_XS", "Q3_K", "IQ3_S", "IQ3_XXS", "Q2_K", "IQ2_S", "IQ2_XS")
LADDER_32 = ("Q8_0", "Q5_1", "Q5_0", "IQ4_NL", "Q4_0")


class MeasuredFactors(Table):
    """How measured per-tensor errors become predicted KLD (bench/quality.py --fit)."""
    kld_per_rel_error: float
    activation_factor: float
    output_factor: float
    output_factor_source: str
    source: str


class QualityPriors(Table):
    """planner/data/quality.yaml: KLD per ggml type, role sensitivities, and the measured factors."""
    source: str
    kld: dict[str, float]
    role_sensitivity: dict[str, float]
    role_sensitivity_measured: dict[str, float]
    depth_factor_ends: float
    needs_imatrix: list[str]
    imatrix_factor: dict[str, float]
    measured: MeasuredFactors
    activations: dict[str, dict[str, str | None]]


@cache
def priors() -> QualityPriors:
    return QualityPriors(**data_yaml("quality.yaml"))


def role(t: TensorSpec, tied: bool) -> str:
    """The tensor's role for quality: a tied embedding is the output matrix."""
    return "output" if (t.name == "token_embd.weight" and tied) else t.role


def tensor_weight(t: TensorSpec, n_layers: int, tied: bool, measured: bool = False) -> float:
    """Parameters x role sensitivity x depth factor; a tensor whose errors were measured takes the
    role sensitivities calibrated on measured errors (quality.yaml role_sensitivity_measured)."""
    return t.n_elements * _role_depth(role(t, tied), t.layer, n_layers, measured)


@cache
def _role_depth(role: str, il: int | None, n_layers: int, measured: bool = False) -> float:
    p = priors()
    table = p.role_sensitivity
    if measured:
        table = {**table, **p.role_sensitivity_measured}
    s = table.get(role, table["default"])
    d = p.depth_factor_ends if il is not None and (il < n_layers // 8 or il >= 7 * n_layers // 8) else 1.0
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
    needs = set(priors().needs_imatrix)
    ladder = LADDER_256 if row % 256 == 0 else LADDER_32
    return ("F16", *(q for q in ladder if row % block_size(q) == 0 and (imatrix or q not in needs)))


def kld_of(t_type: str) -> float:
    return float(priors().kld.get(t_type, 1.0))


def act_format(ty: str, backend: str) -> str | None:
    """The format `backend` converts activations to for weights of type ty (quality.yaml
    `activations`); None where it keeps them in F32 or is not described there."""
    table = priors().activations.get(backend)
    if table is None:
        return None
    return table.get(ty, table["default"])


def loss_parts(t: TensorSpec, ty: str, errors: dict[str, dict[str, float]] | None, tied: bool,
               backend: str = "cpu") -> dict[str, float]:
    """Tensor t at type ty, before weighting, in the units each factor of quality.yaml applies to:
    `weights` (measured relative error of a block matrix), `activations` (the rounding the
    backend's matmul adds for this type beyond the reference's: the quantized type it came in,
    else F16, what KLD is measured against), `output` (measured error of the output matrix or a
    tied embedding), `prior` (KLD from the type's prior, where nothing was measured). A tensor
    kept at the type it came in loses nothing."""
    if ty == t.origin:
        return {}
    e = errors.get(t.name) if errors else None
    if not e or ty not in e:
        return {"prior": kld_of(ty)}
    if role(t, tied) == "output":
        return {"output": e[ty]}
    out = {"weights": e[ty]}
    f, f0 = act_format(ty, backend), act_format(t.origin or "F16", backend)
    if f != f0:
        out["activations"] = max(0.0, e.get(f"@{f}", 0.0) - e.get(f"@{f0}", 0.0))
    return out


def combine(parts: dict[str, float]) -> float:
    """Predicted KLD from loss parts: kld_per_rel_error x (weights + activation_factor x activations
    + output_factor x output) + prior."""
    m = priors().measured
    return m.kld_per_rel_error * (parts.get("weights", 0.0) + m.activation_factor * parts.get("activations", 0.0)
                                  + m.output_factor * parts.get("output", 0.0)) + parts.get("prior", 0.0)


def tensor_loss(t: TensorSpec, ty: str, errors: dict[str, dict[str, float]] | None, tied: bool,
                backend: str = "cpu") -> float:
    """Predicted KLD of tensor t at type ty, before weighting: measured when the weights were at
    hand (relative squared error x the calibrated factors, loss_parts), else the type's prior."""
    return combine(loss_parts(t, ty, errors, tied, backend))


def predicted_parts(model: ModelSpec, errors: dict[str, dict[str, float]] | None = None,
                    backend: str = "cpu", imatrix: bool = False) -> dict[str, float]:
    """The weighted mean of each loss part over the model's tensors (their types set)."""
    if not errors:
        return _prior_parts(model, imatrix)
    num: dict[str, float] = {}
    den = 0.0
    for t in model.tensors:
        if not allows_quantization(t):
            continue
        w = tensor_weight(t, model.n_layers, model.tied_embeddings, bool(errors and t.name in errors))
        for k, v in loss_parts(t, t.type or "F16", errors, model.tied_embeddings, backend).items():
            num[k] = num.get(k, 0.0) + w * v
        den += w
    return {k: v / den for k, v in num.items()} if den else {}


def _prior_parts(model: ModelSpec, imatrix: bool = False) -> dict[str, float]:
    """predicted_parts with nothing measured: each tensor's type prior (loss_parts), weighted. The weights are
    facts of names and shapes, kept in ModelSpec.shape_memo for the optimizer's re-typed copies."""
    weights = model.shape_memo.get("quality_weights")
    if weights is None:
        weights = model.shape_memo["quality_weights"] = [
            (i, tensor_weight(t, model.n_layers, model.tied_embeddings)) for i, t in enumerate(model.tensors)
            if allows_quantization(t)]
    tensors = model.tensors
    kld = priors().kld
    factor = priors().imatrix_factor if imatrix else {}
    num = den = 0.0
    lossy = False  # as predicted_parts: no "prior" part when every tensor kept the type it came in
    for i, w in weights:
        t = tensors[i]
        ty = t.type or "F16"
        if ty != t.origin:
            num += w * float(kld.get(ty, 1.0)) * factor.get(ty, 1.0)
            lossy = True
        den += w
    return {"prior": num / den} if lossy else {}


def predicted_kld(model: ModelSpec, errors: dict[str, dict[str, float]] | None = None,
                  backend: str = "cpu", imatrix: bool = False) -> float:
    """Weighted mean of per-tensor predicted KLD over the model's tensors (their types set), the
    activations rounded as `backend` does; imatrix: quantized with an importance matrix (the priors'
    imatrix_factor per type, where nothing was measured)."""
    return combine(predicted_parts(model, errors, backend, imatrix))


def bytes_of(model: ModelSpec) -> int:
    return sum(tensor_bytes(t.type or source_type(t), t.shape) for t in model.tensors)
