"""Option values checked where they are parsed: one line naming the option, what is wrong, what to give.

argparse's own error prints the whole usage block before the message; `Parser` prints one line
(exit 2, as argparse does). Each converter refuses what llama.cpp would refuse or what no box has:
NaN and infinities, negative sizes, more devices than llama.cpp drives (llama_max_devices() = 16,
src/llama.cpp), more sequences than it allows (LLAMA_MAX_SEQ = 256, src/llama-cparams.h).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import NoReturn

MAX_DEVICES = 16            # llama_max_devices(), vendor/llama.cpp/src/llama.cpp
MAX_SEQ = 256               # LLAMA_MAX_SEQ, vendor/llama.cpp/src/llama-cparams.h
MAX_GIB = 1 << 16           # 64 TiB: more memory than any one box has, per GPU or of RAM
MAX_TOKENS = 1 << 27        # 134M tokens of context: 10x the longest trained context published (10M)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: 'plan: error: argument --vram: ...' (exit 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (plan --help for the options)", file=sys.stderr)
        raise SystemExit(2)


def _fail(msg: str) -> NoReturn:
    raise argparse.ArgumentTypeError(msg)


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        _fail(f"expected a number, got '{text}'")
    if not math.isfinite(v):
        _fail(f"expected a finite number, got '{text}'")
    return v


def count(lo: int, hi: int, what: str = "") -> Callable[[str], int]:
    """An integer from lo to hi."""
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            _fail(f"expected a whole number{what}, got '{text}'")
        if not lo <= v <= hi:
            _fail(f"expected {lo} to {hi}{what}, got {v}")
        return v
    return conv


def number(lo: float, hi: float, what: str = "", open_low: bool = False) -> Callable[[str], float]:
    """A finite number from lo (exclusive when open_low) to hi."""
    def conv(text: str) -> float:
        v = _float(text)
        if v < lo or (open_low and v == lo) or v > hi:
            span = f"more than {lo:g} and at most {hi:g}" if open_low else f"{lo:g} to {hi:g}"
            _fail(f"expected {span}{what}, got {text}")
        return v
    return conv


def gpu_layers(text: str) -> int | None:
    """-ngl as llama.cpp takes it: a count of layers, or 'all' / 'auto' (None: the planner chooses)."""
    if text.lower() in ("all", "auto"):
        return None
    return count(0, 100_000, " layers (or 'all')")(text)


def vram_list(text: str) -> str:
    """--vram 24 or 24,12: GiB per GPU, each more than 0."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > MAX_DEVICES:
        _fail(f"{len(parts)} values; llama.cpp drives at most {MAX_DEVICES} devices")
    for p in parts:
        number(0, MAX_GIB, " GiB per GPU, like 24 or 24,12", open_low=True)(p)
    return ",".join(parts)


def gpu_list(text: str) -> str:
    """--gpus N (0 to 16 copies) or names: rtx3090,rtx3090."""
    t = text.strip()
    n = t.count(",") + 1
    if t.lstrip("-").isdigit():
        count(0, MAX_DEVICES, f" GPUs (llama.cpp drives at most {MAX_DEVICES})")(t)
    elif n > MAX_DEVICES:
        _fail(f"{n} GPUs named; llama.cpp drives at most {MAX_DEVICES}")
    elif not t or any(not x.strip() for x in t.split(",")):
        _fail(f"expected a count or GPU names like rtx3090,rtx3090, got '{text}'")
    return t


def shares(text: str) -> list[float]:
    """-ts 3,1: a finite share per GPU, none negative, not all 0."""
    parts = text.split(",")
    if len(parts) > MAX_DEVICES:
        _fail(f"{len(parts)} shares; llama.cpp drives at most {MAX_DEVICES} devices")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if not vals or not all(math.isfinite(v) and 0 <= v <= 1e9 for v in vals) or not any(vals):
        _fail(f"takes a finite share per GPU, none negative and not all 0, like 3,1; got '{text}'")
    return vals


def cpu_override(spec: str) -> str:
    """-ot 'REGEX=CPU': only host placement is modelled; the regex must compile (llama.cpp's std::regex
    would throw on it at load time)."""
    pattern, _, buf = spec.rpartition("=")
    if not pattern or buf.upper() != "CPU":
        _fail(f"takes REGEX=CPU (e.g. 'ffn_.*_exps=CPU'); got '{spec}'")
    try:
        re.compile(pattern)
    except re.error as exc:
        _fail(f"'{pattern}' is not a regular expression ({exc}); e.g. 'ffn_.*_exps=CPU'")
    return pattern


def on_off(v: str) -> bool:
    v = v.lower()
    if v in ("on", "1", "true", "yes", "auto"):
        return True
    if v in ("off", "0", "false", "no"):
        return False
    _fail(f"expected on or off, got '{v}'")


def size_range(text: str) -> tuple[float | None, float | None]:
    """--size in billions of parameters: '7-14', '-8' (at most 8B), '30-' (at least 30B) or '8' (up to 8B)."""
    t = text.strip().lower().replace("b", "")
    lo_s, sep, hi_s = t.partition("-")
    try:
        lo = float(lo_s) if lo_s else None
        hi = float(hi_s) if hi_s else None
    except ValueError:
        _fail(f"expected billions of parameters as MIN-MAX, -MAX, MIN- or MAX (e.g. 7-14), got '{text}'")
    if not sep:
        lo, hi = None, lo
    if lo is None and hi is None:
        _fail(f"expected a bound, e.g. 7-14 or -8, got '{text}'")
    if any(v is not None and not (math.isfinite(v) and v >= 0) for v in (lo, hi)) or (
            lo is not None and hi is not None and lo > hi):
        _fail(f"expected 0 <= MIN <= MAX billions, got '{text}'")
    return lo, hi


def month(text: str) -> str:
    """--released-after YYYY-MM (or YYYY): a month that exists."""
    m = re.fullmatch(r"(\d{4})(?:-(\d{1,2}))?", text.strip())
    if not m or not 1 <= int(m.group(2) or 1) <= 12:
        _fail(f"expected a month as YYYY-MM (or a year YYYY), got '{text}'")
    return f"{m.group(1)}-{int(m.group(2) or 1):02d}"
