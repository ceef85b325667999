"""Each tensor's quantization error for each candidate type, measured with ggml's quantizer on
the real weights (the optimizer's quality model when the weights are at hand).

For every quantizable tensor a seeded sample of rows is read from the GGUF (memory-mapped:
a 70B file is not read whole), dequantized to f32 when stored quantized, quantized to each
candidate type by `ggml_quantize_chunk` and dequantized back; the relative squared error
||W - deq(q(W))||^2 / ||W||^2 is the tensor's error at that type. Results are cached per
source file in the user's cache dir.

With an importance matrix (planner/verify/imatrix.py: the mean x^2 of each input column over a
text) the error is activation-weighted, sum_j E[x_j^2] dW_ij^2 / sum_j E[x_j^2] W_ij^2: the
relative error of the matrix's *outputs* rather than of its weights. Tensors the matrix does not
cover (the embedding, the output) keep the plain error. The same file can also go to the
quantizer (what llama-quantize --imatrix does), or only weight the errors: a plan for stock
llama-quantize without an imatrix still ranks tensors by what their errors do to the outputs.

When the matrix also holds the activations' rounding errors (our collector measures them,
planner/verify/imatrix.py), each tensor gets one more entry per activation format, `@<format>`:
sum_j E[dx_j^2] ||W_:j||^2 / sum_j E[x_j^2] ||W_:j||^2, the relative output error the backend's
conversion of the activations makes (uncorrelated columns, as above). planner/optimize/quality.py
adds the one the tensor's type runs with on the plan's backend.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np

from planner.errors import PlannerError
from planner.estimate.quant_mix import allows_quantization
from planner.model.spec import ModelSpec
from planner.optimize.quality import candidates
from planner.verify.ggml import requires_imatrix, roundtrip_sums

ErrorTable = dict[str, dict[str, float]]
SAMPLE_ELEMENTS = 1 << 17  # ~131k weights per tensor: relative error settles to ~1% here


def _rows(arr: np.ndarray, ggml_type: str, n_per_row: int, idx: np.ndarray) -> np.ndarray:
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    sub = np.asarray(arr[idx])
    if ggml_type in ("F32", "F16"):
        return sub.astype(np.float32).reshape(len(idx), n_per_row)
    if ggml_type == "BF16":
        return (sub.astype(np.uint32) << 16).view(np.float32).reshape(len(idx), n_per_row)
    return dequantize(sub, GGMLQuantizationType[ggml_type]).astype(np.float32).reshape(len(idx), n_per_row)


_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def tensor_data(path: str) -> dict[str, np.ndarray]:
    """Each tensor whose data the file holds, memory-mapped as rows (nrows, row elements or row bytes);
    a header-only or truncated download holds fewer tensors than its header lists, or none."""
    from planner.model.ggml_types import row_bytes
    from planner.model.gguf_header import read_gguf_file
    h = read_gguf_file(path)
    size = os.path.getsize(path)
    present = h.tensors_in(size)
    if not present:
        return {}
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for t in h.tensors:
        if t.name not in present:
            continue
        nrows = int(np.prod(t.shape[1:]))
        nb = row_bytes(t.type, t.shape[0])
        start = h.header_bytes + t.offset
        raw = mm[start:start + nb * nrows].reshape(nrows, nb)
        out[t.name] = raw.view(_DTYPES[t.type]) if t.type in _DTYPES else raw
    return out


def data_coverage(path: str) -> tuple[int, int]:
    """(tensors whose data the file holds, tensors its header lists): a partial download holds fewer."""
    from planner.model.gguf_header import read_gguf_file
    h = read_gguf_file(path)
    return len(h.tensors_in(os.path.getsize(path))), len(h.tensors)


def measure_errors(path: str, model: ModelSpec, *, imatrix: bool = False, importance: str | None = None,
                   quantize_with_importance: bool = True, cache: bool = True,
                   progress: Callable[[int, int, str], None] | None = None) -> ErrorTable:
    """{tensor name: {type: relative squared error}} for every quantizable tensor of `path`;
    activation-weighted by the GGUF imatrix `importance` when given (and quantized with it unless
    quantize_with_importance is False)."""
    if importance:
        imatrix = imatrix or quantize_with_importance
    cpath = None
    if cache:
        from planner.verify.calibration import cached_path, file_key
        extra: list[object] = [imatrix, "v3"]  # v2: candidates below a quantized origin; v3: @formats
        if importance:
            extra += [file_key(importance), quantize_with_importance]
        cpath = cached_path("tensor-errors", path, ".json", *extra)
        if os.path.exists(cpath):
            with open(cpath) as f:
                return json.load(f)
    imx = None
    act: dict[str, dict[str, np.ndarray]] = {}
    if importance:  # read only when the errors are measured, not on a cache hit
        from planner.verify.imatrix import load_act_errors, load_imatrix
        imx = load_imatrix(importance)
        act = load_act_errors(importance)
    weights = tensor_data(path)
    todo = [t for t in model.tensors if allows_quantization(t) and t.name in weights]
    if imx is not None:
        width = {t.name: t.shape[0] for t in todo}
        wrong = [n for n, v in imx.items() if n in width and v.shape[-1] != width[n]]
        if wrong or not any(n in width for n in imx):
            raise PlannerError(f"the importance matrix {importance} is for another model: "
                               + (f"{wrong[0]} has {imx[wrong[0]].shape[-1]} columns, the model's {width[wrong[0]]}"
                                  if wrong else "none of its tensors is in this model"))
    rng = np.random.default_rng(0)
    out: ErrorTable = {}
    for i, t in enumerate(todo):
        n_per_row = t.shape[0]
        nrows = int(np.prod(t.shape[1:]))
        k = max(1, min(nrows, SAMPLE_ELEMENTS // n_per_row))
        idx = np.sort(rng.choice(nrows, size=k, replace=False))
        data = weights[t.name]
        x = _rows(data, t.type or "F16", n_per_row, idx)
        groups = _importance_groups(imx.get(t.name) if imx else None, idx, t.shape, n_per_row)
        errs = {}
        for c in candidates(t, imatrix):
            num = den = 0.0
            for rows, w, _ in groups:
                q_im = w if (w is not None and quantize_with_importance) else \
                    (np.ones(n_per_row, dtype=np.float32) if requires_imatrix(c) else None)
                a, b = roundtrip_sums(x[rows], c, q_im, w)
                num, den = num + a, den + b
            errs[c] = num / (den or 1.0)
        if t.name in act and imx and t.name in imx:
            errs.update(_activation_terms(x, groups, act[t.name], imx[t.name]))
        out[t.name] = errs
        if progress:
            progress(i + 1, len(todo), t.name)
    if cpath:
        from planner.fileio import write_cache
        write_cache(cpath, json.dumps(out))
    return out


def _activation_terms(x: np.ndarray, groups: list, act: dict[str, np.ndarray], im: np.ndarray) -> dict[str, float]:
    """{'@format': sum_j E[dx_j^2] C_j / sum_j E[x_j^2] C_j} with C_j the sampled rows' squared column
    norms, per importance group (expert) and summed."""
    num = dict.fromkeys(act, 0.0)
    den = 0.0
    for rows, _, e in groups:
        col = np.einsum("ij,ij->j", x[rows], x[rows], dtype=np.float64)
        den += float(im[e] @ col)
        for f, v in act.items():
            num[f] += float(v[min(e, v.shape[0] - 1)] @ col)
    return {f"@{f}": n / (den or 1.0) for f, n in num.items()}


def _importance_groups(im: np.ndarray | None, idx: np.ndarray, shape: list[int],
                       n_per_row: int) -> list[tuple[np.ndarray | slice, np.ndarray | None, int]]:
    """The sampled rows grouped by the importance vector that applies to them, with that vector's
    matrix (expert) index: one group for a dense matrix; for stacked experts the rows of each expert."""
    if im is None:  # not covered (the widths of the rest were checked against the model)
        return [(slice(None), None, 0)]
    if im.shape[0] == 1:
        return [(slice(None), im[0], 0)]
    per_mat = int(shape[1]) if len(shape) > 2 else len(idx)
    mats = idx // per_mat
    out = []
    for e in np.unique(mats):
        m = min(int(e), im.shape[0] - 1)
        out.append((np.nonzero(mats == e)[0], im[m], m))
    return out
