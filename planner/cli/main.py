"""`plan`: the command line. Thin: parse, call the API, print a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from planner.errors import PlannerError

SUBCOMMANDS = ("profile", "targets", "models", "show")


def _json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_profile(a: argparse.Namespace) -> int:
    from planner.cli.format import profile_text
    from planner.profile.targets import resolve_target
    p = resolve_target(a.target, vram_gib=a.vram, ram_gib=a.ram, gpus=a.gpus)
    if a.json:
        _json(p.model_dump())
    else:
        print(profile_text(p))
    return 0


def cmd_targets(a: argparse.Namespace) -> int:
    from planner.profile.targets import list_targets
    rows = list_targets()
    if a.json:
        _json([{"name": n, "title": t} for n, t in rows])
    else:
        for n, t in rows:
            print(f"  {n:24s} {t}")
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from planner.model.catalog import search, spec_for
    rows = search(" ".join(a.query) if a.query else None)
    out = []
    for e in rows:
        s = spec_for(e.id)
        out.append({"id": e.id, "repo": e.repo, "family": e.family, "aliases": e.aliases, "use": e.use,
                    "architecture": s.architecture, "n_params": s.n_params, "n_active_params": s.n_active_params,
                    "n_ctx_train": s.n_ctx_train})
    if a.json:
        _json(out)
        return 0
    if not out:
        print("no catalog model matches; try 'plan models' for all of them")
        return 0
    for r in out:
        act = f" ({r['n_active_params'] / 1e9:.1f}B active)" if r["n_active_params"] != r["n_params"] else ""
        print(f"  {r['id']:30s} {r['n_params'] / 1e9:7.2f}B{act:16s} {r['architecture']:9s} "
              f"ctx {r['n_ctx_train']:>7d}  {', '.join(r['aliases'][:2])}")
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    from planner.cli.format import model_text
    from planner.model import load_model
    m = load_model(a.model)
    if a.json:
        _json({"name": m.name, "source": m.source, "architecture": m.architecture, "n_layers": m.n_layers,
               "n_embd": m.n_embd, "n_head": m.n_head, "n_kv_heads": m.n_kv_heads, "head_dim_k": m.head_dim_k,
               "head_dim_v": m.head_dim_v, "n_ff": m.n_ff, "n_vocab": m.n_vocab, "tied_embeddings": m.tied_embeddings,
               "n_ctx_train": m.n_ctx_train, "n_params": m.n_params, "n_active_params": m.n_active_params,
               "moe": m.moe.model_dump() if m.moe else None, "mla": m.mla.model_dump() if m.mla else None,
               "layers": [lay.model_dump() for lay in m.layers], "file_type": m.file_type, "notes": m.notes,
               "tensors": [{"name": t.name, "shape": t.shape, "type": t.type} for t in m.tensors]})
    else:
        print(model_text(m, tensors=a.tensors))
    return 0


def _on_off(v: str) -> bool:
    v = v.lower()
    if v in ("on", "1", "true", "yes", "auto"):
        return True
    if v in ("off", "0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got '{v}'")


def _ot(spec: str) -> str:
    """llama.cpp's -ot 'REGEX=BUFFER'; only host placement (=CPU) is modelled."""
    pattern, _, buf = spec.rpartition("=")
    if not pattern or buf.upper() != "CPU":
        raise PlannerError(f"--override-tensor takes REGEX=CPU (e.g. 'ffn_.*_exps=CPU'); got '{spec}'")
    return pattern


def cmd_plan(a: argparse.Namespace) -> int:
    from planner.api import evaluate
    from planner.cli.format import estimate_text, gib
    ts = None
    if a.tensor_split:
        try:
            ts = [float(x) for x in a.tensor_split.split(",")]
        except ValueError:
            raise PlannerError(f"--tensor-split takes numbers like 3,1; got '{a.tensor_split}'") from None
    r = evaluate(a.model, a.target, quant=a.quant, n_gpu_layers=a.ngl, n_ctx=a.ctx, flash_attn=a.flash_attn,
                 cache_type_k=a.cache_type_k, cache_type_v=a.cache_type_v, n_ubatch=a.ubatch, n_batch=a.batch,
                 tensor_split=ts, n_cpu_moe=a.n_cpu_moe, mmap=not a.no_mmap, margin=a.margin / 100,
                 vram_gib=a.vram, ram_gib=a.ram, gpus=a.gpus, parallel=a.parallel,
                 override_tensor=[_ot(x) for x in a.override_tensor], depth=a.depth)
    e = r.estimate
    if a.json:
        out = {"model": r.model.name, "target": r.hardware.name, "quant": r.quant, "options": r.options.model_dump(),
               **e.to_json(), "nearest_fit": r.nearest_fit}
        _json(out)
    else:
        pinned = ", ".join(r.defaults_used) if r.defaults_used else "none"
        head = (f"{r.model.name}: {r.quant}, {gib(e.weights_file_bytes)} of weights on {r.hardware.name}\n"
                f"  llama.cpp options: -ngl {r.options.n_gpu_layers if r.options.n_gpu_layers >= 0 else 'all'} "
                f"-c {r.options.n_ctx} -fa {'on' if r.options.flash_attn else 'off'} "
                f"-ctk {r.options.cache_type_k} -ctv {r.options.cache_type_v} -ub {r.options.n_ubatch}"
                f"{' --no-mmap' if not r.options.mmap else ''}\n"
                f"  llama.cpp defaults used for: {pinned} (the optimizer that chooses them is not built yet)")
        print(estimate_text(e, head))
        if r.nearest_fit:
            print(f"  nearest that fits: {r.nearest_fit}")
    return 0 if e.fits else 3


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    tgt = argparse.ArgumentParser(add_help=False)
    tgt.add_argument("--target", default="auto", help="auto (this machine), a profile name (plan targets) or YAML path")
    tgt.add_argument("--vram", help="override VRAM per GPU in GiB: 24 or 24,12")
    tgt.add_argument("--ram", type=float, help="override system RAM in GiB")
    tgt.add_argument("--gpus", help="override GPUs: a count (copies of the profile's GPU) or names: rtx3090,rtx3090")

    main = argparse.ArgumentParser(prog="plan", parents=[common, tgt],
                                   description="Can I run this model on this box, and how? "
                                               "Subcommands: profile, targets, models, show.",
                                   epilog="examples: plan --model llama3.1-70b --target rtx4090 | "
                                          "plan show qwen3-30b-a3b | plan profile")
    main.add_argument("--model", "-m", required=True, help="catalog name, .gguf path, HF repo or Ollama name")
    main.add_argument("--quant", "-q", help="llama.cpp ftype (Q4_K_M...); default: the GGUF's types, else Q4_K_M")
    main.add_argument("--ngl", type=int, help="-ngl: layers on the GPU (default all)")
    main.add_argument("--ctx", type=int, help="-c: context length (default 4096)")
    main.add_argument("--flash-attn", type=_on_off, help="on|off (default on, as llama.cpp's auto)")
    main.add_argument("--cache-type-k", help="f16, q8_0, q4_0... (default f16)")
    main.add_argument("--cache-type-v", help="f16, q8_0, q4_0... (default f16)")
    main.add_argument("--ubatch", type=int, help="-ub (default 512)")
    main.add_argument("--batch", type=int, help="-b (default 2048)")
    main.add_argument("--parallel", type=int, help="-np parallel sequences (default 1)")
    main.add_argument("--tensor-split", help="-ts, e.g. 3,1")
    main.add_argument("--n-cpu-moe", type=int, help="--n-cpu-moe: experts of the first N layers on the CPU")
    main.add_argument("--no-mmap", action="store_true", help="--no-mmap")
    main.add_argument("--override-tensor", "-ot", action="append", default=[],
                      help="-ot REGEX=CPU: tensors matching REGEX stay in host memory (repeatable)")
    main.add_argument("--depth", type=int, default=0, help="decode speed at this many tokens of context")
    main.add_argument("--margin", type=float, default=5.0, help="free memory to keep per device, percent (default 5)")
    main.set_defaults(func=cmd_plan)

    sub = argparse.ArgumentParser(prog="plan")
    sp = sub.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("profile", parents=[common, tgt], help="this machine (or a target) as the planner sees it")
    p.set_defaults(func=cmd_profile)
    p = sp.add_parser("targets", parents=[common], help="bundled target profiles")
    p.set_defaults(func=cmd_targets)
    p = sp.add_parser("models", parents=[common], help="search the bundled catalog")
    p.add_argument("query", nargs="*")
    p.set_defaults(func=cmd_models)
    p = sp.add_parser("show", parents=[common], help="a model's architecture and tensors")
    p.add_argument("model")
    p.add_argument("--tensors", action="store_true", help="list every tensor")
    p.set_defaults(func=cmd_show)
    return main, sub


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    main_p, sub_p = build_parser()
    parser = sub_p if argv and argv[0] in SUBCOMMANDS else main_p
    a = parser.parse_args(argv)
    try:
        return a.func(a)
    except PlannerError as exc:
        if a.debug:
            traceback.print_exc()
        print(f"plan: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("plan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
