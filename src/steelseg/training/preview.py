"""A picture of what the network is trained on: augmented samples, masks coloured, in a grid.

Look at it before a long run: a misconfigured augmentation (masks off the defects, images
washed out, every crop empty) shows at a glance.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from steelseg.config import DataConfig
from steelseg.files.datasets import SegmentationDataset
from steelseg.files.overlay import label_bar, overlay, present_classes, save_png
from steelseg.training.augment import apply, seed_transform, train_transform

GAP = 4  # white pixels between tiles


def write_augment_preview(
    dataset: SegmentationDataset, data_config: DataConfig, out_png: str | os.PathLike, n: int = 8, seed: int = 0
) -> Path:
    """Draw ``n`` training samples (random images, each through ``train_transform``), masks
    coloured and a label naming the classes present, into a grid PNG written atomically.
    The same ``seed`` gives the same picture."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if len(dataset) == 0:
        raise ValueError("the dataset holds no images")
    transform = train_transform(data_config)
    seed_transform(transform, seed)
    # More samples than images: draw images again; the augmentation makes each sample differ.
    indices = np.random.default_rng(seed).choice(len(dataset), size=n, replace=n > len(dataset))
    tiles = [sample_tile(*apply(transform, *dataset.load(int(i))), dataset.class_names) for i in indices]
    out_png = Path(out_png)
    save_png(out_png, tile_grid(tiles))
    return out_png


def sample_tile(image: np.ndarray, masks: np.ndarray, class_names: list[str]) -> np.ndarray:
    """(H, W) uint8 image + (C, H, W) bool masks -> (LABEL_HEIGHT + H, W, 3) uint8: the
    overlay under a bar naming the classes present ("no defect" when none)."""
    return label_bar(overlay(image, masks), present_classes(masks, class_names))


def tile_grid(tiles: list[np.ndarray], gap: int = GAP) -> np.ndarray:
    """(h_i, w_i, 3) uint8 tiles -> one (H, W, 3) uint8 picture, row by row, tiles top-left in
    cells of the largest tile's size, as many columns as make it about as tall as wide."""
    height = max(t.shape[0] for t in tiles)
    width = max(t.shape[1] for t in tiles)
    cols = grid_columns(len(tiles), height, width)
    rows = math.ceil(len(tiles) / cols)
    canvas = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // cols) * (height + gap), (i % cols) * (width + gap)
        canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return canvas


def grid_columns(n: int, height: int, width: int) -> int:
    """Columns for ``n`` tiles of ``height`` x ``width``: about square overall (wide 256x512
    crops go two to a row, square ones three for 8 tiles)."""
    return max(1, min(n, round(math.sqrt(n * height / width))))
