"""The minimal real path, tiny: synth -> train -> run directory -> predict -> submission -> score."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.files import rundir, synth
from steelseg.files.annotations import read_annotations
from steelseg.inference.predictor import Predictor
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
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "model.safetensors",
        "postprocess.json",
        "metrics.csv",
        "summary.json",
    }
    config = rundir.load_run_config(run)
    assert config.data.class_names == synth.CLASS_NAMES  # resolved from the data
    assert config.model.encoder_name == "tu-test_resnet"
    weights = load_file(str(run / "model.safetensors"))
    assert any(k.startswith("net.encoder.") for k in weights)
    post = json.loads((run / "postprocess.json").read_text())
    assert len(post["pixel_threshold"]) == len(post["min_area"]) == 4
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,seconds,train_loss,val_loss,val_dice") and len(lines) == 3
    assert (run / rundir.CURVES).read_bytes()[:4] == b"\x89PNG"  # redrawn from metrics.csv after every validation
    assert 0 <= summary.val_dice_tuned <= 1 and summary.val_dice_tuned >= summary.val_dice - 1e-9
    # epochs shown to people count from 1: the two rows of a 2-epoch run are epochs 1 and 2
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"] and summary.epoch in (1, 2)
    recorded = json.loads((run / "summary.json").read_text())
    assert recorded["precision"] in ("bf16-mixed", "32-true") and recorded["channels_last"] is True
    assert recorded["train_image_shapes"]["min"] == [64, 320]
    assert config.data.root == str((root / "data" / "train").resolve())  # stored absolute


def test_refuses_to_overwrite_a_run(trained):
    root, _ = trained
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(load_config(None, TINY + [f"data.root={root / 'data' / 'train'}"]), root / "run", progress=False)


def test_predictor_masks_follow_its_postprocessing(trained):
    root, _ = trained
    predictor = Predictor.from_run_dir(root / "run")
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
    assert (
        main(
            [
                "score",
                str(test / "train.csv"),
                str(submission),
                "--shape",
                "64",
                "320",
                "--images",
                str(test / "train_images"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mean" in out and "(8 images" in out


def test_report_model_curves_at_the_values_in_use_equal_the_submissions_dice(trained, tmp_path):
    # Two paths to one number: the report's grid search over the model's probabilities, read at
    # each class's pixel threshold and min area in use, and scoring the masks `predict` writes.
    from steelseg.files.scoring import read_image_set, score_files
    from steelseg.files.submission import write_submission
    from steelseg.reports.report import ReportInputs, model_curves, write_report

    root, _ = trained
    test = root / "data" / "test"
    predictor = Predictor.from_run_dir(root / "run")
    submission = tmp_path / "submission.csv"
    write_submission(submission, predictor.predict_folder(test / "train_images", progress=False), 4)
    inputs = ReportInputs.read(submission, test / "train.csv", test / "train_images")
    curves = model_curves(inputs, predictor, 4, progress=False)
    at = [int(np.argmin(np.abs(curves.thresholds - t))) for t in predictor.postprocess.pixel_threshold]
    scores, _ = score_files(test / "train.csv", submission, (64, 320), 4, read_image_set(test / "train_images"))
    np.testing.assert_allclose([curves.by_threshold[at[c], c] for c in range(4)], scores.class_dice)
    page = write_report(inputs, tmp_path / "report", predictor.class_names, predictor=predictor, progress=False)
    assert 'src="figures/threshold-model.png"' in page.read_text()
    assert (tmp_path / "report" / "figures" / "threshold-model.png").is_file()


def test_cli_reports_bad_input_without_a_traceback(trained, capsys, tmp_path):
    root, _ = trained
    assert (
        main(["predict", str(tmp_path), str(root / "data" / "test" / "train_images"), "--out", str(tmp_path / "s.csv")])
        == 1
    )
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


def test_average_of_the_best_epochs_is_validated_and_kept_only_if_not_worse(tmp_path):
    synth.write_dataset(tmp_path / "data", 6, seed=2, height=64, width=256, progress=False)
    config = load_config(None, TINY + [f"data.root={tmp_path / 'data'}", "train.epochs=3", "train.average_best=2"])
    train(config, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    averaged = summary["averaged"]
    assert len(averaged["epochs"]) == 2 and set(averaged["epochs"]) <= {1, 2, 3}  # counted from 1
    assert averaged["used"] == (averaged["val_dice_tuned"] >= summary["val_dice_tuned"])
    assert len(list((tmp_path / "run" / "top").iterdir())) == 2
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 4  # the extra validation adds no row


def test_second_stage_starts_from_the_first_stages_best_weights(tmp_path):
    synth.write_dataset(tmp_path / "data", 6, seed=2, height=64, width=256, progress=False)
    stages = (
        "stages=[{name: finetune, train: {epochs: 1, lr: 0.0001, "
        "loss: [{name: bce, weight: 0.75}, {name: dice, weight: 0.25}]}}]"
    )
    config = load_config(None, TINY + [f"data.root={tmp_path / 'data'}", "train.epochs=1", stages])
    summary = train(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    first, second = run / "stages" / "1", run / "stages" / "2-finetune"
    assert rundir.load_run_config(second).model.init_from == str(first)
    assert [t.weight for t in rundir.load_run_config(second).train.loss] == [0.75, 0.25]
    assert (run / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert rundir.load_run_config(run).stages == []  # the last stage's config: what predict needs
    assert "stages" in (run / "recipe.yaml").read_text() and set(summary.stages) == {"1", "2-finetune"}
    Predictor.from_run_dir(run)  # the run directory alone is enough to predict


def test_a_stage_with_an_unknown_key_fails_at_load_time():
    from steelseg.config import ConfigError

    with pytest.raises(ConfigError, match="stage 2-oops"):
        load_config(None, ["stages=[{name: oops, train: {learning_rate: 1}}]"])


def test_binary_model_for_one_class(tmp_path):
    synth.write_dataset(tmp_path / "data", 6, seed=2, height=64, width=256, progress=False)
    config = load_config(None, TINY + [f"data.root={tmp_path / 'data'}", "train.epochs=1", "data.classes=[3]"])
    train(config, tmp_path / "run", progress=False)
    predictor = Predictor.from_run_dir(tmp_path / "run")
    assert predictor.class_names == ["scratches"]
    assert predictor.predict_proba(np.zeros((1, 64, 256), np.uint8)).shape == (1, 1, 64, 256)


def test_softmax_head_predicts_one_probability_map_per_class(tmp_path):
    synth.write_dataset(tmp_path / "data", 6, seed=2, height=64, width=256, progress=False)
    config = load_config(
        None, TINY + [f"data.root={tmp_path / 'data'}", "train.epochs=1", "model.head=softmax", "train.loss=ce"]
    )
    train(config, tmp_path / "run", progress=False)
    probs = Predictor.from_run_dir(tmp_path / "run").predict_proba(np.zeros((1, 64, 256), np.uint8))
    assert probs.shape == (1, 4, 64, 256)  # the background channel is dropped
    assert probs.sum(axis=1).max() <= 1 + 1e-5  # what is left of a softmax over 5 channels


def test_an_interrupted_multi_stage_run_resumes_at_its_unfinished_stage(tmp_path, capsys):
    from steelseg.files.rundir import FINISHED, RECIPE

    synth.write_dataset(tmp_path / "data", 6, seed=2, height=64, width=256, progress=False)
    stages = "stages=[{name: finetune, train: {epochs: 1, lr: 0.0001}}]"
    train(
        load_config(None, TINY + [f"data.root={tmp_path / 'data'}", "train.epochs=1", stages]),
        tmp_path / "run",
        progress=False,
    )
    run, second = tmp_path / "run", tmp_path / "run" / "stages" / "2-finetune"
    # As if the plan were 2 fine-tuning epochs and the process died after the first: the
    # stage has its epoch-1 checkpoint, no "finished" mark, and the run has no final model.
    recipe = (run / RECIPE).read_text()
    (run / RECIPE).write_text(recipe.replace("epochs: 1\n    lr: 0.0001", "epochs: 2\n    lr: 0.0001"))
    assert (run / RECIPE).read_text() != recipe
    (second / FINISHED).unlink()
    (run / "model.safetensors").unlink()
    first_stage_rows = (run / "stages" / "1" / "metrics.csv").read_text()
    second_stage_rows = (second / "metrics.csv").read_text().splitlines()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "resuming stage 2-finetune at epoch 2 of 2" in capsys.readouterr().out
    assert (run / "stages" / "1" / "metrics.csv").read_text() == first_stage_rows  # not trained again
    rows = (second / "metrics.csv").read_text().splitlines()
    assert rows[:2] == second_stage_rows and len(rows) == 3  # its first epoch kept, the second added
    assert (run / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (second / FINISHED).exists()
