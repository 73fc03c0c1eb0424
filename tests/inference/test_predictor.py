"""The Predictor's contract: numpy in and out, backends chosen by name, inputs checked."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.files.annotations import read_annotations
from steelseg.inference.backends import BackendError, resolve_backend
from steelseg.inference.predictor import InputError, Predictor, SizeLimits


def test_public_entry_point():
    import steelseg

    assert steelseg.Predictor is Predictor


def test_arrays_in_and_out(half_scale_run):
    run, _ = half_scale_run
    predictor = Predictor.from_run_dir(run, backend="torch", device="cpu")
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 320), dtype=np.uint8)
    probs = predictor.predict_proba(images)
    assert probs.shape == (3, 4, 64, 320) and probs.dtype == np.float32 and 0 <= probs.min() <= probs.max() <= 1
    masks = predictor.predict(images[0])
    assert masks.shape == (4, 64, 320) and masks.dtype == bool
    np.testing.assert_array_equal(masks, predictor.postprocess(probs[0]))
    with pytest.raises(InputError, match="uint8"):
        predictor.predict_proba(images.astype(np.float32))
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        predictor.predict_proba(images[0])


@pytest.mark.parametrize(
    ("name", "device", "bf16", "expected"),
    [
        ("auto", "cpu", True, "torch-amp"),
        ("auto", "cpu", False, "torch"),
        ("auto", "cuda", False, "torch-amp"),
        ("onnx", "cpu", True, "onnx"),
        ("torch", "cpu", True, "torch"),
    ],
)
def test_auto_backend_is_the_fast_one_the_hardware_has(monkeypatch, name, device, bf16, expected):
    from steelseg import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: bf16)
    assert resolve_backend(name, device) == expected


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(BackendError, match="choose auto or one of torch, torch-amp, onnx"):
        resolve_backend("tensorrt", "cpu")


def test_onnx_prediction_never_imports_torch(half_scale_run, tmp_path):
    from steelseg.inference.export import export_onnx

    run, data = half_scale_run
    if not (run / rundir.ONNX).is_file():
        export_onnx(run)
    out = tmp_path / "s.csv"
    code = (
        "import sys; from steelseg.commands.cli import main; "
        f"rc = main(['predict', {str(run)!r}, {str(data / 'train_images')!r}, '--out', {str(out)!r}, "
        "'--backend', 'onnx', '--quiet']); "
        "heavy = [m for m in ('torch', 'lightning', 'segmentation_models_pytorch', 'timm') if m in sys.modules]; "
        "print(rc, heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr
    assert len(read_annotations(out).image_ids) == 10


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((64, 320), None),
        ((20, 320), "below the network's minimum of 24 px"),
        ((200, 320), "more than 2x away from the training images' (64 px)"),
        ((31, 40), "more than 2x away"),
        ((32, 40), None),  # exactly half the training scale
        ((128, 5000), None),  # a long strip at twice the training scale
    ],
)
def test_size_limits(shape, problem):
    limits = SizeLimits(min_side=24, shorter_side=(64, 64))
    found = limits.problem(shape)
    assert found is None if problem is None else problem in found


def test_predict_refuses_far_sizes_unless_asked(half_scale_run, tmp_path, capsys):
    run, _ = half_scale_run
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((256, 1280), 120, np.uint8)).save(folder / "big.png")  # 4x the 64 px strips
    out = tmp_path / "s.csv"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "big.png: image is 256x1280" in err and "--any-size" in err and not out.exists()
    assert main(["predict", str(run), str(folder), "--out", str(out), "--quiet", "--any-size"]) == 0
    assert read_annotations(out).image_ids == ["big.png"]


def test_predict_refuses_an_empty_folder(half_scale_run, tmp_path, capsys):
    run, _ = half_scale_run
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    assert main(["predict", str(run), str(tmp_path / "empty"), "--out", str(tmp_path / "s.csv")]) == 1
    assert "no images found" in capsys.readouterr().err and not (tmp_path / "s.csv").exists()


def test_predict_reads_16_bit_images_at_their_true_brightness(half_scale_run, tmp_path):
    run, data = half_scale_run
    image = np.asarray(Image.open(sorted((data / "train_images").iterdir())[0]).convert("L"))
    (tmp_path / "8").mkdir(), (tmp_path / "16").mkdir()
    Image.fromarray(image).save(tmp_path / "8" / "a.png")
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "16" / "a.png")  # same picture, 16 bits
    predictor = Predictor.from_run_dir(run, backend="torch", device="cpu")
    ((_, eight, p8),) = predictor.iter_folder(tmp_path / "8", progress=False)
    ((_, sixteen, p16),) = predictor.iter_folder(tmp_path / "16", progress=False)
    np.testing.assert_array_equal(eight, sixteen)
    np.testing.assert_array_equal(p8.pixels, p16.pixels)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"pixel_threshold": [0.5, 0.5, 1.5, 0.5], "min_area": [0, 0, 0, 0]},
            r"pixel_threshold\[2\] = 1.5 is not a probability",
        ),
        ({"pixel_threshold": [0.5] * 4, "min_area": [0, -1, 0, 0]}, r"min_area\[1\] = -1 is not a whole number"),
        ({"pixel_threshold": [0.5] * 3, "min_area": [0] * 3}, r"one value per class \(4\)"),
        ({"pixel_threshold": [0.5] * 4}, "not a post-processing file"),
    ],
)
def test_out_of_range_postprocessing_is_a_clear_error(half_scale_run, tmp_path, content, message):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(half_scale_run[0], run)
    (run / rundir.POSTPROCESS).write_text(json.dumps(content))
    with pytest.raises(rundir.RunDirError, match=message):
        Predictor.from_run_dir(run)


def test_folder_prediction_keeps_file_order_and_equals_one_image_at_a_time(half_scale_run):
    from steelseg.core import rle
    from steelseg.files.images import read_gray

    run, data = half_scale_run
    predictor = Predictor.from_run_dir(
        run, backend="torch", device="cpu", batch_size=3
    )  # 10 images: a ragged last batch
    table = predictor.predict_folder(data / "train_images", progress=False)
    paths = sorted((data / "train_images").iterdir())
    assert table.image_ids == [p.name for p in paths]
    for path in paths:
        masks = predictor.predict(read_gray(path))
        assert [table.get(path.name, c) for c in range(1, 5)] == [rle.encode(m) for m in masks]
