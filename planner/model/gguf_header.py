"""A bounded GGUF header reader: metadata and tensor infos, never tensor data.

Why not gguf.GGUFReader: it memory-maps the whole file and builds views of the data, so it
fails on a file cut short after the tensor-info section (a partial download, or the bytes a
remote range read fetched), and trusts counts and lengths in the header. Here every count
and length is checked against the bytes that remain, so a hostile header is rejected at
once without reading or allocating gigabytes. Works on any binary file object (local
file, HfFileSystem file for range reads).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from planner.errors import GGUFError
from planner.model.ggml_types import block_size, tensor_bytes, type_name

MAGIC = b"GGUF"
MAX_DIMS = 4                     # GGML_MAX_DIMS
MAX_KV = 1 << 20                 # more metadata keys than any real model has by 1000x
MAX_TENSORS = 1 << 20
MAX_STRING = 64 << 20            # a chat template or merges string; 64 MiB is absurd already
MAX_NAME = 64                    # GGML_MAX_NAME: gguf.cpp rejects a tensor name of 64 bytes or more
DEFAULT_ALIGNMENT = 32           # GGUF_DEFAULT_ALIGNMENT
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    type: str
    offset: int


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    alignment: int = DEFAULT_ALIGNMENT
    header_bytes: int = 0                  # where tensor data starts
    data_bytes: int = 0                    # the data section's size: the end of the last tensor
    array_lengths: dict[str, int] = field(default_factory=dict)  # long arrays kept as lengths

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def tensors_in(self, file_bytes: int) -> set[str]:
        """Names of the tensors whose data lies wholly within the first file_bytes of the file (all of
        them for a whole file; none for a header-only download)."""
        return {t.name for t in self.tensors
                if self.header_bytes + t.offset + tensor_bytes(t.type, t.shape) <= file_bytes}


class _Reader:
    def __init__(self, f: BinaryIO, size: int | None, what: str):
        self.f, self.size, self.what, self.pos = f, size, what, 0
        self._buf, self._buf_start = b"", 0

    def remaining(self) -> int | None:
        return None if self.size is None else self.size - self.pos

    def read(self, n: int) -> bytes:
        if n < 0:
            raise GGUFError(f"{self.what}: corrupt header (negative length)")
        rem = self.remaining()
        if rem is not None and n > rem:
            raise self._short()
        end = self.pos + n
        if end > self._buf_start + len(self._buf):
            self.f.seek(self.pos)
            chunk = self.f.read(max(n, 1 << 20))
            self._buf, self._buf_start = chunk, self.pos
        off = self.pos - self._buf_start
        data = self._buf[off:off + n]
        if len(data) < n:
            raise self._short()
        self.pos = end
        return data

    def _short(self) -> GGUFError:
        return GGUFError(f"{self.what}: file ends inside the GGUF header at byte {self.pos}; "
                         "it is truncated before the tensor list ends - download more of it")

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def count(self, what: str, limit: int, min_item_bytes: int) -> int:
        n = self.unpack("<Q")
        rem = self.remaining()
        if n > limit:
            raise GGUFError(f"{self.what}: hostile or corrupt header: {what} = {n} (at most {limit} "
                            "makes sense); refusing to read it")
        if rem is not None and n * min_item_bytes > rem:
            raise GGUFError(f"{self.what}: header claims {what} = {n} but only {rem} bytes are left: the file "
                            "is truncated inside its header (download more of it) or corrupt")
        return n

    def string(self) -> str:
        n = self.count("string length", MAX_STRING, 1)
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str, arrays: dict[str, int]) -> Any:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            itype = self.unpack("<I")
            item = struct.calcsize(_SCALAR[itype]) if itype in _SCALAR else 8
            if itype not in _SCALAR and itype != STRING:
                raise GGUFError(f"{self.what}: corrupt header: array of type {itype} in {key}")
            n = self.count(f"array length of {key}", 1 << 32, item)
            if n > 4096:  # tokenizer tables: skip over, keep the length only
                arrays[key] = n
                if itype == STRING:
                    for _ in range(n):
                        self.read(self.count("string length", MAX_STRING, 1))
                else:
                    self.read(n * item)
                return None
            return [self.value(itype, key, arrays) for _ in range(n)]
        raise GGUFError(f"{self.what}: corrupt header: unknown value type {vtype} for {key}")


def read_gguf_header(f: BinaryIO, size: int | None = None, what: str = "GGUF") -> GGUFHeader:
    """Parse the header of a GGUF from a seekable binary file object."""
    r = _Reader(f, size, what)
    magic = r.read(4) if (size is None or size >= 4) else b""
    if magic != MAGIC:
        raise GGUFError(f"{what}: not a GGUF file (starts with {magic[:4]!r}, expected b'GGUF')")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise GGUFError(f"{what}: GGUF version {version} is not supported (2 or 3)")
    n_tensors = r.count("tensor count", MAX_TENSORS, 24)
    n_kv = r.count("metadata count", MAX_KV, 13)
    meta: dict[str, Any] = {}
    arrays: dict[str, int] = {}
    align = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = r.string()
        vtype = r.unpack("<I")
        meta[key] = r.value(vtype, key, arrays)
        if key == "general.alignment":
            align = _alignment(meta[key], vtype, what)
    tensors = [_tensor_info(r, what) for _ in range(n_tensors)]
    data_bytes = _check_offsets(tensors, align, what)
    start = (r.pos + align - 1) // align * align
    return GGUFHeader(version=version, metadata=meta, tensors=tensors, alignment=align,
                      header_bytes=start, data_bytes=data_bytes, array_lengths=arrays)


def _alignment(value: Any, vtype: int, what: str) -> int:
    """general.alignment as gguf.cpp reads it: a uint32 that is a power of 2."""
    if vtype != 4 or not isinstance(value, int) or value <= 0 or value & (value - 1):
        raise GGUFError(f"{what}: corrupt header: general.alignment is {value!r} (llama.cpp needs a uint32 power "
                        "of 2); the file is damaged or was not written by a GGUF writer")
    return value


def _tensor_info(r: _Reader, what: str) -> TensorInfo:
    """One tensor info, with the checks gguf.cpp makes: name length, dimensions, shape, type, row blocks."""
    name = r.string()
    if len(name.encode()) >= MAX_NAME:
        raise GGUFError(f"{what}: corrupt header: tensor name {name[:80]!r} is {len(name.encode())} bytes "
                        f"(llama.cpp allows at most {MAX_NAME - 1})")
    n_dims = r.unpack("<I")
    if not 1 <= n_dims <= MAX_DIMS:
        raise GGUFError(f"{what}: corrupt header: tensor {name} has {n_dims} dimensions")
    shape = [r.unpack("<Q") for _ in range(n_dims)]
    if any(d <= 0 or d > 1 << 40 for d in shape):
        raise GGUFError(f"{what}: corrupt header: tensor {name} has shape {shape}")
    t = r.unpack("<I")
    try:
        tname = type_name(t)
    except KeyError:
        raise GGUFError(f"{what}: tensor {name} has ggml type {t}, newer than this planner's table of ggml types "
                        f"(planner/data/ggml_types.json); upgrade the planner") from None
    if shape[0] % block_size(tname):
        raise GGUFError(f"{what}: corrupt header: tensor {name} of type {tname} has rows of {shape[0]} elements, "
                        f"not a multiple of its block of {block_size(tname)}")
    return TensorInfo(name=name, shape=shape, type=tname, offset=r.unpack("<Q"))


def _check_offsets(tensors: list[TensorInfo], align: int, what: str) -> int:
    """Tensor data as gguf.cpp requires it: unique names, each tensor at the padded end of the one before.
    Returns the data section's size (the last tensor's end)."""
    seen: set[str] = set()
    expected = end = 0
    for t in tensors:
        if t.name in seen:
            raise GGUFError(f"{what}: corrupt header: tensor {t.name} appears twice")
        seen.add(t.name)
        if t.offset != expected:
            raise GGUFError(f"{what}: corrupt header: tensor {t.name} has data offset {t.offset}, where llama.cpp "
                            f"expects {expected} (each tensor at the {align}-byte padded end of the one before)")
        end = t.offset + tensor_bytes(t.type, t.shape)
        expected = end + (-end % align)
    return end


def read_gguf_file(path: str) -> GGUFHeader:
    import os
    import stat
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever, /dev/zero never end
            from planner.fileio import kind_of
            raise GGUFError(f"{path} is {kind_of(path)}, not a GGUF file; give the path of a .gguf file")
        size = st.st_size
        with open(path, "rb") as f:
            return read_gguf_header(f, size, what=path)
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from None
