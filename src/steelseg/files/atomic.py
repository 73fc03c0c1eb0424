"""Write files so that a crash never leaves a half-written output behind.

Each writer fills a temporary file next to the target and renames it over the target: the
rename is atomic on POSIX, so readers see either the old file or the complete new one. The file
is synced to disk before the rename and its folder after it, so a power cut, not only a killed
process, leaves the old file or the complete new one.
``tempfile.mkstemp`` creates that file readable by its owner only (0600); before the rename it
gets the mode a plain ``open`` would give (0666 minus the umask), so other users and containers
can read the outputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_PROC_STATUS = Path("/proc/self/status")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        _fsync(tmp_path)  # the data on disk before the name points at it: a power cut leaves old or new
        os.replace(tmp_path, path)
        _fsync(path.parent)  # and the rename itself
    finally:
        tmp_path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and folders on some) cannot be synced: the rename still holds
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open`` for writing, atomically: the target appears only once the file is complete."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle  # closed, then synced and renamed by atomic_path


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """The temporary files that writes into ``folder`` killed before their rename left behind
    (a SIGKILL runs no cleanup). Nothing reads them; a resumed run removes them."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file()) if folder.is_dir() else []


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0)  # no /proc (macOS, old kernels): the brief race is the only way to ask
    os.umask(old)
    return old
