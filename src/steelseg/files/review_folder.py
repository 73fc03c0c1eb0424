"""The review folder of ``steelseg predict --review N --review-out DIR``: the images the model
is least sure of, with its masks as pre-annotations that CVAT and LabelMe open, so that people
correct them and ``steelseg convert`` brings them back:

- ``DIR/annotations.json``: COCO instances, one annotation per predicted class mask with an
  uncompressed RLE segmentation (``core.coco_rle``: the form CVAT's "COCO 1.0" export writes and
  its import reads), ``iscrowd`` 1, ``area`` and ``bbox``; categories are the model's classes,
  ids 1..C in its order, so ``steelseg convert DIR`` gives back the model's class ids;
- ``DIR/images/<image>``: a copy of each image (not a link: the folder is small by design and
  is zipped, uploaded or moved to the people who label; a copy keeps it whole wherever it goes
  and leaves the originals out of reach of any tool that edits images in place);
- ``DIR/images/<stem>.json``: LabelMe files beside their images (where LabelMe looks for them,
  ``labelme DIR/images``), one polygon per connected component of each class mask
  (``core.polygons``: holes joined by a bridge), labelled with the class name, ``imagePath``
  the image's name, ``imageData`` null. The LabelMe importer numbers classes by the labels'
  alphabetical order, among the labels present;
- ``DIR/review.csv``, written last: rank, image, uncertainty and the reason (which class, its
  score against its threshold, its pixels near the pixel threshold).

``DIR`` must be new or empty, and every file is written atomically (``files.atomic``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelseg.core import coco_rle
from steelseg.core.polygons import polygons
from steelseg.errors import OutputExistsError
from steelseg.files.atomic import atomic_open, atomic_path, write_text
from steelseg.files.submission import nearest_existing
from steelseg.version import __version__

COCO_FILE = "annotations.json"
IMAGES = "images"
REVIEW_CSV = "review.csv"
CSV_HEADER = [
    "rank",
    "ImageId",
    "uncertainty",
    "ClassId",
    "class",
    "score",
    "threshold",
    "near_pixels",
    "pixel_threshold",
    "reason",
]
LABELME_VERSION = "5.0.1"  # the LabelMe file format these fields follow (LabelMe warns on another major version)


@dataclass(frozen=True)
class Reviewed:
    """One image to review: the image file, its predicted (C, H, W) bool ``masks``, its
    ``uncertainty``, and the reason: the class (1-based id) it comes from, that class's score
    and presence threshold, its pixels near the pixel threshold and that threshold, in words."""

    image: Path
    masks: np.ndarray
    uncertainty: float
    class_id: int
    score: float
    threshold: float
    near_pixels: int
    pixel_threshold: float
    reason: str


def check_review_folder(folder: str | os.PathLike, option: str = "--review-out") -> None:
    """Before any work: ``folder`` must be new or an empty folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{option} {folder} is a file; give a new or empty folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputExistsError(f"{option} {folder} is not empty; give a new or empty folder")
    ancestor = nearest_existing(folder.parent)
    if not ancestor.is_dir():
        raise OutputExistsError(f"{option} {folder}: {ancestor} is a file, not a folder")


def write_review_folder(folder: str | os.PathLike, class_names: list[str], items: list[Reviewed]) -> None:
    """Write ``items`` (in rank order) into ``folder`` as the module docstring says."""
    folder = Path(folder)
    check_review_folder(folder)
    images = folder / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    stems: set[str] = set()
    for item in items:
        with atomic_path(images / item.image.name) as copy:
            shutil.copyfile(item.image, copy)
        stem = item.image.stem if item.image.stem not in stems else item.image.name  # a.png and a.jpg
        stems.add(stem)
        write_text(images / f"{stem}.json", json.dumps(labelme_file(item, class_names), indent=1) + "\n")
    write_text(folder / COCO_FILE, json.dumps(coco_file(items, class_names)) + "\n")
    _write_csv(folder / REVIEW_CSV, class_names, items)


def coco_file(items: list[Reviewed], class_names: list[str]) -> dict:
    """The COCO instances document of ``items``: image ids 1.. in rank order."""
    images, annotations = [], []
    for image_id, item in enumerate(items, start=1):
        height, width = item.masks.shape[1:]
        images.append({"id": image_id, "file_name": item.image.name, "height": height, "width": width})
        for class_id, mask in enumerate(item.masks, start=1):
            if mask.any():
                annotations.append(_coco_annotation(len(annotations) + 1, image_id, class_id, mask))
    return {
        "info": {"description": "steelseg predict --review: the model's masks, to correct", "version": __version__},
        "licenses": [],
        "categories": [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(class_names, start=1)],
        "images": images,
        "annotations": annotations,
    }


def _coco_annotation(annotation_id: int, image_id: int, class_id: int, mask: np.ndarray) -> dict:
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": class_id,
        "segmentation": coco_rle.segmentation(mask),
        "area": float(np.count_nonzero(mask)),
        "bbox": coco_rle.bbox(mask),
        "iscrowd": 1,  # COCO's flag for an RLE segmentation, as CVAT writes its masks
    }


def labelme_file(item: Reviewed, class_names: list[str]) -> dict:
    """The LabelMe document of one image: a polygon per connected component of each class."""
    height, width = item.masks.shape[1:]
    shapes = [
        {
            "label": class_names[class_id - 1],
            "points": ring.tolist(),
            "group_id": None,
            "description": "",
            "shape_type": "polygon",
            "flags": {},
        }
        for class_id, mask in enumerate(item.masks, start=1)
        for ring in polygons(mask)
    ]
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": item.image.name,  # relative: the JSON sits beside its image
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }


def _write_csv(path: Path, class_names: list[str], items: list[Reviewed]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for rank, item in enumerate(items, start=1):
            writer.writerow(
                [
                    rank,
                    item.image.name,
                    f"{item.uncertainty:.4f}",
                    item.class_id,
                    class_names[item.class_id - 1],
                    f"{item.score:.4f}",
                    f"{item.threshold:.4f}",
                    item.near_pixels,
                    f"{item.pixel_threshold:.4f}",
                    item.reason,
                ]
            )
