"""COCO instance files: ``images``, ``annotations`` (``segmentation`` as polygons, uncompressed
RLE ``{"counts": [...], "size": [h, w]}`` or compressed RLE ``{"counts": "...", ...}``) and
``categories``, rasterised by ``pycocotools.mask`` (``frPyObjects``, ``merge``, ``decode``).

- **Classes**: the categories sorted by category id are classes 1..N (a category without any
  annotation is a class all the same).
- **Rasterising**: pycocotools' convention: coordinates are pixel *edges* (pixel (x, y) spans
  [x, x + 1) x [y, y + 1)), so the polygon (0, 0), (10, 0), (10, 20), (0, 20) covers 10 x 20 =
  200 pixels: the same pixels as the LabelMe polygon (0, 0), (9, 0), (9, 19), (0, 19), whose
  points are pixel centres. RLE counts run down the columns from the top-left pixel,
  background first. ``iscrowd`` regions are painted like the others.
- **Overlap**: the higher class id wins.
- **Images**: ``file_name`` is looked for in ``images`` when given, else next to the JSON, in
  ``images/`` beside it or in ``../images`` (CVAT's and Roboflow's COCO exports), by its
  relative path and then by its bare name. An image without annotations is clean.

Errors, each one line naming the JSON and ``annotations[i]`` (with its id) or ``images[i]``: an
annotation of an unknown image or category, a polygon with fewer than 3 points, an empty
segmentation (box-only data), an RLE whose size is not its image's or whose counts do not add
up to it, an image file that is missing. With ``skip_bad`` the image concerned is left out
(an annotation naming an unknown image leaves out nothing but itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from steelseg.files.images import pixel_limit
from steelseg.files.importers.common import (
    ConvertError,
    Imported,
    Problems,
    Sample,
    check_class_count,
    empty_labels,
    paint,
    read_json,
    sniff_json,
)

MAX_COORDINATE = 1 << 20  # beyond any image; pycocotools rasterises with integers
MAX_SHIFT = 35  # 7 groups of 5 bits: a count of pycocotools' (32-bit) RLE fits in them


@dataclass
class _Image:
    index: int
    file_name: str
    shape: tuple[int, int]
    annotations: list[tuple[int, object]] = field(default_factory=list)  # (class id, segmentation)
    bad: bool = False


def read_coco(src: Path, images: Path | None = None, skip_bad: bool = False) -> Imported:
    """A COCO file (or a folder holding exactly one), by the rules of the module docstring."""
    path = coco_file(Path(src))
    if images is not None and not images.is_dir():
        raise ConvertError(f"{images}: image folder not found")
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        hint = (
            " (it looks like LabelMe: convert it with --from labelme)"
            if isinstance(data, dict) and "shapes" in data
            else ""
        )
        raise ConvertError(f'{path}: not a COCO instances file (no "images" and "categories" lists){hint}')
    names, class_of = _categories(path, data["categories"])
    table = _images(path, data["images"])
    problems = Problems(skip_bad)
    annotations = data.get("annotations") or []
    if not isinstance(annotations, list):
        raise ConvertError(f'{path}: "annotations" must be a list')
    for index, annotation in enumerate(annotations):
        _add_annotation(path, index, annotation, table, class_of, problems)
    folders = (
        [images]
        if images
        else [d for d in (path.parent, path.parent / "images", path.parent.parent / "images") if d.is_dir()]
    )
    samples, inputs = [], [path]
    for image_id, entry in table.items():
        located = None if entry.bad else _locate(entry.file_name, folders)
        if located is None:
            if not entry.bad:
                looked = ", ".join(str(f) for f in folders) or "no image folder next to it"
                problems.add(f"{path}: images[{entry.index}] (id {image_id}): {entry.file_name} not found in {looked}")
            continue
        rasterise = partial(_rasterise, entry.annotations)
        samples.append(
            Sample(
                located.name,
                located,
                f"{path}: images[{entry.index}] (id {image_id})",
                rasterise,
                entry.shape,
                len(entry.annotations),
            )
        )
        inputs.append(located)
    return Imported(names, samples, inputs, problems.skipped)


def coco_files(folder: Path) -> list[Path]:
    """The COCO files of a folder: its own ``*.json`` and those in ``annotations/``."""
    candidates = sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    return [path for path in candidates if path.is_file() and sniff_json(path) == "coco"]


def coco_file(src: Path) -> Path:
    if src.is_file():
        return src
    found = coco_files(src) if src.is_dir() else []
    if not found:
        raise ConvertError(f"{src}: no COCO .json here or in {src / 'annotations'}")
    if len(found) > 1:
        raise ConvertError(
            f"{src}: {len(found)} COCO files ({', '.join(p.name for p in found)}); name the one to convert"
        )
    return found[0]


def _categories(path: Path, categories: list) -> tuple[list[str], dict[int, int]]:
    by_id = {}
    for index, category in enumerate(categories):
        where = f"{path}: categories[{index}]"
        if not isinstance(category, dict) or not _integer(category.get("id")):
            raise ConvertError(f"{where}: a category needs an integer id")
        name = category.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConvertError(f"{where} (id {category['id']}): a category needs a non-empty name")
        if category["id"] in by_id:
            raise ConvertError(f"{where}: category id {category['id']} is listed twice")
        by_id[category["id"]] = name.strip()
    names = [by_id[i] for i in sorted(by_id)]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise ConvertError(f"{path}: two categories are named {twice!r}; each class needs its own name")
    check_class_count(names, str(path))
    return names, {category_id: i for i, category_id in enumerate(sorted(by_id), start=1)}


def _images(path: Path, images: list) -> dict[object, _Image]:
    table = {}
    for index, image in enumerate(images):
        where = f"{path}: images[{index}]"
        if not isinstance(image, dict) or not isinstance(image.get("id"), int | str) or isinstance(image["id"], bool):
            raise ConvertError(f"{where}: an image needs an id (integer or string)")
        where = f"{where} (id {image['id']})"
        name, height, width = image.get("file_name"), image.get("height"), image.get("width")
        if not isinstance(name, str) or not name:
            raise ConvertError(f"{where}: no file_name")
        if not (_integer(height) and _integer(width) and height > 0 and width > 0):
            raise ConvertError(f"{where}: height and width must be positive integers, got {height!r}, {width!r}")
        if height * width > pixel_limit():
            raise ConvertError(f"{where}: {height}x{width} is over the pixel limit ({pixel_limit():,})")
        if image["id"] in table:
            raise ConvertError(f"{where}: image id {image['id']} is listed twice")
        table[image["id"]] = _Image(index, name, (height, width))
    return table


def _add_annotation(path: Path, index: int, annotation, table: dict, class_of: dict, problems: Problems) -> None:
    where = f"{path}: annotations[{index}]"
    entry = None
    try:
        if not isinstance(annotation, dict):
            raise ConvertError(f"{where}: an annotation must be an object")
        where = f"{where} (id {annotation.get('id')})"
        entry = table.get(annotation.get("image_id")) if isinstance(annotation.get("image_id"), int | str) else None
        if entry is None:
            raise ConvertError(f"{where}: image id {annotation.get('image_id')!r} is not in images")
        class_id = class_of.get(annotation.get("category_id"))
        if class_id is None:
            raise ConvertError(
                f"{where}: category id {annotation.get('category_id')!r} is not in categories "
                f"({', '.join(map(str, class_of))})"
            )
        entry.annotations.append((class_id, _segmentation(where, annotation.get("segmentation"), entry.shape)))
    except ConvertError as err:
        problems.add(str(err), entry.file_name if entry else None)
        if entry is not None:
            entry.bad = True


def _segmentation(where: str, segmentation, shape: tuple[int, int]):
    if isinstance(segmentation, list):
        if not segmentation:
            raise ConvertError(f"{where}: empty segmentation (box-only data?); steelseg needs each defect's outline")
        for k, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or not all(_number(v) for v in polygon) or len(polygon) % 2:
                raise ConvertError(f"{where}: segmentation[{k}] must be a flat list of x, y numbers")
            if polygon and max(abs(v) for v in polygon) > MAX_COORDINATE:
                raise ConvertError(f"{where}: segmentation[{k}] has a coordinate beyond any image (±{MAX_COORDINATE})")
            if len(polygon) < 6:
                raise ConvertError(
                    f"{where}: segmentation[{k}] has {len(polygon) // 2} point(s); a polygon needs at least 3"
                )
        return segmentation
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not isinstance(size, list) or size != list(shape):
            raise ConvertError(f"{where}: RLE size {size!r} is not its image's [{shape[0]}, {shape[1]}]")
        if isinstance(counts, str):
            values = string_counts(where, counts)
        elif isinstance(counts, list) and all(_integer(v) for v in counts):
            values = counts
        else:
            raise ConvertError(f"{where}: RLE counts must be a list of integers or a compressed string")
        if any(v < 0 for v in values) or sum(values) != shape[0] * shape[1]:
            raise ConvertError(
                f"{where}: RLE counts add up to {sum(values)}, not {shape[0]}x{shape[1]} = {shape[0] * shape[1]} pixels"
            )
        return segmentation
    raise ConvertError(f"{where}: segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def string_counts(where: str, text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string, decoded as pycocotools' ``rleFrString``
    does (6-bit groups from "0", a sign bit, each count from the third on a difference to the
    one two before), so that they can be checked before pycocotools writes them into a mask."""
    counts, position = [], 0
    codes = [ord(c) - 48 for c in text]
    while position < len(codes):
        value, shift, more = 0, 0, True
        while more:
            if position == len(codes) or not 0 <= codes[position] < 64:
                raise ConvertError(
                    f"{where}: compressed RLE counts {text[:40]!r} are cut short or hold a bad character"
                )
            code = codes[position]
            value |= (code & 0x1F) << shift
            more, position, shift = bool(code & 0x20), position + 1, shift + 5
            if shift > MAX_SHIFT:
                raise ConvertError(f"{where}: compressed RLE counts {text[:40]!r} hold a count beyond 32 bits")
            if not more and code & 0x10:
                value |= -1 << shift
        counts.append(value + (counts[-2] if len(counts) > 2 else 0))
    return counts


def _rasterise(annotations: list[tuple[int, object]], shape: tuple[int, int]) -> np.ndarray:
    from pycocotools import mask as coco_mask

    labels = empty_labels(shape)
    height, width = shape
    for class_id, segmentation in annotations:
        if isinstance(segmentation, list):
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": [height, width], "counts": segmentation["counts"].encode("ascii")}
        paint(labels, coco_mask.decode(rle).astype(bool), class_id)
    return labels


def _locate(file_name: str, folders: list[Path]) -> Path | None:
    relative = file_name.replace("\\", "/")
    for folder in folders:
        for candidate in (folder / relative, folder / relative.rsplit("/", 1)[-1]):
            if candidate.is_file():
                return candidate
    return None


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
