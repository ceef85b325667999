"""The program a plan is for, and how it sets llama.cpp's context: the same weights and flags allocate
different buffers under llama-server, llama-cli, llama-cpp-python and Ollama. A plan is estimated for
one program (`plan --emit KIND` names it; llama-server by default) and its export pins every setting
that changes memory, so that what runs is what was estimated.

Each rule is data, with the source line it comes from (the vendored llama.cpp of llama-cpp-python
0.3.36, ggml-org/llama.cpp@0c1e57098; Ollama's llama/llama.go)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from planner.errors import InvalidOptionError
from planner.estimate.options import RuntimeOptions


class Program(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    outputs_per_slot: bool  # the context reserves one output per sequence, not n_batch
    tensor_overrides: bool  # can keep tensors on the CPU by pattern (-ot, --n-cpu-moe)
    tensor_split: bool  # takes a per-GPU split
    one_kv_type: bool  # one cache type for K and V
    kv_types: tuple[str, ...] | None  # the cache types it accepts (None: llama.cpp's own list)
    batch_is_ubatch: bool  # its batch option sets the micro-batch; the logical batch is that times the slots
    source: str


PROGRAMS: dict[str, Program] = {p.name: p for p in (
    Program(name="llama-server", outputs_per_slot=True, tensor_overrides=True, tensor_split=True, one_kv_type=False,
            kv_types=None, batch_is_ubatch=False,
            source="tools/server/server-context.cpp load_model: n_outputs_max = server_output_limits() = n_parallel x "
                   "(1 + draft tokens); server.cpp: -np auto is 4 slots with a unified KV cache, so the export "
                   "pins -np and --kv-unified/--no-kv-unified"),
    Program(name="llama-cli", outputs_per_slot=True, tensor_overrides=True, tensor_split=True, one_kv_type=False,
            kv_types=None, batch_is_ubatch=False,
            source="tools/cli/cli-server.h: llama-cli runs llama-server in a thread with the same params "
                   "(-np default 1)"),
    Program(name="llama-cpp-python", outputs_per_slot=False, tensor_overrides=False, tensor_split=True,
            one_kv_type=False, kv_types=None, batch_is_ubatch=False,
            source="llama_cpp/llama.py 0.3.36: Llama() has no tensor_buft_overrides (the field is marked unused) and "
                   "leaves n_outputs_max at 0 (= n_batch, llama-context.cpp)"),
    Program(name="ollama", outputs_per_slot=False, tensor_overrides=False, tensor_split=False, one_kv_type=True,
            kv_types=("f16", "q8_0", "q4_0"), batch_is_ubatch=True,
            source="ollama/ollama llama/llama.go NewContextParams: n_batch = num_batch x parallel, "
                   "n_ubatch = num_batch, type_k = type_v = OLLAMA_KV_CACHE_TYPE (f16, q8_0, q4_0); the Modelfile "
                   "has no tensor override or split (Ollama splits over GPUs itself)"),
)}
DEFAULT_PROGRAM = "llama-server"


def program(name: str) -> Program:
    if name not in PROGRAMS:
        raise InvalidOptionError(f"no program '{name}': plans are for {', '.join(PROGRAMS)}")
    return PROGRAMS[name]


def check_pins(p: Program, *, n_cpu_moe: int | None, override_tensor: list[str], tensor_split: list[float] | None,
               cache_type_k: str | None, cache_type_v: str | None) -> None:
    """Pinned options the program cannot carry: refused with the reason, not dropped without a word."""
    if not p.tensor_overrides and (n_cpu_moe or override_tensor):
        flag = "--n-cpu-moe" if n_cpu_moe else "-ot"
        raise InvalidOptionError(f"{p.name} cannot keep tensors on the CPU by pattern ({flag}): leave {flag} out for "
                                 f"a {p.name} plan, or plan for llama-server (--emit llama-server), which can")
    if not p.tensor_split and tensor_split:
        raise InvalidOptionError(f"{p.name} splits over the GPUs by itself and takes no --tensor-split: leave it out, "
                                 "or plan for llama-server (--emit llama-server)")
    if p.one_kv_type and cache_type_k and cache_type_v and cache_type_k != cache_type_v:
        raise InvalidOptionError(f"{p.name} uses one cache type for K and V (OLLAMA_KV_CACHE_TYPE): give the same "
                                 "--cache-type-k and --cache-type-v")
    for t in (cache_type_k, cache_type_v):
        if p.kv_types and t and t.lower() not in p.kv_types:
            raise InvalidOptionError(f"{p.name} takes the KV cache types {', '.join(p.kv_types)}, not {t}")


def for_program(opts: RuntimeOptions, p: Program) -> RuntimeOptions:
    """The context llama.cpp builds for these options under this program."""
    upd: dict = {"n_outputs": opts.n_seq if p.outputs_per_slot else None}
    if p.batch_is_ubatch:
        upd["n_batch"] = opts.n_ubatch * opts.n_seq
    if p.one_kv_type:
        upd["cache_type_v"] = opts.cache_type_k
    return opts.model_copy(update=upd)
