"""Bad data on the inference side (predict, tune, pseudo, ensembles), case by case: each ends in
one line naming the file, row or option (exit 1, no output file), or, with ``--skip-bad``, in
a logged skip and a count; never a traceback, never a silently wrong result, never an exit 0
with nothing written.

The bad files are written by hand here. The reference for every image that is read is the
same model on the 8-bit gray file it was made from: a 16-bit, float, RGBA or gray+alpha copy
of a strip must give the strip's own masks, and a good strip beside a bad one must give the
masks it gets without it.
"""

import csv
import json
import re
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.files import rundir
from steelseg.files.images import read_gray

# fp32 on the CPU, and post-processing that leaves some masks and gates some away: the tiny
# 1-epoch model's probabilities sit at 0.51-0.57.
PREDICT = [
    "--backend",
    "torch",
    "--device",
    "cpu",
    "--quiet",
    "--post",
    "pixel_threshold=0.52",
    "--post",
    "min_area=0",
    "--post",
    "peak_threshold=0.53",
]
GOOD = 3  # strips in the folders with one bad file


# --- helpers ---------------------------------------------------------------------------------


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(result, command: str, *patterns: str) -> str:
    """Exit 1 and exactly one stderr line, ``steelseg CMD: error: ...``, matching each pattern."""
    code, _, err = result
    assert code == 1, err
    assert err.startswith(f"steelseg {command}: error: ") and len(err.strip().splitlines()) == 1, err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)
    return err


def _rows(path) -> dict[str, list[str]]:
    """Submission CSV -> {image id: EncodedPixels of classes 1..4}, in file order."""
    rows: dict[str, list[str]] = {}
    with open(path, newline="") as handle:
        for image_id, class_id, encoded in list(csv.reader(handle))[1:]:
            rows.setdefault(image_id, []).append(encoded)
            assert len(rows[image_id]) == int(class_id)
    return rows


def _write_tiff(path, pixels: np.ndarray, sample_format: int = 1) -> None:
    """(H, W, S) array -> an uncompressed little-endian TIFF with S samples per pixel
    (``sample_format`` 1 unsigned, 3 float), written field by field: no library writes a
    2-sample TIFF."""
    pixels = np.ascontiguousarray(pixels)
    height, width, samples = pixels.shape
    data, bits = pixels.tobytes(), pixels.dtype.itemsize * 8
    ifd_at = 8 + len(data)
    extra_at = ifd_at + 2 + 11 * 12 + 4
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, samples, extra_at),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, samples),
        (278, 4, 1, height),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),
        (339, 3, samples, extra_at + 2 * samples),
    ]
    entries = b"".join(struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in tags)
    extra = struct.pack(f"<{samples}H", *[bits] * samples) + struct.pack(f"<{samples}H", *[sample_format] * samples)
    path.write_bytes(
        b"II*\x00" + struct.pack("<I", ifd_at) + data + struct.pack("<H", 11) + entries + b"\x00" * 4 + extra
    )


@pytest.fixture(scope="module")
def strip(inference_run) -> np.ndarray:
    """The first test strip, 64x320 uint8: the source of every re-encoded copy."""
    _, images = inference_run
    return read_gray(sorted(images.iterdir())[0])


def _good_folder(inference_run, folder):
    """The first ``GOOD`` test strips, as PNG (lossless: the copies below compare exactly)."""
    _, images = inference_run
    folder.mkdir()
    for path in sorted(images.iterdir())[:GOOD]:
        Image.fromarray(read_gray(path)).save(folder / (path.stem + ".png"))
    return folder


@pytest.fixture(scope="module")
def reference(inference_run, tmp_path_factory, strip):
    """{image id: masks} of the good strips predicted alone."""
    run, _ = inference_run
    folder = _good_folder(inference_run, tmp_path_factory.mktemp("reference") / "images")
    out = folder.parent / "sub.csv"
    assert main(["predict", str(run), str(folder), "--out", str(out), *PREDICT]) == 0
    rows = _rows(out)
    encoded = [e for masks in rows.values() for e in masks]
    assert any(encoded) and not all(encoded), "the reference must have masks and empty classes both"
    return rows


# --- unreadable or unusable images: an error naming the file, or a logged skip ----------------


def _truncated(path, strip):
    Image.fromarray(strip).save(path, format="JPEG", quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _float_tiff(values):
    return lambda path, strip: Image.fromarray(values(strip).astype(np.float32)).save(path)


def _over_the_cap(path, strip):
    Image.fromarray(np.tile(strip, (1, 4))).save(path)  # 64x1280: 81,920 px, over the 60,000 set below


BAD_IMAGES = [  # id, file name, writer, what the error says
    ("truncated JPEG", "b-cut.jpg", _truncated, r"cannot read image \(image file is truncated"),
    (
        "zero bytes",
        "b-empty.png",
        lambda path, strip: path.write_bytes(b""),
        r"cannot read image: the file is empty",
    ),
    (
        "text behind .png",
        "b-notes.png",
        lambda path, strip: path.write_text("not an image\n"),
        r"cannot read image: not PNG, JPEG, BMP, TIFF or PGM/PPM",
    ),
    (
        "2-channel TIFF",
        "b-two.tif",
        lambda path, strip: _write_tiff(path, np.stack([strip, strip], -1)),
        r"cannot read image \(neither Pillow nor OpenCV can decode it\)",
    ),
    (
        "float above 255",
        "b-hot.tif",
        _float_tiff(lambda s: s * 2.0 + 1),
        r"float image values span \d+\.\.\d+; expected 0\.\.1 or 0\.\.255",
    ),
    (
        "float with NaN",
        "b-nan.tif",
        _float_tiff(lambda s: np.where(s > 100, np.nan, s / 255)),
        r"float image holds NaN",
    ),
    (
        "far too small",
        "b-tiny.png",
        lambda path, strip: Image.fromarray(strip[:8, :8]).save(path),
        r"image is 8x8 \(HxW\), below the network's minimum of 32 px per side",
    ),
    (
        "far from the training size",
        "b-tall.png",
        lambda path, strip: Image.fromarray(np.tile(strip, (3, 1))[:160]).save(path),
        r"image is 160x320 \(HxW\): its shorter side is more than 2x away from the training images' "
        r"\(64 px\).*--any-size",
    ),
    ("over the pixel cap", "b-wide.png", _over_the_cap, r"64x1280 \(HxW\), 81,920 pixels; the limit is 60,000"),
]


@pytest.fixture
def one_bad(inference_run, tmp_path, strip, monkeypatch, request):
    """(folder of the good strips and one bad file that sorts among them, the bad file, its error)."""
    _, name, write, message = request.param
    monkeypatch.setenv("STEELSEG_MAX_PIXELS", "60000")  # the strips are 20,480 px
    folder = _good_folder(inference_run, tmp_path / "images")
    write(folder / name, strip)
    return folder, folder / name, message


def _bad_params():
    return pytest.mark.parametrize("one_bad", [pytest.param(case, id=case[0]) for case in BAD_IMAGES], indirect=True)


@_bad_params()
def test_predict_stops_at_a_bad_image_with_one_line_and_writes_nothing(inference_run, one_bad, tmp_path, capsys):
    run, _ = inference_run
    folder, bad, message = one_bad
    out = tmp_path / "sub.csv"
    _one_line_error(
        _cli(capsys, "predict", run, folder, "--out", out, *PREDICT),
        "predict",
        "^steelseg predict: error: " + re.escape(f"{bad}: "),
        message,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # no submission, no work folder


@_bad_params()
def test_predict_skip_bad_logs_the_image_and_predicts_the_others_as_without_it(
    inference_run, one_bad, reference, tmp_path, capsys
):
    run, _ = inference_run
    folder, bad, message = one_bad
    out, scores = tmp_path / "sub.csv", tmp_path / "scores.csv"
    code, said, err = _cli(capsys, "predict", run, folder, "--out", out, "--scores", scores, "--skip-bad", *PREDICT)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"skipped {bad}: ") and re.search(message, lines[0]), lines
    assert lines[1] == (
        f"steelseg predict: warning: skipped 1 bad image of {GOOD + 1} (each listed above); {out} gives it "
        f"empty masks (no defect) so that it lists every image; {scores} leaves it out"
    )
    assert len(lines) == 2 and f"wrote {4 * (GOOD + 1)} rows ({GOOD + 1} images x 4 classes)" in said
    rows = _rows(out)
    assert list(rows) == sorted(p.name for p in folder.iterdir())  # every image, in file order
    assert rows.pop(bad.name) == ["", "", "", ""]
    assert rows == reference
    with open(scores, newline="") as handle:
        assert sorted({row[0] for row in list(csv.reader(handle))[1:]}) == sorted(reference)
    assert not (tmp_path / "sub.csv.parts").exists()


@pytest.mark.parametrize("skip_bad", [False, True])
def test_every_image_bad_is_an_error_even_with_skip_bad(inference_run, tmp_path, capsys, skip_bad):
    run, _ = inference_run
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.jpg").write_text("no")
    out = tmp_path / "sub.csv"
    result = _cli(capsys, "predict", run, folder, "--out", out, *PREDICT, *(["--skip-bad"] if skip_bad else []))
    code, _, err = result
    if skip_bad:
        assert code == 1 and err.splitlines()[:2] == [
            f"skipped {folder / 'a.png'}: cannot read image: the file is empty",
            f"skipped {folder / 'b.jpg'}: cannot read image: not PNG, JPEG, BMP, TIFF or PGM/PPM",
        ]
        assert err.splitlines()[2] == (
            f"steelseg predict: error: every one of the 2 images of {folder} was skipped as bad "
            "(each listed above); nothing written"
        )
    else:
        _one_line_error(result, "predict", re.escape(f"{folder / 'a.png'}: cannot read image"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def _gray16(path, strip):
    Image.fromarray(strip.astype(np.uint16) * 257).save(path)  # mode I;16: 257 v -> v


def _rgb16(path, strip):
    import cv2

    cv2.imwrite(str(path), np.stack([strip] * 3, -1).astype(np.uint16) * 257)  # 16-bit colour: Pillow keeps one byte


READABLE = [  # id, file name, writer: each holds the strip's gray values in another form
    ("16-bit gray PNG", "16.png", _gray16),
    ("16-bit colour PNG", "16rgb.png", _rgb16),
    ("float TIFF 0..1", "f1.tif", _float_tiff(lambda s: s / 255)),
    ("float TIFF 0..255", "f255.tif", _float_tiff(lambda s: s.astype(np.float64))),
    (
        "RGBA PNG",
        "rgba.png",
        lambda path, s: Image.fromarray(np.stack([s, s, s, np.full_like(s, 7)], -1), "RGBA").save(path),
    ),
    (
        "gray + alpha PNG",
        "la.png",
        lambda path, s: Image.fromarray(np.stack([s, np.full_like(s, 200)], -1), "LA").save(path),
    ),
    ("RGB JPEG-named PNG", "rgb.jpg", lambda path, s: Image.fromarray(np.stack([s] * 3, -1)).save(path, format="PNG")),
]


@pytest.fixture(scope="module")
def readable(inference_run, tmp_path_factory, strip):
    """(folder with the strip as 8-bit PNG and in every form of READABLE, its submission rows)."""
    run, _ = inference_run
    folder = tmp_path_factory.mktemp("readable") / "images"
    folder.mkdir()
    Image.fromarray(strip).save(folder / "8.png")
    for _, name, write in READABLE:
        write(folder / name, strip)
    out = folder.parent / "sub.csv"
    assert main(["predict", str(run), str(folder), "--out", str(out), *PREDICT]) == 0
    return folder, _rows(out)


@pytest.mark.parametrize("name", [pytest.param(name, id=i) for i, name, _ in READABLE])
def test_deep_float_and_alpha_images_predict_as_their_8_bit_gray(readable, strip, name):
    folder, rows = readable
    assert np.array_equal(read_gray(folder / name), strip)  # the hand value: the strip it was made from
    assert rows[name] == rows["8.png"] and any(rows["8.png"])


@pytest.mark.parametrize(
    "make, message",
    [
        pytest.param(lambda d: d.mkdir(), r"no images found \(looked for \.jpg", id="empty folder"),
        pytest.param(
            lambda d: (d.mkdir(), (d / "notes.txt").write_text("x")),
            r"skipped 1 file with other suffixes \(\.txt\)",
            id="no image files",
        ),
        pytest.param(lambda d: None, r"image folder not found", id="missing folder"),
        pytest.param(lambda d: d.write_text("x"), r"image folder not found", id="a file, not a folder"),
    ],
)
def test_a_folder_without_images_is_one_line(inference_run, tmp_path, capsys, make, message):
    run, _ = inference_run
    make(tmp_path / "images")
    _one_line_error(
        _cli(capsys, "predict", run, tmp_path / "images", "--out", tmp_path / "sub.csv", *PREDICT),
        "predict",
        re.escape(str(tmp_path / "images")),
        message,
    )
    assert not (tmp_path / "sub.csv").exists() and not (tmp_path / "sub.csv.parts").exists()


# --- ensemble files, post-processing files and --post -----------------------------------------


def _other_classes(inference_run, tmp_path):
    """A copy of the run whose config names other classes (same weights)."""
    run, _ = inference_run
    other = shutil.copytree(run, tmp_path / "other")
    config = load_config(other / rundir.CONFIG).model_copy(deep=True)
    config.data.class_names = ["pits", "cracks", "scratches", "blotches"]
    (other / rundir.CONFIG).write_text(config.to_yaml())
    return other


ENSEMBLES = [  # id, YAML (RUN: the run's path), what the error says after the file name
    (
        "missing run",
        "members: [{run: RUN}, {run: nowhere}]",
        r": members\.1\.run: .*nowhere: not found \(expected a run directory",
    ),
    (
        "other classes",
        "members: [{run: RUN}, {run: OTHER}]",
        r"has classes \['pits', 'cracks', .*must share one class list",
    ),
    ("unknown member key", "members: [{run: RUN, wieght: 2}]", r": members\.0\.wieght: Extra inputs are not permitted"),
    ("unknown top key", "members: [{run: RUN}]\ncolour: red", r": colour: Extra inputs are not permitted"),
    ("syntax error", "members:\n  - run: RUN\n   weight: [\n", r": line 3: not valid YAML"),
    ("no members", "members: []", r": members: List should have at least 1 item"),
    ("bad weight", "members: [{run: RUN, weight: -1}]", r": members\.0\.weight: Input should be greater than 0"),
    ("infinite weight", "members: [{run: RUN, weight: .inf}]", r": members\.0\.weight: .*a finite number"),
    ("nan weight", "members: [{run: RUN, weight: .nan}]", r": members\.0\.weight: .*a finite number"),
    (
        "nan temperature",
        "members: [{run: RUN, temperature: .nan}]",
        r": members\.0\.temperature: Input should be a finite number",
    ),
    ("bad TTA", "members: [{run: RUN, tta: sideways}]", r": members\.0\.tta: .*unknown TTA 'sideways'; choose one of"),
    (
        "missing postprocess",
        "members: [{run: RUN}]\npostprocess: nope.json",
        r": postprocess file .*nope\.json not found",
    ),
]


@pytest.mark.parametrize("text, message", [pytest.param(t, m, id=i) for i, t, m in ENSEMBLES])
def test_a_bad_ensemble_file_is_one_line(inference_run, tmp_path, capsys, text, message):
    run, images = inference_run
    other = _other_classes(inference_run, tmp_path) if "OTHER" in text else None
    ensemble = tmp_path / "ensemble.yaml"
    ensemble.write_text(text.replace("RUN", str(run)).replace("OTHER", str(other)))
    result = _cli(capsys, "predict", ensemble, images, "--out", tmp_path / "sub.csv", *PREDICT)
    named = other if other else ensemble  # other classes: the runs are named, else the file
    _one_line_error(result, "predict", re.escape(str(named)), message)
    assert not (tmp_path / "sub.csv").exists()


BROKEN_CONFIGS = [  # id, change to the run's config.yaml (None: empty file), what the error says
    ("empty", None, r"data\.class_names is missing or empty"),
    ("no class names", {"data": {"class_names": None}}, r"data\.class_names is missing or empty"),
    ("unknown encoder", {"model": {"encoder_name": "resnet999"}}, r"'resnet999' is not an encoder .*did you mean"),
    ("unknown timm encoder", {"model": {"encoder_name": "tu-resnet181"}}, r"'tu-resnet181' .*did you mean tu-resnet18"),
]


@pytest.mark.parametrize("change, message", [pytest.param(c, m, id=i) for i, c, m in BROKEN_CONFIGS])
def test_a_run_with_a_broken_config_is_one_line(inference_run, tmp_path, capsys, change, message):
    import shutil

    import yaml

    source, images = inference_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    for section, values in (change or {}).items():
        config[section].update(values)
    (run / "config.yaml").write_text("" if change is None else yaml.safe_dump(config))
    result = _cli(capsys, "predict", run, images, "--out", tmp_path / "sub.csv", *PREDICT)
    _one_line_error(result, "predict", re.escape(str(run / "config.yaml")), message)
    assert not (tmp_path / "sub.csv").exists()


def _post(**change) -> str:
    data = {"pixel_threshold": [0.5] * 4, "min_area": [0] * 4, "min_component": [0] * 4, "fill_holes": [False] * 4}
    return json.dumps({**data, **change})


POSTPROCESS = [  # id, postprocess.json text, what the error says after the file name
    (
        "3 classes of 4",
        _post(pixel_threshold=[0.5] * 3),
        r"pixel_threshold must list one value per class \(4\), got \[0\.5, 0\.5, 0\.5\]",
    ),
    (
        "NaN threshold",
        _post().replace("[0.5, 0.5", "[NaN, 0.5", 1),
        r"pixel_threshold\[0\] = nan is not a probability in \[0, 1\]",
    ),
    ("negative area", _post(min_area=[0, -5, 0, 0]), r"min_area\[1\] = -5 is not a whole number of pixels >= 0"),
    ("fractional area", _post(min_area=[0, 0, 1.5, 0]), r"min_area\[2\] = 1\.5 is not a whole number of pixels >= 0"),
    ("unknown key", _post(colour=1), r"unknown key 'colour'; the keys are pixel_threshold, min_area"),
    ("not JSON", '{"pixel_threshold": [0.5,', r"not a post-processing file \(JSONDecodeError"),
    ("a list", "[1, 2]", r"not a post-processing file"),
]


@pytest.mark.parametrize("text, message", [pytest.param(t, m, id=i) for i, t, m in POSTPROCESS])
@pytest.mark.parametrize("route", ["--postprocess", "ensemble file"])
def test_a_bad_postprocess_file_is_one_line(inference_run, tmp_path, capsys, text, message, route):
    run, images = inference_run
    post = tmp_path / "post.json"
    post.write_text(text)
    if route == "--postprocess":
        models, options = [run], ["--postprocess", post]
    else:
        (tmp_path / "ensemble.yaml").write_text(f"members: [{{run: {run}}}]\npostprocess: post.json\n")
        models, options = [tmp_path / "ensemble.yaml"], []
    result = _cli(capsys, "predict", *models, images, "--out", tmp_path / "sub.csv", *options, "--quiet")
    _one_line_error(result, "predict", "^steelseg predict: error: " + re.escape(f"{post}: "), message)


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("colour=1", r"--post 'colour=1': expected KEY=VALUE with KEY one of pixel_threshold, min_area"),
        ("pixel_threshold", r"--post 'pixel_threshold': expected KEY=VALUE"),
        ("pixel_threshold=2", r"--post pixel_threshold=2: pixel_threshold\[0\] = 2 is not a probability in \[0, 1\]"),
        ("pixel_threshold=nan", r"pixel_threshold\[0\] = 'nan' is not a probability"),
        ("min_area=-1", r"--post min_area=-1: min_area\[0\] = -1 is not a whole number of pixels >= 0"),
        ("min_area=[1,2]", r"min_area must list one value per class \(4\), got \[1, 2\]"),
        ("peak=median", r"peak = 'median' is not one of max, top_k"),
        ("soft_gate=maybe", r"soft_gate = 'maybe' is not true or false"),
        ("label_threshold=0.5", r"head_threshold or soft_gate for pits needs a member with a class head"),
    ],
)
def test_a_bad_post_option_is_one_line(inference_run, tmp_path, capsys, assignment, message):
    run, images = inference_run
    _one_line_error(
        _cli(capsys, "predict", run, images, "--out", tmp_path / "sub.csv", "--post", assignment, "--quiet"),
        "predict",
        message,
    )
    assert not (tmp_path / "sub.csv").exists()


# --- tune on out-of-fold files ----------------------------------------------------------------


def _oof_run(path, ids, folds_file=None, fold=None, class_names=("pits", "scratches"), value=None):
    """A run directory of config.yaml and an oof.npz over ``ids`` (16x32 probabilities, random
    or all ``value``)."""
    overrides = [f"data.class_names={json.dumps(list(class_names))}"]
    if folds_file is not None:
        overrides += [f"data.folds={folds_file}", f"data.fold={fold}"]
    path.mkdir(parents=True)
    rundir.save_config(path, load_config(None, overrides))
    n, c = len(ids), len(class_names)
    probs = (
        np.random.default_rng(len(ids)).uniform(0, 1, (n, c, 16, 32))
        if value is None
        else np.full((n, c, 16, 32), value)
    )
    np.savez(
        path / rundir.OOF,
        image_ids=np.array(ids, dtype=str),
        scores=probs.max(axis=(2, 3)).astype(np.float32),
        labels=np.zeros((n, c), bool),
        image_shapes=np.array([(16, 32)] * n),
        backend=np.array("test"),
        probs=probs.astype(np.float16),
        masks=probs > 0.9,
        shapes=np.array([(16, 32)] * n),
    )
    return path


def _folds_file(path, folds: dict[str, int]):
    path.write_text("ImageId,Fold,Group\n" + "".join(f"{i},{f},{i}\n" for i, f in folds.items()))
    return path


def test_tune_names_a_missing_oof_file(inference_run, capsys):
    run, _ = inference_run  # trained with train.oof_scale=null
    message = re.escape(f"{run / rundir.OOF} not found: train with train.oof_scale")
    _one_line_error(_cli(capsys, "tune", run, "--quiet"), "tune", message)


def test_tune_refuses_fold_runs_whose_folds_overlap(tmp_path, capsys):
    _oof_run(tmp_path / "cv" / "fold-0", ["a.jpg", "b.jpg", "c.jpg"])
    _oof_run(tmp_path / "cv" / "fold-1", ["c.jpg", "d.jpg"])  # c.jpg in both validation folds: two splits
    _one_line_error(
        _cli(capsys, "tune", tmp_path / "cv", "--quiet"),
        "tune",
        re.escape(
            f"{tmp_path / 'cv' / 'fold-1' / rundir.OOF} and {tmp_path / 'cv' / 'fold-0' / rundir.OOF} share 1 "
            "of their out-of-fold images (first c.jpg) but not all"
        ),
        r"one folds file \(data\.folds\)",
    )
    assert not (tmp_path / "cv" / rundir.POSTPROCESS).exists()


def test_tune_refuses_an_oof_file_of_another_fold(tmp_path, capsys):
    folds = _folds_file(tmp_path / "folds.csv", {"a.jpg": 0, "b.jpg": 0, "c.jpg": 1, "d.jpg": 1})
    _oof_run(tmp_path / "cv" / "fold-0", ["a.jpg", "b.jpg"], folds, 0)
    _oof_run(tmp_path / "cv" / "fold-1", ["a.jpg", "b.jpg"], folds, 1)  # fold 0's file, copied over
    _one_line_error(
        _cli(capsys, "tune", tmp_path / "cv", "--quiet"),
        "tune",
        re.escape(
            f"{tmp_path / 'cv' / 'fold-1' / rundir.OOF}: image a.jpg is out of fold here, but the run validated "
            f"on fold 1 and {folds}:2 puts it in fold 0"
        ),
    )


def test_tune_takes_the_folds_of_one_split_and_repeats_of_a_fold(tmp_path, capsys):
    folds = _folds_file(tmp_path / "folds.csv", {"a.jpg": 0, "b.jpg": 0, "c.jpg": 1, "d.jpg": 1})
    _oof_run(tmp_path / "cv" / "fold-0", ["a.jpg", "b.jpg"], folds, 0)
    _oof_run(tmp_path / "cv" / "fold-1", ["c.jpg", "d.jpg"], folds, 1)
    _oof_run(tmp_path / "cv" / "fold-1-seed-2", ["c.jpg", "d.jpg"], folds, 1)  # the same fold again: averaged
    code, said, err = _cli(capsys, "tune", tmp_path / "cv", "--quiet")
    assert code == 0, err
    assert said.startswith("tuned on 4 out-of-fold images\n")


def test_repeats_of_a_fold_weigh_the_same_in_the_mean(tmp_path):
    from steelseg.inference.sources import ensemble_classes, resolve
    from steelseg.inference.tune import _load_members

    for k, value in enumerate([0.25, 0.5, 1.0]):
        _oof_run(tmp_path / "cv" / f"fold-0-seed-{k}", ["a.jpg"], value=value)
    networks = resolve([tmp_path / "cv"]).networks
    (member,) = _load_members(networks, ensemble_classes(networks)[1], 2)
    assert np.all(member.entries["a.jpg"].probs == np.float32(1.75 / 3))  # not ((0.25 + 0.5) / 2 + 1) / 2


@pytest.mark.parametrize(
    "damage, message",
    [
        pytest.param(lambda p: p.write_bytes(b"not a zip"), r"not a readable \.npz file", id="not an npz"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:200]), r"not a readable \.npz file", id="truncated"),
    ],
)
def test_tune_names_a_damaged_oof_file(tmp_path, capsys, damage, message):
    run = _oof_run(tmp_path / "run", ["a.jpg", "b.jpg"])
    damage(run / rundir.OOF)
    _one_line_error(_cli(capsys, "tune", run, "--quiet"), "tune", re.escape(str(run / rundir.OOF)), message)


def test_tune_refuses_runs_with_other_classes(tmp_path, capsys):
    first = _oof_run(tmp_path / "a", ["a.jpg"])
    second = _oof_run(tmp_path / "b", ["a.jpg"], class_names=("pits", "cracks"))
    _one_line_error(
        _cli(capsys, "tune", first, second, "--out", tmp_path / "out", "--quiet"),
        "tune",
        re.escape(f"{second} has classes ['pits', 'cracks'], but {first} has ['pits', 'scratches']"),
    )


# --- pseudo ----------------------------------------------------------------------------------


@pytest.fixture
def loose(inference_run, tmp_path):
    """An ensemble file of the run whose post-processing keeps every pixel above 0.5: with
    --hi 0.51 the tiny model's confident images pass rule first."""
    run, _ = inference_run
    (tmp_path / "loose.json").write_text(_post())
    (tmp_path / "loose.yaml").write_text(f"members: [{{run: {run}}}]\npostprocess: loose.json\n")
    return tmp_path / "loose.yaml"


PSEUDO = ["--hi", "0.51", "--lo", "0.01", "--backend", "torch", "--device", "cpu", "--quiet"]


@pytest.mark.parametrize("existing", ["a file in the folder", "a file"])
def test_pseudo_never_writes_over_existing_files(inference_run, loose, tmp_path, capsys, existing):
    _, images = inference_run
    out = tmp_path / "pseudo"
    if existing == "a file":
        out.write_text("mine")
    else:
        out.mkdir()
        (out / "train.csv").write_text("mine")
    _one_line_error(
        _cli(capsys, "pseudo", loose, images, "--out", out, *PSEUDO),
        "pseudo",
        re.escape(f"{out} exists and is not an empty folder; choose another output folder"),
    )
    assert (out.read_text() if out.is_file() else (out / "train.csv").read_text()) == "mine"
    assert not (tmp_path / "pseudo.parts").exists()


def test_pseudo_output_into_the_image_folder_is_refused(inference_run, loose, tmp_path, capsys):
    _, images = inference_run
    before = sorted(images.iterdir())
    _one_line_error(
        _cli(capsys, "pseudo", loose, images, "--out", images, *PSEUDO), "pseudo", "exists and is not an empty folder"
    )
    assert sorted(images.iterdir()) == before


def test_pseudo_skip_bad_logs_and_labels_the_others_as_without_it(inference_run, loose, tmp_path, capsys, strip):
    folder = _good_folder(inference_run, tmp_path / "images")
    code, said, err = _cli(capsys, "pseudo", loose, folder, "--out", tmp_path / "clean", *PSEUDO)
    assert code == 0, err
    (folder / "b-empty.png").write_bytes(b"")
    result = _cli(capsys, "pseudo", loose, folder, "--out", tmp_path / "without", *PSEUDO)
    _one_line_error(result, "pseudo", re.escape(f"{folder / 'b-empty.png'}: cannot read image"))
    assert not (tmp_path / "without").exists() and not (tmp_path / "without.parts").exists()
    code, said_bad, err = _cli(capsys, "pseudo", loose, folder, "--out", tmp_path / "skipping", *PSEUDO, "--skip-bad")
    assert code == 0 and err.startswith(f"skipped {folder / 'b-empty.png'}: cannot read image"), err
    assert f"skipped 1 bad image of {GOOD + 1} (each listed above)" in said_bad
    assert said_bad.splitlines()[0] == said.splitlines()[0]  # "k of 3 images ... selected": the bad one is not counted
    assert (tmp_path / "skipping" / "train.csv").read_bytes() == (tmp_path / "clean" / "train.csv").read_bytes()
    info = json.loads((tmp_path / "skipping" / "pseudo.json").read_text())
    assert info["counts"]["skipped_bad"] == 1 and info["counts"]["images"] == GOOD


def test_pseudo_with_every_image_bad_is_an_error_not_an_empty_dataset(loose, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.jpg"):
        (folder / name).write_bytes(b"\x89PNG\r\n")
    code, said, err = _cli(capsys, "pseudo", loose, folder, "--out", tmp_path / "pseudo", *PSEUDO, "--skip-bad")
    assert code == 1 and said == ""
    assert err.splitlines()[-1] == (
        f"steelseg pseudo: error: every one of the 3 images of {folder} was skipped as bad (each "
        f"listed above); nothing written to {tmp_path / 'pseudo'}"
    )
    assert len(err.splitlines()) == 4 and sorted(p.name for p in tmp_path.iterdir()) == [
        "images",
        "loose.json",
        "loose.yaml",
    ]


# --- the other prediction paths: classifiers alone, sharded processes --------------------------


class _Brightness:
    """A classifier that answers each image's mean brightness for its one class."""

    name = "fake"

    def __call__(self, x):
        from steelseg.core.outputs import CLASSES

        return {CLASSES: x.mean(axis=(1, 2, 3))[:, None].astype(np.float32)}

    def describe(self):
        return "fake"


def test_a_classifier_skips_bad_images_and_scores_the_rest(tmp_path):
    from steelseg.core.postprocess import PostProcess
    from steelseg.inference.ensemble import Member
    from steelseg.inference.predictor import Predictor
    from steelseg.inference.skipped import SkippedImages

    config = load_config(
        None, ["data.class_names=[bright]", "model.task=classify", "model.input_mean=0", "model.input_std=1"]
    )
    predictor = Predictor(
        [Member("fake", config, _Brightness(), [0])], PostProcess.uniform(1, 0.5, 0), ["bright"], batch_size=2
    )
    for name, value in (("a.png", 51), ("c.png", 204)):
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / name)
    (tmp_path / "b.png").write_bytes(b"")
    logged = []
    skip = SkippedImages(logged.append)
    image_ids, scores = predictor.score_folder(tmp_path, progress=False, skip=skip)
    assert image_ids == ["a.png", "c.png"] and np.allclose(scores[:, 0], [0.2, 0.8])
    assert logged == [f"skipped {tmp_path / 'b.png'}: cannot read image: the file is empty"]
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "c.png").write_bytes(b"")
    image_ids, scores = predictor.score_folder(tmp_path, progress=False, skip=SkippedImages(logged.append))
    assert image_ids == [] and scores.shape == (0, 1)


@pytest.mark.slow
def test_sharded_skip_bad_writes_the_single_process_submission(inference_run, tmp_path):
    import os
    import subprocess
    import sys

    run, _ = inference_run
    folder = _good_folder(inference_run, tmp_path / "images")
    (folder / "synth_11_00000b.png").write_bytes(b"")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)

    def predict(prefix, out):
        command = [
            *prefix,
            "-m",
            "steelseg",
            "predict",
            str(run),
            str(folder),
            "--out",
            str(out),
            "--skip-bad",
            "--batch-size",
            "1",
        ]
        done = subprocess.run(command + PREDICT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    single = predict([sys.executable], tmp_path / "single.csv")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    sharded = predict(torchrun, tmp_path / "sharded.csv")
    assert (tmp_path / "sharded.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    bad = f"skipped {folder / 'synth_11_00000b.png'}: cannot read image"
    assert single.count(bad) == 1 and sharded.count(bad) == 1  # logged by the process whose shard holds it
    assert sharded.count(f"skipped 1 bad image of {GOOD + 1}") == 1  # the count, by rank 0


@pytest.mark.parametrize(
    "outputs, message",
    [
        (["--out", "{tmp}"], "--out {tmp} is a folder; give the name of a file to write"),
        (
            ["--out", "{tmp}/notes.txt/sub.csv"],
            "--out {tmp}/notes.txt/sub.csv: {tmp}/notes.txt is a file, not a folder",
        ),
        (
            ["--out", "{tmp}/sub.csv", "--scores", "{tmp}"],
            "--scores {tmp} is a folder; give the name of a file to write",
        ),
        (
            ["--out", "{tmp}/notes.txt/deeper/sub.csv"],
            "--out {tmp}/notes.txt/deeper/sub.csv: {tmp}/notes.txt is a file, not a folder",
        ),
    ],
    ids=["out is a folder", "out below a file", "scores is a folder", "out far below a file"],
)
def test_an_output_that_cannot_be_written_is_refused_before_predicting(
    inference_run, tmp_path, capsys, outputs, message
):
    run, images = inference_run
    (tmp_path / "notes.txt").write_text("mine")
    argv = ["predict", run, images, *(o.format(tmp=tmp_path) for o in outputs), *PREDICT]
    _one_line_error(
        _cli(capsys, *argv),
        "predict",
        "^" + re.escape(f"steelseg predict: error: {message.format(tmp=tmp_path)}") + "$",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_pseudo_output_below_a_file_is_refused_before_predicting(inference_run, loose, tmp_path, capsys):
    _, images = inference_run
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "pseudo"
    _one_line_error(
        _cli(capsys, "pseudo", loose, images, "--out", out, *PSEUDO),
        "pseudo",
        re.escape(f"cannot keep progress in {out}.parts (Not a directory): choose another output"),
    )
