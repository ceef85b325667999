"""planner/data/ggml_types.json against the gguf package it was taken from."""

import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from planner.errors import InvalidOptionError
from planner.model.ggml_types import _table, row_bytes, type_id, type_name


def test_the_type_table_is_ggufs():
    assert _table() == {t.name: (int(t), *GGML_QUANT_SIZES[t]) for t in GGMLQuantizationType}


def test_ids_names_and_sizes():
    assert type_id("q8_0") == int(GGMLQuantizationType.Q8_0) and type_name(12) == "Q4_K"
    assert row_bytes("Q4_K", 4096) == 4096 // 256 * 144
    with pytest.raises(InvalidOptionError, match="unknown ggml type 'Q9_K'"):
        row_bytes("Q9_K", 256)
