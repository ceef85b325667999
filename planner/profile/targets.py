"""Named target profiles (hardware_profiles/*.yaml): plan for a box you don't own."""

from __future__ import annotations

import difflib
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from planner.data import data_yaml, load_yaml
from planner.errors import TargetNotFoundError
from planner.profile.gpu_specs import lookup_gpu_spec
from planner.profile.hardware import CPU, GPU, MAX_BYTES, RAM, HardwareProfile
from planner.units import GiB, MiB


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
        _check_sections(data)
        cpu = CPU(**{k: v for k, v in (data.get("cpu") or {}).items() if k in CPU.model_fields})
        r = data["ram"]
        total = _num(r, "total_bytes", "ram") or _num(r, "total_gib", "ram", required=True) * GiB
        ram = RAM(total_bytes=int(total), bandwidth_gbps=_num(r, "bandwidth_gbps", "ram", required=True),
                  bandwidth_source=str(r.get("source", source)))
        reserve = _num(r, "reserve_gib", "ram")
        reserve = reserve if reserve is not None else _default_reserve_gib()
        if not 0 <= reserve * GiB < ram.total_bytes:
            raise ValueError(f"ram.reserve_gib {reserve} must be at least 0 and less than the RAM")
        ram = ram.model_copy(update={"reserve_bytes": int(reserve * GiB),
                                     "available_bytes": ram.total_bytes - int(reserve * GiB)})
        gpus = [_gpu(i, g, ram.total_bytes) for i, g in enumerate(data.get("gpus") or [])]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise TargetNotFoundError(
            f"target profile {source} is malformed ({_first_line(exc)}); see planner/hardware_profiles/rtx4090.yaml "
            "for the expected fields") from None
    return HardwareProfile(name=data.get("name", source), source=source, os=data.get("os", "linux"),
                           cpu=cpu, ram=ram, gpus=gpus, notes=[data.get("title", "")] if data.get("title") else [])


SECTIONS = {"cpu": dict, "ram": dict, "gpus": list, "name": str, "title": str, "os": str, "aliases": list}


def _check_sections(data: dict[str, Any]) -> None:
    """Each top-level section of a target YAML is of the kind the bundled profiles use."""
    for key, kind in SECTIONS.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ValueError(f"'{key}' must be a {'mapping' if kind is dict else kind.__name__}, "
                             f"got {data[key]!r:.40}")
    for i, g in enumerate(data.get("gpus") or []):
        if not isinstance(g, dict):
            raise ValueError(f"gpus[{i}] must be a mapping (spec: rtx4090, ...), got {g!r:.40}")
    if len(data.get("gpus") or []) > 16:
        raise ValueError(f"{len(data['gpus'])} GPUs; llama.cpp drives at most 16 (llama_max_devices)")


def _num(d: dict[str, Any], key: str, where: str, required: bool = False) -> float | None:
    """A finite number from a YAML mapping (YAML 1.1 reads 1e300 as a string: refused, not multiplied)."""
    v = d.get(key)
    if v is None:
        if required:
            raise KeyError(f"{where}.{key}")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or v > MAX_BYTES:
        raise ValueError(f"{where}.{key} must be a number from 0 to {MAX_BYTES:.0e}, got {v!r:.40}")
    return float(v)


def _first_line(exc: Exception) -> str:
    """A pydantic error's first complaint in one line: 'ram.total_bytes: Input should be greater than 0'."""
    errs = getattr(exc, "errors", None)
    if callable(errs):
        e = errs()[0]
        return f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" if e.get("loc") else e["msg"]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _gpu(index: int, g: dict[str, Any], ram_bytes: int) -> GPU:
    spec = lookup_gpu_spec(g.get("spec") or g.get("name", ""))
    name = g.get("name") or (spec.name if spec else g.get("spec"))
    if not name:
        raise ValueError(f"GPU {index} needs a 'spec' or 'name'")
    unified = bool(g.get("unified", False))
    where = f"gpus[{index}]"
    if "vram_bytes" in g:
        vram = int(_num(g, "vram_bytes", where))
    elif "vram_mib" in g:
        vram = int(_num(g, "vram_mib", where) * MiB)
    elif "vram_gib" in g:
        vram = int(_num(g, "vram_gib", where) * GiB)
    elif unified:
        # Metal's recommendedMaxWorkingSetSize: ~75% of RAM above 36 GB, ~2/3 below.
        vram = int(ram_bytes * (0.75 if ram_bytes > 36 * GiB else 2 / 3))
    elif spec:
        vram = int(spec.vram_gib * GiB)
    else:
        raise ValueError(f"GPU {name} needs vram_mib or vram_gib")
    bw = _num(g, "bandwidth_gbps", where) or (spec.bandwidth_gbps if spec else None)
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
            from planner.fileio import kind_of
            what = f"is {kind_of(path)}, not a YAML file" if path.exists() else "does not exist"
            raise TargetNotFoundError(f"target file {name_or_path} {what}")
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
    """--gpus N|spec,spec  --vram GiB[,GiB]  --ram GiB: a new profile with those parts changed (checked by
    the contracts: no NaN, no negative or absurd sizes)."""
    if gpus is None and vram_gib is None and ram_gib is None:
        return profile
    new_gpus = _override_gpus(profile, gpus.strip()) if gpus is not None else list(profile.gpus)
    if vram_gib is not None:
        new_gpus = _override_vram(new_gpus, vram_gib)
    ram = profile.ram
    if ram_gib is not None:
        if not (isinstance(ram_gib, (int, float)) and math.isfinite(ram_gib) and 0 < ram_gib * GiB <= MAX_BYTES):
            raise TargetNotFoundError(f"--ram must be a positive size in GiB, got {ram_gib}")
        ram = RAM.model_validate(ram.model_dump() | {"total_bytes": int(ram_gib * GiB),
                                                      "available_bytes": int(ram_gib * GiB), "reserve_bytes": 0})
    return profile.model_copy(update={"gpus": new_gpus, "ram": ram,
                                      "notes": [*profile.notes, "overridden on the command line"]})


def _override_gpus(p: HardwareProfile, gpus: str) -> list[GPU]:
    if gpus.isdigit():
        n = int(gpus)
        if n > 16:
            raise TargetNotFoundError(f"--gpus {n}: llama.cpp drives at most 16 devices (llama_max_devices)")
        if n and not p.gpus:
            raise TargetNotFoundError("--gpus N copies the profile's GPU, but it has none; "
                                      "name them instead, e.g. --gpus rtx3090,rtx3090")
        return [p.gpus[0].model_copy(update={"index": i}) for i in range(n)]
    names = [x.strip() for x in gpus.split(",") if x.strip()]
    if len(names) > 16:
        raise TargetNotFoundError(f"--gpus names {len(names)} GPUs; llama.cpp drives at most 16 (llama_max_devices)")
    new = []
    for i, name in enumerate(names):
        spec = lookup_gpu_spec(name) or lookup_gpu_spec("rtx " + name)
        if not spec:
            raise TargetNotFoundError(f"--gpus: '{name}' is not in the GPU spec table "
                                      "(planner/data/gpus.yaml); give a YAML target instead")
        new.append(_gpu(i, {"spec": spec.name}, p.ram.total_bytes))
    return new


def _override_vram(gpus: list[GPU], vram_gib: str) -> list[GPU]:
    try:
        vals = [float(v) for v in str(vram_gib).split(",")]
    except ValueError:
        raise TargetNotFoundError(f"--vram takes GiB per GPU, like 24 or 24,12; got '{vram_gib}'") from None
    if not gpus:
        raise TargetNotFoundError("--vram given but the target has no GPU; add --gpus too")
    if len(vals) == 1:
        vals = vals * len(gpus)
    if len(vals) != len(gpus):
        raise TargetNotFoundError(f"--vram lists {len(vals)} values for {len(gpus)} GPUs")
    bad = [v for v in vals if not (math.isfinite(v) and 0 < v * GiB <= MAX_BYTES)]
    if bad:
        raise TargetNotFoundError(f"--vram takes a positive size in GiB per GPU, like 24 or 24,12; got {bad[0]:g}")
    return [GPU.model_validate(g.model_dump() | {"vram_total_bytes": int(v * GiB), "vram_free_bytes": None})
            for g, v in zip(gpus, vals, strict=True)]


def resolve_target(target: str = "auto", *, vram_gib: str | None = None, ram_gib: float | None = None,
                   gpus: str | None = None, measure_bandwidth: bool = True) -> HardwareProfile:
    """'auto' detects this machine; anything else is a profile name, alias or YAML path."""
    if target in ("auto", "local", "this"):
        from planner.profile.detect import detect_hardware
        profile = detect_hardware(measure_bandwidth=measure_bandwidth)
    else:
        profile = load_target(target)
    return apply_overrides(profile, vram_gib=vram_gib, ram_gib=ram_gib, gpus=gpus)
