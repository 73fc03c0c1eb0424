"""train.loggers: Lightning's CSV, TensorBoard and MLflow loggers, offline, beside the run's own
metrics.csv; the values they hold are the run's."""

import csv

import pytest

from steelseg.config import ConfigError, load_config
from steelseg.files import synth
from steelseg.pipeline.plan import as_overrides
from steelseg.training.fit import train
from steelseg.training.loggers import MLFLOW_RUN_ID, make_loggers
from tiny_runs import TINY_SETTINGS

TINY = as_overrides({key: value for key, value in TINY_SETTINGS.items() if key != "train.oof_tta"})


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    synth.write_dataset(root / "data", 6, seed=2, height=64, width=256, progress=False)
    overrides = [*TINY, "train.epochs=2", f"data.root={root / 'data'}", "train.loggers=[csv, tensorboard, mlflow]"]
    train(load_config(None, overrides), root / "run", progress=False)
    return root / "run"


def _val_dice(run):
    with open(run / "metrics.csv", newline="") as handle:
        return [float(row["val_dice"]) for row in csv.DictReader(handle)]


def test_each_tracker_holds_the_run_s_validation_dice(tracked):
    from mlflow.tracking import MlflowClient

    expected = _val_dice(tracked)
    assert len(expected) == 2
    with open(tracked / "lightning" / "metrics.csv", newline="") as handle:
        logged = [float(row["val_dice"]) for row in csv.DictReader(handle) if row.get("val_dice")]
    assert logged == pytest.approx(expected, abs=1e-6)
    assert list((tracked / "tensorboard").glob("events.out.tfevents.*"))
    client = MlflowClient(tracking_uri=(tracked / "mlruns").absolute().as_uri())
    run_id = (tracked / MLFLOW_RUN_ID).read_text().strip()
    history = sorted(client.get_metric_history(run_id, "val_dice"), key=lambda m: m.step)
    assert [m.value for m in history] == pytest.approx(expected, abs=1e-6)
    params = client.get_run(run_id).data.params
    assert params["train.epochs"] == "2" and params["model.encoder_name"] == "tu-test_resnet"


def test_a_resumed_run_logs_into_the_same_mlflow_run(tracked):
    config = load_config(tracked / "config.yaml")
    first = (tracked / MLFLOW_RUN_ID).read_text().strip()
    mlflow_only = config.model_copy(update={"train": config.train.model_copy(update={"loggers": ["mlflow"]})})
    (again,) = make_loggers(mlflow_only, tracked)
    assert again.run_id == first


def test_a_tracker_that_is_not_installed_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    config = load_config(None, ["train.loggers=[mlflow]"])
    with pytest.raises(ConfigError, match="train.loggers: mlflow needs the mlflow package"):
        make_loggers(config, tmp_path)


def test_no_tracker_unless_asked_and_one_asked_for_must_be_installed(tmp_path, monkeypatch):
    import importlib.util

    config = load_config(None, [])
    assert config.train.loggers is None and make_loggers(config, tmp_path) == []  # fast by default
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "tensorboard" in name else real(name, *a))
    with pytest.raises(ConfigError, match="tensorboard needs the tensorboard package"):
        make_loggers(load_config(None, ["train.loggers=[tensorboard]"]), tmp_path)
