"""``train`` and ``resume``: from a config to a self-describing run directory."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader

from steelseg import rundir
from steelseg.atomic import atomic_path, write_text
from steelseg.config import Config
from steelseg.datasets import SegmentationDataset, open_dataset, split_indices
from steelseg.folds import read_folds, split_by_fold
from steelseg.training.oof import save_oof
from steelseg.training.data import TorchSegmentationData
from steelseg.training.module import SegmentationModule
from steelseg.training.sampling import EpochSampler, balanced_weights

RESUME = "resume.ckpt"
METRIC_COLUMNS = ["epoch", "seconds", "train_loss", "val_loss", "val_dice", "val_dice_tuned", "val_iou", "lr"]


class RunDirWriter(L.Callback):
    """After every validation: append to metrics.csv; when the tuned validation Dice is the
    best so far, write the weights, the tuned post-processing and summary.json. After every
    epoch: the resume checkpoint. Stops training before an epoch that would not finish inside
    ``max_minutes``. Only the first process writes; its state travels in the checkpoint."""

    def __init__(self, run_dir: Path, config: Config):
        self.run_dir = run_dir
        self.config = config
        self.rows: list[dict] = []
        self.best: dict | None = None

    def on_train_start(self, trainer, module) -> None:
        # A resumed run goes on counting from the time already spent.
        self.start = time.monotonic() - (self.rows[-1]["seconds"] if self.rows else 0.0)

    def on_validation_end(self, trainer, module: SegmentationModule) -> None:
        if trainer.sanity_checking:
            return
        result = dict(
            module.epoch_result,
            seconds=round(time.monotonic() - self.start, 1),
            global_step=trainer.global_step,
            world_size=trainer.world_size,
        )
        postprocess = result.pop("tuned_postprocess")
        self.rows.append(result)
        improved = self.best is None or result["val_dice_tuned"] > self.best["val_dice_tuned"]
        if improved:
            self.best = result
        if trainer.is_global_zero:
            self._write_metrics(module.class_names)
            if improved:
                rundir.save_weights(self.run_dir, module.model)
                tuned = self.config.train.tune_postprocess
                rundir.save_postprocess(self.run_dir, postprocess if tuned else module.default_postprocess)
                rundir.save_summary(self.run_dir, _summary(result, module.class_names))
        budget = self.config.train.max_minutes
        if budget is not None and result["seconds"] * (1 + 1 / len(self.rows)) > budget * 60:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, module) -> None:
        trainer.save_checkpoint(self.run_dir / RESUME)

    def state_dict(self) -> dict:
        return {"rows": self.rows, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.rows, self.best = state["rows"], state["best"]

    def _write_metrics(self, class_names: list[str]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS + [f"val_dice_tuned_{name}" for name in class_names])
        for row in self.rows:
            writer.writerow([_fmt(row[c]) for c in METRIC_COLUMNS] + [_fmt(v) for v in row["val_class_dice_tuned"]])
        write_text(self.run_dir / rundir.METRICS, buffer.getvalue())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but a kill mid-write leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def train(config: Config, run_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Train on ``config.data.root``, validate on a held-out split, fill ``run_dir``.

    Returns the summary of the best epoch (also in ``run_dir/summary.json``).
    """
    run_dir = Path(run_dir)
    if (run_dir / rundir.CONFIG).exists():
        raise FileExistsError(f"{run_dir} already holds a run; choose another output folder (or --resume it)")
    if not config.data.root:
        raise ValueError("no training data: set data.root (or pass a dataset folder)")
    data = config.data
    dataset = open_dataset(data.root, data.layout, data.class_names, data.csv_name)
    config = config.model_copy(update={"data": data.model_copy(update={"class_names": dataset.class_names})})
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.save_config(run_dir, config)
    return _fit(config, dataset, run_dir, progress, resume_from=None)


def resume_point(run_dir: str | os.PathLike) -> tuple[int, int]:
    """(the 1-based epoch a resumed run starts at, its total epochs)."""
    checkpoint = Path(run_dir) / RESUME
    if not checkpoint.is_file():
        raise rundir.RunDirError(f"{checkpoint} not found: the run has no finished epoch to resume from")
    finished = torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]
    return finished + 2, rundir.load_run_config(run_dir).train.epochs


def resume(run_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Continue a run that stopped (or was killed) from its last finished epoch: weights,
    optimiser, schedule, epoch and the data order all carry on as if it had never stopped."""
    run_dir = Path(run_dir)
    config = rundir.load_run_config(run_dir)
    checkpoint = run_dir / RESUME
    resume_point(run_dir)  # fails clearly when there is nothing to resume
    data = config.data
    dataset = open_dataset(data.root, data.layout, data.class_names, data.csv_name)
    return _fit(config, dataset, run_dir, progress, resume_from=checkpoint)


def _fit(config: Config, dataset: SegmentationDataset, run_dir: Path, progress: bool, resume_from: Path | None) -> dict:
    _quiet_lightning()
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    data = config.data
    train_index, val_index = _split(config, dataset)
    train_loader, val_loader = _loaders(config, dataset.subset(train_index), dataset.subset(val_index))
    writer = RunDirWriter(run_dir, config)
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        strategy=config.train.strategy,
        precision=config.train.precision,
        accumulate_grad_batches=config.train.accumulate_batches,
        use_distributed_sampler=False,  # EpochSampler shards by rank itself
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        callbacks=[writer],
        plugins=[AtomicCheckpointIO()],
    )
    # weights_only: the checkpoint is read without unpickling arbitrary objects.
    trainer.fit(SegmentationModule(config), train_loader, val_loader, ckpt_path=resume_from, weights_only=True)
    summary_path = run_dir / rundir.SUMMARY
    if not summary_path.is_file():
        raise RuntimeError("training ended before its first validation; nothing was saved")
    if config.train.oof_scale and trainer.is_global_zero:
        save_oof(run_dir, dataset.subset(val_index), config.train.oof_scale, progress)
    return json.loads(summary_path.read_text())


def _split(config: Config, dataset: SegmentationDataset) -> tuple[np.ndarray, np.ndarray]:
    data = config.data
    if data.folds:
        return split_by_fold(dataset.image_ids, read_folds(data.folds), data.fold)
    return split_indices(len(dataset), data.val_fraction, data.split_seed)


def _loaders(config: Config, train_set: SegmentationDataset, val_set: SegmentationDataset) -> tuple[DataLoader, DataLoader]:
    data = config.data
    train_data = TorchSegmentationData(train_set, config.model, data, seed=config.train.seed)
    weights = None
    if data.sampler == "balanced":
        weights = np.tile(balanced_weights(train_set.class_presence()), data.crops_per_image)
    sampler = EpochSampler(len(train_data), config.train.seed, weights)
    train_loader = DataLoader(
        train_data, batch_size=data.batch_size, sampler=sampler, drop_last=len(train_data) > data.batch_size,
        num_workers=data.num_workers,
    )  # fmt: skip
    # Every process validates the whole split: scores need every image, and it is small.
    val_loader = DataLoader(
        TorchSegmentationData(val_set, config.model), batch_size=max(1, data.batch_size // 2), num_workers=data.num_workers
    )
    return train_loader, val_loader


def _quiet_lightning() -> None:
    # Lightning's start-up banner (accelerator lines, a cloud-logging advert) and a deprecation
    # inside Lightning itself say nothing about this run; real warnings still show.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=Warning)


def _summary(result: dict, class_names: list[str]) -> dict:
    return dict(result, class_names=class_names, torch=torch.__version__)


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
