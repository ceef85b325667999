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

It also measures what the matmul itself does to those activations. A backend multiplies a
quantized weight with activations converted to its dot-product format: ggml's CPU backend
quantizes them to Q8_0/Q8_1 (blocks of 32) or Q8_K (blocks of 256) per the weight type's
`vec_dot_type` (ggml-cpu.c type_traits_cpu), F16 weights take F16 activations; CUDA's MMQ/MMVQ
take Q8_1 (blocks of 32) for every quantized type. That rounding is an error no weight type
avoids: on Gemma 3 270M it is two thirds of a Q8_0 file's KLD (docs/quality.md). So for each
format the collector adds the squared rounding error of each input column, `<tensor>.in_qerr2_<format>`
(extra tensors llama.cpp's imatrix loader ignores: it reads only `.in_sum2` and `.counts`).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from planner.errors import PlannerError

MAX_DIMS, MAX_SRC, MAX_OP_PARAMS, MAX_NAME = 4, 10, 64, 64  # ggml.h (vendored, 2026-10)
def act_formats(ne0: int) -> tuple[str, ...]:
    """The activation formats of ggml matmuls (see the module doc) whose block divides a row of ne0."""
    return ("f16", "bf16") + (("q8_0",) if ne0 % 32 == 0 else ()) + (("q8_K",) if ne0 % 256 == 0 else ())


def act_qerr2(rows: np.ndarray) -> dict[str, np.ndarray]:
    """{format: per-column sum over `rows` (n, ne0 float32) of (x - deq(q(x)))^2} for each
    activation format whose block divides ne0, rounding as ggml does: quantize_row_q8_0_ref
    (d = amax/127 per 32, stored F16; Q8_1 and CUDA's Q8_1 round the same), quantize_row_q8_K_ref
    (per 256, iscale = -127/max of the signed extreme, F32 scale), F16 and BF16 round to nearest."""
    x = rows.astype(np.float32, copy=False)
    out: dict[str, np.ndarray] = {}
    out["f16"] = np.square(x - x.astype(np.float16).astype(np.float32), dtype=np.float64).sum(axis=0)
    u = x.view(np.uint32)
    bf = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).view(np.float32)  # ggml_compute_fp32_to_bf16
    out["bf16"] = np.square(x - bf, dtype=np.float64).sum(axis=0)
    n, ne0 = x.shape
    formats = act_formats(ne0)
    if "q8_0" in formats:
        b = x.reshape(n, ne0 // 32, 32)
        d = np.abs(b).max(axis=2, keepdims=True) / 127
        idd = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
        q = np.sign(b * idd) * np.floor(np.abs(b * idd) + 0.5)  # roundf: half away from zero
        e = b - q * d.astype(np.float16).astype(np.float32)
        out["q8_0"] = np.square(e, dtype=np.float64).reshape(n, ne0).sum(axis=0)
    if "q8_K" in formats:
        b = x.reshape(n, ne0 // 256, 256)
        i = np.abs(b).argmax(axis=2)[..., None]
        mx = np.take_along_axis(b, i, axis=2)
        isc = np.divide(-127.0, mx, out=np.zeros_like(mx), where=mx != 0)
        q = np.minimum(127, np.rint(isc * b))  # nearest_int: round half to even
        e = b - q * np.divide(1.0, isc, out=np.zeros_like(isc), where=isc != 0)
        out["q8_K"] = np.square(e, dtype=np.float64).reshape(n, ne0).sum(axis=0)
    return out


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
        self.qerr: dict[str, dict[str, np.ndarray]] = {}  # name -> format -> (n_mat, ne0) float64
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
            q = self._qentry(name, n_as, ne0)
            idx, row = np.meshgrid(np.arange(n_ids), np.arange(n_tok), indexing="ij")
            offs = (row * int(ids_t.nb[1]) + idx * int(ids_t.nb[0])).ravel()
            ex = ids_raw.view(np.int32)[offs // 4]
            xoffs = ((idx % int(x.ne[1])) * nb[1] + row * nb[2]).ravel() // 4
            vec = raw.view(np.float32)[xoffs[:, None] + np.arange(ne0)]
            for e in np.unique(ex):
                sel = vec[ex == e]
                s[e] += np.einsum("ij,ij->j", sel, sel, dtype=np.float64)
                c[e] += len(sel)
                for f, v in act_qerr2(sel).items():
                    q[f][e] += v
            return True
        n_mat = int(w.ne[2] * w.ne[3])
        s, c = self._entry(name, n_mat, ne0)
        q = self._qentry(name, n_mat, ne0)
        for i3 in range(int(x.ne[3])):
            for i2 in range(int(x.ne[2])):
                mat = (i3 % int(w.ne[3])) * int(w.ne[2]) + (i2 % int(w.ne[2]))
                o = i2 * nb[2] + i3 * nb[3]
                rows = np.lib.stride_tricks.as_strided(raw[o:].view(np.float32), shape=(int(x.ne[1]), ne0),
                                                       strides=(nb[1], 4))
                s[mat] += np.einsum("ij,ij->j", rows, rows, dtype=np.float64)
                for f, v in act_qerr2(np.ascontiguousarray(rows)).items():
                    q[f][mat] += v
        c += int(x.ne[1] * x.ne[2] * x.ne[3]) // n_mat
        return True

    def _entry(self, name: str, n_mat: int, ne0: int) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.sums:
            self.sums[name] = np.zeros((n_mat, ne0))
            self.counts[name] = np.zeros(n_mat, dtype=np.int64)
        return self.sums[name], self.counts[name]

    def _qentry(self, name: str, n_mat: int, ne0: int) -> dict[str, np.ndarray]:
        if name not in self.qerr:
            self.qerr[name] = {f: np.zeros((n_mat, ne0)) for f in act_formats(ne0)}
        return self.qerr[name]


def write_imatrix(path: str, sums: dict[str, np.ndarray], counts: dict[str, np.ndarray], *,
                  dataset: str, chunk_count: int, chunk_size: int,
                  qerr: dict[str, dict[str, np.ndarray]] | None = None, force: bool = True) -> None:
    """llama-imatrix's GGUF: general.type 'imatrix', imatrix.{datasets,chunk_count,chunk_size};
    per matrix <name>.in_sum2 (F32, ne0 x n_mat) and <name>.counts (F32, 1 x n_mat), plus our
    <name>.in_qerr2_<format> (F32, ne0 x n_mat) when measured. Atomic."""
    from planner.fileio import atomic_output
    with atomic_output(path, force) as tmp:
        _write_imatrix_gguf(tmp, sums, counts, dataset=dataset, chunk_count=chunk_count, chunk_size=chunk_size,
                            qerr=qerr)


def _write_imatrix_gguf(tmp: str, sums: dict[str, np.ndarray], counts: dict[str, np.ndarray], *, dataset: str,
                        chunk_count: int, chunk_size: int, qerr: dict[str, dict[str, np.ndarray]] | None) -> None:
    from gguf import GGUFWriter
    w = GGUFWriter(tmp, "imatrix")  # the writer wants an architecture; llama.cpp's loader ignores it
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", [dataset])
    w.add_uint32("imatrix.chunk_count", chunk_count)
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(sums):
        w.add_tensor(f"{name}.in_sum2", sums[name].astype(np.float32))
        w.add_tensor(f"{name}.counts", counts[name].astype(np.float32).reshape(-1, 1))
        for f, v in sorted((qerr or {}).get(name, {}).items()):
            w.add_tensor(f"{name}.in_qerr2_{f}", v.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def collect(cfg: dict[str, Any]) -> dict[str, Any]:
    """In the child: evaluate the text in chunks of n_ctx (BOS first, like llama-imatrix) with the
    collector as llama.cpp's eval callback; write cfg['out']."""
    import glob

    import llama_cpp

    from planner.verify.llama_lib import eval_chunks, set_context_defaults
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
                  chunk_count=n_chunks, chunk_size=n_ctx, qerr=col.qerr, force=bool(cfg.get("force")))
    return {"ok": True, "cfg": cfg, "n_chunks": n_chunks, "n_tokens": n_chunks * n_ctx, "n_entries": len(col.sums)}


def make_imatrix(model: str, text: str, out: str, *, n_ctx: int = 512, n_chunks: int | None = None, ngl: int = 0,
                 threads: int | None = None, timeout_s: float = 3600, force: bool = False) -> dict[str, Any]:
    """Collect an importance matrix of `model` over the text file `text` into `out` (a child process)."""
    from planner.verify.child import run_probe
    for p, what in ((model, "model"), (text, "text")):
        if not os.path.isfile(p):
            raise PlannerError(f"{what} file {p} does not exist")
    r = run_probe(dict(mode="imatrix", model=model, text=text, out=os.path.abspath(out), n_ctx=n_ctx,
                       n_chunks=n_chunks, ngl=ngl, threads=threads, force=force), timeout_s=timeout_s)
    if not r.get("ok"):
        raise PlannerError(f"collecting the importance matrix failed: {r.get('error')}")
    return r


def load_act_errors(path: str) -> dict[str, dict[str, np.ndarray]]:
    """{tensor name: {activation format: (n_mat, ne0) mean squared rounding error per input column}}
    from an imatrix this collector wrote; {} for one without them (llama-imatrix's own)."""
    from gguf import GGUFReader
    try:
        r = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise PlannerError(f"{path} is not a GGUF imatrix ({exc})") from None
    t = {x.name: np.asarray(x.data, dtype=np.float32) for x in r.tensors}
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, v in t.items():
        base, sep, fmt = name.rpartition(".in_qerr2_")
        counts = t.get(base + ".counts")
        if not sep or counts is None:
            continue
        n = counts.reshape(-1)
        out.setdefault(base, {})[fmt] = v.reshape(n.size, -1) / np.where(n > 0, n, 1)[:, None]
    return out


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
