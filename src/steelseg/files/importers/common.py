"""What every importer hands the writer: the class names and one ``Sample`` per image, each with
a function that rasterises its annotations into a label map (0 = background, k = class k).

Importers read the annotation files once and check everything that needs no pixels (shapes,
class names, image files present); the writer (``output.py``) then rasterises sample by sample,
so a folder of any size is never held in memory. A problem is raised or, with ``skip_bad``,
kept as a ``Skip`` (``Problems``): the message is one line naming the file and the annotation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steelseg.errors import SteelsegError
from steelseg.files.skips import Skip

# a label map is uint8: class ids 1..255
MAX_CLASSES = 255
MARKER = "converted.json"  # what a conversion writes beside images/ and masks/ (output.py)
OWN_FILES = ("classes.json", MARKER)  # steelseg's own JSONs: never annotations
# how much of a .json is read to tell LabelMe from COCO (detect_format)
SNIFF_BYTES = 1 << 16
_LABELME_KEY = re.compile(rb'"(shapes|imagePath)"\s*:')
_COCO_KEY = re.compile(rb'"(images|annotations|categories)"\s*:')


class ConvertError(SteelsegError, ValueError):
    """An annotation set that cannot be converted; the message names the file (and annotation)."""


@dataclass
class Sample:
    """One image to write: ``name`` is its file name in ``OUT/images`` (its mask: ``<stem>.png``),
    ``image`` the file to link or copy, or its bytes (LabelMe's embedded ``imageData``),
    ``labels(shape)`` its label map for the image's real (H, W), ``shape`` the (H, W) the
    annotation file states (checked against the image), ``where`` the annotation file, and
    ``annotations`` the shapes, polygons or masks it draws (None: count the classes present)."""

    name: str
    image: Path | bytes
    where: str
    labels: Callable[[tuple[int, int]], np.ndarray]
    shape: tuple[int, int] | None = None
    annotations: int | None = 0


@dataclass
class Imported:
    """An annotation set read by an importer: ``inputs`` are the files it read (annotations and
    images), whose sizes and times make the conversion's fingerprint."""

    class_names: list[str]
    samples: list[Sample]
    inputs: list[Path] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


class Problems:
    """Raise the first problem (``ConvertError``), or with ``skip_bad`` keep each as a ``Skip``."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.skipped: list[Skip] = []

    def add(self, message: str, image_id: str | None = None) -> None:
        if not self.skip_bad:
            raise ConvertError(message)
        self.skipped.append(Skip(message, image_id))


def empty_labels(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, np.uint8)


def paint(labels: np.ndarray, mask: np.ndarray, class_id: int) -> None:
    """Set ``class_id`` where ``mask`` is true, unless a higher class is there already: where
    annotations of different classes overlap, the higher class id wins, whatever their order."""
    np.maximum(labels, np.where(mask, np.uint8(class_id), np.uint8(0)), out=labels)


def check_class_count(names: list[str], where: str) -> None:
    if not names:
        raise ConvertError(f"{where}: no class is named (no label, category or labelmap entry); nothing to convert")
    if len(names) > MAX_CLASSES:
        raise ConvertError(f"{where}: {len(names)} classes; a label mask holds at most {MAX_CLASSES}")


def read_json(path: Path) -> object:
    """A JSON file's content; unreadable, not UTF-8 or not JSON is a one-line ConvertError."""
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as err:
        raise ConvertError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ConvertError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise ConvertError(f"{path}: not JSON ({err})") from None


def sniff_json(path: Path) -> str | None:
    """ "labelme" or "coco" from the first keys of a .json (its head only: COCO files run to
    hundreds of MB), else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return None
    if _LABELME_KEY.search(head):
        return "labelme"
    if _COCO_KEY.search(head):
        return "coco"
    return None


def visible(path: Path, root: Path) -> bool:
    """Not inside a hidden folder (``.git``, ``.ipynb_checkpoints``) below ``root``, nor hidden."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts)
