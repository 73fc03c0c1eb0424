"""The one place images become network inputs and outputs become full-size probabilities.

Training and every predictor backend call these, so they cannot drift apart. ``scale`` < 1
runs the network on a downscaled image (``model.input_scale``): a quarter of the pixels at
0.5, for CPUs and quick experiments; probabilities are resized back to the image's size, so
masks, post-processing and scores always live at full resolution.
"""

from __future__ import annotations

import cv2
import numpy as np


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) uint8 or float32 -> (round(H*scale), round(W*scale)), same dtype, area-averaged."""
    if scale == 1:
        return image
    height, width = scaled_shape(image.shape, scale)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def resize_masks(masks: np.ndarray, scale: float) -> np.ndarray:
    """(C, H, W) bool -> (C, h, w) bool: a pixel is a defect where most of its area was."""
    if scale == 1:
        return masks
    height, width = scaled_shape(masks.shape[1:], scale)
    # One class at a time: OpenCV's area resize takes at most four channels per call.
    resized = [cv2.resize(m.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) for m in masks]
    return np.stack(resized).reshape(len(masks), height, width) >= 0.5


def upsample_probs(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) float32 -> (N, C, H, W) float32, bilinear; a no-op at the same size."""
    if probs.shape[-2:] == tuple(shape):
        return probs
    n, c, h, w = probs.shape
    stacked = probs.reshape(n * c, h, w).transpose(1, 2, 0)
    out = np.empty((shape[0], shape[1], n * c), np.float32)
    # cv2 handles at most 128 channels per call (OpenCV 5; 4.x took 512)
    for start in range(0, n * c, 128):
        part = cv2.resize(
            np.ascontiguousarray(stacked[..., start : start + 128]),
            (shape[1], shape[0]),
            interpolation=cv2.INTER_LINEAR,
        )
        out[..., start : start + 128] = part.reshape(shape[0], shape[1], -1)
    return out.transpose(2, 0, 1).reshape(n, c, *shape)


def to_input(images: np.ndarray, mean: float, std: float, in_channels: int = 1, scale: float = 1.0) -> np.ndarray:
    """(N, H, W) or (H, W) uint8 gray -> (N, in_channels, h, w) float32, resized and standardised."""
    if images.ndim == 2:
        images = images[None]
    if scale != 1:
        images = np.stack([resize_image(image, scale) for image in images])
    x = images.astype(np.float32)
    x *= np.float32(1 / (255.0 * std))  # (v / 255 - mean) / std, in place: one pass less
    x -= np.float32(mean / std)
    return np.repeat(x[:, None], in_channels, axis=1) if in_channels > 1 else x[:, None]
