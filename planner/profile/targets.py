"""Named target profiles (hardware_profiles/*.yaml): plan for a box you don't own."""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from planner.data import data_yaml, load_yaml
from planner.errors import TargetNotFoundError
from planner.profile.gpu_specs import lookup_gpu_spec
from planner.profile.hardware import CPU, GPU, RAM, HardwareProfile

GiB = 1024**3
MiB = 1024**2


def _norm(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())


def _profile_dir():
    """The bundled boxes: the package planner.hardware_profiles (data files, in the wheel as in a checkout)."""
    return resources.files("planner.hardware_profiles")


@cache
def _raw_profiles() -> dict[str, dict[str, Any]]:
    out = {}
    for entry in _profile_dir().iterdir():
        if entry.name.endswith(".yaml"):
            data = load_yaml(entry.read_text(encoding="utf-8"))
            out[data["name"]] = data
    return out


def list_targets() -> list[tuple[str, str]]:
    """(name, title) of every bundled profile."""
    return sorted((n, d.get("title", n)) for n, d in _raw_profiles().items())


@cache
def _default_reserve_gib() -> float:
    """RAM a named target keeps for its OS unless its profile says (planner/data/os_reserve.yaml)."""
    return float(data_yaml("os_reserve.yaml")["reserve_gib"])


def profile_from_dict(data: dict[str, Any], source: str) -> HardwareProfile:
    """Build a profile from YAML data; GPU figures come from the spec table unless given."""
    try:
        cpu = CPU(**{k: v for k, v in data.get("cpu", {}).items() if k in CPU.model_fields})
        r = data["ram"]
        ram = RAM(total_bytes=int(r.get("total_bytes") or r["total_gib"] * GiB),
                  bandwidth_gbps=float(r["bandwidth_gbps"]), bandwidth_source=r.get("source", source))
        reserve = r.get("reserve_gib")
        reserve = float(reserve if reserve is not None else _default_reserve_gib())
        if not 0 <= reserve * GiB < ram.total_bytes:
            raise ValueError(f"ram.reserve_gib {reserve} must be at least 0 and less than the RAM")
        ram.reserve_bytes = int(reserve * GiB)
        ram.available_bytes = ram.total_bytes - ram.reserve_bytes
        gpus = [_gpu(i, g, ram.total_bytes) for i, g in enumerate(data.get("gpus") or [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise TargetNotFoundError(
            f"target profile {source} is malformed ({exc}); see planner/hardware_profiles/rtx4090.yaml "
            "for the expected fields") from None
    return HardwareProfile(name=data.get("name", source), source=source, os=data.get("os", "linux"),
                           cpu=cpu, ram=ram, gpus=gpus, notes=[data.get("title", "")] if data.get("title") else [])


def _gpu(index: int, g: dict[str, Any], ram_bytes: int) -> GPU:
    spec = lookup_gpu_spec(g.get("spec") or g.get("name", ""))
    name = g.get("name") or (spec.name if spec else g.get("spec"))
    if not name:
        raise ValueError(f"GPU {index} needs a 'spec' or 'name'")
    unified = bool(g.get("unified", False))
    if "vram_bytes" in g:
        vram = int(g["vram_bytes"])
    elif "vram_mib" in g:
        vram = int(g["vram_mib"] * MiB)
    elif "vram_gib" in g:
        vram = int(g["vram_gib"] * GiB)
    elif unified:
        # Metal's recommendedMaxWorkingSetSize: ~75% of RAM above 36 GB, ~2/3 below.
        vram = int(ram_bytes * (0.75 if ram_bytes > 36 * GiB else 2 / 3))
    elif spec:
        vram = int(spec.vram_gib * GiB)
    else:
        raise ValueError(f"GPU {name} needs vram_mib or vram_gib")
    bw = g.get("bandwidth_gbps") or (spec.bandwidth_gbps if spec else None)
    if bw is None:
        raise ValueError(f"GPU {name} needs bandwidth_gbps (not in the spec table)")
    vendor = g.get("vendor") or ("apple" if "apple" in name.lower() else
                                 "amd" if ("amd" in name.lower() or "radeon" in name.lower()) else "nvidia")
    backend = g.get("backend") or {"apple": "metal", "amd": "rocm"}.get(vendor, "cuda")
    return GPU(index=index, vendor=vendor, name=name, vram_total_bytes=vram,
               bandwidth_gbps=float(bw), fp16_tflops=g.get("fp16_tflops") or (spec.fp16_tflops if spec else None),
               pcie_gen=g.get("pcie_gen"), pcie_width=g.get("pcie_width"), unified_memory=unified,
               backend=backend, overhead_bytes=g.get("overhead_bytes"))


def load_target(name_or_path: str) -> HardwareProfile:
    """A bundled profile by name or alias, or a YAML file path."""
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise TargetNotFoundError(f"target file {name_or_path} does not exist")
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TargetNotFoundError(f"cannot read target file {name_or_path}: {exc}") from None
        if not isinstance(data, dict):
            raise TargetNotFoundError(f"target file {name_or_path} is not a YAML mapping")
        return profile_from_dict(data, str(path))
    key = _norm(name_or_path)
    for name, data in _raw_profiles().items():
        if key == _norm(name) or key in (_norm(a) for a in data.get("aliases", [])):
            return profile_from_dict(data, f"planner/hardware_profiles/{name}.yaml")
    names = list(_raw_profiles())
    close = difflib.get_close_matches(name_or_path.lower(), names, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise TargetNotFoundError(
        f"unknown target '{name_or_path}'.{hint} Use 'auto', a name from 'plan targets', "
        "or a YAML file path.")


def apply_overrides(profile: HardwareProfile, vram_gib: str | None = None,
                    ram_gib: float | None = None, gpus: str | None = None) -> HardwareProfile:
    """--gpus N|spec,spec  --vram GiB[,GiB]  --ram GiB: change parts of a profile."""
    p = profile.model_copy(deep=True)
    if gpus is not None:
        gpus = gpus.strip()
        if gpus.isdigit():
            n = int(gpus)
            if n and not p.gpus:
                raise TargetNotFoundError("--gpus N copies the profile's GPU, but it has none; "
                                          "name them instead, e.g. --gpus rtx3090,rtx3090")
            p.gpus = [p.gpus[0].model_copy(update={"index": i}) for i in range(n)]
        else:
            new = []
            for i, name in enumerate(x.strip() for x in gpus.split(",") if x.strip()):
                spec = lookup_gpu_spec(name) or lookup_gpu_spec("rtx " + name)
                if not spec:
                    raise TargetNotFoundError(f"--gpus: '{name}' is not in the GPU spec table "
                                              "(planner/data/gpus.yaml); give a YAML target instead")
                new.append(_gpu(i, {"spec": spec.name}, p.ram.total_bytes))
            p.gpus = new
    if vram_gib is not None:
        try:
            vals = [float(v) for v in str(vram_gib).split(",")]
        except ValueError:
            raise TargetNotFoundError(f"--vram takes GiB per GPU, like 24 or 24,12; got '{vram_gib}'") from None
        if not p.gpus:
            raise TargetNotFoundError("--vram given but the target has no GPU; add --gpus too")
        if len(vals) == 1:
            vals = vals * len(p.gpus)
        if len(vals) != len(p.gpus):
            raise TargetNotFoundError(f"--vram lists {len(vals)} values for {len(p.gpus)} GPUs")
        for g, v in zip(p.gpus, vals, strict=False):
            g.vram_total_bytes = int(v * GiB)
            g.vram_free_bytes = None
    if ram_gib is not None:
        if ram_gib <= 0:
            raise TargetNotFoundError(f"--ram must be positive GiB, got {ram_gib}")
        p.ram.total_bytes = p.ram.available_bytes = int(ram_gib * GiB)
        p.ram.reserve_bytes = 0
    if gpus is not None or vram_gib is not None or ram_gib is not None:
        p.notes.append("overridden on the command line")
    return p


def resolve_target(target: str = "auto", *, vram_gib: str | None = None, ram_gib: float | None = None,
                   gpus: str | None = None, measure_bandwidth: bool = True) -> HardwareProfile:
    """'auto' detects this machine; anything else is a profile name, alias or YAML path."""
    if target in ("auto", "local", "this"):
        from planner.profile.detect import detect_hardware
        profile = detect_hardware(measure_bandwidth=measure_bandwidth)
    else:
        profile = load_target(target)
    return apply_overrides(profile, vram_gib=vram_gib, ram_gib=ram_gib, gpus=gpus)
