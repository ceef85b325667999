"""Cluster files: the bundled examples load, every link preset has its source, and each mistake is one line."""

import pytest

from planner.cli.main import main
from planner.errors import TargetNotFoundError
from planner.profile.cluster import is_cluster, link_presets, list_clusters, load_cluster


def test_every_bundled_cluster_loads_with_one_main_host_and_its_workers():
    names = [n for n, _ in list_clusters()]
    assert {"two-3090-10gbe", "4090-m3max-tb4", "three-boxes-1gbe"} <= set(names)
    for n in names:
        c = load_cluster(n)
        assert is_cluster(n) and sum(x.main for x in c.nodes) == 1 and c.workers
        assert all(c.link_to(w).gbit_s > 0 for w in c.workers)


def test_link_presets_cover_the_usual_links_each_with_a_source():
    p = link_presets()
    assert {"1gbe", "10gbe", "thunderbolt4", "infiniband-hdr"} <= set(p)
    assert all(x.source and x.gbit_s > 0 and x.rtt_ms >= 0 for x in p.values())
    assert p["1gbe"].gbit_s < p["10gbe"].gbit_s < p["thunderbolt4"].gbit_s < p["infiniband-hdr"].gbit_s


def test_a_pair_link_overrides_the_default_and_inline_profiles_describe_a_box(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nlink: 1gbe\nnodes:\n  - {name: a, profile: rtx4090, host: 10.0.0.1}\n"
                 "  - {name: b, host: 10.0.0.2, profile: {cpu: {cores: 8}, ram: {total_gib: 32, bandwidth_gbps: 60}}}\n"
                 "links:\n  - {between: [a, b], link: {gbit_s: 25, rtt_ms: 0.05}}\n")
    c = load_cluster(str(f))
    assert c.main.name == "a" and c.link_to(c.workers[0]).gbit_s == 25
    assert c.workers[0].profile.ram.total_bytes == 32 << 30 and not c.workers[0].profile.gpus


BAD = {
    "no-nodes": ("name: x\n", "needs a 'nodes' list"),
    "two-mains": ("nodes:\n  - {name: a, profile: rtx4090, host: h, main: true}\n"
                  "  - {name: b, profile: rtx4090, host: g, main: true}\n", "2 nodes are marked main"),
    "auto-worker": ("nodes:\n  - {name: a, profile: rtx4090, host: h}\n  - {name: b, profile: auto, host: g}\n",
                    "only the main host may use it"),
    "no-host": ("nodes:\n  - {name: a, profile: rtx4090}\n  - {name: b, profile: rtx4090}\n", "node b needs a host"),
    "same-name": ("nodes:\n  - {name: a, profile: rtx4090, host: h}\n  - {name: a, profile: rtx4090, host: g}\n",
                  "node names repeat"),
    "bad-link": ("link: 5gbe\nnodes:\n  - {name: a, profile: rtx4090, host: h}\n", "unknown link '5gbe'"),
    "bad-pair": ("nodes:\n  - {name: a, profile: rtx4090, host: h}\nlinks:\n  - {between: [a, z], link: 1gbe}\n",
                 "names a node that is not in 'nodes'"),
    "bad-port": ("nodes:\n  - {name: a, profile: rtx4090, host: h}\n  - {name: b, profile: rtx4090, host: g, "
                 "port: 99999}\n", "node b"),
    "bad-profile": ("nodes:\n  - {name: a, profile: rtx9999, host: h}\n", "unknown target 'rtx9999'"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_malformed_cluster_is_one_line_and_exit_2(case, tmp_path, capsys):
    text, says = BAD[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(text if "nodes" in text or case == "no-nodes" else text)
    if case == "no-nodes":  # without a nodes list it is a target profile, which says what it misses
        with pytest.raises(TargetNotFoundError):
            load_cluster(str(f))
        return
    assert main(["--model", "llama3.1-8b", "--target", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err
