"""COCO instances -> label maps: RLE written by hand (uncompressed and compressed), polygons
against LabelMe's, category order, overlap, where images are found, one-line errors."""

import json

import numpy as np
import pytest
from importer_samples import polygon, read_masks, rectangle, write_image, write_labelme
from pycocotools import mask as coco_mask

from steelseg.files.importers import ConvertError, convert
from steelseg.files.importers.coco import string_counts

# pycocotools 2.0.11 under numpy 2 (its Masks.__array__), not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# A 4x3 (HxW) image. COCO run lengths go down the columns from the top-left pixel, background
# first: counts [2, 3, 7] are 2 background pixels, 3 defect pixels, 7 background pixels, i.e.
# column 0 rows 2-3 and column 1 row 0.
HAND_MASK = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]], np.uint8)


def _coco(tmp_path, annotations, images=None, categories=None, name="coco.json"):
    """A COCO file beside its images (each 30x40 unless stated)."""
    images = images or [{"id": 1, "file_name": "a.png", "height": 30, "width": 40}]
    for image in images:
        write_image(tmp_path / "src" / image["file_name"], (image["height"], image["width"]))
    categories = categories or [{"id": 1, "name": "scratch"}, {"id": 2, "name": "dent"}]
    for index, annotation in enumerate(annotations):
        annotation.setdefault("id", index + 1)
        annotation.setdefault("image_id", 1)
        annotation.setdefault("category_id", 1)
    document = {"images": images, "annotations": annotations, "categories": categories}
    path = tmp_path / "src" / name
    path.write_text(json.dumps(document))
    return path


def _labels(tmp_path, annotations, **kwargs) -> dict[str, np.ndarray]:
    path = _coco(tmp_path, annotations, **kwargs)
    convert(path, tmp_path / "out", "coco")
    return read_masks(tmp_path / "out")


TINY = [{"id": 1, "file_name": "t.png", "height": 4, "width": 3}]


@pytest.mark.parametrize(
    "counts",
    [
        [2, 3, 7],  # uncompressed
        "237",  # the same compressed: a character is 48 + a 5-bit group (the first three counts as they are)
    ],
)
def test_rle_written_by_hand_decodes_down_the_columns(tmp_path, counts):
    segmentation = {"counts": counts, "size": [4, 3]}
    labels = _labels(tmp_path, [{"segmentation": segmentation, "category_id": 2}], images=TINY)
    assert (labels["t"] == 2 * HAND_MASK).all()


def test_compressed_counts_from_the_fourth_on_are_differences_to_the_one_two_before():
    # [1, 2, 3, 4, 2]: "1", "2", "3", then 4 - 2 = 2 -> "2", then 2 - 3 = -1 -> 31 with the sign bit -> "O"
    assert string_counts("here", "1232O") == [1, 2, 3, 4, 2]
    compressed = coco_mask.frPyObjects({"counts": [1, 2, 3, 4, 2], "size": [4, 3]}, 4, 3)["counts"]
    assert compressed == b"1232O"  # pycocotools agrees


def test_a_polygon_covers_the_pixels_its_edges_enclose_as_the_labelme_rectangle_does(tmp_path):
    # COCO's coordinates are pixel edges: (0, 0)-(10, 20) is 10 x 20 pixels; LabelMe's are pixel
    # centres: (0, 0)-(9, 19) is the same 200 pixels
    coco = _labels(tmp_path / "coco", [{"segmentation": [[0, 0, 10, 0, 10, 20, 0, 20]]}])["a"]
    write_image(tmp_path / "lm" / "a.png")
    write_labelme(tmp_path / "lm" / "a.json", [polygon("scratch", rectangle(0, 0, 9, 19))], "a.png")
    convert(tmp_path / "lm", tmp_path / "lm-out")
    labelme = read_masks(tmp_path / "lm-out")["a"]
    assert coco.sum() == 200 and (coco[:20, :10] == 1).all() and (coco == labelme).all()


def test_the_same_slanted_polygon_differs_between_coco_and_labelme_only_on_its_boundary(tmp_path):
    points = [(3, 2), (25, 6), (20, 24), (5, 18)]
    coco = _labels(tmp_path / "coco", [{"segmentation": [[v for p in points for v in p]]}])["a"] > 0
    write_image(tmp_path / "lm" / "a.png")
    write_labelme(tmp_path / "lm" / "a.json", [polygon("scratch", points)], "a.png")
    convert(tmp_path / "lm", tmp_path / "lm-out")
    labelme = read_masks(tmp_path / "lm-out")["a"] > 0
    interior = coco & np.roll(coco, 1, 0) & np.roll(coco, -1, 0) & np.roll(coco, 1, 1) & np.roll(coco, -1, 1)
    assert labelme[interior].all() and (coco & labelme).sum() / (coco | labelme).sum() > 0.85


def test_a_mask_round_trips_through_compressed_rle(tmp_path):
    truth = np.zeros((30, 40), np.uint8, order="F")
    truth[3:9, 5:30] = 1
    truth[20:28, 2:4] = 1
    rle = coco_mask.encode(np.asfortranarray(truth))
    segmentation = {"counts": rle["counts"].decode(), "size": [30, 40]}
    assert (_labels(tmp_path, [{"segmentation": segmentation, "iscrowd": 1}])["a"] == truth).all()


def test_categories_are_ordered_by_id_and_the_higher_class_wins(tmp_path):
    categories = [{"id": 7, "name": "pit"}, {"id": 3, "name": "scratch"}]  # classes: scratch 1, pit 2
    annotations = [
        {"segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]], "category_id": 7},
        {"segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]], "category_id": 3},  # later, lower: under pit
    ]
    labels = _labels(tmp_path, annotations, categories=categories)["a"]
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["class_names"] == ["scratch", "pit"]
    assert (labels[:10, :10] == 2).all() and (labels == 1).sum() == 100 - 25


def test_images_without_annotations_are_clean_and_images_are_found_in_the_export_layout(tmp_path):
    # CVAT's and Roboflow's COCO export: annotations/instances_default.json beside images/
    images = [{"id": 1, "file_name": "a.png", "height": 30, "width": 40}]
    images.append({"id": "b", "file_name": "sub/b.png", "height": 30, "width": 40})
    path = _coco(tmp_path, [{"segmentation": [[0, 0, 10, 0, 10, 20, 0, 20]]}], images=images)
    (tmp_path / "export" / "annotations").mkdir(parents=True)
    (tmp_path / "src").rename(tmp_path / "export" / "images")
    (tmp_path / "export" / "images" / path.name).rename(tmp_path / "export" / "annotations" / "instances_default.json")
    result = convert(tmp_path / "export", tmp_path / "out")
    assert (result.format, result.images, result.clean, result.annotations) == ("coco", 2, 1, 1)
    assert read_masks(tmp_path / "out")["a"].sum() == 200


def _error(tmp_path, annotations, **kwargs) -> str:
    path = _coco(tmp_path, annotations, **kwargs)
    with pytest.raises(ConvertError) as caught:
        convert(path, tmp_path / "out", "coco")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message.removeprefix(f"{path}: ")


SQUARE = [[0, 0, 10, 0, 10, 10, 0, 10]]


@pytest.mark.parametrize(
    "annotation, expected",
    [
        ({"segmentation": SQUARE, "image_id": 9}, "annotations[0] (id 1): image id 9 is not in images"),
        (
            {"segmentation": SQUARE, "category_id": 5},
            "annotations[0] (id 1): category id 5 is not in categories (1, 2)",
        ),
        ({"segmentation": [[0, 0, 5, 5]]}, "segmentation[0] has 2 point(s); a polygon needs at least 3"),
        ({"segmentation": [[0, 0, 5, 5, 1]]}, "segmentation[0] must be a flat list of x, y numbers"),
        ({"segmentation": []}, "empty segmentation (box-only data?)"),
        ({"segmentation": {"counts": [12], "size": [3, 4]}}, "RLE size [3, 4] is not its image's [30, 40]"),
        ({"segmentation": {"counts": [2, 3], "size": [30, 40]}}, "RLE counts add up to 5, not 30x40 = 1200 pixels"),
        ({"segmentation": {"counts": "2\x7f", "size": [30, 40]}}, "are cut short or hold a bad character"),
        ({"segmentation": {"counts": "237", "size": [30, 40]}}, "RLE counts add up to 12, not 30x40"),
        ({"segmentation": "polygon"}, "segmentation must be polygons or RLE, got str"),
    ],
)
def test_bad_annotations_are_one_line_errors_naming_the_file_and_annotation(tmp_path, annotation, expected):
    assert expected in _error(tmp_path, [annotation])


def test_bad_files_images_and_categories_are_one_line_errors(tmp_path):
    missing = [{"id": 1, "file_name": "a.png", "height": 30, "width": 40}]
    path = _coco(tmp_path / "1", [], images=missing)
    (tmp_path / "1" / "src" / "a.png").unlink()
    with pytest.raises(ConvertError, match=r"coco.json: images\[0\] \(id 1\): a.png not found in "):
        convert(path, tmp_path / "1" / "out")
    twice = [{"id": 1, "name": "pit"}, {"id": 2, "name": "pit"}]
    assert (
        _error(tmp_path / "2", [], categories=twice) == "two categories are named 'pit'; each class needs its own name"
    )
    sizeless = [{"id": 1, "file_name": "a.png", "height": 30, "width": 40}]
    path = _coco(tmp_path / "3", [], images=sizeless)
    path.write_text(path.read_text().replace('"height": 30', '"height": null'))
    with pytest.raises(ConvertError, match=r"images\[0\] \(id 1\): height and width must be positive integers"):
        convert(path, tmp_path / "3" / "out")
    path.write_text('{"shapes": []}')
    with pytest.raises(ConvertError, match="not a COCO instances file .*it looks like LabelMe"):
        convert(path, tmp_path / "3" / "out", "coco")


def test_skip_bad_leaves_out_only_the_image_of_a_bad_annotation(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "height": 30, "width": 40} for i in (1, 2)]
    annotations = [
        {"segmentation": SQUARE, "image_id": 1},
        {"segmentation": [[0, 0, 1, 1]], "image_id": 2},  # bad: image 2 left out
        {"segmentation": SQUARE, "image_id": 3},  # names no image: only itself left out
    ]
    path = _coco(tmp_path, annotations, images=images)
    result = convert(path, tmp_path / "out", skip_bad=True)
    assert result.images == 1 and list(read_masks(tmp_path / "out")) == ["1"]
    assert [skip.message.split(": ")[1] for skip in result.skipped] == [
        "annotations[1] (id 2)",
        "annotations[2] (id 3)",
    ]
