"""Out-of-fold members combined as ``predict`` combines them, for ``steelseg tune``
(``inference.tune``): member temperatures fitted, images combined per class by weight, a
post-processing counted and scored on them (either metric, and defect recall), true mask
sizes. No torch."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from steelseg.core.metrics import dice_from_counts
from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.core.search import check_metric
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


@dataclass(frozen=True)
class OofCounts:
    """One post-processing's pixel counts on the combined out-of-fold images, (N images, C
    classes) each, in stored pixels, with each image's ``factor`` (full-size pixels per stored
    one): what ``score`` and ``recall`` are computed from."""

    inter: np.ndarray  # (N, C) int: predicted and true
    pred: np.ndarray  # (N, C) int: predicted
    true: np.ndarray  # (N, C) int: true
    factors: np.ndarray  # (N,) float

    def score(self, metric: str = "competition") -> np.ndarray:
        """(C,) per class: "competition", the mean over images of each image's Dice (an empty
        prediction of an empty truth scores 1); "dataset", 2 sum|P n T| / (sum|P| + sum|T|) over
        all images in full-size pixels (1 for a class with no true and no predicted pixel)."""
        check_metric(metric)
        if metric == "competition":
            return dice_from_counts(self.inter, self.pred, self.true).mean(axis=0)
        weights = self.factors[:, None]
        sums = [(counts * weights).sum(axis=0) for counts in (self.inter, self.pred, self.true)]
        return dice_from_counts(*sums)

    @property
    def positives(self) -> np.ndarray:
        """(C,) the images with a true defect of the class."""
        return np.count_nonzero(self.true, axis=0)

    @property
    def hits(self) -> np.ndarray:
        """(C,) the images with a true defect of the class and a predicted pixel of it (anywhere)."""
        return np.count_nonzero((self.true > 0) & (self.pred > 0), axis=0)

    def recall(self) -> np.ndarray:
        """(C,) defect recall, hits / positives (``core.search.needed_hits``); NaN without positives."""
        positives = self.positives
        return np.where(positives > 0, self.hits / np.maximum(positives, 1), np.nan)


def count(
    posts: list[PostProcess], members: list[OofMember], image_ids: list[str], num_classes: int
) -> list[OofCounts]:
    """The ``OofCounts`` of each post-processing of ``posts`` on the combined out-of-fold images
    (each combined once), each image's sizes rescaled to its stored scale: an independent path
    from ``GatedSearch``'s counts (``PostProcess`` itself makes every mask)."""
    shape = (len(posts), len(image_ids), num_classes)
    inter, pred, true = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    factors = np.ones(len(image_ids))
    for row, image_id in enumerate(image_ids):
        probs, heads, truth, factors[row] = combine_entry(members, image_id, num_classes)
        flat_true = truth.reshape(num_classes, -1)
        true[:, row] = np.count_nonzero(flat_true, axis=1)
        for k, post in enumerate(posts):
            flat_pred = _at_scale(post, factors[row])(probs, heads).reshape(num_classes, -1)
            inter[k, row] = np.count_nonzero(flat_pred & flat_true, axis=1)
            pred[k, row] = np.count_nonzero(flat_pred, axis=1)
    return [OofCounts(inter[k], pred[k], true[k], factors) for k in range(len(posts))]


def _at_scale(post: PostProcess, factor: float) -> PostProcess:
    """``post`` with its sizes in pixels of an image stored at 1 / ``factor`` of its area."""
    return replace(
        post,
        min_area=np.where(post.min_area >= NEVER, NEVER, np.ceil(post.min_area / factor - 1e-9)).astype(np.int64),
        min_component=np.ceil(post.min_component / factor - 1e-9).astype(np.int64),
        peak_top_k=max(1, round(post.peak_top_k / factor)),  # K full-size pixels
    )


def evaluate(
    posts: list[PostProcess],
    members: list[OofMember],
    image_ids: list[str],
    num_classes: int,
    metric: str = "competition",
) -> list[np.ndarray]:
    """(C,) score per class (``metric``: "competition" or "dataset", ``OofCounts.score``) of each
    post-processing of ``posts`` on the combined out-of-fold images (``count``)."""
    check_metric(metric)
    return [counts.score(metric) for counts in count(posts, members, image_ids, num_classes)]


def true_area_quantiles(members, image_ids, num_classes: int, quantile: float) -> np.ndarray:
    """(C,) the ``quantile`` of true mask sizes (full-size pixels) per class (5th place: 2%)."""
    sizes = [[] for _ in range(num_classes)]
    for image_id in image_ids:
        entry = next(m.entries[image_id] for m in members if m.entries[image_id].truth is not None)
        counts = np.count_nonzero(entry.truth.reshape(num_classes, -1), axis=1) * entry.factor
        for c in np.flatnonzero(counts):
            sizes[c].append(counts[c])
    return np.array([int(np.quantile(s, quantile)) if s else 0 for s in sizes], dtype=np.int64)
