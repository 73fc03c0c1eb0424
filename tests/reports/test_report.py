"""``steelseg report`` on three hand-made 8x16 images whose Dice are worked out by hand.

    image  class 1: truth / prediction           class 2: truth / prediction
    a.png  column 0 (8 px) / its top half (4 px)   -    / -
    b.png  columns 1-2 (16) / columns 2-3 (16)     column 3 (8) / -
    c.png  -   / -                                  -    / pixels 100-104 (5)

Classes 3 and 4 are empty everywhere (Dice 1). By hand, Dice = 2|P n T| / (|P| + |T|):
class 1: a 8/12, b 16/32, c 1 -> 13/18; class 2: a 1, b 0, c 0 -> 1/3; mean (13/18 + 1/3 + 2) / 4 = 55/72.
Mean per image: a (2/3 + 3) / 4 = 0.9167, b (1/2 + 0 + 2) / 4 = 0.625, c (1 + 0 + 2) / 4 = 0.75.
"""

from pathlib import Path

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.reports.report import ReportInputs, collect, report_class_names, write_report
from steelseg.reports.stats import defect_areas, presence_confusion, worst_images

from .conftest import assert_figures_exist, image_sources, write_images, write_long_csv

TRUTH = [("a.png", 1, "1 8"), ("b.png", 1, "9 16"), ("b.png", 2, "25 8")]
PRED = [("a.png", 1, "1 4"), ("b.png", 1, "17 16"), ("c.png", 2, "100 5"), ("a.png", 2, ""), ("c.png", 1, "")]
CLASS_DICE = [13 / 18, 1 / 3, 1.0, 1.0]
MEAN_DICE = 55 / 72


@pytest.fixture
def inputs(tmp_path) -> tuple[Path, Path, Path]:
    """(prediction CSV, truth CSV, image folder)."""
    images = write_images(tmp_path / "images", ["a.png", "b.png", "c.png"])
    return write_long_csv(tmp_path / "pred.csv", PRED), write_long_csv(tmp_path / "truth.csv", TRUTH), images


def test_page_shows_the_hand_computed_dice_and_only_figures_that_exist(inputs, tmp_path):
    page = write_report(ReportInputs.read(*inputs), tmp_path / "out", ["1", "2", "3", "4"], worst=2, progress=False)
    text = page.read_text()
    assert page == tmp_path / "out" / "index.html"
    for value in CLASS_DICE + [MEAN_DICE]:
        assert f"<td>{value:.4f}</td>" in text
    assert "<td>0.5455</td>" in text  # class 1 dataset Dice: 2 * (4 + 8) / (20 + 24)
    sources = assert_figures_exist(page)
    assert {"figures/dice.png", "figures/areas.png", "figures/min-area-submission.png"} <= set(sources)
    assert "Dice against the pixel threshold is left out" in text  # no probabilities without --model


def test_worst_images_are_shown_worst_first(inputs, tmp_path):
    page = write_report(ReportInputs.read(*inputs), tmp_path / "out", ["1", "2", "3", "4"], worst=2, progress=False)
    worst = [src for src in image_sources(page) if "worst-" in src]
    assert worst == ["figures/worst-01.png", "figures/worst-02.png"]
    text = page.read_text()
    assert text.index("1. b.png: mean Dice 0.6250") < text.index("2. c.png: mean Dice 0.7500")
    assert "a.png: mean Dice" not in text


def test_collected_scores_areas_and_presence_equal_hand_counts(inputs):
    collected = collect(ReportInputs.read(*inputs), 4)
    np.testing.assert_allclose(collected.scores.class_dice, CLASS_DICE)
    assert collected.scores.mean_dice == pytest.approx(MEAN_DICE)
    np.testing.assert_allclose(collected.image_dice.mean(axis=1), [11 / 12, 0.625, 0.75])
    truth, pred = defect_areas(collected.truth_area), defect_areas(collected.pred_area)
    assert [a.tolist() for a in truth] == [[8, 16], [8], [], []]
    assert [a.tolist() for a in pred] == [[4, 16], [5], [], []]
    confusion = presence_confusion(collected.truth_area, collected.pred_area)
    assert confusion.tp.tolist() == [2, 0, 0, 0]
    assert confusion.fp.tolist() == [0, 1, 0, 0]  # c.png's class 2
    assert confusion.fn.tolist() == [0, 1, 0, 0]  # b.png's class 2
    assert confusion.tn.tolist() == [1, 1, 3, 3]


def test_min_area_curve_of_the_submission_removes_small_masks(inputs):
    # A = 5: a's 4-px class 1 mask goes (a: 0) -> class 1 (0 + 1/2 + 1) / 3; c's 5 px stay.
    # A = 6: c's class 2 mask goes too (c: 1) -> class 2 (1 + 0 + 1) / 3.
    curve = collect(ReportInputs.read(*inputs), 4, min_areas=[5, 6]).min_area_curve
    assert curve.min_areas.tolist() == [0, 5, 6]
    np.testing.assert_allclose(curve.by_min_area[:, 0], [13 / 18, 0.5, 0.5])
    np.testing.assert_allclose(curve.by_min_area[:, 1], [1 / 3, 1 / 3, 2 / 3])
    assert curve.by_threshold is None


@pytest.mark.parametrize(
    "mean_dice, image_ids, n, expected",
    [
        ([0.9, 0.2, 0.5], ["a", "b", "c"], 2, [1, 2]),  # lowest first
        ([0.5, 0.5, 0.1], ["z", "y", "x"], 3, [2, 1, 0]),  # a tie goes by image id: y before z
        ([1.0, 0.3, 1.0], ["a", "b", "c"], 8, [1]),  # perfect images are never "worst"
        ([0.3, 0.2], ["a", "b"], 0, []),
    ],
)
def test_worst_images_order(mean_dice, image_ids, n, expected):
    per_class = np.repeat(np.asarray(mean_dice)[:, None], 4, axis=1)
    assert worst_images(per_class, image_ids, n) == expected


def test_class_names_come_from_classes_json_beside_the_images(tmp_path):
    images = write_images(tmp_path / "data" / "train_images", ["a.png"])
    assert report_class_names(images) == ["1", "2", "3", "4"]
    assert report_class_names(images, num_classes=2) == ["1", "2"]
    (tmp_path / "data" / "classes.json").write_text('{"class_names": ["dent", "rust <b>"]}')
    assert report_class_names(images) == ["dent", "rust <b>"]


def test_user_strings_are_escaped(tmp_path):
    images = write_images(tmp_path / "data" / "imgs", ["<x>.png"])
    truth = write_long_csv(tmp_path / "t.csv", [("<x>.png", 1, "1 8")])
    pred = write_long_csv(tmp_path / "p.csv", [("<x>.png", 2, "1 8")])
    (tmp_path / "data" / "classes.json").write_text('{"class_names": ["rust <b>", "dent"]}')
    page = write_report(
        ReportInputs.read(pred, truth, images), tmp_path / "out", report_class_names(images), progress=False
    )
    text = page.read_text()
    assert "<x>" not in text and "<b>" not in text
    assert "&lt;x&gt;.png" in text and "rust &lt;b&gt;" in text
    assert_figures_exist(page)


def test_cli_writes_the_page(inputs, tmp_path, capsys):
    pred, truth, images = inputs
    out = tmp_path / "cli"
    assert main(["report", str(pred), str(truth), str(images), "--out", str(out), "--worst", "1", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'index.html'}"
    assert [src for src in assert_figures_exist(out / "index.html") if "worst" in src] == ["figures/worst-01.png"]


@pytest.mark.parametrize(
    "change, names",
    [
        ({"pred": "missing.csv"}, ["missing.csv", "not found"]),
        ({"truth": "nope.csv"}, ["nope.csv", "not found"]),
        ({"images": "no-such-folder"}, ["no-such-folder", "not found"]),
        ({"--worst": "many"}, ["--worst", "'many'"]),
        ({"--worst": "-1"}, ["--worst", ">= 0"]),
        ({"--num-classes": "0"}, ["--num-classes"]),
        ({"--model": "no-such-run"}, ["no-such-run"]),
    ],
)
def test_bad_input_is_one_line_naming_it(inputs, tmp_path, capsys, change, names):
    pred, truth, images = inputs
    argv = {"pred": str(pred), "truth": str(truth), "images": str(images)}
    options = ["--out", str(tmp_path / "out")]
    for key, value in change.items():
        if key.startswith("--"):
            options += [key, str(tmp_path / value) if key == "--model" else value]
        else:
            argv[key] = str(tmp_path / value)
    assert main(["report", argv["pred"], argv["truth"], argv["images"], *options]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("steelseg report: error: ") and all(name in err for name in names)
    assert not (tmp_path / "out" / "index.html").exists()


def test_a_prediction_of_other_images_is_refused(inputs, tmp_path, capsys):
    _, truth, images = inputs
    pred = write_long_csv(tmp_path / "other.csv", [("a.png", 1, "1 4"), ("zzz.png", 1, "1 4")])
    assert main(["report", str(pred), str(truth), str(images), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "zzz.png" in err and str(pred) in err


def test_a_prediction_lacking_images_is_scored_empty_with_allow_missing(inputs, tmp_path, capsys):
    _, truth, images = inputs
    pred = write_long_csv(tmp_path / "partial.csv", [("a.png", 1, "1 8")])
    out = tmp_path / "out"
    assert main(["report", str(pred), str(truth), str(images), "--out", str(out)]) == 1
    assert "lacks 2 of the 3 images" in capsys.readouterr().err
    assert main(["report", str(pred), str(truth), str(images), "--out", str(out), "--allow-missing", "--quiet"]) == 0
    assert "warning" in capsys.readouterr().err
    # class 1: a 1, b 0 (truth, no prediction), c 1
    assert "<td>0.6667</td>" in (out / "index.html").read_text()


@pytest.mark.parametrize(
    "areas", [[[5, 8, 300]], [[16000], [30000]], [[7]], [[]]], ids=["wide", "narrow", "one area", "none"]
)
def test_area_bins_cover_every_area_on_at_least_a_decade(areas):
    from steelseg.reports.stats import area_bins

    bins = area_bins(*[np.array(a) for a in areas])
    values = [v for a in areas for v in a]
    assert len(bins) == 21 and np.all(np.diff(bins) > 0)
    assert bins[-1] / bins[0] >= 10 * (1 - 1e-9)
    assert all(bins[0] <= v < bins[-1] for v in values)
    if values and max(values) / min(values) >= 10:
        assert bins[0] == min(values)  # a wide range is not widened
