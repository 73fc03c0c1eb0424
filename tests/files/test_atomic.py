import os
import stat
from pathlib import Path

import pytest

from steelseg.files import atomic
from steelseg.files.atomic import atomic_open, atomic_path, current_umask, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.csv"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("half a new fi")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_failed_atomic_path_keeps_the_old_file_and_its_mode(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old")
    path.chmod(0o640)
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"new")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_write_creates_parent_folders(tmp_path):
    write_text(tmp_path / "a" / "b" / "c.txt", "x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"


def _write_text(path):
    write_text(path, "x")


def _atomic_open(path):
    with atomic_open(path, "wb") as handle:
        handle.write(b"x")


def _atomic_path(path):
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"x")


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("writer", [_write_text, _atomic_open, _atomic_path])
@pytest.mark.parametrize(
    "mask, mode",
    [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o000, 0o666)],
    ids=["umask 022", "umask 077", "umask 002", "umask 000"],
)
def test_outputs_get_the_mode_a_plain_open_would_give(tmp_path, umask, writer, mask, mode):
    umask(mask)
    writer(tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == mode
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    assert stat.S_IMODE(plain.stat().st_mode) == mode  # the reference: open() under the same umask


def test_current_umask_reads_without_changing_it(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # still set


def test_current_umask_without_proc(tmp_path, umask, monkeypatch):
    monkeypatch.setattr(atomic, "_PROC_STATUS", tmp_path / "no-such-status")
    umask(0o037)
    assert current_umask() == 0o037
    assert os.umask(0o037) == 0o037  # put back


def test_a_killed_write_leaves_the_old_file_and_a_leftover_that_leftovers_finds(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "resume.ckpt"
    path.write_bytes(b"old")
    (tmp_path / "notes.tmp").write_text("mine")  # not hidden: not a write of ours
    kill_mid_write = (
        "import os, signal, sys; from steelseg.files.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half a checkpo')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs\n"
    )
    result = subprocess.run([sys.executable, "-c", kill_mid_write, str(path)])
    assert result.returncode == -signal.SIGKILL
    assert path.read_bytes() == b"old"
    left = atomic.leftovers(tmp_path)
    assert [p.name.startswith(".resume.ckpt.") and p.name.endswith(".tmp") for p in left] == [True]
    assert left[0].read_bytes() == b"half a checkpo"
    assert atomic.leftovers(tmp_path / "absent") == []


@pytest.mark.parametrize("writer", ["write_text", "atomic_path"])
def test_the_file_is_synced_before_the_rename_and_its_folder_after(tmp_path, monkeypatch, writer):
    """A power cut must find the old file or the complete new one: data synced before the name
    points at it, the folder (the rename) synced after."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out.txt"
    if writer == "write_text":
        write_text(target, "new")
    else:
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).name.startswith(".out.txt.")  # the temporary file, before the rename
    assert events[2][1] == str(tmp_path)  # the folder, after
    assert target.read_text() == "new"
