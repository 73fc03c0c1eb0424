"""steelseg export --int8: a calibrated INT8 graph, compared with fp32 before it is kept."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.inference import quantize
from steelseg.inference.backends import BackendError
from steelseg.inference.predictor import Predictor
from steelseg.inference.quantize import export_int8


@pytest.fixture
def run(fresh_run, half_scale_run):
    """(a private copy of the tiny run, its data folder)."""
    return fresh_run, half_scale_run[1]


def _probabilities(run, backend, images):
    return Predictor.from_run_dir(run, backend=backend, device="cpu", check_size=False).predict_proba(images)


def test_int8_export_writes_a_quantised_graph_close_to_fp32(run, capsys):
    run, data = run
    assert main(["export", str(run), "--int8", "--calibration", str(data / "train_images")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"wrote {run / rundir.ONNX_INT8}") and "calibrated on 8 images" in out[1]
    assert "2 held-out images (every 4th of" in out[1] and "pixel agreement" in out[1]
    graph = onnx.load(str(run / rundir.ONNX_INT8))
    ops = {node.op_type for node in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [i for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert int8_weights, "no convolution weight is stored as INT8"
    # one scale per tensor (OpenVINO mis-runs per-channel QDQ weights) and 7-bit weights (no u8 x s8
    # saturation on CPUs without VNNI): see quantize's docstring
    per_channel = [i.name for i in graph.graph.initializer if i.name.endswith("_scale") and sum(i.dims) > 1]
    assert not per_channel, per_channel
    widest = max(np.abs(onnx.numpy_helper.to_array(i).astype(int)).max() for i in int8_weights)
    assert 32 <= widest <= 64, widest
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["steelseg.weights_sha256"] == rundir.weights_sha256(run)
    assert json.loads(meta[quantize.META_INT8])["images"] == 8
    # the independent truth: PyTorch fp32 on images neither calibration nor check saw
    images = np.random.default_rng(5).integers(0, 256, (2, 70, 300), dtype=np.uint8)
    reference = _probabilities(run, "torch", images)
    for backend in ("onnx-int8", "openvino-int8"):
        diff = np.abs(_probabilities(run, backend, images) - reference)
        assert diff.mean() < 0.02 and diff.max() < 0.25, (backend, diff.mean(), diff.max())


def test_a_dataset_as_check_scores_dice_against_its_masks(run):
    run, data = run
    check = export_int8(run, data / "train_images", check=data)
    assert check.checked_on == 10 and check.dice_fp32 is not None
    assert f"checked against PyTorch fp32 on 10 held-out images (from {data})" in check.report()
    assert "Dice vs truth: fp32" in check.report()


def _planted(offset: float):
    """Instead of quantising, the fp32 graph with its pixel logits moved by ``offset``."""

    def plant(fp32, out, inputs):
        graph = onnx.load(str(fp32))
        biases = [i for i in graph.graph.initializer if "segmentation_head" in i.name and i.name.endswith("bias")]
        assert len(biases) == 1
        biases[0].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biases[0]) + offset, biases[0].name))
        onnx.save(graph, str(out))

    return plant


def test_a_model_that_disagrees_is_refused_in_one_line_and_not_written(run, monkeypatch, capsys):
    run, data = run
    monkeypatch.setattr(quantize, "_quantize", _planted(8.0))
    assert main(["export", str(run), "--int8", "--calibration", str(data / "train_images")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the INT8 model disagrees with fp32 on 2 held-out images: pixel agreement" in err[0]
    assert err[0].endswith("model.int8.onnx was not written")
    assert not (run / rundir.ONNX_INT8).exists() and not list(run.glob(".model.int8.onnx*"))


def test_a_model_that_marks_none_of_fp32_s_defects_is_refused_though_most_pixels_agree(run, monkeypatch, capsys):
    """Steel is mostly clean: fp32 marks 200 of 81,920 mask pixels, INT8 none; 99.76% of the pixels
    still agree, but the masks' Dice is 0."""
    run, data = run

    def masks(predictor, image):
        marked = np.zeros((predictor.num_classes, *image.shape), bool)
        if predictor.describe().startswith("torch"):
            marked[0, :10, :20] = True
        return marked

    monkeypatch.setattr(quantize, "_masks", masks)
    assert main(["export", str(run), "--int8", "--calibration", str(data / "train_images")]) == 1
    err = capsys.readouterr().err.strip()
    assert "pixel agreement 99.756%" in err and "mask Dice against fp32's 0.0000 (needs 0.9)" in err
    assert not (run / rundir.ONNX_INT8).exists()


def test_a_tiny_plant_passes(run, monkeypatch):
    # the same plant, 1e-6 in the logits: the refusal above is the check, not the plant
    run, data = run
    monkeypatch.setattr(quantize, "_quantize", _planted(1e-6))
    assert export_int8(run, data / "train_images").agreement == 1.0


def test_an_int8_file_of_other_weights_is_refused(run):
    run, data = run
    export_int8(run, data / "train_images")
    weights = run / rundir.WEIGHTS
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    for backend in ("onnx-int8", "openvino-int8"):
        with pytest.raises(BackendError, match="exported from other weights"):
            Predictor.from_run_dir(run, backend=backend)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--int8"], "--int8 needs --calibration IMAGES"),
        (["--calibration", "x"], "--calibration is for --int8"),
        (["--int8", "--calibration", "x", "--out", "m.onnx"], "--out is for the fp32 file"),
        (["--int8", "--calibration", "x", "--min-agreement", "2"], "--min-agreement 2.0: expected a share"),
    ],
)
def test_option_mistakes_are_one_line(run, args, message, capsys):
    run, _ = run
    assert main(["export", str(run), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_folder_without_images_is_one_line(run, tmp_path, capsys):
    run, _ = run
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(run), "--int8", "--calibration", str(empty)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0]
    assert not (run / rundir.ONNX_INT8).exists()


def test_int8_backend_without_the_file_says_how_to_make_it(run):
    run, _ = run
    with pytest.raises(BackendError, match="--int8 --calibration IMAGES`"):
        Predictor.from_run_dir(run, backend="onnx-int8")
