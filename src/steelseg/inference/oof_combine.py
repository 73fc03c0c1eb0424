"""Out-of-fold members combined as ``predict`` combines them, for ``steelseg tune``
(``inference.tune``): member temperatures fitted, images combined per class by weight, a
post-processing scored on them, true mask sizes. No torch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from steelseg.core.metrics import dice_from_counts
from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.inference.ensemble import scale_logits
from steelseg.inference.oof_members import OofMember, TuneError

TEMPERATURES = [0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0]
PIXELS_PER_CLASS = 400  # pixels sampled per image and class to fit temperatures


def fit_temperature(member: OofMember, image_ids: list[str], seed: int = 0) -> float:
    """The temperature from ``TEMPERATURES`` with the least log loss of the member's
    probabilities on a sample of pixels (or, for a classifier, of its class scores)."""
    rng = np.random.default_rng(seed)
    probs, truth = [], []
    for image_id in image_ids:
        entry = member.entries[image_id]
        if entry.probs is not None:
            flat = entry.probs.reshape(len(entry.probs), -1)
            known = ~np.isnan(flat[:, 0])
            pick = rng.integers(0, flat.shape[1], size=min(PIXELS_PER_CLASS, flat.shape[1]))
            probs.append(flat[known][:, pick].ravel())
            truth.append(entry.truth.reshape(len(entry.truth), -1)[known][:, pick].ravel())
        else:
            known = ~np.isnan(entry.heads)
            probs.append(entry.heads[known])
            truth.append(entry.labels[known])
    p, y = np.concatenate(probs), np.concatenate(truth)
    losses = [_log_loss(scale_logits(p, t), y) for t in TEMPERATURES]
    return TEMPERATURES[int(np.argmin(losses))]


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def combine_entry(members: list[OofMember], image_id: str, num_classes: int):
    """One image, as the ensemble predicts it: (probs (C, h, w), heads (C,) or None, truth
    (C, h, w), factor), members averaged per class by weight after their temperatures."""
    pixel_sum, pixel_weight, head_sum, head_weight = (
        None,
        np.zeros(num_classes),
        np.zeros(num_classes),
        np.zeros(num_classes),
    )
    truth, factor = None, 1.0
    for member in members:
        entry = member.entries[image_id]
        if entry.probs is not None:
            probs = entry.probs if member.temperature == 1.0 else scale_logits(entry.probs, member.temperature)
            if pixel_sum is None:
                pixel_sum = np.zeros(probs.shape, np.float32)
                truth, factor = entry.truth, entry.factor
            elif probs.shape != pixel_sum.shape:
                probs = _resize(probs, pixel_sum.shape[1:])
            known = ~np.isnan(probs[:, 0, 0])
            pixel_sum[known] += member.weight * probs[known]
            pixel_weight[known] += member.weight
        if entry.heads is not None:
            heads = entry.heads if member.temperature == 1.0 else scale_logits(entry.heads, member.temperature)
            known = ~np.isnan(heads)
            head_sum[known] += member.weight * heads[known]
            head_weight[known] += member.weight
    covered = pixel_weight > 0
    if not covered.all():
        raise TuneError(
            f"image {image_id}: no member predicts the pixels of class {int(np.flatnonzero(~covered)[0]) + 1}"
        )
    probs = pixel_sum / pixel_weight[:, None, None].astype(np.float32)
    heads = None
    if head_weight.any():
        heads = np.where(head_weight > 0, head_sum / np.maximum(head_weight, 1e-12), np.nan).astype(np.float32)
    return probs, heads, truth, factor


def _resize(probs: np.ndarray, shape) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(p, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) for p in probs])


def evaluate(
    posts: list[PostProcess], members: list[OofMember], image_ids: list[str], num_classes: int
) -> list[np.ndarray]:
    """(C,) mean competition Dice of each post-processing of ``posts`` on the combined
    out-of-fold images (each combined once), each image's sizes rescaled to its stored scale
    (an independent path from ``GatedSearch``'s counts)."""
    dice = np.zeros((len(posts), len(image_ids), num_classes))
    for row, image_id in enumerate(image_ids):
        probs, heads, truth, factor = combine_entry(members, image_id, num_classes)
        flat_true = truth.reshape(num_classes, -1)
        for k, post in enumerate(posts):
            scaled = replace(
                post,
                min_area=np.where(post.min_area >= NEVER, NEVER, np.ceil(post.min_area / factor - 1e-9)).astype(
                    np.int64
                ),
                min_component=np.ceil(post.min_component / factor - 1e-9).astype(np.int64),
                peak_top_k=max(1, round(post.peak_top_k / factor)),  # K full-size pixels
            )
            flat_pred = scaled(probs, heads).reshape(num_classes, -1)
            inter = np.count_nonzero(flat_pred & flat_true, axis=1)
            dice[k, row] = dice_from_counts(
                inter, np.count_nonzero(flat_pred, axis=1), np.count_nonzero(flat_true, axis=1)
            )
    return list(dice.mean(axis=1))


def true_area_quantiles(members, image_ids, num_classes: int, quantile: float) -> np.ndarray:
    """(C,) the ``quantile`` of true mask sizes (full-size pixels) per class (5th place: 2%)."""
    sizes = [[] for _ in range(num_classes)]
    for image_id in image_ids:
        entry = next(m.entries[image_id] for m in members if m.entries[image_id].truth is not None)
        counts = np.count_nonzero(entry.truth.reshape(num_classes, -1), axis=1) * entry.factor
        for c in np.flatnonzero(counts):
            sizes[c].append(counts[c])
    return np.array([int(np.quantile(s, quantile)) if s else 0 for s in sizes], dtype=np.int64)
