"""Defect annotations as the competition ships them: CSV tables of run-length encoded masks.

Two layouts exist and both load into one ``Annotations``:

- 2019: ``ImageId_ClassId,EncodedPixels``, a row for every (image, class), ``"0002cc93b.jpg_1"``;
- later: ``ImageId,ClassId,EncodedPixels`` (columns in any order), often only non-empty rows.

Every problem is reported as ``file:line: what is wrong``. A row that repeats an earlier one
(same image, class and mask) is harmless and read once; one that gives the same (image, class)
another mask is an error naming both lines. With ``skip_bad`` bad rows are collected instead
(``Annotations.bad_rows``), each with the image whose labels it leaves incomplete.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steelseg.core import rle
from steelseg.errors import SteelsegError

LAYOUT_2019 = "2019"
LAYOUT_LONG = "long"
LAYOUTS = (LAYOUT_2019, LAYOUT_LONG)
HEADERS = {
    LAYOUT_2019: ["ImageId_ClassId", "EncodedPixels"],
    LAYOUT_LONG: ["ImageId", "ClassId", "EncodedPixels"],
}


# A 256x1600 mask alternating every pixel is a 2.5 MB string; csv's default field limit
# (131,072 characters) would refuse legitimate, if noisy, masks.
FIELD_LIMIT = 1 << 26
_CLASS_ID = re.compile(r"-?[0-9]+")


class AnnotationError(SteelsegError, ValueError):
    """A table or row that cannot be read; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class BadRow:
    """A row that ``read_annotations(skip_bad=True)`` left out: where (``file:line``), why, and the
    image whose labels it leaves incomplete (None when the row names no image)."""

    where: str
    reason: str
    image_id: str | None

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class _RowProblem(Exception):
    def __init__(self, reason: str, image_id: str | None):
        super().__init__(reason)
        self.image_id = image_id


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
    bad_rows: list[BadRow] = field(default_factory=list)  # with skip_bad only

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
            raise AnnotationError(
                f"{self.where(image_id, class_id)}: image {image_id} class {class_id}: {err}"
            ) from None

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


def read_annotations(path: str | os.PathLike, num_classes: int | None = None, skip_bad: bool = False) -> Annotations:
    """Read a table in either layout, checking every encoded-pixels string's syntax.

    With ``num_classes``, class ids outside 1..num_classes are an error too. Runs past the end
    of an image are caught when a mask is decoded, since only the image knows its size. With
    ``skip_bad`` a bad row is recorded in ``bad_rows`` instead of stopping the read; a bad file
    (missing, not text, no known header) still raises.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    annotations = Annotations(source=str(path))
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    try:
        header = next(reader, None)
        layout, columns = _layout(header, path)
        for row in reader:
            if any(cell.strip() for cell in row):
                _read_row(annotations, row, reader.line_num, layout, columns, len(header), num_classes, skip_bad)
    except csv.Error as err:
        raise AnnotationError(f"{path}:{reader.line_num}: not a CSV row ({err})") from None
    return annotations


def _text(path: Path) -> str:
    """The file's text: UTF-8 (with or without a BOM), or UTF-16 with a BOM (Excel's "Unicode
    text"). Read whole: a 7 MB table is small, and a decoding error can then name its line."""
    data = path.read_bytes()
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise AnnotationError(
            f"{path}:{line}: not {encoding.split('-sig')[0].upper()} text "
            f"(byte 0x{data[err.start]:02x}: {err.reason}); "
            "is it a CSV table?"
        ) from None


def _read_row(
    annotations: Annotations,
    row: list[str],
    line: int,
    layout: str,
    columns: dict[str, int],
    width: int,
    num_classes: int | None,
    skip_bad: bool,
) -> None:
    try:
        if len(row) != width:
            raise _RowProblem(f"expected {width} columns, got {len(row)}", _image_id_guess(row, layout, columns))
        image_id, class_id, encoded = _parse_row(row, layout, columns, num_classes)
        first = annotations.lines.get((image_id, class_id))
        if first is not None:
            if annotations.get(image_id, class_id).split() == encoded.split():
                return  # the same row again (tables joined twice): nothing new, nothing lost
            message = (
                f"duplicate row for image {image_id} class {class_id} (first at line {first}) with a different mask"
            )
            raise _RowProblem(message, image_id)
        annotations.add(image_id, class_id, encoded, line)
    except _RowProblem as err:
        if not skip_bad:
            raise AnnotationError(f"{annotations.source}:{line}: {err}") from None
        annotations.bad_rows.append(BadRow(f"{annotations.source}:{line}", str(err), err.image_id))


def _layout(header: list[str] | None, path: Path) -> tuple[str, dict[str, int]]:
    if header is None:
        raise AnnotationError(f"{path}:1: empty file, expected a header")
    names = [name.strip() for name in header]
    for layout, required in HEADERS.items():
        if sorted(names) == sorted(required):
            return layout, {name: names.index(name) for name in required}
    expected = " or ".join(",".join(h) for h in HEADERS.values())
    hint = next(
        (
            f" (separated by {name}? the columns must be separated by commas)"
            for sep, name in (("\t", "tabs"), (";", "semicolons"))
            if len(names) == 1 and sep in names[0]
        ),
        "",
    )
    raise AnnotationError(f"{path}:1: unknown header {','.join(names)!r}; expected {expected}{hint}")


def _image_id_guess(row: list[str], layout: str, columns: dict[str, int]) -> str | None:
    """The image a malformed row is about, if its id cell is there: its labels are incomplete."""
    column = columns["ImageId_ClassId" if layout == LAYOUT_2019 else "ImageId"]
    cell = row[column].strip() if column < len(row) else ""
    image_id = cell.rpartition("_")[0] if layout == LAYOUT_2019 else cell
    return image_id or None


def _parse_row(row: list[str], layout: str, columns: dict[str, int], num_classes: int | None) -> tuple[str, int, str]:
    encoded = row[columns["EncodedPixels"]].strip()
    if layout == LAYOUT_2019:
        key = row[columns["ImageId_ClassId"]].strip()
        image_id, underscore, class_text = key.rpartition("_")
        if not underscore:
            raise _RowProblem(f"ImageId_ClassId {key!r} does not end in _<class id> (e.g. 0002cc93b.jpg_1)", None)
    else:
        image_id, class_text = row[columns["ImageId"]].strip(), row[columns["ClassId"]].strip()
    if not image_id:
        raise _RowProblem("missing image id", None)
    if not _CLASS_ID.fullmatch(class_text):  # int() would also take "1_0", "+1" or " 1"
        raise _RowProblem(f"class id {class_text!r} of image {image_id} is not an integer", image_id)
    class_id = int(class_text)
    if class_id < 1:
        raise _RowProblem(f"unknown class id {class_id} for image {image_id} (class ids start at 1)", image_id)
    if num_classes is not None and class_id > num_classes:
        raise _RowProblem(f"unknown class id {class_id} for image {image_id} (expected 1..{num_classes})", image_id)
    try:
        rle.parse(encoded)
    except rle.RLEError as err:
        raise _RowProblem(f"image {image_id} class {class_id}: {err}", image_id) from None
    return image_id, class_id, encoded
