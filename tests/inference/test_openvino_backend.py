"""The OpenVINO backend: the exported graph on Intel's runtime, checked like onnxruntime's."""

import numpy as np
import pytest

from steelseg.files import rundir
from steelseg.inference.backends import BackendError
from steelseg.inference.export import export_onnx
from steelseg.inference.predictor import Predictor


@pytest.fixture
def run(fresh_run):
    return fresh_run


def test_openvino_agrees_with_pytorch_fp32_at_sizes_it_was_not_traced_at(run):
    export_onnx(run)
    predictor = Predictor.from_run_dir(run, backend="openvino", check_size=False)
    reference = Predictor.from_run_dir(run, backend="torch", device="cpu", check_size=False)
    assert predictor.backend.describe().startswith("openvino (OpenVINO, ")
    for shape in [(3, 37, 301), (1, 64, 320), (2, 130, 77)]:
        images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        # bf16 inference precision where the CPU has it: about 3 significant digits
        np.testing.assert_allclose(predictor.predict_proba(images), reference.predict_proba(images), atol=0.02)


def test_openvino_without_an_export_says_how_to_make_one(run):
    with pytest.raises(BackendError, match=r"export the run first with `steelseg export"):
        Predictor.from_run_dir(run, backend="openvino")


def test_openvino_on_a_gpu_device_is_one_clear_error(run):
    export_onnx(run)
    from steelseg.inference.backends.openvino_backend import OpenVinoBackend

    with pytest.raises(BackendError, match="runs on the CPU here; got --device cuda"):
        OpenVinoBackend(run / rundir.ONNX, "cuda")


def test_a_lone_exported_file_runs_on_openvino(run, tmp_path):
    export_onnx(run, tmp_path / "steel.onnx")
    predictor = Predictor.load([tmp_path / "steel.onnx"], backend="openvino")
    assert predictor.backend.name == "openvino"
    images = np.random.default_rng(2).integers(0, 256, (1, 64, 320), dtype=np.uint8)
    assert predictor.predict_proba(images).shape[-2:] == (64, 320)
