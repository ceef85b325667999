"""`plan`: the command line. Thin: parse, call the API, print a table or JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback

from planner.cli import args as arg
from planner.errors import Exit, PlannerError
from planner.export import KINDS
from planner.export.launch import needs
from planner.fileio import write_text
from planner.units import MiB

SUBCOMMANDS = ("profile", "targets", "models", "show", "recommend", "verify", "wizard", "imatrix", "calibration")


def _json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_profile(a: argparse.Namespace) -> int:
    from planner.api import resolve_hardware
    from planner.views import profile_text
    p = resolve_hardware(a.target, vram_gib=a.vram, ram_gib=a.ram, gpus=a.gpus, remeasure=a.remeasure)
    if a.json:
        _json(p.model_dump())
    else:
        print(profile_text(p))
    return Exit.OK


def cmd_targets(a: argparse.Namespace) -> int:
    from planner.profile.cluster import list_clusters
    from planner.profile.targets import list_targets
    rows = list_targets()
    clusters = list_clusters()
    if a.json:
        _json([{"name": n, "title": t, "kind": "box"} for n, t in rows]
              + [{"name": n, "title": t, "kind": "cluster"} for n, t in clusters])
    else:
        for n, t in rows:
            print(f"  {n:24s} {t}")
        print("  clusters (llama.cpp RPC over several machines; your own: a YAML file as docs/model.md shows):")
        for n, t in clusters:
            print(f"  {n:24s} {t}")
    return Exit.OK


def _catalog_filter(a: argparse.Namespace):
    from planner.model.catalog import Filter
    lo, hi = a.size or (None, None)
    return Filter(query=" ".join(a.query) if getattr(a, "query", None) else None, use=a.use, family=a.family,
                  license=a.license, min_b=lo, max_b=hi, released_after=a.released_after)


def _model_row(e) -> dict:
    from planner.model.catalog import not_modeled, spec_for
    why_not = not_modeled(e.id)
    s = None if why_not else spec_for(e.id)
    arch = (e.config.get("architectures") or ["?"])[0]
    return {"id": e.id, "repo": e.repo, "family": e.family, "aliases": e.aliases, "use": e.use,
            "released": e.released, "license": e.license,
            "architecture": s.architecture if s else None, "hf_architecture": arch,
            "n_params": s.n_params if s else None, "n_active_params": s.n_active_params if s else None,
            "n_ctx_train": s.n_ctx_train if s else None, "modeled": why_not is None, "not_modeled_why": why_not,
            "config_checked": e.checked.where if e.checked else None,
            "quality": e.quality.model_dump() if e.quality else None}


def _model_line(r: dict) -> str:
    mark = " " if r["config_checked"] else "?"
    if r["modeled"]:
        act = f" ({r['n_active_params'] / 1e9:.1f}B active)" if r["n_active_params"] != r["n_params"] else ""
        size = f"{r['n_params'] / 1e9:7.2f}B{act:16s} {r['architecture']:10s} ctx {r['n_ctx_train']:>7d}"
    else:
        size = f"{'':8s}{'':16s} {'not modeled: ' + r['hf_architecture']:<26.26s}"
    uses = ",".join(r["use"])
    uses = uses if len(uses) <= 30 else uses[:29] + "~"
    return f"{mark} {r['id']:30s} {size}  {r['released']}  {uses:30s} {r['aliases'][0] if r['aliases'] else ''}"


def cmd_models(a: argparse.Namespace) -> int:
    from collections import Counter
    from planner.model.catalog import select
    out = [_model_row(e) for e in select(_catalog_filter(a))]
    if a.json:
        _json(out)
        return Exit.OK
    if not out:
        print("no catalog model matches; try 'plan models' for all of them")
        return Exit.OK
    for r in out:
        print(_model_line(r))
    unchecked = sum(not r["config_checked"] for r in out)
    unmodeled = sum(not r["modeled"] for r in out)
    print(f"{len(out)} models; {len(out) - unchecked} with every config field compared with a public copy of their "
          f"config.json or GGUF header (`plan show MODEL` gives the fields used)")
    if unchecked:
        print(f"? {unchecked} of {len(out)}: config not yet compared with a public copy of the model's config.json")
    if unmodeled:
        print(f"{unmodeled} listed but not modeled yet (their architecture is not built from config.json; a GGUF of "
              f"one can still be planned with --model FILE.gguf)")
    fams = Counter(r["family"] for r in out)
    print("by family: " + ", ".join(f"{f} {n}" for f, n in fams.most_common()))
    return Exit.OK


def cmd_show(a: argparse.Namespace) -> int:
    from planner.model import load_model
    from planner.views import model_text
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
    return Exit.OK


def _request(a: argparse.Namespace):
    from planner.errors import InvalidOptionError
    from planner.estimate.quant_mix import FTYPES
    from planner.optimize import PlanRequest
    if a.quant and a.quant.upper() not in FTYPES:
        raise InvalidOptionError(f"unknown quant type '{a.quant}'; llama.cpp ftypes: {', '.join(FTYPES)}")
    ts = a.tensor_split
    from planner.estimate.options import RuntimeOptions
    # validate the pinned cache options up front with the estimator's own rules (one clear line)
    RuntimeOptions(cache_type_k=a.cache_type_k or "f16", cache_type_v=a.cache_type_v or "f16",
                   flash_attn=a.flash_attn is not False, threads=a.threads).check()
    return PlanRequest(goal=a.goal, quant=a.quant.upper() if a.quant else None, n_gpu_layers=a.ngl, n_ctx=a.ctx,
                       min_ctx=a.min_ctx, flash_attn=a.flash_attn, cache_type_k=a.cache_type_k,
                       cache_type_v=a.cache_type_v, n_ubatch=a.ubatch, n_batch=a.batch, n_seq=a.parallel,
                       threads=a.threads,
                       tensor_split=ts, n_cpu_moe=a.n_cpu_moe, override_tensor=a.override_tensor,
                       mmap=not a.no_mmap, margin=a.margin / 100, min_tps=a.min_tps, imatrix=a.imatrix,
                       depth=a.depth, program=_program(a))


def _program(a: argparse.Namespace) -> str:
    """The program a plan is estimated for: --program, else the one the export is for, else llama-server."""
    from planner.estimate.programs import DEFAULT_PROGRAM, PROGRAMS
    if a.program and a.emit in PROGRAMS and a.emit != a.program:
        raise PlannerError(f"--program {a.program} and --emit {a.emit} name two programs: the plan is estimated for "
                           "the one that runs it; leave --program out")
    return a.program or (a.emit if a.emit in PROGRAMS else DEFAULT_PROGRAM)


def _type_mix(opt, model) -> str:
    from collections import Counter
    c: Counter = Counter()
    for t in model.tensors:
        c[opt.types.get(t.name, t.type or "F32")] += t.n_elements
    total = sum(c.values())
    return ", ".join(f"{k} {v / total:.0%}" for k, v in c.most_common() if v / total >= 0.005)


MEASURE_AUTO_BYTES = 4 << 30  # measure errors unasked for local GGUFs up to this size (seconds, cached)


def _tensor_errors(a: argparse.Namespace, spec) -> tuple[dict | None, str | None]:
    """Per-tensor errors measured on the weights of a local GGUF (--measure), else None (priors), and a
    note when the file holds the data of only some tensors (a header-only or partial download)."""
    from planner.model import local_gguf
    path = local_gguf(spec.source)
    if a.measure == "off" or path is None or a.quant:
        return None, None
    if a.measure == "auto" and os.path.getsize(path) > MEASURE_AUTO_BYTES:
        return None, None
    from planner.verify.tensor_error import data_coverage, measure_errors
    have, listed = data_coverage(path)
    partial = None
    if have < listed:
        partial = (f"{path} holds the data of {have} of its {listed} tensors (a header-only or partial download): "
                   + ("every tensor uses the priors" if not have else "the other tensors use the priors"))
    if not have:
        return None, partial
    prog = None if a.json or a.emit else _Progress()
    errors = measure_errors(path, spec, imatrix=a.imatrix, importance=a.imatrix_file,
                            progress=(lambda i, n, name: prog("measure", i, n, name)) if prog else None)
    return errors, partial


def cmd_plan(a: argparse.Namespace) -> int:
    """plan --model M: load, measure what can be measured, plan (published files and a mix of one's own), then
    verify, emit, or print the plan."""
    from planner.api import plan_model, plan_runnable
    from planner.model import load_model, local_gguf
    _check_output(a)
    spec = load_model(a.model)
    if a.imatrix_file:
        if not os.path.isfile(a.imatrix_file):
            raise PlannerError(f"--imatrix-file {a.imatrix_file} does not exist; make one with "
                               "plan imatrix MODEL.gguf --text TEXT -o FILE (or llama-imatrix)")
        a.imatrix = True  # the quantizer will have it: IQ2 types become candidates
    errors, partial = _tensor_errors(a, spec)
    req = _request(a).model_copy(update={"tensor_errors": errors})
    from planner.profile.cluster import is_cluster
    if is_cluster(a.target):
        return _plan_cluster(a, spec, req, _basis(req, a, partial))
    if a.emit == "rpc-server":
        raise PlannerError("--emit rpc-server prints the workers' lines of a cluster plan: give --target a cluster "
                           "(plan targets lists the examples; the file format is in docs/model.md)")
    spec, hw, res = plan_model(spec, a.target, req, vram_gib=a.vram, ram_gib=a.ram, gpus=a.gpus,
                               calibrate=not a.no_calibration)
    run = plan_runnable(spec, hw, req, res) if not (a.own_mix or a.verify or a.emit == "llama-quantize") else None
    basis = _basis(req, a, partial)
    if res.best is None and not (run and run.published):
        return _does_not_fit(a, spec, hw, res, run)
    if a.verify:
        a.source = a.source_path or local_gguf(spec.source)
        a.twin = a.source is None
        a.output = a.model_path
        return _run_verify(a, spec, res.best.types, res.best.options, res.best.estimate.margin, hw)
    if a.emit:
        return _emit(a, spec, hw, res.best, basis, run)
    if a.json:
        return _plan_json(spec, hw, res, basis, run)
    return _plan_text(a, spec, hw, res, basis, run)


def _plan_cluster(a: argparse.Namespace, spec, req, basis: str) -> int:
    """plan --target CLUSTER: the nodes, split and types over llama.cpp RPC, with each node's line."""
    from planner.export import cluster as cx
    from planner.export import planned_file
    from planner.optimize.cluster import plan_cluster
    from planner.profile.cluster import load_cluster
    from planner.views import estimate_text
    if a.vram or a.ram or a.gpus or a.verify:
        raise PlannerError("--vram, --ram, --gpus and --verify describe one machine: with a cluster, change its "
                           "nodes' profiles in the cluster file")
    c = load_cluster(a.target)
    cp = plan_cluster(spec, c, req)
    best = cp.result.best
    threads = a.threads or c.main.profile.cpu.cores
    path = a.model_path or (planned_file(spec, best)[0] if best else "")
    if best is None:
        if a.json:
            _json(cx.cluster_dict(cp, spec, path, threads, basis))
        else:
            print(f"{spec.name} does not fit the cluster {c.name} with these constraints: {cp.result.nearest}")
            for t in cp.tried:
                print(f"  tried {t}")
        return Exit.DOES_NOT_FIT
    if a.emit in ("rpc-server", "llama-server", "llama-cli"):
        ls = cx.lines(cp, spec, path, threads, binary="llama-server" if a.emit == "rpc-server" else a.emit,
                      legacy=a.legacy_flags)
        ls = ls[:-1] if a.emit == "rpc-server" else ls[-1:]
        text = "".join(f"# on {node}\n{line}\n" for node, line in ls)
        if a.emit != "rpc-server":
            text = f"# {needs(a.legacy_flags)}; built with -DGGML_RPC=ON\n" + text
        return _write_or_print(a, text)
    if a.emit in ("json", "yaml") or a.json:
        d = cx.cluster_dict(cp, spec, path, threads, basis)
        if a.emit == "yaml":
            import yaml
            return _write_or_print(a, yaml.safe_dump(d, sort_keys=False))
        if a.emit:
            return _write_or_print(a, json.dumps(d, indent=1) + "\n")
        _json(d)
        return Exit.OK
    if a.emit:
        raise PlannerError(f"--emit {a.emit} is for one machine; a cluster plan emits rpc-server, llama-server, "
                           "llama-cli, json or yaml")
    print(estimate_text(best.estimate, f"{spec.name} on the cluster {c.name}, goal {req.goal}: {best.why}"))
    print(f"  the network adds {cp.network_ms_per_token:.2f} ms per token; weights {_type_mix(best, spec)}")
    print("\n  run, workers first:")
    for node, line in cx.lines(cp, spec, path, threads, legacy=a.legacy_flags):
        print(f"    on {node}:\n      {line}")
    for note in cx.copy_notes(cp):
        print(f"  {note}")
    print("  node sets tried:")
    for t in cp.tried:
        print(f"    {t}")
    return Exit.OK


def _write_or_print(a: argparse.Namespace, text: str) -> int:
    if a.output:
        write_text(a.output, text, a.force)
        print(f"wrote {a.output} ({a.emit})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return Exit.OK


def _does_not_fit(a: argparse.Namespace, spec, hw, res, run) -> int:
    near = (run.nearest if run else []) or [res.nearest]
    if a.json:
        _json({"model": spec.name, "target": hw.name, "fits": False, "nearest": res.nearest,
               "nearest_runnable": run.nearest if run else []})
    else:
        print(f"{spec.name} does not fit {hw.name} with these constraints: {res.nearest}")
        if run and run.nearest:
            print("  the nearest things that do:")
            for line in run.nearest:
                print(f"    {line}")
    return Exit.DOES_NOT_FIT


def _check_output(a: argparse.Namespace) -> None:
    """-o without --emit, or onto a file that --force does not allow replacing: refused before any planning."""
    if a.output and not a.emit:
        raise PlannerError("-o writes the file --emit makes: add --emit yaml (or llama-server, ollama, ...), or "
                           + ("give the quantized file's path with --model-path" if a.verify else "leave -o out"))
    if a.output:
        from planner.fileio import destination
        destination(a.output, a.force)


def _basis(req, a: argparse.Namespace, partial: str | None) -> str:
    """What the plan's predicted KLD stands on: the priors, or errors measured on the weights."""
    basis = "priors: planner/data/quality.yaml"
    if req.tensor_errors:
        act = any(k[0] == "@" for e in req.tensor_errors.values() for k in e)
        basis = "measured per-tensor errors (ggml quantizer on the weights" + \
            (", weighted by the importance matrix" if a.imatrix_file else "") + \
            (", with the activations' rounding)" if act else ")")
    return basis + (f"; {partial}" if partial else "")


def _emit(a: argparse.Namespace, spec, hw, best, basis: str, run=None) -> int:
    from planner.export import planned_file, render
    pub = run.published[0] if run and run.published else None
    if pub and not a.model_path:
        best, model_path = pub.option, pub.file.ref
    else:
        if best is None:
            raise PlannerError(f"no mix of your own fits {hw.name}: leave --own-mix out for a published file")
        model_path = a.model_path or planned_file(spec, best)[0]
    text = render(a.emit, best, spec, model_path, threads=a.threads or hw.cpu.cores, src=a.source_path,
                  basis=basis, imatrix=a.imatrix_file, legacy=a.legacy_flags)
    if a.emit in ("llama-server", "llama-cli"):
        text = f"# {needs(a.legacy_flags)}\n" + text
    return _write_or_print(a, text)


def _plan_json(spec, hw, res, basis: str, run=None) -> int:
    from planner.export import plan_dict
    d = plan_dict(res.best, spec, basis) if res.best else {"model": spec.name, "fits": True}
    d.update(target=hw.name, goal=res.goal, considered=res.considered,
             alternatives=[{"label": o.label, "why": o.why, "quality": {"kld": o.predicted_kld},
                            "bits_per_weight": o.bits_per_weight, "n_ctx": o.options.n_ctx,
                            "throughput": o.estimate.throughput.model_dump(), "fits": o.estimate.fits}
                           for o in res.alternatives])
    if run is not None:
        d["published"] = [_published_json(p, spec, hw) for p in run.published]
        d["upgrade"] = run.upgrade.model_dump() if run.upgrade else None
        d["own_mix_steps"] = _steps(spec, hw, res.best, run) if res.best else []
        d["nearest_runnable"] = run.nearest  # a plan under a token a second: smaller models that run faster
    _json(d)
    return Exit.OK


def _published_json(p, spec, hw) -> dict:
    from planner.export import render
    from planner.export.launch import llama_server
    o = p.option
    return {"file": p.file.model_dump(), "ref": p.file.ref, "why": o.why, "label": o.label,
            "quality": {"kld": o.predicted_kld, "basis": "priors with the publisher's recipe"},
            "bits_per_weight": o.bits_per_weight, "options": o.options.model_dump(),
            "memory": o.estimate.to_json()["devices"], "throughput": o.estimate.throughput.model_dump(),
            "run": {"llama-server": llama_server(o, spec, p.file.ref, hw.cpu.cores),
                    "ollama": _ollama_run(p.file.ref), "modelfile": render("ollama", o, spec, p.file.ref,
                                                                           threads=hw.cpu.cores)}}


def _ollama_run(ref: str) -> str:
    return f"ollama run {ref}"


def _steps(spec, hw, best, run) -> list[str]:
    from planner.api import catalog_entry
    from planner.export.recipe import steps
    entry = catalog_entry(spec)
    repo = entry.repo if entry else None
    cap = sum(int(d.capacity_bytes) for d in best.estimate.devices)
    pub_repo = next((p.file.repo for p in run.published if not p.file.tag), None) if run else None
    return steps(spec, repo, best, cap, hw.cpu.cores, pub_repo)


def _plan_text(a: argparse.Namespace, spec, hw, res, basis: str, run=None) -> int:
    from planner.export import planned_file, render
    from planner.model import local_gguf
    from planner.units import gib
    from planner.views import estimate_text
    best = res.best
    threads = a.threads or hw.cpu.cores
    legacy = a.legacy_flags
    if run and run.published:
        p = run.published[0]
        o = p.option
        head = (f"{spec.name} on {hw.name}, goal {res.goal}: the published file {p.file.label}"
                f"{' (imatrix)' if p.file.imatrix else ''}\n  {o.why}\n"
                f"  weights {gib(o.estimate.weights_file_bytes)}: {_type_mix(o, spec)}\n"
                f"  run:  {render('llama-server', o, spec, p.file.ref, threads=threads, legacy=legacy).strip()}\n"
                f"        (llama-server -hf downloads the file; needs {needs(legacy)})\n"
                f"  or:   {_ollama_run(p.file.ref)}   (Ollama then sets the context and layers itself; "
                f"--emit ollama -o Modelfile plans them for Ollama, then ollama create NAME -f Modelfile)")
        print(estimate_text(o.estimate, head))
        if len(run.published) > 1:
            print("\n  other published files:")
            for q in run.published[1:]:
                print(f"    {q.file.label:48s} {q.option.why}")
        _print_own_mix(spec, hw, res, run, threads)
        _print_faster(run)
        print(f"\n  published files' sizes and per-tensor types: llama.cpp's ftype rules with the publisher's recipe "
              f"(offline); `plan --model {p.file.ref}` reads the file's own header instead, which is exact")
        print(f"  predicted KLD uses {basis} (published files: with the publisher's imatrix); "
              "files: --emit llama-server|llama-cli|ollama|llama-cpp-python|yaml|json [-o FILE]")
        return Exit.OK
    model_path, as_is = planned_file(spec, best)
    model_path = a.model_path or model_path
    head = (f"{spec.name} on {hw.name}, goal {res.goal}: {best.why}\n"
            f"  weights {gib(best.estimate.weights_file_bytes)}: {_type_mix(best, spec)}\n"
            + ("  the file runs as it is: every tensor keeps its type, nothing to quantize\n" if as_is else "")
            + f"  run:  {render('llama-server', best, spec, model_path, threads=threads, legacy=legacy).strip()}\n"
            + f"        (needs {needs(legacy)})")
    print(estimate_text(best.estimate, head))
    if res.alternatives:
        print("\n  alternatives:")
        for o in res.alternatives:
            print(f"    {o.label:15s} {o.why}")
    _print_faster(run)
    if not as_is and not local_gguf(spec.source):
        known = "none of its published files fits" if run and run.known_files else \
            "no published file of this model is known to the catalog"
        print(f"\n  {known}; to make this one:")
        for i, line in enumerate(_steps(spec, hw, best, run), 1):
            print(f"    {i}. {line}")
    print(f"\n  predicted KLD uses {basis}; files: --emit "
          "llama-quantize|llama-server|llama-cli|ollama|llama-cpp-python|yaml|json [-o FILE]")
    return Exit.OK


def _print_faster(run) -> None:
    """A plan that runs below a token a second: the smaller models that run faster, as lines to run."""
    if run and run.nearest:
        print("\n  this runs, but under a token a second; smaller models that run faster:")
        for line in run.nearest:
            print(f"    {line}")


def _print_own_mix(spec, hw, res, run, threads: int) -> None:
    best, up = res.best, run.upgrade
    if best is None or up is None:
        return
    print(f"\n  your own mix ({best.label}): {best.why}")
    if not up.worth_it:
        print(f"    {up.why}")
        return
    print(f"    worth making: {up.why}. The steps (--own-mix prints its plan and exports):")
    for i, line in enumerate(_steps(spec, hw, best, run), 1):
        print(f"    {i}. {line}")


class _Progress:
    """One line per step on a terminal (a bar redrawn in place), plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, step: str, done: int, total: int, detail: str) -> None:
        if self.tty:
            w = 30
            fill = int(w * done / max(total, 1))
            sys.stderr.write(f"\r  {step:9s} [{'#' * fill}{'.' * (w - fill)}] {done}/{total} {detail[:36]:36s}")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif step != self.last or done >= total:
            print(f"  {step}: {done}/{total} {detail}", file=sys.stderr)
        self.last = step


def _replanner(spec, types, opts, margin):
    """After a failed load: plan again on this machine with what verify runs measured here."""
    def replan(hw) -> str:
        from planner.api import plan
        from planner.optimize import PlanRequest
        from planner.verify.calibration import calibrated
        res = plan(spec, calibrated(hw), PlanRequest(goal="balanced", margin=max(margin, 0.10)))
        if res.best is None:
            return f"nothing fits this machine: {res.nearest}"
        return f"{res.best.why} (plan --model {spec.name} --target auto --emit yaml for the file)"
    return replan


def _run_verify(a, spec, types, opts, margin, hw) -> int:
    from planner.api import verify
    from planner.verify.run import report_text
    rep = verify(spec, types, opts, hw, source=a.source, twin=a.twin, out=a.output, margin=margin,
                 imatrix=a.imatrix_file, pp=a.pp, tg=a.tg, reps=a.reps, depth=a.depth, quality=not a.no_quality,
                 keep=a.keep, record=not a.no_record, step=None if a.json else _Progress(),
                 replan=_replanner(spec, types, opts, margin), force=a.force)
    if a.json:
        _json(rep.model_dump())
    else:
        print(report_text(rep))
    return Exit.OK if rep.ok else Exit.VERIFY_FAILED


def cmd_verify(a: argparse.Namespace) -> int:
    from planner.model import load_gguf, load_model, local_gguf
    from planner.profile.targets import resolve_target
    from planner.verify.run import read_plan
    plan = read_plan(a.plan)
    if a.twin:
        src = local_gguf(plan.source)
        spec = load_gguf(src) if src and os.path.exists(src) else load_model(plan.model)
    elif a.source:
        spec = load_gguf(a.source)
    else:
        raise PlannerError("plan verify needs --source MODEL.gguf (an F16/BF16/F32 GGUF of the planned model) "
                           "or --twin (memory and speed only, no download)")
    missing = [n for n in plan.types if n not in {t.name for t in spec.tensors}]
    if missing:
        raise PlannerError(f"the plan is for another model: {len(missing)} planned tensors are not in "
                           f"{a.source or spec.name} (first: {missing[0]})")
    hw = resolve_target("auto")
    return _run_verify(a, spec, plan.types, plan.options, plan.margin, hw)


def cmd_imatrix(a: argparse.Namespace) -> int:
    from planner.verify.imatrix import make_imatrix
    if not os.path.isfile(a.model):
        from planner.fileio import kind_of
        what = f"is {kind_of(a.model)}" if os.path.exists(a.model) else "does not exist"
        raise PlannerError(f"plan imatrix needs a local GGUF file; {a.model} {what}")
    from planner.fileio import destination
    destination(a.output, a.force)  # refused now, not after minutes of collecting
    r = make_imatrix(a.model, a.text, a.output, n_ctx=a.ctx, n_chunks=a.chunks, ngl=a.ngl, force=a.force)
    if a.json:
        _json({k: v for k, v in r.items() if k not in ("cfg", "bufs_mib", "flash_attn")} | {"output": a.output})
    else:
        print(f"wrote {a.output}: {r['n_entries']} matrices over {r['n_chunks']} chunks of {a.ctx} tokens; use it "
              f"with plan --model {a.model} --imatrix-file {a.output} (and llama-quantize --imatrix)")
    return Exit.OK


def cmd_calibration(a: argparse.Namespace) -> int:
    """What verify runs taught this machine, as plans apply it; --reset forgets it."""
    import time

    from planner.profile.targets import resolve_target
    from planner.verify import calibration as cal
    hw = resolve_target("auto", measure_bandwidth=False)
    if a.reset:
        n = cal.reset(hw)
        print(f"forgot {n} verify run(s) of this machine ({cal.fingerprint(hw)}); plans use the uncalibrated model")
        return Exit.OK
    runs, applied = cal.runs_of(hw), cal.load(hw)
    if a.json:
        _json({"machine": cal.fingerprint(hw), "file": os.path.join(cal.cache_dir(), "calibration.json"),
               "applied": applied.model_dump() if applied else None, "runs": runs})
        return Exit.OK
    if not runs:
        print("no verify runs kept for this machine: plans use the uncalibrated model (plan verify records runs)")
        return Exit.OK
    current = [r for r in runs if r.get("speed_model") == cal.speed_model() and any(k in r for k in cal.SPEED_KEYS)]
    print(f"this machine ({cal.fingerprint(hw)}): {len(runs)} verify run(s) kept, {len(current)} with speed "
          f"ratios of this speed model; file {os.path.join(cal.cache_dir(), 'calibration.json')}")
    for key, label in (("decode_ratio", "decode"), ("prefill_ratio", "prefill")):
        factor, counted = cal.robust_factor([r.get(key) for r in current])
        print(f"  {label:8s} x{factor:.3f} applied (from {len(counted)} run(s); in full once {cal.AGREE} agree "
              f"within {cal.AGREE_BAND:.0%}, shrunk toward x1 before)")
    if applied and applied.host_overhead_bytes:
        print(f"  host overhead {applied.host_overhead_bytes / MiB:.0f} MiB (median of the runs)")
    print("  runs:")
    for r in runs:
        ld = r.get("load") or {}
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("time", 0)))
        print(f"    {when}  {str(r.get('model', '?'))[:28]:28s} decode x{r.get('decode_ratio', float('nan')):.3f}  "
              f"prefill x{r.get('prefill_ratio', float('nan')):.3f}  cpu share {ld.get('cpu_share', '?')}  "
              f"others {ld.get('other_cores', '?')} cores"
              + ("" if r.get("speed_model") == cal.speed_model() else "  (older speed model: speed not applied)")
              + ("  (busy: speed not kept)" if ld.get("busy") else ""))
    print("  plan calibration --reset forgets them")
    return Exit.OK


def cmd_wizard(a: argparse.Namespace) -> int:
    if not sys.stdout.isatty():
        raise PlannerError("plan wizard needs an interactive terminal; for scripts use plan --model M --json")
    from planner.tui.app import run
    return run(a.model, a.target)


def cmd_recommend(a: argparse.Namespace) -> int:
    from planner.api import recommend, resolve_hardware
    hw = resolve_hardware(a.target, vram_gib=a.vram, ram_gib=a.ram, gpus=a.gpus)
    rec = recommend(hw, use=a.use, min_ctx=a.min_ctx, min_tps=a.min_tps, top=a.top, catalog_filter=_catalog_filter(a))
    if a.json:
        _json(rec.model_dump())
        return Exit.OK
    if not rec.rows:
        print(f"nothing in the catalog runs on {hw.name} at {rec.floor_tps:g} tok/s or more with these constraints "
              "(lower --min-tps, or see 'plan models')")
        for s in rec.needs_more:
            print(f"  {s.model}: {s.why}")
        return Exit.DOES_NOT_FIT
    print(f"best models on {hw.name} at {rec.floor_tps:g} tok/s or more (balanced plans; ranked by the cited score "
          "at each plan):")
    for i, r in enumerate(rec.rows, 1):
        score = f"{r.score_at_plan:5.1f}" if r.score_at_plan is not None else "   - "
        print(f"{i:3d}. {r.model:30s} {score}  {r.n_params / 1e9:6.1f}B  {r.bits_per_weight:5.2f} bpw  "
              f"{r.decode_tps:7.1f} tok/s  ctx {r.n_ctx}")
        print(f"       {r.rank_why}")
    if rec.needs_more:
        print("better-scored models this box cannot run at that speed:")
        for s in rec.needs_more:
            print(f"  {s.model} ({s.score:g}): {s.why}")
    print("scores: the maker's reported figures, each with its source in `plan models --json`; the score at a plan "
          "is the score times the next-token agreement its predicted KLD keeps (docs/model.md)")
    return Exit.OK


def _verify_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("verify")
    g.add_argument("--imatrix-file", help="importance matrix (GGUF: plan imatrix or llama-imatrix): weights the "
                                          "measured errors and goes to the quantizer")
    g.add_argument("--pp", type=arg.count(1, 1 << 20, " tokens"), default=512,
                   help="prompt tokens timed (llama-bench pp, default 512)")
    g.add_argument("--tg", type=arg.count(1, 1 << 20, " tokens"), default=128,
                   help="generated tokens timed (llama-bench tg, default 128)")
    g.add_argument("--reps", type=arg.count(1, 1000, " repetitions"), default=2,
                   help="timed repetitions after a warm-up (default 2)")
    g.add_argument("--no-quality", action="store_true", help="skip KLD/PPL against the source")
    g.add_argument("--keep", action="store_true", help="keep the twin file")
    g.add_argument("--no-record", action="store_true", help="do not keep this run for calibration")


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """(the plan parser, the subcommands' parser): `plan --model M ...` plans; `plan SUBCOMMAND ...` the rest."""
    common, tgt = _shared_parsers()
    return _plan_parser(common, tgt), _subcommand_parser(common, tgt)


def _shared_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Options every command takes (--json, --debug), and those that pick the box (--target and overrides)."""
    common = arg.Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    tgt = arg.Parser(add_help=False)
    tgt.add_argument("--target", default="auto", help="auto (this machine), a profile name (plan targets) or YAML path")
    tgt.add_argument("--vram", type=arg.vram_list, help="override VRAM per GPU in GiB: 24 or 24,12")
    tgt.add_argument("--ram", type=arg.number(0, arg.MAX_GIB, " GiB", open_low=True), help="override system RAM in GiB")
    tgt.add_argument("--gpus", type=arg.gpu_list,
                     help="override GPUs: a count (copies of the profile's GPU) or names: rtx3090,rtx3090")

    return common, tgt


def _plan_parser(common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> argparse.ArgumentParser:
    main = arg.Parser(prog="plan", parents=[common, tgt],
                                   description="Can I run this model on this box, and how? "
                                               "Subcommands: profile, targets, models, show, recommend, verify, "
                                               "wizard, imatrix.",
                                   epilog="examples: plan --model llama3.1-70b --target rtx4090 | "
                                          "plan show qwen3-30b-a3b | plan profile")
    for add in (_model_args, _runtime_args, _goal_args, _output_args, _verify_args):
        add(main)
    main.set_defaults(func=cmd_plan)
    return main


def _model_args(p: argparse.ArgumentParser) -> None:
    """What to plan: the model and a pinned ftype."""
    p.add_argument("--model", "-m", required=True,
                      help="catalog name, .gguf path or URL, HF repo (org/name or org/name:Q4_K_M) or Ollama name")
    p.add_argument("--quant", "-q", help="llama.cpp ftype (Q4_K_M...); default: the GGUF's types, else Q4_K_M")


def _runtime_args(p: argparse.ArgumentParser) -> None:
    """llama.cpp's runtime options, by their llama-server names."""
    p.add_argument("--ngl", type=arg.gpu_layers, help="-ngl: layers on the GPU, a count or all (default all)")
    p.add_argument("--ctx", type=arg.count(1, arg.MAX_TOKENS, " tokens"), help="-c: context length (default 4096)")
    p.add_argument("--flash-attn", type=arg.on_off, help="on|off (default on, as llama.cpp's auto)")
    p.add_argument("--cache-type-k", help="f16, q8_0, q4_0... (default f16)")
    p.add_argument("--cache-type-v", help="f16, q8_0, q4_0... (default f16)")
    p.add_argument("--ubatch", type=arg.count(1, arg.MAX_TOKENS, " tokens"), help="-ub (default 512)")
    p.add_argument("--batch", type=arg.count(1, arg.MAX_TOKENS, " tokens"), help="-b (default 2048)")
    p.add_argument("--parallel", type=arg.count(1, arg.MAX_SEQ, " sequences (LLAMA_MAX_SEQ)"),
                      help="-np parallel sequences (default 1)")
    p.add_argument("--threads", "-t", type=arg.count(1, 4096, " threads"),
                      help="-t: CPU threads (default: the physical cores)")
    p.add_argument("--tensor-split", type=arg.shares, help="-ts, e.g. 3,1")
    p.add_argument("--n-cpu-moe", type=arg.count(0, 100_000, " layers"),
                      help="--n-cpu-moe: experts of the first N layers on the CPU")
    p.add_argument("--no-mmap", action="store_true", help="--no-mmap")
    p.add_argument("--override-tensor", "-ot", action="append", default=[], type=arg.cpu_override,
                      help="-ot REGEX=CPU: tensors matching REGEX stay in host memory (repeatable)")
    p.add_argument("--depth", type=arg.count(0, arg.MAX_TOKENS, " tokens"), default=0,
                      help="decode speed at this many tokens of context")


def _goal_args(p: argparse.ArgumentParser) -> None:
    """What the plan is for: margin, goal, floors on context and speed."""
    p.add_argument("--margin", type=arg.number(0, 99, " percent"), default=5.0,
                      help="free memory to keep per device, percent (default 5)")
    p.add_argument("--goal", choices=("quality", "balanced", "speed", "context"), default="balanced")
    p.add_argument("--min-ctx", type=arg.count(1, arg.MAX_TOKENS, " tokens"),
                      help="smallest context the plan may choose")
    p.add_argument("--min-tps", type=arg.number(0, 1e7, " tok/s", open_low=True),
                      help="slowest decode speed to accept, tok/s")
    p.add_argument("--imatrix", action="store_true", help="an importance matrix will be used: allow IQ2 types")


def _output_args(p: argparse.ArgumentParser) -> None:
    """What comes out: an export, where it goes, and what it names."""
    p.add_argument("--emit", choices=(*KINDS, "rpc-server"),
                   help="print (or -o write) a launch config or plan file (rpc-server: a cluster's workers' lines)")
    p.add_argument("-o", "--output", help="write --emit to this file (atomic; never overwrites without --force)")
    p.add_argument("--force", action="store_true", help="overwrite --output")
    p.add_argument("--model-path", help="path of the planned GGUF in the emitted configs")
    p.add_argument("--program", choices=("llama-server", "llama-cli", "llama-cpp-python", "ollama"),
                   help="what will run the plan: each sets llama.cpp's context its own way (default: the --emit "
                        "kind's, else llama-server)")
    p.add_argument("--own-mix", action="store_true",
                   help="plan and emit your own per-tensor mix, not the best published file (the default where the "
                        "catalog knows published files)")
    p.add_argument("--legacy-flags", action="store_true",
                   help="launch lines older llama.cpp builds take (-ngl 999, --no-mmap/--mlock, not --load-mode)")
    p.add_argument("--source-path", help="the F16/BF16 GGUF llama-quantize reads (--emit llama-quantize, --verify)")
    p.add_argument("--verify", action="store_true",
                      help="then verify the best plan on this machine (quantize --source-path, else a twin)")
    p.add_argument("--no-calibration", action="store_true", help="ignore what verify runs measured on this machine")
    p.add_argument("--measure", choices=("auto", "on", "off"), default="auto",
                      help="measure each tensor's quantization error on a local GGUF's weights (auto: files "
                           "up to 4 GiB; cached) instead of priors")


def _subcommand_parser(common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = arg.Parser(prog="plan")
    sp = sub.add_subparsers(dest="cmd", required=True)
    for add in (_sub_profile, _sub_targets, _sub_models, _sub_recommend, _sub_verify, _sub_wizard, _sub_imatrix,
                _sub_calibration, _sub_show):
        add(sp, common, tgt)
    return sub


def _sub_profile(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("profile", parents=[common, tgt], help="this machine (or a target) as the planner sees it")
    p.add_argument("--remeasure", action="store_true",
                   help="run llama.cpp's CPU self-benchmark again (it runs once per boot; a minute or two)")
    p.set_defaults(func=cmd_profile)


def _sub_targets(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("targets", parents=[common], help="bundled target profiles")
    p.set_defaults(func=cmd_targets)


def _catalog_args(p: argparse.ArgumentParser) -> None:
    from planner.model.catalog import USES
    p.add_argument("--use", choices=USES, help="only models for this use")
    p.add_argument("--family", help="only this family (llama, qwen, gemma, mistral, deepseek, ...)")
    p.add_argument("--license", help="only licenses containing this (apache, mit, llama, gemma, ...)")
    p.add_argument("--size", type=arg.size_range, help="total parameters in billions: 7-14, -8 (at most 8B), 30-")
    p.add_argument("--released-after", type=arg.month, help="released in or after this month (YYYY-MM)")


def _sub_models(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("models", parents=[common], help="search the bundled catalog")
    p.add_argument("query", nargs="*")
    _catalog_args(p)
    p.set_defaults(func=cmd_models)


def _sub_recommend(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("recommend", parents=[common, tgt], help="what can I run? catalog models ranked for a box")
    _catalog_args(p)
    p.add_argument("--min-ctx", type=arg.count(1, arg.MAX_TOKENS, " tokens"))
    p.add_argument("--min-tps", type=arg.number(0, 1e7, " tok/s"),
                   help="speed floor (default: 10 tok/s with a GPU, 5 on a CPU: readable)")
    p.add_argument("--top", type=arg.count(1, 100_000, " models"), default=10)
    p.set_defaults(func=cmd_recommend)


def _sub_verify(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("verify", parents=[common], help="quantize a plan, load it here, measure, compare")
    p.add_argument("plan", help="a plan file: plan --model M --emit yaml -o plan.yaml")
    p.add_argument("--source", help="the model as an F16/BF16/F32 GGUF (others work, with a warning)")
    p.add_argument("--twin", action="store_true", help="no source: a shape twin (memory and speed, no quality)")
    p.add_argument("-o", "--output", help="where the quantized GGUF goes (default ./<source>-plan.gguf; "
                                          "never replaces a file without --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    p.add_argument("--depth", type=arg.count(0, arg.MAX_TOKENS, " tokens"), default=0,
                   help="time decode after this many tokens of context")
    _verify_args(p)
    p.set_defaults(func=cmd_verify)


def _sub_wizard(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("wizard", parents=[common], help="a terminal wizard: hardware, model, goal, plan, export, verify")
    p.add_argument("--model", "-m", help="start with this model")
    p.add_argument("--target", default="auto", help="start with this target profile")
    p.set_defaults(func=cmd_wizard)


def _sub_imatrix(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("imatrix", parents=[common],
                      help="collect an importance matrix of a GGUF over a text (llama-imatrix's format)")
    p.add_argument("model", help="the GGUF (F16/BF16 for the best statistics)")
    p.add_argument("--text", required=True, help="calibration text (plain UTF-8); not the text you evaluate on")
    p.add_argument("-o", "--output", required=True, help="the imatrix GGUF to write (atomic)")
    p.add_argument("--force", action="store_true", help="overwrite --output")
    p.add_argument("--ctx", type=arg.count(1, 1 << 20, " tokens"), default=512,
                   help="tokens per chunk (llama-imatrix -c, default 512)")
    p.add_argument("--chunks", type=arg.count(1, 1 << 30, " chunks"),
                   help="at most this many chunks (default: the whole text)")
    p.add_argument("--ngl", type=arg.count(0, 100_000, " layers"), default=0,
                   help="layers on the GPU while collecting (default 0)")
    p.set_defaults(func=cmd_imatrix)


def _sub_calibration(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("calibration", parents=[common],
                      help="what verify runs taught this machine (applied to its plans); --reset forgets it")
    p.add_argument("--reset", action="store_true", help="forget this machine's verify runs")
    p.set_defaults(func=cmd_calibration)


def _sub_show(sp, common: argparse.ArgumentParser, tgt: argparse.ArgumentParser) -> None:
    p = sp.add_parser("show", parents=[common], help="a model's architecture and tensors")
    p.add_argument("model")
    p.add_argument("--tensors", action="store_true", help="list every tensor")
    p.set_defaults(func=cmd_show)


class _Progress(logging.Handler):
    """One plain line on stderr per message (the stream looked up when it is written: tests swap it)."""
    def emit(self, record: logging.LogRecord) -> None:
        print(f"plan: {record.getMessage()}", file=sys.stderr)


def _progress_to_stderr() -> None:
    """What the planner says it is doing while a user waits (the CPU self-benchmark), on stderr: stdout stays the
    plan (or its JSON)."""
    log = logging.getLogger("planner")
    if not any(isinstance(h, _Progress) for h in log.handlers):
        log.addHandler(_Progress())
        log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    main_p, sub_p = build_parser()
    parser = sub_p if argv and argv[0] in SUBCOMMANDS else main_p
    try:
        a = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or an option refused with its one line (Parser.error)
        return int(exc.code or 0)
    _progress_to_stderr()
    try:
        return a.func(a)
    except PlannerError as exc:
        if a.debug:
            traceback.print_exc()
        print(f"plan: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("plan: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:
        return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
