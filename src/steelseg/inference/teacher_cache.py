"""A teacher's probabilities of a set of images, computed once and kept on disk (``distill``).

The teacher is a ``Predictor`` (anything ``predict`` takes, with its TTA), so the soft targets
are the numbers ``predict`` would threshold. They are kept in a folder of the student's run
(``RUN/teacher/<part>``) as the chunks of ``inference.resume``: a ``manifest.json`` with the
predictor's ``fingerprint`` and the image list, and ``chunk-000003-<sha256 prefix>.npz`` files
of ``CHUNK`` images each, plain float16 arrays (``pixels_<j>`` (C, H, W), ``scores`` (n, C)),
loaded with ``allow_pickle=False``. A killed computation started again computes only the chunks
without a valid file (a damaged one is reported and computed again); another teacher or other
images are refused in one line. Training then reads one image's targets at a time
(``TeacherTargets``): one npz member, never the whole cache in memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelseg.inference.resume import ResumeError, WorkFolder, chunk_size

CHUNK = 32  # images per chunk file: a full Severstal chunk is ~100 MB of float16
_CHUNK_FILE = re.compile(r"chunk-(?P<index>\d{6})-[0-9a-f]{16}\.npz")


@dataclass(frozen=True)
class SoftTarget:
    """One image's teacher probabilities: ``pixels`` (C, H, W) float16 (None for a teacher of
    class scores alone) and ``scores`` (C,) float16, the probability that each class is present."""

    pixels: np.ndarray | None
    scores: np.ndarray


class TeacherCodec:
    """A chunk's soft targets as plain arrays and back (``resume.Codec``). Decoding checks the
    arrays and returns no values: training reads them from the file when it needs them."""

    def __init__(self, num_classes: int, has_pixels: bool):
        self.num_classes = num_classes
        self.has_pixels = has_pixels

    def encode(self, records: dict[str, SoftTarget]) -> dict[str, np.ndarray]:
        arrays = {"ids": np.array(list(records), dtype=str)}
        arrays["scores"] = (
            np.stack([r.scores for r in records.values()]).astype(np.float16).reshape(-1, self.num_classes)
        )
        for j, record in enumerate(records.values()):
            if self.has_pixels:
                arrays[f"pixels_{j}"] = record.pixels.astype(np.float16)
        return arrays

    def decode(self, arrays: dict[str, np.ndarray]) -> dict[str, None]:
        ids, scores = arrays["ids"], arrays["scores"]
        if ids.dtype.kind != "U" or scores.dtype != np.float16 or scores.shape != (len(ids), self.num_classes):
            raise ValueError(
                f"scores {scores.dtype}{scores.shape} do not fit {len(ids)} images of {self.num_classes} classes"
            )
        for j in range(len(ids) if self.has_pixels else 0):
            pixels = arrays[f"pixels_{j}"]
            if pixels.dtype != np.float16 or pixels.ndim != 3 or len(pixels) != self.num_classes:
                raise ValueError(f"pixels_{j} is {pixels.dtype}{pixels.shape}, not float16 ({self.num_classes}, H, W)")
        return dict.fromkeys(ids.tolist())


class _TeacherFolder(WorkFolder):
    def _save(self, index, records, skipped) -> None:
        super()._save(index, records, skipped)
        records.clear()  # on disk now, checksummed: keeping every chunk in memory would not scale


class TeacherTargets:
    """Each image's soft targets, read from the chunk files of a finished cache."""

    def __init__(self, where: dict[str, tuple[Path, int]], has_pixels: bool):
        self.where = where  # image id -> (chunk file, position in it)
        self.has_pixels = has_pixels

    @classmethod
    def of_folder(cls, folder: Path, has_pixels: bool) -> TeacherTargets:
        where = {}
        for path in sorted(folder.glob("chunk-*.npz")):
            if _CHUNK_FILE.fullmatch(path.name):
                with np.load(path, allow_pickle=False) as npz:
                    where.update({name: (path, j) for j, name in enumerate(npz["ids"].tolist())})
        return cls(where, has_pixels)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.where

    def __len__(self) -> int:
        return len(self.where)

    def load(self, image_id: str) -> SoftTarget:
        """The image's ``SoftTarget`` (float16, as stored)."""
        path, j = self.where[image_id]
        with np.load(path, allow_pickle=False) as npz:
            pixels = npz[f"pixels_{j}"] if self.has_pixels else None
            return SoftTarget(pixels, npz["scores"][j])


def cache_teacher(
    predictor,
    paths: list[Path],
    folder: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    size: int = CHUNK,
) -> TeacherTargets:
    """The ``predictor``'s soft targets of every image in ``paths``, computed into ``folder``
    where they are not there yet (module docstring), then read from there."""
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ResumeError(f"{twice}: two images of the teacher's images share this name")
    has_pixels = predictor.has_masks
    manifest = {"command": "distill", **predictor.fingerprint()}
    codec = TeacherCodec(predictor.num_classes, has_pixels)
    work = _TeacherFolder(folder, manifest, paths, chunk_size(size, predictor.batch_size), codec, log)

    def compute(todo: list[Path]):
        for path, _, outputs in predictor.iter_folder(folder, progress, paths=todo):
            yield path.name, SoftTarget(outputs.pixels if has_pixels else None, outputs.scores)

    work.run(compute, None)
    return TeacherTargets.of_folder(folder, has_pixels)
