"""The written rules that turn a dataset's fingerprint and a measured probe into a plan.

Each rule is a small function returning its choice and the reason, in words a user can check
against the fingerprint; ``make_plan`` strings them together. The constants are the rules'
knobs, named so that a reader can see what each decision hinges on.

Geometry (``geometry``): the network sees images scaled so that their median height is at most
``MAX_NET_HEIGHT`` pixels, unless that would make a quarter of the defects shorter than
``MIN_DEFECT_PX`` pixels; it trains on whole images when a scaled image has at most
``WHOLE_IMAGE_PIXELS`` pixels, else on crops (multiples of 32, as long as most images allow,
wider than tall for strips). Where even the segmenter alone would get fewer than
``MIN_FOLD_STEPS`` optimiser steps in one fold (a slow CPU, a small budget), it sees the same
field of view at half the resolution (``coarser``): a step costs about a quarter, so it learns
from four times as many, as long as the 25th-percentile defect keeps ``MIN_COARSE_DEFECT_PX``
pixels (on a 10-minute budget on a 2-core CPU a half-resolution U-Net learned where the full one
did not: ``benchmarks/half_scale.py``).

Time (``folds``, ``schedule``): the budget less what the other stages are estimated to take
(prediction of every out-of-fold image with every TTA view, tuning, export) is shared among the
member-fold trainings; a small budget trains fewer of the k fold models, each for longer. The
probe's seconds per image turn a fold's minutes into training images; a fold validates
``VALIDATIONS`` times on at most ``VAL_IMAGES`` images (the out-of-fold files at the end cover
the whole fold), unless that would take over ``VAL_SHARE`` of its time (``validation``: on a
slow CPU, 8 validations of 200 whole 256x1600 strips took half of a 43-minute fold). Whole
passes over the data when they fit, else shorter "epochs" (``train.batches_per_epoch``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from steelseg.errors import UsageError
from steelseg.pipeline.fingerprint import Fingerprint

MAX_NET_HEIGHT = 384  # px: median image height the network sees at most
MIN_DEFECT_PX = 12  # px: the longest side of the 25th-percentile defect, after scaling
MIN_COARSE_DEFECT_PX = 6  # px: the same, at most, when a short budget halves the resolution
MIN_COARSE_CROP = 64  # px: a crop's side (network pixels) below which resolution is not halved
WHOLE_IMAGE_PIXELS = 256 * 512  # scaled images up to this size train whole, larger ones on crops
CROP_SIDE = 256  # px, network pixels: a crop's height (and twice it as width for wide strips)
WIDE = 2.5  # aspect ratio (width / height) from which images count as strips
CPU_MAX_BATCH = 8  # on a CPU small batches give more updates per minute at the same images/s
GPU_MAX_BATCH = 32
MEMORY_SHARE = 0.5  # of the free memory, for one training's samples
VALIDATIONS = 8  # per fold training
VAL_IMAGES = 256  # images per validation at most
VAL_SHARE = 0.2  # of a fold's training time at most spent validating ...
MIN_VAL_IMAGES = 64  # ... by validating fewer images, down to this many (or all there are) ...
MIN_VALIDATIONS = 3  # ... then validating less often, down to this many times
SCREEN_EMPTY_SHARE = 0.5  # a classifier screen joins when at least this share of (image, class) pairs is empty
TWO_HEAD_EMPTY_SHARE = 0.3  # a two-headed net joins the candidates from this share, when time allows
MIN_FOLD_STEPS = 1000  # optimiser steps per fold model below which fewer fold models are trained
MIN_FOLD_IMAGES = 10  # images per fold at least (k = 5, 4 or 3)
BALANCE_RATIO = 0.25  # rarest / commonest class image share below which the sampler balances
MAX_POS_WEIGHT = 4.0
TUNE_SECONDS_PER_IMAGE = 0.02  # per member and search (measured: NEU-Seg, 3 members)
EXPORT_SECONDS = 20  # per fold model (trace, check against PyTorch)
FIXED_SECONDS = 60  # folds, report, starting each training
DISTILL_SHARE = 0.3  # of the budget, kept for distilling the system into one network (fit --distill)


class BudgetError(UsageError):
    """A budget too small for the plan's least work."""


@dataclass(frozen=True)
class Geometry:
    scale: float
    crop: tuple[int, int] | None  # (h, w) of the scaled image (network pixels); None: whole images
    net_crop: tuple[int, int]  # what the network sees in training (h, w)
    net_image: tuple[int, int]  # what it sees of a median image in prediction


def geometry(fp: Fingerprint) -> tuple[Geometry, list[tuple[str, str]]]:
    """Input scale and crop from the image and defect sizes (module docstring)."""
    height, width = fp.height["p50"], fp.width["p50"]
    by_size = min(1.0, MAX_NET_HEIGHT / height)
    extents = [c.extent["p25"] for c in fp.classes if c.extent]
    by_defect = min(1.0, MIN_DEFECT_PX / min(extents)) if extents else 0.0
    scale = _round_scale(max(by_size, by_defect))
    why_scale = (
        f"median image {height:.0f}x{width:.0f}"
        + (f" fits {MAX_NET_HEIGHT} px high" if by_size >= 1 else f" is scaled to {MAX_NET_HEIGHT} px high")
        + (f"; the 25th-percentile defect ({min(extents):.0f} px) stays >= {MIN_DEFECT_PX} px" if extents else "")
    )
    net_image = (up32(height * scale), up32(width * scale))
    if height * width * scale * scale <= WHOLE_IMAGE_PIXELS:
        crop = None
        why_crop = f"a scaled image has at most {WHOLE_IMAGE_PIXELS:,} pixels: whole images"
    else:
        small_h, small_w = fp.height["p5"] * scale, fp.width["p5"] * scale
        net_h = max(32, min(CROP_SIDE, _down32(small_h)))
        ratio = 2 if fp.aspect_ratio["p50"] >= WIDE else 1
        net_w = max(32, min(ratio * CROP_SIDE, _down32(small_w)))
        crop = (net_h, net_w)  # training crops are cut from the scaled image (training.data)
        shape = "strips: twice as wide" if ratio == 2 else "square"
        why_crop = f"{net_h}x{net_w} network pixels ({shape}), within 95% of the images"
    net_crop = crop or net_image
    return Geometry(scale, crop, net_crop, net_image), [("input scale", why_scale), ("crop", why_crop)]


def coarser(geo: Geometry, fp: Fingerprint) -> tuple[Geometry, list[tuple[str, str]]] | None:
    """``geo`` at half the resolution on the same field of view (a crop of the same image area,
    half as many pixels each way); None where the 25th-percentile defect would fall below
    ``MIN_COARSE_DEFECT_PX`` pixels or a crop below ``MIN_COARSE_CROP`` (module docstring)."""
    extents = [c.extent["p25"] for c in fp.classes if c.extent]
    scale = geo.scale / 2
    if not extents or min(extents) * scale < MIN_COARSE_DEFECT_PX:
        return None
    crop = None
    if geo.crop is not None:
        crop = (max(32, _down32(geo.crop[0] / 2)), max(32, _down32(geo.crop[1] / 2)))
        if min(crop) < MIN_COARSE_CROP:
            return None
    net_image = (up32(fp.height["p50"] * scale), up32(fp.width["p50"] * scale))
    why_scale = (
        f"half of {geo.scale:g}; the 25th-percentile defect ({min(extents):.0f} px) keeps "
        f"{min(extents) * scale:.1f} >= {MIN_COARSE_DEFECT_PX} px"
    )
    why_crop = (
        f"{crop[0]}x{crop[1]} network pixels: the same field of view as {geo.crop[0]}x{geo.crop[1]} at {geo.scale:g}"
        if crop
        else "whole images"
    )
    return Geometry(scale, crop, crop or net_image, net_image), [("input scale", why_scale), ("crop", why_crop)]


def batch_size(bytes_per_sample: int, free_bytes: int, device: str) -> tuple[int, str]:
    """The largest power of two whose samples take at most ``MEMORY_SHARE`` of the free memory,
    capped per device kind."""
    cap = GPU_MAX_BATCH if device.startswith("cuda") else CPU_MAX_BATCH
    fits = max(1, int(MEMORY_SHARE * free_bytes // max(1, bytes_per_sample)))
    batch = min(cap, 1 << (fits.bit_length() - 1))
    reason = f"{bytes_per_sample / 2**20:.0f} MiB per sample measured, {free_bytes / 2**30:.1f} GiB free"
    if batch == cap:
        reason += f"; capped at {cap} on {'a GPU' if cap == GPU_MAX_BATCH else 'a CPU'}"
    return batch, reason


def families(fp: Fingerprint) -> tuple[list[str], str]:
    """The model families to try: a segmenter always; a classifier screen when many (image,
    class) pairs are empty; a two-headed net as a further candidate."""
    chosen = ["segment"]
    share = fp.empty_pair_share
    reason = f"{share:.0%} of (image, class) pairs are empty"
    if share >= SCREEN_EMPTY_SHARE:
        chosen.append("classify")
        reason += f" (>= {SCREEN_EMPTY_SHARE:.0%}: a classifier screen)"
    if share >= TWO_HEAD_EMPTY_SHARE:
        chosen.append("two_head")
        reason += f" (>= {TWO_HEAD_EMPTY_SHARE:.0%}: a two-headed net as a candidate)"
    return chosen, reason


def sampler_and_weights(fp: Fingerprint) -> tuple[str, list[float], str]:
    """``balanced`` sampling when a class is much rarer than the commonest; BCE ``pos_weight``
    per class from its pixel share, relative to the commonest class, at most ``MAX_POS_WEIGHT``."""
    shares = np.array([c.image_share for c in fp.classes])
    pixels = np.array([(c.area["p50"] if c.area else 0.0) * c.image_share for c in fp.classes])
    ratio = shares.min() / max(shares.max(), 1e-9)
    sampler = "balanced" if ratio < BALANCE_RATIO or fp.clean_share > 0.5 else "random"
    known = pixels > 0
    weights = np.ones(len(pixels))
    if known.any():
        weights[known] = np.clip(np.sqrt(pixels[known].max() / pixels[known]), 1.0, MAX_POS_WEIGHT)
    reason = (
        f"rarest class in {shares.min():.1%} of images, commonest in {shares.max():.1%}, clean {fp.clean_share:.0%}: "
        f"{sampler} sampling; pos_weight = sqrt(commonest pixel share / class's), 1..{MAX_POS_WEIGHT:g}"
    )
    return sampler, [round(float(w), 2) for w in weights], reason


@dataclass(frozen=True)
class Schedule:
    epochs: int
    batches_per_epoch: int | None
    val_batches: int
    minutes: float
    train_images: int  # planned over the whole fold training


def schedule(
    minutes: float, train_images: int, val_images: int, batch: int, train_s: float, predict_s: float
) -> tuple[Schedule, str]:
    """Epochs and their length for one fold's ``minutes`` (module docstring)."""
    seconds = minutes * 60
    val_n, validations = validation(seconds, val_images, predict_s)
    val_batches = max(1, math.ceil(val_n / max(1, batch // 2)))
    capped = (
        f" (validation kept to {VAL_SHARE:.0%} of the time: {validations} x {val_n} images)"
        if (val_n, validations) != (min(val_images, VAL_IMAGES), VALIDATIONS)
        else ""
    )
    per_pass = train_images * train_s + val_n * predict_s
    epochs = int(seconds // per_pass)
    if epochs >= validations:
        plan = Schedule(epochs, None, val_batches, minutes, epochs * train_images)
        return plan, f"{epochs} passes over {train_images} images, each validated on {val_n}{capped}"
    per_epoch = (seconds / validations - val_n * predict_s) / train_s
    batches = max(1, int(per_epoch // batch))
    plan = Schedule(validations, batches, val_batches, minutes, validations * batches * batch)
    passes = plan.train_images / max(1, train_images)
    return plan, (
        f"{validations} epochs of {batches} batches ({passes:.1f} passes over {train_images} images), "
        f"each validated on {val_n}{capped}"
    )


def validation(seconds: float, val_images: int, predict_s: float) -> tuple[int, int]:
    """(images per validation, validations) in a fold training of ``seconds``: ``VALIDATIONS``
    times at most ``VAL_IMAGES`` images while that takes at most ``VAL_SHARE`` of the time;
    beyond it fewer images (down to ``MIN_VAL_IMAGES``), then fewer validations (down to
    ``MIN_VALIDATIONS``): a model checked less often, not one trained less."""
    allowed = VAL_SHARE * seconds
    images = min(val_images, VAL_IMAGES)
    if VALIDATIONS * images * predict_s > allowed:
        images = max(min(images, MIN_VAL_IMAGES), int(allowed / (VALIDATIONS * predict_s)))
    times = VALIDATIONS
    if times * images * predict_s > allowed:
        times = max(MIN_VALIDATIONS, int(allowed / (images * predict_s)))
    return images, times


def fold_count(fp: Fingerprint) -> int:
    """k: 5, or 4 or 3 when a fold would hold fewer than ``MIN_FOLD_IMAGES`` images."""
    return next((k for k in (5, 4) if fp.images >= MIN_FOLD_IMAGES * k), 3)


def folds(fp: Fingerprint, steps_at) -> tuple[int, int, str]:
    """k (``fold_count``) and how many of the k fold models to train: as many as can each get
    ``MIN_FOLD_STEPS`` optimiser steps (``steps_at(k, n)``: steps per fold model when n of k are
    trained), at least one: an undertrained model costs more than a missing ensemble member."""
    k = fold_count(fp)
    trained = next((n for n in range(k, 0, -1) if steps_at(k, n) >= MIN_FOLD_STEPS), 1)
    steps = steps_at(k, trained)
    if trained == k:
        reason = f"{k} folds, all trained: {steps:.0f} optimiser steps per fold model"
    else:
        reason = (
            f"{trained} of {k} folds trained ({steps:.0f} optimiser steps each; {MIN_FOLD_STEPS} wanted per fold "
            f"model): selection and tuning use the {trained} held-out fold{'s' if trained > 1 else ''}"
        )
    return k, trained, reason


def tta_views(predict_s: float, images: int, budget_s: float) -> tuple[str, str]:
    """Flips (3 views) unless predicting every image that way would take over 15% of the budget;
    ``predict_s``: seconds per image of all the members together (what the estimate counts)."""
    for tta, views in (("both", 3), ("hflip", 2)):
        cost = predict_s * images * views
        if cost <= 0.15 * budget_s:
            return tta, f"{views} views cost {cost / 60:.1f} min over the out-of-fold images"
    return "none", "flips would take over 15% of the budget"


def search_space(fp: Fingerprint) -> tuple[list[int], list[int], str]:
    """Minimum areas and component sizes to try, spread over the defects' own sizes (full-size
    pixels): from a quarter of the smallest class's 5th-percentile area to the largest median."""
    areas = [c.area for c in fp.classes if c.area]
    comps = [c.component for c in fp.classes if c.component]
    if not areas:
        return [0], [0], "no defect in the data: nothing to size"
    low = max(4.0, min(a["p5"] for a in areas) / 4)
    high = max(low * 2, max(a["p50"] for a in areas))
    area_grid = [0, *sorted({int(round(v, -1 if v > 100 else 0)) for v in np.geomspace(low, high, 9)})]
    comp_high = max(8.0, min(c["p25"] for c in comps))
    component_grid = [0, *sorted({int(v) for v in np.geomspace(max(2.0, comp_high / 16), comp_high, 5)})]
    reason = (
        f"minimum areas {area_grid[1]}..{area_grid[-1]} px, components {component_grid[1]}..{component_grid[-1]} px"
    )
    return area_grid, component_grid, reason


def _round_scale(scale: float) -> float:
    return 1.0 if scale >= 0.95 else max(0.05, math.floor(scale * 20) / 20)


def up32(value: float) -> int:
    return max(32, int(math.ceil(value / 32) * 32))


def _down32(value: float) -> int:
    return int(value // 32) * 32
