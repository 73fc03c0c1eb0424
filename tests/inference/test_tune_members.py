"""``tune_members`` and ``score_members`` (what the ensemble selection calls) and ``tune``'s new
options: ``metric``, ``recall_floor``, ``allow_off``. Members are built by hand (no files) but
for the end-to-end cases; every expected score is counted by hand in the comment beside it."""

import json
from pathlib import Path

import numpy as np
import pytest

from steelseg.config import load_config
from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.files import rundir
from steelseg.inference.tune import (
    Entry,
    OofMember,
    TuneError,
    evaluate,
    score_members,
    tune,
    tune_members,
)

CLASSES = ["pits", "scratches"]
CONFIG = load_config(None, [f"data.class_names={json.dumps(CLASSES)}"])
FAST = {"pixel_grid": [0.5, 0.8], "component_grid": [0], "area_grid": [0, 5], "head_grid": [], "peak_grid": []}
BLOB = (slice(2, 5), slice(2, 5))  # 9 pixels


def images(roles: list[tuple[float | None, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2, 8, 8) probabilities and truth: class 1 a 3 x 3 blob at the role's probability
    (None: no blob), true or not; class 2 nothing anywhere."""
    probs, truth = np.full((len(roles), 2, 8, 8), 0.1, np.float32), np.zeros((len(roles), 2, 8, 8), bool)
    for i, (p, true) in enumerate(roles):
        if p is not None:
            probs[i, 0][BLOB] = p
        truth[i, 0][BLOB] = true
    return probs, truth


def member(probs: np.ndarray, truth: np.ndarray, name: str = "m") -> tuple[OofMember, list[str]]:
    ids = [f"{i}.jpg" for i in range(len(probs))]
    entries = {i: Entry(p, None, t, t.any(axis=(1, 2)), 1.0) for i, p, t in zip(ids, probs, truth)}
    return OofMember(name, 1.0, entries), ids


# One true defect found at 0.9, four clean images with a 0.9 false positive (see
# tests/core/test_search_choice.py): on, Dice 1/5 (dataset 18/54); off, 4/5.
FALSE_ALARMS = images([(0.9, True)] + [(0.9, False)] * 4)


def test_tune_members_keeps_the_class_on_and_scores_it_independently():
    m, ids = member(*FALSE_ALARMS)
    post, scores = tune_members([m], ids, 2, CONFIG, grids=FAST)
    assert post.min_area[0] < NEVER and post.pixel_threshold[0] == 0.8  # cautious ties: 0.8, area 5
    np.testing.assert_allclose(scores, [1 / 5, 1.0])  # class 2: nothing predicted, nothing true
    np.testing.assert_array_equal(scores, score_members([post], [m], ids, 2)[0])
    off, scores = tune_members([m], ids, 2, CONFIG, grids=FAST, allow_off=True)
    assert off.min_area[0] == NEVER and scores[0] == pytest.approx(4 / 5)


def test_tune_members_with_the_dataset_metric():
    m, ids = member(*FALSE_ALARMS)
    post, scores = tune_members([m], ids, 2, CONFIG, grids=FAST, metric="dataset", allow_off=True)
    assert post.min_area[0] < NEVER  # off scores 0 / 9 on the dataset Dice
    np.testing.assert_allclose(scores, [18 / 54, 1.0])  # class 2: no true and no predicted pixel: 1


def test_score_members_dataset_dice_by_hand():
    # image 0: truth 3 x 4 = 12 pixels, predicted 3 x 3 of them and 1 more: inter 9, pred 10;
    # image 1: nothing true, nothing predicted. Dataset: 2 x 9 / (10 + 12); competition: the
    # same 18/22 on image 0 and 1 on image 1.
    probs, truth = images([(None, False), (None, False)])
    truth[0, 0, 2:5, 2:6] = True
    probs[0, 0, 2:5, 2:5] = 0.9
    probs[0, 0, 7, 7] = 0.9
    m, ids = member(probs, truth)
    post = PostProcess.uniform(2, 0.5, 0)
    [dataset] = score_members([post], [m], ids, 2, "dataset")
    [competition] = score_members([post], [m], ids, 2, "competition")
    np.testing.assert_allclose(dataset, [2 * 9 / (10 + 12), 1.0])
    np.testing.assert_allclose(competition, [(18 / 22 + 1) / 2, 1.0])
    np.testing.assert_array_equal(evaluate([post], [m], ids, 2, "dataset")[0], dataset)


def test_a_recall_floor_through_tune_members():
    # two defects (0.9, 0.6) and three 0.6 false positives: 0.8 scores 4/5 finding 1 of 2, 0.5
    # scores 2/5 finding 2 of 2
    m, ids = member(*images([(0.9, True), (0.6, True)] + [(0.6, False)] * 3))
    grids = dict(FAST, area_grid=[0])
    post, scores = tune_members([m], ids, 2, CONFIG, grids=grids)
    assert post.pixel_threshold[0] == 0.8 and scores[0] == pytest.approx(4 / 5)
    post, scores = tune_members([m], ids, 2, CONFIG, grids=grids, recall_floor=0.75)
    assert post.pixel_threshold[0] == 0.5 and scores[0] == pytest.approx(2 / 5)


def test_grids_take_defaults_for_missing_and_none_values():
    m, ids = member(*FALSE_ALARMS)
    post, _ = tune_members([m], ids, 2, CONFIG, grids={"pixel_grid": [0.7], "area_grid": None, "head_grid": []})
    assert post.pixel_threshold.tolist() == [0.7, 0.7]
    assert post.min_area[0] in CONFIG.postprocess.min_area_grid


@pytest.mark.parametrize(
    "options, message",
    [
        ({"metric": "iou"}, "--metric: 'iou' is not one of competition, dataset"),
        ({"recall_floor": 1.5}, "--recall-floor: 1.5 is not a share in [0, 1]"),
        ({"recall_floor": float("nan")}, "--recall-floor: nan"),
        ({"grids": {"pixels": [0.5]}}, "unknown grid 'pixels'"),
        ({"grids": {"pixel_grid": [1.5]}}, "--pixel-grid: 1.5 is not a probability"),
    ],
)
def test_bad_options_are_one_line_errors_naming_them(options, message):
    m, ids = member(*FALSE_ALARMS)
    with pytest.raises(TuneError) as caught:
        tune_members([m], ids, 2, CONFIG, **options)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_grid_of_nothing_but_off_settings_is_an_error_naming_allow_off():
    m, ids = member(*FALSE_ALARMS)
    with pytest.raises(TuneError, match="area grid .* --allow-off"):
        tune_members([m], ids, 2, CONFIG, grids=dict(FAST, area_grid=[NEVER]))


# --- tune end to end: the sources' own setting, the report ------------------------------------------


def make_run(path: Path, probs: np.ndarray, masks: np.ndarray, own: PostProcess | None = None) -> Path:
    """A run directory with config.yaml, oof.npz (as ``training.oof.save_oof`` writes it) and,
    when given, its own postprocess.json."""
    path.mkdir(parents=True)
    rundir.save_config(path, CONFIG)
    n, c, h, w = probs.shape
    np.savez(
        path / rundir.OOF,
        image_ids=np.array([f"{i}.jpg" for i in range(n)], dtype=str),
        scores=probs.reshape(n, c, -1).max(axis=2).astype(np.float32),
        labels=masks.any(axis=(2, 3)),
        image_shapes=np.array([(h, w)] * n, dtype=np.int64),
        backend=np.array("test"),
        probs=probs.astype(np.float16),
        masks=masks,
        shapes=np.array([(h, w)] * n, dtype=np.int64),
    )
    if own is not None:
        (path / rundir.POSTPROCESS).write_text(own.to_json())
    return path


OWN_OFF = PostProcess.uniform(2, 0.5, [NEVER, 0])  # the sources switch class 1 off: 4/5 on FALSE_ALARMS


def test_tune_does_not_keep_the_sources_off_setting_without_allow_off(tmp_path):
    run = make_run(tmp_path / "run", *FALSE_ALARMS, own=OWN_OFF)
    result = tune([run], **FAST, progress=False)
    np.testing.assert_allclose(result.before, [4 / 5, 1.0])
    np.testing.assert_allclose(result.after, [1 / 5, 1.0])  # worse on the metric, but on
    assert result.kept == [] and result.postprocess.min_area[0] < NEVER
    assert (result.hits.tolist(), result.positives.tolist()) == ([1, 0], [1, 0])
    report = result.report()
    assert "pits: the sources' own setting never predicts it (switched off): not kept" in report
    assert "classes may be switched off: no" in report and "recall floor: none" in report
    assert "metric: competition Dice" in report
    recall = next(line for line in report.splitlines() if line.startswith("recall"))
    assert recall.split()[1:] == ["1.0000", "n/a"]
    written = PostProcess.from_json((run / rundir.POSTPROCESS).read_text(), 2)
    assert written.min_area[0] < NEVER


def test_tune_keeps_the_sources_off_setting_with_allow_off(tmp_path):
    run = make_run(tmp_path / "run", *FALSE_ALARMS, own=OWN_OFF)
    result = tune([run], **FAST, progress=False, allow_off=True)
    assert result.postprocess.min_area[0] == NEVER
    np.testing.assert_allclose(result.after, [4 / 5, 1.0])
    assert "classes may be switched off: yes" in result.report()


def test_tune_reports_the_dataset_metric_floor_and_recall(tmp_path):
    # the third defect (0.3) is found by no threshold: the floor 1 cannot be met; 0.5 finds 2 of 3
    probs, truth = images([(0.9, True), (0.6, True), (0.3, True)] + [(0.6, False)] * 3)
    run = make_run(tmp_path / "run", probs, truth)
    grids = dict(FAST, area_grid=[0])
    result = tune([run], **grids, progress=False, metric="dataset", recall_floor=1.0)
    assert result.postprocess.pixel_threshold[0] == 0.5
    assert result.hits.tolist() == [2, 0] and result.positives.tolist() == [3, 0]
    # dataset Dice at 0.5: inter 9 + 9, pred 9 + 9 + 27, true 27: 36 / 72
    np.testing.assert_allclose(result.after, [36 / 72, 1.0])
    report = result.report()
    assert "metric: dataset Dice" in report and "recall floor: 1 " in report
    assert "pits: no setting on the grid reaches the recall floor 1 (3 of 3 images with a true defect)" in report
    found = next(line for line in report.splitlines() if line.startswith("found"))
    assert found.split()[1:] == ["2/3", "0/0"]
    # what tune reports is what tune_members scores (the same search, the same evaluation)
    m, ids = member(probs.astype(np.float16).astype(np.float32), truth)
    post, scores = tune_members([m], ids, 2, CONFIG, grids=grids, metric="dataset", recall_floor=1.0)
    np.testing.assert_array_equal(post.pixel_threshold, result.postprocess.pixel_threshold)
    np.testing.assert_allclose(scores, result.after)
