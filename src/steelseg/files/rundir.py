"""A run directory describes itself, and this module owns it: every file name lives here.

    config.yaml         the fully resolved configuration (class names, absolute paths)
    model.safetensors   the best weights (no pickle: loading runs no code)
    weights.sha256      SHA-256 of model.safetensors and of the exported model.onnx and
                        model.int8.onnx, as ``sha256sum`` writes it (so ``sha256sum -c
                        weights.sha256`` checks it too); files that do not match are refused.
                        Files written before their line existed load unchecked.
    postprocess.json    per-class pixel threshold and minimum area, tuned on validation
                        (runs with pixel outputs)
    gate.json           per-class screening threshold on the class scores, tuned on validation
    metrics.csv         one row per epoch (epochs counted from 1)
    curves.png          losses and validation Dice against epoch, redrawn from metrics.csv
                        after every validation (``steelseg report-curves`` draws it again)
    summary.json        the best epoch, its scores, and how the run was made (``RunSummary``)
    model.onnx          written by ``steelseg export``
    resume.ckpt         the full training state after the last finished epoch
    oof.npz             out-of-fold probabilities of the validation images

No torch here: the Predictor, ``score`` and an ONNX-only deployment read run directories
without it (weights are read and written by ``models/weights.py``, through ``writing_weights`` and
``verify_weights`` here).
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from steelseg.config import Config, ConfigError, load_config
from steelseg.core.postprocess import PostProcess, per_class
from steelseg.core.screening import ScreeningReport, thresholds_from_json, thresholds_to_json
from steelseg.errors import SteelsegError
from steelseg.files import system_dir
from steelseg.files.atomic import atomic_path, write_text
from steelseg.files.config_paths import absolute_paths
from steelseg.files.system_dir import first_member_run

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
WEIGHTS_SHA256 = "weights.sha256"  # the checksums of the weights files of its folder
POSTPROCESS = "postprocess.json"
GATE = "gate.json"
METRICS = "metrics.csv"
CURVES = "curves.png"
SUMMARY = "summary.json"
ONNX = "model.onnx"
ONNX_INT8 = "model.int8.onnx"  # steelseg export --int8: calibrated, checked against fp32
BACKEND_CHOICE = "backend.json"  # --backend auto: the measured choice, with the machine it holds for
RESUME = "resume.ckpt"
OOF = "oof.npz"
FINISHED = "finished"  # written when a run's training loop has ended normally
RECIPE = "recipe.yaml"  # a multi-stage run's whole config; each stage is a run in stages/
STAGES_DIR = "stages"
TOP_DIR = "top"  # the k best epochs' weights, with train.average_best
TENSORBOARD_DIR = "tensorboard"
TEACHER_DIR = "teacher"  # distill: the teacher's probabilities, cached (inference.teacher_cache)
CV_TABLE = "cv.csv"
SKIPPED = "skipped.txt"  # with data.skip_bad: the rows and images left out, one a line
CV_CONFIG = "cv.yaml"  # train --fold all: the config every fold-<i> run is made from (--resume reads it)
ENSEMBLE = system_dir.ENSEMBLE  # tune of several models, fit: the members, next to their postprocess.json
FOLD_GLOB = "fold-*"


def fold_dir(out: str | os.PathLike, fold: int) -> Path:
    """The run of fold ``fold`` in the output folder of ``train --fold all``."""
    return Path(out) / f"fold-{fold}"


def class_dir(out: str | os.PathLike, class_id: int, name: str) -> Path:
    """The run of class ``class_id`` (1-based) in the output folder of ``train --per-class``."""
    return Path(out) / f"class-{class_id}-{name}"


class RunDirError(SteelsegError, ValueError):
    """A run directory that lacks what it needs."""


class WeightsChecksumError(RunDirError):
    """Weights whose SHA-256 is not the one recorded when they were written."""


class _Typed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShapeRange(_Typed):
    """The sizes of a set of images: smallest and largest (H, W), and the range of the shorter
    side min(H, W), which says at what scale a model has seen defects."""

    min: tuple[int, int]
    max: tuple[int, int]
    shorter_side: tuple[int, int]

    @classmethod
    def of(cls, shapes: list[tuple[int, int]]) -> ShapeRange:
        heights, widths = [s[0] for s in shapes], [s[1] for s in shapes]
        shorter = [min(s) for s in shapes]
        return cls(
            min=(min(heights), min(widths)), max=(max(heights), max(widths)), shorter_side=(min(shorter), max(shorter))
        )


class EpochResult(_Typed):
    """One validation of one epoch, as metrics.csv and summary.json report it."""

    epoch: int  # 1-based, as people count
    seconds: float = 0.0  # since training started, resumed runs included
    global_step: int = 0
    world_size: int = 1
    train_loss: float
    val_loss: float | None = None  # None: Mask R-CNN reports no loss in evaluation
    # Competition mean Dice with the configured post-processing; for a classifier, the
    # presence accuracy at postprocess.screen_threshold (the Dice if every mask let through
    # were perfect).
    val_dice: float
    val_dice_tuned: float  # ... with the post-processing (screening thresholds) tuned on this validation
    val_class_dice_tuned: list[float]
    val_iou: float | None = None  # None for a classifier
    lr: float
    screening: ScreeningReport | None = None  # class scores at the tuned screening thresholds


class Averaged(_Typed):
    epochs: list[int]
    val_dice_tuned: float
    used: bool


class RunSummary(EpochResult):
    """summary.json: the best epoch and how the run was made."""

    class_names: list[str]
    task: str = "segment"  # model.task
    torch: str
    precision: str = "32-true"  # as Lightning ran it (auto resolved)
    channels_last: bool = False
    accelerator: str = "cpu"
    input_divisor: int = 32  # the network pads inputs to a multiple of this
    train_image_shapes: ShapeRange | None = None
    averaged: Averaged | None = None
    stages: dict[str, RunSummary] | None = None


def save_config(run_dir: str | os.PathLike, config: Config) -> None:
    """Write the resolved config, its paths made absolute so the run works from anywhere."""
    if not config.data.class_names:
        raise ValueError("resolve the class names before saving a run's config")
    write_text(Path(run_dir) / CONFIG, absolute_paths(config).to_yaml())


def load_run_config(run_dir: str | os.PathLike) -> Config:
    if not (Path(run_dir) / CONFIG).is_file() and (Path(run_dir) / ENSEMBLE).is_file():
        return load_run_config(first_member_run(run_dir))  # a system folder names its classes so
    path = _need(run_dir, CONFIG)
    try:
        config = load_config(path)
    except ConfigError as err:
        raise RunDirError(str(err)) from None
    if not config.data.class_names:  # training always writes them: an empty or edited file
        raise RunDirError(f"{path}: data.class_names is missing or empty; a run's config.yaml names its classes")
    return config


def save_postprocess(run_dir: str | os.PathLike, postprocess: PostProcess) -> None:
    write_text(Path(run_dir) / POSTPROCESS, postprocess.to_json() + "\n")


def load_postprocess(run_dir: str | os.PathLike, config: Config) -> PostProcess:
    """The tuned post-processing, or the config's defaults when the run was not tuned."""
    path = Path(run_dir) / POSTPROCESS
    return read_postprocess(path if path.is_file() else None, config, len(config.output_class_names))


def postprocess_defaults(config: Config) -> dict:
    """Values for the keys a post-processing file may lack: the peak (max or top-K) is the
    config's class score."""
    return {"peak": config.model.score, "peak_top_k": config.model.score_top_k}


def read_postprocess(path: Path | None, config: Config, num_classes: int) -> PostProcess:
    """The post-processing file at ``path`` (a run's, or an ensemble's from ``steelseg tune``),
    or ``config``'s defaults when None (``postprocess_defaults`` for the keys a file lacks)."""
    defaults = postprocess_defaults(config)
    if path is None:
        post = config.postprocess
        return PostProcess.uniform(num_classes, post.pixel_threshold, post.min_area, **defaults)
    try:
        return PostProcess.from_json(path.read_text(), num_classes, defaults=defaults)
    except (OSError, ValueError) as err:
        raise RunDirError(f"{path}: {err}") from None


def save_gate(run_dir: str | os.PathLike, thresholds) -> None:
    """Write gate.json: the per-class screening thresholds (C,) on the class scores."""
    write_text(Path(run_dir) / GATE, thresholds_to_json(thresholds) + "\n")


def load_gate(run_dir: str | os.PathLike, config: Config) -> np.ndarray:
    """The run's tuned screening thresholds (C,), or the config's for a run made before they
    were tuned (as ``load_postprocess``)."""
    path = Path(run_dir) / GATE
    if not path.is_file():
        return default_gate(config)
    try:
        return thresholds_from_json(path.read_text(), len(config.output_class_names))
    except (OSError, ValueError) as err:
        raise RunDirError(f"{path}: {err}") from None


def default_gate(config: Config) -> np.ndarray:
    """The config's screening thresholds (C,): ``postprocess.screen_threshold`` per class."""
    return per_class(config.postprocess.screen_threshold, len(config.output_class_names), "screen_threshold")


@dataclass(frozen=True)
class Run:
    """A run directory as prediction reads it, each file read at most once: its config,
    summary (None for a run without summary.json), post-processing and screening thresholds
    (the config's defaults where the run has no file).

    ``postprocess`` and ``gate`` are read when first asked for: an ensemble uses its own
    post-processing and no member's gate, and a member's files it does not use (a per-class
    run's, say) are never parsed, so they cannot stop it."""

    path: Path
    config: Config
    summary: RunSummary | None

    @cached_property
    def postprocess(self) -> PostProcess:
        return load_postprocess(self.path, self.config)

    @cached_property
    def gate(self) -> np.ndarray:
        """(C,) screening thresholds."""
        return load_gate(self.path, self.config)


def load_run(run_dir: str | os.PathLike) -> Run:
    """Read the run in ``run_dir``: config.yaml and summary.json now, postprocess.json and
    gate.json when first used."""
    path = Path(run_dir)
    config = load_run_config(path)
    summary = load_summary(path) if (path / SUMMARY).is_file() else None
    return Run(path, config, summary)


def load_oof(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The run's out-of-fold arrays (``training.oof.save_oof`` writes them); plain arrays only."""
    path = _need(run_dir, OOF)
    if not zipfile.is_zipfile(path):  # np.load would try it as .npy, then as a pickle, and blame the pickle
        raise RunDirError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as err:  # allow_pickle=False refuses object arrays, which would unpickle
        raise RunDirError(f"{path}: holds pickled objects, which are never loaded ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise RunDirError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") from None


def save_summary(run_dir: str | os.PathLike, summary: RunSummary) -> None:
    write_text(Path(run_dir) / SUMMARY, summary.model_dump_json(indent=2, exclude_none=True) + "\n")


def load_summary(run_dir: str | os.PathLike) -> RunSummary:
    path = _need(run_dir, SUMMARY)
    try:
        return RunSummary.model_validate_json(path.read_text())
    except ValidationError as err:
        raise RunDirError(
            f"{path}: not a run summary ({err.error_count()} problems, first: {err.errors()[0]['msg']})"
        ) from None


def has_finished_epoch(run_dir: str | os.PathLike) -> bool:
    """True once training has something to lose: a finished epoch (its checkpoint, or the
    finished mark) in the run or any of its stages. A folder without one can be started again;
    weights or a summary alone do not count: a first epoch killed before its checkpoint was
    written leaves them, and with no checkpoint the run can only start again."""
    run_dir = Path(run_dir)
    marks = (RESUME, FINISHED)
    if any((run_dir / mark).exists() for mark in marks):
        return True
    return any((stage / mark).exists() for stage in (run_dir / STAGES_DIR).glob("*") for mark in marks)


def weights_sha256(run_dir: str | os.PathLike) -> str:
    """SHA-256 of the run's weights file, hex."""
    return file_sha256(_need(run_dir, WEIGHTS))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def writing_weights(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file to write weights (or an exported model) to; when the block succeeds
    it replaces ``path`` and its SHA-256 is recorded in ``weights.sha256`` beside it.

    The record is written in two steps so that a kill at any moment leaves weights that match
    it: before the rename it accepts the old and the new checksum, after it only the new one.
    (Weights of a run made before checksums were recorded stay unchecked until written again.)
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        yield tmp
        digest = file_sha256(tmp)
        old = _recorded_or_none(path)
        if old:
            _record(path, [digest, *old])
    _record(path, [digest])


def verify_weights(path: str | os.PathLike) -> None:
    """Refuse a weights file whose SHA-256 differs from the one recorded beside it; a file with
    no record (a run made before records were kept, or a file from elsewhere) passes unchecked."""
    path = Path(path)
    expected = recorded_sha256(path)
    if not expected:
        return
    actual = file_sha256(path)
    if actual not in expected:
        raise WeightsChecksumError(
            f"{path}: SHA-256 {actual} does not match {expected[0]} recorded in {path.parent / WEIGHTS_SHA256}: "
            "the file was changed or replaced after it was written; it is not loaded"
        )


def recorded_sha256(path: str | os.PathLike) -> list[str]:
    """The checksums recorded for the weights file ``path`` (usually one; [] if none)."""
    path = Path(path)
    record = path.parent / WEIGHTS_SHA256
    if not record.is_file():
        return []
    checksums = []
    for number, line in enumerate(record.read_text(errors="replace").splitlines(), start=1):
        match = _RECORD_LINE.fullmatch(line)
        if not match:
            raise WeightsChecksumError(f"{record}: line {number} is not '<sha256>  <file name>' as sha256sum writes it")
        if match["name"] == path.name:
            checksums.append(match["sha"].lower())
    return checksums


_RECORD_LINE = re.compile(r"(?P<sha>[0-9a-fA-F]{64}) [ *](?P<name>[^/\\]+)")


def _recorded_or_none(path: Path) -> list[str]:
    try:
        return recorded_sha256(path)
    except WeightsChecksumError:
        return []  # a damaged record is replaced, not trusted


def _record(path: Path, checksums: list[str]) -> None:
    """Record ``checksums`` for ``path``, keeping the lines of the folder's other files (the
    weights and the exported models share the record)."""
    record = path.parent / WEIGHTS_SHA256
    others = []
    if record.is_file():
        for line in record.read_text(errors="replace").splitlines():
            match = _RECORD_LINE.fullmatch(line)
            if match and match["name"] != path.name:
                others.append(line + "\n")
    write_text(record, "".join(others) + "".join(f"{sha}  {path.name}\n" for sha in checksums))


def _need(run_dir: str | os.PathLike, name: str) -> Path:
    path = Path(run_dir) / name
    if not path.is_file():
        raise RunDirError(f"{path} not found: is {run_dir} a steelseg run directory?")
    return path
