"""Bad training data, case by case: every one ends in one line naming the file and row (or
option), or, with ``train --skip-bad``, in a logged skip; never a traceback, never a silently
wrong result.

Tables are written by hand here (no steelseg writer involved); run lengths count down each
column from pixel 1, so in a 4x5 image column j holds pixels 4j+1 .. 4j+4.
"""

import json
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import main
from steelseg.config import DataConfig, load_config
from steelseg.files import synth
from steelseg.files.annotations import AnnotationError, read_annotations
from steelseg.files.datasets import DatasetError, open_configured, open_dataset
from steelseg.files.images import ImageError
from tiny_runs import tiny_cli

LONG = "ImageId,ClassId,EncodedPixels\n"
WIDE = "ImageId_ClassId,EncodedPixels\n"
SETUP = tiny_cli("train.oof_scale=null")


# --- helpers ---------------------------------------------------------------------------------


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(result, command: str, *pattern: str) -> str:
    """Exit 1 and exactly one stderr line, ``steelseg CMD: error: ...``, matching each pattern."""
    code, _, err = result
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"steelseg {command}: error: "), err
    for p in pattern:
        assert re.search(p, err), (p, err)
    return err


def _ramp(height=4, width=5, offset=0) -> np.ndarray:
    return ((np.arange(height * width).reshape(height, width) * 7 + offset) % 200 + 20).astype(np.uint8)


def _severstal(root, table: str, images=("a.jpg", "b.jpg", "c.jpg"), classes=None, shape=(4, 5)):
    """A severstal-layout folder: PNG bytes behind .jpg names (lossless), and ``table`` as train.csv."""
    (root / "train_images").mkdir(parents=True)
    for k, name in enumerate(images):
        Image.fromarray(_ramp(*shape, offset=40 * k)).save(root / "train_images" / name, format="PNG")
    (root / "train.csv").write_bytes(table.encode() if isinstance(table, str) else table)
    if classes:
        (root / "classes.json").write_text(json.dumps({"class_names": classes}))
    return root


def _mask_folder(root, labels: dict[str, np.ndarray], classes=None, shape=(20, 30)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (stem, label) in enumerate(labels.items()):
        Image.fromarray(_ramp(*shape, offset=30 * k)).save(root / "images" / f"{stem}.png")
        if label is not None:
            Image.fromarray(label).save(root / "masks" / f"{stem}.png")
    if classes:
        (root / "classes.json").write_text(json.dumps({"class_names": classes}))
    return root


def _labels(value=1, shape=(20, 30)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 3:9] = value
    return labels


# --- tables: every malformed row names its file and line -------------------------------------

BAD_TABLES = [
    # (id, table, message after "train.csv:")
    ("empty file", "", r"1: empty file, expected a header"),
    (
        "extra column",
        "ImageId,ClassId,EncodedPixels,Notes\na.jpg,1,1 2,x\n",
        r"1: unknown header 'ImageId,ClassId,EncodedPixels,Notes'",
    ),
    ("missing column", "ImageId,EncodedPixels\na.jpg,1 2\n", r"1: unknown header 'ImageId,EncodedPixels'"),
    ("semicolons", "ImageId;ClassId;EncodedPixels\na.jpg;1;1 2\n", r"1: unknown header .*separated by semicolons"),
    ("row with an extra cell", LONG + "a.jpg,1,1 2,oops\n", r"2: expected 3 columns, got 4"),
    ("row missing a cell", LONG + "a.jpg,1 2\n", r"2: expected 3 columns, got 2"),
    ("odd token count", LONG + "a.jpg,1,1 2 3\n", r"2: image a.jpg class 1: odd number of tokens \(3\)"),
    ("non-numeric token", LONG + "a.jpg,1,1 x\n", r"2: image a.jpg class 1: non-integer token 'x'"),
    ("decimal token", LONG + "a.jpg,1,1.5 2\n", r"2: image a.jpg class 1: non-integer token '1.5'"),
    (
        "underscore token",
        LONG + "a.jpg,1,1_000 2\n",
        r"2: image a.jpg class 1: non-integer token '1_000'",
    ),  # int() takes it
    ("signed token", LONG + "a.jpg,1,+3 2\n", r"2: image a.jpg class 1: non-integer token '\+3'"),
    ("zero start", LONG + "a.jpg,1,0 3\n", r"2: image a.jpg class 1: start 0 in run 1 is below 1"),
    ("negative start", LONG + "a.jpg,1,-4 3\n", r"2: image a.jpg class 1: start -4 in run 1 is below 1"),
    ("zero length", LONG + "a.jpg,1,1 0\n", r"2: image a.jpg class 1: length 0 in run 1 is below 1"),
    ("negative length", LONG + "a.jpg,1,5 -2\n", r"2: image a.jpg class 1: length -2 in run 1 is below 1"),
    ("unsorted runs", LONG + "a.jpg,1,10 2 1 2\n", r"2: image a.jpg class 1: runs out of order: run 2 starts at 1"),
    (
        "overlapping runs",
        LONG + "a.jpg,1,1 5 3 2\n",
        r"2: image a.jpg class 1: overlapping runs: run 2 starts at 3, inside run 1",
    ),
    (
        "number past int64",
        LONG + "a.jpg,1,99999999999999999999 1\n",
        r"2: image a.jpg class 1: number 9{20} is out of range",
    ),
    (
        "start near int64 max",
        LONG + "a.jpg,1,9223372036854775807 5\n",
        r"2: image a.jpg class 1: number 9223372036854775807 is out",
    ),
    ("class id 0", LONG + "a.jpg,0,1 2\n", r"2: unknown class id 0 for image a.jpg \(class ids start at 1\)"),
    ("class id x", LONG + "a.jpg,x,1 2\n", r"2: class id 'x' of image a.jpg is not an integer"),
    ("class id 1.0", LONG + "a.jpg,1.0,1 2\n", r"2: class id '1.0' of image a.jpg is not an integer"),
    ("class id +1", LONG + "a.jpg,+1,1 2\n", r"2: class id '\+1' of image a.jpg is not an integer"),
    (
        "contradictory rows",
        LONG + "a.jpg,1,1 2\nb.jpg,1,3 1\na.jpg,1,5 1\n",
        r"4: duplicate row for image a.jpg class 1 \(first at line 2\) with a different mask",
    ),
    (
        "contradictory 2019 rows",
        WIDE + "a.jpg_1,1 2\na.jpg_1,\n",
        r"3: duplicate row for image a.jpg class 1 \(first at line 2\)",
    ),
    ("2019 id without class", WIDE + "a.jpg,1 2\n", r"2: ImageId_ClassId 'a.jpg' does not end in _<class id>"),
    ("2019 id with class x", WIDE + "a.jpg_x,1 2\n", r"2: class id 'x' of image a.jpg is not an integer"),
    ("2019 id without image", WIDE + "_1,1 2\n", r"2: missing image id"),
    ("not UTF-8", (LONG + "a\xe9.jpg,1,1 2\n").encode("latin-1"), r"2: not UTF-8 text \(byte 0xe9"),
    ("binary file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", r"1: not UTF-8 text"),
    ("NUL in a row", LONG + "a.jpg,1,1\x00 2\n", r"2: image a.jpg class 1: non-integer token"),
]


@pytest.mark.parametrize("table, message", [pytest.param(t, m, id=i) for i, t, m in BAD_TABLES])
def test_a_bad_table_names_its_file_and_line(tmp_path, table, message):
    path = tmp_path / "train.csv"
    path.write_bytes(table.encode() if isinstance(table, str) else table)
    with pytest.raises(AnnotationError, match=f"train.csv:{message}"):
        read_annotations(path, num_classes=4)


def test_an_unknown_class_beyond_classes_json_names_the_row(tmp_path):
    root = _severstal(tmp_path / "d", LONG + "a.jpg,1,1 2\nb.jpg,5,1 2\n", classes=["p", "q", "r", "s"])
    with pytest.raises(AnnotationError, match=r"train.csv:3: unknown class id 5 for image b.jpg \(expected 1..4\)"):
        open_dataset(root)


# The commands that read a training table stop at its first bad row with one line.
COMMAND_CASES = [
    (
        "odd token count",
        LONG + "a.jpg,1,1 2\nb.jpg,2,1 2 3\n",
        r"train.csv:3: image b.jpg class 2: odd number of tokens",
    ),
    (
        "row without image",
        LONG + "a.jpg,1,1 2\nghost.jpg,1,1 1\n",
        r"train.csv:3: image ghost.jpg not found in .*train_images",
    ),
    (
        "run past the image",
        LONG + "a.jpg,1,18 5\n",
        r"train.csv:2: image a.jpg class 1: run '18 5' ends at pixel 22, past the end of a 4x5",
    ),
    (
        "contradictory rows",
        LONG + "a.jpg,1,1 2\na.jpg,1,9 2\n",
        r"train.csv:3: duplicate row for image a.jpg class 1 \(first at line 2\)",
    ),
]


@pytest.mark.parametrize(
    "command, table, message",
    [
        pytest.param(command, table, message, id=f"{command}: {name}")
        for command in ("train", "folds", "eda")
        for name, table, message in COMMAND_CASES
        if not (command == "folds" and name == "run past the image")  # folds decodes no mask: checked by train and eda
    ],
)
def test_commands_stop_at_the_first_bad_row_with_one_line(tmp_path, capsys, command, table, message):
    images = [f"{c}.jpg" for c in "abcd"]
    root = _severstal(
        tmp_path / "data", table, images, shape=(16, 32) if command == "folds" else (4, 5)
    )  # hashes need 8x8
    out = tmp_path / "out"
    argv = {
        "train": ["train", root, "--out", out, *SETUP],
        "folds": ["folds", root, "--out", tmp_path / "folds.csv", "--k", "2", "--quiet"],
        "eda": ["eda", root, "--out", out, "--quiet"],
    }[command]
    _assert_one_line_error(_cli(capsys, *argv), command, message)
    assert not (tmp_path / "folds.csv").exists()


@pytest.mark.parametrize("which", ["truth", "prediction"])
@pytest.mark.parametrize(
    "row, message",
    [
        pytest.param("b.jpg,1,1 2 3", r"odd number of tokens", id="odd tokens"),
        pytest.param(
            "b.jpg,1,19 5", r"run '19 5' ends at pixel 23, past the end of a 4x5 image", id="run past the image"
        ),
        pytest.param("b.jpg,7,1 2", r"unknown class id 7 for image b.jpg \(expected 1..4\)", id="unknown class"),
    ],
)
def test_score_names_the_bad_row_of_either_table(tmp_path, capsys, which, row, message):
    images = _severstal(tmp_path / "data", LONG, ["a.jpg", "b.jpg"]) / "train_images"
    good = tmp_path / "good.csv"
    good.write_text(WIDE + "".join(f"{i}_{c},\n" for i in ("a.jpg", "b.jpg") for c in range(1, 5)))
    bad = tmp_path / "bad.csv"
    bad.write_text(LONG + "a.jpg,1,1 2\n" + row + "\n")
    truth, pred = (bad, good) if which == "truth" else (good, bad)
    result = _cli(capsys, "score", truth, pred, "--shape", 4, 5, "--images", images, "--quiet")
    _assert_one_line_error(result, "score", rf"bad.csv:3: .*{message}")


def test_report_names_a_bad_prediction_row(tmp_path, capsys):
    images = _severstal(tmp_path / "data", LONG, ["a.jpg", "b.jpg"]) / "train_images"
    (tmp_path / "truth.csv").write_text(LONG + "a.jpg,1,1 2\n")
    (tmp_path / "pred.csv").write_text(LONG + "a.jpg,1,1 2\nb.jpg,2,4 2 1 1\n")
    result = _cli(
        capsys, "report", tmp_path / "pred.csv", tmp_path / "truth.csv", images, "--out", tmp_path / "page", "--quiet"
    )
    _assert_one_line_error(result, "report", r"pred.csv:3: image b.jpg class 2: runs out of order")


# --- tables that are fine, read to the values written --------------------------------------


def _read_back(tmp_path, data: bytes):
    path = tmp_path / "train.csv"
    path.write_bytes(data)
    return read_annotations(path, num_classes=4)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xef\xbb\xbf" + b"ImageId,ClassId,EncodedPixels\na.jpg,2,1 3\nb.jpg,1,\n", id="UTF-8 BOM"),
        pytest.param(b"ImageId,ClassId,EncodedPixels\r\na.jpg,2,1 3\r\nb.jpg,1,\r\n", id="CRLF"),
        pytest.param(
            b"\xef\xbb\xbfImageId,ClassId,EncodedPixels\r\na.jpg,2,1 3\r\nb.jpg,1,\r\n", id="BOM and CRLF (Excel)"
        ),
        pytest.param(
            "ImageId,ClassId,EncodedPixels\r\na.jpg,2,1 3\r\nb.jpg,1,\r\n".encode("utf-16"), id="UTF-16 with BOM"
        ),
        pytest.param(
            b"ImageId,ClassId,EncodedPixels\na.jpg,2,1 3\nb.jpg,1,\na.jpg,2,1 3\n", id="identical duplicate row"
        ),
        pytest.param(
            b"ImageId,ClassId,EncodedPixels\na.jpg,2,1  3\nb.jpg,1,\na.jpg,2, 1 3 \n",
            id="duplicate differing in spaces",
        ),
        pytest.param(
            b'ImageId,ClassId,EncodedPixels\n"a.jpg","2","1 3"\n\nb.jpg,1,\n', id="quoted cells and a blank line"
        ),
    ],
)
def test_tables_in_other_encodings_and_line_ends_read_the_same(tmp_path, data):
    table = _read_back(tmp_path, data)
    assert table.image_ids == ["a.jpg", "b.jpg"]
    assert list(table.encoded) == [("a.jpg", 2)] and table.get("a.jpg", 2).split() == ["1", "3"]
    assert table.lines[("a.jpg", 2)] == 2  # a repeated row keeps the first line
    np.testing.assert_array_equal(table.mask("a.jpg", 2, (4, 5))[:, 0], [True, True, True, False])
    assert table.mask("a.jpg", 2, (4, 5)).sum() == 3 and not table.mask("b.jpg", 1, (4, 5)).any()


def test_header_only_table_reads_as_no_images_and_touching_runs_are_one_region(tmp_path):
    assert _read_back(tmp_path, LONG.encode()).image_ids == []
    table = _read_back(tmp_path, (LONG + "a.jpg,1,1 2 3 2\n").encode())  # runs 1-2 and 3-4 touch
    np.testing.assert_array_equal(table.mask("a.jpg", 1, (4, 5))[:, 0], [True] * 4)


def test_a_mask_longer_than_csvs_default_field_limit_reads(tmp_path):
    runs = " ".join(
        f"{2 * i + 1} 1" for i in range(20_000)
    )  # every other pixel of a 200x200 image: ~230,000 characters
    table = _read_back(tmp_path, (LONG + f"a.jpg,1,{runs}\n").encode())
    assert len(table.get("a.jpg", 1)) > 131_072
    assert table.mask("a.jpg", 1, (200, 200)).sum() == 20_000


# --- images: broken files, sizes, channels, depths ----------------------------------------


def _truncated_jpeg(path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96), dtype=np.uint8)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:400])  # the header is whole, the pixels are cut short


BROKEN_IMAGES = [
    ("zero bytes", lambda path: path.write_bytes(b"")),
    ("truncated JPEG", _truncated_jpeg),
    ("text behind .jpg", lambda path: path.write_text("ImageId,ClassId\n")),
    ("HTML error page", lambda path: path.write_text("<html><body>403 Forbidden</body></html>")),
]


@pytest.mark.parametrize("damage", [pytest.param(d, id=i) for i, d in BROKEN_IMAGES])
def test_a_broken_image_names_its_file_when_loaded(tmp_path, damage):
    root = _severstal(tmp_path / "data", LONG + "a.jpg,1,1 2\n")
    damage(root / "train_images" / "b.jpg")
    dataset = open_dataset(root)
    dataset.load(0)
    with pytest.raises(ImageError, match=r"train_images/b.jpg: (cannot read image|image file is truncated)"):
        dataset.load(1)


@pytest.mark.parametrize("damage", [pytest.param(d, id=i) for i, d in BROKEN_IMAGES if i != "truncated JPEG"])
def test_train_stops_at_a_broken_image_with_one_line(tmp_path, capsys, damage):
    data = tmp_path / "data"
    synth.write_dataset(data, 6, seed=2, height=64, width=256, progress=False)
    damage(data / "train_images" / "synth_2_00002.jpg")
    result = _cli(capsys, "train", data, "--out", tmp_path / "run", *SETUP)
    _assert_one_line_error(result, "train", re.escape(str(data / "train_images" / "synth_2_00002.jpg")))


def _write(path, array, **kwargs):
    if array.dtype == np.uint16 and array.ndim == 3:
        cv2.imwrite(str(path), array[..., ::-1])  # 16-bit colour: Pillow cannot write it
    else:
        Image.fromarray(array, **kwargs).save(path)


IMAGE_VALUES = [
    # (id, suffix, pixels written, gray values expected, worked out by hand in the comment)
    ("16-bit gray PNG", ".png", np.array([[0, 257, 1000, 65535]], np.uint16), [0, 1, 4, 255]),  # v*255/65535, half up
    (
        "16-bit colour PNG",
        ".png",
        np.full((1, 4, 3), 1000, np.uint16),
        [4, 4, 4, 4],
    ),  # equal channels: 1000 -> 3.89 -> 4
    (
        "float 0..1 TIFF",
        ".tif",
        np.array([[0, 0.25, 0.5, 1]], np.float32),
        [0, 64, 128, 255],
    ),  # x255: 63.75, 127.5 half up
    (
        "float 0..255 TIFF",
        ".tif",
        np.array([[0, 10.4, 200.5, 255]], np.float32),
        [0, 10, 201, 255],
    ),  # taken as they are
    (
        "RGB",
        ".png",
        np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8),
        [76, 150, 29, 90],
    ),  # ITU-R 601
    (
        "RGBA",
        ".png",
        np.array([[[90, 90, 90, 0], [255, 0, 0, 255], [0, 0, 0, 0], [7, 7, 7, 9]]], np.uint8),
        [90, 76, 0, 7],
    ),
    ("gray + alpha", ".png", np.array([[[90, 0], [200, 255], [1, 1], [0, 0]]], np.uint8), [90, 200, 1, 0]),
]


@pytest.mark.parametrize("suffix, pixels, expected", [pytest.param(s, p, e, id=i) for i, s, p, e in IMAGE_VALUES])
def test_depths_and_channels_load_to_hand_values(tmp_path, suffix, pixels, expected):
    root = tmp_path / "data"
    (root / "train_images").mkdir(parents=True)
    _write(root / "train_images" / f"a{suffix}", pixels, **({"mode": "LA"} if pixels.shape[-1:] == (2,) else {}))
    (root / "train.csv").write_text(LONG + f"a{suffix},1,2 1\n")
    image, masks = open_dataset(root).load(0)
    assert image.dtype == np.uint8 and image.shape == (1, 4)
    np.testing.assert_array_equal(image[0], expected)
    np.testing.assert_array_equal(masks[0, 0], [False, True, False, False])  # pixel 2 is column 2 of a 1-row image


def test_a_float_image_with_nan_names_its_file(tmp_path):
    root = _severstal(tmp_path / "data", LONG + "a.jpg,1,1 2\n")
    Image.fromarray(np.array([[0.5, np.nan]], np.float32)).save(root / "train_images" / "c.tif")
    dataset = open_dataset(root)
    with pytest.raises(ImageError, match=r"c.tif: float image holds NaN"):
        dataset.load(dataset.image_ids.index("c.tif"))


def test_images_without_rows_are_clean_and_an_image_of_another_size_decodes_at_its_own(tmp_path):
    root = _severstal(tmp_path / "data", LONG + "b.jpg,3,2 3\n")
    Image.fromarray(_ramp(6, 2)).save(root / "train_images" / "c.jpg", format="PNG")
    (root / "train.csv").write_text(LONG + "b.jpg,3,2 3\nc.jpg,3,2 3\n")
    dataset = open_dataset(root, class_names=["p", "q", "r"])
    assert not dataset.load(0)[1].any()  # a.jpg: no row, no defect
    b, c = dataset.load(1)[1][2], dataset.load(2)[1][2]
    np.testing.assert_array_equal(np.flatnonzero(b.ravel(order="F")), [1, 2, 3])  # 4x5: pixels 2-4 down column 1
    assert c.shape == (6, 2) and np.flatnonzero(c.ravel(order="F")).tolist() == [1, 2, 3]


def test_a_run_that_fits_one_image_but_not_a_smaller_one_names_the_row(tmp_path):
    root = _severstal(tmp_path / "data", LONG + "a.jpg,1,1 2\nb.jpg,1,15 6\n")
    Image.fromarray(_ramp(4, 4)).save(root / "train_images" / "b.jpg", format="PNG")  # 16 pixels, not 20
    with pytest.raises(
        AnnotationError, match=r"train.csv:3: image b.jpg class 1: run '15 6' ends at pixel 20, past the end of a 4x4"
    ):
        open_dataset(root).load(1)


def test_eda_names_a_run_past_an_image_it_does_not_draw(tmp_path, capsys):
    root = _severstal(tmp_path / "data", LONG + "a.jpg,1,1 2\nb.jpg,1,1 2\nc.jpg,2,19 3\n")  # 4x5: 20 pixels
    result = _cli(capsys, "eda", root, "--out", tmp_path / "eda", "--examples", 0, "--quiet")
    _assert_one_line_error(
        result, "eda", r"train.csv:4: image c.jpg class 2: run '19 3' ends at pixel 21, past the end of a 4x5 image"
    )


def test_a_folder_without_images_is_refused_not_an_empty_page(tmp_path, capsys):
    root = _severstal(tmp_path / "data", LONG, images=())
    _assert_one_line_error(
        _cli(capsys, "eda", root, "--out", tmp_path / "eda", "--quiet"), "eda", r"train_images: no images found"
    )
    assert not (tmp_path / "eda" / "index.html").exists()


def test_train_warns_when_no_image_has_a_mask(tmp_path, capsys):
    data = tmp_path / "data"
    synth.write_dataset(data, 6, seed=2, height=64, width=256, progress=False)
    (data / "train.csv").write_text(LONG)  # header only: every image clean
    code, _, err = _cli(capsys, "train", data, "--out", tmp_path / "run", *SETUP)
    assert code == 0  # valid data, if useless: an all-clean set is not an error
    warning = (
        r"^warning: .*train.csv: no image of .*train_images has a mask \(6 images, all clean\): "
        r"the model can only learn"
    )
    assert re.search(warning, err, re.M), err
    code, _, err = _cli(capsys, "train", data, "--out", tmp_path / "run2", "--set", "data.classes=[2]", *SETUP)
    assert "has a mask of class 2 (6 images" in err


# --- mask folders ----------------------------------------------------------------------------

MASK_FOLDER_CASES = [
    # (id, change to a good two-image folder, error, message)
    (
        "mask missing",
        lambda r: (r / "masks" / "b.png").unlink(),
        DatasetError,
        r"masks/b.png: label mask not found for image",
    ),
    (
        "mask of another size",
        lambda r: Image.fromarray(_labels(1, (10, 30))).save(r / "masks" / "b.png"),
        ImageError,
        r"masks/b.png: label mask is 10x30, its image is 20x30",
    ),
    (
        "label above the class count",
        lambda r: Image.fromarray(_labels(4)).save(r / "masks" / "b.png"),
        DatasetError,
        r"masks/b.png: unknown class id 4 \(this dataset has 3 classes",
    ),
    (
        "RGB mask",
        lambda r: Image.fromarray(np.dstack([_labels(1)] * 3)).save(r / "masks" / "b.png"),
        ImageError,
        r"masks/b.png: label mask must be single-channel, got mode RGB",
    ),
    (
        "truncated mask",
        lambda r: (r / "masks" / "b.png").write_bytes((r / "masks" / "b.png").read_bytes()[:60]),
        ImageError,
        r"masks/b.png: cannot read label mask",
    ),
    (
        "mask without an image",
        lambda r: Image.fromarray(_labels(1)).save(r / "masks" / "z.png"),
        DatasetError,
        r"masks/z.png: label mask without an image",
    ),
    (
        "two images, one mask",
        lambda r: Image.fromarray(_ramp(20, 30)).save(r / "images" / "b.jpg"),
        DatasetError,
        r"images/b.png: images b.jpg and b.png would share the label mask",
    ),
]


@pytest.mark.parametrize("change, error, message", [pytest.param(c, e, m, id=i) for i, c, e, m in MASK_FOLDER_CASES])
def test_a_bad_mask_folder_names_the_mask(tmp_path, change, error, message):
    root = _mask_folder(tmp_path / "data", {"a": _labels(1), "b": _labels(2)}, classes=["x", "y", "z"])
    change(root)
    with pytest.raises(error, match=message):
        dataset = open_dataset(root)
        for i in range(len(dataset)):
            dataset.load(i)


def test_a_binary_0_255_mask_is_not_taken_for_255_classes(tmp_path):
    root = _mask_folder(tmp_path / "data", {"a": _labels(1), "b": _labels(255)})  # no classes.json
    with pytest.raises(
        DatasetError, match=r"masks/b.png: label value 255, and no .*classes.json says how many .*0/255 binary"
    ):
        open_dataset(root)


def test_a_16_bit_label_mask_reads_its_class_ids(tmp_path):
    root = _mask_folder(tmp_path / "data", {"a": None}, classes=["x", "y", "z"])
    Image.fromarray(_labels(3).astype(np.uint16)).save(root / "masks" / "a.png")
    masks = open_dataset(root).load(0)[1]
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)), [0, 0, 24])  # a 4x6 block of class 3


# --- classes.json ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param(
            b"class_names: [a, b]", r"expected \{\"class_names\": \[...\]\} \(JSONDecodeError", id="YAML, not JSON"
        ),
        pytest.param(b'["a", "b"]', r"expected \{\"class_names\": \[...\]\} \(TypeError", id="a list"),
        pytest.param(b'{"names": ["a"]}', r"expected \{\"class_names\": \[...\]\} \(KeyError", id="wrong key"),
        pytest.param(
            b'{"class_names": []}', r"class_names must be a non-empty list of non-empty strings", id="no classes"
        ),
        pytest.param(
            b'{"class_names": [1, 2]}', r"class_names must be a non-empty list of .* got \[1, 2\]", id="numbers"
        ),
        pytest.param(b'{"class_names": "abc"}', r"class_names must be a non-empty list", id="a string"),
        pytest.param(
            b'{"class_names": ["a", " "]}',
            r"class_names must be a non-empty list of non-empty strings",
            id="blank name",
        ),
        pytest.param(b'{"class_names": ["a", "b", "a"]}', r"class name 'a' is listed twice", id="a name twice"),
        pytest.param(b"\xff\xfe{\x00", r"not UTF-8 text", id="binary"),
    ],
)
def test_a_malformed_classes_json_is_one_line(tmp_path, capsys, text, message):
    root = _severstal(tmp_path / "data", LONG + "a.jpg,1,1 2\n")
    (root / "classes.json").write_bytes(text)
    with pytest.raises(DatasetError, match=rf"classes.json: {message}"):
        open_dataset(root)
    _assert_one_line_error(
        _cli(capsys, "eda", root, "--out", tmp_path / "eda", "--quiet"), "eda", rf"classes.json: {message}"
    )


def test_classes_json_with_a_bom_reads(tmp_path):
    root = _severstal(tmp_path / "data", LONG + "a.jpg,2,1 2\n")
    (root / "classes.json").write_bytes(b'\xef\xbb\xbf{"class_names": ["p", "q"]}')
    assert open_dataset(root).class_names == ["p", "q"]


# --- pseudo-label folders and folds -------------------------------------------------------


def test_a_pseudo_folder_that_shares_an_image_with_the_training_data_is_refused(tmp_path, capsys):
    data, pseudo = tmp_path / "data", tmp_path / "pseudo"
    synth.write_dataset(data, 6, seed=2, height=64, width=256, progress=False)
    synth.write_dataset(pseudo, 2, seed=2, height=64, width=256, progress=False)  # synth_2_00000.jpg again
    result = _cli(capsys, "train", data, "--out", tmp_path / "run", "--set", f"data.pseudo={pseudo}", *SETUP)
    _assert_one_line_error(
        result, "train", rf"data.pseudo: image synth_2_00000.jpg of {re.escape(str(pseudo))} is also in"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "rows, message",
    [
        pytest.param(
            lambda ids: ids + ["ghost.jpg,1"],
            r"folds.csv:8: image ghost.jpg is not in the data set",
            id="unknown image",
        ),
        pytest.param(lambda ids: ids[1:], r"image synth_2_00000.jpg has no fold", id="lacks an image"),
        pytest.param(
            lambda ids: ids[:3] + ["synth_2_00003.jpg,one"] + ids[4:],
            r"folds.csv:5: fold 'one' of image synth_2_00003",
            id="fold not a number",
        ),
        pytest.param(
            lambda ids: [i.replace(",1", ",0") for i in ids], r"fold 0 leaves no training image", id="one fold only"
        ),
    ],
)
def test_train_with_folds_that_do_not_fit_the_data_is_one_line(tmp_path, capsys, rows, message):
    data = tmp_path / "data"
    synth.write_dataset(data, 6, seed=2, height=64, width=256, progress=False)
    ids = [f"synth_2_{i:05d}.jpg,{i % 2}" for i in range(6)]
    (tmp_path / "folds.csv").write_text("ImageId,Fold\n" + "\n".join(rows(ids)) + "\n")
    result = _cli(
        capsys, "train", data, "--out", tmp_path / "run", "--folds", tmp_path / "folds.csv", "--fold", 0, *SETUP
    )
    _assert_one_line_error(result, "train", message)


# --- synth -----------------------------------------------------------------------------------


def test_synth_refuses_a_folder_whose_other_images_would_turn_clean(tmp_path, capsys):
    out = tmp_path / "data"
    assert _cli(capsys, "synth", out, "--n", 3, "--quiet")[0] == 0
    assert _cli(capsys, "synth", out, "--n", 3, "--quiet")[0] == 0  # the same set again: fine
    result = _cli(capsys, "synth", out, "--n", 2, "--quiet")
    _assert_one_line_error(
        result, "synth", r"train_images holds 1 image\(s\) this synth does not write \(e.g. synth_0_00002.jpg\)"
    )
    (tmp_path / "file").write_text("x")
    _assert_one_line_error(
        _cli(capsys, "synth", tmp_path / "file", "--quiet"), "synth", r"file exists and is not a folder"
    )


# --- --skip-bad --------------------------------------------------------------------------------


def _bad_severstal(data):
    """12 synthetic 64x256 strips (defects on 4 and 7), seven things wrong. Left out: images 1, 2
    (broken files), 3, 5, 6, 8 (bad rows) and the row naming ghost.jpg; kept: 0, 4, 7, 9, 10, 11."""
    synth.write_dataset(data, 12, seed=2, height=64, width=256, progress=False)
    images = data / "train_images"
    images.joinpath("synth_2_00001.jpg").write_bytes(
        images.joinpath("synth_2_00001.jpg").read_bytes()[:700]
    )  # header whole
    images.joinpath("synth_2_00002.jpg").write_bytes(b"")
    lines = (data / "train.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["synth_2_00004.jpg", "synth_2_00007.jpg"]
    lines += [
        lines[1],  # 4: an identical copy of line 2: harmless, image 4 kept
        "ghost.jpg,1,1 5",  # 5: a row without an image
        "synth_2_00003.jpg,3,5 2 1 1",  # 6: runs out of order
        "synth_2_00005.jpg,1,16380 10",  # 7: past the end of a 64x256 strip (16,384 pixels)
        "synth_2_00006.jpg,9,1 1",  # 8: no class 9 (classes.json names 4)
        "synth_2_00008.jpg,2,1 3",  # 9
        "synth_2_00008.jpg,2,10 3",  # 10: contradicts line 9
    ]
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    csv, folder = re.escape(str(data / "train.csv")), re.escape(str(images))
    return [
        rf"{csv}:6: image synth_2_00003.jpg class 3: runs out of order",
        rf"{csv}:8: unknown class id 9 for image synth_2_00006.jpg \(expected 1..4\)",
        rf"{csv}:10: duplicate row for image synth_2_00008.jpg class 2 \(first at line 9\) with a different mask",
        rf"{csv}:5: image ghost.jpg not found in {folder}",
        rf"{folder}/synth_2_00001.jpg: (cannot read image|image file is truncated)",
        rf"{folder}/synth_2_00002.jpg: cannot read image",
        rf"{csv}:7: image synth_2_00005.jpg class 1: run '16380 10' ends at pixel 16389, "
        r"past the end of a 64x256 image",
    ]


KEPT = [f"synth_2_{i:05d}.jpg" for i in (0, 4, 7, 9, 10, 11)]


def test_train_skip_bad_logs_each_bad_item_and_trains_on_the_rest(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    expected = _bad_severstal(data)
    # folds made before the bad files were found still name them: they are left out, not unknown
    (tmp_path / "folds.csv").write_text("ImageId,Fold\n" + "".join(f"synth_2_{i:05d}.jpg,{i % 2}\n" for i in range(12)))
    code, out, err = _cli(
        capsys,
        "train",
        data,
        "--out",
        run,
        "--skip-bad",
        "--folds",
        tmp_path / "folds.csv",
        "--fold",
        0,
        *SETUP,
        "--set",
        "train.oof_scale=0.25",
    )
    assert code == 0, err
    logged = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(logged) == len(expected), err
    for line, pattern in zip(logged, expected):
        assert re.fullmatch(rf"skipped {pattern}.*", line), (pattern, line)
    assert f"--skip-bad: left out 7 bad rows or images (listed in {run / 'skipped.txt'})" in out
    assert (run / "skipped.txt").read_text().splitlines() == [line.removeprefix("skipped ") for line in logged]
    # validation is fold 0 without the bad images (hand-derived); training is fold 1 without them
    from steelseg.files.rundir import load_oof
    from steelseg.training.splits import train_val_sets

    assert sorted(load_oof(run)["image_ids"].tolist()) == [
        "synth_2_00000.jpg",
        "synth_2_00004.jpg",
        "synth_2_00010.jpg",
    ]
    config = load_config(run / "config.yaml")
    assert config.data.skip_bad  # a --resume skips the same way
    train_set, val_set = train_val_sets(config, open_configured(config.data))
    assert train_set.image_ids == ["synth_2_00007.jpg", "synth_2_00009.jpg", "synth_2_00011.jpg"]
    assert sorted(train_set.image_ids + val_set.image_ids) == KEPT


def test_skip_bad_on_a_mask_folder_leaves_out_each_bad_pair(tmp_path, capsys):
    labels = {name: _labels(1 + k % 3) for k, name in enumerate("abcdefg")}
    root = _mask_folder(tmp_path / "data", labels, classes=["x", "y", "z"])
    (root / "masks" / "b.png").unlink()
    Image.fromarray(_labels(1, (10, 30))).save(root / "masks" / "c.png")
    Image.fromarray(_labels(9)).save(root / "masks" / "d.png")
    (root / "images" / "e.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    dataset = open_configured(DataConfig(root=str(root), skip_bad=True))
    assert dataset.image_ids == ["a.png", "f.png", "g.png"]
    err = capsys.readouterr().err.splitlines()
    named = [root / "masks" / "b.png", root / "masks" / "c.png", root / "masks" / "d.png", root / "images" / "e.png"]
    assert [line.split(": ")[0] for line in err] == [f"skipped {path}" for path in named]
    assert sorted(dataset.skipped_ids) == ["b.png", "c.png", "d.png", "e.png"]


def test_skip_bad_rows_are_collected_with_the_image_they_leave_unlabelled(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(LONG + "a.jpg,1,1 2\nb.jpg,1,1 2 3\nc.jpg,2\n,1,1 1\nd.jpg,x,1 1\ne.jpg,3,4 1\n")
    table = read_annotations(path, num_classes=4, skip_bad=True)
    assert table.image_ids == ["a.jpg", "e.jpg"]
    assert table.encoded == {("a.jpg", 1): "1 2", ("e.jpg", 3): "4 1"}
    assert [(row.where.rsplit(":", 1)[1], row.image_id) for row in table.bad_rows] == [
        ("3", "b.jpg"),
        ("4", "c.jpg"),
        ("5", None),
        ("6", "d.jpg"),
    ]  # a row cut short still names its image; a row without one names none
    assert str(table.bad_rows[1]).endswith("train.csv:4: expected 3 columns, got 2")


def test_folds_skip_bad_writes_only_the_images_it_kept(tmp_path, capsys):
    data = tmp_path / "data"
    _bad_severstal(data)
    code, out, err = _cli(capsys, "folds", data, "--out", tmp_path / "folds.csv", "--k", 2, "--skip-bad", "--quiet")
    assert code == 0, err
    assert len([line for line in err.splitlines() if line.startswith("skipped ")]) == 7
    rows = (tmp_path / "folds.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == KEPT
    assert "--skip-bad: left out 7 bad rows or images" in out


def test_without_skip_bad_the_same_data_stops_at_the_first_bad_row(tmp_path, capsys):
    data = tmp_path / "data"
    expected = _bad_severstal(data)
    result = _cli(capsys, "train", data, "--out", tmp_path / "run", *SETUP)
    _assert_one_line_error(result, "train", expected[0])


def test_skip_bad_with_every_image_bad_is_one_line(tmp_path, capsys):
    root = _severstal(tmp_path / "data", LONG + "a.jpg,1,1 2 3\nb.jpg,1,x 1\n", images=("a.jpg", "b.jpg"))
    code, out, err = _cli(capsys, "train", root, "--out", tmp_path / "run", "--skip-bad", *SETUP)
    assert code == 1
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == [f"skipped {root / 'train.csv'}"] * 2
    assert re.fullmatch(
        r"steelseg train: error: .*data: every image was left out as bad \(2 skipped, listed above\)", lines[2]
    )
    assert len(lines) == 3


def test_resume_takes_no_skip_bad_of_its_own(tmp_path, capsys):
    # the run's config.yaml carries data.skip_bad (see above): a resume skips as the run did
    assert main(["train", "--resume", str(tmp_path), "--skip-bad"]) == 1
    assert capsys.readouterr().err.startswith("steelseg train: error: --resume RUN_DIR takes nothing else")
