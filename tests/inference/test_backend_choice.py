"""--backend auto: measured once per run and machine, the fastest backend that agrees with fp32."""

import json

import numpy as np
import pytest

from steelseg.files import rundir
from steelseg.inference import backend_choice
from steelseg.inference.backends import create_backend
from steelseg.inference.export import export_onnx
from steelseg.inference.predictor import Predictor


@pytest.fixture
def run(fresh_run):
    return fresh_run


def test_without_an_export_the_rule_stands_and_says_how_to_measure(run):
    predictor = Predictor.from_run_dir(run, device="cpu")
    assert predictor.backend.name in ("torch", "torch-amp")
    (note,) = predictor.backend_notes()
    assert "by rule" in note and "steelseg export RUN" in note
    assert not (run / rundir.BACKEND_CHOICE).exists()


def test_an_exported_run_gets_the_fastest_backend_that_agrees_and_keeps_the_answer(run):
    export_onnx(run)
    predictor = Predictor.from_run_dir(run, device="cpu")
    record = json.loads((run / rundir.BACKEND_CHOICE).read_text())
    rates = record["images_per_second"]
    assert {"torch", "onnx", "openvino"} <= set(rates)
    assert record["backend"] == max(rates, key=rates.get)  # nothing disagrees here
    assert predictor.backend.name == record["backend"]
    assert predictor.backend_notes() == [f"auto: {record['reason']}"]
    assert record["signature"]["files"][rundir.ONNX]


def test_the_kept_answer_is_used_while_the_machine_and_files_are_the_same(run, monkeypatch):
    export_onnx(run)
    Predictor.from_run_dir(run, device="cpu")
    chosen = json.loads((run / rundir.BACKEND_CHOICE).read_text())["backend"]

    def no_measuring(*args):
        raise AssertionError("measured again although nothing changed")

    monkeypatch.setattr(backend_choice, "_measure", no_measuring)
    again = Predictor.from_run_dir(run, device="cpu")
    assert again.backend.name == chosen and again.backend_notes()[0].endswith("(cached)")
    # a new export changes the signature: measured again
    monkeypatch.undo()
    record = json.loads((run / rundir.BACKEND_CHOICE).read_text())
    record["signature"]["files"][rundir.ONNX] = "0" * 64
    (run / rundir.BACKEND_CHOICE).write_text(json.dumps(record))
    assert not Predictor.from_run_dir(run, device="cpu").backend_notes()[0].endswith("(cached)")


class _Shifted:
    """A backend that answers fast and wrong: every pixel probability pushed up."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def __call__(self, x):
        return {k: np.clip(v + 0.6, 0, 1) for k, v in self.inner(x).items()}

    def describe(self):
        return self.name


def test_a_backend_that_disagrees_with_fp32_is_never_chosen(run, monkeypatch):
    export_onnx(run)
    real = create_backend

    def planted(name, run_dir, config, device):
        backend = real(name, run_dir, config, device)
        return backend if name in ("torch", "torch-amp") else _Shifted(backend)

    monkeypatch.setattr(backend_choice, "create_backend", planted)
    predictor = Predictor.from_run_dir(run, device="cpu")
    assert predictor.backend.name in ("torch", "torch-amp")
    note = predictor.backend_notes()[0]
    assert "refused (below 99% agreement" in note and note.endswith("onnx, openvino")


class _Blind(_Shifted):
    """A backend that answers fast and marks nothing: on mostly clean steel its masks still
    equal fp32's on most pixels (what OpenVINO 2026.4 did with one INT8 graph)."""

    def __call__(self, x):
        return {k: np.zeros_like(v) for k, v in self.inner(x).items()}


def test_agreeing_on_the_empty_pixels_alone_is_not_agreeing():
    from steelseg.core.parity import Parity

    assert Parity(agreement=0.995, dice=0.95, mean_diff=0.004).passes
    assert not Parity(agreement=0.995, dice=0.0, mean_diff=0.004).passes  # marks none of fp32's defects
    assert not Parity(agreement=0.995, dice=None, mean_diff=0.045).passes  # probabilities shifted
    assert not Parity(agreement=0.98, dice=None, mean_diff=0.0).passes
    assert Parity(agreement=1.0, dice=None, mean_diff=0.0).passes


def test_a_backend_that_marks_nothing_is_never_chosen(run, monkeypatch):
    export_onnx(run)
    real = create_backend

    def planted(name, run_dir, config, device):
        backend = real(name, run_dir, config, device)
        return _Blind(backend) if name == "onnx" else backend

    monkeypatch.setattr(backend_choice, "create_backend", planted)
    predictor = Predictor.from_run_dir(run, device="cpu")
    assert predictor.backend.name != "onnx"
    note = predictor.backend_notes()[0]
    assert "refused (below" in note and note.split("refused (below", 1)[1].split(": ", 1)[1].startswith("onnx")


def test_a_read_only_run_is_measured_but_not_written(run, monkeypatch):
    export_onnx(run)
    monkeypatch.setattr(backend_choice, "write_text", lambda *a: (_ for _ in ()).throw(PermissionError("read-only")))
    predictor = Predictor.from_run_dir(run, device="cpu")
    assert predictor.backend_notes()[0].endswith("(not cached: the run folder is read-only)")
    assert not (run / rundir.BACKEND_CHOICE).exists()


@pytest.mark.parametrize("native", [True, False])
def test_torch_amp_on_a_cpu_without_bf16_says_it_is_emulated(run, monkeypatch, native):
    from steelseg import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: native)
    notes = Predictor.from_run_dir(run, backend="torch-amp", device="cpu").backend_notes()
    assert any("no native bf16" in note for note in notes) is not native
    assert not Predictor.from_run_dir(run, backend="torch", device="cpu").backend_notes()
