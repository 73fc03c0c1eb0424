"""Per-class semantic masks -> the instances an instance-segmentation model trains on.

Severstal annotates one mask per class and image; a detector (Mask R-CNN) wants one box,
label and mask per object. An object here is an 8-connected component of a class mask: the
same connectivity the post-processing uses to count and filter defects, so a "defect" means
one thing in training and in evaluation.
"""

from __future__ import annotations

import cv2
import numpy as np


def instances_from_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split per-class masks into connected-component instances.

    masks: (C, H, W) bool or 0/1. Returns
      boxes (K, 4) float32, (x1, y1, x2, y2) on pixel edges: x2 = last column + 1 and
        y2 = last row + 1, so a one-pixel instance is a 1x1 box, never a degenerate one
        (torchvision rejects boxes of zero width or height);
      labels (K,) int64, 1-based class ids (0 is the detector's background);
      instance masks (K, H, W) uint8 in {0, 1}.
    Instances come in class order, then in cv2's component order: deterministic, roughly top
    to bottom, but not strictly by first pixel (cv2 labels 2x2 blocks).
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected (C, H, W) masks, got shape {masks.shape}")
    height, width = masks.shape[1:]
    boxes, labels, instance_masks = [], [], []
    for class_index, class_mask in enumerate(masks):
        count, components, stats, _ = cv2.connectedComponentsWithStats(
            (class_mask > 0).astype(np.uint8), connectivity=8
        )
        for component in range(1, count):  # 0 is the background
            x, y, w, h = stats[component, :4]
            boxes.append((x, y, x + w, y + h))
            labels.append(class_index + 1)
            instance_masks.append(components == component)
    if not labels:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, height, width), np.uint8)
    return (
        np.asarray(boxes, np.float32),
        np.asarray(labels, np.int64),
        np.stack(instance_masks).astype(np.uint8),
    )
