"""LabelMe folders -> label maps: pixel counts known by hand, class order, overlap, where images
are found, clean images, one-line errors, and a few real bsdata files."""

import base64
import io
import json
import shutil

import numpy as np
import pytest
from importer_samples import image_bytes, polygon, read_masks, rectangle, shared_or_skip, write_image, write_labelme
from PIL import Image

from steelseg.files.datasets import open_dataset
from steelseg.files.importers import ConvertError, convert


def _one(tmp_path, shapes, shape=(30, 40)) -> np.ndarray:
    """The label map of one image annotated with ``shapes``."""
    root = tmp_path / "src"
    write_image(root / "x.png", shape)
    write_labelme(root / "x.json", shapes, "x.png", shape)
    convert(root, tmp_path / "out", "labelme")
    return read_masks(tmp_path / "out")["x"]


def test_a_rectangle_polygon_covers_its_boundary_pixels(tmp_path):
    # corners (0, 0) .. (9, 19) are pixel centres, boundary included: 10 x 20 = 200 pixels
    labels = _one(tmp_path, [polygon("scratch", rectangle(0, 0, 9, 19))])
    assert labels.sum() == 200 and (labels[:20, :10] == 1).all()


@pytest.mark.parametrize(
    "shape",
    [
        polygon("scratch", rectangle(0.4, -0.3, 9.2, 18.6)),  # points round to the nearest pixel
        polygon("scratch", [(0, 0), (9, 19)], "rectangle"),  # two corners, both inside
        polygon("scratch", [(9, 19), (0, 0)], "rectangle"),  # either order
    ],
)
def test_rounded_polygons_and_rectangles_cover_the_same_200_pixels(tmp_path, shape):
    labels = _one(tmp_path, [shape])
    assert labels.sum() == 200 and (labels[:20, :10] == 1).all()


def test_a_circle_covers_the_pixels_within_its_radius(tmp_path):
    labels = _one(tmp_path, [polygon("pit", [(10, 12), (13, 16)], "circle")])  # radius 5
    y, x = np.mgrid[:30, :40]
    assert ((labels == 1) == ((x - 10) ** 2 + (y - 12) ** 2 <= 25)).all() and labels.sum() == 81


def test_a_mask_shape_places_its_bitmap_at_its_first_point(tmp_path):
    bitmap = np.zeros((3, 4), np.uint8)
    bitmap[1:, 1:3] = 255  # 4 pixels: rows 1-2, columns 1-2 of the box
    buffer = io.BytesIO()
    Image.fromarray(bitmap).save(buffer, format="PNG")
    shape = polygon("pit", [(5.7, 2.2), (8.7, 4.2)], "mask") | {"mask": base64.b64encode(buffer.getvalue()).decode()}
    labels = _one(tmp_path, [shape])
    assert labels.sum() == 4 and (labels[3:5, 6:8] == 1).all()  # corner (5, 2), truncated as LabelMe does


def test_classes_are_sorted_by_name_and_the_higher_class_wins_where_shapes_overlap(tmp_path):
    shapes = [
        polygon("scratch", rectangle(0, 0, 9, 9)),  # class 3, drawn first
        polygon("crack", rectangle(5, 5, 14, 14)),  # class 2, over it in the file
        polygon("Zinc", rectangle(0, 0, 2, 2)),  # class 1 ("Z" sorts before "c")
    ]
    labels = _one(tmp_path, shapes)
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["class_names"] == ["Zinc", "crack", "scratch"]
    assert (labels[5:10, 5:10] == 3).all()  # the overlap of scratch and crack: the higher class
    assert (labels[:3, :3] == 3).all()  # Zinc lies inside scratch: scratch wins
    assert (labels[10:15, 10:15] == 2).all() and np.bincount(labels.ravel(), minlength=4)[1] == 0


def test_a_folder_with_clean_images_converts_to_an_openable_mask_folder(labelme_folder, tmp_path):
    result = convert(labelme_folder, tmp_path / "out")
    assert (result.images, result.clean, result.annotations, result.class_names) == (3, 1, 3, ["dent", "scratch"])
    masks = read_masks(tmp_path / "out")
    assert (masks["a"] == 2).sum() == 200 and masks["c"].max() == 0  # c.png has no JSON: clean
    assert (masks["b"][5:7, 5:7] == 1).all() and (masks["b"] == 1).sum() == 4
    dataset = open_dataset(tmp_path / "out")
    assert dataset.class_names == ["dent", "scratch"] and dataset.image_ids == ["a.png", "b.jpg", "c.png"]


def test_a_json_without_shapes_is_a_clean_image(labelme_folder, tmp_path):
    write_image(labelme_folder / "d.png")
    write_labelme(labelme_folder / "d.json", [], "d.png")
    result = convert(labelme_folder, tmp_path / "out")
    assert result.clean == 2 and read_masks(tmp_path / "out")["d"].max() == 0


def test_images_are_found_by_name_elsewhere_in_the_folder_or_in_the_folder_given(tmp_path):
    # the bsdata layout: label/x.json says "x.png", which lies in data/
    write_image(tmp_path / "src" / "data" / "x.png")
    write_labelme(tmp_path / "src" / "label" / "x.json", [polygon("pit", rectangle(0, 0, 9, 19))], "x.png")
    assert convert(tmp_path / "src", tmp_path / "out").images == 1
    # the same annotation with its images in a folder of their own
    write_image(tmp_path / "pictures" / "y.png")
    write_labelme(tmp_path / "json" / "y.json", [polygon("pit", rectangle(0, 0, 9, 19))], "..\\elsewhere\\y.png")
    convert(tmp_path / "json", tmp_path / "out2", images=tmp_path / "pictures")
    assert read_masks(tmp_path / "out2")["y"].sum() == 200


def test_an_embedded_image_is_written_out(tmp_path):
    raw = image_bytes((30, 40))
    write_labelme(tmp_path / "src" / "e.json", [polygon("pit", rectangle(0, 0, 9, 19))], "gone/e.png", image_data=raw)
    result = convert(tmp_path / "src", tmp_path / "out")
    assert (tmp_path / "out" / "images" / "e.png").read_bytes() == raw and result.linked == 0
    assert read_masks(tmp_path / "out")["e"].sum() == 200


def _bad(tmp_path, shapes=None, document=None, image_path="x.png", image=True, shape=(30, 40)) -> str:
    """The one-line error of a folder holding one bad JSON."""
    root = tmp_path / "src"
    if image:
        write_image(root / "x.png", (30, 40))
    path = write_labelme(root / "x.json", shapes or [], image_path, shape)
    if document is not None:
        path.write_text(document)
    with pytest.raises(ConvertError) as caught:
        convert(root, tmp_path / "out", "labelme")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


@pytest.mark.parametrize(
    "shapes, expected",
    [
        ([polygon("pit", [(0, 0), (5, 5)])], "shapes[0] ('pit'): a polygon with 2 point(s); it needs at least 3"),
        ([polygon("pit", [(0, 0), (5, 5)], "linestrip")], "shapes[0] ('pit'): a linestrip has no area"),
        ([polygon("pit", [(0, 0)], "rectangle")], "a rectangle with 1 point(s); it needs at least 2"),
        ([polygon("pit", [(0, 0), (1, 1), (2, 0)], "ellipse")], "unknown shape_type 'ellipse'"),
        ([polygon("", rectangle(0, 0, 1, 1))], "shapes[0]: no label"),
        ([polygon("pit", [(0, 0), ("a", 1), (2, 0)])], "points must be a list of [x, y] numbers"),
        ([polygon("pit", [(0, 0), (1e9, 1), (2, 0)])], "is beyond any image"),
    ],
)
def test_bad_shapes_are_one_line_errors_naming_the_file_and_shape(tmp_path, shapes, expected):
    assert expected in _bad(tmp_path, shapes)


def test_other_bad_jsons_are_one_line_errors_naming_the_file(tmp_path):
    assert 'not a LabelMe file (no "shapes" list)' in _bad(tmp_path / "1", document='{"version": "5"}')
    assert "it looks like COCO" in _bad(tmp_path / "2", document='{"shapes": 3, "annotations": []}')
    assert "not JSON" in _bad(tmp_path / "3", document="{")
    assert "image 'y.png' not found next to it or under" in _bad(tmp_path / "4", image_path="y.png")
    assert "imagePath is empty, and no imageData" in _bad(tmp_path / "5", image_path="")
    shape = [polygon("pit", rectangle(0, 0, 1, 1))]
    assert "says the image is 30x41 (HxW);" in _bad(tmp_path / "6", shape, shape=(30, 41))


def test_skip_bad_leaves_out_the_bad_json_and_its_image(labelme_folder, tmp_path):
    write_image(labelme_folder / "bad.png")
    write_labelme(labelme_folder / "bad.json", [polygon("pit", [(0, 0), (1, 1)])], "bad.png")
    with pytest.raises(ConvertError, match="bad.json: shapes"):
        convert(labelme_folder, tmp_path / "out")
    result = convert(labelme_folder, tmp_path / "out2", skip_bad=True)
    assert result.images == 3 and [s.message.split(":")[0] for s in result.skipped] == [
        str(labelme_folder / "bad.json")
    ]
    assert "bad" not in read_masks(tmp_path / "out2")  # its image was not taken for a clean one


def test_real_bsdata_files_convert_to_masks_of_their_image_size(tmp_path):
    bsdata = shared_or_skip("STEELSEG_BSDATA", "bsdata", "label", "bsdata (LabelMe pitting)")
    src = tmp_path / "bsdata"
    (src / "label").mkdir(parents=True)
    (src / "data").mkdir()
    for label in sorted((bsdata / "label").glob("*.json"))[:5]:
        shutil.copy(label, src / "label" / label.name)
        image = json.loads(label.read_text())["imagePath"]
        shutil.copy(bsdata / "data" / image, src / "data" / image)
    result = convert(src, tmp_path / "out")
    assert result.images == 5 and result.class_names == ["Pitting"] and result.clean == 0
    for label in sorted((src / "label").glob("*.json")):
        document = json.loads(label.read_text())
        mask = read_masks(tmp_path / "out")[label.stem]
        assert mask.shape == (document["imageHeight"], document["imageWidth"])
        assert 0 < (mask == 1).sum() and set(np.unique(mask)) <= {0, 1}
