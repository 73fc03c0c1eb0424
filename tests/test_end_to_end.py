"""The minimal real path, tiny: synth -> train -> run directory -> predict -> submission -> score."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from steelseg import rundir, synth
from steelseg.annotations import read_annotations
from steelseg.cli import main
from steelseg.config import load_config
from steelseg.predictor import Predictor
from steelseg.training.fit import train

TINY = [
    "model.encoder_name=tu-test_resnet",
    "model.arch_params={decoder_channels: [16, 16, 8, 8, 8]}",
    "data.crop_height=64",
    "data.crop_width=128",
    "data.batch_size=4",
    "train.epochs=2",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    for split, seed in [("train", 0), ("test", 1)]:
        synth.write_dataset(data / split, 8, seed=seed, height=64, width=320, progress=False)
    config = load_config(None, TINY + [f"data.root={data / 'train'}"])
    summary = train(config, root / "run", progress=False)
    return root, summary


def test_run_directory_describes_itself(trained):
    root, summary = trained
    run = root / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "model.safetensors", "postprocess.json", "metrics.csv", "summary.json"}
    config = rundir.load_run_config(run)
    assert config.data.class_names == synth.CLASS_NAMES  # resolved from the data
    assert config.model.encoder_name == "tu-test_resnet"
    weights = load_file(str(run / "model.safetensors"))
    assert any(k.startswith("net.encoder.") for k in weights)
    post = json.loads((run / "postprocess.json").read_text())
    assert len(post["pixel_threshold"]) == len(post["min_area"]) == 4
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,seconds,train_loss,val_loss,val_dice") and len(lines) == 3
    assert 0 <= summary["val_dice_tuned"] <= 1 and summary["val_dice_tuned"] >= summary["val_dice"] - 1e-9


def test_refuses_to_overwrite_a_run(trained):
    root, _ = trained
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(load_config(None, TINY + [f"data.root={root / 'data' / 'train'}"]), root / "run", progress=False)


def test_predictor_masks_follow_its_postprocessing(trained):
    root, _ = trained
    predictor = Predictor(root / "run")
    image = synth.make_strip(1, 0, height=64, width=320).image
    probs = predictor.predict_proba(image[None])
    assert probs.shape == (1, 4, 64, 320) and probs.dtype == np.float32
    assert 0 <= probs.min() and probs.max() <= 1
    np.testing.assert_array_equal(predictor.predict(image), predictor.postprocess(probs[0]))


def test_predict_and_score_from_the_command_line(trained, capsys):
    root, _ = trained
    test = root / "data" / "test"
    submission = root / "submission.csv"
    assert main(["predict", str(root / "run"), str(test / "train_images"), "--out", str(submission), "--quiet"]) == 0
    table = read_annotations(submission)
    assert len(table.image_ids) == 8 and len(table.lines) == 8 * 4  # every image x every class
    capsys.readouterr()
    assert main(["score", str(test / "train.csv"), str(submission), "--shape", "64", "320"]) == 0
    out = capsys.readouterr().out
    assert "mean" in out and "(8 images" in out


def test_cli_reports_bad_input_without_a_traceback(trained, capsys, tmp_path):
    root, _ = trained
    assert main(["predict", str(tmp_path), str(root / "data" / "test" / "train_images"), "--out", str(tmp_path / "s.csv")]) == 1
    assert "config.yaml not found" in capsys.readouterr().err


def test_out_of_fold_probabilities_are_saved_compactly(trained):
    from steelseg.training.oof import load_oof

    root, _ = trained
    oof = load_oof(root / "run")
    n = len(oof["image_ids"])
    assert n == 2  # 20% of 8 training strips
    assert oof["probs"].dtype == np.float16 and oof["probs"].shape == (n, 4, 16, 80)  # quarter scale
    assert oof["masks"].dtype == bool and oof["masks"].shape == oof["probs"].shape
    assert 0 <= oof["probs"].min() and oof["probs"].max() <= 1
