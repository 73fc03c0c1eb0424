"""LabelMe folders: one ``.json`` per image (searched recursively, hidden folders left out).

- **Classes**: every ``label`` of every shape in the folder, sorted alphabetically (Python's
  string order: by code point, so "Zinc" before "crack"), are classes 1..N.
- **Rasterising**: a point ``[x, y]`` is a pixel centre (x to the right, y down, ``[0, 0]`` the
  centre of the top-left pixel), rounded to the nearest pixel. A ``polygon`` is filled by
  ``cv2.fillPoly`` *with* its boundary pixels: the polygon (0, 0), (9, 0), (9, 19), (0, 19) covers
  10 x 20 = 200 pixels, as LabelMe's own ``labelme2voc`` draws it. A ``rectangle`` is two
  opposite corners, both inside (the same 200 pixels from [0, 0] and [9, 19]); a ``circle`` is
  its centre and a point on it, filled by ``cv2.circle`` with the rounded distance as radius; a
  ``mask`` (LabelMe 5) is its bitmap placed at its first point (truncated, as LabelMe does).
  Shapes without an area (``line``, ``linestrip``, ``point``, ``points``) are errors.
- **Overlap**: where shapes of different classes overlap, the higher class id wins.
- **Images**: ``imagePath`` is relative to its JSON (Windows separators allowed). It is looked
  for in ``images`` (when given, by file name) first, then next to the JSON, then by file name
  anywhere under the folder (bsdata keeps ``label/*.json`` apart from ``data/*.jpg``); when none
  is there, the embedded ``imageData`` (base64) is written out instead.
- **Clean images**: a JSON without shapes is a clean image (label map all 0); so is an image
  without a JSON in a folder that holds annotated images (or in ``images``), unless a single
  JSON is converted. Either only when the image exists.

Errors, each one line naming the JSON (and ``shapes[i]``): a JSON that is not LabelMe, a shape
with too few points or no area, an image that is neither found nor embedded. With ``skip_bad``
the JSON (and so its image) is left out instead; its image is not taken for a clean one.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from steelseg.files.images import IMAGE_SUFFIXES, decode_gray, list_images
from steelseg.files.importers.common import (
    OWN_FILES,
    ConvertError,
    Imported,
    Problems,
    Sample,
    check_class_count,
    empty_labels,
    read_json,
    visible,
)

AREA_KINDS = {"polygon": 3, "rectangle": 2, "circle": 2, "mask": 2}  # kind -> points it needs
NO_AREA_KINDS = ("line", "linestrip", "point", "points")
MAX_COORDINATE = 1 << 20  # beyond any image; cv2 draws with 32-bit integers
_MAGIC_SUFFIX = (
    (b"\x89PNG", ".png"),
    (b"\xff\xd8", ".jpg"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


@dataclass
class _Shape:
    label: str
    kind: str
    points: np.ndarray  # (N, 2) float: x, y
    bitmap: np.ndarray | None = None  # kind "mask": the bool bitmap of its box


@dataclass
class _Document:
    path: Path
    image: Path | bytes
    name: str
    shape: tuple[int, int] | None
    shapes: list[_Shape]


def read_labelme(src: Path, images: Path | None = None, skip_bad: bool = False) -> Imported:
    """A LabelMe folder (or one LabelMe ``.json``), by the rules of the module docstring."""
    src = Path(src)
    root = src if src.is_dir() else src.parent
    if images is not None and not images.is_dir():
        raise ConvertError(f"{images}: image folder not found")
    files = json_files(src)
    if not files:
        raise ConvertError(f"{src}: no .json files (LabelMe writes one per image)")
    problems, finder, documents = Problems(skip_bad), _ImageFinder(root, images), []
    for path in files:
        try:
            documents.append(_document(path, finder))
        except ConvertError as err:
            problems.add(str(err))
    names = sorted({shape.label for document in documents for shape in document.shapes})
    check_class_count(names, str(src))
    class_ids = {name: i for i, name in enumerate(names, start=1)}
    samples = [
        Sample(d.name, d.image, str(d.path), partial(_rasterise, d.shapes, class_ids), d.shape, len(d.shapes))
        for d in documents
    ]
    if src.is_dir():  # one JSON given: that image alone
        samples += _clean_images(documents, files, images)
    inputs = files + [sample.image for sample in samples if isinstance(sample.image, Path)]
    return Imported(names, samples, inputs, problems.skipped)


def json_files(src: Path) -> list[Path]:
    """The JSONs of a folder, recursively and sorted (steelseg's own classes.json and
    converted.json left out), or ``[src]`` for one file."""
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*.json") if p.is_file() and visible(p, src) and p.name not in OWN_FILES)


class _ImageFinder:
    """Where the image a JSON names is: see "Images" in the module docstring."""

    def __init__(self, root: Path, images: Path | None):
        self.root, self.images = root, images
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, json_path: Path, image_path: str) -> Path | None:
        relative = image_path.replace("\\", "/")
        name = relative.rsplit("/", 1)[-1]
        near = [self.images / name] if self.images else []
        for candidate in [*near, json_path.parent / relative]:
            if name and candidate.is_file():
                return candidate
        found = self.by_name().get(name, [])
        if len(found) > 1:
            raise ConvertError(
                f"{json_path}: image {image_path!r} is not next to it, and {len(found)} images under {self.root} "
                f"are named {name} ({found[0]}, {found[1]}); pass the image folder (--images DIR)"
            )
        return found[0] if found else None

    def by_name(self) -> dict[str, list[Path]]:
        if self._by_name is None:
            self._by_name = {}
            for path in sorted(self.root.rglob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES and visible(path, self.root) and path.is_file():
                    self._by_name.setdefault(path.name, []).append(path)
        return self._by_name


def _document(path: Path, finder: _ImageFinder) -> _Document:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        coco = isinstance(data, dict) and "annotations" in data
        hint = " (it looks like COCO: convert it with --from coco)" if coco else ""
        raise ConvertError(f'{path}: not a LabelMe file (no "shapes" list){hint}')
    shapes = [_shape(f"{path}: shapes[{i}]", raw) for i, raw in enumerate(data["shapes"])]
    image, name = _image(path, data, finder)
    return _Document(path, image, name, _stated_shape(path, data), shapes)


def _stated_shape(path: Path, data: dict) -> tuple[int, int] | None:
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if height is None or width is None:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise ConvertError(f"{path}: imageHeight and imageWidth must be positive integers, got {height!r}, {width!r}")
    return height, width


def _image(path: Path, data: dict, finder: _ImageFinder) -> tuple[Path | bytes, str]:
    """The image file (or its embedded bytes) and its name in the output."""
    text = data.get("imagePath") or ""
    if not isinstance(text, str):
        raise ConvertError(f"{path}: imagePath must be a string, got {text!r}")
    located = finder.find(path, text) if text else None
    if located is not None:
        return located, located.name
    embedded = data.get("imageData")
    if not embedded:
        where = f"image {text!r} not found next to it or under {finder.root}" if text else "imagePath is empty"
        raise ConvertError(f"{path}: {where}, and no imageData is embedded")
    try:
        raw = base64.b64decode(embedded, validate=True) if isinstance(embedded, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if not raw:
        raise ConvertError(f"{path}: imageData is not base64 image data")
    name = text.replace("\\", "/").rsplit("/", 1)[-1]
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        name = path.stem + next((suffix for magic, suffix in _MAGIC_SUFFIX if raw.startswith(magic)), ".png")
    return raw, name


def _shape(where: str, raw: object) -> _Shape:
    if not isinstance(raw, dict):
        raise ConvertError(f"{where}: a shape must be an object, got {type(raw).__name__}")
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ConvertError(f"{where}: no label (a shape needs a non-empty label)")
    where = f"{where} ({label.strip()!r})"
    kind = raw.get("shape_type") or "polygon"  # LabelMe 3 wrote no shape_type: polygons only
    if kind in NO_AREA_KINDS:
        raise ConvertError(f"{where}: a {kind} has no area; steelseg reads {', '.join(AREA_KINDS)} shapes")
    if kind not in AREA_KINDS:
        raise ConvertError(f"{where}: unknown shape_type {kind!r}; steelseg reads {', '.join(AREA_KINDS)} shapes")
    points = _points(where, raw.get("points"))
    if len(points) < AREA_KINDS[kind]:
        raise ConvertError(f"{where}: a {kind} with {len(points)} point(s); it needs at least {AREA_KINDS[kind]}")
    bitmap = _bitmap(where, raw.get("mask")) if kind == "mask" else None
    return _Shape(label.strip(), kind, points, bitmap)


def _points(where: str, points: object) -> np.ndarray:
    def number(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(number(v) for v in p) for p in points
    ):
        raise ConvertError(f"{where}: points must be a list of [x, y] numbers")
    array = np.array(points, dtype=np.float64).reshape(-1, 2)
    if array.size and np.abs(array).max() > MAX_COORDINATE:
        raise ConvertError(f"{where}: coordinate {np.abs(array).max():g} is beyond any image (±{MAX_COORDINATE})")
    return array


def _bitmap(where: str, encoded: object) -> np.ndarray:
    if not isinstance(encoded, str) or not encoded:
        raise ConvertError(f'{where}: a mask shape needs its "mask" (a base64 PNG)')
    try:
        return decode_gray(base64.b64decode(encoded, validate=True), name=f"{where}: mask") > 0
    except (binascii.Error, ValueError) as err:
        raise ConvertError(f"{where}: mask is not a base64 PNG ({err})") from None


def _rasterise(shapes: list[_Shape], class_ids: dict[str, int], shape: tuple[int, int]) -> np.ndarray:
    """The label map of one image: shapes drawn in class order, so a higher class is drawn over
    a lower one (the overlap rule)."""
    labels = empty_labels(shape)
    for item in sorted(shapes, key=lambda s: class_ids[s.label]):
        class_id = class_ids[item.label]
        corners = np.rint(item.points).astype(np.int32)
        if item.kind == "polygon":
            cv2.fillPoly(labels, [corners], class_id)
        elif item.kind == "rectangle":
            cv2.rectangle(labels, tuple(corners.min(0).tolist()), tuple(corners.max(0).tolist()), class_id, -1)
        elif item.kind == "circle":
            radius = int(np.rint(np.hypot(*(item.points[1] - item.points[0]))))
            cv2.circle(labels, tuple(corners[0].tolist()), radius, class_id, -1)
        else:
            _place(labels, item.bitmap, item.points[0].astype(np.int64), class_id)
    return labels


def _place(labels: np.ndarray, bitmap: np.ndarray, corner: np.ndarray, class_id: int) -> None:
    """A mask shape's bitmap with its top-left pixel at ``corner`` (x, y), clipped to the image."""
    x, y = int(corner[0]), int(corner[1])
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + bitmap.shape[0], labels.shape[0]), min(x + bitmap.shape[1], labels.shape[1])
    if bottom > top and right > left:
        region = labels[top:bottom, left:right]
        region[bitmap[top - y : bottom - y, left - x : right - x]] = class_id


def _clean_images(documents: list[_Document], files: list[Path], images: Path | None) -> list[Sample]:
    """Images without a JSON in the folders of annotated images (and in ``images``): clean.
    An image named like a JSON (a bad one left out by skip_bad) is never taken for clean."""
    claimed = {d.image.resolve() for d in documents if isinstance(d.image, Path)}
    stems = {path.stem for path in files}
    folders = {d.image.parent for d in documents if isinstance(d.image, Path)} | ({images} if images else set())
    return [
        Sample(path.name, path, str(path), empty_labels)
        for folder in sorted(folders)
        for path in list_images(folder)
        if path.resolve() not in claimed and path.stem not in stems
    ]
