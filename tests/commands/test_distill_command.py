"""``steelseg distill`` end to end on a tiny synthetic set: a normal run directory that ``predict``
takes, the teacher's targets cached for exactly the training and unlabelled images; bad input is
one line naming the file or option."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.files import rundir, synth
from steelseg.files.datasets import open_configured
from steelseg.inference.predictor import Predictor
from steelseg.training.fit import train
from steelseg.training.splits import train_val_sets
from tiny_runs import TINY_NET, TINY_SETTINGS

H, W = 64, 128


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(root, data, unlabelled images, teacher run): a 1-epoch tiny teacher."""
    root = tmp_path_factory.mktemp("distill-cli")
    synth.write_dataset(root / "data", 8, seed=0, height=H, width=W, progress=False)
    synth.write_dataset(root / "more", 3, seed=7, height=H, width=W, progress=False)
    overrides = [f"{key}={json.dumps(value)}" for key, value in TINY_SETTINGS.items()] + [f"data.root={root / 'data'}"]
    train(load_config(None, overrides), root / "teacher", progress=False)
    return root, root / "data", root / "more" / "train_images", root / "teacher"


def _distill(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "steelseg", "distill", *args, *TINY_NET, "--epochs", "1", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_distill_makes_a_run_that_predict_takes(setup, tmp_path, capsys):
    root, data, unlabelled, teacher = setup
    out = tmp_path / "student"
    done = _distill(str(teacher), str(data), "--out", str(out), "--unlabelled", str(unlabelled), "--tta", "hflip")
    assert done.returncode == 0, done.stderr
    assert "best epoch 1" in done.stdout
    for name in (rundir.CONFIG, rundir.WEIGHTS, rundir.POSTPROCESS, rundir.SUMMARY, rundir.OOF, rundir.FINISHED):
        assert (out / name).is_file(), name
    config = rundir.load_run_config(out)
    assert config.distill.teacher == [str(teacher)] and config.distill.tta == "hflip"
    train_set, _ = train_val_sets(config, open_configured(config.data))
    cached = {}
    for part in ("labelled", "unlabelled"):
        for chunk in (out / rundir.TEACHER_DIR / part).glob("chunk-*.npz"):
            with np.load(chunk, allow_pickle=False) as npz:
                cached.setdefault(part, []).extend(npz["ids"].tolist())
    assert sorted(cached["labelled"]) == sorted(train_set.image_ids)  # the training side, not validation
    assert sorted(cached["unlabelled"]) == sorted(p.name for p in unlabelled.iterdir())
    assert main(["predict", str(out), str(unlabelled), "--out", str(tmp_path / "sub.csv"), "--quiet"]) == 0
    rows = (tmp_path / "sub.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 4
    assert Predictor.load([out]).class_names == Predictor.load([teacher]).class_names


def test_a_finished_distilled_run_has_nothing_to_resume(setup, tmp_path, capsys):
    root, data, _, teacher = setup
    out = tmp_path / "student"
    student = [*TINY_NET, "--set", "train.batches_per_epoch=1", "--set", "train.oof_scale=null"]
    assert main(["distill", str(teacher), str(data), "--out", str(out), "--epochs", "1", *student, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["distill", "--resume", str(out)]) == 1
    assert "training has finished; nothing to resume" in capsys.readouterr().err


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("steelseg distill: error: "), lines
    return lines[0]


def test_bad_input_is_one_line(setup, tmp_path, capsys):
    root, data, _, teacher = setup
    out = str(tmp_path / "student")
    assert "give the TEACHER" in _one_line_error(["distill", str(data), "--out", out], capsys)
    missing = str(tmp_path / "nowhere")
    assert f"{missing}: no such teacher" in _one_line_error(["distill", missing, str(data), "--out", out], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["distill", str(teacher), str(data), "--out", out, "--unlabelled", str(empty)]
    assert f"{empty}: no images found" in _one_line_error(argv, capsys)
    argv = ["distill", str(teacher), str(data), "--out", out, *TINY_NET, "--set", "data.classes=[1]", "--quiet"]
    err = _one_line_error(argv, capsys)
    assert str(teacher) in err and "the teacher predicts classes" in err and "'pits'" in err
