"""Out-of-fold probabilities: what the best model of a fold says about the images it never
trained on, kept compact (float16, downscaled) for tuning thresholds and ensembles later."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from steelseg.atomic import atomic_path
from steelseg.datasets import SegmentationDataset
from steelseg.predictor import Predictor
from steelseg.preprocess import resize_image, resize_masks

OOF = "oof.npz"


def save_oof(run_dir: Path, val_set: SegmentationDataset, scale: float, progress: bool = True) -> Path:
    """Predict ``val_set`` with the run's best model; write ``oof.npz`` holding ``image_ids``
    (N,) str, ``probs`` (N, C, h, w) float16 at ``scale`` and ``masks`` (N, C, h, w) bool."""
    predictor = Predictor(run_dir)
    probs, masks = [], []
    for i in tqdm(range(len(val_set)), desc="out-of-fold", unit="img", disable=not progress):
        image, truth = val_set.load(i)
        full = predictor.predict_proba(image[None])[0]
        probs.append(np.stack([resize_image(p, scale) for p in full]).astype(np.float16))
        masks.append(resize_masks(truth, scale))
    path = run_dir / OOF
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, image_ids=np.array(val_set.image_ids, dtype=str), probs=np.stack(probs), masks=np.stack(masks))
    return path


def load_oof(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(Path(run_dir) / OOF, allow_pickle=False) as data:  # plain arrays only
        return {key: data[key] for key in data.files}
