"""One exception per failure a user can cause or fix; the CLI prints the message as one line.

Each message says what is wrong and what to do, so nobody needs a traceback to act on it.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """The CLI's exit codes (README.md, Quick start)."""
    OK = 0
    USER_ERROR = 2  # a PlannerError: one line on stderr says what is wrong and what to do
    DOES_NOT_FIT = 3  # nothing fits the target; the output names the nearest thing that would
    VERIFY_FAILED = 4  # plan verify measured the plan outside its goals, or it did not load
    INTERRUPTED = 130  # Ctrl-C


class PlannerError(Exception):
    """Base class: a problem the user can understand and act on (Exit.USER_ERROR)."""

    exit_code = Exit.USER_ERROR


class ModelNotFoundError(PlannerError):
    """The model name matches nothing in the catalog, on disk, in Ollama or on the Hub."""


class TargetNotFoundError(PlannerError):
    """--target names no bundled profile and no readable YAML file."""


class GGUFError(PlannerError):
    """A GGUF header that is not GGUF, is cut short before its tensor list, or is hostile."""


class OfflineError(PlannerError):
    """A network source was asked for while offline (or unreachable) with nothing cached."""


class InvalidOptionError(PlannerError):
    """An option value llama.cpp would reject (unknown quant type, negative context...)."""

