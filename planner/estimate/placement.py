"""Which device holds each weight tensor, by llama.cpp's rules (llama-model.cpp load_tensors).

- `-ngl N` offloads the *last* N of the n_layer + 1 offloadable layers; the extra one is the
  output layer (output_norm, output / duplicated token_embd), offloaded first:
  i_gpu_start = max(n_layer + 1 - N, 0), layer il is on a GPU iff il >= i_gpu_start.
- token_embd and the other input-layer tensors (INPUT_TENSORS) always stay in host memory.
- Layers split over GPUs by the cumulative, normalised tensor split (default: free memory):
  gpu = upper_bound(splits, (il - i_gpu_start) / act_gpu_layers).
- `--n-cpu-moe N`: expert tensors (*_exps) of layers < N on the CPU; `--cpu-moe`: all; `-ot`.
"""

from __future__ import annotations

import bisect
import re

from planner.estimate.options import RuntimeOptions
from planner.model.spec import ModelSpec

CPU = -1  # device index of host memory
# llama.cpp's input-layer tensors (llama-arch.cpp: LLM_TENSOR_LAYER_INPUT, read by get_rows): always in
# host memory, and never repacked
INPUT_TENSORS = frozenset({"token_embd.weight", "per_layer_token_embd.weight", "position_embd.weight",
                           "token_types.weight"})
# tensors outside the blocks that models create with layer 0's number, so on layer 0's device (rope
# frequencies; Gemma 3n/4's per-layer-input projection)
LAYER0_TENSORS = ("rope_", "per_layer_model_proj", "per_layer_proj_norm")


def layer_devices(n_layer: int, n_gpus: int, opts: RuntimeOptions, free: list[int]) -> tuple[list[int], int]:
    """Device of each repeating layer and of the output layer (index n_layer)."""
    ngl = n_layer + 1 if opts.n_gpu_layers < 0 else opts.n_gpu_layers
    if n_gpus == 0:
        return [CPU] * n_layer, CPU
    i_gpu_start = max(n_layer + 1 - ngl, 0)
    act = min(ngl, n_layer + 1)
    weights = opts.tensor_split if opts.tensor_split and any(opts.tensor_split) else [float(f) for f in free]
    weights = (list(weights) + [0.0] * n_gpus)[:n_gpus]
    total = sum(weights) or 1.0
    cum, s = [], 0.0
    for w in weights:
        s += w
        cum.append(s / total)

    def dev(il: int) -> int:
        if il < i_gpu_start or il - i_gpu_start >= act:
            return CPU
        return min(bisect.bisect_right(cum, (il - i_gpu_start) / act), n_gpus - 1)

    return [dev(il) for il in range(n_layer)], dev(n_layer)


def tensor_device(name: str, il: int | None, layers: list[int], out_dev: int, opts: RuntimeOptions,
                  pats: list[re.Pattern]) -> int:
    """Device of one weight tensor, given the layers' devices (layer_devices)."""
    if name in INPUT_TENSORS:
        d = CPU
    elif il is None:
        d = layers[0] if name.startswith(LAYER0_TENSORS) and layers else out_dev
    else:
        d = layers[il]
        if "_exps" in name and (opts.cpu_moe or il < opts.n_cpu_moe):
            d = CPU
    if pats and any(p.search(name) for p in pats):
        d = CPU
    return d


def tensor_devices(model: ModelSpec, n_gpus: int, opts: RuntimeOptions, free: list[int]) -> dict[str, int]:
    layers, out_dev = layer_devices(model.n_layers, n_gpus, opts, free)
    pats = [re.compile(p) for p in opts.override_tensor]
    return {t.name: tensor_device(t.name, t.layer, layers, out_dev, opts, pats) for t in model.tensors}
