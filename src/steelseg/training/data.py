"""Torch views of a ``SegmentationDataset``: random crops for training, full images to validate."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from steelseg.config import DataConfig, ModelConfig
from steelseg.datasets import SegmentationDataset
from steelseg.preprocess import to_input
from steelseg.training.augment import apply, train_transform


class TorchSegmentationData(Dataset):
    """Items are ``(input (in_channels, H, W) float32, masks (C, H, W) float32)``."""

    def __init__(self, source: SegmentationDataset, model: ModelConfig, data: DataConfig | None = None):
        self.source = source
        self.model = model
        self.transform = train_transform(data) if data is not None else None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, masks = self.source.load(index)
        if self.transform is not None:
            image, masks = apply(self.transform, image, masks)
        x = to_input(image, self.model.input_mean, self.model.input_std, self.model.in_channels)[0]
        return torch.from_numpy(x), torch.from_numpy(masks.astype(np.float32))
