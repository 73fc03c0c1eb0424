"""The review folder: what is written where, read back by hand (the COCO counts decoded here, the
LabelMe polygons drawn by the importer's rule), copies rather than links, the folder refused
unless new or empty, and nothing half-written left behind."""

import csv
import json
import os

import cv2
import numpy as np
import pytest

from steelseg.errors import OutputExistsError
from steelseg.files.review_folder import CSV_HEADER, Reviewed, check_review_folder, write_review_folder

NAMES = ["pits", "crazing"]


def _image(path, shape=(6, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.arange(shape[0] * shape[1], dtype=np.uint8).reshape(shape))
    return path


def _item(path, masks, class_id=1, uncertainty=0.5):
    return Reviewed(path, masks, uncertainty, class_id, 0.48, 0.5, 12, 0.5, f"class {class_id}: because")


def _masks():
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:4, 2:6] = True
    masks[0, 2, 3:5] = False  # a hole
    masks[0, 5, 7] = True  # a second component, in the corner
    return masks  # class 2 empty


def _decode(segmentation):
    height, width = segmentation["size"]
    values = np.arange(len(segmentation["counts"])) % 2
    return np.repeat(values, segmentation["counts"]).astype(bool).reshape(width, height).T


@pytest.fixture
def written(tmp_path):
    first, second = _image(tmp_path / "in" / "b.png"), _image(tmp_path / "in" / "a.png")
    items = [_item(first, _masks(), 1, 0.9), _item(second, np.zeros((2, 6, 8), bool), 2, 0.4)]
    write_review_folder(tmp_path / "review", NAMES, items)
    return tmp_path / "review", items


def test_the_folder_holds_coco_labelme_copies_and_the_csv_and_nothing_else(written):
    folder, _ = written
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["annotations.json", "images/a.json", "images/a.png", "images/b.json", "images/b.png", "review.csv"]


def test_coco_has_the_model_classes_images_in_rank_order_and_one_rle_per_class_mask(written):
    folder, items = written
    coco = json.loads((folder / "annotations.json").read_text())
    assert coco["categories"] == [
        {"id": 1, "name": "pits", "supercategory": ""},
        {"id": 2, "name": "crazing", "supercategory": ""},
    ]
    assert [(i["id"], i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        (1, "b.png", 6, 8),
        (2, "a.png", 6, 8),
    ]
    (annotation,) = coco["annotations"]  # the empty masks have none
    assert (annotation["image_id"], annotation["category_id"], annotation["iscrowd"]) == (1, 1, 1)
    assert (_decode(annotation["segmentation"]) == items[0].masks[0]).all()
    assert annotation["area"] == items[0].masks[0].sum() == 11
    assert annotation["bbox"] == [2.0, 1.0, 6.0, 5.0]


def test_labelme_files_sit_beside_their_images_and_draw_back_to_the_masks(written):
    folder, items = written
    document = json.loads((folder / "images" / "b.json").read_text())
    assert (document["imagePath"], document["imageData"]) == ("b.png", None)
    assert (document["imageHeight"], document["imageWidth"]) == (6, 8)
    assert {s["label"] for s in document["shapes"]} == {"pits"} and len(document["shapes"]) == 2
    drawn = np.zeros((6, 8), np.uint8)
    for shape in document["shapes"]:
        assert shape["shape_type"] == "polygon"
        cv2.fillPoly(drawn, [np.array(shape["points"], np.int32)], 1)
    assert (drawn.astype(bool) == items[0].masks[0]).all()
    assert json.loads((folder / "images" / "a.json").read_text())["shapes"] == []


def test_images_are_copies_not_links(written):
    folder, items = written
    copy = folder / "images" / "b.png"
    assert copy.read_bytes() == items[0].image.read_bytes()
    assert not copy.is_symlink() and not os.path.samefile(copy, items[0].image)


def test_review_csv_lists_rank_image_uncertainty_and_reason(written):
    folder, _ = written
    with open(folder / "review.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == CSV_HEADER
    assert rows[1] == ["1", "b.png", "0.9000", "1", "pits", "0.4800", "0.5000", "12", "0.5000", "class 1: because"]
    assert rows[2][:5] == ["2", "a.png", "0.4000", "2", "crazing"]


def test_no_temporary_file_is_left(written):
    folder, _ = written
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]


def test_two_images_of_one_stem_get_two_labelme_files(tmp_path):
    items = [_item(_image(tmp_path / "in" / name), _masks()) for name in ("a.png", "a.jpg")]
    write_review_folder(tmp_path / "review", NAMES, items)
    for name, image in (("a.json", "a.png"), ("a.jpg.json", "a.jpg")):
        assert json.loads((tmp_path / "review" / "images" / name).read_text())["imagePath"] == image


def test_the_folder_must_be_new_or_empty(tmp_path):
    check_review_folder(tmp_path / "new" / "deeper")
    (tmp_path / "empty").mkdir()
    check_review_folder(tmp_path / "empty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("")
    for folder, problem in (("full", "is not empty"), ("file", "is a file"), ("file/below", "is a file, not a folder")):
        with pytest.raises(OutputExistsError, match=problem) as caught:
            check_review_folder(tmp_path / folder)
        assert str(tmp_path / folder) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(OutputExistsError, match="is not empty"):
        write_review_folder(tmp_path / "full", NAMES, [])
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
