"""The one place images become network inputs: used by training and every predictor backend."""

from __future__ import annotations

import numpy as np


def to_input(images: np.ndarray, mean: float, std: float, in_channels: int = 1) -> np.ndarray:
    """(N, H, W) or (H, W) uint8 gray -> (N, in_channels, H, W) float32, standardised."""
    if images.ndim == 2:
        images = images[None]
    x = (images.astype(np.float32) / 255.0 - mean) / std
    return np.repeat(x[:, None], in_channels, axis=1) if in_channels > 1 else x[:, None]
