"""Importance matrices: collected with llama.cpp itself, read and written in llama-imatrix's GGUF format.

An importance matrix holds, for every weight matrix W of the blocks, the mean square of each
input column over a text: E[x_j^2]. The output error of W x from a weight error dW is
sum_j E[x_j^2] dW_ij^2 (for uncorrelated columns), so it is the weight of column j both for the
quantizer (ggml's `quant_weights`) and for the optimizer's per-tensor error
(planner/verify/tensor_error.py).

`collect` runs in a child process (planner.verify.probe, mode "imatrix") and does what
tools/imatrix/imatrix.cpp `collect_imatrix` does, through the scheduler's eval callback
(`cb_eval`): for every MUL_MAT whose weight is a `blk.*` tensor and whose activations are F32
with at least 16 rows, it adds x^2 per column to `<tensor>.in_sum2` and the rows to
`<tensor>.counts`; for MUL_MAT_ID (MoE experts) per expert, by the routing ids. The file it writes
is what llama-quantize --imatrix and `plan ... --imatrix-file` read.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from planner.errors import PlannerError

MAX_DIMS, MAX_SRC, MAX_OP_PARAMS, MAX_NAME = 4, 10, 64, 64  # ggml.h (vendored, 2026-10)


class _Tensor(ctypes.Structure):
    """struct ggml_tensor, ggml/include/ggml.h (the fields up to `name`; the rest is never read)."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * MAX_DIMS), ("nb", ctypes.c_size_t * MAX_DIMS),
                ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * (MAX_OP_PARAMS // 4)), ("flags", ctypes.c_int32),
                ("src", ctypes.c_void_p * MAX_SRC), ("view_src", ctypes.c_void_p), ("view_offs", ctypes.c_size_t),
                ("data", ctypes.c_void_p), ("name", ctypes.c_char * MAX_NAME)]


def weight_name(name: str) -> str:
    """'CUDA0#blk.0.attn_k.weight#0' -> 'blk.0.attn_k.weight' (imatrix.cpp filter_tensor_name)."""
    if "#" in name:
        name = name.split("#", 2)[1]
    return name


class Collector:
    """Sums of x^2 per weight matrix and input column; fed by llama.cpp's eval callback."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.ggml_op_name.restype = ctypes.c_char_p
        lib.ggml_op_name.argtypes = [ctypes.c_int]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        self.ops: dict[int, str] = {}  # op -> name, asked only for ops seen (the table's size is not exported)
        self.sums: dict[str, np.ndarray] = {}    # name -> (n_mat, ne0) float64
        self.counts: dict[str, np.ndarray] = {}  # name -> (n_mat,) int64
        self.error: str | None = None

    def _get(self, ptr: int) -> np.ndarray:
        n = self.lib.ggml_nbytes(ptr)
        buf = (ctypes.c_char * n)()
        self.lib.ggml_backend_tensor_get(ptr, buf, 0, n)  # works for host and device buffers alike
        return np.frombuffer(buf, dtype=np.uint8)

    def __call__(self, ptr: int, ask: bool, _user: int) -> bool:
        try:
            return self._collect(ptr, ask)
        except Exception as exc:  # noqa: BLE001 - an exception must not cross into C; reported after
            self.error = f"{type(exc).__name__}: {exc}"
            return False

    def _collect(self, ptr: int, ask: bool) -> bool:
        t = _Tensor.from_address(ptr)
        op = self.ops.get(t.op)
        if op is None:
            op = self.ops[t.op] = (self.lib.ggml_op_name(t.op) or b"").decode(errors="replace")
        if op not in ("MUL_MAT", "MUL_MAT_ID") or not t.src[0] or not t.src[1]:
            return False
        w = _Tensor.from_address(t.src[0])
        x = _Tensor.from_address(t.src[1])
        name = weight_name(w.name.decode(errors="replace"))
        if not name.startswith("blk.") or x.type != 0:  # 0: GGML_TYPE_F32
            return False
        if ask:
            return op == "MUL_MAT_ID" or x.ne[1] >= 16  # imatrix.cpp: small batches are ignored
        ne0 = int(x.ne[0])
        raw = self._get(t.src[1])
        nb = [int(v) for v in x.nb]
        if op == "MUL_MAT_ID":
            ids_t = _Tensor.from_address(t.src[2])
            ids_raw = self._get(t.src[2])
            n_as, n_ids, n_tok = int(w.ne[2]), int(ids_t.ne[0]), int(x.ne[2])
            s, c = self._entry(name, n_as, ne0)
            for idx in range(n_ids):
                for row in range(n_tok):
                    off = row * int(ids_t.nb[1]) + idx * int(ids_t.nb[0])
                    ex = int(ids_raw[off:off + 4].view(np.int32)[0])
                    i11 = idx % int(x.ne[1])
                    o = i11 * nb[1] + row * nb[2]
                    v = raw[o:o + 4 * ne0].view(np.float32).astype(np.float64)
                    s[ex] += v * v
                    c[ex] += 1
            return True
        n_mat = int(w.ne[2] * w.ne[3])
        s, c = self._entry(name, n_mat, ne0)
        for i3 in range(int(x.ne[3])):
            for i2 in range(int(x.ne[2])):
                mat = (i3 % int(w.ne[3])) * int(w.ne[2]) + (i2 % int(w.ne[2]))
                o = i2 * nb[2] + i3 * nb[3]
                rows = np.lib.stride_tricks.as_strided(raw[o:].view(np.float32), shape=(int(x.ne[1]), ne0),
                                                       strides=(nb[1], 4))
                s[mat] += np.einsum("ij,ij->j", rows, rows, dtype=np.float64)
        c += int(x.ne[1] * x.ne[2] * x.ne[3]) // n_mat
        return True

    def _entry(self, name: str, n_mat: int, ne0: int) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.sums:
            self.sums[name] = np.zeros((n_mat, ne0))
            self.counts[name] = np.zeros(n_mat, dtype=np.int64)
        return self.sums[name], self.counts[name]


def write_imatrix(path: str, sums: dict[str, np.ndarray], counts: dict[str, np.ndarray], *,
                  dataset: str, chunk_count: int, chunk_size: int) -> None:
    """llama-imatrix's GGUF: general.type 'imatrix', imatrix.{datasets,chunk_count,chunk_size};
    per matrix <name>.in_sum2 (F32, ne0 x n_mat) and <name>.counts (F32, 1 x n_mat). Atomic."""
    from gguf import GGUFWriter
    tmp = path + ".part"
    w = GGUFWriter(tmp, "imatrix")  # the writer wants an architecture; llama.cpp's loader ignores it
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", [dataset])
    w.add_uint32("imatrix.chunk_count", chunk_count)
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(sums):
        w.add_tensor(f"{name}.in_sum2", sums[name].astype(np.float32))
        w.add_tensor(f"{name}.counts", counts[name].astype(np.float32).reshape(-1, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def collect(cfg: dict[str, Any]) -> dict[str, Any]:
    """In the child: evaluate the text in chunks of n_ctx (BOS first, like llama-imatrix) with the
    collector as llama.cpp's eval callback; write cfg['out']."""
    import glob

    import llama_cpp

    from planner.verify.probe import eval_chunks, set_context_defaults
    lcc = llama_cpp.llama_cpp
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    col = Collector(ctypes.CDLL(sorted(glob.glob(os.path.join(libdir, "libggml-base.*")))[0]))
    cb = lcc.ggml_backend_sched_eval_callback(col)
    set_context_defaults(cb_eval=cb, cb_eval_user_data=None)  # Llama() leaves cb_eval alone
    n_ctx = int(cfg.get("n_ctx", 512))
    llm = llama_cpp.Llama(model_path=cfg["model"], n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=min(n_ctx, 512),
                          verbose=False, n_gpu_layers=int(cfg.get("ngl", 0)), logits_all=True,
                          n_threads=cfg.get("threads") or os.cpu_count())  # all rows reach the last layer
    n_chunks = 0
    for _ in eval_chunks(llm, cfg["text"], n_ctx, cfg.get("n_chunks")):
        n_chunks += 1
        if col.error:
            raise RuntimeError(f"imatrix collection failed: {col.error}")
    if not col.sums:
        raise RuntimeError("no matrix multiplication of blk.* weights was seen; nothing to write")
    write_imatrix(cfg["out"], col.sums, col.counts, dataset=os.path.basename(cfg["text"]),
                  chunk_count=n_chunks, chunk_size=n_ctx)
    return {"ok": True, "cfg": cfg, "n_chunks": n_chunks, "n_tokens": n_chunks * n_ctx, "n_entries": len(col.sums)}


def make_imatrix(model: str, text: str, out: str, *, n_ctx: int = 512, n_chunks: int | None = None, ngl: int = 0,
                 threads: int | None = None, timeout_s: float = 3600) -> dict[str, Any]:
    """Collect an importance matrix of `model` over the text file `text` into `out` (a child process)."""
    from planner.verify.probe import run_probe
    for p, what in ((model, "model"), (text, "text")):
        if not os.path.isfile(p):
            raise PlannerError(f"{what} file {p} does not exist")
    r = run_probe(dict(mode="imatrix", model=model, text=text, out=os.path.abspath(out), n_ctx=n_ctx,
                       n_chunks=n_chunks, ngl=ngl, threads=threads), timeout_s=timeout_s)
    if not r.get("ok"):
        raise PlannerError(f"collecting the importance matrix failed: {r.get('error')}")
    return r


def load_imatrix(path: str) -> dict[str, np.ndarray]:
    """{tensor name: (n_mat, ne0) mean x^2 per input column} from a GGUF imatrix (llama-imatrix's
    format), normalised by the counts as tools/quantize/quantize.cpp load_imatrix does; an expert
    never reached gets weight 1."""
    from gguf import GGUFReader
    try:
        r = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise PlannerError(f"{path} is not a GGUF imatrix ({exc}); legacy .dat files: convert them with "
                           "llama-imatrix --in-file old.dat -o new.gguf") from None
    t = {x.name: np.asarray(x.data, dtype=np.float32).reshape(-1) for x in r.tensors}
    out = {}
    for name, sums in t.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name[: -len(".in_sum2")]
        counts = t.get(base + ".counts")
        if counts is None:
            raise PlannerError(f"{path}: {base} has sums but no counts; not an imatrix file")
        ne0 = sums.size // counts.size
        e = sums.reshape(counts.size, ne0) / np.where(counts > 0, counts, 1)[:, None]
        e[counts <= 0] = 1.0
        out[base] = e
    if not out:
        raise PlannerError(f"{path} holds no imatrix entries")
    return out
