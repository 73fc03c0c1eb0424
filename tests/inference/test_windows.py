"""Long strips in overlapping windows: positions and weights checked against hand-made tables,
blending against networks whose right answer is known (a pixelwise network has no receptive
field, so any difference from the whole image is the blending's), then the tiny trained run and
the command line."""

import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.core import rle
from steelseg.core.outputs import CLASSES, PIXELS
from steelseg.core.postprocess import PostProcess
from steelseg.files.annotations import read_annotations
from steelseg.inference.ensemble import Member
from steelseg.inference.predictor import InputError, Predictor
from steelseg.inference.windows import (
    DEFAULT_OVERLAP,
    DEFAULT_WINDOW,
    layout,
    positions,
    predict_windows,
    ramp,
    window_unit,
)

# mean 0, std 1: the networks see image / 255, so the right answers are easy to write down
PLAIN = ["data.class_names=[a, b]", "model.input_mean=0", "model.input_std=1"]


class FakeNetwork:
    """A numpy function of the input (N, 1, h, w) -> one output by name; remembers the (N, w)
    of every call."""

    name = "fake"

    def __init__(self, fn, output=PIXELS):
        self.fn, self.output, self.calls = fn, output, []

    def __call__(self, x):
        self.calls.append((len(x), x.shape[-1]))
        return {self.output: np.ascontiguousarray(self.fn(x), dtype=np.float32)}

    def describe(self):
        return "fake (numpy)"


def fake(fn, *overrides, output=PIXELS, channels=(0, 1)) -> Member:
    return Member("fake", load_config(None, PLAIN + list(overrides)), FakeNetwork(fn, output), list(channels))


def predictor(*members, **options) -> Predictor:
    return Predictor(list(members), PostProcess.uniform(2, 0.5, 0), ["a", "b"], **options)


def pixelwise(x):
    """Each pixel on its own: brightness and its complement."""
    return np.concatenate([x, 1 - x], axis=1)


STRIP = np.random.default_rng(0).integers(0, 256, (2, 64, 1000), dtype=np.uint8)

# --- positions, weights, units -------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_width", "window", "overlap", "align", "starts"),
    [
        (1000, 1600, 256, 1, [0]),  # narrower than the window: one window (of the image's width)
        (1600, 1600, 256, 1, [0]),  # exactly the window
        (1601, 1600, 256, 1, [0, 1]),  # one column more: a second window, flush right
        (832, 256, 64, 1, [0, 192, 384, 576]),  # 256 + 3 x 192: an exact multiple of the step
        (1000, 256, 64, 1, [0, 192, 384, 576, 744]),  # a remainder: the last overlaps by 88, not 64
        (300, 256, 64, 1, [0, 44]),  # overlap bigger than needed: 212 px
        (512, 256, 0, 1, [0, 256]),  # no overlap: windows side by side
        (1000, 256, 100, 64, [0, 128, 256, 384, 512, 640, 744]),  # step 156 rounded down to 128
        (16000, 1600, 256, 32, [1344 * k for k in range(11)] + [14400]),  # a long strip: 12 windows
    ],
)
def test_window_positions(image_width, window, overlap, align, starts):
    assert positions(image_width, window, overlap, align).tolist() == starts


@pytest.mark.parametrize("image_width", [257, 300, 511, 777, 1000, 1601, 4099])
@pytest.mark.parametrize(("window", "overlap", "align"), [(256, 64, 1), (256, 100, 32), (512, 0, 64), (256, 192, 64)])
def test_windows_cover_every_pixel_flush_right_and_overlap_enough(image_width, window, overlap, align):
    starts = positions(image_width, window, overlap, align)
    width = min(window, image_width)  # no window wider than the image
    covered = np.zeros(image_width, int)
    for start in starts:
        covered[start : start + width] += 1
    assert covered.min() >= 1 and starts[0] == 0 and starts[-1] + width == image_width
    assert (np.diff(starts) <= window - overlap).all()  # every neighbour overlaps by >= overlap
    assert (starts[:-1] % align == 0).all()  # all but the flush-right one on the networks' grid


@pytest.mark.parametrize(("window", "overlap", "align"), [(256, 256, 1), (256, 300, 1), (256, 64, 256), (256, -1, 1)])
def test_windows_that_cannot_advance_are_refused(window, overlap, align):
    with pytest.raises(ValueError, match="cannot advance"):
        positions(1000, window, overlap, align)


@pytest.mark.parametrize(
    ("width", "overlap", "shape", "expected"),
    [
        (8, 3, "linear", [0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25]),
        (8, 3, "hann", [0.1464466, 0.5, 0.8535534, 1, 1, 0.8535534, 0.5, 0.1464466]),  # sin^2(pi/8), 1/2, cos^2(pi/8)
        (5, 0, "linear", [1, 1, 1, 1, 1]),  # no overlap: every column counts fully
        (4, 9, "linear", [0.1, 0.2, 0.2, 0.1]),  # overlap wider than half the window: the ramps meet
    ],
)
def test_ramp_weights(width, overlap, shape, expected):
    np.testing.assert_allclose(ramp(width, overlap, shape), expected, atol=1e-6)


@pytest.mark.parametrize("shape", ["linear", "hann"])
def test_weights_of_regular_neighbours_sum_to_one(shape):
    """Overlapping by exactly the overlap, a window's falling ramp and the next one's rising ramp
    add up to 1 (t + (1 - t); sin^2 + cos^2); only the image's outer edges have less."""
    windows = layout(832, 256, 64, shape=shape)  # starts 0, 192, 384, 576
    coverage = windows.coverage(832)
    np.testing.assert_allclose(coverage[64:-64], 1, atol=1e-6)
    assert 0 < coverage[0] < coverage[63] < 1


@pytest.mark.parametrize(
    ("divisor", "scale", "unit"),
    [(32, 1.0, 32), (32, 0.5, 64), (32, 0.25, 128), (32, 0.75, 128), (32, 0.8, 40), (16, 2.0, 8), (32, 1 / 3, 96)],
)
def test_window_unit_is_a_whole_number_of_network_cells(divisor, scale, unit):
    assert window_unit(divisor, scale) == unit
    assert (unit * scale) % divisor == pytest.approx(0, abs=1e-9)


# --- blending, with networks whose answer is known ---------------------------------------------


def test_blend_weighs_each_window_by_its_ramp():
    """A network that paints a whole window with the brightness of its first column. Column c of
    the image is c // 4, so windows at 0, 192, 384, 576 paint 0, 48, 96, 144 (/255). Where
    windows 0 and 1 overlap (columns 192-255), column 192 + j is (w0 x 0 + w1 x 48) / (w0 + w1)
    with linear weights w0 = (64 - j) / 65 and w1 = (j + 1) / 65."""
    image = np.broadcast_to((np.arange(832) // 4).astype(np.uint8), (1, 3, 832))

    def first_column(batch):
        return np.broadcast_to(batch[:, None, :, :1] / 255, (len(batch), 1, *batch.shape[1:])).astype(np.float32), None

    pixels, heads = predict_windows(image, first_column, layout(832, 256, 64, shape="linear"), batch_size=3)
    j = np.arange(64)
    np.testing.assert_allclose(pixels[0, 0, 1, 192:256], 48 * (j + 1) / 65 / 255, atol=1e-6)
    np.testing.assert_allclose(pixels[0, 0, :, :192], 0, atol=1e-6)  # window 0 alone
    np.testing.assert_allclose(pixels[0, 0, :, 256:384], 48 / 255, atol=1e-6)  # window 1 alone
    np.testing.assert_allclose(pixels[0, 0, :, 768:], 144 / 255, atol=1e-6)  # the last window alone
    assert heads is None


def test_pixelwise_network_in_windows_is_the_whole_image():
    network = fake(pixelwise)
    windowed = predictor(network, window=256, overlap=64, batch_size=4).predict_outputs(STRIP)
    # 2 strips x 5 windows (0, 192, 384, 576, 744) in batches of 4, never wider than the window
    assert network.backend.calls == [(4, 256), (4, 256), (2, 256)]
    whole = predictor(fake(pixelwise), window=None).predict_outputs(STRIP)
    x = STRIP / 255
    np.testing.assert_allclose(windowed.pixels, np.stack([x, 1 - x], axis=1), atol=1e-6)
    np.testing.assert_allclose(windowed.pixels, whole.pixels, atol=1e-6)
    # class scores recomputed from the blended strip: the peaks of the whole image
    np.testing.assert_allclose(
        windowed.scores, np.stack([x.max(axis=(1, 2)), 1 - x.min(axis=(1, 2))], axis=1), atol=1e-6
    )
    assert windowed.heads is None


def test_images_no_wider_than_the_window_are_not_cut():
    network = fake(pixelwise)
    predictor(network, window=1024, overlap=64).predict_outputs(STRIP)
    assert network.backend.calls == [(2, 1000)]


def band_heads(x):
    """Class a: the brightest pixel of the window; class b: 0.3 in every window."""
    brightest = x.max(axis=(1, 2, 3))
    return np.stack([brightest, np.full_like(brightest, 0.3)], axis=1)


def test_class_heads_of_a_strip_are_the_max_over_its_windows():
    """One bright spot in two of the five windows (at 192 and 384): the strip has class a with
    their probability (the mean over the windows, or the last window's, would be far less)."""
    strip = np.full((1, 64, 1000), 10, np.uint8)
    strip[0, 30, 420] = 250
    classifier = fake(band_heads, "model.task=classify", output=CLASSES)
    outputs = predictor(classifier, window=256, overlap=64).predict_outputs(strip)
    assert outputs.pixels is None and classifier.backend.calls == [(4, 256), (1, 256)]
    np.testing.assert_allclose(outputs.heads, [[250 / 255, 0.3]], atol=1e-6)
    np.testing.assert_allclose(outputs.scores, outputs.heads)  # a classifier's scores are its heads


def test_a_class_no_head_predicts_keeps_its_pixel_peak_in_windows():
    pixels = fake(pixelwise)
    head_b = fake(
        lambda x: band_heads(x)[:, 1:], "model.task=classify", "data.classes=[2]", output=CLASSES, channels=[1]
    )
    outputs = predictor(pixels, head_b, window=256, overlap=64).predict_outputs(STRIP)
    x = STRIP / 255
    assert np.isnan(outputs.heads[:, 0]).all()  # no head for a: still NaN, not a number
    np.testing.assert_allclose(outputs.scores[:, 0], x.max(axis=(1, 2)), atol=1e-6)  # a: the blended pixels' peak
    np.testing.assert_allclose(outputs.scores[:, 1], 0.3, atol=1e-6)  # b: its head, max over windows


@pytest.mark.parametrize(
    ("window", "overlap", "message"),
    [
        (10, 0, "--window 10: below the networks' input step of 32 px"),
        (256, 256, "--overlap 256: windows of 256 px take an overlap from 0 to 224 px"),
        (300, 270, "--overlap 270: windows of 288 px take an overlap from 0 to 256 px"),  # 300 rounded down to 288
        (256, -1, "--overlap -1"),
    ],
)
def test_bad_window_settings_name_the_option(window, overlap, message):
    with pytest.raises(InputError, match=message):
        predictor(fake(pixelwise), window=window, overlap=overlap)


def test_window_width_is_rounded_to_the_networks_step():
    assert predictor(fake(pixelwise), window=300).window == 288
    assert (
        predictor(fake(pixelwise, "model.input_scale=0.5"), window=300, overlap=64).window == 256
    )  # 64 px steps at half scale
    assert predictor(fake(pixelwise), window=0).window is None


def test_folder_with_long_and_short_images(tmp_path):
    """Images of both kinds in one folder: each gets its own (windowed or whole) outputs."""
    rng = np.random.default_rng(1)
    images = {"a.png": rng.integers(0, 256, (64, 320)), "b.png": STRIP[0], "c.png": rng.integers(0, 256, (64, 320))}
    for name, image in images.items():
        Image.fromarray(image.astype(np.uint8)).save(tmp_path / name)
    windowed = predictor(fake(pixelwise), window=256, overlap=64)
    seen = {path.name: outputs for path, _, outputs in windowed.iter_folder(tmp_path, progress=False)}
    assert list(seen) == list(images)
    for name, image in images.items():
        np.testing.assert_allclose(seen[name].pixels[0], image / 255, atol=1e-6)


# --- the tiny trained run ------------------------------------------------------------------------


def test_a_severstal_sized_image_is_predicted_whole_bit_for_bit(half_scale_run):
    run, _ = half_scale_run
    image = np.random.default_rng(2).integers(0, 256, (2, 256, 1600), dtype=np.uint8)
    default = Predictor.from_run_dir(run, backend="torch", device="cpu", check_size=False)
    assert (default.window, default.overlap) == (DEFAULT_WINDOW, DEFAULT_OVERLAP)
    whole = Predictor.from_run_dir(run, backend="torch", device="cpu", check_size=False, window=None)
    a, b = default.predict_outputs(image), whole.predict_outputs(image)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_no_seam_where_a_defect_crosses_window_borders(half_scale_run):
    """A bright band across 600 columns of a 64 x 1000 strip, over four window borders (windows
    at 0, 192, 384, 576, 744 of 256 px). Criterion: at every window edge inside the band, the
    blended probabilities change from column to column by no more than the 90th percentile of
    the changes between the band's columns at least 32 px from any window edge. Cutting the same
    windows apart in the middle of each overlap breaks it: a seam the criterion can see."""
    run, _ = half_scale_run
    rng = np.random.default_rng(0)
    strip = np.clip(rng.normal(70, 8, (1, 64, 1000)), 0, 255).astype(np.uint8)
    strip[0, 20:44, 100:700] = 230
    windowed = Predictor.from_run_dir(run, backend="torch", device="cpu", window=256, overlap=64)
    whole = Predictor.from_run_dir(run, backend="torch", device="cpu", window=None)
    blended, reference = windowed.predict_proba(strip)[0], whole.predict_proba(strip)[0]

    starts = positions(1000, 256, 64, windowed.window_unit).tolist()
    assert starts == [0, 192, 384, 576, 744]
    edges = np.array(sorted(set(starts) | {s + 256 for s in starts}))

    def column_changes(pixels):  # [c]: the largest change in the band from column c to c + 1
        return np.abs(np.diff(pixels[:, 20:44], axis=2)).max(axis=(0, 1))

    columns = np.arange(999)
    far = np.abs(columns[:, None] - edges[None]).min(axis=1) >= 32
    typical = np.percentile(column_changes(blended)[far & (columns >= 116) & (columns < 684)], 90)
    across = [c for edge in edges if 100 < edge < 700 for c in (edge - 1, edge)]
    assert column_changes(blended)[across].max() <= typical

    cut = np.empty_like(blended)  # each window alone, cut in the middle of each overlap
    bounds = [0] + [(start + starts[k - 1] + 256) // 2 for k, start in enumerate(starts) if k] + [1000]
    for k, start in enumerate(starts):
        alone = whole.predict_proba(np.ascontiguousarray(strip[:, :, start : start + 256]))[0]
        cut[:, :, bounds[k] : bounds[k + 1]] = alone[:, :, bounds[k] - start : bounds[k + 1] - start]
    assert column_changes(cut)[[b - 1 for b in bounds[1:-1] if 100 < b < 700]].max() > 2 * typical

    # against the whole image: small in the band; near the right end the whole image is padded
    # to 512 network px where the flush-right window is not, hence the looser bound overall
    assert np.abs(blended - reference)[:, 20:44, 100:700].max() < 0.01
    assert np.abs(blended - reference).max() < 0.05


def test_cli_predicts_a_long_strip_in_windows(half_scale_run, tmp_path, capsys):
    run, _ = half_scale_run
    folder = tmp_path / "images"
    folder.mkdir()
    strip = np.full((64, 1200), 60, np.uint8)
    strip[20:44, 700:1150] = 230  # a bright band over the last windows
    Image.fromarray(strip).save(folder / "strip.png")
    out = tmp_path / "s.csv"
    base = [
        "predict",
        str(run),
        str(folder),
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--quiet",
        "--window",
        "256",
        "--overlap",
        "64",
    ]
    # every probability is >= 0: a column no window covered would be missing (NaN) from the mask
    assert main(base + ["--out", str(out), "--post", "pixel_threshold=0", "--post", "min_area=0"]) == 0, (
        capsys.readouterr().err
    )
    assert all(rle.decode(read_annotations(out).get("strip.png", c), (64, 1200)).all() for c in range(1, 5))

    post = ["pixel_threshold=0.51", "min_area=0"]
    assert main(base + ["--out", str(out)] + [a for p in post for a in ("--post", p)]) == 0
    api = Predictor.load([run], backend="torch", device="cpu", window=256, overlap=64, overrides=post)
    expected = [rle.encode(m) for m in api.predict(strip)]
    assert [read_annotations(out).get("strip.png", c) for c in range(1, 5)] == expected


def test_cli_window_defaults_and_refusals(half_scale_run, tmp_path, capsys):

    run, data = half_scale_run
    argv = ["predict", str(run), str(data / "train_images"), "--out", str(tmp_path / "s.csv"), "--quiet"]
    assert main(argv + ["--window", "10"]) == 1  # the half-scale run sees 64 px as its 32 px divisor
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--window 10: below the networks' input step of 64 px" in err
    assert main(argv + ["--window", "100"]) == 1  # rounded down to 64: no room for the default overlap
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overlap 256: windows of 64 px take an overlap from 0 to 0 px" in err
