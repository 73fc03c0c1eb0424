"""Turn per-class defect probabilities into masks, gated per class. Pure numpy and OpenCV.

Per class, in this order (the 1st place's post-processing, with the 4th and 5th places'
gates as options):

1. soft gate (optional): pixel probabilities times the class heads' probability (4th place);
2. gates, each off at 0: the class heads' probability must be above ``head_threshold``
   (1st place classifier: 0.6), and the class's peak, the max or top-K mean of its pixel
   probabilities, above ``peak_threshold`` (1st place: 0.7/0.7/0.6/0.6; 5th: 0.6/0.6/0.5/0.5);
3. pixel threshold: a pixel is a defect when its probability >= ``pixel_threshold``;
4. connected components (8-connected) under ``min_component`` pixels are removed (1st: 150);
5. holes (background not connected to the border) are filled, when ``fill_holes``;
6. the whole class mask is emptied when fewer than ``min_area`` pixels are left (1st place:
   600/600/900/2000): false positives on clean images cost a full point of Dice, so small,
   unsure predictions are worth less than none.

Gates decide whole classes from a few numbers per image, so ``candidates`` (steps 1, 3-6, and
the peaks) and ``gate`` (step 2) can run apart: the Predictor gates after every image is
seen, when class scores may be shared within clusters of near-duplicate images.

``head_threshold`` is the post-processing's gate on the class heads. It is not the screening
threshold of ``core.screening`` (``screen_threshold``, gate.json), which says whether a class
is present from its class score without making masks. Files written before the rename call
``head_threshold`` ``label_threshold``; ``from_json`` and ``override`` accept that name too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

# A min_area no mask reaches: the class is never predicted. Tuning picks it for a class whose
# predictions do worse on validation than predicting nothing at all.
NEVER = 2**31 - 1
PEAKS = ("max", "top_k")


def _zeros(kind):
    return field(default_factory=lambda: np.zeros(0, dtype=kind))


@dataclass(frozen=True)
class PostProcess:
    pixel_threshold: np.ndarray  # (C,) float: a pixel is a defect when probability >= this
    min_area: np.ndarray  # (C,) int: fewer defect pixels than this -> the class mask is emptied
    # (C,) int: connected components of fewer pixels are removed (0, 1: none)
    min_component: np.ndarray = _zeros(np.int64)
    fill_holes: np.ndarray = _zeros(bool)  # (C,) bool
    head_threshold: np.ndarray = _zeros(float)  # (C,) class kept only if its heads' score > this; 0: no gate
    peak_threshold: np.ndarray = _zeros(float)  # (C,) class kept only if its peak > this; 0: no gate
    peak: str = "max"  # "max" pixel probability, or "top_k": the mean of the peak_top_k largest
    peak_top_k: int = 100
    soft_gate: bool = False  # multiply pixel probabilities by the class heads' score first

    def __post_init__(self):
        count = len(self.pixel_threshold)
        defaults = {
            "min_component": (0, np.int64),
            "fill_holes": (False, bool),
            "head_threshold": (0.0, float),
            "peak_threshold": (0.0, float),
        }
        for name, (default, kind) in defaults.items():
            value = getattr(self, name)
            object.__setattr__(self, name, per_class(default if len(value) == 0 else value, count, name, kind))
        if self.peak not in PEAKS:
            raise ValueError(f"peak must be one of {', '.join(PEAKS)}, got {self.peak!r}")
        if self.peak_top_k < 1:
            raise ValueError(f"peak_top_k must be at least 1, got {self.peak_top_k}")

    @classmethod
    def uniform(
        cls, num_classes: int, pixel_threshold: float | list[float], min_area: int | list[int], **options
    ) -> PostProcess:
        """Per-class parameters from a scalar (same for every class) or a per-class list;
        ``options`` the other fields, scalars or lists alike."""
        for name in PER_CLASS:
            if name in options:
                options[name] = per_class(options[name], num_classes, name, PER_CLASS[name])
        return cls(
            per_class(pixel_threshold, num_classes, "pixel_threshold", float),
            per_class(min_area, num_classes, "min_area", int),
            **options,
        )

    @property
    def num_classes(self) -> int:
        return len(self.pixel_threshold)

    @property
    def uses_heads(self) -> bool:
        """True when a class head's probability is needed: a head gate or soft gating."""
        return self.soft_gate or bool((self.head_threshold > 0).any())

    def __call__(self, probs: np.ndarray, heads: np.ndarray | None = None) -> np.ndarray:
        """(C, H, W) float probabilities and, when the model has class heads, their (C,)
        probabilities -> (C, H, W) bool masks."""
        masks, peaks = self.candidates(probs, heads)
        masks[~self.gate(peaks, heads)] = False
        return masks

    def candidates(self, probs: np.ndarray, heads: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Steps 1 and 3-6: (C, H, W) bool masks before the gates, and the (C,) peaks the
        peak gate compares."""
        if probs.shape[0] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} class channels, got {probs.shape[0]}")
        if self.soft_gate:
            # NaN: no member has a head for the class; it passes ungated, as GatedSearch tunes it
            probs = probs * np.nan_to_num(self._heads(heads), nan=1.0).astype(probs.dtype)[:, None, None]
        thresholds = thresholds_for(probs.dtype, self.pixel_threshold)
        masks = probs >= thresholds.reshape(-1, *([1] * (probs.ndim - 1)))
        for c in range(self.num_classes):
            if self.min_component[c] > 1 and masks[c].any():
                masks[c] = remove_small_components(masks[c], int(self.min_component[c]))
            if self.fill_holes[c] and masks[c].any():
                masks[c] = fill_holes(masks[c])
        areas = np.count_nonzero(masks.reshape(self.num_classes, -1), axis=1)  # 10x a bool sum
        masks[areas < self.min_area] = False
        return masks, self.peaks(probs)

    def peaks(self, probs: np.ndarray) -> np.ndarray:
        """(..., C, H, W) -> (..., C): each class's max or top-K mean pixel probability."""
        return peaks(probs, self.peak, self.peak_top_k)

    def gate(self, peaks: np.ndarray, heads: np.ndarray | None = None) -> np.ndarray:
        """Step 2: (..., C) peaks and class-head scores -> (..., C) bool, the classes kept."""
        keep = (self.peak_threshold <= 0) | (peaks > self.peak_threshold)
        if (self.head_threshold > 0).any():
            keep &= (self.head_threshold <= 0) | (self._heads(heads) > self.head_threshold)
        return keep

    def _heads(self, heads: np.ndarray | None) -> np.ndarray:
        if heads is None:
            raise ValueError("head_threshold and soft_gate need a class head (a classifier or two-headed member)")
        return heads

    def to_json(self) -> str:
        data = {name: getattr(self, name).tolist() for name in ("pixel_threshold", "min_area", *PER_CLASS)}
        data.update(peak=self.peak, peak_top_k=self.peak_top_k, soft_gate=self.soft_gate)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str, num_classes: int | None = None, defaults: dict | None = None) -> PostProcess:
        """Parse and check ``to_json``'s text: one value per class (``num_classes`` when given),
        thresholds in [0, 1], sizes whole numbers >= 0. Only pixel_threshold and min_area are
        required (a run's post-processing before the gates existed). A ValueError says what is
        wrong. ``defaults``: values for keys the file lacks. A file of an earlier version names
        ``head_threshold`` ``label_threshold`` (``OLD_KEYS``); its errors name the key it has."""
        try:
            data = json.loads(text)
            data = {**(defaults or {}), **data}
            thresholds = data["pixel_threshold"]
            data["min_area"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"not a post-processing file ({type(err).__name__}: {err})") from None
        unknown = sorted(set(data) - set(FIELDS) - set(OLD_KEYS))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; the keys are {', '.join(FIELDS)}")
        count = len(thresholds) if num_classes is None and isinstance(thresholds, list) else num_classes
        for name in ("pixel_threshold", "min_area", *PER_CLASS, *OLD_KEYS):
            if name in data and (not isinstance(data[name], list) or len(data[name]) != count):
                raise ValueError(f"{name} must list one value per class ({count}), got {data[name]!r}")
        return cls.uniform(count, **_new_names(_checked(data)))

    def override(self, assignments: list[str]) -> PostProcess:
        """``KEY=VALUE`` strings (VALUE in YAML: a scalar for every class or a per-class list),
        e.g. ``min_area=[600,600,900,2000]``; a ValueError names the bad one."""
        import yaml

        data = json.loads(self.to_json())
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            key = OLD_KEYS.get(key.strip(), key.strip())
            if not sep or key not in FIELDS:
                raise ValueError(f"{assignment!r}: expected KEY=VALUE with KEY one of {', '.join(FIELDS)}")
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ValueError(f"{assignment!r}: {text!r} is not a value") from None
            if key in ("pixel_threshold", "min_area", *PER_CLASS) and not isinstance(value, list):
                value = [value] * self.num_classes
            data[key] = value
        try:
            return PostProcess.from_json(json.dumps(data), self.num_classes)
        except ValueError as err:
            raise ValueError(f"{' '.join(assignments)}: {err}") from None

    def describe(self, class_names: list[str]) -> str:
        """One line per class for people."""
        lines = []
        for c, name in enumerate(class_names):
            parts = [f"pixel >= {self.pixel_threshold[c]:g}", f"area >= {_area(self.min_area[c])}"]
            if self.min_component[c] > 1:
                parts.append(f"components >= {self.min_component[c]}")
            if self.fill_holes[c]:
                parts.append("holes filled")
            if self.head_threshold[c] > 0:
                parts.append(f"class head > {self.head_threshold[c]:g}")
            if self.peak_threshold[c] > 0:
                peak = "max" if self.peak == "max" else f"top-{self.peak_top_k} mean"
                parts.append(f"{peak} > {self.peak_threshold[c]:g}")
            lines.append(f"  {name}: " + ", ".join(parts))
        if self.soft_gate:
            lines.append("  pixels soft-gated by the class heads")
        return "\n".join(lines)


PER_CLASS = {"min_component": int, "fill_holes": bool, "head_threshold": float, "peak_threshold": float}
FIELDS = tuple(f.name for f in fields(PostProcess))
OLD_KEYS = {"label_threshold": "head_threshold"}  # postprocess.json keys of earlier versions -> the fields


def max_score(probs: np.ndarray) -> np.ndarray:
    """(..., H, W) -> (...): the largest pixel probability (5th place's class score)."""
    return probs.reshape(*probs.shape[:-2], -1).max(axis=-1)


def top_k_score(probs: np.ndarray, k: int) -> np.ndarray:
    """(..., H, W) -> (...): the mean of the ``k`` largest pixel probabilities; one confident
    pixel of noise moves it by 1/k, not all the way as with the max."""
    flat = probs.reshape(*probs.shape[:-2], -1)
    k = min(k, flat.shape[-1])
    top = np.partition(flat, flat.shape[-1] - k, axis=-1)[..., -k:]
    return top.mean(axis=-1, dtype=np.float64).astype(probs.dtype)


def peaks(probs: np.ndarray, peak: str = "max", top_k: int = 100) -> np.ndarray:
    """``max_score`` or ``top_k_score`` as ``peak`` says."""
    return max_score(probs) if peak == "max" else top_k_score(probs, top_k)


def _area(value) -> str:
    return "never" if value >= NEVER else str(int(value))


def _checked(data: dict) -> dict:
    """The JSON values, checked: a ValueError names the first bad one."""
    for name in ("pixel_threshold", "head_threshold", "peak_threshold", *OLD_KEYS):
        check_probabilities(name, data.get(name, []))
    for name in ("min_area", "min_component"):
        for i, value in enumerate(data.get(name, [])):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= NEVER:
                raise ValueError(f"{name}[{i}] = {value!r} is not a whole number of pixels >= 0")
    for i, value in enumerate(data.get("fill_holes", [])):
        if not isinstance(value, bool):
            raise ValueError(f"fill_holes[{i}] = {value!r} is not true or false")
    if "soft_gate" in data and not isinstance(data["soft_gate"], bool):
        raise ValueError(f"soft_gate = {data['soft_gate']!r} is not true or false")
    if data.get("peak", "max") not in PEAKS:
        raise ValueError(f"peak = {data['peak']!r} is not one of {', '.join(PEAKS)}")
    top_k = data.get("peak_top_k", 1)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"peak_top_k = {top_k!r} is not a whole number >= 1")
    return data


def _new_names(data: dict) -> dict:
    """Keys of an earlier version's file renamed to the fields; a ValueError when a file has both."""
    for old, new in OLD_KEYS.items():
        if old in data:
            if new in data:
                raise ValueError(f"{old} is the old name of {new}: give one of them")
            data = {**data, new: data[old]}
            del data[old]
    return data


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """(H, W) bool -> the mask without its 8-connected components of fewer than ``min_size`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(mask).view(np.uint8), connectivity=8
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False  # label 0 is the background
    return keep[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> the mask with every hole filled: background pixels that no 4-connected
    path of background joins to the image border (the dual of 8-connected objects)."""
    background = ~mask
    count, labels = cv2.connectedComponents(background.view(np.uint8), connectivity=4)  # a fresh array
    outside = np.zeros(count, dtype=bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0: the mask's own pixels
    return mask | ~outside[labels]


def check_probabilities(name: str, values: list) -> None:
    """A ValueError naming the first of ``values`` (read from JSON) that is not a number in [0, 1]."""
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name}[{i}] = {value!r} is not a probability in [0, 1]")


def thresholds_for(dtype: np.dtype, thresholds: np.ndarray) -> np.ndarray:
    """``thresholds`` (float64) in ``dtype`` such that ``p >= result`` equals ``p >= thresholds``
    for every ``p`` of that dtype: the smallest ``dtype`` value not below each threshold.

    Comparing float32 probabilities with float64 thresholds makes numpy convert every pixel to
    float64 first (5x slower on a 256x1600 strip); plain rounding to float32 could round a
    threshold down and admit a probability just below it.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64 or dtype.kind != "f":
        return np.asarray(thresholds, dtype=np.float64)
    rounded = np.asarray(thresholds, dtype=np.float64).astype(dtype)
    below = rounded.astype(np.float64) < thresholds
    return np.where(below, np.nextafter(rounded, dtype.type(np.inf)), rounded).astype(dtype)


def per_class(value, num_classes: int, name: str, kind=float) -> np.ndarray:
    """A config value (a scalar for every class, or a list of one per class) as (C,) ``kind``."""
    values = np.asarray(value if isinstance(value, (list, tuple, np.ndarray)) else [value] * num_classes, dtype=kind)
    if values.shape != (num_classes,):
        raise ValueError(f"{name} needs one value per class ({num_classes}), got {len(values)}")
    return values
