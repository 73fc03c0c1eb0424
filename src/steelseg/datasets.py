"""Labelled image sets on disk, in the two layouts people ship steel-defect data in.

- ``severstal``: ``train_images/`` plus a CSV of run-length masks (``train.csv``), either
  competition layout; images without a row have no defect.
- ``mask_folder``: ``images/`` plus ``masks/`` holding a single-channel PNG per image with the
  same stem, pixel value = class id, 0 = background (e.g. NEU-Seg).

Both give the same thing: ``load(i) -> (image (H, W) uint8, masks (C, H, W) bool)``. The class
count and names come from ``classes.json`` beside the data, from the caller, or from the labels.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from steelseg.errors import SteelsegError
from steelseg.annotations import AnnotationError, Annotations, read_annotations
from steelseg.atomic import write_text
from steelseg.config import ConfigError, DataConfig
from steelseg.images import list_images, read_gray, read_label_map, read_shape

CLASSES_FILE = "classes.json"
LAYOUTS = ("severstal", "mask_folder")


class DatasetError(SteelsegError, ValueError):
    """A dataset folder that does not hold what its layout promises."""


@dataclass
class SegmentationDataset:
    """An indexable set of (image, masks) pairs; see the module docstring for the layouts."""

    root: Path
    layout: str
    image_paths: list[Path]
    all_class_names: list[str]
    annotations: Annotations | None = None  # severstal layout
    mask_dir: Path | None = None  # mask_folder layout
    image_shape: tuple[int, int] | None = None  # enforced when set
    keep: list[int] | None = None  # class ids (1-based) that load() returns; None: all

    @property
    def class_names(self) -> list[str]:
        return [self.all_class_names[i] for i in self._channels]

    @property
    def _channels(self) -> list[int]:
        """0-based channels of the full class list that this view returns."""
        return list(range(len(self.all_class_names))) if self.keep is None else [c - 1 for c in self.keep]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list[str]:
        return [p.name for p in self.image_paths]

    def __len__(self) -> int:
        return len(self.image_paths)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``index`` as (H, W) uint8 and its masks as (C, H, W) bool."""
        image, masks = self._load_all(index)
        return image, masks if self.keep is None else masks[self._channels]

    def select_classes(self, class_ids: list[int]) -> "SegmentationDataset":
        """A view that loads only ``class_ids`` (1-based), in that order."""
        bad = [c for c in class_ids if not 1 <= c <= len(self.all_class_names)]
        if bad:
            raise DatasetError(f"{self.root}: class id {bad[0]} not in 1..{len(self.all_class_names)}")
        return replace(self, keep=list(class_ids))

    def _load_all(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        path = self.image_paths[index]
        image = read_gray(path, self.image_shape)
        if self.annotations is not None:
            masks = self.annotations.masks(path.name, len(self.all_class_names), image.shape)
        else:
            labels = read_label_map(self.mask_dir / f"{path.stem}.png", image.shape)
            count = len(self.all_class_names)
            if labels.max(initial=0) > count:
                raise DatasetError(
                    f"{self.mask_dir / (path.stem + '.png')}: unknown class id {labels.max()} "
                    f"(this dataset has {count} classes: {', '.join(self.all_class_names)})"
                )
            masks = labels[None] == np.arange(1, count + 1)[:, None, None]
        return image, masks

    def class_presence(self) -> np.ndarray:
        """Which classes each image holds: (N, C) bool. From the table when there is one
        (no decoding), else from the label masks (one read each)."""
        count = len(self.all_class_names)
        presence = np.zeros((len(self), count), dtype=bool)
        if self.annotations is not None:
            row = {image_id: i for i, image_id in enumerate(self.image_ids)}
            for image_id, class_id in self.annotations.encoded:
                if image_id in row and class_id <= count:
                    presence[row[image_id], class_id - 1] = True
        else:
            for i, path in enumerate(self.image_paths):
                present = np.unique(read_label_map(self.mask_dir / f"{path.stem}.png"))
                presence[i, present[(present > 0) & (present <= count)] - 1] = True
        return presence[:, self._channels]

    def image_shapes(self) -> list[tuple[int, int]]:
        """(H, W) of every image, from the file headers (nothing is decoded)."""
        if self.image_shape is not None:
            return [tuple(self.image_shape)] * len(self)
        return [read_shape(path) for path in self.image_paths]

    def subset(self, indices: list[int] | np.ndarray) -> "SegmentationDataset":
        return replace(self, image_paths=[self.image_paths[i] for i in indices])


def open_dataset(
    root: str | os.PathLike,
    layout: str = "auto",
    class_names: list[str] | None = None,
    csv_name: str = "train.csv",
    image_shape: tuple[int, int] | None = None,
) -> SegmentationDataset:
    """Open a dataset folder; ``layout="auto"`` recognises either layout by its sub-folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if layout == "auto":
        layout = detect_layout(root, csv_name)
    class_names = class_names or _names_from_file(root)
    if layout == "severstal":
        return _open_severstal(root, csv_name, class_names, image_shape)
    if layout == "mask_folder":
        return _open_mask_folder(root, class_names, image_shape)
    raise DatasetError(f"unknown dataset layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")


def open_configured(data: DataConfig) -> SegmentationDataset:
    """The dataset a config's ``data`` section describes (all classes; see ``select_classes``)."""
    if not data.root:
        raise DatasetError("no training data: set data.root (or pass a dataset folder)")
    return open_dataset(data.root, data.layout, data.class_names, data.csv_name)


def open_pseudo(data: DataConfig, main: SegmentationDataset) -> list[SegmentationDataset]:
    """The folders of ``data.pseudo``, each a training-only addition to ``main`` (the opened
    ``data.root``, its class selection applied to them too). They must have ``main``'s classes
    (from their classes.json; a folder without one takes ``main``'s names) and no image id of
    ``main`` or of each other: a pseudo folder made from the training images by mistake would
    otherwise train on validation images. Each is opened like a ``steelseg train`` folder
    (layout detected, ``train.csv``). Problems are a one-line ConfigError."""
    owner = dict.fromkeys(main.image_ids, main.root)
    extras = []
    for folder in data.pseudo or []:
        root = Path(folder)
        names = None if (root / CLASSES_FILE).is_file() else main.all_class_names
        extra = open_dataset(root, class_names=names)
        if extra.all_class_names != main.all_class_names:
            raise ConfigError(
                f"data.pseudo: {root} has the classes {', '.join(extra.all_class_names)}; the training data "
                f"{main.root} has {', '.join(main.all_class_names)}"
            )
        for image_id in extra.image_ids:
            if image_id in owner:
                raise ConfigError(f"data.pseudo: image {image_id} of {root} is also in {owner[image_id]}; an image may be in only one")
            owner[image_id] = root
        extras.append(extra if main.keep is None else extra.select_classes(main.keep))
    return extras


@dataclass
class CombinedDataset:
    """Datasets of the same classes read as one, in order (a training split and its pseudo-
    labelled folders): the reading side of ``SegmentationDataset`` that training uses."""

    parts: list[SegmentationDataset]

    def __post_init__(self) -> None:
        self._ends = np.cumsum([len(part) for part in self.parts])

    @property
    def class_names(self) -> list[str]:
        return self.parts[0].class_names

    @property
    def num_classes(self) -> int:
        return self.parts[0].num_classes

    @property
    def image_ids(self) -> list[str]:
        return [image_id for part in self.parts for image_id in part.image_ids]

    def __len__(self) -> int:
        return int(self._ends[-1]) if self.parts else 0

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        part = int(np.searchsorted(self._ends, index, side="right"))
        return self.parts[part].load(index - (int(self._ends[part - 1]) if part else 0))

    def class_presence(self) -> np.ndarray:
        return np.concatenate([part.class_presence() for part in self.parts])

    def image_shapes(self) -> list[tuple[int, int]]:
        return [shape for part in self.parts for shape in part.image_shapes()]


def detect_layout(root: Path, csv_name: str = "train.csv") -> str:
    if (root / "train_images").is_dir() and (root / csv_name).is_file():
        return "severstal"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "mask_folder"
    raise DatasetError(
        f"{root}: not a dataset folder: expected train_images/ + {csv_name} (severstal layout) "
        "or images/ + masks/ (mask_folder layout)"
    )


def write_class_names(root: str | os.PathLike, class_names: list[str]) -> None:
    write_text(Path(root) / CLASSES_FILE, json.dumps({"class_names": class_names}, indent=2) + "\n")


def _names_from_file(root: Path) -> list[str] | None:
    path = root / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())["class_names"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: expected {{\"class_names\": [...]}} ({err})") from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{path}: class_names must be a non-empty list of strings")
    return names


def _open_severstal(root: Path, csv_name: str, class_names, image_shape) -> SegmentationDataset:
    annotations = read_annotations(root / csv_name, len(class_names) if class_names else None)
    image_paths = list_images(root / "train_images")
    on_disk = {p.name for p in image_paths}
    for image_id in annotations.image_ids:
        if image_id not in on_disk:
            line = min(line for (i, _), line in annotations.lines.items() if i == image_id)
            raise AnnotationError(f"{annotations.source}:{line}: image {image_id} not found in {root / 'train_images'}")
    if not class_names:
        class_names = [str(c) for c in range(1, max(annotations.class_ids, default=1) + 1)]
    return SegmentationDataset(root, "severstal", image_paths, class_names, annotations=annotations, image_shape=image_shape)


def _open_mask_folder(root: Path, class_names, image_shape) -> SegmentationDataset:
    image_paths = list_images(root / "images")
    mask_dir = root / "masks"
    missing = [p for p in image_paths if not (mask_dir / f"{p.stem}.png").is_file()]
    if missing:
        raise DatasetError(f"{mask_dir / (missing[0].stem + '.png')}: label mask not found for image {missing[0]}"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not class_names:
        # No names given: the labels themselves say how many classes there are.
        top = max((int(read_label_map(mask_dir / f"{p.stem}.png").max()) for p in image_paths), default=1)
        class_names = [str(c) for c in range(1, max(top, 1) + 1)]
    return SegmentationDataset(root, "mask_folder", image_paths, class_names, mask_dir=mask_dir, image_shape=image_shape)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train / validation index split, deterministic per seed; both sides non-empty."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if n < 2:
        raise DatasetError(f"need at least 2 images to split into train and validation, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
