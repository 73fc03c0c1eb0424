"""Defect annotations as the competition ships them: CSV tables of run-length encoded masks.

Two layouts exist and both load into one ``Annotations``:

- 2019: ``ImageId_ClassId,EncodedPixels``, a row for every (image, class), ``"0002cc93b.jpg_1"``;
- later: ``ImageId,ClassId,EncodedPixels`` (columns in any order), often only non-empty rows.

Every problem is reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steelseg.errors import SteelsegError
from steelseg import rle

LAYOUT_2019 = "2019"
LAYOUT_LONG = "long"
LAYOUTS = (LAYOUT_2019, LAYOUT_LONG)
HEADERS = {
    LAYOUT_2019: ["ImageId_ClassId", "EncodedPixels"],
    LAYOUT_LONG: ["ImageId", "ClassId", "EncodedPixels"],
}


class AnnotationError(SteelsegError, ValueError):
    """A table or row that cannot be read; the message starts with ``file:line:``."""


@dataclass
class Annotations:
    """Masks of a set of images, keyed by (image id, class id); class ids start at 1.

    ``encoded`` holds only non-empty masks; ``image_ids`` lists every image the table names
    (with the long layout that can leave out images without defects).
    """

    image_ids: list[str] = field(default_factory=list)
    encoded: dict[tuple[str, int], str] = field(default_factory=dict)
    class_ids: set[int] = field(default_factory=set)
    source: str = "<memory>"
    lines: dict[tuple[str, int], int] = field(default_factory=dict)

    def where(self, image_id: str, class_id: int) -> str:
        line = self.lines.get((image_id, class_id))
        return f"{self.source}:{line}" if line else self.source

    def get(self, image_id: str, class_id: int) -> str:
        return self.encoded.get((image_id, class_id), "")

    def mask(self, image_id: str, class_id: int, shape: tuple[int, int]) -> np.ndarray:
        """Decode one mask to (H, W) bool; errors name the table's file and line."""
        try:
            return rle.decode(self.get(image_id, class_id), shape)
        except rle.RLEError as err:
            raise AnnotationError(f"{self.where(image_id, class_id)}: image {image_id} class {class_id}: {err}") from None

    def masks(self, image_id: str, num_classes: int, shape: tuple[int, int]) -> np.ndarray:
        """All class masks of one image: (num_classes, H, W) bool."""
        return np.stack([self.mask(image_id, c, shape) for c in range(1, num_classes + 1)])

    def check_classes(self, num_classes: int) -> None:
        """Reject class ids outside 1..num_classes, naming the first offending row."""
        for (image_id, class_id), line in sorted(self.lines.items(), key=lambda item: item[1]):
            if not 1 <= class_id <= num_classes:
                raise AnnotationError(
                    f"{self.source}:{line}: unknown class id {class_id} for image {image_id} "
                    f"(expected 1..{num_classes})"
                )

    def add(self, image_id: str, class_id: int, encoded: str, line: int = 0) -> None:
        key = (image_id, class_id)
        if key in self.lines or key in self.encoded:
            first = self.lines.get(key)
            raise AnnotationError(
                f"{self.source}:{line}: duplicate row for image {image_id} class {class_id}"
                + (f" (first at line {first})" if first else "")
            )
        if image_id not in self._seen:
            self._seen.add(image_id)
            self.image_ids.append(image_id)
        self.class_ids.add(class_id)
        self.lines[key] = line
        if encoded:
            self.encoded[key] = encoded

    def add_masks(self, image_id: str, masks: np.ndarray) -> None:
        """Add every class mask of one image: (C, H, W) bool, class ids 1..C."""
        for class_id, mask in enumerate(masks, start=1):
            self.add(image_id, class_id, rle.encode(mask))

    def __post_init__(self) -> None:
        self._seen = set(self.image_ids)


def read_annotations(path: str | os.PathLike, num_classes: int | None = None) -> Annotations:
    """Read a table in either layout, checking every encoded-pixels string's syntax.

    With ``num_classes``, class ids outside 1..num_classes are an error too. Runs past the end
    of an image are caught when a mask is decoded, since only the image knows its size.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    annotations = Annotations(source=str(path))
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        layout, columns = _layout(header, path)
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise AnnotationError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
            image_id, class_id, encoded = _parse_row(row, layout, columns, f"{path}:{line}")
            annotations.add(image_id, class_id, encoded, line)
    if num_classes is not None:
        annotations.check_classes(num_classes)
    return annotations


def _layout(header: list[str] | None, path: Path) -> tuple[str, dict[str, int]]:
    if header is None:
        raise AnnotationError(f"{path}:1: empty file, expected a header")
    names = [name.strip() for name in header]
    for layout, required in HEADERS.items():
        if sorted(names) == sorted(required):
            return layout, {name: names.index(name) for name in required}
    expected = " or ".join(",".join(h) for h in HEADERS.values())
    raise AnnotationError(f"{path}:1: unknown header {','.join(names)!r}; expected {expected}")


def _parse_row(row: list[str], layout: str, columns: dict[str, int], where: str) -> tuple[str, int, str]:
    encoded = row[columns["EncodedPixels"]].strip()
    if layout == LAYOUT_2019:
        image_id, _, class_text = row[columns["ImageId_ClassId"]].strip().rpartition("_")
    else:
        image_id, class_text = row[columns["ImageId"]].strip(), row[columns["ClassId"]].strip()
    if not image_id:
        raise AnnotationError(f"{where}: missing image id")
    try:
        class_id = int(class_text)
    except ValueError:
        raise AnnotationError(f"{where}: class id {class_text!r} of image {image_id} is not an integer") from None
    if class_id < 1:
        raise AnnotationError(f"{where}: unknown class id {class_id} for image {image_id} (class ids start at 1)")
    try:
        rle.parse(encoded)
    except rle.RLEError as err:
        raise AnnotationError(f"{where}: image {image_id} class {class_id}: {err}") from None
    return image_id, class_id, encoded
