"""ggml type ids and sizes: planner/data/ggml_types.json, gguf's GGML_QUANT_SIZES kept as data (the
tests check it against the installed gguf) so that planning never imports gguf and numpy."""

from __future__ import annotations

from functools import cache

from planner.data import data_json
from planner.errors import InvalidOptionError


@cache
def _table() -> dict[str, tuple[int, int, int]]:
    return {name: tuple(v) for name, v in data_json("ggml_types.json")["types"].items()}


@cache
def _names() -> dict[int, str]:
    return {v[0]: name for name, v in _table().items()}


@cache
def ggml_type(name: str) -> str:
    """The canonical (upper-case) name of a ggml type; one line naming the known ones if unknown."""
    key = name.upper()
    if key not in _table():
        raise InvalidOptionError(f"unknown ggml type '{name}'; known: " + ", ".join(_table())) from None
    return key


def type_id(name: str) -> int:
    """ggml_type's enum value (GGMLQuantizationType)."""
    return _table()[ggml_type(name)][0]


def type_name(type_id_: int) -> str:
    """The name of a ggml type id read from a GGUF header; KeyError if this table lacks it."""
    return _names()[type_id_]


@cache
def block_size(name: str) -> int:
    return _table()[ggml_type(name)][1]


def row_bytes(name: str, n_per_row: int) -> int:
    """ggml_row_size: bytes of one row of n_per_row elements (n_per_row % block == 0)."""
    _, blck, size = _table()[ggml_type(name)]
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
    _, blck, size = _table()[ggml_type(name)]
    return 8 * size / blck


def is_quantized(name: str) -> bool:
    return ggml_type(name) not in ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64")
