import cv2
import numpy as np
import pytest
from PIL import Image

from steelseg.files.images import (
    ImageError,
    TooManyPixelsError,
    decode_gray,
    list_images,
    read_gray,
    read_label_map,
    require_images,
)


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


# --- bit depths: every expected value below is derived by hand from the rules in images.py ---
# 16-bit: round_half_up(v * 255 / 65535) = round_half_up(v / 257): 257 -> 1, 1000 -> 3.89 -> 4,
# 32896 = 128 * 257 -> 128, 65535 -> 255.  Floats: round_half_up(v * 255) for 0..1.
SIXTEEN_BIT = np.array([[0, 257, 1000, 32896, 65535]], np.uint16)
SIXTEEN_BIT_READS = np.array([[0, 1, 4, 128, 255]], np.uint8)


def _write_pillow(path, array, mode=None, **save):
    image = Image.fromarray(array) if mode is None else Image.frombytes(mode, array.shape[::-1], array.tobytes())
    image.save(path, **save)
    return path


@pytest.mark.parametrize(
    "name, write",
    [
        ("pillow I;16 png", lambda p: _write_pillow(p / "a.png", SIXTEEN_BIT)),
        ("opencv 16-bit png", lambda p: cv2.imwrite(str(p / "a.png"), SIXTEEN_BIT) and p / "a.png"),
        ("opencv 16-bit tiff", lambda p: cv2.imwrite(str(p / "a.tif"), SIXTEEN_BIT) and p / "a.tif"),
        ("pillow I;16B tiff", lambda p: _write_pillow(p / "a.tif", SIXTEEN_BIT.astype(">u2"), mode="I;16B")),
        (
            "16-bit pgm, which Pillow opens as mode I",
            lambda p: cv2.imwrite(str(p / "a.pgm"), SIXTEEN_BIT) and p / "a.pgm",
        ),
        ("16-bit png behind a .jpg name", lambda p: _write_pillow(p / "a.jpg", SIXTEEN_BIT, format="PNG")),
    ],
)
def test_16bit_gray_is_scaled_by_bit_depth_not_clipped(tmp_path, name, write):
    np.testing.assert_array_equal(read_gray(write(tmp_path)), SIXTEEN_BIT_READS)


def test_16bit_gray_png_is_scaled_even_when_dark(tmp_path):
    # max 1000 must not be stretched to 255: the scale is the bit depth, not the image's maximum
    path = _write_pillow(tmp_path / "dark.png", np.full((2, 3), 1000, np.uint16))
    np.testing.assert_array_equal(read_gray(path), np.full((2, 3), 4, np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_keeps_its_low_byte(tmp_path, suffix):
    # Pillow alone gives 1000 -> 3 (high byte); pure red 65535 has luminance 0.299 * 255 = 76.2 -> 76
    gray = np.stack([SIXTEEN_BIT] * 3, axis=2)
    red = np.zeros((1, 1, 3), np.uint16)
    red[..., 2] = 65535  # OpenCV writes BGR
    bgr = np.concatenate([gray, red], axis=1)
    cv2.imwrite(str(tmp_path / f"rgb{suffix}"), bgr)
    np.testing.assert_array_equal(read_gray(tmp_path / f"rgb{suffix}"), [[0, 1, 4, 128, 255, 76]])


def test_16bit_rgba_png_drops_alpha(tmp_path):
    bgra = np.concatenate([np.stack([SIXTEEN_BIT] * 3, axis=2), np.zeros((1, 5, 1), np.uint16)], axis=2)
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    np.testing.assert_array_equal(read_gray(tmp_path / "rgba.png"), SIXTEEN_BIT_READS)


def test_float_0_to_1_is_scaled_rounding_half_up(tmp_path):
    # 0.5 * 255 = 127.5 -> 128; 0.25 * 255 = 63.75 -> 64; 0.1 * 255 = 25.5 (float32 0.1 is a hair above) -> 26
    values = np.array([[0.0, 0.5, 0.25, 0.1, 1.0]], np.float32)
    path = _write_pillow(tmp_path / "f.tif", values)
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(read_gray(path), [[0, 128, 64, 26, 255]])


def test_float_0_to_255_passes_through_rounding_half_up(tmp_path):
    # half up, not half to even: 2.5 -> 3 (half-even would give 2), 4.5 -> 5
    values = np.array([[0.0, 2.5, 4.5, 17.0, 254.4, 255.0]], np.float32)
    cv2.imwrite(str(tmp_path / "f.tif"), values)
    np.testing.assert_array_equal(read_gray(tmp_path / "f.tif"), [[0, 3, 5, 17, 254, 255]])


def test_three_channel_float_tiff_which_pillow_cannot_open(tmp_path):
    cv2.imwrite(str(tmp_path / "f3.tif"), np.stack([np.array([[0.0, 0.5, 1.0]], np.float32)] * 3, axis=2))
    np.testing.assert_array_equal(read_gray(tmp_path / "f3.tif"), [[0, 128, 255]])


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("above 255", [2.0, 300.0], r"bad.tif: float image values span 2\.\.300; expected 0\.\.1 or 0\.\.255"),
        ("negative", [-0.5, 0.5], r"bad.tif: float image values span -0\.5\.\.0\.5; expected"),
        (
            "nan",
            [np.nan, 0.5, 0.75],
            r"bad.tif: float image holds NaN or infinite values \(finite values span 0\.5\.\.0\.75\)",
        ),
        ("infinity", [np.inf, 2.0], r"bad.tif: float image holds NaN or infinite values \(finite values span 2\.\.2\)"),
    ],
)
def test_float_out_of_range_names_the_file_and_the_range(tmp_path, name, values, message):
    path = _write_pillow(tmp_path / "bad.tif", np.array([values], np.float32))
    with pytest.raises(ImageError, match=message):
        read_gray(path)


@pytest.mark.parametrize(
    "name, values, expected",
    [
        ("0..255 as they are", [0, 10, 255], [0, 10, 255]),
        ("0..65535 by the 16-bit rule", [0, 257, 65535], [0, 1, 255]),
    ],
)
def test_32bit_integer_images(tmp_path, name, values, expected):
    path = _write_pillow(tmp_path / "i.tif", np.array([values], np.int32))
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(read_gray(path), [expected])


def test_32bit_integer_out_of_range_names_the_file(tmp_path):
    path = _write_pillow(tmp_path / "i.tif", np.array([[-1, 70000]], np.int32))
    with pytest.raises(
        ImageError, match=r"i.tif: integer image values span -1\.\.70000; expected 0\.\.255 or 0\.\.65535"
    ):
        read_gray(path)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_tiff_is_one_error_naming_the_file(tmp_path, capfd):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00" + b"garbage" * 3)  # TIFF magic: Pillow gives up, OpenCV is tried too
    with pytest.raises(ImageError, match=r"bad.tif: cannot read image"):
        read_gray(path)
    assert "TIFF" not in capfd.readouterr().err  # OpenCV's own error lines stay quiet


def test_8bit_colour_is_pillow_luminance(tmp_path):
    # L = 0.299 R + 0.587 G + 0.114 B, rounded: (255, 0, 0) -> 76.2 -> 76, (0, 255, 0) -> 149.7 -> 150,
    # (0, 0, 255) -> 29.1 -> 29
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10]]], np.uint8)
    path = _write_pillow(tmp_path / "c.png", rgb)
    np.testing.assert_array_equal(read_gray(path), [[76, 150, 29, 10]])


def test_16bit_label_maps_with_small_values_still_read(tmp_path):
    path = _write_pillow(tmp_path / "m.png", np.array([[0, 1, 4]], np.uint16))
    assert Image.open(path).mode == "I;16"
    np.testing.assert_array_equal(read_label_map(path), [[0, 1, 4]])


def test_require_images_on_an_empty_folder(tmp_path):
    with pytest.raises(ImageError, match=r"no images found") as caught:
        require_images(tmp_path)
    assert str(caught.value) == f"{tmp_path}: no images found (looked for .jpg, .jpeg, .png, .bmp, .tif, .tiff)"


def test_require_images_counts_the_skipped_files(tmp_path):
    for name in ["a.webp", "b.txt", "c.TXT", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()
    with pytest.raises(ImageError) as caught:
        require_images(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: no images found (looked for .jpg, .jpeg, .png, .bmp, .tif, .tiff); "
        "skipped 3 files with other suffixes (.txt, .webp)"
    )


def test_require_images_returns_the_images(tmp_path):
    for name in ["b.jpg", "a.tif", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in require_images(tmp_path)] == ["a.tif", "b.jpg"]
    with pytest.raises(ImageError, match="nope: image folder not found"):
        require_images(tmp_path / "nope")


_RED16 = np.array([[[0, 0, 65535]]], np.uint16)  # pure red, BGR


# Uploads (the service) are bytes, not files: the same rules, on the cv2 fallbacks too.
@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (
            lambda p: cv2.imwrite(
                str(p / "x.png"), np.concatenate([np.stack([SIXTEEN_BIT] * 3, axis=2), _RED16], axis=1)
            ),
            [[0, 1, 4, 128, 255, 76]],
        ),  # 16-bit colour: OpenCV from bytes
        (
            lambda p: cv2.imwrite(str(p / "x.tif"), np.stack([np.array([[0.0, 0.5, 1.0]], np.float32)] * 3, axis=2)),
            [[0, 128, 255]],
        ),  # 3-channel float TIFF: OpenCV from bytes
        (lambda p: cv2.imwrite(str(p / "x.png"), np.array([[0, 100, 255]], np.uint8)), [[0, 100, 255]]),
    ],
)
def test_decode_gray_reads_bytes_by_the_same_rules(tmp_path, write, expected):
    write(tmp_path)
    data = next(tmp_path.iterdir()).read_bytes()
    np.testing.assert_array_equal(decode_gray(data, "upload.bin"), expected)


def test_decode_gray_names_the_upload_and_refuses_too_many_pixels_from_the_header(tmp_path):
    with pytest.raises(ImageError, match=r"^strip\.png: cannot read image"):
        decode_gray(b"\x89PNG\r\n\x1a\nnot really", "strip.png")
    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((10, 300), np.uint8))
    with pytest.raises(
        TooManyPixelsError, match=r"^wide\.png: image is 10x300 \(HxW\), 3,000 pixels; the limit is 2,999"
    ):
        decode_gray((tmp_path / "wide.png").read_bytes(), "wide.png", max_pixels=2999)
    assert decode_gray((tmp_path / "wide.png").read_bytes(), "wide.png", max_pixels=3000).shape == (10, 300)


def test_a_block_boundary_changes_no_pixel(tmp_path, monkeypatch):
    """Converting a block of rows at a time gives what converting the whole image gives: the
    same colour ramp read with blocks of 7 pixels (rows of 5: one row a block) and of 1 Mpx."""
    from steelseg.files import images

    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 65536, (9, 5, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "ramp.png"), bgr)
    whole = read_gray(tmp_path / "ramp.png")
    monkeypatch.setattr(images, "BLOCK_PIXELS", 7)
    np.testing.assert_array_equal(read_gray(tmp_path / "ramp.png"), whole)
    # and against an independent luminance: ITU-R 601 weights, scaled by bit depth
    luminance = bgr[..., 2] * 0.299 + bgr[..., 1] * 0.587 + bgr[..., 0] * 0.114
    assert np.abs(whole.astype(int) - np.round(luminance * 255 / 65535)).max() <= 1


def test_a_large_16bit_colour_image_costs_its_samples_and_a_bounded_buffer(tmp_path):
    """No float64 copy of the whole image: decoding 8 Mpx of 16-bit colour (48 MB of samples)
    peaks well below one float64 plane per channel (192 MB)."""
    import tracemalloc

    height, width = 2048, 4096
    ramp = (np.arange(width, dtype=np.uint32) * 16).astype(np.uint16)
    bgr = np.broadcast_to(ramp[None, :, None], (height, width, 3))
    ok, png = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    data = png.tobytes()
    del bgr
    tracemalloc.start()
    try:
        gray = decode_gray(data, "big.png", max_pixels=height * width)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert gray.shape == (height, width) and gray[0, -1] == round(int(ramp[-1]) * 255 / 65535)
    samples, result = height * width * 6, height * width
    assert peak < samples + result + 80 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_formats_whose_decoders_run_programs_are_never_tried(tmp_path, monkeypatch):
    """An EPS file (Pillow would hand it to Ghostscript) is refused by name, its plugin unopened."""
    from PIL import EpsImagePlugin

    Image.new("L", (20, 10), 128).save(tmp_path / "strip.eps", "EPS")
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    with pytest.raises(ImageError, match=r"strip\.eps: cannot read image: not PNG, JPEG, BMP, TIFF or PGM/PPM"):
        read_gray(tmp_path / "strip.eps")
    with pytest.raises(ImageError, match="not PNG, JPEG"):
        decode_gray((tmp_path / "strip.eps").read_bytes(), "upload.eps")
    assert opened == []
