"""Folds on the command line, training one fold, and `--fold all` with its CV table."""

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.core.screening import ScreeningReport
from steelseg.files import synth
from steelseg.files.folds import read_folds
from steelseg.files.rundir import RunSummary
from steelseg.training.cv import cv_rows

TINY = [
    "--set",
    "model.encoder_name=tu-test_resnet",
    "--set",
    "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
    "--set",
    "data.crop_height=32",
    "--set",
    "data.crop_width=64",
    "--set",
    "data.batch_size=4",
    "--epochs",
    "1",
    "--quiet",
]


@pytest.mark.slow
def test_folds_then_train_every_fold(tmp_path, capsys):
    data = tmp_path / "data"
    synth.write_dataset(data, 9, seed=4, height=64, width=256, progress=False)
    assert main(["folds", str(data), "--k", "3", "--out", str(tmp_path / "folds.csv"), "--quiet"]) == 0
    folds = read_folds(tmp_path / "folds.csv")
    assert sorted(set(folds.values())) == [0, 1, 2] and len(folds) == 9
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                str(data),
                "--out",
                str(tmp_path / "cv"),
                "--folds",
                str(tmp_path / "folds.csv"),
                "--fold",
                "all",
                *TINY,
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["fold", "epoch", "dice", "iou"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["0", "1", "2", "mean", "std"]
    for fold in range(3):
        run = tmp_path / "cv" / f"fold-{fold}"
        assert (run / "model.safetensors").is_file() and (run / "oof.npz").is_file()
        with np.load(run / "oof.npz") as oof:  # validated on exactly this fold's images
            assert sorted(oof["image_ids"].tolist()) == sorted(i for i, f in folds.items() if f == fold)
    assert (tmp_path / "cv" / "cv.csv").read_text().count("\n") == 6


def test_cv_rows_mean_and_std():
    summaries = [
        _summary(epoch=3, val_dice_tuned=0.9, val_iou=0.5, val_class_dice_tuned=[0.8, 1.0]),
        _summary(epoch=1, val_dice_tuned=0.7, val_iou=0.3, val_class_dice_tuned=[0.6, 0.8]),
    ]
    header, rows = cv_rows(summaries, [0, 1])
    assert header == ["fold", "epoch", "dice", "iou", "auc", "dice_a", "dice_b"]
    assert rows[2][:4] == ["mean", "", 0.8, 0.4] and rows[2][5:] == [0.7, 0.9]
    assert rows[3][:4] == ["std", "", 0.1, 0.1] and rows[3][5:] == [0.1, 0.1]
    assert np.isnan(rows[2][4])  # no screening in these summaries


def test_cv_rows_of_classifiers_have_auc_and_no_iou():
    report = ScreeningReport(
        label_threshold=[0.5, 0.5],
        auc=[0.8, None],
        precision=[1.0, None],
        recall=[0.5, None],
        accuracy=[0.9, 1.0],
        positives=[2, 0],
        images=10,
        screened_out=0.6,
    )
    summaries = [
        _summary(epoch=2, val_dice_tuned=0.95, val_iou=None, val_class_dice_tuned=[0.9, 1.0], screening=report),
        _summary(
            epoch=1,
            val_dice_tuned=0.85,
            val_iou=None,
            val_class_dice_tuned=[0.7, 1.0],
            screening=report.model_copy(update={"auc": [0.6, 1.0]}),
        ),
    ]
    header, rows = cv_rows(summaries, [0, 1])
    assert rows[0][4] == 0.8 and rows[1][4] == 0.8  # mean over the classes that have an AUC
    assert np.isnan(rows[2][3]) and rows[2][2] == 0.9


def test_folds_without_a_fold_is_a_config_error(tmp_path, capsys):
    (tmp_path / "folds.csv").write_text("ImageId,Fold\na.jpg,0\n")
    assert (
        main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--set", f"data.folds={tmp_path / 'folds.csv'}"])
        == 1
    )
    assert "choose the validation fold" in capsys.readouterr().err


@pytest.mark.slow
def test_one_binary_model_per_class(tmp_path, capsys):
    data = tmp_path / "data"
    synth.write_dataset(data, 6, seed=4, height=64, width=256, progress=False)
    assert (
        main(["train", str(data), "--out", str(tmp_path / "pc"), "--per-class", "--set", "data.classes=[2, 3]", *TINY])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["class 2 crazing", "class 3 scratches"]
    assert sorted(p.name for p in (tmp_path / "pc").iterdir()) == ["class-2-crazing", "class-3-scratches"]


def test_a_finished_run_is_not_resumed(tmp_path, capsys):
    data = tmp_path / "data"
    synth.write_dataset(data, 4, seed=4, height=64, width=256, progress=False)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), *TINY]) == 0
    assert main(["train", "--resume", str(tmp_path / "run")]) == 1
    assert "training has finished; nothing to resume" in capsys.readouterr().err


def _summary(**scores) -> RunSummary:
    return RunSummary(class_names=["a", "b"], torch="x", train_loss=0.0, val_loss=0.0, val_dice=0.0, lr=0.001, **scores)
