"""A run records its paths absolute; a file that leaves the machine carries only their last parts."""

from steelseg.config import load_config
from steelseg.files.config_paths import absolute_paths, without_machine_paths


def test_relative_paths_are_made_absolute_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = absolute_paths(
        load_config(None, ["data.root=data", "data.folds=folds.csv", "data.fold=0", "model.init_from=runs/a"])
    )
    assert config.data.root == str(tmp_path / "data")
    assert config.data.folds == str(tmp_path / "folds.csv")
    assert config.model.init_from == str(tmp_path / "runs" / "a")


def test_a_config_leaving_the_machine_names_no_folder_of_it():
    overrides = [
        "data.root=/home/ann/plant/data",
        "data.folds=/home/ann/plant/folds.csv",
        "data.fold=0",
        "model.init_from=/home/ann/runs/base",
        "distill.teacher=[/home/ann/runs/cv]",
        "distill.unlabelled=/home/ann/plant/test_images",
    ]
    config = without_machine_paths(load_config(None, overrides))
    text = config.to_yaml()
    assert "/home/ann" not in text
    assert (config.data.root, config.data.folds) == ("data", "folds.csv")
    assert (config.model.init_from, config.distill.teacher, config.distill.unlabelled) == (
        "base",
        ["cv"],
        "test_images",
    )
    pseudo = without_machine_paths(load_config(None, ["data.root=/srv/data", "data.pseudo=[/srv/pseudo1]"]))
    assert pseudo.data.pseudo == ["pseudo1"]
