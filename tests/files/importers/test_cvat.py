"""CVAT "Segmentation mask 1.1" exports -> label maps: labelmap order, colours to class ids,
clean listed images, one-line errors naming the file and the colour."""

import numpy as np
import pytest
from importer_samples import read_masks, write_image
from PIL import Image

from steelseg.files.importers import ConvertError, convert, detect_format

LABELMAP = "# label:color_rgb:parts:actions\nbackground:0,0,0::\nscratch:255,0,0::\ndent:0,255,0::\n"
RED, GREEN = (255, 0, 0), (0, 255, 0)


def _export(root, masks: dict[str, np.ndarray], listed=("a", "b"), labelmap=LABELMAP, shape=(30, 40)):
    """A CVAT export: ``masks`` {stem: (H, W, 3) colours}; every listed stem gets a JPEG."""
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text(labelmap)
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("".join(f"{s}\n" for s in listed))
    for stem in listed:
        write_image(root / "JPEGImages" / f"{stem}.jpg", shape, rgb=True)
    for stem, colours in masks.items():
        Image.fromarray(colours).save(root / "SegmentationClass" / f"{stem}.png")
    return root


def _colours(shape=(30, 40)) -> np.ndarray:
    """Scratch (red) in rows 0-9, dent (green) in rows 20-24, the rest background."""
    colours = np.zeros((*shape, 3), np.uint8)
    colours[:10] = RED
    colours[20:25] = GREEN
    return colours


def test_colours_become_class_ids_in_labelmap_order_and_listed_images_without_mask_are_clean(tmp_path):
    src = _export(tmp_path / "cvat", {"a": _colours()})
    assert detect_format(src) == "cvat"
    result = convert(src, tmp_path / "out")
    assert result.class_names == ["scratch", "dent"] and (result.images, result.clean) == (2, 1)
    assert result.annotations == 2  # the (image, class) regions of a colour mask
    labels = read_masks(tmp_path / "out")
    expected = np.zeros((30, 40), np.uint8)
    expected[:10], expected[20:25] = 1, 2
    assert (labels["a"] == expected).all() and labels["b"].max() == 0


def test_a_palette_mask_and_a_background_colour_of_its_own_are_read(tmp_path):
    labelmap = "background:10,10,10::\nscratch:255,0,0::\n"
    colours = _colours()
    colours[20:25] = (10, 10, 10)
    palette = Image.fromarray(colours).quantize(colors=4)  # mode P, as some tools write masks
    src = _export(tmp_path / "cvat", {}, listed=["a"], labelmap=labelmap)
    palette.save(src / "SegmentationClass" / "a.png")
    convert(src, tmp_path / "out")
    labels = read_masks(tmp_path / "out")["a"]
    assert (labels[:10] == 1).all() and labels[10:].max() == 0


def _error(tmp_path, **kwargs) -> str:
    src = _export(tmp_path / "cvat", **kwargs)
    with pytest.raises(ConvertError) as caught:
        convert(src, tmp_path / "out", "cvat")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(src)), message
    return message.removeprefix(f"{src}/")


def test_an_unknown_colour_is_an_error_naming_the_mask_the_colour_and_a_pixel(tmp_path):
    colours = _colours()
    colours[12, 7] = (12, 34, 56)
    message = _error(tmp_path, masks={"a": colours})
    assert message.startswith("SegmentationClass/a.png: colour 12,34,56 (first at x=7, y=12) is not in ")


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"labelmap": "scratch:255,0::\n"}, "labelmap.txt:1: colour '255,0' of 'scratch' is not R,G,B"),
        ({"labelmap": "scratch:255,0,0::\ndent:255,0,0::\n"}, "labelmap.txt:2: 'dent' has the colour of 'scratch'"),
        ({"labelmap": "scratch:0,0,0::\n"}, "labelmap.txt:1: 'scratch' has the background colour 0,0,0"),
        ({"labelmap": "background:0,0,0::\n"}, "labelmap.txt: no class is named"),
    ],
)
def test_bad_labelmaps_are_one_line_errors_naming_the_file_and_line(tmp_path, kwargs, expected):
    assert _error(tmp_path, masks={"a": _colours()}, **kwargs).startswith(expected)


def test_a_listed_image_that_is_missing_is_an_error_naming_the_list_and_line(tmp_path):
    src = _export(tmp_path / "cvat", {"a": _colours()}, listed=["a", "gone"])
    (src / "JPEGImages" / "gone.jpg").unlink()
    with pytest.raises(ConvertError) as caught:
        convert(src, tmp_path / "out")
    assert str(caught.value) == f"{src}/ImageSets/Segmentation/default.txt:2: no image named gone.* in {src}/JPEGImages"


def test_a_mask_of_another_size_than_its_image_is_an_error_or_with_skip_bad_left_out(tmp_path):
    src = _export(tmp_path / "cvat", {"a": _colours((30, 41)), "b": _colours()})
    with pytest.raises(ConvertError, match=r"a.png: mask is 30x41, its image is 30x40 \(HxW\)$"):
        convert(src, tmp_path / "out")
    result = convert(src, tmp_path / "out2", skip_bad=True)
    assert result.images == 1 and list(read_masks(tmp_path / "out2")) == ["b"] and len(result.skipped) == 1
