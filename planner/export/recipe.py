"""Every step to make a per-tensor mix of one's own, as commands that run: the original weights, llama.cpp's
converter, an importance matrix, llama-quantize with the plan's types, then the launch line.

The programs: `hf download` (huggingface_hub's CLI, `pip install huggingface_hub`), llama.cpp's
convert_hf_to_gguf.py (its repository root), llama-imatrix and llama-quantize (built with llama.cpp)."""

from __future__ import annotations

import shlex

from planner.export.launch import llama_quantize, llama_server
from planner.model.spec import ModelSpec
from planner.optimize.plan import PlanOption
from planner.units import GiB

BF16_BYTES = 2  # convert_hf_to_gguf.py --outtype bf16: 2 bytes a weight


def steps(model: ModelSpec, repo: str | None, opt: PlanOption, capacity_bytes: int, threads: int | None = None,
          published_repo: str | None = None) -> list[str]:
    """The commands, in order, with a comment where a step needs more than this box has. repo: the model's
    original Hugging Face repository (None: the model is a local file already)."""
    stem = model.name.split("/")[-1].removesuffix(".gguf")
    src, dst = f"{stem}-BF16.gguf", f"{stem}-plan.gguf"
    out = []
    if repo:
        local = repo.split("/")[-1]
        out += [shlex.join(["hf", "download", repo, "--local-dir", local]),
                shlex.join(["python", "llama.cpp/convert_hf_to_gguf.py", local, "--outtype", "bf16", "--outfile", src])]
    bf16 = model.n_params * BF16_BYTES
    where = "" if bf16 <= capacity_bytes else (
        f"  # the BF16 file is {bf16 / GiB:.0f} GiB, more than this box holds: run it where it fits"
        + (f", or take the publisher's: hf download {published_repo} --include '*.imatrix'" if published_repo else ""))
    out.append(shlex.join(["llama-imatrix", "-m", src, "-f", "calibration.txt", "-o", "imatrix.gguf"]) + where)
    out.append(llama_quantize(opt, model, src, dst, "imatrix.gguf"))
    out.append(llama_server(opt, model, dst, threads))
    return out
