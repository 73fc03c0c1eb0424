"""Training-time augmentation. The only module that imports albumentations."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it would call the internet at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from steelseg.config import DataConfig  # noqa: E402


def train_transform(config: DataConfig) -> A.Compose:
    """Random crop, on a defect for a share of them (padding first when the image is smaller
    than the crop), then flips."""
    steps: list = []
    height, width = config.crop_height, config.crop_width
    if height and width:
        on_defect = config.defect_crop_fraction
        steps += [
            A.PadIfNeeded(height, width, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
            A.OneOf([A.CropNonEmptyMaskIfExists(height, width, p=on_defect), A.RandomCrop(height, width, p=1 - on_defect)], p=1),
        ]
    flips = {"hflip": A.HorizontalFlip, "vflip": A.VerticalFlip}
    for step in config.augment:
        steps.append(flips[step.name](p=step.p, **step.params))
    return A.Compose(steps)


def apply(transform: A.Compose, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 image and (C, H, W) bool masks -> the same, transformed together."""
    out = transform(image=image, mask=np.ascontiguousarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    return out["image"], out["mask"].transpose(2, 0, 1).astype(bool)
