"""Ensembles: flip TTA, per-class weighted means, class heads and temperatures, checked against
hand-computed arrays from fake networks, then on the tiny trained run."""

import numpy as np
import pytest
import torch
import yaml

from steelseg.config import load_config
from steelseg.core.outputs import CLASSES, PIXELS
from steelseg.core.postprocess import PostProcess
from steelseg.inference.ensemble import TTA, EnsembleError, Member, combine, scale_logits, tta_views
from steelseg.inference.predictor import Predictor

# mean 0, std 1: the network input is the image / 255, so expected arrays are easy to write down
PLAIN = ["data.class_names=[a, b]", "model.input_mean=0", "model.input_std=1"]


class FakeNetwork:
    """A backend that is a numpy function of the input (N, 1, h, w) -> one output by name."""

    name = "fake"

    def __init__(self, fn, output=PIXELS):
        self.fn, self.output, self.calls = fn, output, 0

    def __call__(self, x):
        self.calls += 1
        return {self.output: np.ascontiguousarray(self.fn(x), dtype=np.float32)}

    def describe(self):
        return "fake (numpy)"


def member(fn, *overrides, output=PIXELS, channels=(0, 1), **options) -> Member:
    config = load_config(None, PLAIN + list(overrides))
    return Member("fake", config, FakeNetwork(fn, output), list(channels), **options)


def constant(*values):
    """Pixel probabilities constant per channel: (N, len(values), h, w)."""
    return lambda x: np.broadcast_to(
        np.asarray(values, np.float32)[None, :, None, None], (len(x), len(values), *x.shape[2:])
    )


def heads(*values):
    return lambda x: np.tile(np.asarray(values, np.float32), (len(x), 1))


def column_ramp(x):
    """0 at the left edge to 1 at the right, whatever the image: not flip-equivariant."""
    ramp = np.linspace(0, 1, x.shape[-1], dtype=np.float32)
    return np.broadcast_to(ramp, (len(x), 2, *x.shape[2:]))


IMAGES = np.random.default_rng(0).integers(0, 256, (2, 3, 5), dtype=np.uint8)
X = IMAGES.astype(np.float64) / 255  # what the fakes see, one channel per image
RAMP = np.array([0, 0.25, 0.5, 0.75, 1])  # column_ramp over 5 columns


@pytest.mark.parametrize("tta", ["none", "hflip", "vflip", "both", ["hvflip"], ["none", "hvflip"], ["vflip", "hflip"]])
def test_tta_of_a_pixelwise_network_is_the_network(tta):
    pixelwise = member(lambda x: np.concatenate([x, 1 - x], axis=1), views=tta_views(tta))
    pixels, class_heads = pixelwise.outputs(IMAGES)
    np.testing.assert_allclose(pixels, np.stack([X, 1 - X], axis=1), atol=1e-6)
    assert class_heads is None and pixelwise.backend.calls == len(tta_views(tta))


@pytest.mark.parametrize(
    ("tta", "expected"),
    [
        ("none", RAMP),
        ("hflip", [0.5] * 5),  # the ramp and its mirror
        ("vflip", RAMP),  # the same ramp upside down
        ("both", [1 / 3, 5 / 12, 1 / 2, 7 / 12, 2 / 3]),  # (2 x ramp + mirror) / 3
        (["hvflip"], RAMP[::-1]),
    ],
)
def test_tta_of_a_position_dependent_network(tta, expected):
    ramp = member(column_ramp, views=tta_views(tta))
    pixels, _ = ramp.outputs(IMAGES)
    np.testing.assert_allclose(pixels, np.broadcast_to(np.asarray(expected, np.float64), (2, 2, 3, 5)), atol=1e-6)


@pytest.mark.parametrize(
    ("tta", "expected"),
    [
        ("hflip", X * 0.5),  # (x r + x mirror(r)) / 2: the image flipped in, the output flipped back
        ("vflip", X * RAMP),
        (["hvflip"], X * RAMP[::-1]),
    ],
)
def test_tta_flips_the_input_and_the_output_back(tta, expected):
    """Output = input x column ramp: forgetting either flip gives other numbers."""
    product = member(lambda x: np.concatenate([x, x], axis=1) * np.linspace(0, 1, x.shape[-1]), views=tta_views(tta))
    pixels, _ = product.outputs(IMAGES)
    np.testing.assert_allclose(pixels, np.stack([expected, expected], axis=1), atol=1e-6)


def test_weighted_mean_of_two_members():
    first = member(constant(0.9, 0.6), weight=2.0)
    second = member(constant(0.3, 0.0), weight=1.0)
    pixels, class_heads = combine([first, second], [first.outputs(IMAGES), second.outputs(IMAGES)], 2)
    np.testing.assert_allclose(pixels[:, 0], 0.7, atol=1e-6)  # (2 x 0.9 + 0.3) / 3
    np.testing.assert_allclose(pixels[:, 1], 0.4, atol=1e-6)  # (2 x 0.6 + 0.0) / 3
    assert class_heads is None


def test_a_per_class_member_is_averaged_into_its_class_only():
    full = member(constant(0.2, 0.4), weight=1.0)
    class_b = member(constant(0.8), "data.classes=[2]", channels=[1], weight=3.0)
    predictor = Predictor([full, class_b], PostProcess.uniform(2, 0.5, 0), ["a", "b"])
    outputs = predictor.predict_outputs(IMAGES)
    np.testing.assert_allclose(outputs.pixels[:, 0], 0.2, atol=1e-6)  # only the full member predicts a
    np.testing.assert_allclose(outputs.pixels[:, 1], 0.7, atol=1e-6)  # (0.4 + 3 x 0.8) / 4
    np.testing.assert_allclose(outputs.scores, [[0.2, 0.7]] * 2, atol=1e-6)  # the peaks
    assert outputs.heads is None
    masks = predictor.predict(IMAGES[0])
    assert not masks[0].any() and masks[1].all()


def test_class_heads_are_averaged_and_scores_fall_back_to_the_peak():
    segment = member(lambda x: np.stack([0.5 * column_ramp(x)[:, 0], np.full(x.shape[:1] + x.shape[2:], 0.1)], axis=1))
    head_b = member(heads(0.9), "model.task=classify", "data.classes=[2]", output=CLASSES, channels=[1], weight=1.0)
    other_b = member(heads(0.6), "model.task=classify", "data.classes=[2]", output=CLASSES, channels=[1], weight=2.0)
    predictor = Predictor([segment, head_b, other_b], PostProcess.uniform(2, 0.5, 0), ["a", "b"])
    outputs = predictor.predict_outputs(IMAGES)
    assert np.isnan(outputs.heads[:, 0]).all()  # no head predicts a: NaN, not 0
    np.testing.assert_allclose(outputs.heads[:, 1], 0.7, atol=1e-6)  # (0.9 + 2 x 0.6) / 3
    np.testing.assert_allclose(outputs.scores, [[0.5, 0.7]] * 2, atol=1e-6)  # a: its pixel peak; b: the heads
    np.testing.assert_allclose(outputs.pixels[:, 1], 0.1, atol=1e-6)  # heads do not touch a segment member's pixels


def test_classifiers_alone_give_their_heads_as_scores():
    a = member(heads(0.25), "model.task=classify", "data.classes=[1]", output=CLASSES, channels=[0])
    b = member(heads(0.75, 0.5), "model.task=classify", output=CLASSES)
    outputs = Predictor([a, b], PostProcess.uniform(2, 0.5, 0), ["a", "b"]).predict_outputs(IMAGES)
    assert outputs.pixels is None
    np.testing.assert_allclose(outputs.scores, [[0.5, 0.5]] * 2, atol=1e-6)  # a: (0.25 + 0.75) / 2; b: 0.5 alone


@pytest.mark.parametrize(
    ("probability", "temperature", "expected"),
    [
        (0.8, 2.0, 2 / 3),  # logit 0.8 = ln 4; ln 4 / 2 = ln 2 -> 2 / 3
        (0.8, 0.5, 16 / 17),  # 2 ln 4 = ln 16 -> 16 / 17
        (0.2, 2.0, 1 / 3),
        (0.9, 2.0, 0.75),  # ln 9 / 2 = ln 3
        (0.5, 7.0, 0.5),  # logit 0 stays 0
        (0.8, 1.0, 0.8),
    ],
)
def test_scale_logits(probability, temperature, expected):
    np.testing.assert_allclose(scale_logits(np.array([probability], np.float32), temperature), [expected], atol=1e-6)


def test_scale_logits_of_certain_probabilities_stays_finite():
    scaled = scale_logits(np.array([0.0, 1.0], np.float32), 2.0)
    assert np.isfinite(scaled).all() and 0 < scaled[0] < 1e-3 and 1 - 1e-3 < scaled[1] < 1


def test_temperature_rescales_pixels_and_heads():
    pixels, _ = member(constant(0.8, 0.2), temperature=2.0).outputs(IMAGES)
    np.testing.assert_allclose(pixels[:, 0], 2 / 3, atol=1e-6)
    np.testing.assert_allclose(pixels[:, 1], 1 / 3, atol=1e-6)
    _, class_heads = member(heads(0.8, 0.9), "model.task=classify", output=CLASSES, temperature=2.0).outputs(IMAGES)
    np.testing.assert_allclose(class_heads, [[2 / 3, 0.75]] * 2, atol=1e-6)


def test_temperature_applies_to_the_mean_of_the_views():
    """Left column 0.9, right 0.7: the hflip mean is 0.8 everywhere, and sigmoid(logit(0.8) / 2)
    = 2/3 (scaling each view first would give (0.75 + 0.604) / 2 = 0.677)."""
    two_columns = member(
        lambda x: np.broadcast_to(np.float32([0.9, 0.7]), (len(x), 2, x.shape[2], 2)),
        views=TTA["hflip"],
        temperature=2.0,
    )
    pixels, _ = two_columns.outputs(IMAGES[:, :, :2])
    np.testing.assert_allclose(pixels, 2 / 3, atol=1e-6)


@pytest.mark.parametrize(
    ("tta", "message"),
    [
        ("flips", "unknown TTA 'flips'; choose one of none, hflip, vflip, both"),
        (["none", "none"], "no repeats"),
        ([], "at least one"),
        (["rot90"], "each must be one of none, hflip, vflip, hvflip"),
    ],
)
def test_bad_tta_names_list_the_choices(tta, message):
    with pytest.raises(EnsembleError, match=message):
        tta_views(tta)


@pytest.mark.parametrize(("option", "value"), [("weight", 0.0), ("weight", -1.0), ("temperature", 0.0)])
def test_member_weights_and_temperatures_must_be_positive(option, value):
    with pytest.raises(EnsembleError, match=f"fake: {option} must be above 0, got {value}"):
        member(constant(0.5, 0.5), **{option: value})


def test_every_class_needs_a_pixel_member_and_a_head_gate_needs_a_head():
    class_b = member(constant(0.8), "data.classes=[2]", channels=[1])
    with pytest.raises(EnsembleError, match="no member predicts the pixels of class 'a'"):
        Predictor([class_b], PostProcess.uniform(2, 0.5, 0), ["a", "b"])
    full = member(constant(0.2, 0.4))
    with pytest.raises(EnsembleError, match="head_threshold or soft_gate for b needs a member with a class head"):
        Predictor([full], PostProcess.uniform(2, 0.5, 0, head_threshold=[0, 0.5]), ["a", "b"])


# --- the tiny trained run -----------------------------------------------------------------


class PixelwiseNet(torch.nn.Module):
    """A 1x1 convolution and a sigmoid: every pixel on its own, so flips commute with it."""

    outputs = (PIXELS,)

    def __init__(self, classes: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, classes, 1)
        torch.nn.init.normal_(self.conv.weight, std=2.0)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


@pytest.mark.parametrize("tta", ["hflip", "vflip", "both"])
def test_tta_of_a_flip_equivariant_torch_network_equals_no_tta(half_scale_run, tta):
    run, _ = half_scale_run
    plain = Predictor.load([run], backend="torch", device="cpu")
    flipped = Predictor.load([run], backend="torch", device="cpu", tta=tta)
    assert flipped.members[0].views == TTA[tta]
    plain.members[0].backend.net = flipped.members[0].backend.net = PixelwiseNet(4)
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 320), dtype=np.uint8)
    reference = plain.predict_proba(images)
    assert reference.std() > 0.05  # the network sees the image: a missing flip back would show
    np.testing.assert_allclose(flipped.predict_proba(images), reference, atol=1e-6)


def _images(data, count=None):
    from steelseg.files.images import read_gray

    paths = sorted((data / "train_images").iterdir())[:count]
    return paths, np.stack([read_gray(p) for p in paths])


@pytest.fixture
def self_ensemble(half_scale_run, tmp_path):
    """The tiny run twice (weights 1 and 2), each with TTA both, as an ensemble file."""
    run, _ = half_scale_run
    path = tmp_path / "ensemble.yaml"
    path.write_text(
        yaml.safe_dump({"members": [{"run": str(run), "tta": "both"}, {"run": str(run), "tta": "both", "weight": 2}]})
    )
    return path


POST = ["pixel_threshold=0.51", "min_area=0"]  # the 1-epoch run's probabilities sit near 0.5


def test_an_ensemble_of_a_run_with_itself_is_the_runs_tta_mean(half_scale_run, self_ensemble):
    run, data = half_scale_run
    _, images = _images(data, 3)
    single = Predictor.from_run_dir(run, backend="torch", device="cpu")
    # TTA by hand: the run on the flipped images, flipped back, averaged
    expected = (
        single.predict_proba(images)
        + single.predict_proba(np.ascontiguousarray(images[:, :, ::-1]))[..., ::-1]
        + single.predict_proba(np.ascontiguousarray(images[:, ::-1]))[..., ::-1, :]
    ) / 3
    ensemble = Predictor.load([self_ensemble], backend="torch", device="cpu")
    assert [m.weight for m in ensemble.members] == [1.0, 2.0] and ensemble.describe().startswith(
        "2 networks x 3 TTA views"
    )
    np.testing.assert_allclose(ensemble.predict_proba(images), expected, atol=1e-6)


def test_ensemble_folder_prediction_equals_image_by_image(half_scale_run, self_ensemble, tmp_path, capsys):
    from steelseg.commands.cli import main
    from steelseg.core import rle
    from steelseg.files.annotations import read_annotations
    from steelseg.files.class_scores import read_class_scores

    _, data = half_scale_run
    paths, images = _images(data)
    predictor = Predictor.load([self_ensemble], backend="torch", device="cpu", batch_size=3, overrides=POST)
    table = predictor.predict_folder(data / "train_images", progress=False)
    assert table.image_ids == [p.name for p in paths]
    encoded = [[rle.encode(m) for m in predictor.predict(image)] for image in images]
    assert [[table.get(p.name, c) for c in range(1, 5)] for p in paths] == encoded
    assert any(e for row in encoded for e in row) and not all(e for row in encoded for e in row)  # some masks, not all

    out, scores = tmp_path / "s.csv", tmp_path / "scores.csv"
    argv = [
        "predict",
        str(self_ensemble),
        str(data / "train_images"),
        "--out",
        str(out),
        "--scores",
        str(scores),
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        "3",
        "--quiet",
    ] + [a for p in POST for a in ("--post", p)]
    assert main(argv) == 0, capsys.readouterr().err
    written = read_annotations(out)
    assert [[written.get(p.name, c) for c in range(1, 5)] for p in paths] == encoded
    read = read_class_scores(scores, 4)
    assert read.image_ids == [p.name for p in paths]
    peaks = predictor.predict_proba(images).max(axis=(2, 3))  # segment runs score a class by its peak
    np.testing.assert_allclose(read.scores, peaks, atol=1e-6)


def test_near_duplicates_share_their_peaks_before_the_gate():
    from steelseg.inference.predictor import Candidate
    from steelseg.inference.sources import ClusterSpec

    post = PostProcess.uniform(2, 0.5, 0, peak_threshold=0.6)
    one = member(constant(0.5, 0.5))
    encoded = ["1 3", "4 2"]  # both classes have a mask before the gate
    e = np.array([1.0, 0.0, 0.0])
    candidates = {  # image b is a near-copy of a; c looks like neither
        "a": Candidate(encoded, np.array([0.9, 0.1]), None, np.array([0.9, 0.1]), e),
        "b": Candidate(encoded, np.array([0.5, 0.1]), None, np.array([0.5, 0.1]), e + [0, 1e-3, 0]),
        "c": Candidate(encoded, np.array([0.5, 0.1]), None, np.array([0.5, 0.1]), np.array([0.0, 0.0, 1.0])),
    }

    def kept(clusters):
        table = Predictor([one], post, ["a", "b"], clusters=clusters).finish(candidates)
        return {i: [bool(table.get(i, c)) for c in (1, 2)] for i in "abc"}

    # alone, b's peak 0.5 fails the 0.6 gate; shared with a, it is (0.9 + 0.5) / 2 = 0.7
    assert kept(None) == {"a": [True, False], "b": [False, False], "c": [False, False]}
    assert kept(ClusterSpec(distance=0.01)) == {"a": [True, False], "b": [True, False], "c": [False, False]}
