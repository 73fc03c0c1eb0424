"""Training-time augmentation: a random crop, then named steps from ``AUGMENTATIONS``.

The only module that imports albumentations. As in albumentations itself, the pixel work is
done by plain deterministic functions of given parameters (``circular_shift``,
``crop_resize``, ``blackout_image`` ...); the transform classes only draw those parameters at
random, once per sample, so image and masks always get the same ones.

Every step is ``factory(p, **params)``; a config names them in order, e.g.::

    augment:
      - {name: hflip, p: 0.5}
      - {name: defect_blackout, p: 0.3, params: {max_defects: 1}}
      - {name: randaugment, p: 1.0, params: {n: 2, ops: [gamma, blur, circular_shift]}}
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it would call the internet at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.core.transforms_interface import BaseTransformInitSchema, DualTransform  # noqa: E402
from pydantic import Field, field_validator  # noqa: E402

from steelseg.config import AugmentStep, ConfigError, DataConfig  # noqa: E402

# --- Pure functions: numpy in, numpy out, no randomness. -----------------------------------


def circular_shift(array: np.ndarray, shift: int) -> np.ndarray:
    """(H, W) or (H, W, C) -> the same rolled ``shift`` px along the width (positive: to the
    right); what leaves one end comes back at the other, as on an endless moving sheet."""
    return np.roll(array, shift, axis=1)


def crop_resize(array: np.ndarray, box: tuple[int, int, int, int], interpolation: int) -> np.ndarray:
    """Cut ``box = (top, left, bottom, right)`` out of (H, W) or (H, W, C) and resize the cut
    back to (H, W) with the cv2 ``interpolation``; dtype and channel count are kept."""
    top, left, bottom, right = box
    height, width = array.shape[:2]
    cut = np.ascontiguousarray(array[top:bottom, left:right])
    resized = cv2.resize(cut, (width, height), interpolation=interpolation)
    return resized.reshape(array.shape)  # cv2 drops a channel axis of length 1


def label_defects(mask: np.ndarray) -> np.ndarray:
    """(H, W, C) mask -> (H, W, C) int32 labels: 0 background, 1..k the connected defects
    (8-connected) of each class, numbered per class."""
    labels = np.zeros(mask.shape, np.int32)
    for c in range(mask.shape[2]):
        _, labels[..., c] = cv2.connectedComponents((mask[..., c] > 0).astype(np.uint8), connectivity=8)
    return labels


def select_defects(labels: np.ndarray, chosen: Sequence[tuple[int, int]]) -> np.ndarray:
    """(H, W, C) labels from ``label_defects`` + ``(class index, label)`` pairs -> (H, W, C)
    bool, True on the pixels of the chosen defects."""
    selected = np.zeros(labels.shape, bool)
    for c, label in chosen:
        selected[..., c] |= labels[..., c] == label
    return selected


def blackout_image(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C') image -> a copy with every pixel of any class in the (H, W, C) bool
    ``removed`` set to 0 (the defect is painted out, not just unlabelled)."""
    out = image.copy()
    out[removed.any(axis=2)] = 0
    return out


def blackout_mask(mask: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """(H, W, C) or (H, W) mask -> a copy with the ``removed`` pixels cleared."""
    out = mask.copy()
    out[removed.reshape(mask.shape)] = 0
    return out


# --- Transforms: draw the parameters, then call the functions above. -----------------------


class CircularShift(DualTransform):
    """Roll image and masks together along the width by a random amount with wrap-around
    (5th place): the sheet moves under the camera, so a defect can be anywhere along it.

    ``limit``: the largest shift as a share of the width (1.0: any shift)."""

    class InitSchema(BaseTransformInitSchema):
        limit: float = Field(gt=0, le=1)

    def __init__(self, limit: float = 1.0, p: float = 0.5):
        super().__init__(p=p)
        self.limit = limit

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        reach = int(self.limit * params["shape"][1])
        return {"shift": self.py_random.randint(-reach, reach)}

    def apply(self, img: np.ndarray, shift: int, **params: Any) -> np.ndarray:
        return circular_shift(img, shift)

    def apply_to_mask(self, mask: np.ndarray, shift: int, **params: Any) -> np.ndarray:
        return circular_shift(mask, shift)


class CropResize(DualTransform):
    """Cut a random part (each side ``scale`` times the input's, same factor for both so
    defects keep their shape) and resize it back to the input size (5th place).

    The image uses ``interpolation`` (a cv2 flag); masks use nearest-exact, whose pixel
    centres match those of linear interpolation, so image and masks stay aligned."""

    class InitSchema(BaseTransformInitSchema):
        scale: tuple[float, float]
        interpolation: int

        @field_validator("scale")
        @classmethod
        def _in_unit_interval(cls, scale: tuple[float, float]) -> tuple[float, float]:
            if not 0 < scale[0] <= scale[1] <= 1:
                raise ConfigError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
            return scale

    def __init__(self, scale: tuple[float, float] = (0.6, 1.0), interpolation: int = cv2.INTER_LINEAR, p: float = 0.5):
        super().__init__(p=p)
        self.scale = scale
        self.interpolation = interpolation

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        factor = self.py_random.uniform(*self.scale)
        h, w = max(1, round(height * factor)), max(1, round(width * factor))
        top, left = self.py_random.randint(0, height - h), self.py_random.randint(0, width - w)
        return {"box": (top, left, top + h, left + w)}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int], interpolation: int, **params: Any) -> np.ndarray:
        return crop_resize(img, box, interpolation)

    def apply_to_mask(self, mask: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return crop_resize(mask, box, cv2.INTER_NEAREST_EXACT)


class DefectBlackout(DualTransform):
    """Paint 1..``max_defects`` randomly chosen defects (connected components of a class mask)
    black and drop them from the masks (1st place): the network sees the same steel without
    the defect, labelled clean. A class whose every defect went is left empty."""

    class InitSchema(BaseTransformInitSchema):
        max_defects: int = Field(ge=1)

    def __init__(self, max_defects: int = 1, p: float = 0.5):
        super().__init__(p=p)
        self.max_defects = max_defects

    @property
    def targets_as_params(self) -> list[str]:
        return ["mask"]

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        mask = data["mask"] if data["mask"].ndim == 3 else data["mask"][..., None]
        labels = label_defects(mask)
        defects = [(c, k) for c in range(labels.shape[2]) for k in range(1, int(labels[..., c].max()) + 1)]
        count = self.py_random.randint(1, min(self.max_defects, len(defects))) if defects else 0
        return {"removed": select_defects(labels, self.py_random.sample(defects, count))}

    def apply(self, img: np.ndarray, removed: np.ndarray, **params: Any) -> np.ndarray:
        return blackout_image(img, removed)

    def apply_to_mask(self, mask: np.ndarray, removed: np.ndarray, **params: Any) -> np.ndarray:
        return blackout_mask(mask, removed)


class RandomSomeOf(A.SomeOf):
    """``SomeOf`` applying a random number 0..n of its transforms, distinct, in random order
    (albumentations' own ``SomeOf`` always picks exactly n, in list order)."""

    def _get_idx(self) -> np.ndarray:
        count = int(self.random_generator.integers(0, self.n + 1))
        return self.random_generator.choice(len(self.transforms), size=count, replace=False)


# --- The registry. -------------------------------------------------------------------------

Factory = Callable[..., Any]  # (p, **params) -> an albumentations transform


def _strict(cls: type) -> Factory:
    # strict: a misspelt parameter in a config is an error, not a warning lost in the log.
    def factory(p: float, **params: Any) -> Any:
        return cls(p=p, strict=True, **params)

    factory.__doc__ = f"albumentations {cls.__name__}; params are its keyword arguments."
    return factory


def _blur_sharpen(p: float, blur: Mapping[str, Any] | None = None, sharpen: Mapping[str, Any] | None = None) -> A.OneOf:
    """Gaussian blur or sharpen, one of the two; ``blur``/``sharpen``: their keyword arguments."""
    return A.OneOf(
        [A.GaussianBlur(p=1, strict=True, **(blur or {})), A.Sharpen(p=1, strict=True, **(sharpen or {}))], p=p
    )


DEFAULT_RANDAUGMENT_OPS = (
    "hflip",
    "vflip",
    "brightness_contrast",
    "gamma",
    "blur",
    "sharpen",
    "circular_shift",
    "crop_resize",
)


def _randaugment(
    p: float, n: int = 2, ops: Sequence[str | Mapping[str, Any]] = DEFAULT_RANDAUGMENT_OPS
) -> RandomSomeOf:
    """0..``n`` distinct ops drawn from ``ops`` (10th place), each applied for sure once drawn.
    An op is a name from this registry or ``{name, params}``."""
    steps = [
        AugmentStep(name=op, p=1.0) if isinstance(op, str) else AugmentStep.model_validate({"p": 1.0, **op})
        for op in ops
    ]
    if any(step.name == "randaugment" for step in steps):
        raise ConfigError("randaugment ops cannot include randaugment")
    if not 0 <= n <= len(steps):
        raise ConfigError(f"n must be between 0 and the number of ops ({len(steps)}), got {n}")
    return RandomSomeOf([build_step(step) for step in steps], n=n, p=p)


AUGMENTATIONS: dict[str, Factory] = {
    "hflip": _strict(A.HorizontalFlip),
    "vflip": _strict(A.VerticalFlip),
    "brightness_contrast": _strict(A.RandomBrightnessContrast),  # brightness_limit, contrast_limit
    "gamma": _strict(A.RandomGamma),  # gamma_limit, in percent: (80, 120)
    "blur": _strict(A.GaussianBlur),  # blur_limit, sigma_limit
    "sharpen": _strict(A.Sharpen),  # alpha, lightness
    "blur_sharpen": _blur_sharpen,  # blur: {...}, sharpen: {...}
    "crop_resize": _strict(CropResize),  # scale: [min, max] side factor, interpolation
    "circular_shift": _strict(CircularShift),  # limit: largest shift / width
    "defect_blackout": _strict(DefectBlackout),  # max_defects
    "randaugment": _randaugment,  # n, ops
}


def build_step(step: AugmentStep) -> Any:
    """One config step -> its albumentations transform; unknown names and bad params raise
    ``ValueError`` naming the step."""
    factory = AUGMENTATIONS.get(step.name)
    if factory is None:
        raise ConfigError(f"unknown augmentation {step.name!r}; choose one of {', '.join(sorted(AUGMENTATIONS))}")
    try:
        return factory(step.p, **step.params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"augmentation {step.name} {step.params}: {err}") from None


def train_transform(config: DataConfig) -> A.Compose:
    """Random crop, on a defect for a share of them (padding first when the image is smaller
    than the crop), then ``config.augment`` in order."""
    steps: list = []
    height, width = config.crop_height, config.crop_width
    if height and width:
        on_defect = config.defect_crop_fraction
        steps += [
            A.PadIfNeeded(height, width, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
            A.OneOf(
                [A.CropNonEmptyMaskIfExists(height, width, p=on_defect), A.RandomCrop(height, width, p=1 - on_defect)],
                p=1,
            ),
        ]
    steps += [build_step(step) for step in config.augment]
    return A.Compose(steps)


def seed_transform(transform: A.Compose, seed: int) -> None:
    """Make ``transform``'s draws depend on ``seed`` alone. All its steps share one generator:
    ``Compose(seed=...)`` would give each step its own copy of the same stream, so that e.g.
    hflip and vflip at equal p would always fire together."""
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def apply(transform: A.Compose, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 image and (C, H, W) bool masks -> the same, transformed together."""
    out = transform(image=image, mask=np.ascontiguousarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    return out["image"], out["mask"].transpose(2, 0, 1).astype(bool)
