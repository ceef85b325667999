"""Compute-buffer model: ggml-alloc's peak over the graph, as a max over its phases.

llama.cpp reserves the graph for the worst case, n_tokens = u = min(n_ubatch, n_ctx) with
a full KV cache (llama-context.cpp sched_reserve). The buffer is the peak of live
tensors; it is reached in one of three places (all f32 activations, 4 bytes):
- logits: n_vocab x u, plus 2 hidden states (3 for gemma: final soft-capping);
- attention without flash attention: the scores n_kv x u x n_head, the mask n_kv x u,
  plus 5.5 hidden states' worth of q/k/v/out temporaries;
- attention with flash attention: the f16 mask n_kv x u and ~5 hidden states;
- the FFN: gate, up and their product (3 x n_ff x u), MoE: n_used x expert_ff x u each;
- a Mamba layer's SSM (no attention scores: nothing grows with n_ctx): Mamba-2 holds
  5 d_inner + 3 (2 n_group d_state) + 3 n_embd values per token (in_proj output, conv input,
  output and activation, scan output), Mamba-1 6.55 d_inner (fitted); beside the logits they
  keep 3 hidden states; plus the states the scan outputs beside y, d_state x d_inner per
  sequence. Fitted on no_alloc dry runs of Mamba-1/2 twins (8 + 5 shapes, u 256 and 512: one
  sequence within 3.1%, 21 of 26 within 2%; bench/mamba_grid.py), exact at Mamba-2 2.7B size.
- a hybrid (Mamba-2 and attention layers): the attention mask lives under the SSM and FFN
  phases too (fitted on Granite-4.0-H-layout twins, bench/mamba_grid.py).
A GPU that holds the layers does not hold the input embedding (get_rows runs on the
host, token_embd lives there), so its buffer is one hidden state smaller; the host gets
the masks and two hidden states (CUDA_Host compute). Several GPUs holding everything run
pipeline-parallel: each holds its own split's peak plus 4 copies of the split's inputs
(pipeline_buffers; measured on llama.cpp RPC devices, bench/multi_device.py).
Fitted to llama.cpp's own no_alloc dry runs on CPU (bench/data/cpu-compute-grid.jsonl) and
checked against H100 runs (bench/data/h100-llama3-8b-q4k-calibration.jsonl); the tests run
llama.cpp again and compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimate.compute_rules import ComputeRule, per_token, rule_for
from planner.model.spec import ModelSpec

F32 = 4


def _n_kv_attn(model: ModelSpec, n_ctx: int, swa_cells: int) -> int:
    """Cells an attention layer reads at worst: the full cache for full layers, else the window."""
    full = any(lay.attn == "full" for lay in model.layers)
    return n_ctx if full else swa_cells


def ssm_bytes(model: ModelSpec, u: int, n_seq: int) -> int:
    """Bytes a recurrent layer's mixer keeps live for u tokens: Mamba-1/2's SSM, LFM2's short
    convolution, RWKV-7's time mix, Kimi's KDA, the gated delta net (0: no recurrent layers, or a kind
    whose graph is not fitted: RWKV-6)."""
    g = model.recurrent.gguf if model.recurrent else {}
    mixer = rule_for(model.architecture).mixer
    if g.get("wkv.head_size") and mixer == "rwkv7":
        # RWKV-7's time mix: token shifts, the six lerps, r/k/v, the LoRA'd decay, learning rate, value
        # residual and gate, the WKV-7 op: ~19.5 hidden states, plus the state it writes per sequence
        # (fitted on RWKV-7 twins, n_embd 256-1024: within 2%, bench/mamba_grid.py)
        return int(19.5 * model.n_embd * u * F32) + model.n_embd * g["wkv.head_size"] * max(1, n_seq) * F32
    if g.get("kda.head_dim"):
        # Kimi Delta Attention (chunked): 3 hidden states and 7 rows of the heads' width (n_head head_dim)
        # per token, plus the head_dim^2 state of each head per sequence (fitted on Kimi-Linear twins,
        # n_embd 256/512, 4-16 heads of 32-128: within 0.3% but the smallest, bench/mamba_grid.py)
        hd = g["kda.head_dim"]
        return ((3 * model.n_embd + 7 * model.n_head * hd) * u + model.n_head * hd * hd * max(1, n_seq)) * F32
    if g.get("shortconv.l_cache"):
        # LFM2's gated short convolution: in_proj's 3 n_embd, B*x, the conv window, its output, C*conv,
        # out_proj and the residual: ~8 hidden states live (fitted on LFM2 twins: 7.5 to 9 measured,
        # bench/mamba_grid.py)
        return 8 * model.n_embd * u * F32
    d_inner = g.get("ssm.inner_size", 0)
    if not d_inner:
        return 0
    d_state = g.get("ssm.state_size", 0)
    if mixer == "gated_delta_net":
        # Qwen3-Next/3.5's gated delta net (llm_build_delta_net_base, chunked): 3 hidden states, 6 rows of the
        # q/k width (n_group d_state) and 3 of the value width (d_inner) per token; no per-sequence term
        # (fitted on Qwen3.5 twins, 7 shapes: within 0.3%, bench/mamba_grid.py)
        return (3 * model.n_embd + 6 * g.get("ssm.group_count", 1) * d_state + 3 * d_inner) * u * F32
    if g.get("ssm.group_count"):  # Mamba-2 (and the hybrids built on it)
        per_token = 5 * d_inner + 6 * g["ssm.group_count"] * d_state + 3 * model.n_embd
    else:
        per_token = int(6.55 * d_inner)
    return (per_token * u + d_state * d_inner * max(1, n_seq)) * F32  # + the scan's states per sequence


@dataclass(frozen=True)
class _Graph:
    """The sizes every phase is built from, for one reserve of the graph."""
    model: ModelSpec
    rule: ComputeRule
    u: int  # tokens in the micro-batch: min(n_ubatch, n_ctx)
    n_ctx: int
    n_kv: int  # cells an attention layer reads at worst
    swa_cells: int
    flash_attn: bool
    mask: int  # one attention mask's bytes: f16 with flash attention
    n_masks: int  # iSWA models (full and sliding layers) carry a second one
    widths: dict[str, int]
    outputs: int  # rows the output layer computes: u, or fewer where the program reserves fewer outputs

    def bytes(self, per_token_values: float) -> int:
        """f32 bytes of that many values per token of the micro-batch."""
        return int(per_token_values * self.u * F32)

    @property
    def has_attention(self) -> bool:
        return any(lay.attn in ("full", "swa") for lay in self.model.layers)


def _graph(model: ModelSpec, n_ctx: int, n_ubatch: int, flash_attn: bool, swa_cells: int,
           n_outputs: int | None = None) -> _Graph:
    u = min(n_ubatch, n_ctx)
    n_kv = _n_kv_attn(model, n_ctx, swa_cells)
    heads = model.n_head * model.head_dim_k
    d_inner = model.recurrent.gguf.get("ssm.inner_size", 0) if model.recurrent else 0
    # (gemma3-4b at 32K without flash attention: 671.01 MiB measured, 667.5 with both masks, 603.5 with one)
    return _Graph(model, rule_for(model.architecture), u, n_ctx, n_kv, swa_cells, flash_attn,
                  mask=n_kv * u * (2 if flash_attn else F32),
                  n_masks=2 if {"full", "swa"} <= {lay.attn for lay in model.layers} else 1,
                  widths={"embd": model.n_embd, "q_dim": max(model.n_embd, heads), "heads": heads,
                          "n_ff": model.n_ff, "d_inner": d_inner},
                  outputs=u if n_outputs is None else max(1, min(u, n_outputs)))


def phases(model: ModelSpec, n_ctx: int, n_ubatch: int, flash_attn: bool, swa_cells: int,
           n_seq: int = 1, whole_graph: bool = True, n_outputs: int | None = None) -> dict[str, int]:
    """Bytes live at each phase's peak; whole_graph=False: one split's own (a GPU's share of the layers
    under pipeline parallelism), without the graph inputs that a whole graph keeps under its FFN phase.
    The family's constants are its compute_rules entry; what depends on the model's shape is here."""
    g = _graph(model, n_ctx, n_ubatch, flash_attn, swa_cells, n_outputs)
    ssm = ssm_bytes(model, g.u, n_seq)
    attn = _attention(g) if g.has_attention or not ssm else 0  # no attention layer: no scores, no mask
    ffn = _ffn(g, whole_graph, has_ssm=bool(ssm))
    if ssm and attn:
        ssm, ffn = _hybrid(g, ssm, ffn)
    if g.rule.masks_under_ffn:
        ffn += g.n_masks * g.mask + g.bytes(g.widths["embd"])
    p = {"logits": _logits(g), "attention": attn, "ffn": ffn}
    if ssm:
        p["ssm"] = ssm
    if model.per_layer_inputs:
        _per_layer_inputs(g, p)
    return p


def _logits(g: _Graph) -> int:
    """The logits (n_vocab per output row) beside the hidden states still alive: 2, 3 for a Mamba model, or the
    family's own count. The graph keeps only the output rows from the last layer on (inp_out_ids), so a program
    that reserves fewer outputs than the ubatch's tokens (llama-server: one per slot, n_outputs_max) has a
    logits phase that many rows tall (llama-context.cpp sched_reserve: n_outputs = min(n_tokens, n_outputs_max))."""
    r, model = g.rule, g.model
    mamba = bool(model.recurrent and model.recurrent.gguf.get("ssm.inner_size"))
    n_hidden = r.hidden_beside_logits if r.hidden_beside_logits is not None else 3 if mamba else 2
    if not g.flash_attn and r.hidden_beside_logits_no_fa is not None:
        n_hidden = r.hidden_beside_logits_no_fa
    return int((model.n_vocab + n_hidden * g.widths["embd"]) * g.outputs * F32)


def _attention(g: _Graph) -> int:
    """Flash attention: the mask and its temporaries; else the scores n_kv x u x n_head, the masks and the
    temporaries. Absorbed MLA has its own temporaries, whatever the family."""
    model, e, h, hd = g.model, g.widths["embd"], g.model.n_head, g.model.head_dim_k
    if g.flash_attn and model.mla:
        # absorbed MLA: 2.5 rows of n_head (kv_lora + rope) and 3.5 hidden states, not 5 q_dim (a DeepSeek-V3-size
        # twin: 412.01 MiB measured at 4K, 724 predicted by the generic rule, 413 by this one)
        return g.mask + g.bytes(2.5 * h * hd + 3.5 * e)
    if g.flash_attn:
        return g.mask + g.bytes(per_token(g.rule.flash_temps, g.widths))
    scores = g.n_kv * h * g.u * F32
    if model.mla:
        # absorbed MLA: 2.25 rows of n_head (kv_lora + rope) and 3.5 hidden states (Kimi-Linear twins: small and at
        # 48B size, within 0.3%); 2.45 rows with a low-rank q (DeepSeek-V3: 5-layer twins from n_kv 256 to 16K at
        # ubatch 128 and 512 within 2.5%, bench/data/cpu-compute-grid.jsonl)
        temps = (2.45 if model.mla.q_lora_rank else 2.25) * h * hd + 3.5 * e
        if g.n_kv <= hd + model.mla.nope_dim + model.mla.rope_dim:
            # at short context the scores fit a block freed before them, n_head x 768 floats per token at
            # DeepSeek-V3's dims (our reading: q absorbed, 576, and its 192-wide projection); a 5-layer
            # DeepSeek-V3 twin measures 98.1-98.4 MiB at ubatch 128 from n_kv 256 to 768, then 166.5 at 1024
            # (64 MiB of scores on top; bench/data/cpu-compute-grid.jsonl)
            scores = 0
    else:
        temps = per_token(g.rule.attention_temps, g.widths)
    return scores + g.n_masks * g.mask + g.bytes(temps)


def _ffn(g: _Graph, whole_graph: bool, has_ssm: bool) -> int:
    """The FFN phase: routed experts, a dense FFN, or none (Mamba). The whole graph on one device, without
    recurrent layers, also keeps the graph's inputs there, unless the family's rule was fitted with them."""
    model = g.model
    if not model.n_ff and not model.moe:
        return 0  # no FFN (Mamba)
    ffn = _moe_ffn(g, has_ssm) if model.moe else _dense_ffn(g, whole_graph)
    if whole_graph and not has_ssm and not g.rule.ffn_holds_inputs:
        # the rules are what the FFN itself keeps live (a GPU split of those layers holds them); the whole graph on
        # one device also keeps its inputs there: the masks and 2 hidden states (the embeddings' rows and their
        # scaled copy). Small-vocabulary twins, where this phase is the peak: Llama-3.2-1B 68.01 MiB measured, 56
        # without them; Qwen3-0.6B 30.01 (22); Gemma-3-1B 57.27 (45); Qwen3-30B-A3B 92.01; gpt-oss-20b 100.4 (the
        # FFN cases of bench/data/rpc-multi-device.jsonl)
        ffn += sum(_masks(model, g.n_ctx, g.u, g.flash_attn, g.swa_cells).values()) + 2 * g.widths["embd"] * g.u * F32
    return ffn


def _dense_ffn(g: _Graph, whole_graph: bool) -> int:
    r = g.rule
    coeffs = (r.dense_ffn_whole_fa if g.flash_attn else r.dense_ffn_whole) if whole_graph else None
    return g.bytes(per_token(coeffs or r.dense_ffn, g.widths))


def _moe_ffn(g: _Graph, has_ssm: bool) -> int:
    moe, e, u = g.model.moe, g.widths["embd"], g.u
    if has_ssm:
        # a hybrid's experts: the wider of the routed and the shared expert (which runs after the routed ones are
        # summed and freed; Granite-4.0-H twins with and without one measure alike, bench/mamba_grid.py); the
        # routed outputs wait for the shared expert in some families
        ff = max(moe.n_expert_used * moe.expert_ff, moe.shared_ff)
        ffn = (3 * ff + moe.n_expert + (2 + _waiting(g)) * e) * u * F32
    else:
        # routed experts: gate, up and their product (3 F, F = n_used x expert_ff) beside 3 hidden states, or
        # the down projection's n_used outputs and their weighted copy beside the product and one hidden state,
        # whichever is wider (Qwen3-MoE and gpt-oss layouts, 7 shapes on llama.cpp RPC devices, where the
        # phase is the peak: within 5% but one +9.5%; bench/data/rpc-multi-device.jsonl, docs/model.md);
        # a shared expert runs after their sum, like a dense FFN
        f = moe.n_expert_used * moe.expert_ff
        routed = max(3 * f + 3 * e, 2 * moe.n_expert_used * e + f + e)
        ffn = (max(routed, 3 * moe.shared_ff + 2 * e) + moe.n_expert) * u * F32
    if moe.n_dense_lead and g.model.n_ff:
        # leading dense layers (DeepSeek, GLM-4.5, Kimi-Linear): their SwiGLU phase when it is the wider
        # (Kimi-Linear twins: the dense layer 0 set the peak)
        ffn = max(ffn, (3 * g.model.n_ff + 2 * e) * u * F32)
    return ffn


def _waiting(g: _Graph) -> int:
    """Routed experts' outputs (one hidden state each) that wait for the shared expert (Qwen3-Next/3.5)."""
    return g.model.moe.n_expert_used if g.model.moe and g.rule.moe_outputs_wait else 0


def _hybrid(g: _Graph, ssm: int, ffn: int) -> tuple[int, int]:
    """A hybrid (Granite-4.0-H, Nemotron-H, Jamba, LFM2, Falcon-H1): the mask an attention layer reads is
    allocated up front and lives to the last attention layer, under every recurrent and FFN phase before it,
    with what the family keeps beside it (compute_rules). Fitted on twins (bench/mamba_grid.py); ggml-alloc's
    reuse of freed blocks makes these approximate."""
    model, r, e = g.model, g.rule, g.widths["embd"]
    last = max(i for i, lay in enumerate(model.layers) if lay.attn in ("full", "swa"))
    if any(lay.attn == "recurrent" for lay in model.layers[:last]):
        ssm += g.mask + g.bytes(per_token(r.hybrid_ssm_extra, g.widths))
    if any((lay.n_ff if lay.n_ff is not None else model.n_ff) or lay.moe for lay in model.layers[:last]):
        extra = r.hybrid_moe_ffn_extra if model.moe else r.hybrid_dense_ffn_extra
        ffn += g.mask + g.bytes(per_token(extra, g.widths))
    if model.recurrent.in_attention_layers:
        # Falcon-H1: each layer's attention runs first and its output waits beside the Mamba-2 mixer, under the
        # mask; its FFN phase keeps 2 more hidden states (fitted on Falcon-H1 twins, within 4% with flash
        # attention, bench/mamba_grid.py)
        ssm += g.mask + e * g.u * F32
        ffn += 2 * e * g.u * F32
    return ssm, ffn


def _per_layer_inputs(g: _Graph, p: dict[str, int]) -> None:
    """Gemma 3n's and Gemma 4 E-models' per-layer inputs (n_layer x 256 per token): 4 copies while they are
    built (the embedding rows, their projection, sum and scale) beside the masks, 2 through the layers (fitted
    on twins of both: 12-30 layers, n_embd 256/512, n_ctx 1K-16K)."""
    per_layer, e, u = g.model.per_layer_inputs, g.widths["embd"], g.u
    p["per-layer inputs"] = (4 * per_layer + 2 * e) * u * F32 + g.n_masks * g.mask
    if not g.flash_attn:
        p["attention"] += 2 * per_layer * u * F32


def pipeline_buffers(model: ModelSpec, n_ctx: int, n_ubatch: int, flash_attn: bool, swa_cells: int,
                     holds_output: list[bool], masks_used: list[set[str]], copies: int,
                     n_seq: int = 1, ends_recurrent: list[bool] | None = None,
                     n_outputs: int | None = None) -> tuple[list[int], int]:
    """(each GPU's compute bytes, host compute bytes) with pipeline parallelism: every layer on
    one of several GPUs (llama-context.cpp turns it on then), the graph runs as one split per
    device and ggml_backend_sched keeps `copies` (GGML_SCHED_MAX_COPIES, 4) copies of each
    split's inputs so that consecutive ubatches overlap. A GPU's buffer is then the peak of its
    own layers' phases (the logits only where the output layer is) plus the inputs' copies: the
    masks its layers read (masks_used: "full" and/or "swa", the kinds of attention layer it holds)
    and the hidden state that crosses from the previous device. Measured with llama.cpp RPC
    devices standing in for GPUs (bench/multi_device.py, bench/data/rpc-multi-device.jsonl):
    the first GPU of a Llama-3.2-1B split holds 92.04 MiB at 4K context, ubatch 512 and flash
    attention (the single-GPU rule, multiplied by the copies, said 1018); the last 286.55.
    """
    p = phases(model, n_ctx, n_ubatch, flash_attn, swa_cells, n_seq, whole_graph=False, n_outputs=n_outputs)
    u = min(n_ubatch, n_ctx)
    hidden = model.n_embd * u * F32
    masks = _masks(model, n_ctx, u, flash_attn, swa_cells)
    if p.get("attention"):
        # the phase's masks are among the copies (with flash attention the phase counts one, the widest)
        p["attention"] -= max(masks.values()) if flash_attn else len(masks) * max(masks.values())
    if flash_attn and (model.mla or rule_for(model.architecture).flash_holds_inputs) and p.get("attention"):
        # their flash-attention rules were fitted where that phase set a whole graph's peak, its 2 hidden inputs
        # included (a DeepSeek-V3 split: 466.02 MiB measured on the first GPU, 495 with them, 467 without)
        p["attention"] -= 2 * hidden
    if "ssm" in p and masks:
        # a hybrid's recurrent and FFN phases were fitted on whole graphs, the inputs (mask, 2 hidden states)
        # included: Granite-4.0-H, Qwen3.5 and LFM2 split over two RPC devices within 0.1% without them
        for k in ("ssm", "ffn"):
            if p.get(k):
                p[k] -= sum(masks.values()) + 2 * hidden
    logits = p.pop("logits") - 2 * hidden
    inputs = copies * (sum(masks.values()) + hidden)
    rest = max(p.values())
    devs = [max(rest, logits if out else 0) + hidden + copies * (sum(masks.get(k, 0) for k in used) + hidden)
            for out, used in zip(holds_output, masks_used, strict=True)]
    if rule_for(model.architecture).splits_mamba_across_gpus and ends_recurrent:
        # Nemotron-H: where a GPU's last layer is a Mamba layer and the next GPU's first an MLP one, llama.cpp's
        # scheduler runs the Mamba layer's weightless middle (convolution, scan) on the next GPU, between its
        # projections here (5 splits for 2 GPUs, not 3; none when an attention layer follows):
        # the next GPU keeps copies of the input projection (2 d_inner + 2 n_group d_state + n_head per token),
        # this one of the scan's output (d_inner). The 8B split after layer 26: 464.88 and 232.63 MiB measured,
        # 320 and 162 without them (Granite-4.0-H's Mamba-2 layers, an FFN after each, split without them)
        g = model.recurrent.gguf
        d_inner = g.get("ssm.inner_size", 0)
        proj = 2 * d_inner + 2 * g.get("ssm.group_count", 1) * g.get("ssm.state_size", 0) \
            + g.get("ssm.time_step_rank", 0)
        for i, ends in enumerate(ends_recurrent[:-1]):
            if ends:
                devs[i] += copies * d_inner * u * F32
                devs[i + 1] += copies * proj * u * F32
    # the host builds the inputs (embeddings, masks) and keeps their copies: 1 hidden state beside them with
    # flash attention, 3 without (exact on Llama-3.2-1B and Qwen3-30B-A3B splits; Gemma 3, gpt-oss and
    # Qwen3-0.6B keep 0.6-6 more without it)
    return devs, inputs + (1 if flash_attn else 3) * hidden


def _masks(model: ModelSpec, n_ctx: int, u: int, flash_attn: bool, swa_cells: int) -> dict[str, int]:
    """Bytes of each attention mask the graph builds, by the layers that read it: the full layers' (n_ctx
    cells wide) and the sliding-window layers' (their cache's cells; all of n_ctx with --swa-full)."""
    b = u * (2 if flash_attn else F32)
    kinds = {lay.attn for lay in model.layers} & {"full", "swa"}
    return {k: (n_ctx if k == "full" else swa_cells) * b for k in kinds}


def compute_buffers(model: ModelSpec, n_ctx: int, n_ubatch: int, flash_attn: bool, swa_cells: int,
                    gpu_holds_layers: bool, staged: dict[str, int] | None = None, n_seq: int = 1,
                    n_outputs: int | None = None) -> tuple[int, int]:
    """(device compute bytes, host compute bytes) for a device holding the repeating layers;
    for CPU-only runs the first is the CPU buffer and the second 0.

    staged: bytes of host weights copied into the GPU's buffer during a phase (op offload):
    the output matrix in the logits phase, one host layer's attention or FFN weights.
    """
    p = phases(model, n_ctx, n_ubatch, flash_attn, swa_cells, n_seq, n_outputs=n_outputs)
    for k, v in (staged or {}).items():
        p[k] += v
    peak = max(p.values())
    u = min(n_ubatch, n_ctx)
    if not gpu_holds_layers:
        return peak, 0
    hidden = model.n_embd * u * F32
    # the host builds the inputs: every mask (Gemma 3 and gpt-oss: full and sliding; a Gemma-3-1B-layout twin on
    # one RPC device: 12.52 MiB measured, 12.5 with both, 8.5 with one) and 2 hidden states
    masks = sum(_masks(model, n_ctx, u, flash_attn, swa_cells).values())
    host = masks + 2 * hidden + (0 if flash_attn else hidden // 2)
    return peak - hidden, host
