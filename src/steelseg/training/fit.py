"""``train`` and ``resume``: from a config to a self-describing run directory."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from steelseg import rundir
from steelseg.atomic import atomic_path, write_text
from steelseg.config import Config, load_config
from steelseg.datasets import SegmentationDataset, open_configured, split_indices
from steelseg.folds import read_folds, split_by_fold
from steelseg.training.averaging import average_state_dicts
from steelseg.training.data import TorchSegmentationData
from steelseg.training.module import SegmentationModule
from steelseg.training.oof import save_oof
from steelseg.training.sampling import EpochSampler, balanced_weights

RESUME = "resume.ckpt"
TOP_DIR = "top"
RECIPE = "recipe.yaml"
FINISHED = "finished"  # written when a run's training loop has ended normally
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
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:  # validate() after fit: no epoch
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
            self._keep_top(module, result)
            if improved:
                rundir.save_weights(self.run_dir, module.model)
                tuned = self.config.train.tune_postprocess
                rundir.save_postprocess(self.run_dir, postprocess if tuned else module.default_postprocess)
                rundir.save_summary(self.run_dir, _summary(result, module.class_names))
        budget = self.config.train.max_minutes
        if budget is not None and result["seconds"] * (1 + 1 / len(self.rows)) > budget * 60:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, module) -> None:
        trainer.save_checkpoint(self.run_dir / RESUME, weights_only=False)  # full state, to resume

    def _keep_top(self, module: SegmentationModule, result: dict) -> None:
        """With train.average_best = k, keep the weights of the k best epochs on disk (they
        survive a crash with the resume checkpoint); averaged when training ends."""
        k = self.config.train.average_best
        if k < 2:
            return
        ranked = sorted(self.rows, key=lambda row: row["val_dice_tuned"], reverse=True)
        keep = {row["epoch"] for row in ranked[:k]}
        if result["epoch"] in keep:
            rundir.save_weights(self.run_dir / TOP_DIR / f"epoch-{result['epoch']:04d}", module.model)
        for path in (self.run_dir / TOP_DIR).glob("epoch-*"):
            if _epoch_of(path) not in keep:
                shutil.rmtree(path)

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
    if (run_dir / rundir.CONFIG).exists() or (run_dir / RECIPE).exists():
        raise FileExistsError(f"{run_dir} already holds a run; choose another output folder (or --resume it)")
    dataset = open_configured(config.data)
    # Names resolved once (a mask folder without names is scanned for them): later opens of
    # this run's data, on resume or in later stages, find them in the config.
    config = config.model_copy(update={"data": config.data.model_copy(update={"class_names": dataset.class_names})})
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.data.classes:  # now that the names are known
        config = Config.model_validate(config.model_dump())
    if config.stages:
        return _train_stages(config, dataset, run_dir, progress)
    rundir.save_config(run_dir, config)
    return _fit(config, dataset, run_dir, progress, resume_from=None)


def _train_stages(config: Config, dataset: SegmentationDataset, run_dir: Path, progress: bool) -> dict:
    """Each stage in ``run_dir/stages/<n-name>`` from the previous stage's best weights; the
    last stage's model becomes the run's. ``recipe.yaml`` keeps the whole multi-stage config.
    Run again on the same folder (``--resume``), finished stages are skipped and an
    interrupted one continues from its checkpoint."""
    if not (run_dir / RECIPE).exists():
        write_text(run_dir / RECIPE, config.to_yaml())
    previous, summaries = None, {}
    for name, stage in config.stage_configs():
        if previous is not None:
            stage = stage.model_copy(update={"model": stage.model.model_copy(update={"init_from": str(previous)})})
        stage_dir = run_dir / "stages" / name
        if (stage_dir / FINISHED).exists():
            summaries[name] = json.loads((stage_dir / rundir.SUMMARY).read_text())
        elif (stage_dir / RESUME).exists():
            summaries[name] = _fit(stage, dataset, stage_dir, progress, resume_from=stage_dir / RESUME)
        else:
            stage_dir.mkdir(parents=True, exist_ok=True)
            rundir.save_config(stage_dir, stage)
            summaries[name] = _fit(stage, dataset, stage_dir, progress, resume_from=None)
        previous = stage_dir
    for file in (rundir.CONFIG, rundir.WEIGHTS, rundir.POSTPROCESS):
        with atomic_path(run_dir / file) as tmp:
            shutil.copyfile(previous / file, tmp)
    summary = dict(summaries[name], stages=summaries)
    rundir.save_summary(run_dir, summary)
    return summary


def resume_point(run_dir: str | os.PathLike) -> str:
    """Where a resumed run continues, in words; fails clearly when there is nothing to resume."""
    run_dir = Path(run_dir)
    if (run_dir / RECIPE).exists():
        for name, stage in load_config(run_dir / RECIPE).stage_configs():
            stage_dir = run_dir / "stages" / name
            if not (stage_dir / FINISHED).exists():
                start = _next_epoch(stage_dir) if (stage_dir / RESUME).exists() else 1
                return f"resuming stage {name} at epoch {start} of {stage.train.epochs}"
        raise rundir.RunDirError(f"{run_dir}: every stage has finished; nothing to resume")
    if (run_dir / FINISHED).exists():
        raise rundir.RunDirError(f"{run_dir}: training has finished; nothing to resume")
    return f"resuming at epoch {_next_epoch(run_dir)} of {rundir.load_run_config(run_dir).train.epochs}"


def _next_epoch(run_dir: Path) -> int:
    checkpoint = run_dir / RESUME
    if not checkpoint.is_file():
        raise rundir.RunDirError(f"{checkpoint} not found: the run has no finished epoch to resume from")
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"] + 2


def resume(run_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Continue a run that stopped (or was killed) from its last finished epoch: weights,
    optimiser, schedule, epoch and the data order all carry on as if it had never stopped."""
    run_dir = Path(run_dir)
    if (run_dir / RECIPE).exists():  # multi-stage: carry on where the stages stopped
        config = load_config(run_dir / RECIPE)
        return _train_stages(config, open_configured(config.data), run_dir, progress)
    config = rundir.load_run_config(run_dir)
    resume_point(run_dir)  # fails clearly when there is nothing to resume
    return _fit(config, open_configured(config.data), run_dir, progress, resume_from=run_dir / RESUME)


def _fit(config: Config, dataset: SegmentationDataset, run_dir: Path, progress: bool, resume_from: Path | None) -> dict:
    _quiet_lightning()
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    data = config.data
    if data.classes:
        dataset = dataset.select_classes(data.classes)
    train_index, val_index = _split(config, dataset)
    train_loader, val_loader = _loaders(config, dataset.subset(train_index), dataset.subset(val_index))
    writer = RunDirWriter(run_dir, config)
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        strategy=config.train.strategy,
        precision=_precision(config),
        accumulate_grad_batches=config.train.accumulate_batches,
        limit_train_batches=config.train.batches_per_epoch,
        limit_val_batches=config.train.val_batches,
        use_distributed_sampler=False,  # EpochSampler shards by rank itself
        logger=_tensorboard(run_dir),
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        callbacks=[writer],
        plugins=[AtomicCheckpointIO()],
    )
    module = SegmentationModule(config)
    # weights_only: the checkpoint is read without unpickling arbitrary objects.
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from, weights_only=True)
    summary_path = run_dir / rundir.SUMMARY
    if not summary_path.is_file():
        raise RuntimeError("training ended before its first validation; nothing was saved")
    if config.train.average_best > 1 and trainer.is_global_zero:
        _try_average(trainer, module, val_loader, run_dir, writer.best)
    if config.train.oof_scale and trainer.is_global_zero:
        save_oof(run_dir, dataset.subset(val_index), config.train.oof_scale, progress)
    if trainer.is_global_zero:
        write_text(run_dir / FINISHED, "")
    return json.loads(summary_path.read_text())


def _try_average(trainer: L.Trainer, module: SegmentationModule, val_loader, run_dir: Path, best: dict) -> None:
    """Validate the average of the kept epochs; it becomes the run's model only if it scores at
    least as well as the best single epoch. summary.json records the outcome either way."""
    top = sorted((run_dir / TOP_DIR).glob("epoch-*"))
    if len(top) < 2:
        return
    summary = json.loads((run_dir / rundir.SUMMARY).read_text())
    states = [load_file(str(path / rundir.WEIGHTS)) for path in top]
    module.model.load_state_dict(average_state_dicts(states))
    trainer.validate(module, val_loader, verbose=False)
    result = module.epoch_result
    used = result["val_dice_tuned"] >= best["val_dice_tuned"]
    summary["averaged"] = {"epochs": [_epoch_of(p) for p in top], "val_dice_tuned": result["val_dice_tuned"], "used": used}
    if used:
        rundir.save_weights(run_dir, module.model)
        rundir.save_postprocess(run_dir, result["tuned_postprocess"])
    rundir.save_summary(run_dir, summary)


def _epoch_of(path: Path) -> int:
    """``top/epoch-0007`` -> 7."""
    return int(path.name.split("-")[1])


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


def _tensorboard(run_dir: Path):
    """Lightning's TensorBoard logger into ``run_dir/tensorboard`` when tensorboard is
    installed (it is not a dependency); metrics.csv is written either way."""
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        return False
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")


def _precision(config: Config) -> str:
    """fp16 autocast needs a GPU; on a CPU a "16-mixed" recipe runs in bf16, its CPU twin."""
    precision = config.train.precision
    on_cpu = config.train.accelerator == "cpu" or not torch.cuda.is_available()
    return "bf16-mixed" if precision == "16-mixed" and on_cpu else precision


def _quiet_lightning() -> None:
    # Lightning's start-up banner (accelerator lines, a cloud-logging advert) and a deprecation
    # inside Lightning itself say nothing about this run; real warnings still show.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=Warning)


def _summary(result: dict, class_names: list[str]) -> dict:
    return dict(result, class_names=class_names, torch=torch.__version__)


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
