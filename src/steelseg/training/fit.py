"""``train``: from a config to a self-describing run directory."""

from __future__ import annotations

import csv
import io
import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from steelseg import rundir
from steelseg.atomic import write_text
from steelseg.config import Config
from steelseg.datasets import open_dataset, split_indices
from steelseg.training.data import TorchSegmentationData
from steelseg.training.module import SegmentationModule

METRIC_COLUMNS = ["epoch", "seconds", "train_loss", "val_loss", "val_dice", "val_dice_tuned", "val_iou", "lr"]


class RunDirWriter(L.Callback):
    """After every validation: append to metrics.csv; when the tuned validation Dice is the
    best so far, write the weights, the tuned post-processing and summary.json. Stops training
    before an epoch that would not finish inside ``max_minutes``."""

    def __init__(self, run_dir: Path, config: Config):
        self.run_dir = run_dir
        self.config = config
        self.rows: list[dict] = []
        self.best: dict | None = None

    def on_train_start(self, trainer, module) -> None:
        self.start = time.monotonic()

    def on_validation_end(self, trainer, module: SegmentationModule) -> None:
        if trainer.sanity_checking:
            return
        result = dict(module.epoch_result, seconds=round(time.monotonic() - self.start, 1))
        self.rows.append(result)
        self._write_metrics(module.class_names)
        if self.best is None or result["val_dice_tuned"] > self.best["val_dice_tuned"]:
            self.best = result
            rundir.save_weights(self.run_dir, module.model)
            tuned = self.config.train.tune_postprocess
            rundir.save_postprocess(self.run_dir, result["tuned_postprocess"] if tuned else module.default_postprocess)
            rundir.save_summary(self.run_dir, _summary(result, module.class_names))
        budget = self.config.train.max_minutes
        if budget is not None:
            per_epoch = result["seconds"] / len(self.rows)
            if result["seconds"] + per_epoch > budget * 60:
                trainer.should_stop = True

    def _write_metrics(self, class_names: list[str]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS + [f"val_dice_tuned_{name}" for name in class_names])
        for row in self.rows:
            writer.writerow([_fmt(row[c]) for c in METRIC_COLUMNS] + [_fmt(v) for v in row["val_class_dice_tuned"]])
        write_text(self.run_dir / rundir.METRICS, buffer.getvalue())


def train(config: Config, run_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Train on ``config.data.root``, validate on a held-out split, fill ``run_dir``.

    Returns the summary of the best epoch (also in ``run_dir/summary.json``).
    """
    _quiet_lightning()
    run_dir = Path(run_dir)
    if (run_dir / rundir.CONFIG).exists():
        raise FileExistsError(f"{run_dir} already holds a run; choose another output folder")
    if not config.data.root:
        raise ValueError("no training data: set data.root (or pass a dataset folder)")
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    data = config.data
    dataset = open_dataset(data.root, data.layout, data.class_names, data.csv_name)
    config = config.model_copy(update={"data": data.model_copy(update={"class_names": dataset.class_names})})
    train_index, val_index = split_indices(len(dataset), data.val_fraction, data.split_seed)
    train_loader = DataLoader(
        TorchSegmentationData(dataset.subset(train_index), config.model, data),
        batch_size=data.batch_size, shuffle=True, drop_last=len(train_index) > data.batch_size,
        num_workers=data.num_workers, persistent_workers=data.num_workers > 0,
    )  # fmt: skip
    val_loader = DataLoader(
        TorchSegmentationData(dataset.subset(val_index), config.model),
        batch_size=max(1, data.batch_size // 2), num_workers=data.num_workers,
    )  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.save_config(run_dir, config)
    module = SegmentationModule(config)
    writer = RunDirWriter(run_dir, config)
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        precision=config.train.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        callbacks=[writer],
    )
    trainer.fit(module, train_loader, val_loader)
    if writer.best is None:
        raise RuntimeError("training ended before its first validation; nothing was saved")
    return _summary(writer.best, dataset.class_names)


def _quiet_lightning() -> None:
    # Lightning's start-up banner (accelerator lines, a cloud-logging advert) and a deprecation
    # inside Lightning itself say nothing about this run; real warnings still show.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=Warning)


def _summary(result: dict, class_names: list[str]) -> dict:
    summary = {k: v for k, v in result.items() if k != "tuned_postprocess"}
    summary["class_names"] = class_names
    summary["torch"] = torch.__version__
    return summary


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
