"""Training curves from metrics.csv: read by hand-made files, drawn as curves.png."""

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.reports import ReportError
from steelseg.reports.curves import read_metrics, refresh_curves, runs_with_metrics, write_curves

METRICS = (
    "epoch,seconds,train_loss,val_loss,val_dice,val_dice_tuned,val_iou,lr,"
    "val_dice_tuned_pits,val_dice_tuned_crazing,val_auc,screened_out\n"
    "1,10.5,0.9,0.8,0.5,0.55,0.3,0.001,0.6,0.5,,\n"
    "2,21,0.6,,0.6,0.7,0.4,0.0005,0.8,0.6,0.9,0.25\n"
)


def _run(folder, text=METRICS):
    folder.mkdir(parents=True)
    (folder / rundir.METRICS).write_text(text)
    return folder


def test_metrics_are_read_as_numbers_with_empty_cells_missing(tmp_path):
    metrics, class_names = read_metrics(_run(tmp_path / "run") / rundir.METRICS)
    assert class_names == ["pits", "crazing"]
    assert metrics["epoch"].tolist() == [1, 2]
    assert metrics["train_loss"].tolist() == [0.9, 0.6]
    assert metrics["val_loss"][0] == 0.8 and np.isnan(metrics["val_loss"][1])
    assert metrics["val_dice_tuned_pits"].tolist() == [0.6, 0.8]
    assert np.isnan(metrics["val_auc"][0])


def test_curves_png_is_written_beside_metrics(tmp_path):
    run = _run(tmp_path / "run")
    path = write_curves(run)
    assert path == run / rundir.CURVES == run / "curves.png"
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch,train_loss\n1,abc\n", ":2: column train_loss: 'abc' is not a number"),
        ("train_loss\n1\n", ":1: expected a header with an epoch column"),
        ("epoch,train_loss\n1\n", ":2: expected 2 columns, got 1"),
        ("epoch,train_loss\n", "no epoch has finished yet"),
    ],
)
def test_bad_metrics_name_the_file_and_line(tmp_path, text, message):
    run = _run(tmp_path / "run", text)
    with pytest.raises(ReportError, match=message):
        write_curves(run)


def test_refresh_warns_instead_of_failing(tmp_path):
    with pytest.warns(UserWarning, match="curves.png not drawn"):
        refresh_curves(tmp_path)  # no metrics.csv: a warning, never an exception


def test_every_run_beneath_a_folder_gets_its_curves(tmp_path, capsys):
    for fold in ("fold-0", "fold-1"):
        _run(tmp_path / "cv" / fold)
    assert runs_with_metrics(tmp_path / "cv") == [tmp_path / "cv" / "fold-0", tmp_path / "cv" / "fold-1"]
    assert main(["report-curves", str(tmp_path / "cv")]) == 0
    assert capsys.readouterr().out.count("wrote") == 2
    assert all((tmp_path / "cv" / fold / "curves.png").is_file() for fold in ("fold-0", "fold-1"))


def test_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert main(["report-curves", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no metrics.csv" in err and str(tmp_path) in err
