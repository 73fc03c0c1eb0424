"""Labelled image sets on disk, in the two layouts people ship steel-defect data in.

- ``severstal``: ``train_images/`` plus a CSV of run-length masks (``train.csv``), either
  competition layout; images without a row have no defect.
- ``mask_folder``: ``images/`` plus ``masks/`` holding a single-channel PNG per image with the
  same stem, pixel value = class id, 0 = background (e.g. NEU-Seg).

Both give the same thing: ``load(i) -> (image (H, W) uint8, masks (C, H, W) bool)``. The class
count and names come from ``classes.json`` beside the data, from the caller, or from the labels.

A bad row or file stops the opening (or the load) with one line naming it. With ``skip_bad``
(``train --skip-bad``) bad rows and unlabelled or unreadable images are left out instead, each
kept as a ``Skip`` in ``SegmentationDataset.skipped``; ``drop_unreadable`` decodes every image
once to find those that only fail when their pixels are read (a JPEG cut short).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from steelseg.config import ConfigError, DataConfig
from steelseg.errors import SteelsegError
from steelseg.files.annotations import AnnotationError, Annotations, read_annotations
from steelseg.files.atomic import write_text
from steelseg.files.images import read_gray, read_label_map, read_shape, require_images
from steelseg.files.mask_folders import MASK_NOT_FOUND as MASK_NOT_FOUND  # re-exported: they lived here
from steelseg.files.mask_folders import MAX_INFERRED_CLASSES as MAX_INFERRED_CLASSES
from steelseg.files.mask_folders import first_problem, mask_path, top_label, unpaired
from steelseg.files.skips import Skip

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
    skipped: tuple[Skip, ...] = ()  # what skip_bad left out of this folder (subsets keep the list)

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

    @property
    def skipped_ids(self) -> set[str]:
        return {skip.image_id for skip in self.skipped if skip.image_id}

    def __len__(self) -> int:
        return len(self.image_paths)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``index`` as (H, W) uint8 and its masks as (C, H, W) bool."""
        image, masks = self._load_all(index)
        return image, masks if self.keep is None else masks[self._channels]

    def select_classes(self, class_ids: list[int]) -> SegmentationDataset:
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
            labels = read_label_map(mask_path(path, self.mask_dir), image.shape)
            count = len(self.all_class_names)
            if labels.max(initial=0) > count:
                raise DatasetError(
                    f"{mask_path(path, self.mask_dir)}: unknown class id {labels.max()} "
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
                present = np.unique(read_label_map(mask_path(path, self.mask_dir)))
                presence[i, present[(present > 0) & (present <= count)] - 1] = True
        return presence[:, self._channels]

    def image_shapes(self) -> list[tuple[int, int]]:
        """(H, W) of every image, from the file headers (nothing is decoded)."""
        if self.image_shape is not None:
            return [tuple(self.image_shape)] * len(self)
        return [read_shape(path) for path in self.image_paths]

    def subset(self, indices: list[int] | np.ndarray) -> SegmentationDataset:
        return replace(self, image_paths=[self.image_paths[i] for i in indices])


def open_dataset(
    root: str | os.PathLike,
    layout: str = "auto",
    class_names: list[str] | None = None,
    csv_name: str = "train.csv",
    image_shape: tuple[int, int] | None = None,
    skip_bad: bool = False,
) -> SegmentationDataset:
    """Open a dataset folder; ``layout="auto"`` recognises either layout by its sub-folders.
    ``skip_bad``: bad rows, rows naming no image and images without their label mask are left
    out (``skipped``) instead of being an error; nothing is decoded (see ``drop_unreadable``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if layout == "auto":
        layout = detect_layout(root, csv_name)
    class_names = class_names or _names_from_file(root)
    if layout == "severstal":
        return _open_severstal(root, csv_name, class_names, image_shape, skip_bad)
    if layout == "mask_folder":
        return _open_mask_folder(root, class_names, image_shape, skip_bad)
    raise DatasetError(f"unknown dataset layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")


def open_configured(data: DataConfig, progress: bool = False) -> SegmentationDataset:
    """The dataset a config's ``data`` section describes (all classes; see ``select_classes``);
    with ``data.skip_bad`` without its bad rows and unreadable images (every image decoded once),
    each printed to stderr as ``skipped FILE[:LINE]: reason``."""
    if not data.root:
        raise DatasetError("no training data: set data.root (or pass a dataset folder)")
    dataset = open_dataset(data.root, data.layout, data.class_names, data.csv_name, skip_bad=data.skip_bad)
    if not data.skip_bad:
        return dataset
    return _checked_and_reported(drop_unreadable(dataset, progress))


def _checked_and_reported(dataset: SegmentationDataset) -> SegmentationDataset:
    """Print one stderr line per skipped row or image (a run that goes on without them says so
    at once); a folder left without any image is an error."""
    for skip in dataset.skipped:
        print(f"skipped {skip.message}", file=sys.stderr, flush=True)
    if not len(dataset):
        raise DatasetError(
            f"{dataset.root}: every image was left out as bad ({len(dataset.skipped)} skipped, listed above)"
        )
    return dataset


def drop_unreadable(dataset: SegmentationDataset, progress: bool = False) -> SegmentationDataset:
    """``dataset`` without the images that cannot be loaded as training loads them, each added to
    ``skipped``: every image and its masks are decoded once, since a file cut short after a good
    header fails only then. What ``--skip-bad`` runs before training, so that no epoch meets a
    bad file (NEU-Seg's 3,630 images: 3 s; a 256x1600 Severstal JPEG: 8 ms, 12,568 of them
    about 100 s on one core)."""
    kept, skipped = [], list(dataset.skipped)
    for index in tqdm(range(len(dataset)), desc="check", unit="img", disable=not progress):
        try:
            dataset._load_all(index)
        except SteelsegError as err:
            skipped.append(Skip(str(err), dataset.image_paths[index].name))
        else:
            kept.append(index)
    return replace(dataset.subset(kept), skipped=tuple(skipped))


def open_pseudo(data: DataConfig, main: SegmentationDataset, scan: bool = True) -> list[SegmentationDataset]:
    """The folders of ``data.pseudo``, each a training-only addition to ``main`` (the opened
    ``data.root``, its class selection applied to them too). They must have ``main``'s classes
    (from their classes.json; a folder without one takes ``main``'s names) and no image id of
    ``main`` or of each other: a pseudo folder made from the training images by mistake would
    otherwise train on validation images. Each is opened like a ``steelseg train`` folder
    (layout detected, ``train.csv``). Problems are a one-line ConfigError. With ``data.skip_bad``
    their bad rows are skipped and, if ``scan``, their unreadable images too (``drop_unreadable``).
    Images ``main`` skipped count as its own: a pseudo folder may not bring them back."""
    owner = dict.fromkeys([*main.image_ids, *main.skipped_ids], main.root)
    extras = []
    for folder in data.pseudo or []:
        root = Path(folder)
        names = None if (root / CLASSES_FILE).is_file() else main.all_class_names
        extra = open_dataset(root, class_names=names, skip_bad=data.skip_bad)
        if extra.all_class_names != main.all_class_names:
            raise ConfigError(
                f"data.pseudo: {root} has the classes {', '.join(extra.all_class_names)}; the training data "
                f"{main.root} has {', '.join(main.all_class_names)}"
            )
        for image_id in extra.image_ids:
            if image_id in owner:
                raise ConfigError(
                    f"data.pseudo: image {image_id} of {root} is also in {owner[image_id]}; an image may be in only one"
                )
            owner[image_id] = root
        if data.skip_bad and scan:
            extra = _checked_and_reported(drop_unreadable(extra))
        extras.append(extra if main.keep is None else extra.select_classes(main.keep))
    return extras


def skips_of(*datasets: SegmentationDataset | CombinedDataset) -> list[Skip]:
    """Every distinct ``Skip`` of these datasets (a training and a validation split share their
    folder's), in the order found."""
    parts = [part for dataset in datasets for part in getattr(dataset, "parts", [dataset])]
    return list(dict.fromkeys(skip for part in parts for skip in part.skipped))


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
        names = json.loads(path.read_bytes().decode("utf-8-sig"))["class_names"]
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (json.JSONDecodeError, KeyError, TypeError, IndexError, RecursionError) as err:
        raise DatasetError(f'{path}: expected {{"class_names": [...]}} ({type(err).__name__}: {err})') from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise DatasetError(
            f"{path}: class_names must be a non-empty list of non-empty strings, got {json.dumps(names)[:200]}"
        )
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise DatasetError(f"{path}: class name {twice!r} is listed twice; each class needs its own name")
    return names


def _open_severstal(root: Path, csv_name: str, class_names, image_shape, skip_bad: bool) -> SegmentationDataset:
    annotations = read_annotations(root / csv_name, len(class_names) if class_names else None, skip_bad=skip_bad)
    image_paths = require_images(root / "train_images")
    skipped = [Skip(str(row), row.image_id) for row in annotations.bad_rows]
    on_disk = {p.name for p in image_paths}
    first_line = {}
    for (image_id, _), line in annotations.lines.items():
        first_line[image_id] = min(line, first_line.get(image_id, line))
    for image_id in annotations.image_ids:
        if image_id not in on_disk:
            message = (
                f"{annotations.source}:{first_line[image_id]}: image {image_id} not found in {root / 'train_images'}"
            )
            if not skip_bad:
                raise AnnotationError(message)
            skipped.append(Skip(message))  # its rows are left out; no image is
    if not class_names:
        class_names = [str(c) for c in range(1, max(annotations.class_ids, default=1) + 1)]
    bad = {skip.image_id for skip in skipped}
    image_paths = [p for p in image_paths if p.name not in bad]  # an image with a bad row has unknown labels
    return SegmentationDataset(
        root,
        "severstal",
        image_paths,
        class_names,
        annotations=annotations,
        image_shape=image_shape,
        skipped=tuple(skipped),
    )


def _open_mask_folder(root: Path, class_names, image_shape, skip_bad: bool) -> SegmentationDataset:
    image_paths = require_images(root / "images")
    mask_dir = root / "masks"
    problems = unpaired(image_paths, mask_dir)
    if not class_names:
        # No names given: the labels themselves say how many classes there are.
        left_out = {skip.image_id for skip in problems}
        top, unreadable = top_label(image_paths, mask_dir, left_out, root / CLASSES_FILE)
        problems += unreadable
        class_names = [str(c) for c in range(1, max(top, 1) + 1)]
    if problems and not skip_bad:
        raise DatasetError(first_problem(problems))
    bad = {skip.image_id for skip in problems}
    return SegmentationDataset(
        root,
        "mask_folder",
        [p for p in image_paths if p.name not in bad],
        class_names,
        mask_dir=mask_dir,
        image_shape=image_shape,
        skipped=tuple(problems),
    )


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train / validation index split, deterministic per seed; both sides non-empty."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if n < 2:
        raise DatasetError(f"need at least 2 images to split into train and validation, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
