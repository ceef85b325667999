"""Check the installed planner from outside the source tree (run from a folder that is not the checkout).

The test suite imports the checkout, so it cannot see what packaging lost. This imports every
subpackage of the installed wheel, checks that each package folder of the checkout shipped (with
its data files), and starts `plan wizard` in a pseudo-terminal: its first screen must show, with no
traceback.

    python .ci/check_installed.py CHECKOUT
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import pty
import select
import signal
import sys
import time
from pathlib import Path

FIRST_SCREEN = ("hardware", "model", "goal")  # the wizard's tab titles
WIZARD_SECONDS = 60


def source_packages(checkout: Path) -> dict[str, set[str]]:
    """Every package folder of the checkout's planner/ and the data files in it."""
    out = {}
    for init in (checkout / "planner").rglob("__init__.py"):
        d = init.parent
        if "__pycache__" in d.parts:
            continue
        name = ".".join(d.relative_to(checkout).parts)
        out[name] = {p.name for p in d.iterdir() if p.is_file() and p.suffix in (".json", ".yaml", ".txt", ".tcss")}
    return out


def check_imports(checkout: Path) -> list[str]:
    import planner
    where = Path(planner.__file__).resolve().parent
    if checkout.resolve() in where.parents or where == checkout.resolve() / "planner":
        return [f"planner is imported from the checkout ({where}), not the installed wheel"]
    problems = []
    installed = {"planner"} | {m.name for m in pkgutil.walk_packages(planner.__path__, "planner.") if m.ispkg}
    for name, data in sorted(source_packages(checkout).items()):
        if name not in installed:
            problems.append(f"package {name} is not in the installed wheel")
            continue
        mod = importlib.import_module(name)
        shipped = {p.name for p in Path(mod.__file__).parent.iterdir()}
        problems += [f"{name}: data file {f} is not in the wheel" for f in sorted(data - shipped)]
    for m in pkgutil.walk_packages(planner.__path__, "planner."):
        try:
            importlib.import_module(m.name)
        except Exception as exc:  # noqa: BLE001 - report every module that fails, then fail
            problems.append(f"import {m.name}: {type(exc).__name__}: {exc}")
    print(f"installed wheel at {where}: {len(installed)} packages, every module imports"
          if not problems else f"installed wheel at {where}: {len(problems)} problems")
    return problems


def check_wizard() -> list[str]:
    """`plan wizard --target rtx4090` in an 80x24 pseudo-terminal until its first screen is drawn."""
    import fcntl
    import struct
    import termios
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(TERM="xterm-256color", COLUMNS="80", LINES="24")
        os.execvp("plan", ["plan", "wizard", "--target", "rtx4090"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen, deadline, text = b"", time.monotonic() + WIZARD_SECONDS, ""
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            text = seen.decode("utf-8", "replace")
            if all(w in text.lower() for w in FIRST_SCREEN) or "Traceback" in text:
                time.sleep(1.0)  # let a late traceback arrive too
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    pass
                text = seen.decode("utf-8", "replace")
                break
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    if "Traceback" in text or "plan: error" in text:
        tail = text[text.find("Traceback"):][:2000] if "Traceback" in text else text[-2000:]
        return [f"plan wizard failed in a terminal:\n{tail}"]
    if not all(w in text.lower() for w in FIRST_SCREEN):
        return [f"plan wizard drew no first screen in {WIZARD_SECONDS} s (tabs {FIRST_SCREEN} not seen); "
                f"it printed {len(seen)} bytes, last: {text[-500:]!r}"]
    print(f"plan wizard drew its first screen in a pseudo-terminal ({len(seen)} bytes)")
    return []


def main() -> int:
    checkout = Path(sys.argv[1]).resolve()
    if Path.cwd().resolve() == checkout or checkout in Path.cwd().resolve().parents:
        print("run this from a folder outside the checkout", file=sys.stderr)
        return 2
    problems = check_imports(checkout) + check_wizard()
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
