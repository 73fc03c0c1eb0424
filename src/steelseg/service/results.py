"""One image's prediction as the service answers it: per class the run-length encoded mask,
its area, the class score and the boxes of its connected components. numpy and OpenCV only."""

from __future__ import annotations

import cv2
import numpy as np

from steelseg.core import rle
from steelseg.core.outputs import Outputs
from steelseg.files.overlay import COLORS


def boxes(mask: np.ndarray) -> list[dict]:
    """(H, W) bool -> one box per 8-connected component: x, y (top-left, 0-based pixels),
    width, height and the component's area in pixels, largest first."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    found = [
        {"x": int(x), "y": int(y), "width": int(w), "height": int(h), "area": int(a)}
        for x, y, w, h, a in stats[1:count]  # row 0 is the background
    ]
    return sorted(found, key=lambda b: -b["area"])


def image_result(
    outputs: Outputs, masks: np.ndarray | None, class_names: list[str], presence_threshold: np.ndarray
) -> list[dict]:
    """Per class: id (1-based, as in the submission), name, present, score (the class score:
    the mask's peak probability, or the class head's), threshold, area, rle and boxes.

    With masks, a class is present when its post-processed mask is not empty (the post-processing
    holds any gate), and threshold is None: the score alone does not decide. ``masks`` None (a
    classifier alone): present is the score above its presence threshold, and there is no mask."""
    result = []
    for c, name in enumerate(class_names):
        score = float(outputs.scores[c])
        if masks is None:
            present, threshold, area, encoded, found = (
                bool(score > presence_threshold[c]),
                float(presence_threshold[c]),
                None,
                None,
                [],
            )
        else:
            mask = masks[c]
            area = int(mask.sum())
            present, threshold, encoded, found = area > 0, None, rle.encode(mask), boxes(mask) if area else []
        result.append(
            {
                "id": c + 1,
                "name": name,
                "present": present,
                "score": score,
                "threshold": threshold,
                "area": area,
                "rle": encoded,
                "boxes": found,
            }
        )
    return result


def color_hex(class_index: int) -> str:
    """The class's colour in overlays (``overlay.COLORS``), as #rrggbb for the page."""
    r, g, b = (int(v) for v in COLORS[class_index % len(COLORS)])
    return f"#{r:02x}{g:02x}{b:02x}"
