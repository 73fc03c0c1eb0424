"""A mask as a COCO annotation's ``segmentation``, ``area`` and ``bbox``. Pure numpy.

The segmentation is COCO's *uncompressed* run-length encoding, ``{"counts": [...], "size": [H,
W]}``: the form CVAT's "COCO 1.0" export writes for masks (with ``iscrowd`` 1) and its import
reads back as a mask (datumaro's COCO reader hands a list of counts to pycocotools'
``frPyObjects``; pycocotools itself is not needed here). Pixels are counted down the columns
from the top-left pixel (column-major, as COCO specifies), and the counts alternate background,
defect, background, ... starting with background: a mask whose top-left pixel is a defect
starts with a 0. They add up to H x W. This is not the Severstal convention of ``core.rle``
(1-based start and length of each defect run).
"""

from __future__ import annotations

import numpy as np


def counts(mask: np.ndarray) -> list[int]:
    """(H, W) mask (nonzero = defect) -> COCO's uncompressed RLE counts (module docstring)."""
    if mask.ndim != 2:
        raise ValueError(f"counts expects a 2-D mask, got shape {mask.shape}")
    pixels = mask.ravel(order="F").astype(bool, copy=False)
    if not pixels.size:
        return []
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [pixels.size])))
    if pixels[0]:  # the first run counts background: none here
        runs = np.concatenate(([0], runs))
    return runs.tolist()


def segmentation(mask: np.ndarray) -> dict:
    """(H, W) mask -> ``{"counts": [...], "size": [H, W]}``."""
    return {"counts": counts(mask), "size": [int(mask.shape[0]), int(mask.shape[1])]}


def bbox(mask: np.ndarray) -> list[float]:
    """COCO's box of a mask: [x, y, width, height] of the pixels it covers, in pixel edges (a
    single pixel at (x, y) is [x, y, 1, 1]); [0, 0, 0, 0] for an empty mask."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return [0.0, 0.0, 0.0, 0.0]
    x, y = int(columns[0]), int(rows[0])
    return [float(x), float(y), float(columns[-1] + 1 - x), float(rows[-1] + 1 - y)]
