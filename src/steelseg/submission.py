"""Write predictions as a competition submission: every image x every class, atomically."""

from __future__ import annotations

import csv
import os

from steelseg.annotations import HEADERS, LAYOUT_2019, LAYOUT_LONG, LAYOUTS, Annotations
from steelseg.atomic import atomic_open


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
