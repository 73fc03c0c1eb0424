"""Torch views of a ``SegmentationDataset``: random crops for training, full images to validate."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from steelseg.config import DataConfig, ModelConfig
from steelseg.datasets import SegmentationDataset
from steelseg.preprocess import resize_image, resize_masks, to_input
from steelseg.training.augment import apply, seed_transform, train_transform
from steelseg.training.sampling import decode


class TorchSegmentationData(Dataset):
    """Items are ``(input (in_channels, h, w) float32, masks (C, H, W) float32)``.

    Training items (``data`` given) are random crops of the image and masks resized by
    ``model.input_scale``; validation items are whole images whose masks stay at full size,
    so that validation scores what prediction will deliver.
    """

    def __init__(self, source: SegmentationDataset, model: ModelConfig, data: DataConfig | None = None, seed: int = 0):
        self.source = source
        self.model = model
        self.transform = train_transform(data) if data is not None else None
        # A 1600-px strip holds several crops' worth of surface: draw more than one per epoch.
        self.repeats = data.crops_per_image if data is not None else 1
        self.seed = seed

    def __len__(self) -> int:
        return len(self.source) * self.repeats

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Training indices come from EpochSampler and carry the epoch (see sampling.py).
        epoch, index = decode(index, len(self))
        image, masks = self.source.load(index % len(self.source))
        scale = self.model.input_scale
        if self.transform is not None:
            seed_transform(self.transform, int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
            image, masks = apply(self.transform, resize_image(image, scale), resize_masks(masks, scale))
            scale = 1.0
        x = to_input(image, self.model.input_mean, self.model.input_std, self.model.in_channels, scale)[0]
        return torch.from_numpy(x), torch.from_numpy(masks.astype(np.float32))
