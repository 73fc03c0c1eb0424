"""Batch-level mixup (7th place): each sample is blended with a random partner from the same
batch, images and masks alike, so targets become soft: ``y = lam * y + (1 - lam) * y[perm]``.

Pure torch. Every draw comes from the ``generator`` passed in, so a seeded generator gives
the same mixing every time, whatever else uses the global random state.
"""

from __future__ import annotations

import torch
from torch.distributions import Beta


def sample_mixup(batch_size: int, alpha: float, generator: torch.Generator | None = None) -> tuple[float, torch.Tensor]:
    """Draw ``lam ~ Beta(alpha, alpha)`` and a partner permutation (batch_size,) int64 (CPU)."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be positive, got {alpha}")
    perm = torch.randperm(batch_size, generator=generator)
    # torch's Beta sampler takes no generator: run it on the global CPU generator, seeded from
    # ours and restored afterwards, so the draw depends on our generator only.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lam = float(Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha))).sample())
    return lam, perm


def mix(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, ...) inputs and (N, ...) targets -> ``lam * a + (1 - lam) * a[perm]`` for both;
    targets come back floating point (soft masks) in x's dtype when they were not already."""
    perm = perm.to(x.device)
    if not y.is_floating_point():
        y = y.to(x.dtype)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch: x (N, C_in, H, W) float inputs, y (N, C, H, W) masks -> the same shapes,
    each sample blended with a random partner by one ``lam ~ Beta(alpha, alpha)`` per batch.
    ``generator``: a CPU ``torch.Generator`` (None: the global one)."""
    lam, perm = sample_mixup(x.shape[0], alpha, generator)
    return mix(x, y, lam, perm)
