"""The same seed and config give the same bytes in two separate processes: synthetic data,
folds, trained weights (CPU, fp32) and predictions.

The two processes differ in everything that should not matter: working directory, output
paths, and Python's string-hash seed (PYTHONHASHSEED), which reorders sets and so catches any
result that depends on iterating one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steelseg.files import rundir
from tiny_runs import tiny_cli

HASH_SEEDS = ("1", "2")
TRAIN = tiny_cli(
    "data.crops_per_image=2",
    "data.sampler=balanced",
    "train.mixup_alpha=0.4",
    "data.num_workers=2",  # worker processes draw augmentations too
    "train.batches_per_epoch=6",
    epochs=2,
)


def _steelseg(args: list[str], cwd: Path, hash_seed: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1", PYTHONHASHSEED=hash_seed)
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "steelseg", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"steelseg {' '.join(args)} failed:\n{result.stderr[-3000:]}"


def _in_both(tmp_path: Path, args) -> tuple[Path, Path]:
    """Run ``args(folder)`` once in each of two processes, each in its own folder."""
    folders = tmp_path / "a", tmp_path / "b"
    for folder, hash_seed in zip(folders, HASH_SEEDS):
        _steelseg(args(folder), folder, hash_seed)
    return folders


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth_twice(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("determinism")
    return _in_both(root, lambda folder: ["synth", str(folder / "data"), "--n", "10", "--seed", "7", "--quiet"])


def test_synthetic_data_is_the_same_bytes(synth_twice):
    a, b = (_tree(folder / "data") for folder in synth_twice)
    assert len(a) == 12  # 10 images, train.csv, classes.json
    assert a == b


def test_folds_are_the_same_bytes(synth_twice, tmp_path):
    data = synth_twice[0] / "data"  # one dataset: the folds alone are on trial
    a, b = _in_both(
        tmp_path,
        lambda folder: ["folds", str(data), "--out", str(folder / "folds.csv"), "--k", "3", "--seed", "5", "--quiet"],
    )
    assert (a / "folds.csv").read_bytes() == (b / "folds.csv").read_bytes()
    assert len((a / "folds.csv").read_text().splitlines()) == 11


@pytest.mark.slow
def test_training_and_predictions_are_the_same(synth_twice):
    """Each process trains on its own copy of the data (other paths) and predicts with its own run."""
    for folder, hash_seed in zip(synth_twice, HASH_SEEDS):
        data, run = folder / "data", folder / "run"
        _steelseg(["train", str(data), "--out", str(run), *TRAIN], folder, hash_seed)
        predict = [
            "predict",
            str(run),
            str(data / "train_images"),
            "--out",
            "submission.csv",
            "--scores",
            "scores.csv",
            "--device",
            "cpu",
        ]
        _steelseg([*predict, "--quiet"], folder, hash_seed)
    a, b = (folder / "run" for folder in synth_twice)
    weights_a, weights_b = load_file(a / rundir.WEIGHTS), load_file(b / rundir.WEIGHTS)
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key  # bit for bit
    assert (a / rundir.WEIGHTS).read_bytes() == (b / rundir.WEIGHTS).read_bytes()
    last_a, last_b = (
        torch.load(r / rundir.RESUME, map_location="cpu", weights_only=True)["state_dict"] for r in (a, b)
    )
    assert all(torch.equal(last_a[key], last_b[key]) for key in last_a)  # the last epoch too, not only the best
    for name in (rundir.POSTPROCESS, rundir.GATE):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    drop_seconds = lambda path: [row.split(",")[:1] + row.split(",")[2:] for row in path.read_text().splitlines()]  # noqa: E731
    assert drop_seconds(a / rundir.METRICS) == drop_seconds(b / rundir.METRICS)
    for name in ("submission.csv", "scores.csv"):
        first, second = ((folder / name).read_bytes() for folder in synth_twice)
        assert first == second, name
        assert first.count(b"\n") > 10, name  # a file with predictions, not an empty one
