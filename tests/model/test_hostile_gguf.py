"""Headers a writer would never produce are one GGUFError each, fast and small; a fuzz of the header
reader and of the GGUF -> spec step finds no exception but the planner's own."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.errors import PlannerError
from planner.model.gguf_header import read_gguf_header
from planner.model.gguf_spec import HPARAM_BOUNDS, spec_from_gguf
from planner.model.resolve import load_gguf
from tests.gguf_raw import ARRAY, F32, F64, I64, LLAMA_KV, STRING, U32, U64, auto, data_size, gguf_bytes, llama_tensors

T = llama_tensors()
FUZZ = int(os.environ.get("PLANNER_FUZZ_EXAMPLES", "600"))  # more for a long run: PLANNER_FUZZ_EXAMPLES=20000
DATA = b"\0" * data_size(T)


def _kv(**over):
    return [(k, *auto(v)) for k, v in {**LLAMA_KV, **over}.items()]


def _load(tmp_path, blob: bytes):
    p = tmp_path / "x.gguf"
    p.write_bytes(blob)
    return load_gguf(p)


def test_a_well_formed_tiny_llama_reads(tmp_path):
    m = _load(tmp_path, gguf_bytes(LLAMA_KV, T, data=DATA))
    assert m.n_layers == 2 and len(m.tensors) == len(T)


@pytest.mark.parametrize("kv,tensors,msg", [
    (_kv() + [("general.alignment", STRING, "x")], T, "general.alignment is 'x'"),
    (_kv() + [("general.alignment", F32, float("nan"))], T, "general.alignment is nan"),
    (_kv() + [("general.alignment", U32, 48)], T, "power"),
    (_kv(**{"general.architecture": 7}), T, "not an architecture name"),
    (_kv(**{"llama.block_count": "two"}), T, "llama.block_count is 'two'"),
    (_kv(**{"llama.block_count": 10**7}), T, "llama.block_count is 10000000"),
    (_kv(**{"llama.embedding_length": 1 << 40}), T, "llama.embedding_length"),
    (_kv(**{"llama.expert_count": 5000}), T, "llama.expert_count"),
    (_kv(**{"llama.attention.head_count": [4] * 5000}), T, "a list of 5000"),
    (_kv(), [(n.replace("blk.0.", "blk.x."), s, t, o) for n, s, t, o in T], "blk.x.attn_norm.weight names no block"),
    (_kv(), [(n.replace("blk.1.", "blk.9."), s, t, o) for n, s, t, o in T], "names no block 0..1"),
    (_kv(), [(n, s, t, o + 3 if i == 4 else o) for i, (n, s, t, o) in enumerate(T)], "data offset"),
    (_kv(), [(n, s, t, o + (1 << 60) if i == 4 else o) for i, (n, s, t, o) in enumerate(T)], "data offset"),
    (_kv(), [T[0], (T[0][0], *T[1][1:])] + T[2:], "appears twice"),
    (_kv(), [("x" * 70, *T[0][1:])] + T[1:], "is 70 bytes"),
    (_kv(), [(T[0][0], [63, 256], 8, 0)] + T[1:], "not a multiple of its block"),
    ([(k, v[0], v[1]) for k, v in {**{k: auto(v) for k, v in LLAMA_KV.items()},
                                    "llama.block_count": (U64, 0)}.items()], T, "llama.block_count is 0"),
])
def test_a_hostile_header_is_one_clear_error(tmp_path, kv, tensors, msg):
    with pytest.raises(PlannerError) as e:
        _load(tmp_path, gguf_bytes(kv, tensors, data=DATA))
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_a_header_only_file_lists_no_tensor_with_data(tmp_path):
    blob = gguf_bytes(LLAMA_KV, T, data=DATA)
    h = read_gguf_header(io.BytesIO(blob), len(blob))
    assert h.tensors_in(len(blob)) == {t[0] for t in T}
    assert h.tensors_in(h.header_bytes) == set()
    cut = h.header_bytes + T[3][3]  # the first three tensors whole
    assert h.tensors_in(cut) == {t[0] for t in T[:3]}


def _valid() -> bytes:
    return gguf_bytes(LLAMA_KV, T, data=DATA[:4096])


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_the_header_reader_and_spec_raise_only_planner_errors(data):
    """Random byte flips, cuts and inserts into a valid header: every outcome is a spec or a PlannerError."""
    blob = bytearray(_valid())
    head = len(blob) - 4096
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "u64"]))
        i = data.draw(st.integers(0, head - 1))
        if kind == "flip":
            blob[i] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del blob[i:i + data.draw(st.integers(1, 64))]
        elif kind == "insert":
            blob[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            blob[i:i + 8] = data.draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little")
    try:
        h = read_gguf_header(io.BytesIO(bytes(blob)), len(blob), what="fuzz")
        spec_from_gguf(h, "fuzz", "test")
    except PlannerError:
        pass


VALUES = st.one_of(st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.booleans(), st.lists(st.integers(-5, 5000), max_size=40))


@settings(max_examples=FUZZ, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(HPARAM_BOUNDS) + ["vocab_size", "rope.freq_base"]), VALUES,
                       max_size=6))
def test_fuzz_hyperparameters_raise_only_planner_errors(over):
    """Any value of any key the spec reads, of any type: a spec or one PlannerError, never a traceback."""
    kv = [(k, *auto(v)) for k, v in LLAMA_KV.items() if k.split(".", 1)[1] not in over]
    for k, v in over.items():
        if isinstance(v, bool) or isinstance(v, str):
            kv.append((f"llama.{k}", *auto(v)))
        elif isinstance(v, int):
            kv.append((f"llama.{k}", I64 if v < 0 else U64, v))
        elif isinstance(v, float):
            kv.append((f"llama.{k}", F64, v))
        else:
            kv.append((f"llama.{k}", ARRAY, (I64, v)))
    blob = gguf_bytes(kv, T, data=b"")
    try:
        h = read_gguf_header(io.BytesIO(blob), len(blob), what="fuzz")
        spec_from_gguf(h, "fuzz", "test")
    except PlannerError:
        pass


def test_counts_in_a_header_are_bounded_before_any_work(tmp_path):
    """10^7 blocks claimed by a few bytes: refused in the header check, not planned for minutes."""
    import resource
    import time
    blob = gguf_bytes(_kv(**{"llama.block_count": 10**7}), T, data=DATA)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.process_time()
    with pytest.raises(PlannerError):
        _load(tmp_path, blob)
    assert time.process_time() - t < 5 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000
    assert os.path.getsize(tmp_path / "x.gguf") == len(blob)
