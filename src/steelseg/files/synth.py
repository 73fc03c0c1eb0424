"""Synthetic steel strips: the bundled default data, in the competition's on-disk layout.

Each image is a 256 x 1600 grayscale strip with a brushed-steel texture (streaks along the
rolling direction), uneven lighting and sometimes a black off-sheet band at one end. About
half the strips are clean; the rest carry defects of 4 classes modelled on the real ones:

1. pits: clusters of small dark spots;
2. crazing: thin, roughly vertical dark lines, several side by side;
3. scratches and scale: long thin bright or dark scratches, or rough patches (the commonest);
4. blotches: large smooth dark stains.

Every defect gets its own column window, so masks of different classes never overlap, as in
the real data. Strip ``i`` of seed ``s`` depends only on ``(s, i)``: generation is
deterministic and any strip can be made alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from steelseg.errors import OutputExistsError
from steelseg.files.annotations import Annotations
from steelseg.files.atomic import atomic_path
from steelseg.files.datasets import write_class_names
from steelseg.files.images import list_images
from steelseg.files.submission import write_submission

HEIGHT, WIDTH = 256, 1600
CLASS_NAMES = ["pits", "crazing", "scratches", "blotches"]
# Chance that a defective strip carries each class (class 3 commonest, class 2 rarest, as in
# the competition's train set); a defective strip always has at least one.
CLASS_PROBABILITIES = (0.3, 0.15, 0.6, 0.2)
# Column window widths (min, max) of one defect of each class.
WINDOW_WIDTHS = ((60, 200), (50, 160), (150, 700), (160, 480))


@dataclass(frozen=True)
class Strip:
    image: np.ndarray  # (H, W) uint8
    masks: np.ndarray  # (4, H, W) bool, never overlapping


def make_strip(seed: int, index: int, height: int = HEIGHT, width: int = WIDTH, clean_fraction: float = 0.5) -> Strip:
    """Generate strip ``index`` of the set made with ``seed``."""
    rng = np.random.default_rng([seed, index])
    image = _background(rng, height, width)
    sheet = _sheet_columns(rng, width)
    masks = np.zeros((len(CLASS_NAMES), height, width), dtype=bool)
    if rng.random() >= clean_fraction:
        taken: list[tuple[int, int]] = []
        for class_index in _defect_classes(rng):
            for _ in range(rng.integers(1, 3 if class_index != 2 else 4)):
                window = _free_window(rng, sheet, taken, WINDOW_WIDTHS[class_index])
                if window is None:
                    break
                taken.append(window)
                x0, x1 = window
                shade, mask = _DEFECTS[class_index](rng, height, x1 - x0)
                image[:, x0:x1] += shade
                masks[class_index, :, x0:x1] |= mask
    image = _apply_off_sheet(image, sheet, rng)
    image += rng.normal(0, 2.5, image.shape).astype(np.float32)  # sensor noise
    return Strip(np.clip(image, 0, 255).astype(np.uint8), masks)


def write_dataset(
    out: str | os.PathLike, n: int, seed: int = 0, height: int = HEIGHT, width: int = WIDTH, progress: bool = True
) -> Path:
    """Write ``n`` strips as ``OUT/train_images/*.jpg`` + ``OUT/train.csv`` (+ ``classes.json``).
    Writing the same set again is fine; a folder holding other images is refused."""
    out = Path(out)
    image_dir = out / "train_images"
    image_ids = [f"synth_{seed}_{index:05d}.jpg" for index in range(n)]
    _check_out(out, image_dir, set(image_ids))
    image_dir.mkdir(parents=True, exist_ok=True)
    annotations = Annotations()
    for index, image_id in enumerate(tqdm(image_ids, desc="synth", unit="img", disable=not progress)):
        strip = make_strip(seed, index, height, width)
        with atomic_path(image_dir / image_id) as tmp:
            Image.fromarray(strip.image).save(tmp, format="JPEG", quality=95)
        annotations.add_masks(image_id, strip.masks)
    # The real train.csv lists only non-empty masks; so does ours.
    write_submission(out / "train.csv", annotations, len(CLASS_NAMES), include_empty=False)
    write_class_names(out, CLASS_NAMES)
    return out


def _check_out(out: Path, image_dir: Path, image_ids: set[str]) -> None:
    # Images of another synth (or real ones) left beside the new train.csv would read as clean.
    for folder in (out, image_dir):
        if folder.exists() and not folder.is_dir():
            raise OutputExistsError(f"{folder} exists and is not a folder")
    others = sorted(p.name for p in list_images(image_dir) if p.name not in image_ids) if image_dir.is_dir() else []
    if others:
        raise OutputExistsError(
            f"{image_dir} holds {len(others)} image(s) this synth does not write (e.g. {others[0]}); beside the new "
            "train.csv they would read as clean images: choose an empty folder"
        )


# --- background -------------------------------------------------------------------------


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.uniform(80, 140)
    # Brushed texture: noise smeared along the rolling direction (x) into long streaks.
    streaks = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), sigmaX=25, sigmaY=0.8)
    streaks *= rng.uniform(6, 12) / (streaks.std() + 1e-6)
    grain = rng.normal(0, rng.uniform(2, 5), (height, width)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Uneven lighting: a tilt plus a slow wave along the strip.
    lighting = (
        rng.uniform(-15, 15) * (yy / height - 0.5)
        + rng.uniform(-20, 20) * (xx / width - 0.5)
        + rng.uniform(0, 12) * np.sin(2 * np.pi * xx / rng.uniform(400, 1600) + rng.uniform(0, 2 * np.pi))
    )
    return (base + streaks + grain + lighting).astype(np.float32)


def _sheet_columns(rng: np.random.Generator, width: int) -> tuple[int, int]:
    """Columns [x0, x1) that show the sheet; a quarter of the strips see past one edge."""
    if rng.random() >= 0.25:
        return 0, width
    band = int(rng.integers(width // 16, width // 3))
    return (band, width) if rng.random() < 0.5 else (0, width - band)


def _apply_off_sheet(image: np.ndarray, sheet: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    x0, x1 = sheet
    width = image.shape[1]
    if (x0, x1) == (0, width):
        return image
    # Ramp over ~12 px: the sheet's edge is soft, not a cut.
    columns = np.arange(width, dtype=np.float32)
    inside = np.clip(np.minimum(columns - x0, x1 - 1 - columns) / 12 + 0.5, 0, 1)
    dark = rng.uniform(3, 15)
    return image * inside + dark * (1 - inside)


# --- defects: each returns (shade to add, mask) for an (H, w) window --------------------


def _defect_classes(rng: np.random.Generator) -> list[int]:
    chosen = [c for c, p in enumerate(CLASS_PROBABILITIES) if rng.random() < p]
    return chosen or [2]


def _free_window(rng, sheet, taken, widths, tries: int = 20) -> tuple[int, int] | None:
    x0, x1 = sheet
    for _ in range(tries):
        w = int(rng.integers(*widths))
        if w > x1 - x0 - 16:
            return None
        start = int(rng.integers(x0 + 8, x1 - w - 8 + 1))
        if all(start + w + 8 <= a or b + 8 <= start for a, b in taken):
            return start, start + w
    return None


def _pits(rng, height: int, width: int):
    shade = np.zeros((height, width), np.float32)
    mask = np.zeros((height, width), np.uint8)
    cy = rng.integers(30, height - 30)
    for _ in range(rng.integers(6, 25)):
        x, y = int(rng.integers(6, width - 6)), int(np.clip(cy + rng.normal(0, 35), 6, height - 7))
        r = int(rng.integers(2, 6))
        cv2.circle(shade, (x, y), r, float(-rng.uniform(45, 80)), -1, cv2.LINE_AA)
        cv2.circle(mask, (x, y), r + 3, 1, -1)
    return cv2.GaussianBlur(shade, (0, 0), 0.8), mask.astype(bool)


def _crazing(rng, height: int, width: int):
    shade = np.zeros((height, width), np.float32)
    lines = np.zeros((height, width), np.uint8)
    y0 = int(rng.integers(0, height // 3))
    y1 = int(rng.integers(2 * height // 3, height + 1))
    for _ in range(rng.integers(3, 9)):
        x = rng.uniform(4, width - 4)
        ys = np.linspace(y0, y1 - 1, 8)
        xs = np.clip(x + np.cumsum(rng.normal(0, 2.5, ys.size)), 2, width - 3)
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)
        cv2.polylines(shade, [points], False, float(-rng.uniform(35, 60)), int(rng.integers(1, 3)), cv2.LINE_AA)
        cv2.polylines(lines, [points], False, 1, 1)
    # Annotators outline the crazed area, not each hairline: grow the lines into a region.
    mask = cv2.dilate(lines, np.ones((11, 11), np.uint8))
    return shade, mask.astype(bool)


def _scratches(rng, height: int, width: int):
    if rng.random() < 0.5:
        return _scale_patch(rng, height, width)
    shade = np.zeros((height, width), np.float32)
    mask = np.zeros((height, width), np.uint8)
    sign = 1.0 if rng.random() < 0.6 else -1.0
    for _ in range(rng.integers(1, 3)):
        y_start, y_end = rng.integers(10, height - 10, size=2)
        points = np.array([[2, y_start], [width - 3, y_end]], np.int32)
        thickness = int(rng.integers(2, 6))
        cv2.line(shade, tuple(points[0]), tuple(points[1]), float(sign * rng.uniform(40, 70)), thickness, cv2.LINE_AA)
        cv2.line(mask, tuple(points[0]), tuple(points[1]), 1, thickness + 6)
    return shade, mask.astype(bool)


def _scale_patch(rng, height: int, width: int):
    region = _blob(rng, height, width, fill=rng.uniform(0.45, 0.7), smooth=9)
    rough = rng.normal(0, 1, (height, width)).astype(np.float32)
    rough = cv2.GaussianBlur(rough, (0, 0), 1.5) * 40 + rng.choice([-1, 1]) * rng.uniform(15, 30)
    shade = rough * cv2.GaussianBlur(region.astype(np.float32), (0, 0), 1.5)
    return shade, region


def _blotches(rng, height: int, width: int):
    region = _blob(rng, height, width, fill=rng.uniform(0.45, 0.75), smooth=12)
    shade = -rng.uniform(45, 80) * cv2.GaussianBlur(region.astype(np.float32), (0, 0), 6)
    return shade, region


def _blob(rng, height: int, width: int, fill: float, smooth: float = 6) -> np.ndarray:
    """An irregular connected-looking region filling about ``fill`` of an ellipse in the window."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, ry = rng.uniform(0.3, 0.7) * height, rng.uniform(0.25, 0.6) * height
    ellipse = 1 - ((xx - width / 2) / (width / 2)) ** 2 - ((yy - cy) / ry) ** 2
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), smooth)
    field = ellipse + 0.6 * noise / (noise.std() + 1e-6)
    inside = ellipse > 0
    threshold = np.quantile(field[inside], 1 - fill) if inside.any() else 0.0
    return (field > threshold) & inside


_DEFECTS = (_pits, _crazing, _scratches, _blotches)
