"""ggml type sizes, read from gguf's GGML_QUANT_SIZES (the one table of block sizes)."""

from __future__ import annotations

from functools import cache

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from planner.errors import InvalidOptionError


@cache
def ggml_type(name: str) -> GGMLQuantizationType:
    try:
        return GGMLQuantizationType[name.upper()]
    except KeyError:
        raise InvalidOptionError(f"unknown ggml type '{name}'; known: "
                                 + ", ".join(t.name for t in GGMLQuantizationType)) from None


@cache
def block_size(name: str) -> int:
    return GGML_QUANT_SIZES[ggml_type(name)][0]


def row_bytes(name: str, n_per_row: int) -> int:
    """ggml_row_size: bytes of one row of n_per_row elements (n_per_row % block == 0)."""
    blck, size = GGML_QUANT_SIZES[ggml_type(name)]
    return size * n_per_row // blck


def tensor_bytes(name: str, shape: list[int]) -> int:
    """Bytes of a tensor of ggml type `name` with ggml shape (ne0 = row length)."""
    return _tensor_bytes(name, tuple(shape))


@cache
def _tensor_bytes(name: str, shape: tuple[int, ...]) -> int:
    n = row_bytes(name, shape[0])
    for d in shape[1:]:
        n *= d
    return n


def bits_per_weight(name: str) -> float:
    blck, size = GGML_QUANT_SIZES[ggml_type(name)]
    return 8 * size / blck


def is_quantized(name: str) -> bool:
    return ggml_type(name).name not in ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64")
