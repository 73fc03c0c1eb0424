"""Out-of-fold probabilities: what the best model of a fold says about the images it never
trained on, kept compact (float16, downscaled) for tuning thresholds and ensembles later.

They come from the Predictor, the same path (and default backend) as ``steelseg predict``.
Images of different sizes are stored padded to the largest; ``shapes`` says how much of
each entry is real. Class scores and labels are kept for every task; a classifier has no
pixel probabilities, so its file holds no ``probs``, ``masks`` or ``shapes``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from steelseg.core.preprocess import resize_image, resize_masks
from steelseg.files.atomic import atomic_path
from steelseg.files.datasets import SegmentationDataset
from steelseg.files.rundir import OOF, load_oof  # noqa: F401  (load_oof: read where it is written)
from steelseg.inference.predictor import Predictor


def save_oof(
    run_dir: Path, val_set: SegmentationDataset, scale: float, progress: bool = True, tta: str = "none"
) -> Path:
    """Predict ``val_set`` with the run's best model; write ``oof.npz`` holding ``image_ids``
    (N,) str, ``scores`` (N, C) float32 class scores, ``labels`` (N, C) bool (class present),
    ``image_shapes`` (N, 2) the full size, ``backend`` the Predictor backend that made them,
    ``tta`` its views (``tta``: the run's ``train.oof_tta``),
    and for pixel outputs ``probs`` (N, C, h, w) float16 at ``scale``, ``masks`` (N, C, h, w)
    bool and ``shapes`` (N, 2) int the (h, w) of each entry."""
    predictor = Predictor.load([run_dir], check_size=False, tta=tta)
    probs, masks, image_shapes, scores, labels = [], [], [], [], []
    for i in tqdm(range(len(val_set)), desc="out-of-fold", unit="img", disable=not progress):
        image, truth = val_set.load(i)
        outputs = predictor.predict_outputs(image[None])[0]
        scores.append(outputs.scores)
        labels.append(truth.any(axis=(1, 2)))
        image_shapes.append(image.shape)
        if outputs.pixels is not None:
            probs.append(np.stack([resize_image(p, scale) for p in outputs.pixels]).astype(np.float16))
            masks.append(resize_masks(truth, scale))
    arrays = {
        "image_ids": np.array(val_set.image_ids, dtype=str),
        "scores": np.stack(scores).astype(np.float32),
        "labels": np.stack(labels),
        "image_shapes": np.array(image_shapes, dtype=np.int64),
        "backend": np.array(predictor.describe()),  # which backend and precision made them
        "tta": np.array(tta),
    }
    if probs:
        arrays.update(
            probs=_pad_stack(probs),
            masks=_pad_stack(masks),
            shapes=np.array([p.shape[1:] for p in probs], dtype=np.int64),
        )
    path = run_dir / OOF
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def oof_entries(oof: dict[str, np.ndarray]):
    """Yield (image id, probs (C, h, w) float16, masks (C, h, w) bool), padding removed."""
    for image_id, probs, masks, (height, width) in zip(oof["image_ids"], oof["probs"], oof["masks"], oof["shapes"]):
        yield str(image_id), probs[:, :height, :width], masks[:, :height, :width]


def _pad_stack(arrays: list[np.ndarray]) -> np.ndarray:
    height = max(a.shape[1] for a in arrays)
    width = max(a.shape[2] for a in arrays)
    out = np.zeros((len(arrays), arrays[0].shape[0], height, width), dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[1], : a.shape[2]] = a
    return out


def write_run_oof(run_dir: str | os.PathLike, scale: float = 0.25, progress: bool = True) -> Path:
    """Out-of-fold probabilities of a finished run that has none (trained with
    ``train.oof_scale=null``): its validation images, split as its config says."""
    from steelseg.files.datasets import open_configured
    from steelseg.files.rundir import load_run_config
    from steelseg.training.splits import train_val_sets

    config = load_run_config(run_dir)
    val_set = train_val_sets(config, open_configured(config.data))[1]
    return save_oof(Path(run_dir), val_set, scale, progress, config.train.oof_tta)
