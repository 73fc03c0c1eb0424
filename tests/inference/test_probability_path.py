"""One probability path: validation, the Predictor, out-of-fold files see the same numbers."""

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import steelseg.training.module as module_code
from steelseg.files import rundir
from steelseg.files.datasets import open_configured
from steelseg.inference.predictor import Predictor
from steelseg.models.weights import load_weights
from steelseg.training.data import loaders
from steelseg.training.module import SegmentationModule


def _validation_probabilities(run, monkeypatch) -> tuple[list[str], np.ndarray]:
    """Run Lightning's validation loop on the run's validation split and catch the full-size
    probabilities it scores."""
    config = rundir.load_run_config(run)
    dataset = open_configured(config.data)
    seen = []
    original = module_code.to_image
    monkeypatch.setattr(
        module_code, "to_image", lambda p, shape, model: seen.append(original(p, shape, model)) or seen[-1]
    )
    val_index = np.arange(len(dataset))[-4:]  # any images will do: validation scores what it is given
    _, val_loader = loaders(config, dataset.subset(val_index[:1]), dataset.subset(val_index))
    module = SegmentationModule(config)
    load_weights(run, module.model)
    trainer = L.Trainer(
        accelerator="cpu", precision="32-true", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(module, val_loader, verbose=False)
    return [dataset.image_ids[i] for i in val_index], np.concatenate([outputs.pixels for outputs in seen])


def test_validation_probabilities_equal_the_predictors_at_half_scale(half_scale_run, monkeypatch):
    run, data = half_scale_run
    assert rundir.load_run_config(run).model.input_scale == 0.5
    image_ids, validated = _validation_probabilities(run, monkeypatch)
    predictor = Predictor.from_run_dir(run, backend="torch", device="cpu")
    from steelseg.files.images import read_gray

    images = np.stack([read_gray(data / "train_images" / i) for i in image_ids])
    predicted = predictor.predict_proba(images)
    assert validated.shape == predicted.shape == (4, 4, 64, 320)
    np.testing.assert_allclose(validated, predicted, atol=1e-6, rtol=0)

    # The path this replaced, resizing logits before the activation, gives other numbers (even
    # for this barely trained model, whose probabilities all sit near 0.5): the comparison above
    # would catch a return to it.
    net = predictor.backend.net
    with torch.no_grad():
        from steelseg.core.preprocess import to_input

        model = predictor.config.model
        logits = net.logits(torch.from_numpy(to_input(images, model.input_mean, model.input_std, 1, 0.5)))[
            "probabilities"
        ]
        old = torch.sigmoid(F.interpolate(logits, size=(64, 320), mode="bilinear", align_corners=False)).numpy()
    assert np.abs(old - predicted).max() > 1e-5


def test_out_of_fold_file_holds_the_predictors_probabilities(half_scale_run):
    from steelseg.files.images import read_gray
    from steelseg.training.oof import load_oof, oof_entries, save_oof

    run, data = half_scale_run
    config = rundir.load_run_config(run)
    dataset = open_configured(config.data).subset([0, 1])
    save_oof(run, dataset, 0.5)
    oof = load_oof(run)
    entries = list(oof_entries(oof))
    predictor = Predictor.from_run_dir(run)  # the default backend, as `steelseg predict` uses
    assert str(oof["backend"]) == predictor.describe()  # the file says what made it
    for (image_id, probs, _), expected_id in zip(entries, dataset.image_ids):
        assert image_id == expected_id
        full = predictor.predict_proba(read_gray(data / "train_images" / image_id)[None])[0]
        # oof.npz keeps float16 at half scale: compare with the area-averaged full-size map
        expected = full.reshape(4, 32, 2, 160, 2).mean(axis=(2, 4))
        np.testing.assert_allclose(probs.astype(np.float32), expected, atol=2e-3)
    (run / rundir.OOF).unlink()


@pytest.mark.parametrize("backend", ["torch-amp", "onnx"])
def test_every_backend_gives_the_same_masks_as_fp32_torch(half_scale_run, backend, tmp_path):
    from steelseg.inference.export import export_onnx

    run, data = half_scale_run
    if backend == "onnx" and not (run / rundir.ONNX).is_file():
        export_onnx(run)
    reference = Predictor.from_run_dir(run, backend="torch", device="cpu")
    other = Predictor.from_run_dir(run, backend=backend, device="cpu")
    assert other.backend.name == backend
    from steelseg.files.images import read_gray

    images = np.stack([read_gray(p) for p in sorted((data / "train_images").iterdir())[:4]])
    a, b = reference.predict_proba(images), other.predict_proba(images)
    # fp32 backends agree to rounding; bf16 autocast to its 8-bit mantissa
    assert np.abs(a - b).max() <= (0.03 if backend == "torch-amp" else 1e-5)
    agreement = np.mean([(reference.postprocess(x) == other.postprocess(y)).mean() for x, y in zip(a, b)])
    assert agreement >= 0.999
