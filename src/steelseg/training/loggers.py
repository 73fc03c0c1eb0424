"""Experiment trackers (``train.loggers``), each Lightning's own logger, offline by default:

    csv           RUN/lightning/metrics.csv (Lightning's CSVLogger: every logged value by step)
    tensorboard   RUN/tensorboard (event files for ``tensorboard --logdir``)
    mlflow        an MLflow file store in RUN/mlruns (``mlflow ui --backend-store-uri RUN/mlruns``),
                  or ``train.mlflow_uri`` (another file store, or a tracking server)

The run directory stays the source of truth: ``metrics.csv``, ``summary.json`` and the weights
are written whatever the trackers do. Each tracker gets the run's config as parameters; a
resumed run logs into the MLflow run it started (its id is kept in ``RUN/mlflow_run_id``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from steelseg.config import Config, ConfigError

MLFLOW_RUN_ID = "mlflow_run_id"
PACKAGES = {"csv": None, "tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}


def make_loggers(config: Config, run_dir: Path) -> list:
    """The Lightning loggers ``config.train.loggers`` names, the config logged to each; unset:
    none (metrics.csv is the record, and a tracker costs time at every step; asked for by name,
    its package must be installed)."""
    names = config.train.loggers or []
    loggers = []
    for name in dict.fromkeys(names):  # once each, in order
        packages = PACKAGES[name]
        if packages and not _installed(packages):
            raise ConfigError(f"train.loggers: {name} needs the {packages[0]} package, which is not installed")
        loggers.append(BUILDERS[name](config, run_dir))
    return loggers


def _installed(packages: tuple[str, ...]) -> bool:
    return any(importlib.util.find_spec(p) for p in packages)


def _csv(config: Config, run_dir: Path):
    from lightning.pytorch.loggers import CSVLogger

    return _with_config(CSVLogger(save_dir=str(run_dir), name="lightning", version=""), config)


def _tensorboard(config: Config, run_dir: Path):
    from lightning.pytorch.loggers import TensorBoardLogger

    from steelseg.files import rundir

    return _with_config(TensorBoardLogger(save_dir=str(run_dir), name=rundir.TENSORBOARD_DIR, version=""), config)


def _mlflow(config: Config, run_dir: Path):
    from lightning.pytorch.loggers import MLFlowLogger

    uri = config.train.mlflow_uri or (run_dir / "mlruns").absolute().as_uri()
    if uri.startswith("file:"):
        # MLflow 3 keeps its file store "in maintenance" behind this switch; it is the store that
        # needs no database or server (mlflow-skinny has no SQLite backend), so offline runs use it.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    record = run_dir / MLFLOW_RUN_ID
    previous = record.read_text().strip() if record.is_file() else None
    logger = MLFlowLogger(experiment_name="steelseg", run_name=run_dir.name, tracking_uri=uri, run_id=previous)
    if previous is not None:
        return logger  # a resume: its parameters are there already (MLflow refuses to change them)
    from steelseg.files.atomic import write_text

    write_text(record, logger.run_id + "\n")  # a resume logs into the same MLflow run
    return _with_config(logger, config)


def _with_config(logger, config: Config):
    logger.log_hyperparams(_flat(config.model_dump(mode="json")))
    return logger


BUILDERS = {"csv": _csv, "tensorboard": _tensorboard, "mlflow": _mlflow}


def _flat(values: dict, prefix: str = "") -> dict[str, object]:
    """{"train": {"lr": 0.001}} -> {"train.lr": 0.001}: trackers show flat parameters."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
