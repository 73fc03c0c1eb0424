"""Which items a training epoch visits, decided by (seed, epoch) alone.

The sampler yields ``epoch * len(dataset) + index``: the dataset decodes the epoch from it and
seeds that item's augmentation with (seed, epoch, index). An epoch replayed after a crash
therefore sees the same images in the same order with the same crops, in any number of
worker processes, which is what makes ``--resume`` land on the same weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Random order (``weights=None``) or weighted draws with replacement, per epoch.

    Under DDP each process takes every world_size-th item of the same epoch order, so the
    processes see disjoint shares without Lightning's distributed sampler.
    """

    def __init__(self, size: int, seed: int, weights: np.ndarray | None = None):
        self.size = size
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            return torch.randperm(self.size, generator=generator)
        return torch.multinomial(self.weights, self.size, replacement=True, generator=generator)

    def __iter__(self):
        order = self._order()
        rank, world = _rank_and_world()
        if world > 1:
            # Pad by wrapping so every process gets the same number of items (DDP needs it).
            total = _ceil(self.size, world) * world
            order = order.repeat(_ceil(total, self.size))[:total][rank::world]
        return iter((order + self.epoch * self.size).tolist())

    def __len__(self) -> int:
        return _ceil(self.size, _rank_and_world()[1])


def balanced_weights(presence: np.ndarray) -> np.ndarray:
    """Per-image draw weights so that each class-presence signature (e.g. "class 2 only",
    "clean") is drawn equally often overall: (N, C) bool -> (N,) float64."""
    _, signature, counts = np.unique(presence, axis=0, return_inverse=True, return_counts=True)
    return 1.0 / counts[signature.ravel()]


def decode(index: int, size: int) -> tuple[int, int]:
    """A sampled value -> (epoch, item index)."""
    return divmod(index, size)


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _ceil(a: int, b: int) -> int:
    return -(-a // b)
