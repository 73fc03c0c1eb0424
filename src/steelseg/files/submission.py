"""Write predictions as a competition submission: every image x every class, atomically."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from steelseg.errors import SteelsegError
from steelseg.files.annotations import HEADERS, LAYOUT_2019, LAYOUT_LONG, LAYOUTS, Annotations
from steelseg.files.atomic import atomic_open


class OutputPathError(SteelsegError, ValueError):
    """An output file that cannot be written where it was asked for."""


def check_output_file(path: str | os.PathLike, option: str = "--out") -> None:
    """Before any work: ``path`` must be a file name whose folder is, or can become, a folder
    (not an existing folder itself, nor below a file)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; give the name of a file to write")
    ancestor = nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise OutputPathError(f"{option} {path}: {ancestor} is a file, not a folder")


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists: where a new output would be created."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_submission(
    path: str | os.PathLike,
    annotations: Annotations,
    num_classes: int,
    layout: str = LAYOUT_LONG,
    include_empty: bool = True,
) -> int:
    """Write one row per (image, class) for every image in ``annotations.image_ids`` and class
    1..num_classes, with an empty EncodedPixels where there is no defect, as the competition
    expects. ``include_empty=False`` writes only defects, like the real train.csv. Returns the
    number of rows written.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown submission layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    annotations.check_classes(num_classes)
    check_output_file(path, "submission")
    rows = 0
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADERS[layout])
        for image_id in annotations.image_ids:
            for class_id in range(1, num_classes + 1):
                encoded = annotations.get(image_id, class_id)
                if not encoded and not include_empty:
                    continue
                if layout == LAYOUT_2019:
                    writer.writerow([f"{image_id}_{class_id}", encoded])
                else:
                    writer.writerow([image_id, class_id, encoded])
                rows += 1
    return rows


def with_every_image(annotations: Annotations, image_ids: list[str], num_classes: int) -> Annotations:
    """``annotations`` listing every image of ``image_ids``, in that order: an image it lacks
    (left out by ``--skip-bad``) gets an empty mask for each class 1..num_classes, since a
    competition submission must name every test image."""
    result = Annotations(source=annotations.source)
    for image_id in image_ids:
        for class_id in range(1, num_classes + 1):
            result.add(image_id, class_id, annotations.get(image_id, class_id))
    return result
