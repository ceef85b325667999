"""The fixed corpus: what the product prints for every catalog model on every bundled target, kept
as one digest per case, so a refactor can show that plans, estimates and exports did not move a byte.

Usage: python -m bench.corpus              compare with tests/fixtures/corpus.json; exit 1 on a change (~20 min)
       python -m bench.corpus --write      record the digests (after a change that is meant to move them)
       python -m bench.corpus --dump DIR   also write each case's full text under DIR (diff two dumps)
       python -m bench.corpus --every N    only every Nth case (tests/test_corpus.py runs a sample)
       python -m bench.corpus --catalog    every modeled catalog entry (default: the models the kept file covers)

Cases: every catalog model x every bundled target x every goal (make_plan's JSON, and each export of
the best option), every model x target evaluated as `plan --quant Q4_K_M` would (the estimate and the
nearest fit), and the estimates behind the llama.cpp comparison data (bench.accuracy and
bench.multi_device rows). The kept file holds one digest per model x target (its plans, exports and
estimate together) and one per comparison row; when one moves, --dump before and after and diff.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import get_args

DIGESTS = os.path.join(os.path.dirname(__file__), os.pardir, "tests", "fixtures", "corpus.json")


def plan_case(model: str, target: str) -> dict[str, str]:
    """Every goal's plan for one model on one target, with each export of its best option."""
    from planner.api import evaluate
    from planner.export import KINDS, render
    from planner.model import load_model
    from planner.optimize import PlanRequest, make_plan
    from planner.optimize.plan import Goal
    from planner.profile.targets import load_target
    from planner.api import plan_runnable
    from planner.errors import PlannerError
    spec, hw = load_model(model), load_target(target)
    out = {}
    for goal in get_args(Goal):
        req = PlanRequest(goal=goal)
        res = make_plan(spec, hw, req)
        out[f"plan/{model}/{target}/{goal}"] = res.model_dump_json()
        if res.best is not None:
            for kind in KINDS:
                try:
                    out[f"export/{model}/{target}/{goal}/{kind}"] = render(
                        kind, res.best, spec, f"/models/{model}.gguf", src=f"/models/{model}-F16.gguf")
                except PlannerError as exc:  # a program that cannot carry the plan (-ot in a Modelfile)
                    out[f"export/{model}/{target}/{goal}/{kind}"] = f"refused: {exc}"
        if goal == "balanced":  # the published files' plans and the own mix against them
            run = plan_runnable(spec, hw, req, res)
            out[f"published/{model}/{target}"] = "\n".join(
                [p.model_dump_json() for p in run.published]
                + [run.upgrade.model_dump_json() if run.upgrade else "", *run.nearest])
    ev = evaluate(spec, hw, quant="Q4_K_M")
    out[f"evaluate/{model}/{target}"] = ev.estimate.model_dump_json() + "\n" + str(ev.nearest_fit)
    return out


def comparison_cases() -> dict[str, str]:
    """The estimates set beside llama.cpp's measurements (bench/data/)."""
    from bench import accuracy, multi_device
    out = {}
    for r in accuracy.rows():
        out[f"llama.cpp/{r['case']}/{r['part']}"] = repr(r["est"])
    for r in multi_device.rows():
        out[f"rpc/{r['case']}/{r['device']}/{r['part']}"] = repr(r["predicted_mib"])
    return out


def kept_models() -> set[str]:
    """The catalog models the kept digests cover (the corpus pins the models it was recorded over; entries added
    to the catalog since join it with --write --catalog)."""
    with open(DIGESTS) as f:
        return {k.split("/")[1] for k in json.load(f) if k.startswith("pair/")}


def grid(every: int = 1, whole_catalog: bool = False) -> Iterator[tuple[str, str]]:
    from planner.model.catalog import catalog, not_modeled
    from planner.profile.targets import list_targets
    keep = None if whole_catalog else kept_models()
    pairs = [(m.id, t) for m in catalog() if (keep is None or m.id in keep) and not not_modeled(m.id)
             for t, _ in list_targets()]
    return iter(pairs[::every])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(every: int = 1, dump: str | None = None, workers: int = 2, whole_catalog: bool = False) -> dict[str, str]:
    texts: dict[str, str] = {}
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(plan_case, *zip(*grid(every, whole_catalog), strict=True), chunksize=4):
            texts.update(part)
    texts.update(comparison_cases())
    if dump:
        for key, text in texts.items():
            path = os.path.join(dump, key.replace(" ", "_") + ".txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    return {k: _digest(v) for k, v in sorted(texts.items())}


def groups(digests: dict[str, str]) -> dict[str, str]:
    """One digest per model x target ("pair/MODEL/TARGET": its plans, exports and estimate), and one per
    comparison row."""
    lines: dict[str, list[str]] = {}
    for key, d in sorted(digests.items()):
        kind, *rest = key.split("/")
        group = "/".join(["pair", *rest[:2]]) if kind in ("plan", "export", "evaluate", "published") else key
        lines.setdefault(group, []).append(f"{key}={d}")
    return {g: _digest("\n".join(ls)) for g, ls in lines.items()}


def changes(got: dict[str, str], kept: dict[str, str]) -> list[str]:
    """Cases whose digest moved, appeared, or went (only over the keys that were computed: a sample
    compares its own cases)."""
    out = [f"changed: {k}" for k in got if k in kept and kept[k] != got[k]]
    out += [f"new: {k}" for k in got if k not in kept]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corpus")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--dump")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--catalog", action="store_true", help="every modeled catalog entry, not only the kept ones")
    a = ap.parse_args(argv)
    got = groups(run(a.every, a.dump, a.workers, a.catalog))
    if a.write:
        with open(DIGESTS, "w") as f:
            json.dump(got, f, indent=0, sort_keys=True)
            f.write("\n")
        print(f"{len(got)} cases recorded in {os.path.relpath(DIGESTS)}")
        return 0
    with open(DIGESTS) as f:
        kept = json.load(f)
    bad = changes(got, kept)
    for line in bad[:50]:
        print(line)
    print(f"{len(got)} cases, {len(bad)} changed or new")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
