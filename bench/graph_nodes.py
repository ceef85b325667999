"""llama.cpp's graph node counts over the catalog, and the fit the estimator uses (planner/estimate/graph.py).

Usage: python -m bench.graph_nodes --measure   (dry runs of every catalog model's sparse twin, flash
                                               attention on and off; ~15 min; writes bench/data/graph-nodes.jsonl)
       python -m bench.graph_nodes             (prints the fit and each model's error; exits 1 when the
                                               fit in planner/data/backends.yaml is off by more than 20%)
The count is llama_context's reserve log (`graph: nodes = N`) of the one-token graph; the dry run
(no_alloc) builds the same graph as a real load.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from planner.estimate.graph import TERMS, layer_nodes, layer_terms
from planner.estimate.quant_mix import ftype_tensor_types
from planner.model.catalog import catalog, not_modeled, spec_for

OUT = os.path.join(os.path.dirname(__file__), "data", "graph-nodes.jsonl")


def measure() -> None:
    from planner.verify.child import run_probe
    from planner.verify.twin import write_twin
    with tempfile.TemporaryDirectory() as d, open(OUT + ".part", "w") as out:
        for e in (e for e in catalog() if not not_modeled(e.id)):
            m = spec_for(e.id)
            p = os.path.join(d, "twin.gguf")
            write_twin(m.with_types(ftype_tensor_types(m, "Q4_K_M")), p)
            for fa in (True, False):
                r = run_probe(dict(model=p, dry=True, ctx=4096, n_ubatch=512, n_batch=2048, fa=fa), timeout_s=300)
                row = dict(id=e.id, arch=m.architecture, fa=fa, n_layers=m.n_layers, nodes=r.get("graph_nodes"),
                           ok=r.get("ok"), error=r.get("error"))
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
            os.remove(p)
    os.replace(OUT + ".part", OUT)


def features(m, fa: bool) -> list[float]:
    """The fit's terms summed over the layers."""
    return [sum(col) for col in zip(*layer_terms(m, fa), strict=True)]


def main(argv: list[str]) -> int:
    import numpy as np
    if "--measure" in argv:
        measure()
    rows = [json.loads(line) for line in open(OUT) if json.loads(line)["ok"]]
    specs = {r["id"]: spec_for(r["id"]) for r in rows}
    x = np.array([features(specs[r["id"]], r["fa"]) for r in rows])
    y = np.array([r["nodes"][1] for r in rows], float)
    c, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)  # relative errors
    print("least squares: " + ", ".join(f"{k} {v:.2f}" for k, v in zip(TERMS, c, strict=True)))
    worst = 0.0
    for r, meas in zip(rows, y, strict=True):
        est = sum(layer_nodes(specs[r["id"]], r["fa"]))
        err = est / meas - 1
        worst = max(worst, abs(err))
        print(f"{r['id']:30s} fa={int(r['fa'])} llama.cpp {meas:6.0f} ours {est:7.1f} {err:+6.1%}")
    errs = [sum(layer_nodes(specs[r["id"]], r["fa"])) / m - 1 for r, m in zip(rows, y, strict=True)]
    print(f"\n{len(rows)} graphs: rms {np.sqrt(np.mean(np.square(errs))):.1%}, worst {worst:.1%}")
    return 0 if worst <= 0.20 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
