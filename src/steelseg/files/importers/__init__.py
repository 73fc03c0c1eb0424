"""Data sets as users have them, converted to the mask-folder layout steelseg trains on.

``IMPORTERS`` maps a format to its reader ``(src, images, skip_bad) -> Imported``: ``labelme``
(a folder of LabelMe JSONs), ``coco`` (a COCO instances file), ``cvat`` (CVAT's "Segmentation
mask 1.1" export) and ``severstal`` (``train_images/`` + ``train.csv``). Each module's docstring
gives its class order, rasterising convention and errors; common to all:

- **class ids** are stated, deterministic orders: LabelMe labels sorted alphabetically, COCO
  categories by id, CVAT's labelmap order (background left out), Severstal's class ids;
- **overlap**: where annotations of different classes overlap, the higher class id wins,
  whatever their order in the file;
- **errors**: every user mistake is a ``ConvertError`` (or another ``SteelsegError``) of one line
  naming the file and the annotation or row; with ``skip_bad`` the image concerned is left out
  instead, listed in ``ConvertResult.skipped`` and in ``converted.json``. Refusals of the whole
  set (no annotation file, an unreadable category list or labelmap, an output folder that is
  not ours) are errors even then.

``convert`` writes ``OUT/images/``, ``OUT/masks/<stem>.png``, ``OUT/classes.json`` and
``OUT/converted.json`` (see ``output.py``: refusals, re-runs, atomic writes);
``as_dataset_folder`` is what a pipeline calls to train on any of these.
"""

from __future__ import annotations

import os
from pathlib import Path

from steelseg.files.importers.coco import read_coco
from steelseg.files.importers.common import MARKER, ConvertError
from steelseg.files.importers.cvat import read_cvat
from steelseg.files.importers.detect import FORMATS, detect_format
from steelseg.files.importers.labelme import read_labelme
from steelseg.files.importers.output import ConvertResult, check_out, fingerprint, recipe, reused, up_to_date, write
from steelseg.files.importers.severstal import read_severstal

IMPORTERS = {
    "labelme": read_labelme,
    "coco": read_coco,
    "cvat": read_cvat,
    "severstal": read_severstal,
}
TRAINABLE = ("severstal", "mask_folder")  # layouts files.datasets opens as they are

__all__ = [
    "FORMATS",
    "IMPORTERS",
    "MARKER",
    "ConvertError",
    "ConvertResult",
    "as_dataset_folder",
    "convert",
    "detect_format",
]


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str = "auto",
    images: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    reuse: bool = False,
) -> ConvertResult:
    """Convert the data set at ``src`` (format ``fmt``, or detected) into the mask folder ``out``.
    ``images``: the folder of the images, where the annotations do not say it. ``out`` must be
    new, empty or an earlier conversion of ``src``, which is rewritten (the same files again) or,
    with ``reuse`` and when it is complete and of the same inputs, kept (``result.reused``)."""
    src, out, images = Path(src), Path(out), Path(images) if images else None
    fmt = _format(src, fmt)
    previous = check_out(out, src, images)
    imported = IMPORTERS[fmt](src, images, skip_bad)
    settings = recipe(src, fmt, images, skip_bad)
    digest = fingerprint(imported, settings)
    if reuse and up_to_date(out, previous, settings, digest):
        return reused(out, previous)
    return write(imported, out, settings, digest, progress)


def as_dataset_folder(
    path: str | os.PathLike,
    work_dir: str | os.PathLike,
    images: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> Path:
    """A folder ``files.datasets.open_dataset`` opens: ``path`` itself when it is a Severstal or
    mask-folder layout, else its conversion in ``work_dir`` (the output folder itself), reused
    when ``converted.json`` there records a complete conversion of the same inputs (the same
    files, sizes and modification times) and redone otherwise."""
    fmt = detect_format(path)
    if fmt in TRAINABLE:
        return Path(path)
    return convert(path, work_dir, fmt, images, skip_bad, progress, reuse=True).out


def _format(src: Path, fmt: str) -> str:
    if not src.exists():
        raise ConvertError(f"{src}: not found")
    if fmt == "auto":
        fmt = detect_format(src)
    if fmt == "mask_folder":
        raise ConvertError(f"{src}: already a mask folder (images/ + masks/): train on it as it is")
    if fmt not in IMPORTERS:
        raise ConvertError(f"unknown format {fmt!r}; choose auto, {', '.join(IMPORTERS)}")
    return fmt
