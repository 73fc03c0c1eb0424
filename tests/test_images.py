import numpy as np
import pytest
from PIL import Image

from steelseg.images import ImageError, list_images, read_gray, read_label_map


def test_gray_stored_as_rgb_png_behind_a_jpg_name(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    path = tmp_path / "strip.jpg"
    Image.fromarray(np.stack([gray] * 3, axis=2)).save(path, format="PNG")  # PNG bytes, .jpg name
    np.testing.assert_array_equal(read_gray(path), gray)


def test_real_severstal_image(severstal_mini):
    image = read_gray(severstal_mini / "train_images" / "000789191.jpg", (256, 1600))
    assert image.shape == (256, 1600) and image.dtype == np.uint8 and image.std() > 1


def test_missing_corrupt_and_wrong_size_images_name_the_file(tmp_path):
    with pytest.raises(ImageError, match=r"nope.jpg: image not found"):
        read_gray(tmp_path / "nope.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match=r"corrupt.jpg: cannot read image"):
        read_gray(corrupt)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(small)
    with pytest.raises(ImageError, match=r"small.png: image is 10x20 \(HxW\), expected 256x1600"):
        read_gray(small, (256, 1600))


def test_truncated_jpeg_is_an_error(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageError, match="cut.jpg: cannot read image"):
        read_gray(path)


def test_label_maps_must_be_single_channel(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(ImageError, match="m.png: label mask must be single-channel"):
        read_label_map(path)


def test_list_images_skips_other_files(tmp_path):
    for name in ["b.jpg", "a.PNG", "notes.txt", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.jpg"]
