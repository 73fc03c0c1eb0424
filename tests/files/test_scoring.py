"""Scoring over an explicit image set: the score must not depend on which rows a file lists.

Expected values are counted by hand from the real sample (../shared/data/severstal-mini):
20 images x 4 classes = 80 (image, class) pairs, 19 of them with a defect (class 1: 5, class 2: 3,
class 3: 9, class 4: 2); train.csv lists only the 15 images with defects.
"""

from pathlib import Path

import numpy as np
import pytest

from steelseg.files.annotations import AnnotationError
from steelseg.files.images import ImageError
from steelseg.files.scoring import ImageSet, ScoreError, read_image_set, score_files

LONG_HEADER = "ImageId,ClassId,EncodedPixels\n"
HEADER_2019 = "ImageId_ClassId,EncodedPixels\n"
DEFECTS_PER_CLASS = np.array([5, 3, 9, 2])


def _image_ids(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "train_images").iterdir())


def _all_empty(path: Path, image_ids: list[str]) -> Path:
    path.write_text(HEADER_2019 + "".join(f"{i}_{c},\n" for i in image_ids for c in range(1, 5)))
    return path


def _truth_2019_rows(data: Path, keep=lambda image_id, class_id: True, blank=lambda class_id: False) -> list[str]:
    rows = []
    for line in (data / "train_2019_layout.csv").read_text().splitlines()[1:]:
        key, encoded = line.split(",")
        image_id, class_id = key.rsplit("_", 1)
        if keep(image_id, int(class_id)):
            rows.append(f"{key},{'' if blank(int(class_id)) else encoded}\n")
    return rows


def _image_set(data: Path, source: str) -> ImageSet:
    if source == "folder":
        return read_image_set(images_dir=data / "train_images")
    return read_image_set(sample_submission=data / "train_2019_layout.csv")


@pytest.mark.parametrize("source", ["folder", "sample submission"])
@pytest.mark.parametrize("truth", ["train.csv", "train_2019_layout.csv"])
@pytest.mark.parametrize(
    "prediction, expected_class_dice",
    [
        # a pair scores 1 when both are empty, 0 when only the truth has a defect
        ("all empty", (20 - DEFECTS_PER_CLASS) / 20),
        ("the truth without class 3", np.array([1, 1, 11 / 20, 1])),
        ("the truth itself", np.ones(4)),
    ],
)
def test_long_and_2019_truth_score_the_same_over_an_image_set(
    severstal_mini, tmp_path, source, truth, prediction, expected_class_dice
):
    pred = tmp_path / "pred.csv"
    if prediction == "all empty":
        _all_empty(pred, _image_ids(severstal_mini))
    else:
        drop_class_3 = prediction == "the truth without class 3"
        pred.write_text(
            HEADER_2019 + "".join(_truth_2019_rows(severstal_mini, blank=lambda c: drop_class_3 and c == 3))
        )
    scores, warnings = score_files(severstal_mini / truth, pred, image_set=_image_set(severstal_mini, source))
    assert warnings == []
    assert scores.num_images == 20
    np.testing.assert_allclose(scores.class_dice, expected_class_dice)
    assert scores.mean_dice == pytest.approx(expected_class_dice.mean())


def test_all_empty_over_the_real_sample_is_61_of_80(severstal_mini, tmp_path):
    pred = _all_empty(tmp_path / "pred.csv", _image_ids(severstal_mini))
    image_set = read_image_set(images_dir=severstal_mini / "train_images")
    long, _ = score_files(severstal_mini / "train.csv", pred, image_set=image_set)
    wide, _ = score_files(severstal_mini / "train_2019_layout.csv", pred, image_set=image_set)
    assert long.mean_dice == wide.mean_dice == pytest.approx(61 / 80)


def test_without_an_image_set_the_tables_must_name_the_same_images(severstal_mini, tmp_path):
    pred = _all_empty(tmp_path / "pred.csv", _image_ids(severstal_mini))
    # train.csv leaves out its 5 clean images: whether they count must be said, not guessed
    refusal = (
        r"train.csv names 15 images and .*pred.csv 20, not the same ones "
        r"\(e.g. 000789191.jpg only in .*pred.csv\): pass --images DIR or --sample-submission CSV"
    )
    with pytest.raises(ScoreError, match=refusal):
        score_files(severstal_mini / "train.csv", pred)
    # the same image set on both sides needs no explicit one
    scores, _ = score_files(severstal_mini / "train_2019_layout.csv", pred)
    assert scores.mean_dice == pytest.approx(61 / 80)


@pytest.mark.parametrize(
    "name, dropped, expected_mean",
    [
        ("a clean image", ["000789191.jpg"], 80 / 80),
        ("an image with defects of class 1 and 2", ["002fc4e19.jpg"], 78 / 80),
        ("two images, three defects", ["002fc4e19.jpg", "0030401a5.jpg"], 77 / 80),
        # 000789191.jpg is in neither table, yet it is one of the 20 images scored
        ("a clean image and two defects", ["000789191.jpg", "002fc4e19.jpg"], 78 / 80),
    ],
)
def test_a_prediction_lacking_images(severstal_mini, tmp_path, name, dropped, expected_mean):
    pred = tmp_path / "pred.csv"
    pred.write_text(HEADER_2019 + "".join(_truth_2019_rows(severstal_mini, keep=lambda i, c: i not in dropped)))
    image_set = read_image_set(images_dir=severstal_mini / "train_images")
    with pytest.raises(ScoreError, match=rf"pred.csv: lacks {len(dropped)} of the 20 images .* first {dropped[0]} "):
        score_files(severstal_mini / "train.csv", pred, image_set=image_set)
    scores, warnings = score_files(severstal_mini / "train.csv", pred, image_set=image_set, allow_missing=True)
    assert scores.mean_dice == pytest.approx(expected_mean), name
    assert scores.num_images == 20
    assert len(warnings) == 1 and f"lacks {len(dropped)} of the 20 images" in warnings[0]


@pytest.mark.parametrize("table", ["truth", "pred"])
def test_an_image_outside_the_set_is_an_error(severstal_mini, tmp_path, table):
    paths = {"truth": tmp_path / "truth.csv", "pred": tmp_path / "pred.csv"}
    rows = _truth_2019_rows(severstal_mini)
    paths["truth"].write_text(HEADER_2019 + "".join(rows))
    paths["pred"].write_text(HEADER_2019 + "".join(rows))
    with paths[table].open("a") as handle:
        handle.write("extra.jpg_1,1 5\nextra.jpg_2,\nzzz.jpg_1,\n")
    outside = rf"{table}.csv: 2 image\(s\) not in image folder .*train_images \(20 images\), e.g. extra.jpg"
    with pytest.raises(ScoreError, match=outside):
        score_files(paths["truth"], paths["pred"], image_set=read_image_set(images_dir=severstal_mini / "train_images"))


@pytest.mark.parametrize("header", [LONG_HEADER, HEADER_2019, LONG_HEADER + "\n\n"])
@pytest.mark.parametrize("explicit_set", [False, True])
def test_a_header_only_prediction_is_an_error(severstal_mini, tmp_path, header, explicit_set):
    pred = tmp_path / "pred.csv"
    pred.write_text(header)
    image_set = read_image_set(images_dir=severstal_mini / "train_images") if explicit_set else None
    with pytest.raises(ScoreError, match=r"pred.csv: lists no images \(only a header\)"):
        score_files(severstal_mini / "train_2019_layout.csv", pred, image_set=image_set)


def test_an_empty_image_set_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ImageError, match="empty: no images found"):
        read_image_set(images_dir=tmp_path / "empty")
    (tmp_path / "sample.csv").write_text(HEADER_2019)
    with pytest.raises(ScoreError, match="sample.csv: sample submission lists no images"):
        read_image_set(sample_submission=tmp_path / "sample.csv")
    with pytest.raises(ScoreError, match="not both"):
        read_image_set(images_dir=tmp_path / "empty", sample_submission=tmp_path / "sample.csv")
    assert read_image_set() is None


@pytest.mark.parametrize("table, line", [("truth", 3), ("pred", 2)])
def test_class_ids_outside_1_to_n_name_file_and_line(tmp_path, table, line):
    # 2x4 images, so that masks are tiny; the class-5 row is legal only with num_classes=5
    rows = {"truth": "a.jpg,1,1 2\na.jpg,5,3 2\nb.jpg,2,\n", "pred": "a.jpg,5,1 2\na.jpg,1,1 2\nb.jpg,2,\n"}
    paths = {}
    for name in ("truth", "pred"):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(LONG_HEADER + (rows[name] if name == table else "a.jpg,1,1 2\nb.jpg,2,\n"))
    unknown = rf"{table}.csv:{line}: unknown class id 5 for image a.jpg \(expected 1..4\)"
    with pytest.raises(AnnotationError, match=unknown):
        score_files(paths["truth"], paths["pred"], shape=(2, 4))
    scores, _ = score_files(paths["truth"], paths["pred"], shape=(2, 4), num_classes=5)
    # 2 images x 5 classes; the class-5 mask is on one side only, every other pair agrees
    assert scores.mean_dice == pytest.approx(9 / 10)


def test_the_number_of_classes_must_be_positive(tmp_path):
    (tmp_path / "t.csv").write_text(LONG_HEADER + "a.jpg,1,\n")
    with pytest.raises(ScoreError, match="at least 1, got 0"):
        score_files(tmp_path / "t.csv", tmp_path / "t.csv", shape=(2, 4), num_classes=0)
