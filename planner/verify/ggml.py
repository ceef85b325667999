"""ggml's own quantizer through ctypes: the libggml-base that llama-cpp-python ships.

`quantize_rows` is `ggml_quantize_chunk` (the function llama-quantize calls per row chunk),
so blocks are bit-identical to what llama.cpp writes. Dequantizing goes through the `gguf`
package's numpy reference (same formulas as ggml's dequantize_row_*), which keeps this module
free of struct layouts that change between ggml versions.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from planner.errors import PlannerError


@functools.cache
def _lib() -> ctypes.CDLL:
    try:
        import llama_cpp
    except ImportError:
        raise PlannerError("llama-cpp-python is not installed: pip install llama-cpp-python") from None
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    paths = sorted(glob.glob(os.path.join(libdir, "libggml-base.*")))
    if not paths:
        raise PlannerError(f"libggml-base not found in {libdir}; reinstall llama-cpp-python")
    lib = ctypes.CDLL(paths[0])
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_validate_row_data.restype = ctypes.c_bool
    lib.ggml_validate_row_data.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    return lib


def requires_imatrix(type_name: str) -> bool:
    return bool(_lib().ggml_quantize_requires_imatrix(int(GGMLQuantizationType[type_name])))


def quantize_rows(x: np.ndarray, type_name: str, imatrix: np.ndarray | None = None) -> bytes:
    """Quantize a 2-D float32 array (rows of length ne0) to `type_name` blocks with ggml."""
    qt = int(GGMLQuantizationType[type_name])
    x = np.ascontiguousarray(x, dtype=np.float32)
    nrows, n_per_row = x.shape
    lib = _lib()
    lib.ggml_quantize_init(qt)
    row = lib.ggml_row_size(qt, n_per_row)
    out = ctypes.create_string_buffer(row * nrows)
    im = None
    if imatrix is not None:
        im = np.ascontiguousarray(imatrix, dtype=np.float32)
        if im.shape != (n_per_row,):
            raise ValueError(f"imatrix has {im.size} values, rows have {n_per_row}")
    n = lib.ggml_quantize_chunk(qt, x.ctypes.data, out, 0, nrows, n_per_row,
                                im.ctypes.data if im is not None else None)
    if n != row * nrows or not lib.ggml_validate_row_data(qt, out, n):
        raise RuntimeError(f"ggml_quantize_chunk produced invalid {type_name} data")
    return out.raw


def dequantize_rows(data: bytes, type_name: str, n_per_row: int) -> np.ndarray:
    qt = GGMLQuantizationType[type_name]
    arr = dequantize(np.frombuffer(data, dtype=np.uint8).reshape(-1, _lib().ggml_row_size(int(qt), n_per_row)), qt)
    return arr.reshape(-1, n_per_row).astype(np.float32)


def roundtrip_sums(x: np.ndarray, type_name: str, imatrix: np.ndarray | None = None,
                   weights: np.ndarray | None = None) -> tuple[float, float]:
    """(sum w (x - deq(q(x)))^2, sum w x^2) over the rows of x: `imatrix` goes to the quantizer
    (ggml's quant_weights), `weights` (per input column) weight the error; either may be absent."""
    if type_name in ("F32",):
        return 0.0, 1.0
    if type_name in ("F16", "BF16"):
        y = x.astype(np.float16).astype(np.float32) if type_name == "F16" else \
            (x.astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
    else:
        y = dequantize_rows(quantize_rows(x, type_name, imatrix), type_name, x.shape[1])
    w = weights if weights is not None else 1.0
    return float(np.sum(w * (x - y) ** 2)), float(np.sum(w * x.astype(np.float64) ** 2))


def roundtrip_error(x: np.ndarray, type_name: str, imatrix: np.ndarray | None = None) -> float:
    """Relative squared error ||x - deq(q(x))||^2 / ||x||^2 (quantized with and weighted by the
    imatrix when given)."""
    num, den = roundtrip_sums(x, type_name, imatrix, imatrix)
    return num / (den or 1.0)
