"""The callback that fills a run directory while Lightning trains."""

from __future__ import annotations

import csv
import ctypes
import io
import multiprocessing
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from steelseg.config import Config
from steelseg.files import rundir
from steelseg.files.atomic import atomic_path, write_text
from steelseg.files.rundir import EpochResult, RunSummary
from steelseg.models.weights import save_weights
from steelseg.reports.curves import refresh_curves
from steelseg.training.module import SegmentationModule

METRIC_COLUMNS = ["epoch", "seconds", "train_loss", "val_loss", "val_dice", "val_dice_tuned", "val_iou", "lr"]
SCREENING_COLUMNS = ["val_auc", "screened_out"]  # mean AUC over classes with both labels; share of images


class RunDirWriter(L.Callback):
    """After every validation: append to metrics.csv; when the tuned validation Dice is the
    best so far, write the weights, the tuned post-processing and summary.json. After every
    epoch: the resume checkpoint. Stops training before an epoch that would not finish inside
    ``max_minutes``. Only the first process writes; its state travels in the checkpoint, so
    that a run killed at any moment resumes from its last checkpoint to the same files.

    ``describe`` holds what summary.json says about how the run was made (precision, image
    sizes, ...), merged into every summary it writes."""

    def __init__(self, run_dir: Path, config: Config, describe: dict):
        self.run_dir = run_dir
        self.config = config
        self.describe = describe
        self.rows: list[EpochResult] = []
        self.best: EpochResult | None = None

    def setup(self, trainer, module, stage: str) -> None:
        _die_with_launcher()

    def on_fit_start(self, trainer, module) -> None:
        # A resumed run may have been killed between an epoch's checkpoint and the pruning of
        # the kept epochs that follows it: prune to what the restored state keeps.
        if trainer.is_global_zero:
            self._prune_top()

    def on_train_start(self, trainer, module) -> None:
        # A resumed run goes on counting from the time already spent.
        self.start = time.monotonic() - (self.rows[-1].seconds if self.rows else 0.0)

    def on_validation_end(self, trainer, module: SegmentationModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:  # validate() after fit: no epoch
            return
        result = module.epoch_result.model_copy(
            update={
                "seconds": round(time.monotonic() - self.start, 1),
                "global_step": trainer.global_step,
                "world_size": trainer.world_size,
            }
        )
        self.rows.append(result)
        improved = self.best is None or result.val_dice_tuned > self.best.val_dice_tuned
        if improved:
            self.best = result
        if trainer.is_global_zero:
            self._write_metrics(module.class_names)
            refresh_curves(self.run_dir)
            self._keep_top(module, result)
            if improved:
                save_weights(self.run_dir, module.model)
                save_thresholds(self.run_dir, module, self.config.train.tune_postprocess)
                rundir.save_summary(self.run_dir, self.summary(result))
        budget = self.config.train.max_minutes
        if budget is not None and result.seconds * (1 + 1 / len(self.rows)) > budget * 60:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, module) -> None:
        trainer.save_checkpoint(self.run_dir / rundir.RESUME, weights_only=False)  # full state, to resume
        if trainer.is_global_zero:
            self._prune_top()

    def summary(self, result: EpochResult) -> RunSummary:
        return RunSummary(**result.model_dump(), **self.describe)

    def _keep_top(self, module: SegmentationModule, result: EpochResult) -> None:
        """With train.average_best = k, keep the weights of the k best epochs on disk (they
        survive a crash with the resume checkpoint); averaged when training ends. An epoch's
        weights are written at its validation, but the ones it displaces are removed only once
        its checkpoint is written (``_prune_top``): killed in between, the run replays the
        epoch from the previous checkpoint, whose kept epochs must all still be there."""
        if self.config.train.average_best >= 2 and result.epoch in self.kept_epochs():
            save_weights(self.run_dir / rundir.TOP_DIR / f"epoch-{result.epoch:04d}", module.model)

    def kept_epochs(self) -> set[int]:
        """The epochs among the k best so far (ties: the earlier epoch)."""
        ranked = sorted(self.rows, key=lambda row: row.val_dice_tuned, reverse=True)
        return {row.epoch for row in ranked[: self.config.train.average_best]}

    def _prune_top(self) -> None:
        kept = self.kept_epochs()
        for path in (self.run_dir / rundir.TOP_DIR).glob("epoch-*"):
            if epoch_of(path) not in kept:
                shutil.rmtree(path)

    def state_dict(self) -> dict:
        return {"rows": [row.model_dump() for row in self.rows], "best": self.best.model_dump() if self.best else None}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [EpochResult.model_validate(row) for row in state["rows"]]
        self.best = EpochResult.model_validate(state["best"]) if state["best"] else None

    def _write_metrics(self, class_names: list[str]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS + [f"val_dice_tuned_{name}" for name in class_names] + SCREENING_COLUMNS)
        for row in self.rows:
            values = row.model_dump()
            screening = row.screening
            aucs = [a for a in screening.auc if a is not None] if screening else []
            extra = [float(np.mean(aucs)) if aucs else None, screening.screened_out if screening else None]
            writer.writerow(
                [_fmt(values[c]) for c in METRIC_COLUMNS] + [_fmt(v) for v in row.val_class_dice_tuned + extra]
            )
        write_text(self.run_dir / rundir.METRICS, buffer.getvalue())


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar, counting epochs from 1 as metrics.csv, summary.json and --resume do."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but a kill mid-write leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def save_thresholds(run_dir: Path, module: SegmentationModule, tuned: bool) -> None:
    """postprocess.json (pixel outputs only) and gate.json: tuned on this validation, or the
    config's defaults with train.tune_postprocess off."""
    if module.tuned_postprocess is not None:
        rundir.save_postprocess(run_dir, module.tuned_postprocess if tuned else module.default_postprocess)
    screening = module.epoch_result.screening
    rundir.save_gate(run_dir, screening.screen_threshold if tuned else module.default_screen_threshold)


def _die_with_launcher() -> None:
    """In a worker that ddp_spawn started: have Linux kill it when the launching process dies.
    Otherwise a SIGKILLed ``steelseg train`` leaves its workers training on, still writing the
    run folder, while a ``--resume`` starts another run in it."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent.pid:  # the launcher died before we asked
        os._exit(1)


def epoch_of(path: Path) -> int:
    """``top/epoch-0007`` -> 7 (1-based, like every epoch shown to people)."""
    return int(path.name.split("-")[1])


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
