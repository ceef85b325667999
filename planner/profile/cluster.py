"""Clusters: several machines that run one model over llama.cpp's RPC backend, described once in a YAML file.

    name: two-3090-boxes
    title: two desktops with an RTX 3090 each, on 10 GbE
    link: 10gbe                      # every pair's link: a preset of planner/data/links.yaml or {gbit_s, rtt_ms}
    nodes:
      - {name: desk, profile: rtx3090, host: 192.168.1.10, main: true}   # runs llama-server
      - {name: den, profile: rtx3090, host: 192.168.1.11, port: 50052}   # runs ggml-rpc-server
    links:                            # optional: a pair's own link
      - {between: [desk, den], link: {gbit_s: 9.4, rtt_ms: 0.08}}

A node's profile is a bundled target name, a target YAML path (relative to the cluster file), a mapping in the
target YAML schema, or `auto` for the main host (this machine). The main host is the node marked `main: true`,
else the first. What each worker serves: its GPUs, or its CPU when it has none (ggml-rpc-server's default).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from planner.data import data_yaml, load_yaml
from planner.errors import TargetNotFoundError
from planner.profile.hardware import HardwareProfile


class Link(BaseModel):
    model_config = ConfigDict(frozen=True)
    gbit_s: float = Field(..., gt=0, le=1e5, description="sustained TCP throughput, Gbit/s")
    rtt_ms: float = Field(..., ge=0, le=1e4, description="round-trip time, ms")
    source: str = ""


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    host: str
    port: int = Field(50052, ge=1, le=65535)
    main: bool = False
    profile: HardwareProfile


class Cluster(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    title: str = ""
    source: str
    nodes: list[Node]
    link: Link
    links: dict[str, Link] = Field(default_factory=dict, description="'a|b' (names sorted) -> that pair's link")

    @property
    def main(self) -> Node:
        return next(n for n in self.nodes if n.main)

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if not n.main]

    def link_to(self, node: Node) -> Link:
        """The link between the main host and a node (RPC traffic goes only between those two)."""
        return self.links.get(_pair(self.main.name, node.name), self.link)


def _pair(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


@cache
def link_presets() -> dict[str, Link]:
    return {k: Link(**v) for k, v in data_yaml("links.yaml").items()}


def _clusters_dir():
    return resources.files("planner.clusters")


@cache
def _bundled() -> dict[str, str]:
    """name -> YAML text of every bundled example cluster (planner/clusters/*.yaml)."""
    out = {}
    for entry in _clusters_dir().iterdir():
        if entry.name.endswith(".yaml"):
            text = entry.read_text(encoding="utf-8")
            out[load_yaml(text)["name"]] = text
    return out


def list_clusters() -> list[tuple[str, str]]:
    """(name, title) of every bundled example cluster."""
    return sorted((n, load_yaml(t).get("title", n)) for n, t in _bundled().items())


def is_cluster(target: str) -> bool:
    """A bundled cluster's name, or a YAML file with a `nodes` list."""
    if target in _bundled():
        return True
    p = Path(target).expanduser()
    if not (target.endswith((".yaml", ".yml")) and p.is_file()):
        return False
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "nodes" in data


def load_cluster(target: str) -> Cluster:
    """A bundled cluster by name, or a cluster YAML file."""
    if target in _bundled():
        return cluster_from_dict(load_yaml(_bundled()[target]), f"planner/clusters/{target}.yaml", None)
    p = Path(target).expanduser()
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TargetNotFoundError(f"cannot read cluster file {target}: {exc}") from None
    return cluster_from_dict(data, str(p), p.parent)


def cluster_from_dict(data: Any, source: str, base: Path | None) -> Cluster:
    def bad(msg: str) -> TargetNotFoundError:
        return TargetNotFoundError(f"cluster {source}: {msg}; see planner/clusters/two-3090-10gbe.yaml for the "
                                   "expected fields")
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
        raise bad("needs a 'nodes' list")
    if len(data["nodes"]) > 16:
        raise bad(f"{len(data['nodes'])} nodes; llama.cpp drives at most 16 devices (llama_max_devices)")
    marked = any(isinstance(n, dict) and n.get("main") for n in data["nodes"])
    nodes = [_node(i, n, base, bad, default_main=not marked and i == 0) for i, n in enumerate(data["nodes"])]
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise bad(f"node names repeat ({', '.join(names)})")
    mains = [n for n in nodes if n.main]
    if len(mains) > 1:
        raise bad(f"{len(mains)} nodes are marked main; one runs llama-server")
    for n in nodes:
        if n.profile.source == "detected" and not n.main:
            raise bad(f"node {n.name}: 'auto' detects this machine, so only the main host may use it")
    endpoints = [(n.host, n.port) for n in nodes if not n.main]
    if len(set(endpoints)) != len(endpoints):
        raise bad("two workers share a host and port")
    default = _link(data.get("link", "1gbe"), "link", bad)
    pairs = {}
    for i, x in enumerate(data.get("links") or []):
        if not isinstance(x, dict) or not isinstance(x.get("between"), list) or len(x["between"]) != 2:
            raise bad(f"links[{i}] needs 'between: [node, node]' and a 'link'")
        a, b = (str(v) for v in x["between"])
        if a not in names or b not in names:
            raise bad(f"links[{i}] names a node that is not in 'nodes' ({a}, {b})")
        pairs[_pair(a, b)] = _link(x.get("link"), f"links[{i}].link", bad)
    return Cluster(name=str(data.get("name") or Path(source).stem), title=str(data.get("title", "")),
                   source=source, nodes=nodes, link=default, links=pairs)


def _node(i: int, n: Any, base: Path | None, bad, default_main: bool) -> Node:
    if not isinstance(n, dict) or not n.get("name"):
        raise bad(f"nodes[{i}] needs a name")
    name = str(n["name"])
    main = bool(n.get("main", default_main))
    host = n.get("host") or ("localhost" if main else None)
    if not host:
        raise bad(f"node {name} needs a host (its address as the main host reaches it)")
    try:
        return Node(name=name, host=str(host), port=int(n.get("port", 50052)), main=main,
                    profile=_profile(n.get("profile"), name, base, bad))
    except (TypeError, ValueError) as exc:
        raise bad(f"node {name}: {str(exc).splitlines()[0]}") from None


def _profile(p: Any, node: str, base: Path | None, bad) -> HardwareProfile:
    from planner.profile.targets import load_target, profile_from_dict, resolve_target
    if p is None:
        raise bad(f"node {node} needs a profile (a target name, a YAML file, a mapping, or auto)")
    if isinstance(p, dict):
        return profile_from_dict({"name": node, **p}, f"node {node}")
    if not isinstance(p, str):
        raise bad(f"node {node}: profile must be a name, a path or a mapping")
    if p in ("auto", "local", "this"):
        return resolve_target("auto")
    path = (base / p) if base is not None and p.endswith((".yaml", ".yml")) else Path(p)
    return load_target(str(path) if p.endswith((".yaml", ".yml")) else p)


def _link(v: Any, where: str, bad) -> Link:
    if isinstance(v, str):
        presets = link_presets()
        if v not in presets:
            raise bad(f"{where}: unknown link '{v}' (presets: {', '.join(presets)}; or give {{gbit_s, rtt_ms}})")
        return presets[v]
    if isinstance(v, dict):
        try:
            return Link(gbit_s=v["gbit_s"], rtt_ms=v.get("rtt_ms", 0.2),
                        source=str(v.get("source", "the cluster file")))
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"{where}: {str(exc).splitlines()[0]}") from None
    raise bad(f"{where}: a preset name or {{gbit_s, rtt_ms}}")
