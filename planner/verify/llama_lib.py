"""llama-cpp-python inside a child process: the settings Llama() has no parameter for, chunked
evaluation of a text as llama-perplexity does, and ggml's RPC backend through ctypes."""

from __future__ import annotations

import os
from typing import Any


def _patch_defaults(getter: str, fields: dict[str, Any]) -> None:
    """Set fields Llama() has no parameter for where Llama.__init__ takes its params from,
    llama_cpp.llama_cpp.<getter> (in the child process only)."""
    import llama_cpp
    lcc = llama_cpp.llama_cpp
    default = getattr(lcc, getter)

    def patched():
        p = default()
        for k, v in fields.items():
            setattr(p, k, v)
        return p
    setattr(lcc, getter, patched)


def set_model_defaults(**fields: Any) -> None:
    """Model params: use_extra_bufts (--no-repack)."""
    _patch_defaults("llama_model_default_params", fields)


def set_context_defaults(**fields: Any) -> None:
    """Context params: n_seq_max, kv_unified, cb_eval."""
    _patch_defaults("llama_context_default_params", fields)


def eval_chunks(llm, text: str, n_ctx: int, max_chunks: int | None = None):
    """Evaluate the text file in chunks of n_ctx tokens from an empty cache, the first token of
    each BOS when the model adds one (llama-perplexity / llama-imatrix); yields each chunk after
    llm.eval."""
    with open(text, "rb") as f:
        toks = llm.tokenize(f.read(), add_bos=False, special=False)
    n_chunks = len(toks) // n_ctx if not max_chunks else min(max_chunks, len(toks) // n_ctx)
    if n_chunks < 1:
        raise RuntimeError(f"the text has {len(toks)} tokens, fewer than one chunk of {n_ctx}")
    bos = llm.token_bos()
    for c in range(n_chunks):
        chunk = toks[c * n_ctx:(c + 1) * n_ctx]
        if bos is not None and bos >= 0 and llm._model.add_bos_token():
            chunk = [bos] + chunk[1:]
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(chunk)
        yield chunk


def ggml_libs():
    """ctypes handles of the ggml libraries llama-cpp-python ships (libggml, libggml-rpc when built with
    GGML_RPC=ON)."""
    import ctypes

    import llama_cpp
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    ggml = ctypes.CDLL(os.path.join(lib, "libggml.so.0"))  # the file libllama links (its soname)
    rpc_path = os.path.join(lib, "libggml-rpc.so.0")
    if not os.path.exists(rpc_path):
        raise RuntimeError("this llama-cpp-python has no RPC backend: rebuild it with CMAKE_ARGS=-DGGML_RPC=ON")
    return ggml, ctypes.CDLL(rpc_path)


def add_rpc_servers(endpoints: list[str]) -> None:
    """Register llama.cpp RPC servers as devices, as llama-cli's --rpc does (common/arg.cpp
    add_rpc_devices): each is a GPU-type device that llama.cpp splits layers over."""
    import ctypes
    ggml, rpc = ggml_libs()
    rpc.ggml_backend_rpc_add_server.restype = ctypes.c_void_p
    rpc.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_register.argtypes = [ctypes.c_void_p]
    for ep in endpoints:
        reg = rpc.ggml_backend_rpc_add_server(ep.encode())
        if not reg:
            raise RuntimeError(f"no RPC server answers at {ep}")
        ggml.ggml_backend_register(reg)


def serve_rpc(endpoint: str, threads: int = 1) -> None:
    """Serve this machine's CPU backend at endpoint as an llama.cpp RPC server (blocks; tools/rpc's
    rpc-server does the same): a stand-in device for multi-device placement checks on a box with
    no GPU."""
    import ctypes
    ggml, rpc = ggml_libs()
    ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    dev = ctypes.c_void_p(ggml.ggml_backend_dev_by_type(0))  # GGML_BACKEND_DEVICE_TYPE_CPU
    rpc.ggml_backend_rpc_start_server.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                                  ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    rpc.ggml_backend_rpc_start_server(endpoint.encode(), None, threads, 1, ctypes.byref(dev))
