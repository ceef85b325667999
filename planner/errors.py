"""One exception per failure a user can cause or fix; the CLI prints the message as one line.

Each message says what is wrong and what to do, so nobody needs a traceback to act on it.
"""

from __future__ import annotations


class PlannerError(Exception):
    """Base class: a problem the user can understand and act on (exit code 2)."""

    exit_code = 2


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


class DoesNotFitError(PlannerError):
    """Nothing fits the target; the message names the nearest thing that would (exit 3)."""

    exit_code = 3
