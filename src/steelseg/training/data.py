"""Torch views of a ``SegmentationDataset``: random crops for training, full images to
validate, and the loaders that batch them (images of different sizes never share a batch
unpadded). Also what a run records of the data it was given: the rows and images that
``data.skip_bad`` left out (``skipped.txt``), and the check that the data has something to learn."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Sampler

from steelseg.config import Config, DataConfig, ModelConfig
from steelseg.core.preprocess import resize_image, resize_masks, to_input
from steelseg.files.atomic import write_text
from steelseg.files.datasets import CombinedDataset, SegmentationDataset, skips_of
from steelseg.files.rundir import SKIPPED
from steelseg.training.augment import apply, seed_transform, train_transform
from steelseg.training.sampling import EpochSampler, balanced_weights, decode


class TorchSegmentationData(Dataset):
    """Items are ``(input (in_channels, h, w) float32, masks (C, H, W) float32)``.

    Training items (``data`` given) are random crops of the image and masks resized by
    ``model.input_scale``; validation items are whole images whose masks stay at full size,
    so that validation scores what prediction will deliver.
    """

    def __init__(
        self,
        source: SegmentationDataset | CombinedDataset,
        model: ModelConfig,
        data: DataConfig | None = None,
        seed: int = 0,
    ):
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


class SameShapeBatches(Sampler[list[int]]):
    """Batches of indices whose images have the same (H, W), in order of first appearance:
    whole images are validated exactly as the Predictor sees them, never padded together."""

    def __init__(self, shapes: list[tuple[int, int]], batch_size: int):
        groups: dict[tuple[int, int], list[int]] = {}
        for index, shape in enumerate(shapes):
            groups.setdefault(tuple(shape), []).append(index)
        self.batches = [
            group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)
        ]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class PadToLargest:
    """Collate training items of different sizes (whole images, no crop) by padding each to
    the batch's largest H and W: the image with black, the masks with background."""

    def __init__(self, black: float):
        self.black = black

    def __call__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        height = max(x.shape[-2] for x, _ in items)
        width = max(x.shape[-1] for x, _ in items)
        xs = torch.full((len(items), items[0][0].shape[0], height, width), self.black, dtype=torch.float32)
        ys = torch.zeros((len(items), items[0][1].shape[0], height, width), dtype=torch.float32)
        for i, (x, y) in enumerate(items):
            xs[i, :, : x.shape[-2], : x.shape[-1]] = x
            ys[i, :, : y.shape[-2], : y.shape[-1]] = y
        return xs, ys


def loaders(
    config: Config,
    train_set: SegmentationDataset | CombinedDataset,
    val_set: SegmentationDataset,
    train_items: type[TorchSegmentationData] | None = None,
    collate=None,
) -> tuple[DataLoader, DataLoader]:
    """The training loader (epoch-seeded order, optional class balance) and the validation
    loader (whole images, batches of one size). ``train_items`` and ``collate``: another kind of
    training item (distillation's, with the teacher's targets) and how to batch it."""
    data, model = config.data, config.model
    train_data = (train_items or TorchSegmentationData)(train_set, model, data, seed=config.train.seed)
    weights = None
    if data.sampler == "balanced":
        weights = np.tile(balanced_weights(train_set.class_presence()), data.crops_per_image)
    sampler = EpochSampler(len(train_data), config.train.seed, weights)
    train_loader = DataLoader(
        train_data,
        batch_size=data.batch_size,
        sampler=sampler,
        drop_last=len(train_data) > data.batch_size,
        num_workers=data.num_workers,
        collate_fn=collate or PadToLargest(-model.input_mean / model.input_std),
    )
    # Every process validates the whole split: scores need every image, and it is small.
    batches = SameShapeBatches(val_set.image_shapes(), max(1, data.batch_size // 2))
    val_loader = DataLoader(TorchSegmentationData(val_set, model), batch_sampler=batches, num_workers=data.num_workers)
    return train_loader, val_loader


def warn_if_no_defects(datasets: list[SegmentationDataset], classes: list[int] | None) -> str | None:
    """Tables that give no image a mask of the classes trained (a header-only train.csv, every
    row skipped), in ``data.root`` and its pseudo folders alike, can only teach "no defect":
    printed as a one-line warning, and returned. Not an error: an all-clean set is valid data
    (tiny synthetic sets often are). Mask folders are not checked: that would read every mask."""
    if any(dataset.annotations is None for dataset in datasets):
        return None
    if any((dataset.select_classes(classes) if classes else dataset).class_presence().any() for dataset in datasets):
        return None
    main = datasets[0]
    which = f" of class {', '.join(map(str, classes))}" if classes else ""
    pseudo = ", nor any of data.pseudo" if len(datasets) > 1 else ""
    message = (
        f"{main.annotations.source}: no image of {main.root / 'train_images'} has a mask{which}{pseudo} "
        f"({len(main)} images, all clean): the model can only learn that there is no defect"
    )
    print(f"warning: {message}", file=sys.stderr, flush=True)
    return message


def write_skipped(run_dir: str | os.PathLike, config: Config, *datasets) -> None:
    """With ``data.skip_bad``: ``run_dir/skipped.txt``, the rows and images the datasets left out
    (their messages, one a line; empty when none was). Written by the first process only."""
    if rank_zero_only.rank != 0:
        return
    if not config.data.skip_bad:
        (Path(run_dir) / SKIPPED).unlink(missing_ok=True)  # an earlier attempt's, which would be counted
        return
    lines = [skip.message.replace("\n", " ") for skip in skips_of(*datasets)]
    write_text(Path(run_dir) / SKIPPED, "".join(f"{line}\n" for line in lines))


def count_skipped(out: str | os.PathLike) -> tuple[int, list[Path]]:
    """Distinct lines of the ``skipped.txt`` files in ``out`` and the run folders below it
    (folds, classes, stages), and those files."""
    files = sorted(Path(out).rglob(SKIPPED))
    lines = {line for file in files for line in file.read_text(encoding="utf-8").splitlines() if line}
    return len(lines), files
