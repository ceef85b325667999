"""Binary units, one truth: byte counts are ints named *_bytes; GiB and MiB only appear when
printing or reading what a user typed (llama.cpp logs its buffers in MiB = 2^20 bytes)."""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def gib(n: int | float) -> str:
    """'1.25 GiB', as the terminal tables print a byte count."""
    return f"{n / GiB:.2f} GiB"
