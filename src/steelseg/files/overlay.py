"""Pictures people can check: the image with each class's mask coloured and outlined."""

from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image

from steelseg.files.atomic import atomic_path

LABEL_HEIGHT = 22  # pixels of the text bar above each picture
# One colour per class (RGB); repeats after 8 classes.
COLORS = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (0, 130, 200),
        (255, 225, 25),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
    ],
    dtype=np.float32,
)


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """(H, W) uint8 gray + (C, H, W) bool masks -> (H, W, 3) uint8, masks tinted and outlined."""
    rgb = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    for class_index, mask in enumerate(masks):
        color = COLORS[class_index % len(COLORS)]
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * color
        outline = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, kernel).astype(bool)
        rgb[outline] = color
    return rgb.clip(0, 255).astype(np.uint8)


def truth_vs_prediction(
    image: np.ndarray, truth: np.ndarray, pred: np.ndarray, title: str, class_names: list[str]
) -> np.ndarray:
    """Three stacked panels: the image, the true masks, the predicted masks, each labelled."""
    panels = [
        label_bar(np.repeat(image[..., None], 3, axis=2), title),
        label_bar(overlay(image, truth), "truth: " + present_classes(truth, class_names)),
        label_bar(overlay(image, pred), "prediction: " + present_classes(pred, class_names)),
    ]
    return np.concatenate(panels, axis=0)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def present_classes(masks: np.ndarray, class_names: list[str]) -> str:
    names = [f"{i + 1} {class_names[i]}" for i in range(len(masks)) if masks[i].any()]
    return ", ".join(names) if names else "no defect"


def label_bar(rgb: np.ndarray, text: str) -> np.ndarray:
    """(H, W, 3) -> (LABEL_HEIGHT + H, W, 3): a dark bar with ``text`` above the picture."""
    bar = np.full((LABEL_HEIGHT, rgb.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, rgb], axis=0)
