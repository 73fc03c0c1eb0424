"""The training and validation sides of a run's data: the random or fold split, the selected
classes, and pseudo-labelled folders on the training side only. Training and its out-of-fold
files both split here, so they always agree on which images were held out."""

from __future__ import annotations

import numpy as np

from steelseg.config import Config
from steelseg.files.datasets import CombinedDataset, SegmentationDataset, open_pseudo, split_indices
from steelseg.files.folds import read_folds, split_by_fold


def train_val_sets(
    config: Config, dataset: SegmentationDataset
) -> tuple[SegmentationDataset | CombinedDataset, SegmentationDataset]:
    """The training and validation images of ``dataset`` (``data.root``) with ``data.classes``
    selected: the random or fold split, then the ``data.pseudo`` folders added to the training
    side only."""
    if config.data.classes:
        dataset = dataset.select_classes(config.data.classes)
    train_index, val_index = _split(config, dataset)
    train_set, val_set = dataset.subset(train_index), dataset.subset(val_index)
    extras = open_pseudo(config.data, dataset)
    return (CombinedDataset([train_set, *extras]) if extras else train_set), val_set


def _split(config: Config, dataset: SegmentationDataset) -> tuple[np.ndarray, np.ndarray]:
    data = config.data
    if data.folds:
        return split_by_fold(dataset.image_ids, read_folds(data.folds), data.fold, left_out=dataset.skipped_ids)
    return split_indices(len(dataset), data.val_fraction, data.split_seed)
