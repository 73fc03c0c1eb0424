"""``predict`` and ``pseudo`` resume from their finished chunks: a real ``steelseg predict`` is
SIGKILLed once its first part file is out, started again, and must write the submission (and
class scores) of an uninterrupted run byte for byte; damaged parts are predicted again with a
warning; a resume with another model, other images or other settings is refused in one line.

The killed process runs with a ``sitecustomize`` that makes it wait after each part file, so
that the kill lands between chunks every time instead of by luck (12 strips in chunks of 2
take well under a second); the runs it is compared with do not have it. Those process tests
(~15 s) are marked slow; the fast suite interrupts a prediction in this process instead, at a
chosen chunk, for the same comparisons.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.inference import resume

OPTIONS = [
    "--backend",
    "torch",
    "--device",
    "cpu",
    "--batch-size",
    "2",
    "--chunk-size",
    "2",
    "--quiet",
    "--post",
    "pixel_threshold=0.52",
    "--post",
    "min_area=0",
    "--post",
    "peak_threshold=0.53",
]
CHUNKS = 6  # 12 strips, 2 a chunk
SLOW_PARTS = """\
# Test-only (tests/hardening/test_predict_resume.py): wait after each part file is written,
# so that a kill lands between two chunks.
import os, time
from steelseg.inference import resume

_save = resume.WorkFolder._save

def _slow_save(self, *args, **kwargs):
    _save(self, *args, **kwargs)
    time.sleep(float(os.environ["STEELSEG_TEST_PART_WAIT"]))

resume.WorkFolder._save = _slow_save
"""


def _env(tmp_path, slow: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    if slow:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SLOW_PARTS)
        env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]), STEELSEG_TEST_PART_WAIT="0.4")
    return env


def _command(run, images, out) -> list[str]:
    return [
        sys.executable,
        "-m",
        "steelseg",
        "predict",
        str(run),
        str(images),
        "--out",
        str(out),
        "--scores",
        str(out.with_name(out.stem + "-scores.csv")),
        *OPTIONS,
    ]


def _predict(run, images, out, tmp_path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        _command(run, images, out), env=_env(tmp_path, slow=False), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _outputs(out) -> tuple[bytes, bytes]:
    return out.read_bytes(), out.with_name(out.stem + "-scores.csv").read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(inference_run, tmp_path_factory):
    """The submission and class scores of one uninterrupted process."""
    run, images = inference_run
    tmp = tmp_path_factory.mktemp("uninterrupted")
    _predict(run, images, tmp / "sub.csv", tmp)
    submission, scores = _outputs(tmp / "sub.csv")
    assert submission.count(b",\n") and re.search(rb",\d+ \d+", submission), (
        "the submission must hold masks and empty rows"
    )
    return submission, scores


@pytest.fixture(scope="module")
def killed_parts(inference_run, tmp_path_factory):
    """The work folder a predict process left when SIGKILLed after its first part file."""
    run, images = inference_run
    tmp = tmp_path_factory.mktemp("killed")
    out = tmp / "sub.csv"
    process = subprocess.Popen(
        _command(run, images, out),
        env=_env(tmp, slow=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    parts = resume.parts_folder(out)
    deadline = time.monotonic() + 240
    while not list(parts.glob("chunk-*.npz")):
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "no part file within 240 s"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    finished = sorted(parts.glob("chunk-*.npz"))
    assert 1 <= len(finished) < CHUNKS and not out.exists(), finished
    return shutil.copytree(parts, tmp / "pristine")


class _Killed(BaseException):
    """Stands in for a SIGKILL: nothing catches it, and nothing after it runs."""


def _interrupt_after(monkeypatch, parts: int):
    """Make the ``parts``-th part file the last one written before the process 'dies'."""
    save = resume.WorkFolder._save
    written = []

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        written.append(1)
        if len(written) == parts:
            raise _Killed

    monkeypatch.setattr(resume.WorkFolder, "_save", save_then_die)


@pytest.fixture(scope="module")
def interrupted(inference_run, tmp_path_factory):
    """(work folder of a prediction in this process stopped after its second part file, the
    submission and class scores of an uninterrupted one in this process)."""
    run, images = inference_run
    tmp = tmp_path_factory.mktemp("interrupted")
    assert main([str(a) for a in _command(run, images, tmp / "whole.csv")[3:]]) == 0
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(_Killed):
            main([str(a) for a in _command(run, images, tmp / "sub.csv")[3:]])
    assert not (tmp / "sub.csv").exists()
    return shutil.copytree(resume.parts_folder(tmp / "sub.csv"), tmp / "pristine"), _outputs(tmp / "whole.csv")


def test_an_interrupted_predict_resumes_to_the_uninterrupted_submission(inference_run, interrupted, tmp_path, capsys):
    run, images = inference_run
    parts, whole = interrupted
    out = _resume_from(parts, tmp_path)
    assert main([str(a) for a in _command(run, images, out)[3:]]) == 0
    assert (
        f"steelseg predict: resuming from {resume.parts_folder(out)}: 4 of 12 images already predicted"
        in capsys.readouterr().err
    )
    assert _outputs(out) == whole and not resume.parts_folder(out).exists()


def _resume_from(killed_parts, tmp_path):
    out = tmp_path / "sub.csv"
    shutil.copytree(killed_parts, resume.parts_folder(out))
    return out


@pytest.mark.slow
def test_a_killed_predict_resumes_to_the_uninterrupted_submission(inference_run, killed_parts, uninterrupted, tmp_path):
    run, images = inference_run
    out = _resume_from(killed_parts, tmp_path)
    finished = len(list(killed_parts.glob("chunk-*.npz")))
    done = _predict(run, images, out, tmp_path)
    assert (
        f"steelseg predict: resuming from {resume.parts_folder(out)}: {2 * finished} of 12 images already predicted"
        in done.stderr
    )
    assert _outputs(out) == uninterrupted
    assert not resume.parts_folder(out).exists()  # removed once the outputs are whole


@pytest.mark.slow
def test_damaged_parts_are_predicted_again_with_a_warning(inference_run, killed_parts, uninterrupted, tmp_path):
    import hashlib

    run, images = inference_run
    out = _resume_from(killed_parts, tmp_path)
    parts = resume.parts_folder(out)
    flipped = sorted(parts.glob("chunk-*.npz"))[0]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    junk = parts / f"chunk-000005-{hashlib.sha256(b'junk').hexdigest()[:16]}.npz"  # its name's checksum holds
    junk.write_bytes(b"junk")
    done = _predict(run, images, out, tmp_path)
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    again = "its images are predicted again"
    assert warnings == [
        f"steelseg predict: warning: {flipped} fails its checksum (changed or damaged); {again}",
        f"steelseg predict: warning: {junk} does not load (not an .npz archive); {again}",
    ]
    assert _outputs(out) == uninterrupted


def _other_weights(run, tmp_path):
    """A copy of the run whose weights differ in one number (checksum record updated)."""
    from safetensors.numpy import load_file, save_file

    other = shutil.copytree(run, tmp_path / "other-run")
    tensors = load_file(other / rundir.WEIGHTS)
    name = sorted(k for k, v in tensors.items() if v.dtype == np.float32)[0]
    tensors[name] = tensors[name] + np.float32(1e-3)
    with rundir.writing_weights(other / rundir.WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    return other


def _refused(capsys, argv, parts, what: str):
    before = sorted(p.name for p in parts.iterdir())
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"steelseg predict: error: {parts} holds the progress of a prediction with {what}: delete that folder to "
        "start afresh, or choose another --out\n"
    )
    assert sorted(p.name for p in parts.iterdir()) == before  # nothing lost


def test_a_resume_with_another_model_is_refused_in_one_line(inference_run, interrupted, tmp_path, capsys):
    run, images = inference_run
    out = _resume_from(interrupted[0], tmp_path)
    other = _other_weights(run, tmp_path)
    argv = ["predict", other, images, "--out", out, *OPTIONS]
    what = f"other models, weights, backends or TTA (its {resume.MANIFEST} differs in 'members')"
    _refused(capsys, argv, resume.parts_folder(out), what)


@pytest.mark.parametrize(
    "change, what",
    [
        ("an image more", "other images (its manifest.json differs in 'images')"),
        ("--post pixel_threshold=0.6", "another postprocess (its manifest.json differs in 'postprocess')"),
        ("--batch-size 1", "another batch_size (its manifest.json differs in 'batch_size')"),
        ("--tta hflip", "other models, weights, backends or TTA (its manifest.json differs in 'members')"),
    ],
)
def test_a_resume_with_other_images_or_settings_is_refused_in_one_line(
    inference_run, interrupted, tmp_path, capsys, change, what
):
    run, images = inference_run
    out = _resume_from(interrupted[0], tmp_path)
    options = [*OPTIONS]
    if change == "an image more":
        images = shutil.copytree(images, tmp_path / "images")  # copytree keeps modification times: the same images
        shutil.copy2(sorted(images.iterdir())[0], images / "zz-extra.jpg")
    else:
        options += change.split()  # argparse takes the later --batch-size
    _refused(capsys, ["predict", run, images, "--out", out, *options], resume.parts_folder(out), what)


# --- skips and pseudo-labels ------------------------------------------------------------------


def test_skips_kept_in_the_parts_are_reported_again_or_stop_a_run_without_skip_bad(
    inference_run, tmp_path, capsys, monkeypatch
):
    run, strips = inference_run
    images = shutil.copytree(strips, tmp_path / "images")
    (images / "synth_11_00000b.jpg").write_bytes(b"")  # second of the first chunk of 4 (--chunk-size 3, batch 2)
    options = ["--skip-bad", *OPTIONS, "--chunk-size", "3"]
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "whole.csv"), *map(str, options)]) == 0
    capsys.readouterr()
    out = tmp_path / "sub.csv"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(_Killed):
            main(["predict", str(run), str(images), "--out", str(out), *map(str, options)])
    assert len(list(resume.parts_folder(out).glob("chunk-*.npz"))) == 2  # chunks of 4: 3 + 1 bad, then 4
    capsys.readouterr()
    without = [o for o in options if o != "--skip-bad"]
    assert main(["predict", str(run), str(images), "--out", str(out), *map(str, without)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"steelseg predict: error: {images / 'synth_11_00000b.jpg'}: cannot read image: the file is empty "
        f"(8 images done are kept in "
        f"{resume.parts_folder(out)}: run again to resume)"
    )
    assert main(["predict", str(run), str(images), "--out", str(out), *map(str, options)]) == 0
    err = capsys.readouterr().err
    assert (
        err.startswith(f"skipped {images / 'synth_11_00000b.jpg'}: cannot read image")
        and "skipped 1 bad image of 13" in err
    )
    assert out.read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_a_killed_pseudo_run_resumes_to_the_same_dataset(inference_run, tmp_path, capsys, monkeypatch):
    run, images = inference_run
    (tmp_path / "loose.json").write_text(json.dumps({"pixel_threshold": [0.5] * 4, "min_area": [0] * 4}))
    (tmp_path / "loose.yaml").write_text(f"members: [{{run: {run}}}]\npostprocess: loose.json\n")
    argv = [
        "pseudo",
        tmp_path / "loose.yaml",
        images,
        "--hi",
        "0.52",
        "--lo",
        "0.01",
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--chunk-size",
        "2",
        "--quiet",
    ]
    assert main([*map(str, argv), "--out", str(tmp_path / "whole")]) == 0
    whole = capsys.readouterr().out
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3)
        with pytest.raises(_Killed):
            main([*map(str, argv), "--out", str(tmp_path / "pseudo")])
    assert not (tmp_path / "pseudo").exists() and len(list((tmp_path / "pseudo.parts").glob("chunk-*.npz"))) == 3
    assert main([*map(str, argv), "--out", str(tmp_path / "pseudo")]) == 0
    captured = capsys.readouterr()
    assert (
        f"steelseg pseudo: resuming from {tmp_path / 'pseudo.parts'}: 6 of 12 images already predicted" in captured.err
    )
    assert captured.out == whole.replace(str(tmp_path / "whole"), str(tmp_path / "pseudo"))
    selected = sorted(p.name for p in (tmp_path / "whole" / "train_images").iterdir())
    assert (
        0 < len(selected) < 12 and sorted(p.name for p in (tmp_path / "pseudo" / "train_images").iterdir()) == selected
    )
    assert (tmp_path / "pseudo" / "train.csv").read_bytes() == (tmp_path / "whole" / "train.csv").read_bytes()
    assert not (tmp_path / "pseudo.parts").exists()


def test_chunks_start_on_batch_boundaries():
    assert [resume.chunk_size(n, 4) for n in (1, 4, 5, 256)] == [4, 4, 8, 256]
    assert resume.chunk_size(256, 3) == 258


@pytest.mark.parametrize("what", ["a file", "a folder of other files"])
def test_a_work_folder_name_taken_by_something_else_is_never_deleted(inference_run, tmp_path, capsys, what):
    run, images = inference_run
    out = tmp_path / "sub.csv"
    parts = resume.parts_folder(out)
    if what == "a file":
        parts.write_text("mine")
    else:
        parts.mkdir()
        (parts / "notes.txt").write_text("mine")
    assert main([str(a) for a in _command(run, images, out)[3:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"steelseg predict: error: {parts} ") and err.endswith(
        "progress is kept there: move it away\n"
    ), err
    assert (parts.read_text() if what == "a file" else (parts / "notes.txt").read_text()) == "mine"


def test_an_unreadable_manifest_starts_afresh_with_a_warning(inference_run, interrupted, tmp_path, capsys):
    run, images = inference_run
    parts, whole = interrupted
    out = _resume_from(parts, tmp_path)
    (resume.parts_folder(out) / resume.MANIFEST).write_text("{not json")
    assert main([str(a) for a in _command(run, images, out)[3:]]) == 0
    err = capsys.readouterr().err
    assert (
        f"steelseg predict: warning: {resume.parts_folder(out) / resume.MANIFEST} cannot be read; starting afresh"
        in err
    )
    assert "resuming" not in err
    assert _outputs(out) == whole


def test_a_planted_pickle_as_a_part_file_is_never_loaded(
    inference_run, interrupted, tmp_path, capsys, untrusted_pickle
):
    import hashlib

    run, images = inference_run
    parts, whole = interrupted
    out = _resume_from(parts, tmp_path)
    for part in resume.parts_folder(out).glob("chunk-*.npz"):
        part.unlink()
    planted = resume.parts_folder(out) / "planted.npz"
    marker = untrusted_pickle(planted, how="npz")
    part = planted.with_name(
        f"chunk-000000-{hashlib.sha256(planted.read_bytes()).hexdigest()[:16]}.npz"
    )  # its checksum holds
    planted.rename(part)
    assert main([str(a) for a in _command(run, images, out)[3:]]) == 0
    err = capsys.readouterr().err
    assert (
        f"steelseg predict: warning: {part} does not load (ValueError: " in err
        and "its images are predicted again" in err
    )
    assert not marker.exists() and _outputs(out) == whole


def test_a_part_with_arrays_a_gate_cannot_take_is_predicted_again(inference_run, interrupted, tmp_path, capsys):
    import hashlib
    import io

    run, images = inference_run
    parts, whole = interrupted
    out = _resume_from(parts, tmp_path)
    part = sorted(resume.parts_folder(out).glob("chunk-*.npz"))[0]
    with np.load(part) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["peaks"] = arrays["peaks"][:, :3]  # 3 classes of 4: finish would fail on it
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    part.unlink()
    forged = part.with_name(f"{part.name[:13]}{hashlib.sha256(buffer.getvalue()).hexdigest()[:16]}.npz")
    forged.write_bytes(buffer.getvalue())
    assert main([str(a) for a in _command(run, images, out)[3:]]) == 0
    err = capsys.readouterr().err
    assert (
        f"steelseg predict: warning: {forged} does not load (ValueError: peaks of shape (2, 3) and dtype float32" in err
    )
    assert _outputs(out) == whole


def test_a_bad_image_after_finished_chunks_keeps_them_for_a_run_with_skip_bad(inference_run, tmp_path, capsys):
    run, strips = inference_run
    images = shutil.copytree(strips, tmp_path / "images")
    (images / "zz-cut.jpg").write_bytes(b"\xff\xd8\xff")  # the 13th image, alone in the last chunk of 4
    out = tmp_path / "sub.csv"
    argv = [*map(str, _command(run, images, out)[3:]), "--chunk-size", "4"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"steelseg predict: error: {images / 'zz-cut.jpg'}: cannot read image") and err.count("\n") == 1
    )
    kept = len(list(resume.parts_folder(out).glob("chunk-*.npz")))
    assert err.endswith(f" ({4 * kept} images done are kept in {resume.parts_folder(out)}: run again to resume)\n")
    assert kept >= 2 and not out.exists()  # the reader reads ahead: the bad image stops it a chunk or so early
    assert main([*argv, "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert f"resuming from {resume.parts_folder(out)}: {4 * kept} of 13 images already predicted" in err
    assert "skipped 1 bad image of 13" in err and _rows_of(out)["zz-cut.jpg"] == ["", "", "", ""]


def _rows_of(path) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in path.read_text().splitlines()[1:]:
        image_id, _, encoded = line.split(",")
        rows.setdefault(image_id, []).append(encoded)
    return rows
