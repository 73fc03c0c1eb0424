"""``train`` and ``resume``: from a config to a self-describing run directory."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import lightning as L
import torch

from steelseg.config import Config, ConfigError, load_config, revalidate
from steelseg.errors import OutputExistsError
from steelseg.files import rundir
from steelseg.files.atomic import atomic_path, leftovers, write_text
from steelseg.files.datasets import SegmentationDataset, open_configured, open_pseudo
from steelseg.files.rundir import Averaged, RunSummary, ShapeRange
from steelseg.hardware import cuda_available, resolve_precision
from steelseg.models.weights import read_checkpoint, read_weights, save_weights
from steelseg.training.averaging import average_state_dicts
from steelseg.training.data import loaders, warn_if_no_defects, write_skipped
from steelseg.training.loggers import make_loggers
from steelseg.training.module import SegmentationModule
from steelseg.training.oof import save_oof
from steelseg.training.splits import train_val_sets
from steelseg.training.writer import AtomicCheckpointIO, EpochProgressBar, RunDirWriter, epoch_of, save_thresholds


def train(config: Config, run_dir: str | os.PathLike, progress: bool = True) -> RunSummary:
    """Train on ``config.data.root``, validate on a held-out split, fill ``run_dir``.

    Returns the summary of the best epoch (also in ``run_dir/summary.json``). A folder whose
    earlier run never finished an epoch is started again; one with a finished epoch is not
    touched (resume it, or choose another folder).
    """
    run_dir = Path(run_dir)
    if rundir.has_finished_epoch(run_dir):
        raise OutputExistsError(f"{run_dir} already holds a run; choose another output folder (or --resume it)")
    _check_not_foreign(run_dir)
    dataset = open_configured(config.data, progress)  # data.skip_bad: decodes every image, prints what it leaves out
    pseudo = []
    for _, stage in config.stage_configs():
        pseudo += open_pseudo(
            stage.data, dataset, scan=False
        )  # a bad pseudo folder fails now, before the run folder exists
    warn_if_no_defects([dataset, *pseudo], config.data.classes)
    # Names resolved once (a mask folder without names is scanned for them): later opens of
    # this run's data, on resume or in later stages, find them in the config.
    config = config.model_copy(update={"data": config.data.model_copy(update={"class_names": dataset.class_names})})
    config = rundir.absolute_paths(revalidate(config))  # re-checked with the names known
    _clear_unfinished(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.stages:
        return _train_stages(config, dataset, run_dir, progress)
    rundir.save_config(run_dir, config)
    return _fit(config, dataset, run_dir, progress, resume_from=None)


def _check_not_foreign(run_dir: Path) -> None:
    """A config.yaml or recipe.yaml that steelseg did not write is the user's: never replaced.
    steelseg writes only resolved configs (class names known, data.root absolute); a file that
    merely loads as a config, such as the one passed to --config, is not one of them."""
    for name in (rundir.CONFIG, rundir.RECIPE):
        if (run_dir / name).is_file():
            try:
                data = load_config(run_dir / name).data
                written = bool(data.class_names) and data.root is not None and Path(data.root).is_absolute()
            except ConfigError:
                written = False
            if not written:
                raise OutputExistsError(
                    f"{run_dir / name} exists and is not a steelseg run's; choose another output folder"
                )


def _clear_unfinished(run_dir: Path) -> None:
    """Remove what an earlier attempt that never finished an epoch left behind: a first epoch
    killed after its validation but before its checkpoint leaves weights and a summary, which
    no resume can continue from."""
    names = (
        rundir.CONFIG,
        rundir.RECIPE,
        rundir.METRICS,
        rundir.CURVES,
        rundir.POSTPROCESS,
        rundir.GATE,
        rundir.WEIGHTS,
        rundir.WEIGHTS_SHA256,
        rundir.SUMMARY,
        rundir.OOF,
    )
    for name in names:
        (run_dir / name).unlink(missing_ok=True)
    for name in (rundir.STAGES_DIR, rundir.TOP_DIR, rundir.TENSORBOARD_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    _remove_leftovers(run_dir)


def _remove_leftovers(run_dir: Path) -> None:
    """Temporary files of writes that a kill cut short (a checkpoint, weights, ...)."""
    for folder in (run_dir, *(run_dir / rundir.TOP_DIR).glob("epoch-*")):
        for path in leftovers(folder):
            path.unlink(missing_ok=True)


def _train_stages(config: Config, dataset: SegmentationDataset, run_dir: Path, progress: bool) -> RunSummary:
    """Each stage in ``run_dir/stages/<n-name>`` from the previous stage's best weights; the
    last stage's model becomes the run's. ``recipe.yaml`` keeps the whole multi-stage config.
    Run again on the same folder (``--resume``), finished stages are skipped and an
    interrupted one continues from its checkpoint."""
    _remove_leftovers(run_dir)  # each stage's own are removed when it starts
    if not (run_dir / rundir.RECIPE).exists():
        write_text(run_dir / rundir.RECIPE, config.to_yaml())
    previous, summaries = None, {}
    for name, stage in config.stage_configs():
        if previous is not None:
            stage = stage.model_copy(update={"model": stage.model.model_copy(update={"init_from": str(previous)})})
        stage_dir = run_dir / rundir.STAGES_DIR / name
        if (stage_dir / rundir.FINISHED).exists():
            summaries[name] = rundir.load_summary(stage_dir)
        elif (stage_dir / rundir.RESUME).exists():
            summaries[name] = _fit(stage, dataset, stage_dir, progress, resume_from=stage_dir / rundir.RESUME)
        else:
            _clear_unfinished(stage_dir)  # killed before its first checkpoint: start it again
            stage_dir.mkdir(parents=True, exist_ok=True)
            rundir.save_config(stage_dir, stage)
            summaries[name] = _fit(stage, dataset, stage_dir, progress, resume_from=None)
        previous = stage_dir
    for file in (rundir.CONFIG, rundir.WEIGHTS, rundir.WEIGHTS_SHA256, rundir.POSTPROCESS, rundir.GATE):
        if (previous / file).is_file():
            with atomic_path(run_dir / file) as tmp:
                shutil.copyfile(previous / file, tmp)
    summary = summaries[name].model_copy(update={"stages": summaries})
    rundir.save_summary(run_dir, summary)
    write_text(run_dir / rundir.FINISHED, "")  # the run's own files are complete too
    return summary


def resume_point(run_dir: str | os.PathLike) -> str:
    """Where a resumed run continues, in words; fails clearly when there is nothing to resume."""
    run_dir = Path(run_dir)
    if (run_dir / rundir.RECIPE).exists():
        for name, stage in load_config(run_dir / rundir.RECIPE).stage_configs():
            stage_dir = run_dir / rundir.STAGES_DIR / name
            if not (stage_dir / rundir.FINISHED).exists():
                if not (stage_dir / rundir.RESUME).exists():
                    return f"starting stage {name} at epoch 1 of {stage.train.epochs}"
                return _continuing(stage_dir, stage.train.epochs, f"stage {name}")
        if not (run_dir / rundir.FINISHED).exists():  # killed while the last stage's files were copied
            return "every stage has finished; completing the run's files"
        raise rundir.RunDirError(f"{run_dir}: every stage has finished; nothing to resume")
    if (run_dir / rundir.FINISHED).exists():
        raise rundir.RunDirError(f"{run_dir}: training has finished; nothing to resume")
    return _continuing(run_dir, rundir.load_run_config(run_dir).train.epochs)


def _continuing(run_dir: Path, epochs: int, stage: str | None = None) -> str:
    start = _next_epoch(run_dir)
    if start > epochs:  # killed after the last epoch: averaging, out-of-fold files, the finished mark
        return f"all {epochs} epochs{f' of {stage}' if stage else ''} have finished; completing the run's files"
    return f"resuming{f' {stage}' if stage else ''} at epoch {start} of {epochs}"


def _next_epoch(run_dir: Path) -> int:
    checkpoint = run_dir / rundir.RESUME
    if not checkpoint.is_file():
        raise rundir.RunDirError(
            f"{checkpoint} not found: the run never finished an epoch, so there is nothing to resume; "
            "start it again with the same `steelseg train ... --out`"
        )
    return read_checkpoint(checkpoint)["epoch"] + 2  # Lightning counts from 0


def resume(run_dir: str | os.PathLike, progress: bool = True) -> RunSummary:
    """Continue a run that stopped (or was killed) from its last finished epoch: weights,
    optimiser, schedule, epoch and the data order all carry on as if it had never stopped."""
    run_dir = Path(run_dir)
    if (run_dir / rundir.RECIPE).exists():  # multi-stage: carry on where the stages stopped
        config = load_config(run_dir / rundir.RECIPE)
        return _train_stages(config, open_configured(config.data), run_dir, progress)
    config = rundir.load_run_config(run_dir)
    resume_point(run_dir)  # fails clearly when there is nothing to resume
    return _fit(config, open_configured(config.data), run_dir, progress, resume_from=run_dir / rundir.RESUME)


def continue_run(config: Config, run_dir: str | os.PathLike, progress: bool = True) -> RunSummary:
    """Whatever brings ``run_dir`` to a finished run of ``config``: its summary when it has
    finished, a resume once it has a finished epoch, else a (new or fresh) start."""
    run_dir = Path(run_dir)
    if (run_dir / rundir.FINISHED).exists():
        return rundir.load_summary(run_dir)
    if rundir.has_finished_epoch(run_dir):
        return resume(run_dir, progress)
    return train(config, run_dir, progress)


def _fit(
    config: Config, dataset: SegmentationDataset, run_dir: Path, progress: bool, resume_from: Path | None
) -> RunSummary:
    _quiet_lightning()
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    train_set, val_set = train_val_sets(config, dataset)
    write_skipped(run_dir, config, train_set, val_set)
    train_loader, val_loader = _loaders(config, train_set, val_set, run_dir, progress)
    accelerator = _accelerator(config)
    precision = resolve_precision(config.train.precision, accelerator)
    module = SegmentationModule(config)
    describe = {
        "class_names": module.class_names,
        "task": config.model.task,
        "torch": torch.__version__,
        "precision": precision,
        "channels_last": config.train.channels_last,
        "accelerator": accelerator,
        "input_divisor": module.model.divisor,
        "train_image_shapes": ShapeRange.of(train_set.image_shapes()),
    }
    writer = RunDirWriter(run_dir, config, describe)
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=accelerator,
        devices=config.train.devices,
        strategy=config.train.strategy,
        precision=precision,
        accumulate_grad_batches=config.train.accumulate_batches,
        limit_train_batches=config.train.batches_per_epoch,
        limit_val_batches=config.train.val_batches,
        use_distributed_sampler=False,  # EpochSampler shards by rank itself
        logger=make_loggers(config, run_dir) or False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        callbacks=[writer, EpochProgressBar()] if progress else [writer],
        plugins=[AtomicCheckpointIO()],
    )
    _remove_leftovers(run_dir)
    # weights_only: the checkpoint is read without unpickling arbitrary objects.
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from, weights_only=True)
    if not (run_dir / rundir.SUMMARY).is_file():
        raise RuntimeError("training ended before its first validation; nothing was saved")
    if config.train.average_best > 1 and trainer.is_global_zero:
        _try_average(module, val_loader, run_dir, accelerator, precision)
    if config.train.oof_scale and trainer.is_global_zero:
        save_oof(run_dir, val_set, config.train.oof_scale, progress, config.train.oof_tta)
    if trainer.is_global_zero:
        write_text(run_dir / rundir.FINISHED, "")
    return rundir.load_summary(run_dir)


def _loaders(config: Config, train_set, val_set, run_dir: Path, progress: bool):
    if config.distill is None:
        return loaders(config, train_set, val_set)
    from steelseg.training.distill import distill_loaders  # the teacher's targets, cached in run_dir

    return distill_loaders(config, train_set, val_set, run_dir, progress)


def _try_average(module: SegmentationModule, val_loader, run_dir: Path, accelerator: str, precision: str) -> None:
    """Validate the average of the kept epochs; it becomes the run's model only if it scores at
    least as well as the best single epoch. summary.json records the outcome either way.

    Everything comes from the run folder, not from the training processes: under ddp_spawn
    they have exited with their state, and a run resumed after its last epoch (killed while
    averaging) trains nothing. Run again, it gives the same result."""
    top = sorted((run_dir / rundir.TOP_DIR).glob("epoch-*"))  # exactly the kept epochs: see RunDirWriter
    if len(top) < 2:
        return
    summary = rundir.load_summary(run_dir)  # the best single epoch's, whatever an earlier attempt added
    module.model.load_state_dict(average_state_dicts([read_weights(path / rundir.WEIGHTS) for path in top]))
    averaged = _validate(module, val_loader, accelerator, precision)
    used = averaged >= summary.val_dice_tuned
    summary = summary.model_copy(
        update={"averaged": Averaged(epochs=[epoch_of(p) for p in top], val_dice_tuned=averaged, used=used)}
    )
    if used:
        save_weights(run_dir, module.model)
        save_thresholds(run_dir, module, module.config.train.tune_postprocess)
    rundir.save_summary(run_dir, summary)


def _validate(module: SegmentationModule, val_loader, accelerator: str, precision: str) -> float:
    """The tuned validation Dice of the module's weights, computed in this process on one
    device (every training process validates the whole split, so one sees what all saw)."""
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        limit_val_batches=module.config.train.val_batches,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    trainer.validate(module, val_loader, verbose=False)
    return module.epoch_result.val_dice_tuned


def _accelerator(config: Config) -> str:
    """ "cpu" or "cuda": what the precision is resolved for and summary.json records."""
    accelerator = config.train.accelerator
    if accelerator == "auto":
        return "cuda" if cuda_available() else "cpu"
    return "cuda" if accelerator == "gpu" else accelerator


def _quiet_lightning() -> None:
    # Lightning's start-up banner (accelerator lines, a cloud-logging advert) and a deprecation
    # inside Lightning itself say nothing about this run; real warnings still show.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=Warning)
    # short epochs log once per epoch anyway: the trackers' step interval is not the user's concern
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval", category=Warning)
