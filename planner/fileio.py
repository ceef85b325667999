"""Writing a file the user named, and nothing else: the one atomic writer every output and cache uses.

- Only regular files are written. A device, a directory, a FIFO or a socket at the path is refused
  (as root, replacing /dev/full with a regular file would destroy it).
- A symlink is written through (its target is the file replaced), never replaced itself.
- An existing file is replaced only with force; without it the new file appears by a hard link,
  which fails if another writer made the file in between (no check-then-replace race).
- The data goes to a uniquely named temporary file beside the destination, so parallel writers
  never share a name and a failed or interrupted write leaves the old file whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator

from planner.errors import PlannerError


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def kind_of(path: str | os.PathLike) -> str:
    """'a directory', 'a FIFO', 'a character device', ... for what is at path (it exists)."""
    return _kind(os.stat(path).st_mode)


def destination(path: str, force: bool) -> str:
    """The regular file that writing `path` replaces or creates (a symlink's target); refuses what is
    not a regular file, a missing folder, and an existing file without force."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        parent = os.path.dirname(real) or "."
        if not os.path.isdir(parent):
            raise PlannerError(f"cannot write {path}: the folder {os.path.dirname(path) or parent} "
                               "does not exist") from None
        return real
    except OSError as exc:
        raise PlannerError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PlannerError(f"{path} is {_kind(st.st_mode)}; the planner writes regular files only: "
                           "give a file path")
    if not force:
        raise PlannerError(f"{path} exists; add --force to overwrite it")
    return real


@contextlib.contextmanager
def atomic_output(path: str, force: bool = False, suffix: str = "") -> Iterator[str]:
    """Yields a unique temporary path beside `path`'s destination; when the block ends without an error
    the temporary file becomes the destination (see the module's rules), else it is removed.
    suffix: the temporary name's ending, for writers that insist on one (numpy's .npy)."""
    dest = destination(path, force)
    folder, name = os.path.split(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".part{suffix}", dir=folder or ".")
    except OSError as exc:
        raise PlannerError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield tmp
        _match_mode(tmp, dest)
        _commit(tmp, dest, path, force)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _match_mode(tmp: str, dest: str) -> None:
    """The permissions a plain open() would give (or the replaced file's), not mkstemp's 0600."""
    try:
        mode = stat.S_IMODE(os.stat(dest).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def _commit(tmp: str, dest: str, shown: str, force: bool) -> None:
    try:
        if force:
            os.replace(tmp, dest)
            return
        try:
            os.link(tmp, dest)  # fails if the file appeared meanwhile: never replaced unasked
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise PlannerError(f"{shown} exists; add --force to overwrite it") from None
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # no hard links here: claim it
            os.close(fd)
            os.replace(tmp, dest)
    except OSError as exc:
        raise PlannerError(f"cannot write {shown}: {exc.strerror or exc}") from None


def write_text(path: str, text: str, force: bool = False) -> None:
    """`text` into `path`, atomically, by the module's rules."""
    with atomic_output(path, force) as tmp:
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise PlannerError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_cache(path: str, text: str) -> None:
    """A cache file the planner owns: replaced freely, atomically, never shared with a parallel writer."""
    write_text(path, text, force=True)
