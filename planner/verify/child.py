"""How a child process ended, in words: llama.cpp runs in children so that its crash is not ours."""

from __future__ import annotations

import signal

_WHY = {signal.SIGKILL: "often the kernel's out-of-memory killer, or a user's kill -9",
        signal.SIGSEGV: "a crash inside llama.cpp", signal.SIGABRT: "llama.cpp aborted (GGML_ASSERT)",
        signal.SIGBUS: "a memory-mapped file changed or vanished under it", signal.SIGTERM: "asked to stop"}


def exit_text(returncode: int | None) -> str:
    """'exit 1', or 'killed by signal 9 (SIGKILL: ...)' for a negative subprocess return code."""
    if returncode is None or returncode >= 0:
        return f"exit {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"killed by signal {-returncode}"
    why = _WHY.get(sig)
    return f"killed by signal {-returncode} ({sig.name}{': ' + why if why else ''})"
