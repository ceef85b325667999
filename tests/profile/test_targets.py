import pytest

from planner.errors import TargetNotFoundError
from planner.profile.gpu_specs import lookup_gpu_spec
from planner.profile.targets import apply_overrides, list_targets, load_target, resolve_target

GiB = 1024**3
REQUIRED = ["rtx3060", "rtx3090", "rtx4060", "rtx4070tisuper", "rtx4090", "rtx5090", "a100-80gb", "h100-80gb",
            "l4", "m1-16gb", "m2-max-32gb", "m3-max-128gb", "m4-pro-48gb", "ryzen-ai-max-395-128gb",
            "laptop-16gb", "laptop-32gb", "laptop-64gb", "2x-rtx3090"]


def test_every_required_box_has_a_profile_that_loads():
    names = {n for n, _ in list_targets()}
    assert set(REQUIRED) <= names
    for n in names:
        p = load_target(n)
        assert p.ram.total_bytes > 0 and p.ram.bandwidth_gbps > 0
        for g in p.gpus:
            assert g.vram_total_bytes > 0 and g.bandwidth_gbps > 0


def test_aliases_resolve_as_people_type_them():
    assert load_target("4090").name == "rtx4090"
    assert load_target("RTX 4090").name == "rtx4090"
    assert len(load_target("2x3090").gpus) == 2


def test_gpu_figures_come_from_the_one_spec_table():
    g = load_target("rtx4090").gpus[0]
    assert g.bandwidth_gbps == lookup_gpu_spec("NVIDIA GeForce RTX 4090").bandwidth_gbps == 1008
    assert lookup_gpu_spec("NVIDIA GeForce RTX 4060 Ti").name.endswith("4060 Ti")


def test_apple_unified_memory_uses_the_gpu_usable_share():
    p = load_target("m3-max-128gb")
    assert p.unified and p.gpus[0].vram_total_bytes == 96 * GiB


def test_overrides_change_parts_of_a_profile():
    p = apply_overrides(load_target("rtx4090"), ram_gib=32)
    assert p.ram.total_bytes == 32 * GiB and p.gpus[0].name.endswith("4090")
    p = apply_overrides(load_target("rtx4090"), vram_gib="20")
    assert p.gpus[0].vram_total_bytes == 20 * GiB
    p = apply_overrides(load_target("laptop-32gb"), gpus="rtx3090,rtx3090")
    assert [g.name for g in p.gpus] == ["NVIDIA GeForce RTX 3090"] * 2
    assert len(apply_overrides(load_target("rtx3090"), gpus="2").gpus) == 2


def test_unknown_target_says_what_to_do():
    with pytest.raises(TargetNotFoundError, match="rtx4090"):
        load_target("rtx409")


def test_yaml_path_target(tmp_path):
    f = tmp_path / "box.yaml"
    f.write_text("name: mybox\ncpu: {model: X, cores: 4, threads: 8}\nram: {total_gib: 16, bandwidth_gbps: 40}\n"
                 "gpus:\n  - {spec: NVIDIA GeForce RTX 3060}\n")
    p = resolve_target(str(f))
    assert p.name == "mybox" and p.gpus[0].vram_total_bytes == 12 * GiB
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncpu: {}\n")
    with pytest.raises(TargetNotFoundError, match="malformed"):
        resolve_target(str(bad))


def test_a_named_box_keeps_ram_for_its_os_and_the_plan_stays_within_the_rest(tmp_path):
    from planner.estimate import RuntimeOptions, estimate
    from planner.model import load_model
    p = load_target("laptop-16gb")
    assert p.ram.reserve_bytes == 4 * GiB and p.ram.available_bytes == 12 * GiB
    e = estimate(load_model("llama3.1-8b").with_types({}), p, RuntimeOptions(n_ctx=4096))
    assert e.devices[-1].capacity_bytes == 12 * GiB and any("kept for the OS" in n for n in e.notes)
    # --ram says what the model may use: no reserve on top
    q = apply_overrides(p, ram_gib=16)
    assert q.ram.reserve_bytes == 0 and q.ram.available_bytes == 16 * GiB
    # a profile's own reserve, and a reserve that leaves nothing is one clear line
    f = tmp_path / "server.yaml"
    f.write_text("name: server\nram: {total_gib: 64, bandwidth_gbps: 100, reserve_gib: 0.5}\n")
    assert resolve_target(str(f)).ram.available_bytes == int(63.5 * GiB)
    f.write_text("name: server\nram: {total_gib: 64, bandwidth_gbps: 100, reserve_gib: 64}\n")
    with pytest.raises(TargetNotFoundError, match="reserve_gib"):
        resolve_target(str(f))


def test_gpu_names_match_whole_words():
    """An A100 is not an A10 and an L40S not an L4 (a prefix match once planned the bundled a100-80gb target at the
    A10's 600 GB/s); the longest whole-word match still wins."""
    from planner.profile.gpu_specs import lookup_gpu_spec
    assert lookup_gpu_spec("NVIDIA A100-SXM4-80GB").name == "NVIDIA A100 80GB"
    assert lookup_gpu_spec("NVIDIA L40S").name == "NVIDIA L40S"
    assert lookup_gpu_spec("NVIDIA A10").name == "NVIDIA A10"
    assert lookup_gpu_spec("NVIDIA GeForce RTX 4060 Ti").name == "NVIDIA GeForce RTX 4060 Ti"
    assert load_target("a100-80gb").gpus[0].bandwidth_gbps == 2039
