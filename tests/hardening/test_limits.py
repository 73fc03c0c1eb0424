"""Resource limits: a pixel cap on every image read, checked from the header before decoding
(decompression bombs), and folders of any size listed and predicted in bounded memory."""

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.core.outputs import PIXELS
from steelseg.core.postprocess import PostProcess
from steelseg.files.images import (
    MAX_PIXELS,
    ImageError,
    TooManyPixelsError,
    decode_gray,
    list_images,
    read_gray,
    read_label_map,
    read_shape,
)
from steelseg.inference.predictor import Predictor

SIDE = 4100  # 4100 x 4100 = 16,810,000 px: just over the default cap of 16,384,000


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(height: int, width: int) -> bytes:
    """A PNG that declares height x width gray pixels and holds none: sizing it works, decoding
    it fails. Refused with TooManyPixelsError, it was refused before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b"")


def _real(fmt: str) -> bytes:
    """A real, decodable SIDE x SIDE black image: a few kB that decode to 16.8 MB."""
    buffer = io.BytesIO()
    Image.new("L", (SIDE, SIDE)).save(buffer, fmt)
    return buffer.getvalue()


def _float_tiff(height: int, width: int) -> bytes:
    """A 3-channel float32 TIFF (Pillow cannot open it; OpenCV decodes it), its first IFD's
    ImageWidth and ImageLength rewritten to ``width`` and ``height``."""
    import cv2

    ok, encoded = cv2.imencode(".tif", np.zeros((8, 8, 3), np.float32))
    data = bytearray(encoded.tobytes())
    assert ok and data[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):
            struct.pack_into("<H" if kind == 3 else "<I", data, at + 8, width if tag == 256 else height)
    return bytes(data)


BOMBS = {
    "png-header-only": lambda: png_header_only(100_000, 100_000),  # over Pillow's own limit too
    "png-100-megapixels": lambda: png_header_only(10_000, 10_000),  # between our cap and Pillow's
    "png-real": lambda: _real("PNG"),
    "jpeg-real": lambda: _real("JPEG"),
    "tiff-float-for-opencv": lambda: _float_tiff(60_000, 60_000),
}


def _read_gray(path):
    return read_gray(path)


def _decode(path):
    return decode_gray(path.read_bytes(), path.name)


READERS = {"read_gray": _read_gray, "read_label_map": read_label_map, "read_shape": read_shape, "decode_gray": _decode}
CASES = [(bomb, reader) for bomb in BOMBS for reader in READERS if reader != "read_label_map" or bomb.startswith("png")]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets images.py's filter per test
@pytest.mark.parametrize(("bomb", "reader"), CASES, ids=[f"{bomb}-{reader}" for bomb, reader in CASES])
def test_every_image_reader_refuses_a_bomb_from_its_header(tmp_path, reader, bomb):
    path = tmp_path / f"bomb.{bomb.split('-')[0]}"
    path.write_bytes(BOMBS[bomb]())
    tracemalloc.start()
    try:
        with pytest.raises(TooManyPixelsError) as caught:
            READERS[reader](path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert path.name in message and "the limit is 16,384,000" in message and len(message.splitlines()) == 1, message
    assert peak < 2_000_000, f"{peak:,} bytes allocated: the pixels were decoded"  # 16.8 MB if they had been


def test_a_refusal_prints_no_warning_of_pillows(tmp_path):
    """Pillow warns from 89 Mpx: the refusal must stay the only line (in a fresh process, where
    Python shows warnings; pytest would capture them)."""
    import subprocess
    import sys

    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(10_000, 10_000))
    script = (
        "from steelseg.files.images import read_gray, TooManyPixelsError\n"
        f"try:\n    read_gray({str(path)!r})\nexcept TooManyPixelsError as e:\n    print(e)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stderr == "" and "100,000,000 pixels; the limit is 16,384,000" in done.stdout, done


def test_the_cap_is_the_services_default_too():
    pytest.importorskip("fastapi")
    from steelseg.service.app import ServiceSettings

    assert MAX_PIXELS == 256 * 16_000 * 4 == 16_384_000
    assert ServiceSettings().max_pixels == MAX_PIXELS


def _strip(tmp_path, height=64, width=256):
    path = tmp_path / "strip.png"
    Image.fromarray(np.full((height, width), 7, np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("setting", "readable"),
    [
        pytest.param(str(64 * 256), True, id="exactly-at-the-cap"),
        pytest.param(str(64 * 256 - 1), False, id="one-pixel-over"),
        pytest.param("16_384", True, id="underscores"),
    ],
)
def test_the_environment_sets_the_cap(tmp_path, monkeypatch, setting, readable):
    path = _strip(tmp_path)
    monkeypatch.setenv("STEELSEG_MAX_PIXELS", setting)
    if readable:
        assert read_gray(path).shape == read_shape(path) == (64, 256)
    else:
        with pytest.raises(TooManyPixelsError, match=r"16,384 pixels; the limit is 16,383 \(set STEELSEG_MAX_PIXELS"):
            read_gray(path)


def test_raising_the_cap_reads_a_large_image(tmp_path, monkeypatch):
    path = tmp_path / "large.png"
    path.write_bytes(_real("PNG"))
    monkeypatch.setenv("STEELSEG_MAX_PIXELS", "17000000")
    assert read_gray(path).shape == (SIDE, SIDE)


@pytest.mark.parametrize("setting", ["abc", "-5", "0", "1e6"])
def test_a_bad_cap_setting_is_one_line(tmp_path, monkeypatch, setting):
    monkeypatch.setenv("STEELSEG_MAX_PIXELS", setting)
    with pytest.raises(ImageError, match=r"^STEELSEG_MAX_PIXELS=.*expected a positive whole number of pixels$"):
        read_gray(_strip(tmp_path))


def test_predict_names_the_bomb_in_one_line(untrusted_run, tmp_path, capsys):
    import shutil

    run, data = untrusted_run
    folder = shutil.copytree(data / "train_images", tmp_path / "images")
    (folder / "zz-bomb.png").write_bytes(png_header_only(100_000, 100_000))
    out = tmp_path / "sub.csv"
    code = main(
        ["predict", str(run), str(folder), "--out", str(out), "--backend", "torch", "--device", "cpu", "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert str(folder / "zz-bomb.png") in err and "the limit is 16,384,000" in err


def test_train_names_the_bomb_in_one_line(untrusted_run, untrusted_setup, tmp_path, capsys):
    import shutil

    _, data = untrusted_run
    data = shutil.copytree(data, tmp_path / "data")
    (data / "train_images" / "zz-bomb.jpg").write_bytes(png_header_only(100_000, 100_000))
    code = main(["train", str(data), "--out", str(tmp_path / "run"), *untrusted_setup])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert str(data / "train_images" / "zz-bomb.jpg") in err and "16,384,000" in err


# --- folders of any size -------------------------------------------------------------------


def test_listing_a_large_folder_opens_no_file(tmp_path):
    """5,000 zero-byte ".jpg" files (none a readable image) are listed, sorted, in a few hundred
    bytes each: listing holds paths, never pixels."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(5000):
        (folder / f"{i:05d}.jpg").touch()
    (folder / "notes.txt").touch()
    tracemalloc.start()
    try:
        listed = list_images(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [p.name for p in listed] == [f"{i:05d}.jpg" for i in range(5000)]
    assert peak < 5000 * 1000, f"{peak:,} bytes to list 5,000 files"


class _Dim:
    """A fake network: 0.1 everywhere (no masks, so the run-length strings stay empty and any
    growth in memory is the images' and probabilities')."""

    name = "fake"

    def __call__(self, x):
        return {PIXELS: np.full((len(x), 4, *x.shape[2:]), 0.1, np.float32)}

    def describe(self):
        return "fake"


def _folder_peak(tmp_path, count: int) -> int:
    folder = tmp_path / f"strips-{count}"
    folder.mkdir()
    strip = np.tile(np.arange(800, dtype=np.uint8)[None] % 251, (128, 1))
    for i in range(count):
        Image.fromarray(strip).save(folder / f"{i:04d}.png", compress_level=1)
    config = load_config(None, ["data.class_names=[a, b, c, d]"])
    predictor = Predictor.single(config, PostProcess.uniform(4, 0.5, 0), _Dim(), batch_size=4)
    tracemalloc.start()
    try:
        submission = predictor.predict_folder(folder, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(submission.image_ids) == count and not submission.encoded  # every strip, no masks
    return peak


def test_predicting_a_folder_holds_a_few_batches_not_the_folder(tmp_path):
    """Peak traced memory of predicting 40 and 400 strips of 128 x 800 (4 classes, batches of
    4): each strip's probabilities are 1.6 MB, so holding them all would take 66 MB for 40 and
    655 MB for 400. Measured: 33 MB for either, the same to 1% (images read two batches ahead,
    probabilities two batches behind the run-length encoder); only the submission's rows grow."""
    small, large = _folder_peak(tmp_path, 40), _folder_peak(tmp_path, 400)
    print(f"peak traced memory: 40 strips {small / 1e6:.1f} MB, 400 strips {large / 1e6:.1f} MB")
    assert large < small * 1.25 + 2_000_000, (small, large)
    assert max(small, large) < 30 * 1_638_400  # less than 30 strips' probabilities, whatever the count
