"""A run that never finished an epoch can be started again; anything else in the output
folder (a run with a finished epoch, a file steelseg did not write) is refused and left as it
was. And a run directory stores absolute paths, so it works from any working directory."""

import shutil

import pytest

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.files import rundir, synth
from steelseg.files.datasets import open_configured
from tiny_runs import tiny_cli

SETUP = tiny_cli("train.oof_scale=null")
VALIDATED = "synth_2_00003.jpg"  # the one validation image of 6 (split seed 0, 20%)
TRAINED = "synth_2_00000.jpg"


def _synth(data):
    synth.write_dataset(data, 6, seed=2, height=64, width=256, progress=False)


def _corrupt(path, how: str) -> None:
    if how == "garbage":  # not an image at all: found when the sizes are read, before training
        path.write_bytes(b"\x00 this is not an image \xff" * 20)
    else:  # a valid header, cut short: found only when the pixels are decoded, mid-epoch
        path.write_bytes(path.read_bytes()[:300])


def _run_files(run) -> set[str]:
    return {p.name for p in run.iterdir()} if run.exists() else set()


@pytest.mark.parametrize(
    "how, victim",
    [
        pytest.param("garbage", TRAINED, id="garbage-bytes"),
        pytest.param("truncated", TRAINED, id="truncated-training-image"),
        pytest.param("truncated", VALIDATED, id="truncated-validation-image"),  # after a whole training epoch
    ],
)
def test_a_run_that_failed_before_finishing_an_epoch_starts_again(tmp_path, capsys, how, victim):
    data, run = tmp_path / "data", tmp_path / "run"
    _synth(data)
    _corrupt(data / "train_images" / victim, how)
    command = ["train", str(data), "--out", str(run), *SETUP]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(data / "train_images" / victim) in err, err
    assert err.startswith("steelseg train: error: ")
    assert not _run_files(run) & {rundir.SUMMARY, rundir.RESUME, rundir.WEIGHTS, rundir.FINISHED}

    _synth(data)  # repaired
    assert main(command) == 0
    assert (run / rundir.FINISHED).exists()
    rows = (run / rundir.METRICS).read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1,")  # one epoch, counted once
    assert rundir.load_summary(run).epoch == 1


def _never_finished(tmp_path, capsys):
    """A run folder as a failed first attempt leaves it (a config.yaml, no epoch)."""
    data, run = tmp_path / "data", tmp_path / "run"
    _synth(data)
    _corrupt(data / "train_images" / TRAINED, "garbage")
    assert main(["train", str(data), "--out", str(run), *SETUP]) == 1
    assert _run_files(run) == {rundir.CONFIG}
    capsys.readouterr()
    return run


def test_resume_of_a_run_that_never_finished_an_epoch_says_to_start_it_again(tmp_path, capsys):
    run = _never_finished(tmp_path, capsys)
    assert main(["train", "--resume", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "never finished an epoch" in err and "nothing to resume" in err and "start it again" in err
    assert _run_files(run) == {rundir.CONFIG}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    _synth(root / "data")
    assert main(["train", str(root / "data"), "--out", str(root / "run"), *SETUP]) == 0
    return root


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("drop", [None, rundir.FINISHED], ids=["finished run", "interrupted after epoch 1"])
def test_a_folder_with_a_finished_epoch_is_refused_and_left_as_it_was(finished, tmp_path, capsys, drop):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    if drop:
        (run / drop).unlink()  # resume.ckpt, weights and summary remain: an epoch is done
    before = _snapshot(run)
    assert main(["train", str(finished / "data"), "--out", str(run), *SETUP]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "already holds a run" in err and str(run) in err
    assert _snapshot(run) == before


def test_resume_of_a_finished_run_is_refused(finished, capsys):
    before = _snapshot(finished / "run")
    assert main(["train", "--resume", str(finished / "run"), "--quiet"]) == 1
    assert "training has finished; nothing to resume" in capsys.readouterr().err
    assert _snapshot(finished / "run") == before


@pytest.mark.parametrize(
    "name, text",
    [
        pytest.param(rundir.CONFIG, "foo: 1\n", id="config.yaml not a config"),
        pytest.param(rundir.RECIPE, "foo: 1\n", id="recipe.yaml not a config"),
        pytest.param(rundir.CONFIG, "[1, 2]\n", id="config.yaml a list"),
        # valid settings, but not a run's: steelseg writes resolved configs (class names, absolute paths)
        pytest.param(rundir.CONFIG, "data: {batch_size: 4}\n", id="config.yaml hand-written"),
        pytest.param(rundir.CONFIG, "", id="config.yaml empty"),
    ],
)
def test_a_file_steelseg_did_not_write_is_refused_and_left_as_it_was(finished, tmp_path, capsys, name, text):
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text(text)
    (run / "notes.txt").write_text("mine")
    assert main(["train", str(finished / "data"), "--out", str(run), *SETUP]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "is not a steelseg run's" in err and str(run / name) in err
    assert _snapshot(run) == {name: text.encode(), "notes.txt": b"mine"}


def test_a_run_stores_absolute_paths_and_works_from_elsewhere(finished, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(finished / "data", "data")  # reached by relative paths only
    assert main(["folds", "data", "--out", "folds.csv", "--k", "2", "--quiet"]) == 0
    assert main(["train", "data", "--out", "run", "--folds", "folds.csv", "--fold", "0", *SETUP]) == 0
    config = load_config(tmp_path / "run" / rundir.CONFIG)
    assert config.data.root == str((tmp_path / "data").resolve())
    assert config.data.folds == str((tmp_path / "folds.csv").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert len(open_configured(rundir.load_run_config(tmp_path / "run").data)) == 6  # its data found from here
