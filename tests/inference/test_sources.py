"""Model sources: run directories, folders of runs and ensemble files, resolved into networks."""

import shutil

import numpy as np
import pytest
import yaml

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.inference.ensemble import EnsembleError
from steelseg.inference.predictor import Predictor
from steelseg.inference.sources import check_compatible, ensemble_classes, resolve


def copy_run(run, to, **data):
    """A copy of the tiny run (weights and all) with ``data`` section values changed."""
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(rundir.RESUME))
    if data:
        config = yaml.safe_load((to / rundir.CONFIG).read_text())
        config["data"].update(data)
        (to / rundir.CONFIG).write_text(yaml.safe_dump(config))
    return to


@pytest.fixture
def models(half_scale_run, tmp_path):
    """tmp/models/run (the tiny run) and tmp/models/cv/fold-{0,1} (two copies of it)."""
    run, _ = half_scale_run
    root = tmp_path / "models"
    root.mkdir()
    copy_run(run, root / "run")
    for fold in range(2):
        copy_run(run, root / "cv" / f"fold-{fold}")
    return root


def write_ensemble(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def test_a_cv_folder_is_two_networks_of_half_weight(models, half_scale_run):
    resolved = resolve([models / "cv"])
    assert [n.run_dir for n in resolved.networks] == [models / "cv" / "fold-0", models / "cv" / "fold-1"]
    assert [n.weight for n in resolved.networks] == [0.5, 0.5]
    assert [n.member for n in resolved.networks] == [0, 0]  # one entry, shared
    beside = resolve([models / "cv", models / "run"])
    assert [n.weight for n in beside.networks] == [0.5, 0.5, 1.0] and [n.member for n in beside.networks] == [0, 0, 1]


def test_a_cv_folder_of_identical_folds_predicts_like_the_run(models, half_scale_run):
    _, data = half_scale_run
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 320), dtype=np.uint8)
    single = Predictor.load([models / "run"], backend="torch", device="cpu").predict_proba(images)
    folds = Predictor.load([models / "cv", models / "run"], backend="torch", device="cpu")
    assert [m.weight for m in folds.members] == [0.5, 0.5, 1.0]
    np.testing.assert_allclose(folds.predict_proba(images), single, atol=1e-6)


def test_an_ensemble_file_resolves_paths_beside_itself(models, tmp_path, monkeypatch):
    path = write_ensemble(
        tmp_path / "ens" / "e.yaml",
        {
            "members": [
                {"run": "../models/run", "weight": 2, "tta": "hflip", "temperature": 1.5},
                {"run": "../models/cv", "tta": ["none", "vflip"], "backend": "torch"},
            ]
        },
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # paths are relative to the file, not the working folder
    networks = resolve([path]).networks
    assert [n.run_dir.resolve() for n in networks] == [
        models / "run",
        models / "cv" / "fold-0",
        models / "cv" / "fold-1",
    ]
    assert [n.weight for n in networks] == [2.0, 0.5, 0.5] and [n.member for n in networks] == [0, 1, 1]
    predictor = Predictor.load([path], backend="torch", device="cpu")
    assert [m.views for m in predictor.members] == [("none", "hflip"), ("none", "vflip"), ("none", "vflip")]
    assert [m.temperature for m in predictor.members] == [1.5, 1.0, 1.0]
    assert [m.weight for m in predictor.members] == [2.0, 0.5, 0.5]
    overridden = Predictor.load([path], backend="torch", device="cpu", tta="both")  # --tta replaces every member's
    assert [m.views for m in overridden.members] == [("none", "hflip", "vflip")] * 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("members:\n  - run: ../models/run\n    wieght: 2\n", r"members\.0\.wieght: Extra inputs are not permitted"),
        ("members:\n  - run: ../models/run\nclusterz: {}\n", r"clusterz: Extra inputs are not permitted"),
        (
            "members:\n  - run: ../models/run\n    tta: flips\n",
            r"members\.0\.tta: .*unknown TTA 'flips'; choose one of none, hflip",
        ),
        (
            "members:\n  - run: ../models/run\n  - run: ../models/run\n    tta: [none, rot90]\n",
            r"members\.1\.tta: .*each must be one of",
        ),
        ("members:\n  - run: ../models/run\n    weight: 0\n", r"members\.0\.weight: Input should be greater than 0"),
        ("members:\n  - run: ../models/run\n    weight: -2\n", r"members\.0\.weight: Input should be greater than 0"),
        (
            "members:\n  - run: ../models/run\n    temperature: 0\n",
            r"members\.0\.temperature: Input should be greater than 0",
        ),
        ("members: []\n", r"members: List should have at least 1 item"),
        ("- run: ../models/run\n", r"top level: Input should be a valid dictionary"),
        ("members: [\n", r"line 2: not valid YAML \(expected the node content"),
        ("members:\n  - run: ../models/run\n  - run: ../models/nope\n", r"members\.1\.run: .*models/nope: not found"),
        ("members:\n  - run: .\n", r"members\.0\.run: .*/ens: config\.yaml not found"),
        ("members:\n  - run: ../models/run\npostprocess: tuned.json\n", r"postprocess file .*tuned\.json not found"),
    ],
    ids=[
        "unknown member key",
        "unknown top key",
        "bad tta name",
        "bad view",
        "zero weight",
        "negative weight",
        "zero temperature",
        "no members",
        "not a mapping",
        "not yaml",
        "missing run",
        "not a run folder",
        "missing postprocess",
    ],
)
def test_ensemble_file_mistakes_are_one_line_naming_the_file_and_key(models, tmp_path, content, message):
    path = write_ensemble(tmp_path / "ens" / "e.yaml", content)
    with pytest.raises(EnsembleError, match=message) as caught:
        resolve([path])
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text


def test_ensemble_file_mistake_through_the_cli(models, tmp_path, half_scale_run, capsys):
    _, data = half_scale_run
    path = write_ensemble(tmp_path / "ens" / "e.yaml", "members:\n  - run: ../models/run\n    weight: 0\n")
    assert main(["predict", str(path), str(data / "train_images"), "--out", str(tmp_path / "s.csv"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"steelseg predict: error: {path}: members.0.weight: Input should be greater than 0\n"
    assert not (tmp_path / "s.csv").exists()


def test_members_with_different_class_lists_are_named(models, tmp_path, half_scale_run, capsys):
    _, data = half_scale_run
    other = copy_run(models / "run", tmp_path / "other", class_names=["pits", "crazing", "scratches", "rust"])
    with pytest.raises(EnsembleError) as caught:
        check_compatible(resolve([models / "run", other]).networks)
    text = str(caught.value)
    assert str(other) in text and str(models / "run") in text and "'rust'" in text and "\n" not in text
    assert (
        main(
            [
                "predict",
                str(models / "run"),
                str(other),
                str(data / "train_images"),
                "--out",
                str(tmp_path / "s.csv"),
                "--quiet",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must share one class list" in err


def test_a_lone_per_class_run_gives_its_one_class(models, tmp_path):
    binary = copy_run(models / "run", tmp_path / "class-2-crazing", classes=[2])
    assert ensemble_classes(resolve([binary]).networks) == (["crazing"], {1: 0})


def test_a_per_class_folder_gives_the_classes_its_runs_predict(models, tmp_path):
    folder = tmp_path / "per-class"
    copy_run(models / "run", folder / "class-1-pits", classes=[1])
    copy_run(models / "run", folder / "class-3-scratches", classes=[3])
    networks = resolve([folder]).networks
    assert [n.weight for n in networks] == [0.5, 0.5]
    assert ensemble_classes(networks) == (["pits", "scratches"], {0: 0, 2: 1})
    with_full = resolve([folder, models / "run"]).networks
    assert ensemble_classes(with_full) == (["pits", "crazing", "scratches", "blotches"], {0: 0, 1: 1, 2: 2, 3: 3})


def test_a_trained_per_class_folder_predicts_each_class_with_its_run(half_scale_run, tmp_path):
    """Each class is its own run's: the ensemble's class channels equal the runs' alone. The
    runs' own post-processing files (one class each) do not fit the two-class ensemble: it
    falls back to the config's defaults."""
    from steelseg.config import load_config
    from steelseg.training.fit import train

    run, _ = half_scale_run
    folder = tmp_path / "per-class"
    for class_id, name in [(1, "pits"), (3, "scratches")]:
        config = load_config(run / rundir.CONFIG, [f"data.classes=[{class_id}]"])
        train(config, folder / f"class-{class_id}-{name}", progress=False)
    predictor = Predictor.load([folder], backend="torch", device="cpu")
    assert predictor.class_names == ["pits", "scratches"]
    assert predictor.postprocess.pixel_threshold.tolist() == [0.5, 0.5]  # the config's default, not a run's tuned file
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 320), dtype=np.uint8)
    probs = predictor.predict_proba(images)
    for c, run in enumerate(["class-1-pits", "class-3-scratches"]):
        alone = Predictor.from_run_dir(folder / run, backend="torch", device="cpu").predict_proba(images)
        np.testing.assert_allclose(probs[:, c : c + 1], alone, atol=1e-6)


def test_which_post_processing_file_is_used(models, tmp_path):
    run_file = models / "run" / rundir.POSTPROCESS
    assert resolve([models / "run"]).postprocess == run_file  # a run's own
    assert resolve([models / "cv"]).postprocess == models / "cv" / "fold-0" / rundir.POSTPROCESS  # the first run's
    shutil.copy(run_file, models / "cv" / rundir.POSTPROCESS)
    assert resolve([models / "cv"]).postprocess == models / "cv" / rundir.POSTPROCESS  # the folder's own (tuned) first
    path = write_ensemble(tmp_path / "ens" / "e.yaml", {"members": [{"run": "../models/cv"}]})
    folder_file = models / "cv" / rundir.POSTPROCESS
    assert resolve([path]).postprocess.resolve() == folder_file  # none named, none beside: the first member folder's
    folder_file.unlink()
    first_run = models / "cv" / "fold-0" / rundir.POSTPROCESS
    assert resolve([path]).postprocess.resolve() == first_run  # ... and without that, its first run's
    shutil.copy(run_file, tmp_path / "ens" / rundir.POSTPROCESS)
    assert resolve([path]).postprocess == tmp_path / "ens" / rundir.POSTPROCESS  # postprocess.json beside the file
    shutil.copy(run_file, tmp_path / "ens" / "tuned.json")
    named = write_ensemble(
        tmp_path / "ens" / "n.yaml", {"members": [{"run": "../models/cv"}], "postprocess": "tuned.json"}
    )
    assert resolve([named]).postprocess == tmp_path / "ens" / "tuned.json"


def test_an_explicit_post_processing_file_and_overrides_win(models, tmp_path):
    from steelseg.core.postprocess import PostProcess

    tuned = tmp_path / "tuned.json"
    tuned.write_text(PostProcess.uniform(4, [0.3, 0.4, 0.5, 0.6], 100).to_json())
    predictor = Predictor.load(
        [models / "run"], backend="torch", device="cpu", postprocess=tuned, overrides=["min_area=[1, 2, 3, 4]"]
    )
    assert predictor.postprocess.pixel_threshold.tolist() == [0.3, 0.4, 0.5, 0.6]
    assert predictor.postprocess.min_area.tolist() == [1, 2, 3, 4]
    with pytest.raises(EnsembleError, match=r"^--post 'bogus=1': expected KEY=VALUE with KEY one of pixel_threshold"):
        Predictor.load([models / "run"], backend="torch", device="cpu", overrides=["bogus=1"])
