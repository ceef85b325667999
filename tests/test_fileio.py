"""planner/fileio.py: regular files only, symlinks written through, nothing replaced unasked, unique temporaries."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from planner.errors import PlannerError
from planner.fileio import atomic_output, write_text


def test_writes_a_new_file_with_ordinary_permissions(tmp_path):
    p = tmp_path / "plan.yaml"
    write_text(str(p), "a: 1\n")
    assert p.read_text() == "a: 1\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["plan.yaml"]  # no temporary left


def test_an_existing_file_needs_force(tmp_path):
    p = tmp_path / "Modelfile"
    p.write_text("mine")
    with pytest.raises(PlannerError, match="exists; add --force"):
        write_text(str(p), "new")
    assert p.read_text() == "mine"
    write_text(str(p), "new", force=True)
    assert p.read_text() == "new"


@pytest.mark.parametrize("path", ["/dev/null", "/dev/full", "/dev/zero"])
def test_a_device_is_refused_even_with_force(path):
    before = os.stat(path)
    with pytest.raises(PlannerError, match="character device"):
        write_text(path, "x", force=True)
    after = os.stat(path)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_a_directory_and_a_fifo_are_refused(tmp_path):
    with pytest.raises(PlannerError, match="is a directory"):
        write_text(str(tmp_path), "x", force=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(PlannerError, match="is a FIFO"):
        write_text(str(fifo), "x", force=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_symlink_is_written_through_never_replaced(tmp_path):
    target = tmp_path / "real.yaml"
    target.write_text("old")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    with pytest.raises(PlannerError, match="exists"):
        write_text(str(link), "new")
    write_text(str(link), "new", force=True)
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "made.yaml")
    write_text(str(dangling), "made")
    assert dangling.is_symlink() and (tmp_path / "made.yaml").read_text() == "made"


def test_a_missing_folder_is_one_line(tmp_path):
    with pytest.raises(PlannerError, match="does not exist"):
        write_text(str(tmp_path / "no" / "such" / "x.yaml"), "x")


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(str(p), force=True) as tmp:
        open(tmp, "w").write("half")
        raise RuntimeError("the quantizer crashed")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["x.gguf"]


def test_parallel_writers_to_one_path_do_not_share_a_temporary(tmp_path):
    p = str(tmp_path / "out.yaml")
    errors = []

    def write(i):
        try:
            write_text(p, f"writer {i}\n" * 1000, force=True)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = open(p).read()
    assert len(set(text.splitlines())) == 1  # one writer's whole file, not a mix
    assert os.listdir(tmp_path) == ["out.yaml"]


def test_without_force_only_one_of_racing_writers_creates_the_file(tmp_path):
    p = str(tmp_path / "new.yaml")
    results = []

    def write(i):
        try:
            write_text(p, f"writer {i}\n")
            results.append("ok")
        except PlannerError:
            results.append("refused")
    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1 and results.count("refused") == 7
