"""``adversarial.csv``: each image's test-likeness (``ImageId,Set,TestLikeness``), written by
adversarial validation and read by ``pseudo --rank`` and by people choosing a hold-out."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from steelseg.errors import SteelsegError
from steelseg.files.atomic import atomic_open

TRAIN, TEST = "train", "test"
LIKENESS_HEADER = ["ImageId", "Set", "TestLikeness"]


class AdversarialError(SteelsegError, ValueError):
    """Image folders or options that cannot make an adversarial validation, or a test-likeness
    file that cannot be read (message ``file:line: ...``)."""


def write_likeness(path: str | os.PathLike, image_ids: list[str], is_test: np.ndarray, likeness: np.ndarray) -> None:
    """Write ``ImageId,Set,TestLikeness`` atomically, sorted by Set (test, then train), then by
    descending likeness (6 decimals), then by image id."""
    sets = np.where(np.asarray(is_test, bool), TEST, TRAIN)
    rows = sorted(
        zip(sets.tolist(), image_ids, np.asarray(likeness, np.float64).tolist()), key=lambda r: (r[0], -r[2], r[1])
    )
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LIKENESS_HEADER)
        writer.writerows([image_id, set_name, f"{value:.6f}"] for set_name, image_id, value in rows)


def read_test_likeness(path: str | os.PathLike) -> dict[str, float]:
    """{image id: TestLikeness} of the test rows of an ``adversarial.csv``; every problem is an
    AdversarialError ``file:line: ...``."""
    path = Path(path)
    if not path.is_file():
        raise AdversarialError(f"{path}: test-likeness file not found")
    likeness: dict[str, float] = {}
    seen: dict[tuple[str, str], int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if sorted(header) != sorted(LIKENESS_HEADER):
            raise AdversarialError(
                f"{path}:1: expected the header {','.join(LIKENESS_HEADER)}, got {','.join(header)!r}"
            )
        columns = [header.index(name) for name in LIKENESS_HEADER]
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise AdversarialError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
            image_id, set_name, text = (row[c].strip() for c in columns)
            where = f"{path}:{line}"
            if not image_id:
                raise AdversarialError(f"{where}: missing image id")
            if set_name not in (TRAIN, TEST):
                raise AdversarialError(f"{where}: Set {set_name!r} of image {image_id} is neither {TRAIN} nor {TEST}")
            value = _probability(text, f"{where}: TestLikeness of image {image_id}")
            if (image_id, set_name) in seen:
                raise AdversarialError(
                    f"{where}: duplicate {set_name} image {image_id} (first at line {seen[image_id, set_name]})"
                )
            seen[image_id, set_name] = line
            if set_name == TEST:
                likeness[image_id] = value
    return likeness


def _probability(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AdversarialError(f"{what} is {text!r}, not a number") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise AdversarialError(f"{what} is {text}, outside 0..1")
    return value
