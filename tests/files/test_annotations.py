import numpy as np
import pytest

from steelseg.files.annotations import AnnotationError, Annotations, read_annotations
from steelseg.files.submission import write_submission


def _write(tmp_path, text, name="table.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_the_long_layout(tmp_path):
    path = _write(tmp_path, "ImageId,ClassId,EncodedPixels\na.jpg,3,1 2 10 3\nb.jpg,1,5 1\n")
    table = read_annotations(path)
    assert table.image_ids == ["a.jpg", "b.jpg"]
    assert table.get("a.jpg", 3) == "1 2 10 3" and table.get("a.jpg", 1) == ""
    assert table.class_ids == {1, 3}


def test_reads_the_2019_layout_with_empty_rows(tmp_path):
    path = _write(tmp_path, "ImageId_ClassId,EncodedPixels\na.jpg_1,\na.jpg_2,3 4\nb.jpg_1,\nb.jpg_2,\n")
    table = read_annotations(path)
    assert table.image_ids == ["a.jpg", "b.jpg"]
    assert table.encoded == {("a.jpg", 2): "3 4"}
    assert table.class_ids == {1, 2}


def test_column_order_follows_the_header(tmp_path):
    path = _write(tmp_path, "ImageId,EncodedPixels,ClassId\na.jpg,1 2,4\n")
    assert read_annotations(path).encoded == {("a.jpg", 4): "1 2"}


def test_image_ids_with_underscores_in_2019_layout(tmp_path):
    path = _write(tmp_path, "ImageId_ClassId,EncodedPixels\nroll_7_a.jpg_2,1 1\n")
    assert read_annotations(path).encoded == {("roll_7_a.jpg", 2): "1 1"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"table.csv:1: empty file"),
        ("Id,Mask\na,1 1\n", r"table.csv:1: unknown header 'Id,Mask'"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,1\n", r"table.csv:3: expected 3 columns, got 2"),
        (
            "ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,x,1 2\n",
            r"table.csv:3: class id 'x' of image b.jpg is not an integer",
        ),
        ("ImageId,ClassId,EncodedPixels\na.jpg,0,1 2\n", r"table.csv:2: unknown class id 0 for image a.jpg"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2 3\n", r"table.csv:2: image a.jpg class 1: odd number of tokens"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,5 2 1 1\n", r"table.csv:2: image a.jpg class 1: runs out of order"),
        (
            "ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\n\na.jpg,1,5 1\n",
            r"table.csv:4: duplicate row for image a.jpg class 1 \(first at line 2\)",
        ),
        ("ImageId_ClassId,EncodedPixels\n_1,1 1\n", r"table.csv:2: missing image id"),
    ],
)
def test_bad_tables_name_file_and_line(tmp_path, text, message):
    with pytest.raises(AnnotationError, match=message):
        read_annotations(_write(tmp_path, text))


def test_unknown_class_id_is_an_error_when_the_class_count_is_known(tmp_path):
    path = _write(tmp_path, "ImageId,ClassId,EncodedPixels\na.jpg,1,1 1\nb.jpg,5,1 1\n")
    with pytest.raises(AnnotationError, match=r"table.csv:3: unknown class id 5 for image b.jpg \(expected 1..4\)"):
        read_annotations(path, num_classes=4)


def test_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="annotation file not found"):
        read_annotations(tmp_path / "nope.csv")


def test_run_past_the_image_is_reported_with_file_and_line_on_decode(tmp_path):
    table = read_annotations(_write(tmp_path, "ImageId,ClassId,EncodedPixels\na.jpg,2,1 2\na.jpg,3,19 5\n"))
    assert table.mask("a.jpg", 2, (4, 5)).sum() == 2
    with pytest.raises(AnnotationError, match=r"table.csv:3: image a.jpg class 3: run '19 5' ends at pixel 23"):
        table.masks("a.jpg", 3, (4, 5))


@pytest.mark.parametrize("layout", ["long", "2019"])
def test_submission_has_every_image_and_class_and_reads_back(tmp_path, layout):
    table = Annotations()
    masks = np.zeros((4, 3, 5), bool)
    masks[1, 0, 0] = masks[3, 2, 4] = True
    table.add_masks("a.jpg", masks)
    table.add_masks("clean.jpg", np.zeros((4, 3, 5), bool))
    path = tmp_path / "submission.csv"
    assert write_submission(path, table, num_classes=4, layout=layout) == 8
    lines = path.read_text().splitlines()
    assert len(lines) == 9
    if layout == "long":
        assert lines[:3] == ["ImageId,ClassId,EncodedPixels", "a.jpg,1,", "a.jpg,2,1 1"]
    else:
        assert lines[:3] == ["ImageId_ClassId,EncodedPixels", "a.jpg_1,", "a.jpg_2,1 1"]
    back = read_annotations(path)
    assert back.image_ids == ["a.jpg", "clean.jpg"]
    np.testing.assert_array_equal(back.masks("a.jpg", 4, (3, 5)), masks)


def test_non_empty_only_table(tmp_path):
    table = Annotations()
    table.add("a.jpg", 1, "")
    table.add("a.jpg", 2, "3 1")
    path = tmp_path / "train.csv"
    assert write_submission(path, table, num_classes=2, include_empty=False) == 1
    assert path.read_text() == "ImageId,ClassId,EncodedPixels\na.jpg,2,3 1\n"


def test_submission_rejects_classes_beyond_the_count(tmp_path):
    table = Annotations()
    table.add("a.jpg", 5, "1 1")
    with pytest.raises(AnnotationError, match="unknown class id 5"):
        write_submission(tmp_path / "s.csv", table, num_classes=4)
    assert not (tmp_path / "s.csv").exists()
