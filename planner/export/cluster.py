"""The lines a cluster plan runs: ggml-rpc-server on each worker, llama-server (or llama-cli) with --rpc and -ts
on the main host, in the order the plan's devices stand (tools/rpc/README.md; -ts counts the RPC servers'
devices first, in --rpc order, then the main host's own)."""

from __future__ import annotations

import shlex

from planner.export.launch import llama_server, plan_dict
from planner.model.spec import ModelSpec
from planner.optimize.cluster import ClusterPlan
from planner.units import GiB


def rpc_servers(cp: ClusterPlan) -> list[str]:
    """host:port of each worker the plan uses, in --rpc order."""
    out: list[str] = []
    for g in cp.hardware.gpus:
        if g.rpc and g.rpc.endpoint not in out:
            out.append(g.rpc.endpoint)
    return out


def rpc_server_line(cp: ClusterPlan, node: str) -> str:
    """The worker's server: bound to the address the main host reaches it at (the RPC server has no
    authentication: tools/rpc/README.md), serving the plan's devices, with its local cache of the weights."""
    use = next(n for n in cp.nodes if n.node == node)
    args = ["ggml-rpc-server", "-H", use.host, "-p", str(use.port), "-d", ",".join(use.rpc_devices), "-c"]
    cpu = [cp.hardware.gpus[i] for i in use.devices if cp.hardware.gpus[i].backend == "cpu"]
    if cpu:
        args += ["-t", str(cpu[0].cpu_cores)]
    return shlex.join(args)


def main_line(cp: ClusterPlan, spec: ModelSpec, model_path: str, threads: int | None = None,
              binary: str = "llama-server", legacy: bool = False) -> str:
    """The main host's line: the plan's own, with the RPC servers."""
    best = cp.result.best
    line = llama_server(best, spec, model_path, threads, binary=binary, legacy=legacy)
    servers = rpc_servers(cp)
    return line + (" " + shlex.join(["--rpc", ",".join(servers)]) if servers else "")


def lines(cp: ClusterPlan, spec: ModelSpec, model_path: str, threads: int | None = None,
          binary: str = "llama-server", legacy: bool = False) -> list[tuple[str, str]]:
    """(node, line) for every node the plan uses: the workers first (start them before the main host)."""
    out = [(n.node, rpc_server_line(cp, n.node)) for n in cp.nodes if not n.main]
    out.append((cp.nodes[0].node if cp.nodes else "main", main_line(cp, spec, model_path, threads, binary, legacy)))
    return out


def copy_notes(cp: ClusterPlan) -> list[str]:
    """What crosses each link at load: llama.cpp sends a worker its weights unless its cache has them."""
    return [f"at load llama.cpp sends {n.node} its {n.weights_bytes / GiB:.1f} GiB of weights over the link: "
            f"{n.send_seconds:.0f} s; with -c the worker keeps them ({n.node}'s ~/.cache/llama.cpp/rpc) and later "
            "loads read them there" for n in cp.nodes if not n.main and n.weights_bytes]


def cluster_dict(cp: ClusterPlan, spec: ModelSpec, model_path: str, threads: int | None = None,
                 basis: str = "priors: planner/data/quality.yaml") -> dict:
    """The whole plan per node, with each node's line (plan --json, --emit json)."""
    best = cp.result.best
    if best is None:
        return {"model": spec.name, "cluster": cp.cluster, "fits": False, "nearest": cp.result.nearest,
                "tried": cp.tried}
    devs = best.estimate.to_json()["devices"]
    run = dict(lines(cp, spec, model_path, threads))
    nodes = [{**n.model_dump(), "run": run.get(n.node), "device_estimates": [devs[i] for i in n.devices]}
             for n in cp.nodes]
    return {"model": spec.name, "cluster": cp.cluster, "fits": True, "file": model_path, "nodes": nodes,
            "rpc": rpc_servers(cp), "tensor_split": best.options.tensor_split,
            "network_ms_per_token": cp.network_ms_per_token, "copy": copy_notes(cp), "tried": cp.tried,
            "plan": plan_dict(best, spec, basis)}
