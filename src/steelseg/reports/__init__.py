"""Pages people look at: a submission against the truth (``report``), a data set (``eda``) and
a run's training curves (``curves``), as one HTML page with PNG figures beside it.

Matplotlib is imported only when a figure is drawn (``figures.py``), never by the modules the
CLI imports to build its parser, so ``predict`` and ``serve`` never load it.
"""

from __future__ import annotations

import os
from pathlib import Path

from steelseg.errors import SteelsegError


class ReportError(SteelsegError, ValueError):
    """Inputs a report cannot be made from; the message names the file, row or option."""


def whole_number(option: str, text: str | int, minimum: int) -> int:
    """``text`` (an option's value) as an int >= ``minimum``, else a one-line ReportError naming ``option``."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ReportError(f"{option}: expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise ReportError(f"{option}: expected a whole number >= {minimum}, got {value}")
    return value


def out_folder(out: str | os.PathLike, figures_dir: str) -> Path:
    """Make the output folder ``out`` and its ``figures_dir``; a file in the way is a ReportError."""
    out = Path(out)
    for folder in (out, out / figures_dir):
        if folder.exists() and not folder.is_dir():
            raise ReportError(f"--out {out}: {folder} exists and is not a folder")
    (out / figures_dir).mkdir(parents=True, exist_ok=True)
    return out
