"""Adversarial validation: can a classifier tell the test images from the training images?

The two folders become one work dataset in the competition's layout, with one class, "test",
whose mask covers every test image whole; the existing classifier stack trains on it over k
folds, and its out-of-fold probabilities say how test-like each image is. Their ROC AUC
(train vs test) measures the shift: about 0.5 when the sets look alike; the 2019 Severstal
competition's was about 0.85. The training images most like the test set make a validation
fold (``folds.csv``) that stands in for the test set better than a random split.

``OUT`` after a run::

    data/train_images/   links to both folders' images, named train__<name> and test__<name>
    data/train.csv       one whole-image class-1 row per test image (ImageId,ClassId,EncodedPixels)
    data/classes.json    the single class name "test"
    data/folds.csv       the k stratified folds the classifier was trained on
    runs/fold-<i>/       one run per fold, each with its out-of-fold scores (oof.npz)
    adversarial.csv      ImageId,Set,TestLikeness for every image (original names)
    folds.csv            the user's training images only: fold 0 = the most test-like share

Pure numpy at the core (``assign_folds``, ``most_test_like``, ``whole_image_rle``); files and
training at the edges. Torch and Lightning are imported only when training starts.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from steelseg.errors import OutputExistsError
from steelseg.files.atomic import atomic_open
from steelseg.files.images import read_shape, require_images
from steelseg.files.likeness import TEST, TRAIN, AdversarialError, write_likeness
from steelseg.files.rundir import fold_dir

if TYPE_CHECKING:
    from steelseg.config import Config

CLASS_NAME = "test"
DATA_DIR, RUNS_DIR = "data", "runs"
LIKENESS_CSV, FOLDS_CSV = "adversarial.csv", "folds.csv"
# The 2019 competition's train-vs-test AUC, for the report.
COMPETITION_AUC = 0.85

# The small recipe used when no config is named: a resnet18 classifier on whole images at a
# quarter of their size (a 256x1600 strip is seen as 64x400), random weights, a few epochs;
# hours of CPU on the full competition data become tens of minutes.
SMALL_RECIPE = [
    "model.encoder_name=resnet18",
    "model.encoder_weights=null",
    "model.in_channels=1",
    "model.input_scale=0.25",
    "data.crop_height=null",
    "data.crop_width=null",
    "data.batch_size=16",
    "train.epochs=3",
]
# Augmentation that hides a difference makes the classifier blind to it (brightness jitter
# hides a lighting shift), so only flips, before the user's overrides, which may choose
# otherwise. defect_blackout is always dropped: it would paint the whole test image black.
FLIPS_ONLY = "data.augment=[{name: hflip, p: 0.5}, {name: vflip, p: 0.5}]"
ERASES_LABELS = {"defect_blackout"}


class AdversarialResult(BaseModel):
    """What ``run_adversarial`` found and where it wrote it (absolute paths)."""

    auc: float | None  # out-of-fold ROC AUC of test vs train, all folds pooled
    fold_auc: list[float | None]  # the same within each fold
    train_images: int
    test_images: int
    holdout_images: int  # training images in fold 0 of folds.csv
    likeness_csv: str
    folds_csv: str
    runs_dir: str
    train_data: str | None  # the dataset folder holding the training images (None: not a dataset layout)

    def report(self) -> str:
        """A few lines for people: the AUC, what it means, the files, the command to use."""
        folds = ", ".join(_fmt(a) for a in self.fold_auc)
        return "\n".join(
            [
                f"train vs test ROC AUC {_fmt(self.auc)} (out of fold; per fold {folds}) "
                f"over {self.train_images} training and {self.test_images} test images",
                f"{_verdict(self.auc)}; about 0.5 means the test images look like the training images "
                f"(the 2019 Severstal competition's was about {COMPETITION_AUC})",
                f"test-likeness of every image: {self.likeness_csv}",
                f"validation fold 0 = the {self.holdout_images} most test-like training images: {self.folds_csv}",
                f"  steelseg train {shlex.quote(self.train_data or 'TRAIN_DATA')} "
                f"--folds {shlex.quote(self.folds_csv)} --fold 0 --out RUN_DIR",
            ]
        )


def _verdict(auc: float | None) -> str:
    if auc is None:
        return "no AUC"
    if auc < 0.6:
        return "hard to tell apart: a random validation split already resembles the test set"
    if auc < 0.75:
        return "somewhat different: validating on the test-like fold is worth a try"
    return "clearly different: validate on the test-like fold"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# --- core: numpy in, numpy out ------------------------------------------------------------


def whole_image_rle(height: int, width: int) -> str:
    """Encoded pixels of a mask covering a whole (height, width) image: one run from pixel 1."""
    return f"1 {height * width}"


def assign_folds(is_test: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold (N,) int64 in 0..k-1 for (N,) bool ``is_test``: stratified, so that each fold holds
    both kinds of image in the overall proportion; deterministic per seed."""
    from steelseg.files.folds import assign_folds as stratified

    is_test = np.asarray(is_test, bool)
    fewest = min(int(is_test.sum()), int((~is_test).sum()))
    if not 2 <= k <= fewest:
        raise AdversarialError(
            f"{k} folds need k >= 2 and at least k images of each kind "
            f"(got {int((~is_test).sum())} training and {int(is_test.sum())} test images)"
        )
    return stratified(is_test[:, None], np.arange(is_test.size), k, seed)


def most_test_like(likeness: np.ndarray, val_fraction: float) -> np.ndarray:
    """(N,) bool: the ``val_fraction`` share of (N,) scores that are highest (at least one, never
    all); ties go to the earlier entry."""
    likeness = np.asarray(likeness, np.float64)
    if not 0 < val_fraction < 1:
        raise AdversarialError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if likeness.size < 2:
        raise AdversarialError(f"need at least 2 training images to split, got {likeness.size}")
    count = min(max(1, round(likeness.size * val_fraction)), likeness.size - 1)
    chosen = np.zeros(likeness.size, bool)
    chosen[np.argsort(-likeness, kind="stable")[:count]] = True
    return chosen


# --- the run ------------------------------------------------------------------------------


def run_adversarial(
    train_images: str | os.PathLike,
    test_images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    k: int = 3,
    val_fraction: float = 0.2,
    minutes: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> AdversarialResult:
    """Train a train-vs-test classifier over ``k`` folds and write ``OUT/adversarial.csv`` and
    ``OUT/folds.csv`` (see the module docstring).

    ``config``: a YAML file or bundled recipe; None is ``SMALL_RECIPE``. Whatever it says, the
    run classifies one class from the work dataset, in one stage, with flips only for
    augmentation unless ``overrides`` choose otherwise. ``minutes``: a rough budget for the
    whole training, shared by the folds (each fold finishes at least one epoch).
    """
    train_paths, test_paths = require_images(train_images), require_images(test_images)
    out = Path(out).absolute()
    _check_apart(train_images, train_paths, test_images, test_paths)
    _check_options({train_images: len(train_paths), test_images: len(test_paths)}, k, val_fraction, minutes, out)
    is_test = np.array([False] * len(train_paths) + [True] * len(test_paths))
    folds = assign_folds(is_test, k, seed)
    run_config = adversarial_config(config, list(overrides), out / DATA_DIR, minutes, k)  # a bad config fails now

    work_ids = build_work_dataset(train_paths, test_paths, out / DATA_DIR)
    _write_work_folds(out / DATA_DIR / FOLDS_CSV, work_ids, folds, is_test)
    from steelseg.training.cv import train_all_folds  # torch and Lightning: only now

    train_all_folds(run_config, out / RUNS_DIR, progress)
    likeness, fold_auc = _collect_oof(out / RUNS_DIR, work_ids, folds, is_test)

    from steelseg.core.screening import roc_auc

    n_train, names = len(train_paths), [p.name for p in [*train_paths, *test_paths]]
    write_likeness(out / LIKENESS_CSV, names, is_test, likeness)
    holdout = most_test_like(likeness[:n_train], val_fraction)
    write_holdout_folds(out / FOLDS_CSV, names[:n_train], holdout)
    return AdversarialResult(
        auc=roc_auc(likeness, is_test),
        fold_auc=fold_auc,
        train_images=n_train,
        test_images=len(test_paths),
        holdout_images=int(holdout.sum()),
        likeness_csv=str(out / LIKENESS_CSV),
        folds_csv=str(out / FOLDS_CSV),
        runs_dir=str(out / RUNS_DIR),
        train_data=_dataset_folder(Path(train_images).absolute()),
    )


def _check_options(counts: dict, k: int, val_fraction: float, minutes: float | None, out: Path) -> None:
    """Everything that can be wrong before training starts, before anything is written."""
    for folder, count in counts.items():
        if count < max(k, 2):  # every fold needs both kinds of image
            raise AdversarialError(
                f"{folder}: {count} images, too few for {k} folds (each fold needs some of both folders)"
            )
    if not 0 < val_fraction < 1:
        raise AdversarialError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if minutes is not None and not minutes > 0:
        raise AdversarialError(f"minutes must be above 0, got {minutes}")
    for name in (DATA_DIR, RUNS_DIR):
        if (out / name).exists():
            raise OutputExistsError(f"{out / name} already exists; choose another output folder")


def _check_apart(train_images, train_paths: list[Path], test_images, test_paths: list[Path]) -> None:
    """The same image on both sides makes the AUC meaningless: refuse it, naming one."""
    if Path(train_images).resolve() == Path(test_images).resolve():
        raise AdversarialError(
            f"{train_images} and {test_images} are the same folder: give the training and the test images"
        )
    train_files = {p.resolve() for p in train_paths}
    shared = [p for p in test_paths if p.resolve() in train_files]
    if shared:
        raise AdversarialError(
            f"{shared[0]} is among the training images too ({len(shared)} of the test images are): "
            "the two sides must not share images"
        )


def adversarial_config(
    config: str | os.PathLike | None, overrides: list[str], data_root: Path, minutes: float | None, k: int
) -> Config:
    """The run's ``Config``: ``config`` (None: ``SMALL_RECIPE``) with ``overrides``, then what
    every adversarial run needs: one "test" class, classify, the work folds, one stage."""
    from steelseg.config import load_config, revalidate

    base = SMALL_RECIPE if config is None else []
    loaded = load_config(config, [*base, FLIPS_ONLY, *overrides])
    data = loaded.data.model_copy(
        update={
            "root": str(data_root),
            "layout": "severstal",
            "csv_name": "train.csv",
            "class_names": None,
            "classes": None,
            "folds": str(data_root / FOLDS_CSV),
            "fold": 0,
            "augment": [step for step in loaded.data.augment if step.name not in ERASES_LABELS],
        }
    )
    train = loaded.train.model_copy(
        update={
            "mixup_alpha": None,
            "oof_scale": loaded.train.oof_scale or 0.25,  # the out-of-fold scores are the result
            "max_minutes": minutes / k if minutes else loaded.train.max_minutes,
        }
    )
    model = loaded.model.model_copy(update={"task": "classify", "head": "sigmoid"})
    # per-class lists of a multi-class recipe do not fit the one class: their defaults instead
    postprocess = loaded.postprocess.model_copy(
        update={
            key: type(loaded.postprocess).model_fields[key].default
            for key in ("pixel_threshold", "min_area", "screen_threshold")
            if isinstance(getattr(loaded.postprocess, key), list)
        }
    )
    return revalidate(
        loaded.model_copy(
            update={"data": data, "train": train, "model": model, "postprocess": postprocess, "stages": []}
        )
    )


def build_work_dataset(train_paths: list[Path], test_paths: list[Path], root: Path) -> list[str]:
    """Link (or copy) both sets into ``root/train_images`` as ``train__<name>`` and
    ``test__<name>``, write ``train.csv`` and ``classes.json``; return the work image ids in
    the order train paths, then test paths."""
    from steelseg.files.datasets import write_class_names

    rles = [whole_image_rle(*read_shape(p)) for p in test_paths]  # an unreadable image fails before any writing
    work_ids = [f"{TRAIN}__{p.name}" for p in train_paths] + [f"{TEST}__{p.name}" for p in test_paths]
    images = root / "train_images"
    images.mkdir(parents=True)
    for source, work_id in zip([*train_paths, *test_paths], work_ids):
        _link(source, images / work_id)
    with atomic_open(root / "train.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["ImageId", "ClassId", "EncodedPixels"])
        writer.writerows([work_id, 1, rle] for work_id, rle in zip(work_ids[len(train_paths) :], rles))
    write_class_names(root, [CLASS_NAME])
    return work_ids


def _link(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source.resolve())
    except OSError:  # no symlinks here (some Windows and network file systems): a copy
        shutil.copyfile(source, target)


def _write_work_folds(path: Path, work_ids: list[str], folds: np.ndarray, is_test: np.ndarray) -> None:
    from steelseg.files.folds import FoldTable, write_folds

    n = len(work_ids)
    write_folds(path, FoldTable(work_ids, folds, np.arange(n), is_test[:, None], np.zeros(n, np.uint64), [CLASS_NAME]))


def _collect_oof(runs: Path, work_ids: list[str], folds: np.ndarray, is_test: np.ndarray) -> tuple[np.ndarray, list]:
    """Each image's out-of-fold test probability (N,) float64, and each fold's AUC."""
    from steelseg.core.screening import roc_auc
    from steelseg.training.oof import load_oof

    row = {work_id: i for i, work_id in enumerate(work_ids)}
    likeness = np.full(len(work_ids), np.nan)
    for fold in sorted(set(folds.tolist())):
        oof = load_oof(fold_dir(runs, fold))
        likeness[[row[str(i)] for i in oof["image_ids"]]] = oof["scores"][:, 0]
    missing = np.flatnonzero(np.isnan(likeness))
    if missing.size:  # every image is in exactly one validation fold: a bug if not
        raise RuntimeError(f"no out-of-fold score for {work_ids[missing[0]]} (and {missing.size - 1} more)")
    fold_auc = [roc_auc(likeness[folds == f], is_test[folds == f]) for f in sorted(set(folds.tolist()))]
    return likeness, fold_auc


def _dataset_folder(images: Path) -> str | None:
    """The dataset folder that holds an image folder of either layout (severstal:
    train_images/, mask_folder: images/); None for a folder of another name."""
    return str(images.parent) if images.name in ("train_images", "images") else None


# --- files --------------------------------------------------------------------------------


def write_holdout_folds(path: str | os.PathLike, image_ids: list[str], holdout: np.ndarray) -> None:
    """A folds file (``ImageId,Fold,Group``, as `steelseg folds` writes): fold 0 for the
    ``holdout`` images, fold 1 for the rest; each image its own group."""
    from steelseg.files.folds import FoldTable, write_folds

    n = len(image_ids)
    folds = np.where(np.asarray(holdout, bool), 0, 1).astype(np.int64)
    write_folds(
        path,
        FoldTable(list(image_ids), folds, np.arange(n), np.zeros((n, 1), bool), np.zeros(n, np.uint64), [CLASS_NAME]),
    )
