"""steelseg export: an ONNX graph that checks itself, and a backend that refuses stale files."""

import json
import re
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.inference import export
from steelseg.inference.backends import BackendError
from steelseg.inference.export import ExportError, export_onnx
from steelseg.inference.predictor import Predictor


@pytest.fixture
def run(half_scale_run, tmp_path):
    """A private copy of the tiny run, so that a test may change it."""
    source, _ = half_scale_run
    copy = tmp_path / "run"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(rundir.ONNX))
    return copy


def test_export_writes_a_checked_graph_with_dynamic_batch_height_and_width(run, capsys):
    assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out
    assert "onnx checker passed" in out and "max |diff|" in out and "mask agreement 100.0000%" in out
    graph = onnx.load(str(run / rundir.ONNX))
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["steelseg.class_names"]) == rundir.load_run_config(run).output_class_names
    assert meta["steelseg.weights_sha256"] == rundir.weights_sha256(run)
    # odd sizes, none a multiple of the stride and none the traced 64x96, in one session
    predictor = Predictor.from_run_dir(run, backend="onnx", check_size=False)
    reference = Predictor.from_run_dir(run, backend="torch", device="cpu", check_size=False)
    for shape in [(3, 37, 301), (1, 64, 320), (2, 130, 77)]:
        images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_allclose(predictor.predict_proba(images), reference.predict_proba(images), atol=1e-5)


def test_export_to_another_path(run, tmp_path):
    check = export_onnx(run, tmp_path / "elsewhere" / "steel.onnx")
    assert check.path.is_file() and not (run / rundir.ONNX).exists()
    assert check.max_abs_diff < 1e-5 and check.mask_agreement == 1.0


def _planted_trace(offset: float):
    """export's own tracing, then every pixel logit of the written graph moved by ``offset``
    (the segmentation head's bias): a graph that really disagrees with the run's weights."""
    real_trace = export._trace

    def trace(net, example, path, outputs):
        real_trace(net, example, path, outputs)
        graph = onnx.load(str(path))
        biases = [i for i in graph.graph.initializer if "segmentation_head" in i.name and i.name.endswith("bias")]
        assert len(biases) == 1, [i.name for i in graph.graph.initializer]  # the plant must land
        biases[0].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biases[0]) + offset, biases[0].name))
        onnx.save(graph, str(path))

    return trace


def test_a_graph_that_disagrees_with_pytorch_is_refused_in_one_line_and_not_written(run, monkeypatch):
    monkeypatch.setattr(export, "_trace", _planted_trace(8.0))  # logits + 8: most probabilities near 1
    with pytest.raises(ExportError) as caught:
        export_onnx(run)  # the defaults: tolerance 1e-4, min_agreement 0.9999
    message = str(caught.value)
    found = re.fullmatch(
        rf"{re.escape(str(run))}: onnxruntime disagrees with PyTorch: max \|diff\| (\S+) \(tolerance 1e-04\), "
        r"mask agreement (\S+)% \(needs 99\.99%\); model\.onnx was not written",
        message,
    )
    assert found, message
    diff, agreement = float(found[1]), float(found[2])
    assert diff > 0.1 and agreement < 99  # far off, not a rounding matter
    assert not (run / rundir.ONNX).exists() and not list(run.glob(".model.onnx.*"))


def test_a_plant_below_the_tolerance_passes(run, monkeypatch):
    # the same plant, 1e-6 in the logits: well inside the tolerance, so the refusal above is
    # the check at work and not the plant breaking the graph
    monkeypatch.setattr(export, "_trace", _planted_trace(1e-6))
    check = export_onnx(run)
    assert check.max_abs_diff < 1e-5 and check.mask_agreement == 1.0


def test_an_export_of_other_weights_is_refused(run):
    export_onnx(run)
    weights = run / rundir.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # the last byte of the last tensor: still a valid file, other weights
    weights.write_bytes(bytes(data))
    with pytest.raises(BackendError, match="exported from other weights"):
        Predictor.from_run_dir(run, backend="onnx")


def test_onnx_backend_without_an_export_says_how_to_make_one(run, capsys):
    images = run.parent / "images"
    images.mkdir()
    assert main(["predict", str(run), str(images), "--out", str(run.parent / "s.csv"), "--backend", "onnx"]) == 1
    assert "export the run first with `steelseg export" in capsys.readouterr().err


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_an_exported_model_changed_after_the_export_is_refused(run, backend, capsys):
    export_onnx(run)
    record = (run / rundir.WEIGHTS_SHA256).read_text()
    assert rundir.WEIGHTS in record and rundir.ONNX in record  # one record, both files
    assert rundir.recorded_sha256(run / rundir.ONNX) == [rundir.file_sha256(run / rundir.ONNX)]
    _flip_last_byte(run / rundir.ONNX)
    images = run.parent / "images"
    images.mkdir()
    out = run.parent / "s.csv"
    assert main(["predict", str(run), str(images), "--out", str(out), "--backend", backend]) == 1
    err = capsys.readouterr().err.strip()
    assert "model.onnx" in err and "does not match" in err and "\n" not in err
    assert not out.exists()


def test_a_model_file_outside_a_run_is_named_with_its_sha256(run, tmp_path):
    check = export_onnx(run, tmp_path / "steel.onnx")
    assert check.sha256 == rundir.file_sha256(tmp_path / "steel.onnx") and check.sha256 in check.report()
    assert not (tmp_path / rundir.WEIGHTS_SHA256).exists()  # no record beside a file outside a run
    notes = Predictor.load([tmp_path / "steel.onnx"], backend="onnx").backend_notes()
    assert any(check.sha256 in note and "unchecked" in note for note in notes)


def test_the_export_names_no_folder_of_the_training_machine(run, tmp_path):
    config = rundir.load_run_config(run)
    assert config.data.root and config.data.root.startswith("/")  # the run records absolute paths
    export_onnx(run)
    meta = {p.key: p.value for p in onnx.load(str(run / rundir.ONNX)).metadata_props}
    for key, value in meta.items():
        assert config.data.root not in value and str(tmp_path) not in value, key
    carried = Predictor.load([run / rundir.ONNX]).members[0].config.data.root
    assert carried == config.data.root.rsplit("/", 1)[-1]
