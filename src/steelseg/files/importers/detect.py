"""Which layout a path holds, from its folders and the first bytes of its JSONs (no JSON is
parsed whole: a COCO file runs to hundreds of MB)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from steelseg.files.importers.coco import coco_files
from steelseg.files.importers.common import OWN_FILES, ConvertError, sniff_json, visible
from steelseg.files.importers.cvat import LABELMAP, MASKS

FORMATS = ("severstal", "mask_folder", "cvat", "coco", "labelme")
SNIFFED_JSONS = 50  # a LabelMe folder is recognised from its first JSONs


def detect_format(path: str | Path) -> str:
    """One of ``FORMATS``: ``severstal`` (``train_images/`` + ``train.csv``), ``mask_folder``
    (``images/`` + ``masks/``), ``cvat`` (``labelmap.txt`` + ``SegmentationClass/``), ``coco`` (a
    COCO ``.json``, or a folder with one here or in ``annotations/``), ``labelme`` (a folder whose
    JSONs, searched recursively, are LabelMe's; or one such JSON), checked in that order.
    Anything else is a ``ConvertError`` saying what was looked for."""
    path = Path(path)
    if path.is_file():
        kind = sniff_json(path) if path.suffix.lower() == ".json" else None
        if kind is None:
            raise ConvertError(f"{path}: not a COCO or LabelMe .json; a data set is a folder or a COCO .json")
        return kind
    if not path.is_dir():
        raise ConvertError(f"{path}: not found")
    if (path / "train_images").is_dir() and (path / "train.csv").is_file():
        return "severstal"
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return "mask_folder"
    if (path / LABELMAP).is_file() and (path / MASKS).is_dir():
        return "cvat"
    if coco_files(path):
        return "coco"
    jsons = (p for p in sorted(path.rglob("*.json")) if visible(p, path) and p.name not in OWN_FILES)
    if any(sniff_json(p) == "labelme" for p in islice(jsons, SNIFFED_JSONS)):
        return "labelme"
    raise ConvertError(
        f"{path}: no data set layout found: expected train_images/ + train.csv (severstal), images/ + masks/ "
        f"(mask folder), {LABELMAP} + {MASKS}/ (CVAT), a COCO .json, or LabelMe .json files"
    )
