"""Training-time augmentation. The only module that imports albumentations."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it would call the internet at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from steelseg.config import DataConfig  # noqa: E402


def train_transform(config: DataConfig) -> A.Compose:
    """Random crop (padding first when the image is smaller than the crop) and flips."""
    steps: list = []
    if config.crop_height and config.crop_width:
        steps += [
            A.PadIfNeeded(config.crop_height, config.crop_width, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
            A.RandomCrop(config.crop_height, config.crop_width),
        ]
    if config.hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if config.vflip:
        steps.append(A.VerticalFlip(p=0.5))
    return A.Compose(steps)


def apply(transform: A.Compose, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 image and (C, H, W) bool masks -> the same, transformed together."""
    out = transform(image=image, mask=np.ascontiguousarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    return out["image"], out["mask"].transpose(2, 0, 1).astype(bool)
