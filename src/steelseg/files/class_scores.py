"""Class scores as a CSV: one row per (image, class), like the competition's long layout.

    ImageId,ClassId,Probability,Present
    0002cc93b.jpg,1,0.9132,1

``Probability`` is the score that the class is in the image, ``Present`` the decision at the
run's label threshold (1 present, 0 not). ``steelseg predict`` writes it for a classifier (and
for any run with ``--scores``); ``steelseg score`` reads it and reports the screening.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelseg.errors import SteelsegError
from steelseg.files.atomic import atomic_open

HEADER = ["ImageId", "ClassId", "Probability", "Present"]


class ClassScoresError(SteelsegError, ValueError):
    """A class-scores CSV that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class ClassScores:
    image_ids: list[str]
    scores: np.ndarray  # (N, C) float
    present: np.ndarray  # (N, C) bool
    source: str


def write_class_scores(path: str | os.PathLike, image_ids: list[str], scores: np.ndarray, present: np.ndarray) -> int:
    """Write every (image, class) row atomically; returns the number of rows."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for image_id, row, flags in zip(image_ids, scores, present):
            for class_id, (score, flag) in enumerate(zip(row, flags), start=1):
                writer.writerow([image_id, class_id, f"{float(score):.6f}", int(flag)])
    return len(image_ids) * scores.shape[1]


def is_class_scores(path: str | os.PathLike) -> bool:
    """True when the file's header is that of a class-scores CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return [h.strip() for h in header] == HEADER


def read_class_scores(path: str | os.PathLike, num_classes: int) -> ClassScores:
    """Read and check: every image lists each class 1..num_classes exactly once, with a
    probability in [0, 1] and a Present of 0 or 1."""
    path = Path(path)
    rows: dict[str, dict[int, tuple[float, bool]]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            if header != HEADER:
                raise ClassScoresError(f"{path}: header {header} is not {','.join(HEADER)}")
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                image_id, class_id, score, flag = _parse(row, num_classes, f"{path}:{line}")
                classes = rows.setdefault(image_id, {})
                if class_id in classes:
                    raise ClassScoresError(f"{path}:{line}: {image_id} class {class_id} is listed twice")
                classes[class_id] = (score, flag)
    except (OSError, UnicodeDecodeError) as err:
        raise ClassScoresError(f"{path}: cannot read it ({err})") from None
    if not rows:
        raise ClassScoresError(f"{path}: lists no images (only a header)")
    for image_id, classes in rows.items():
        if len(classes) != num_classes:
            missing = sorted(set(range(1, num_classes + 1)) - set(classes))
            raise ClassScoresError(
                f"{path}: {image_id} lacks class {missing[0]} (every image lists classes 1..{num_classes})"
            )
    image_ids = list(rows)
    values = [[rows[i][c] for c in range(1, num_classes + 1)] for i in image_ids]
    scores = np.array([[v[0] for v in row] for row in values], dtype=np.float64)
    present = np.array([[v[1] for v in row] for row in values], dtype=bool)
    return ClassScores(image_ids, scores, present, str(path))


def _parse(row: list[str], num_classes: int, where: str) -> tuple[str, int, float, bool]:
    if len(row) != len(HEADER):
        raise ClassScoresError(f"{where}: expected {len(HEADER)} columns ({','.join(HEADER)}), got {len(row)}")
    image_id, class_text, score_text, flag_text = (value.strip() for value in row)
    try:
        class_id, score = int(class_text), float(score_text)
    except ValueError:
        raise ClassScoresError(
            f"{where}: ClassId {class_text!r} or Probability {score_text!r} is not a number"
        ) from None
    if not 1 <= class_id <= num_classes:
        raise ClassScoresError(f"{where}: ClassId {class_id} is outside 1..{num_classes}")
    if not (math.isfinite(score) and 0 <= score <= 1):
        raise ClassScoresError(f"{where}: Probability {score_text} is not in [0, 1]")
    if flag_text not in ("0", "1"):
        raise ClassScoresError(f"{where}: Present {flag_text!r} must be 0 or 1")
    if not image_id:
        raise ClassScoresError(f"{where}: empty ImageId")
    return image_id, class_id, score, flag_text == "1"
