"""The training side of a distilled run: each image with its teacher's probabilities, and the
unlabelled images (teacher's probabilities, no masks). The soft maps are more float channels
that go through the resize, crop and augmentation of the masks with the same drawn parameters
(albumentations' additional mask target), so target and image stay aligned."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from steelseg.core.preprocess import resize_image, resize_masks, scaled_shape, to_input
from steelseg.files.datasets import SegmentationDataset
from steelseg.files.images import read_gray
from steelseg.inference.teacher_cache import TeacherTargets
from steelseg.training.augment import apply, seed_transform
from steelseg.training.data import TorchSegmentationData
from steelseg.training.sampling import decode

SOFT = "soft"  # the soft maps' name as an albumentations target


class DistillSource:
    """``labelled`` (the run's training side) then the ``unlabelled`` images, each with its
    teacher targets. ``load_soft(i)`` -> (image (H, W) uint8, masks (C, H, W) bool (all False for
    an unlabelled image), soft pixels (C, H, W) float32 or None, soft scores (C,) float32,
    labelled)."""

    def __init__(
        self,
        labelled: SegmentationDataset,
        targets: TeacherTargets,
        unlabelled: list[Path] | None = None,
        unlabelled_targets: TeacherTargets | None = None,
    ):
        self.labelled = labelled
        self.targets = targets
        self.unlabelled = list(unlabelled or [])
        self.unlabelled_targets = unlabelled_targets

    @property
    def class_names(self) -> list[str]:
        return self.labelled.class_names

    @property
    def image_ids(self) -> list[str]:
        return self.labelled.image_ids + [p.name for p in self.unlabelled]

    def __len__(self) -> int:
        return len(self.labelled) + len(self.unlabelled)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.load_soft(index)[:2]

    def load_soft(self, index: int):
        if index < len(self.labelled):
            image, masks = self.labelled.load(index)
            target = self.targets.load(self.labelled.image_ids[index])
            labelled = True
        else:
            path = self.unlabelled[index - len(self.labelled)]
            image = read_gray(path)
            masks = np.zeros((self.labelled.num_classes, *image.shape), dtype=bool)
            target = self.unlabelled_targets.load(path.name)
            labelled = False
        pixels = None if target.pixels is None else target.pixels.astype(np.float32)
        return image, masks, pixels, target.scores.astype(np.float32), labelled

    def class_presence(self) -> np.ndarray:
        """(N, C) bool: the labelled images' classes; unlabelled images count as clean."""
        extra = np.zeros((len(self.unlabelled), self.labelled.num_classes), dtype=bool)
        return np.concatenate([self.labelled.class_presence(), extra])

    def image_shapes(self) -> list[tuple[int, int]]:
        from steelseg.files.images import read_shape

        return self.labelled.image_shapes() + [read_shape(p) for p in self.unlabelled]


def resize_soft(soft: np.ndarray, scale: float) -> np.ndarray:
    """(C, H, W) float32 -> (C, h, w) float32 at ``model.input_scale``, area-averaged like the
    masks before their 0.5 cut (``core.preprocess.resize_masks``)."""
    if scale == 1:
        return soft
    height, width = scaled_shape(soft.shape[1:], scale)
    resized = [cv2.resize(m, (width, height), interpolation=cv2.INTER_AREA) for m in soft]
    return np.stack(resized).reshape(len(soft), height, width)


def apply_soft(transform, image: np.ndarray, masks: np.ndarray, soft: np.ndarray):
    """``augment.apply`` with the (C, H, W) float soft maps as one more mask target: the same crop,
    flips and blackout as the masks (nearest-exact where masks are resized)."""
    if SOFT not in transform.additional_targets:
        transform.add_targets({SOFT: "mask"})
    out = transform(
        image=image,
        mask=np.ascontiguousarray(masks.transpose(1, 2, 0), dtype=np.uint8),
        soft=np.ascontiguousarray(soft.transpose(1, 2, 0), dtype=np.float32),
    )
    channels = soft.shape[0]
    return (
        out["image"],
        out["mask"].transpose(2, 0, 1).astype(bool),
        out[SOFT].reshape(*out[SOFT].shape[:2], channels).transpose(2, 0, 1),
    )


class DistillTorchData(TorchSegmentationData):
    """Training items ``(input, masks, soft)`` with soft = {"pixels": (C, h, w) float32 (absent
    for a teacher of scores alone), "scores": (C,), "labelled": 1.0 or 0.0}."""

    def __getitem__(self, index: int):
        epoch, index = decode(index, len(self))
        image, masks, pixels, scores, labelled = self.source.load_soft(index % len(self.source))
        scale = self.model.input_scale
        image, masks = resize_image(image, scale), resize_masks(masks, scale)
        maps = np.zeros((0, *masks.shape[1:]), np.float32) if pixels is None else resize_soft(pixels, scale)
        if self.transform is not None:
            seed_transform(self.transform, int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
            if pixels is None:
                image, masks = apply(self.transform, image, masks)
            else:
                image, masks, maps = apply_soft(self.transform, image, masks, maps)
        x = to_input(image, self.model.input_mean, self.model.input_std, self.model.in_channels, 1.0)[0]
        soft = {"scores": torch.from_numpy(scores), "labelled": torch.tensor(float(labelled))}
        if pixels is not None:
            soft["pixels"] = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
        return torch.from_numpy(x), torch.from_numpy(masks.astype(np.float32)), soft


class PadSoft:
    """Collate distillation items of different sizes like ``data.PadToLargest``: soft maps
    padded with 0 (no defect) like the masks."""

    def __init__(self, black: float):
        self.black = black

    def __call__(self, items):
        height = max(x.shape[-2] for x, _, _ in items)
        width = max(x.shape[-1] for x, _, _ in items)

        def pad(tensor: torch.Tensor, fill: float) -> torch.Tensor:
            out = torch.full((tensor.shape[0], height, width), fill, dtype=torch.float32)
            out[:, : tensor.shape[-2], : tensor.shape[-1]] = tensor
            return out

        xs = torch.stack([pad(x, self.black) for x, _, _ in items])
        ys = torch.stack([pad(y, 0.0) for _, y, _ in items])
        soft = {key: torch.stack([s[key] for _, _, s in items]) for key in ("scores", "labelled")}
        if "pixels" in items[0][2]:
            soft["pixels"] = torch.stack([pad(s["pixels"], 0.0) for _, _, s in items])
        return xs, ys, soft
