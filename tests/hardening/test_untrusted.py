"""Untrusted files: weights that changed after training, planted pickles, paths that lead out of
an ensemble file's folder, and ONNX files that are not what they claim. Each is refused with one
line naming the file (exit 1), and nothing in a planted pickle ever runs: every test that plants
one checks that the marker file its payload would create does not exist afterwards."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.inference.ensemble import EnsembleError
from steelseg.inference.sources import resolve
from steelseg.models.weights import save_weights

SRC = Path(__file__).resolve().parents[2] / "src" / "steelseg"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # independent of rundir.file_sha256


def _one_line_error(capsys, command: list[str]) -> str:
    capsys.readouterr()
    code = main(command)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _predict(run, data, out, *extra) -> list[str]:
    return [
        "predict",
        str(run),
        str(data / "train_images"),
        "--out",
        str(out),
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


# --- the weights checksum ------------------------------------------------------------------


def test_training_records_the_weights_checksum_as_sha256sum_writes_it(untrusted_run):
    run, _ = untrusted_run
    record = (run / rundir.WEIGHTS_SHA256).read_text()
    assert record == f"{_sha256(run / rundir.WEIGHTS)}  {rundir.WEIGHTS}\n"


@pytest.fixture(scope="module")
def staged_run(untrusted_run, untrusted_setup, tmp_path_factory):
    """A two-stage run, each stage keeping its 2 best epochs and averaging them (weights are
    written by training, by average_best and by the stage copy)."""
    _, data = untrusted_run
    run = tmp_path_factory.mktemp("staged") / "run"
    stages = "stages=[{name: again, train: {epochs: 2}}]"
    command = [
        "train",
        str(data),
        "--out",
        str(run),
        *untrusted_setup,
        "--epochs",
        "2",
        "--set",
        "train.average_best=2",
        "--set",
        stages,
    ]
    assert main(command) == 0
    return run


def test_every_weights_file_training_writes_has_a_matching_record(staged_run):
    weights = sorted(staged_run.rglob(rundir.WEIGHTS))
    folders = {p.parent.relative_to(staged_run).as_posix() for p in weights}
    assert {".", "stages/1", "stages/2-again", "stages/1/top/epoch-0001", "stages/2-again/top/epoch-0002"} <= folders
    for path in weights:
        assert (path.parent / rundir.WEIGHTS_SHA256).read_text() == f"{_sha256(path)}  {rundir.WEIGHTS}\n", path
    assert _sha256(staged_run / rundir.WEIGHTS) == _sha256(staged_run / "stages" / "2-again" / rundir.WEIGHTS)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor: still a valid safetensors file
    path.write_bytes(bytes(data))


def test_changed_weights_are_refused_naming_the_file_and_both_checksums(
    untrusted_run, untrusted_copy, tmp_path, capsys
):
    _, data = untrusted_run
    weights = untrusted_copy / rundir.WEIGHTS
    recorded = _sha256(weights)
    _flip_last_byte(weights)
    line = _one_line_error(capsys, _predict(untrusted_copy, data, tmp_path / "sub.csv"))
    assert str(weights) in line and recorded in line and _sha256(weights) in line, line
    assert not (tmp_path / "sub.csv").exists()


def test_a_run_made_before_checksums_loads_unchecked(untrusted_run, untrusted_copy, tmp_path, capsys):
    _, data = untrusted_run
    (untrusted_copy / rundir.WEIGHTS_SHA256).unlink()
    assert main(_predict(untrusted_copy, data, tmp_path / "sub.csv")) == 0
    assert (tmp_path / "sub.csv").is_file()


def test_a_damaged_record_is_one_line(untrusted_run, untrusted_copy, tmp_path, capsys):
    _, data = untrusted_run
    (untrusted_copy / rundir.WEIGHTS_SHA256).write_text("not a checksum\n")
    line = _one_line_error(capsys, _predict(untrusted_copy, data, tmp_path / "sub.csv"))
    assert str(untrusted_copy / rundir.WEIGHTS_SHA256) in line and "line 1" in line


@pytest.mark.parametrize("killed", ["before-the-rename", "after-the-rename"])
def test_a_kill_while_weights_are_written_leaves_weights_that_match(tmp_path, monkeypatch, killed):
    """Weights and their record are two files: whichever moment a kill hits, the weights on disk
    are the old or the new ones, and the record accepts them; a third file it does not."""
    old, new = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    save_weights(tmp_path / "reference", new)  # the same tensors give the same bytes
    new_sha = _sha256(tmp_path / "reference" / rundir.WEIGHTS)
    save_weights(tmp_path, old)
    old_sha = _sha256(tmp_path / rundir.WEIGHTS)
    record = rundir._record

    def dies_at_the_final_record(path, checksums):
        if len(checksums) == 1:  # the second step: only the new checksum
            raise KeyboardInterrupt("killed")
        record(path, checksums)
        if killed == "before-the-rename":
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(rundir, "_record", dies_at_the_final_record)
    with pytest.raises(KeyboardInterrupt):
        save_weights(tmp_path, new)
    monkeypatch.undo()
    assert _sha256(tmp_path / rundir.WEIGHTS) == (old_sha if killed == "before-the-rename" else new_sha)
    rundir.verify_weights(tmp_path / rundir.WEIGHTS)  # accepted
    save_weights(tmp_path / "other", torch.nn.Linear(2, 2))
    shutil.copy(tmp_path / "other" / rundir.WEIGHTS, tmp_path / rundir.WEIGHTS)
    with pytest.raises(rundir.WeightsChecksumError, match="does not match"):
        rundir.verify_weights(tmp_path / rundir.WEIGHTS)


# --- planted pickles -----------------------------------------------------------------------


def test_the_planted_pickle_does_run_code_when_unpickled(untrusted_pickle, tmp_path):
    """The control: the payload is real, so its absence elsewhere means it was refused."""
    marker = untrusted_pickle(tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def _unfinished(run: Path) -> Path:
    (run / rundir.FINISHED).unlink()
    return run


def test_a_planted_resume_checkpoint_is_refused_by_the_command_in_one_line(untrusted_copy, untrusted_pickle):
    run = _unfinished(untrusted_copy)
    marker = untrusted_pickle(run / rundir.RESUME)
    done = subprocess.run(
        [sys.executable, "-m", "steelseg", "train", "--resume", str(run), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(run / rundir.RESUME) in done.stderr and "refused" in done.stderr
    assert not marker.exists()


def _staged_copy(staged_run, tmp_path) -> tuple[Path, Path]:
    run = shutil.copytree(staged_run, tmp_path / "staged")
    stage = run / "stages" / "2-again"
    (stage / rundir.FINISHED).unlink()
    return run, stage


def test_a_planted_stage_checkpoint_is_refused_by_the_command(staged_run, tmp_path, untrusted_pickle, capsys):
    run, stage = _staged_copy(staged_run, tmp_path)
    marker = untrusted_pickle(stage / rundir.RESUME)
    line = _one_line_error(capsys, ["train", "--resume", str(run), "--quiet"])
    assert str(stage / rundir.RESUME) in line and "refused" in line
    assert not marker.exists()


def test_lightning_itself_reads_a_planted_checkpoint_weights_only(staged_run, tmp_path, untrusted_pickle):
    """Past the command's check (the library's resume of a multi-stage run goes straight to
    Lightning): Lightning's own load refuses the payload too."""
    import pickle

    from steelseg.training.fit import resume

    run, stage = _staged_copy(staged_run, tmp_path)
    marker = untrusted_pickle(stage / rundir.RESUME)
    with pytest.raises((pickle.UnpicklingError, rundir.RunDirError)):
        resume(run, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("recorded", [True, False], ids=["with-record", "run-made-before-records"])
def test_a_pickle_in_place_of_the_weights_is_refused(
    untrusted_run, untrusted_copy, untrusted_pickle, tmp_path, capsys, recorded
):
    _, data = untrusted_run
    if not recorded:
        (untrusted_copy / rundir.WEIGHTS_SHA256).unlink()
    marker = untrusted_pickle(untrusted_copy / rundir.WEIGHTS)
    line = _one_line_error(capsys, _predict(untrusted_copy, data, tmp_path / "sub.csv"))
    assert str(untrusted_copy / rundir.WEIGHTS) in line
    assert ("does not match" if recorded else "not a readable safetensors file") in line, line
    assert not marker.exists()


@pytest.mark.parametrize("key", ["model.init_from", "model.encoder_weights"])
def test_a_pickled_pth_given_as_weights_to_start_from_is_refused(
    untrusted_run, untrusted_setup, untrusted_pickle, tmp_path, capsys, key
):
    _, data = untrusted_run
    evil = tmp_path / "pretrained.pth"
    marker = untrusted_pickle(evil)
    line = _one_line_error(
        capsys, ["train", str(data), "--out", str(tmp_path / "run"), *untrusted_setup, "--set", f"{key}={evil}"]
    )
    assert str(evil) in line, line
    assert not marker.exists()


def test_an_oof_file_holding_a_pickled_object_array_is_refused(untrusted_copy, untrusted_pickle):
    marker = untrusted_pickle(untrusted_copy / rundir.OOF, how="npz")
    with pytest.raises(rundir.RunDirError) as caught:
        rundir.load_oof(untrusted_copy)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and str(untrusted_copy / rundir.OOF) in message and "pickled" in message
    assert not marker.exists()
    np.load(untrusted_copy / rundir.OOF, allow_pickle=True)["probs"]  # the control: unpickled, it runs
    assert marker.exists()


def _calls(pattern: str) -> list[tuple[str, str]]:
    """(file, call text up to its closing parenthesis) of every match of ``pattern`` (which ends
    at the call's opening parenthesis) in the package's source."""
    found = []
    for path in SRC.rglob("*.py"):
        source = path.read_text()
        for match in re.finditer(pattern, source):
            depth, end = 1, match.end()
            while depth and end < len(source):
                depth += {"(": 1, ")": -1}.get(source[end], 0)
                end += 1
            found.append((str(path.relative_to(SRC)), source[match.start() : end]))
    return found


def test_every_torch_load_and_np_load_refuses_pickles():
    """Source-level: every torch.load passes weights_only=True, every np.load allow_pickle=False,
    and nothing calls pickle.load or yaml.load (unsafe loaders) at all."""
    torch_loads = _calls(r"torch\.load\(")
    assert torch_loads, "expected torch.load somewhere"
    assert [c for c in torch_loads if "weights_only=True" not in c[1]] == []
    assert [c for c in _calls(r"np\.load\(") if "allow_pickle=False" not in c[1]] == []
    assert _calls(r"\bpickle\.loads?\(|\byaml\.load\(|\bjoblib\.load\(|\bdill\.loads?\(") == []


# --- paths ---------------------------------------------------------------------------------


@pytest.fixture
def ensemble_folder(untrusted_run, tmp_path):
    """tmp/ens with a run inside, and tmp/models/run outside it."""
    run, _ = untrusted_run
    shutil.copytree(run, tmp_path / "ens" / "run")
    shutil.copytree(run, tmp_path / "models" / "run")
    return tmp_path / "ens"


def _ensemble(folder: Path, run: str, postprocess: str | None = None, name: str = "e.yaml") -> Path:
    document = {"members": [{"run": run}], **({"postprocess": postprocess} if postprocess else {})}
    path = folder / name
    path.write_text(yaml.safe_dump(document))
    return path


def _link_out(ens: Path) -> str:
    (ens / "link").symlink_to(ens.parent / "models" / "run")
    return "link"


def _run_with_weights_outside(ens: Path) -> str:
    shutil.copytree(ens / "run", ens / "mixed")
    (ens / "mixed" / rundir.WEIGHTS).unlink()
    (ens / "mixed" / rundir.WEIGHTS).symlink_to(ens.parent / "models" / "run" / rundir.WEIGHTS)
    return "mixed"


@pytest.mark.parametrize(
    ("entry", "allowed_confined"),
    [
        pytest.param(lambda ens: "run", True, id="inside"),
        pytest.param(lambda ens: (ens / "sub").mkdir() or "sub/../run", True, id="dotdot-that-stays-inside"),
        pytest.param(lambda ens: "../models/run", False, id="dotdot-out"),
        pytest.param(lambda ens: str(ens.parent / "models" / "run"), False, id="absolute-outside"),
        pytest.param(lambda ens: str(ens / "run"), False, id="absolute-even-inside"),
        pytest.param(_link_out, False, id="symlink-out"),
        pytest.param(_run_with_weights_outside, False, id="run-whose-weights-link-out"),
    ],
)
def test_ensemble_member_paths_are_the_users_unless_confined(ensemble_folder, entry, allowed_confined):
    path = _ensemble(ensemble_folder, entry(ensemble_folder))
    assert len(resolve([path]).networks) == 1  # the user's own file: anything goes
    if allowed_confined:
        assert len(resolve([path], confine=True).networks) == 1
    else:
        with pytest.raises(EnsembleError, match=r"members\.0\.run.*leads outside the file's folder") as caught:
            resolve([path], confine=True)
        assert str(path) in str(caught.value) and len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("postprocess", ["../models/run/postprocess.json", "/etc/passwd", "beside.json"])
def test_a_confined_ensembles_postprocess_file_stays_inside(ensemble_folder, postprocess):
    (ensemble_folder / "beside.json").symlink_to(ensemble_folder.parent / "models" / "run" / rundir.POSTPROCESS)
    path = _ensemble(ensemble_folder, "run", postprocess)
    with pytest.raises(EnsembleError, match=r"postprocess: .*leads outside the file's folder"):
        resolve([path], confine=True)


def test_confinement_by_environment_for_any_command(untrusted_run, ensemble_folder, tmp_path, monkeypatch, capsys):
    _, data = untrusted_run
    path = _ensemble(ensemble_folder, "../models/run")
    command = _predict(path, data, tmp_path / "sub.csv")
    monkeypatch.setenv("STEELSEG_CONFINE_PATHS", "1")
    line = _one_line_error(capsys, command)
    assert str(path) in line and "STEELSEG_CONFINE_PATHS" in line
    monkeypatch.delenv("STEELSEG_CONFINE_PATHS")
    assert main(command) == 0


def test_prediction_never_follows_paths_in_a_runs_config(untrusted_run, untrusted_copy, untrusted_pickle, tmp_path):
    """A run directory from elsewhere whose config.yaml names planted weights and missing data:
    predict builds the network from the run's own weights only."""
    _, data = untrusted_run
    marker = untrusted_pickle(tmp_path / "evil" / "init.pth")
    untrusted_pickle(tmp_path / "evil" / "encoder.pth")
    config = yaml.safe_load((untrusted_copy / rundir.CONFIG).read_text())
    config["model"].update(
        init_from=str(tmp_path / "evil" / "init.pth"), encoder_weights=str(tmp_path / "evil" / "encoder.pth")
    )
    config["data"].update(
        root="/nonexistent/data", folds="/nonexistent/folds.csv", fold=0, pseudo=["/nonexistent/pseudo"]
    )
    (untrusted_copy / rundir.CONFIG).write_text(yaml.safe_dump(config))
    assert main(_predict(untrusted_copy, data, tmp_path / "sub.csv")) == 0
    assert not marker.exists()


# --- ONNX files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(untrusted_run, tmp_path_factory):
    """A lone exported model file of the tiny run."""
    from steelseg.inference.export import export_onnx

    run, _ = untrusted_run
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    export_onnx(run, out)
    return out


def _edited(exported: Path, folder: Path, edit) -> Path:
    import onnx

    model = onnx.load(str(exported))
    edit(model, folder)
    path = folder / "model" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())  # as it is: onnx.save would rewrite external data
    return path


def _largest_initializer(model):
    return max(model.graph.initializer, key=lambda t: len(t.raw_data))


def _external(location_of):
    """An edit that moves the largest initializer's bytes to a file named by ``location_of(folder)``."""
    from onnx import TensorProto

    def edit(model, folder):
        tensor = _largest_initializer(model)
        location, file = location_of(folder)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(tensor.raw_data)
        length = len(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value

    return edit


def _linked(folder: Path):
    (folder / "model").mkdir(parents=True, exist_ok=True)
    (folder / "model" / "weights.bin").symlink_to(folder / "secret.bin")
    return "weights.bin", folder / "secret.bin"


def _huge_declared(model, folder):
    from onnx import TensorProto

    huge = model.graph.initializer.add()  # 4 TB declared, no bytes given
    huge.name, huge.data_type = "huge", TensorProto.FLOAT
    huge.dims.extend([1_000_000, 1_000_000])


def _rename_input(model, folder):
    model.graph.input[0].name = "pixels"
    for node in model.graph.node:
        node.input[:] = ["pixels" if name == "image" else name for name in node.input]


def _rename_output(model, folder):
    model.graph.output[0].name = "masks"
    for node in model.graph.node:
        node.output[:] = ["masks" if name == "probabilities" else name for name in node.output]


def _metadata(key, value):
    def edit(model, folder):
        entries = {p.key: p.value for p in model.metadata_props}
        if value is None:
            entries.pop(key)
        else:
            entries[key] = value
        del model.metadata_props[:]
        for k, v in entries.items():
            model.metadata_props.add(key=k, value=v)

    return edit


def _bytes(transform):
    def make(exported: Path, folder: Path) -> Path:
        path = folder / "model.onnx"
        path.write_bytes(transform(exported.read_bytes()))
        return path

    return make


BAD_ONNX = [
    pytest.param(_bytes(lambda b: b"this is not an onnx model\n" * 10), "not an ONNX model", id="not-onnx"),
    pytest.param(_bytes(lambda b: b""), "an empty file", id="empty"),
    pytest.param(_bytes(lambda b: b[: len(b) // 2]), "cut short", id="truncated"),
    pytest.param(_bytes(lambda b: b[:40]), "cut short", id="cut-in-the-header"),
    pytest.param(
        lambda e, f: _edited(e, f, _huge_declared), "declares 4,000,000,000,000 bytes", id="huge-declared-size"
    ),
    pytest.param(
        lambda e, f: _edited(e, f, _external(lambda d: ("../secret.bin", d / "secret.bin"))),
        "outside the model's folder",
        id="external-data-dotdot",
    ),
    pytest.param(
        lambda e, f: _edited(e, f, _external(lambda d: (str(d / "secret.bin"), d / "secret.bin"))),
        "outside the model's folder",
        id="external-data-absolute",
    ),
    pytest.param(
        lambda e, f: _edited(e, f, _external(_linked)), "outside the model's folder", id="external-data-symlink-out"
    ),
    pytest.param(lambda e, f: _edited(e, f, _rename_input), "expected one input, 'image'", id="wrong-input"),
    pytest.param(
        lambda e, f: _edited(e, f, _rename_output),
        "outputs ['masks'] are not those of a segment run",
        id="wrong-output",
    ),
    pytest.param(
        lambda e, f: _edited(e, f, _metadata("steelseg.config", None)), "not exported by steelseg", id="no-metadata"
    ),
    pytest.param(
        lambda e, f: _edited(e, f, _metadata("steelseg.config", "data: [unclosed")),
        "metadata is not a valid config",
        id="config-does-not-parse",
    ),
    pytest.param(
        lambda e, f: _edited(e, f, _metadata("steelseg.config", "model: {task: dream}")),
        "metadata is not a valid config",
        id="config-not-valid",
    ),
]


@pytest.mark.parametrize(("make", "says"), BAD_ONNX)
def test_a_bad_onnx_file_is_refused_in_one_line(untrusted_run, exported, tmp_path, capsys, make, says):
    _, data = untrusted_run
    path = make(exported, tmp_path)
    line = _one_line_error(capsys, _predict(path, data, tmp_path / "sub.csv", "--backend", "onnx"))
    assert str(path) in line and says in line, line


def test_a_model_file_over_the_size_limit_is_refused_before_reading(
    untrusted_run, exported, tmp_path, monkeypatch, capsys
):
    _, data = untrusted_run
    monkeypatch.setenv("STEELSEG_MAX_MODEL_MB", str(exported.stat().st_size / 2e6))
    line = _one_line_error(capsys, _predict(exported, data, tmp_path / "sub.csv", "--backend", "onnx"))
    assert str(exported) in line and "over the limit" in line and "STEELSEG_MAX_MODEL_MB" in line


def test_good_onnx_files_pass_the_checks(untrusted_run, exported, tmp_path):
    """The controls: the export itself, and its data moved to a file inside its folder."""
    _, data = untrusted_run
    inside = _edited(exported, tmp_path, _external(lambda d: ("weights.bin", d / "model" / "weights.bin")))
    for path in (exported, inside):
        out = tmp_path / f"{path.parent.name}.csv"
        assert main(_predict(path, data, out, "--backend", "onnx")) == 0
        assert out.is_file()
    moved = os.path.getsize(tmp_path / "model" / "weights.bin")
    assert (
        moved > 100_000 and os.path.getsize(inside) <= os.path.getsize(exported) - moved + 1024
    )  # really outside the graph
