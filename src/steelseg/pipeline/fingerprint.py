"""A dataset's fingerprint (nnU-Net's first stage): what the plan's rules read, as JSON.

One pass over the images and their masks: image sizes and their spread, the channels of the
files, gray-level statistics, per class the share of images that hold it, its defect area and
connected-component size quantiles, the share of clean images, near-duplicate groups (the
perceptual hash ``steelseg folds`` keeps together) and aspect ratios. Everything is measured on
the images as steelseg reads them (8-bit gray, ``files.images.read_gray``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pydantic import BaseModel
from tqdm import tqdm

from steelseg.files.atomic import write_text
from steelseg.files.datasets import DatasetError, SegmentationDataset
from steelseg.files.folds import HASH_COLS, HASH_ROWS, group_near_duplicates, perceptual_hash

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
FINGERPRINT = "fingerprint.json"


class ClassFingerprint(BaseModel):
    name: str
    image_share: float  # share of the images that hold the class
    images: int
    area: dict[str, float] | None  # quantiles of its pixels per image that holds it; None: never present
    component: dict[str, float] | None  # quantiles of its 8-connected components' sizes (pixels)
    extent: dict[str, float] | None = None  # quantiles of its components' longest bounding-box side (pixels)
    components_per_image: float | None  # mean over the images that hold it


class Fingerprint(BaseModel):
    images: int
    sizes: dict[str, int]  # "HxW" -> images of that size, most common first
    height: dict[str, float]
    width: dict[str, float]
    aspect_ratio: dict[str, float]  # width / height
    channels: dict[str, int]  # bands in the files as stored (1 gray, 3 colour, ...) -> images
    intensity: dict[str, float]  # gray levels 0..255 over every pixel: mean, std, quantiles
    clean_share: float  # share of the images without any defect
    empty_pair_share: float  # share of (image, class) pairs without the class
    classes: list[ClassFingerprint]
    near_duplicate_groups: int  # groups of more than one image with near-identical hashes
    near_duplicate_images: int  # images in those groups


@dataclass
class _Tally:
    """What one pass collects, image by image."""

    shapes: list[tuple[int, int]] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)  # of the images large enough to hash
    defective: list[bool] = field(default_factory=list)  # per image: holds any defect
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    areas: list[list[int]] = field(default_factory=list)  # per class: the area in each image holding it
    components: list[list[int]] = field(default_factory=list)  # per class: every component's size
    extents: list[list[int]] = field(default_factory=list)  # per class: every component's longest side


def fingerprint_dataset(dataset: SegmentationDataset, progress: bool = True) -> Fingerprint:
    """Read every image and its masks once; the dataset's ``Fingerprint``."""
    names = dataset.class_names
    tally = _Tally(areas=[[] for _ in names], components=[[] for _ in names], extents=[[] for _ in names])
    for index in tqdm(range(len(dataset)), desc="fingerprint", unit="img", disable=not progress):
        image, masks = dataset.load(index)
        tally.shapes.append(image.shape)
        tally.channels.append(_bands(dataset.image_paths[index]))
        if image.shape[0] >= HASH_ROWS and image.shape[1] >= HASH_COLS:  # smaller: no hash, no group
            tally.hashes.append(int(perceptual_hash(image)))
        tally.histogram += np.bincount(image.ravel(), minlength=256)
        tally.defective.append(bool(masks.any()))
        for c, mask in enumerate(masks):
            sizes, extents = component_sizes(mask, extents=True)
            if sizes.size:
                tally.areas[c].append(int(sizes.sum()))
                tally.components[c].extend(sizes.tolist())
                tally.extents[c].extend(extents.tolist())
    return summarise(tally, dataset.class_names)


def summarise(tally: _Tally, class_names: list[str]) -> Fingerprint:
    """The ``Fingerprint`` of what one pass collected (pure numpy)."""
    n = len(tally.shapes)
    if not n:
        raise DatasetError("no images to fingerprint")
    heights, widths = (np.array([s[i] for s in tally.shapes], np.float64) for i in (0, 1))
    sizes: dict[str, int] = {}
    for h, w in tally.shapes:
        sizes[f"{h}x{w}"] = sizes.get(f"{h}x{w}", 0) + 1
    present = np.array([len(a) for a in tally.areas], np.int64)
    hashes = np.array(tally.hashes, np.uint64)
    counts = np.bincount(group_near_duplicates(hashes)) if hashes.size else np.zeros(0, np.int64)
    return Fingerprint(
        images=n,
        sizes=dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))),
        height=quantiles(heights),
        width=quantiles(widths),
        aspect_ratio=quantiles(widths / heights),
        channels={str(k): int(v) for k, v in zip(*np.unique(tally.channels, return_counts=True))},
        intensity=histogram_stats(tally.histogram),
        clean_share=1 - float(np.mean(tally.defective)),
        empty_pair_share=float(1 - present.sum() / (n * len(class_names))) if class_names else 1.0,
        classes=[_class(name, c, tally, n) for c, name in enumerate(class_names)],
        near_duplicate_groups=int((counts > 1).sum()),
        near_duplicate_images=int(counts[counts > 1].sum()),
    )


def component_sizes(mask: np.ndarray, extents: bool = False):
    """(H, W) bool -> the pixel counts of its 8-connected components (int64, any order); with
    ``extents`` also the longest side of each one's bounding box, as a second array."""
    if not mask.any():
        empty = np.zeros(0, np.int64)
        return (empty, empty) if extents else empty
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    sizes = stats[1:count, cv2.CC_STAT_AREA].astype(np.int64)  # row 0 is the background
    if not extents:
        return sizes
    return sizes, np.maximum(stats[1:count, cv2.CC_STAT_WIDTH], stats[1:count, cv2.CC_STAT_HEIGHT]).astype(np.int64)


def quantiles(values: np.ndarray) -> dict[str, float]:
    """min, the ``QUANTILES`` (linear interpolation, numpy's default) and max, keyed "min", "p5", ..."""
    values = np.asarray(values, np.float64)
    result = {"min": float(values.min())}
    result.update({f"p{round(q * 100)}": float(np.quantile(values, q)) for q in QUANTILES})
    result["max"] = float(values.max())
    return result


def histogram_stats(histogram: np.ndarray) -> dict[str, float]:
    """Mean, std and the ``QUANTILES`` of gray levels from their (256,) counts: the quantile is
    the lowest level whose cumulative share reaches q."""
    total = histogram.sum()
    levels = np.arange(histogram.size, dtype=np.float64)
    mean = float((levels * histogram).sum() / total)
    std = float(np.sqrt((((levels - mean) ** 2) * histogram).sum() / total))
    cumulative = np.cumsum(histogram) / total
    stats = {"mean": mean, "std": std}
    stats.update({f"p{round(q * 100)}": float(np.searchsorted(cumulative, q)) for q in QUANTILES})
    return stats


def write_fingerprint(path: str | os.PathLike, fingerprint: Fingerprint) -> Path:
    """Write the fingerprint as indented JSON, atomically."""
    path = Path(path)
    write_text(path, json.dumps(fingerprint.model_dump(), indent=2) + "\n")
    return path


def _class(name: str, c: int, tally: _Tally, n: int) -> ClassFingerprint:
    areas, components = tally.areas[c], tally.components[c]
    extents = tally.extents[c] if tally.extents else []
    return ClassFingerprint(
        name=name,
        image_share=len(areas) / n,
        images=len(areas),
        area=quantiles(np.array(areas)) if areas else None,
        component=quantiles(np.array(components)) if components else None,
        extent=quantiles(np.array(extents)) if extents else None,
        components_per_image=len(components) / len(areas) if areas else None,
    )


def _bands(path: Path) -> int:
    """Bands of the file as stored (its header only); 0 when Pillow cannot tell."""
    try:
        with Image.open(path) as image:
            return len(image.getbands())
    except Exception:  # read_gray has read it: this is a statistic, not a check
        return 0
