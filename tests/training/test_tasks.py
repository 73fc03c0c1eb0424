"""Classifier, two-headed and Mask R-CNN runs: train a tiny step, resume, predict through the
Predictor; and the classifier's labels under defect blackout."""

import numpy as np
import pytest
import torch
import yaml

from steelseg.commands.cli import main
from steelseg.config import AugmentStep, DataConfig, ModelConfig
from steelseg.files import rundir, synth
from steelseg.inference.predictor import Predictor
from steelseg.training.data import TorchSegmentationData
from steelseg.training.module import labels_of
from steelseg.training.oof import load_oof
from tiny_runs import tiny_cli

SETUP = tiny_cli("train.batches_per_epoch=2")


# --- defect blackout and the classifier's labels ------------------------------------------


class _OneImage:
    """A dataset of one hand-made image and its masks."""

    def __init__(self, image, masks):
        self.image, self.masks = image, masks

    def __len__(self):
        return 1

    def load(self, index):
        return self.image.copy(), self.masks.copy()


def _blacked_out(masks: np.ndarray, seed: int):
    image = np.full(masks.shape[1:], 200, np.uint8)
    data = DataConfig(crop_height=None, crop_width=None, augment=[AugmentStep(name="defect_blackout", p=1.0)])
    item = TorchSegmentationData(_OneImage(image, masks), ModelConfig(task="classify"), data, seed=seed)
    x, y = item[0]
    return x[0].numpy(), labels_of(y[None])[0].numpy()


def test_blackout_of_a_class_s_only_defect_makes_its_label_clean():
    masks = np.zeros((2, 16, 24), bool)
    masks[0, 4:8, 5:9] = True  # the only defect of class 1; class 2 clean
    for seed in range(5):
        x, labels = _blacked_out(masks, seed)
        assert labels.tolist() == [0.0, 0.0]
        assert np.all(x[4:8, 5:9] == x.min()) and np.all(x[:4] > x.min())  # painted out, rest kept


def test_a_surviving_defect_keeps_the_label():
    masks = np.zeros((2, 16, 24), bool)
    masks[0, 2:5, 2:5] = True  # two separate defects of class 1: blackout removes one of them
    masks[0, 10:14, 15:20] = True
    for seed in range(5):
        x, labels = _blacked_out(masks, seed)
        assert labels.tolist() == [1.0, 0.0]
        survivors = [np.all(x[2:5, 2:5] > x.min()), np.all(x[10:14, 15:20] > x.min())]
        assert sorted(survivors) == [False, True]  # exactly one defect blacked out


# --- runs of each task ------------------------------------------------------------------


@pytest.fixture(scope="module")
def strips(tmp_path_factory):
    root = tmp_path_factory.mktemp("strips")
    synth.write_dataset(root, 8, seed=4, height=64, width=256, progress=False)
    return root


def _train_then_resume(strips, run, task_overrides, capsys) -> str:
    """Train one epoch, then make it look interrupted after that epoch (2 epochs planned, not
    finished) and resume: the second epoch must come from the checkpoint."""
    assert main(["train", str(strips), "--out", str(run), *SETUP, *task_overrides]) == 0
    printed = capsys.readouterr().out
    config = yaml.safe_load((run / rundir.CONFIG).read_text())
    config["train"]["epochs"] = 2
    (run / rundir.CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    (run / rundir.FINISHED).unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "resuming at epoch 2 of 2" in capsys.readouterr().out
    assert [line.split(",")[0] for line in (run / rundir.METRICS).read_text().splitlines()[1:]] == ["1", "2"]
    return printed


def test_classifier_trains_resumes_and_predicts_class_scores(strips, tmp_path, capsys):
    run = tmp_path / "cls"
    printed = _train_then_resume(strips, run, ["--set", "model.task=classify", "--set", "train.oof_scale=0.5"], capsys)
    assert "presence accuracy" in printed and "AUC" in printed and "screened out" in printed
    summary = rundir.load_summary(run)
    assert summary.task == "classify" and summary.val_iou is None and summary.screening is not None
    assert not (run / rundir.POSTPROCESS).exists() and (run / rundir.GATE).is_file()

    predictor = Predictor.from_run_dir(run, backend="torch")
    oof = load_oof(run)
    assert "probs" not in oof and oof["scores"].shape == oof["labels"].shape == (len(oof["image_ids"]), 4)
    images = np.stack([np.asarray(_read(strips, i)) for i in oof["image_ids"]])
    # oof.npz comes from the default backend: the same one gives the same numbers
    np.testing.assert_allclose(Predictor.from_run_dir(run).predict_scores(images), oof["scores"], atol=1e-6)
    scores = predictor.predict_scores(images)
    assert predictor.screen(images).tolist() == (scores > rundir.load_gate(run, predictor.config)).tolist()
    with pytest.raises(ValueError, match="class scores, not masks"):
        predictor.predict_proba(images)

    out = tmp_path / "scores.csv"
    assert main(["predict", str(run), str(strips / "train_images"), "--out", str(out), "--quiet"]) == 0
    assert out.read_text().splitlines()[0] == "ImageId,ClassId,Probability,Present"
    assert len(out.read_text().splitlines()) == 1 + 8 * 4
    capsys.readouterr()
    assert main(["score", str(strips / "train.csv"), str(out), "--images", str(strips / "train_images")]) == 0
    assert "AUC" in capsys.readouterr().out

    assert main(["export", str(run)]) == 0
    assert "label agreement 100.0000%" in capsys.readouterr().out
    onnx = Predictor.from_run_dir(run, backend="onnx")
    np.testing.assert_allclose(onnx.predict_scores(images), scores, atol=1e-5)


def test_two_headed_run_gates_its_masks_with_its_class_head(strips, tmp_path, capsys):
    run = tmp_path / "two"
    _train_then_resume(strips, run, ["--set", "model.task=two_head", "--set", "train.oof_scale=null"], capsys)
    predictor = Predictor.from_run_dir(run, backend="torch")
    images = np.stack([_read(strips, f"synth_4_0000{i}.jpg") for i in range(3)])  # 64x256: no padding
    out = predictor.predict_outputs(images)

    # Independently: smp's own two outputs, sigmoids multiplied by hand.
    net = predictor.backend.net
    model = predictor.config.model
    x = torch.from_numpy(((images / 255.0 - model.input_mean) / model.input_std).astype(np.float32)[:, None])
    with torch.no_grad():
        masks, labels = net.net(x)
    class_probs = torch.sigmoid(labels).numpy()
    expected = torch.sigmoid(masks).numpy() * class_probs[:, :, None, None]
    np.testing.assert_allclose(out.pixels, expected, atol=1e-5)
    np.testing.assert_allclose(out.scores, class_probs, atol=1e-6)
    assert predictor.predict(images[0]).shape == (4, 64, 256)


def test_instance_run_trains_resumes_and_predicts_probability_maps(strips, tmp_path, capsys):
    run = tmp_path / "instance"
    small = (
        "model.arch_params={rpn_pre_nms_top_n_train: 50, rpn_post_nms_top_n_train: 20, "
        "rpn_pre_nms_top_n_test: 50, rpn_post_nms_top_n_test: 20, box_detections_per_img: 5}"
    )
    overrides = [
        "--set",
        "model.task=instance",
        "--set",
        "model.encoder_name=resnet18",
        "--set",
        small,
        "--set",
        "train.oof_scale=null",
        "--set",
        "train.val_batches=1",
    ]
    _train_then_resume(strips, run, overrides, capsys)
    summary = rundir.load_summary(run)
    assert summary.task == "instance" and summary.val_loss is None and summary.val_iou is not None
    predictor = Predictor.from_run_dir(run, backend="torch")
    images = np.stack([_read(strips, "synth_4_00001.jpg")])
    out = predictor.predict_outputs(images)
    assert out.pixels.shape == (1, 4, 64, 256) and 0 <= out.pixels.min() and out.pixels.max() <= 1
    np.testing.assert_allclose(out.scores, out.pixels.reshape(1, 4, -1).max(axis=2))  # model.score: max
    assert main(["export", str(run)]) == 1
    assert "torch backends only" in capsys.readouterr().err


def _read(strips, image_id):
    from steelseg.files.images import read_gray

    return read_gray(strips / "train_images" / str(image_id))
