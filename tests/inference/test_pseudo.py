"""Pseudo-labels: the 1st- and 10th-place selection rules on hand-made tables and maps, and
`run_pseudo` through a stand-in Predictor that plants the probabilities (the image's gray
value / 255), written as a dataset that `open_dataset` reads back."""

import json

import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import main
from steelseg.core.outputs import Outputs
from steelseg.errors import OutputExistsError
from steelseg.files.datasets import open_dataset
from steelseg.files.images import list_images, read_gray
from steelseg.inference.predictor import Predictor
from steelseg.inference.pseudo import PseudoError, confident_share, first_place_rule, run_pseudo, tenth_place_rule

# --- the 1st-place rule -------------------------------------------------------------------

# (name, class scores, post-processed mask present, kept)
FIRST = [
    ("all sure and agreeing", [0.99, 0.01], [True, False], True),
    ("sure clean image", [0.01, 0.02], [False, False], True),
    ("sure of both classes", [0.96, 0.97], [True, True], True),
    ("score exactly hi", [0.95, 0.01], [True, False], False),
    ("score exactly lo", [0.99, 0.05], [True, False], False),
    ("score between", [0.99, 0.5], [True, False], False),
    ("sure defect, empty mask", [0.99, 0.01], [False, False], False),
    ("sure clean, mask present", [0.99, 0.01], [True, True], False),
    ("extremes 1 and 0", [1.0, 0.0], [True, False], True),
]


@pytest.mark.parametrize("scores, present, kept", [case[1:] for case in FIRST], ids=[case[0] for case in FIRST])
def test_first_place_rule_case(scores, present, kept):
    assert first_place_rule(np.array([scores]), np.array([present])).tolist() == [kept]


def test_first_place_rule_is_row_wise_and_float32_bounds_stay_excluded():
    scores = np.array([case[1] for case in FIRST], np.float32)  # float32 0.95 / 0.05 sit on either side
    present = np.array([case[2] for case in FIRST])
    assert first_place_rule(scores, present).tolist() == [case[3] for case in FIRST]
    assert first_place_rule(np.zeros((0, 4)), np.zeros((0, 4), bool)).shape == (0,)


def test_first_place_rule_with_other_bounds():
    assert first_place_rule(np.array([[0.85, 0.15]]), np.array([[True, False]]), hi=0.8, lo=0.2).tolist() == [True]


@pytest.mark.parametrize("hi, lo", [(0.05, 0.95), (0.5, 0.5), (1.5, 0.05), (0.95, -0.1)])
def test_first_place_rule_rejects_bounds_out_of_order(hi, lo):
    with pytest.raises(PseudoError, match="need 0 <= lo < hi <= 1"):
        first_place_rule(np.zeros((1, 1)), np.zeros((1, 1), bool), hi=hi, lo=lo)


# --- the 10th-place rule --------------------------------------------------------------------

H, W = 40, 60


def _map(background: float = 0.01) -> np.ndarray:
    return np.full((1, H, W), background, np.float32)


def _share_of(uncertain_pixels: int) -> float:
    return 1 - uncertain_pixels / (H * W)


def test_a_sure_mask_with_a_blurry_two_px_rim_is_all_confident():
    probs = _map()
    probs[0, 8:24, 10:30] = 0.5  # the rim: 2 px around the core
    probs[0, 10:22, 12:28] = 0.97  # the core
    rim = 16 * 20 - 12 * 16
    assert confident_share(probs, border=3).tolist() == [1.0]
    assert confident_share(probs, border=2).tolist() == [1.0]
    assert confident_share(probs, border=1).tolist() == [pytest.approx(_share_of(rim - (14 * 18 - 12 * 16)))]
    assert confident_share(probs, border=0).tolist() == [pytest.approx(_share_of(rim))]


def test_only_border_px_of_a_wide_uncertain_band_are_forgiven():
    probs = _map()
    probs[0, 10:20, 10:20] = 0.9  # core
    probs[0, 10:20, 20:30] = 0.6  # a 10-px uncertain band to its right: 3 columns forgiven
    assert confident_share(probs, border=3).tolist() == [pytest.approx(_share_of(10 * 7))]


def test_a_large_uncertain_region_fails():
    probs = _map()
    probs[0, 5:35, 10:40] = 0.5  # no sure core anywhere near
    shares = confident_share(probs)
    assert shares.tolist() == [pytest.approx(_share_of(30 * 30))]
    assert tenth_place_rule(shares[None]).tolist() == [False]


def test_a_thin_uncertain_line_without_a_sure_core_is_not_forgiven():
    probs = _map()
    probs[0, :, 30] = 0.4  # a faint crack nobody is sure of
    assert confident_share(probs, border=3).tolist() == [pytest.approx(_share_of(H))]


def test_the_bounds_low_and_high_themselves_are_uncertain():
    probs = _map()
    probs[0, 0, :10] = 0.2
    probs[0, 39, :5] = 0.8  # not above high: not a core either
    assert confident_share(probs, border=3).tolist() == [pytest.approx(_share_of(15))]


def test_classes_are_counted_apart():
    probs = np.concatenate([_map(), _map(0.99)])
    probs[0, :10, :10] = 0.5
    assert confident_share(probs, border=0).tolist() == [pytest.approx(_share_of(100)), 1.0]


# (name, per-class shares, kept at 0.99)
TENTH = [
    ("every class above", [0.999, 1.0], True),
    ("exactly the minimum", [0.99, 1.0], True),
    ("one class below", [1.0, 0.98], False),
]


@pytest.mark.parametrize("shares, kept", [case[1:] for case in TENTH], ids=[case[0] for case in TENTH])
def test_tenth_place_rule_case(shares, kept):
    assert tenth_place_rule(np.array([shares]), min_share=0.99).tolist() == [kept]


@pytest.mark.parametrize(
    "call",
    [
        lambda: tenth_place_rule(np.ones((1, 1)), min_share=0),
        lambda: confident_share(_map(), border=-1),
        lambda: confident_share(_map(), low=0.8, high=0.2),
    ],
)
def test_bad_settings_are_pseudo_errors(call):
    with pytest.raises(PseudoError):
        call()


# --- run_pseudo through a stand-in Predictor with planted probabilities ------------------------

NAMES = ["dark", "bright"]


class _Planted:
    """What run_pseudo uses of a Predictor (``iter_folder``, ``masks``, ``class_names``,
    ``has_masks``), with planted numbers: class 1's probability is the gray value / 255, class
    2's is 0.01 everywhere; a score is the largest probability; a mask is probability >= 0.5,
    emptied when it has fewer than ``min_area`` pixels."""

    has_masks, task, class_names, batch_size = True, "segment", NAMES, 2

    def __init__(self, min_area: int = 0, pixels: bool = True):
        self.min_area, self.pixels = min_area, pixels

    def fingerprint(self):
        return {"model": "planted", "min_area": self.min_area}

    def iter_folder(self, image_dir, progress=True, *, paths=None, skip=None):
        for path in list_images(image_dir) if paths is None else paths:
            image = read_gray(path)
            pixels = np.stack([image / 255, np.full(image.shape, 0.01)]).astype(np.float32)
            yield path, image, Outputs(pixels if self.pixels else None, pixels.reshape(2, -1).max(axis=1))

    def masks(self, outputs):
        masks = outputs.pixels >= 0.5
        masks[masks.sum(axis=(1, 2)) < self.min_area] = False
        return masks


def _image(core: int | None = 250, rim: int | None = None, size=(8, 12)) -> np.ndarray:
    image = np.full((32, 48), 3, np.uint8)  # 0.012: surely clean
    if rim is not None:
        image[6 : 10 + size[0], 8 : 12 + size[1]] = rim
    if core is not None:
        image[8 : 8 + size[0], 10 : 10 + size[1]] = core
    return image


# image id -> (image, passes rule first, passes rule tenth)
IMAGES = {
    "a-sure.png": (_image(), True, True),
    "b-clean.png": (_image(core=None), True, True),
    "c-unsure.png": (_image(core=200, size=(20, 30)), False, False),  # 0.78 over 600 px
    "d-blurry.png": (_image(rim=128), True, True),  # a 2-px rim at 0.5
    "e-doubted.png": (_image(core=240, rim=200, size=(4, 4)), False, True),  # 0.94: not above hi
}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "test_images"
    folder.mkdir()
    for name, (image, _, _) in IMAGES.items():
        Image.fromarray(image).save(folder / name)
    return folder


def _passing(rule: str) -> list[str]:
    column = {"first": [1], "tenth": [2], "both": [1, 2]}[rule]
    return [name for name, row in IMAGES.items() if all(row[c] for c in column)]


@pytest.mark.parametrize("rule", ["first", "tenth", "both"])
def test_run_pseudo_writes_a_dataset_of_the_passing_images(images, tmp_path, rule):
    predictor = _Planted()
    result = run_pseudo(predictor, images, tmp_path / "pseudo", rule=rule, min_share=0.99, progress=False)
    kept = _passing(rule)
    assert (result.images, result.selected, result.kept) == (5, len(kept), len(kept))
    dataset = open_dataset(tmp_path / "pseudo")
    assert dataset.image_ids == kept and dataset.class_names == NAMES
    for i, name in enumerate(kept):
        image, masks = dataset.load(i)
        assert (tmp_path / "pseudo" / "train_images" / name).read_bytes() == (images / name).read_bytes()
        expected = np.stack([IMAGES[name][0] >= 128, np.zeros_like(image, bool)])  # gray/255 >= 0.5
        np.testing.assert_array_equal(masks, expected)
    info = json.loads((tmp_path / "pseudo" / "pseudo.json").read_text())
    assert info["train_only"] is True and info["rule"] == rule and info["source"] == str(images.resolve())
    assert info["counts"]["kept"] == len(kept)
    assert set(info["counts"]["passed"]) == ({"first", "tenth"} if rule == "both" else {rule})
    assert "pseudo-labelled images" in result.report()


def test_the_output_folder_is_readable_by_others_like_any_new_folder(images, tmp_path):
    run_pseudo(_Planted(), images, tmp_path / "pseudo", progress=False)
    (tmp_path / "plain").mkdir()  # what the umask gives a folder made the ordinary way
    assert (tmp_path / "pseudo").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_train_csv_lists_only_defects(images, tmp_path):
    run_pseudo(_Planted(), images, tmp_path / "pseudo", rule="first", progress=False)
    rows = (tmp_path / "pseudo" / "train.csv").read_text().splitlines()
    assert rows[0] == "ImageId,ClassId,EncodedPixels"
    assert [row.split(",")[:2] for row in rows[1:]] == [["a-sure.png", "1"], ["d-blurry.png", "1"]]


def test_a_mask_emptied_by_post_processing_disagrees_with_a_sure_score(images, tmp_path):
    # min_area 500 empties the 96-px masks of a-sure and d-blurry: their scores say defect, the
    # masks say none, so only the clean image is kept
    result = run_pseudo(_Planted(min_area=500), images, tmp_path / "pseudo", rule="first", progress=False)
    assert open_dataset(tmp_path / "pseudo").image_ids == ["b-clean.png"] and result.selected == 1


def test_ranking_orders_and_max_keeps_the_most_test_like(images, tmp_path):
    rank = {"a-sure.png": 0.2, "b-clean.png": 0.9, "c-unsure.png": 1.0, "d-blurry.png": 0.5, "e-doubted.png": 0.0}
    result = run_pseudo(_Planted(), images, tmp_path / "pseudo", rank=rank, max_images=2, progress=False)
    assert (result.selected, result.kept) == (3, 2)
    assert sorted(open_dataset(tmp_path / "pseudo").image_ids) == ["b-clean.png", "d-blurry.png"]
    assert "most test-like" in result.report()


def test_max_without_a_ranking_keeps_the_first_by_name(images, tmp_path):
    run_pseudo(_Planted(), images, tmp_path / "pseudo", max_images=1, progress=False)
    assert open_dataset(tmp_path / "pseudo").image_ids == ["a-sure.png"]


class _Spy:
    """A Predictor that must not be asked to predict."""

    has_masks, class_names = True, NAMES

    def iter_folder(self, *args):
        raise AssertionError("predicted although the settings were wrong")


def test_an_image_missing_from_the_ranking_fails_before_predicting(images, tmp_path):
    with pytest.raises(
        PseudoError, match=r"image b-clean.png of .* has no test likeness in the ranking \(and 1 more\)"
    ):
        run_pseudo(
            _Spy(), images, tmp_path / "pseudo", rank={"a-sure.png": 1.0, "c-unsure.png": 1.0, "d-blurry.png": 0.0}
        )


def test_a_non_empty_output_folder_is_never_overwritten(images, tmp_path):
    out = tmp_path / "pseudo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="exists and is not an empty folder"):
        run_pseudo(_Spy(), images, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_empty_output_folder_is_filled(images, tmp_path):
    (tmp_path / "pseudo").mkdir()
    run_pseudo(_Planted(), images, tmp_path / "pseudo", progress=False)
    assert len(open_dataset(tmp_path / "pseudo")) == 3


def test_a_classifier_run_is_refused_in_one_line(images, tmp_path):
    classifier = _Spy()
    classifier.has_masks, classifier.task = False, "classify"
    with pytest.raises(PseudoError, match="^pseudo-labels need masks: a classify run gives class scores only$"):
        run_pseudo(classifier, images, tmp_path / "pseudo")
    # a predictor that does not say beforehand is stopped at its first outputs
    with pytest.raises(PseudoError, match="^pseudo-labels need masks: this model gives class scores only$"):
        run_pseudo(_Planted(pixels=False), images, tmp_path / "pseudo", progress=False)
    assert list(tmp_path.iterdir()) == [images]


@pytest.mark.parametrize("kwargs", [{"rule": "second"}, {"hi": 0.5, "lo": 0.6}, {"max_images": 0}, {"border": -1}])
def test_bad_settings_fail_before_predicting(images, tmp_path, kwargs):
    with pytest.raises(PseudoError):
        run_pseudo(_Spy(), images, tmp_path / "pseudo", **kwargs)


def test_nothing_selected_writes_nothing(images, tmp_path):
    with pytest.raises(PseudoError, match="none of the 5 images"):
        run_pseudo(_Planted(), images, tmp_path / "pseudo", hi=0.999, lo=0.001, progress=False)
    assert list(tmp_path.iterdir()) == [images]


def test_a_crash_midway_leaves_no_output(images, tmp_path):
    predictor = _Planted()
    masks = predictor.masks
    calls = []

    def crash_on_the_third(outputs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return masks(outputs)

    predictor.masks = crash_on_the_third
    with pytest.raises(RuntimeError, match="killed"):
        run_pseudo(predictor, images, tmp_path / "pseudo", progress=False)
    assert list(tmp_path.iterdir()) == [images]


# --- the command -----------------------------------------------------------------------------


def test_the_command_parses_builds_the_predictor_and_prints_the_report(images, tmp_path, monkeypatch, capsys):
    ranking = tmp_path / "adversarial.csv"
    rows = "".join(f"{name},test,{i / 10}\n" for i, name in enumerate(IMAGES)) + "a-sure.png,train,0.9\n"
    ranking.write_text("ImageId,Set,TestLikeness\n" + rows)  # a training image of the same name does not count
    built = []

    def load(models, **load):
        built.append((models, load))
        return _Planted()

    monkeypatch.setattr(Predictor, "load", staticmethod(load))
    code = main(
        [
            "pseudo",
            "runs/model",
            str(images),
            "--out",
            str(tmp_path / "pseudo"),
            "--rule",
            "both",
            "--confident-share",
            "0.99",
            "--rank",
            str(ranking),
            "--max",
            "2",
            "--batch-size",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    assert built == [(["runs/model"], {"backend": "auto", "device": "auto", "batch_size": 2, "tta": None})]
    assert sorted(open_dataset(tmp_path / "pseudo").image_ids) == ["b-clean.png", "d-blurry.png"]  # ranks 1, 3
    info = json.loads((tmp_path / "pseudo" / "pseudo.json").read_text())
    assert info["thresholds"] == {
        "hi": 0.95,
        "lo": 0.05,
        "low": 0.2,
        "high": 0.8,
        "border": 3,
        "min_confident_share": 0.99,
    }
    assert info["rank_file"] == str(ranking.resolve()) and info["max_images"] == 2
    assert f"--set data.pseudo=[{tmp_path / 'pseudo'}]" in capsys.readouterr().out


def test_the_command_refuses_a_bad_ranking_before_the_model_loads(images, tmp_path, monkeypatch, capsys):
    built = []
    monkeypatch.setattr(Predictor, "load", staticmethod(lambda models, **load: built.append(models) or _Planted()))
    missing = tmp_path / "adversarial.csv"
    assert main(["pseudo", "runs/model", str(images), "--out", str(tmp_path / "pseudo"), "--rank", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"steelseg pseudo: error: {missing}") and err.count("\n") == 1
    assert built == [] and not (tmp_path / "pseudo").exists()
