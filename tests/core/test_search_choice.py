"""What the searches may choose: no class switched off without ``allow_off``, the dataset Dice
as well as the competition's, and the recall floor. Every expected number is counted by hand
from tiny images (8 x 8 pixels, 3 x 3 blobs of 9 pixels) in the comments beside it."""

import numpy as np
import pytest

from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.core.search import GatedSearch, PostprocessSearch, needed_hits, switched_off

BLOB = (slice(2, 5), slice(2, 5))  # 9 pixels


def image(p_blob: float | None, true: bool) -> tuple[np.ndarray, np.ndarray]:
    """One class, 8 x 8: background 0.1, a 3 x 3 blob at ``p_blob`` (None: none), true or not."""
    probs, truth = np.full((1, 8, 8), 0.1), np.zeros((1, 8, 8), bool)
    if p_blob is not None:
        probs[0][BLOB] = p_blob
    truth[0][BLOB] = true
    return probs, truth


def gated(images, pixel_grid=(0.5,), area_grid=(0, 5), factors=None, **options) -> GatedSearch:
    search = GatedSearch(1, list(pixel_grid), [0], list(area_grid), [], [], **options)
    for i, (probs, truth) in enumerate(images):
        search.update(probs, truth, None, 1.0 if factors is None else factors[i])
    return search


# One true defect, found; four clean images, each with a confident 9-pixel false positive.
# Every finite setting predicts the blob on all five: Dice 1 on the defect, 0 on the clean ones,
# mean 1/5. Switching the class off: 0 on the defect, 1 on each clean image, mean 4/5.
FALSE_ALARMS = [image(0.9, True)] + [image(0.9, False)] * 4


def test_with_allow_off_the_competition_metric_switches_the_class_off():
    post, scores = gated(FALSE_ALARMS, allow_off=True).best()
    assert post.min_area[0] == NEVER and scores[0] == pytest.approx(4 / 5)
    assert switched_off(post).tolist() == [True]


def test_without_allow_off_a_finite_setting_is_chosen_and_predicts_the_defect():
    choice = gated(FALSE_ALARMS).choose()
    post = choice.postprocess
    assert post.min_area[0] == 5  # the most cautious of the ties (0 and 5 both score 1/5)
    assert choice.scores[0] == pytest.approx(1 / 5)
    assert not switched_off(post).any()
    assert post(FALSE_ALARMS[0][0]).any()  # the true defect is still reported
    assert (choice.hits[0], choice.positives[0]) == (1, 1)


def test_the_dataset_metric_keeps_the_class_on_where_the_competition_metric_would_not():
    # sum |P n T| = 9, sum |P| = 45, sum |T| = 9: 18 / 54; off: 0 / 9 = 0
    post, scores = gated(FALSE_ALARMS, metric="dataset", allow_off=True).best()
    assert post.min_area[0] == 5 and scores[0] == pytest.approx(18 / 54)


def test_off_values_given_in_the_grids_are_dropped_without_allow_off():
    search = GatedSearch(1, [0.5, 1.5], [0, NEVER], [0, NEVER], [0.5, 1.0], [1.0], has_heads=[True])
    assert search.thresholds.tolist() == [0.5] and search.components.tolist() == [0]
    assert search.areas.tolist() == [0]
    assert search.head_grid.tolist() == [0.5, 0.0] and search.peak_grid.tolist() == [0.0]
    on = GatedSearch(1, [0.5, 1.5], [0, NEVER], [0, NEVER], [0.5, 1.0], [1.0], allow_off=True)
    assert on.areas.tolist() == [0, NEVER] and on.head_grid.tolist() == [1.0, 0.5, 0.0]


def test_a_min_area_over_the_largest_image_is_off_too():
    # 8 x 8 = 64 pixels: a min area of 65 can never be met; 64 can (a fully predicted image)
    search = gated(FALSE_ALARMS, area_grid=(64, 65))
    post, _ = search.best()
    assert post.min_area[0] == 64 and search.pixels == 64
    with pytest.raises(ValueError, match="area grid has no value that can predict a pixel"):
        gated(FALSE_ALARMS, area_grid=(65, NEVER)).best()
    # with allow_off, 65 is a way of switching off (tried before NEVER, it wins the tie)
    post, scores = gated(FALSE_ALARMS, area_grid=(65,), allow_off=True).best()
    assert post.min_area[0] == 65 and scores[0] == pytest.approx(4 / 5)
    assert switched_off(post, pixels=64).tolist() == [True] and not switched_off(post).any()


def test_switched_off_names_every_setting_that_never_predicts():
    post = PostProcess.uniform(
        6,
        [0.5, 1.01, 0.5, 0.5, 0.5, 1.0],
        [NEVER, 0, 0, 0, 100, 0],
        head_threshold=[0, 0, 1.0, 0, 0, 0],
        peak_threshold=[0, 0, 0, 1.0, 0, 0],
    )
    assert switched_off(post).tolist() == [True, True, True, True, False, False]  # p >= 1.0 can happen
    assert switched_off(post, pixels=64).tolist() == [True, True, True, True, True, False]


# --- the dataset Dice, by hand ---------------------------------------------------------------------


def _two_defects():
    """A: truth 2 x 3 = 6 pixels, all predicted (inter 6, pred 6). B: truth 2 x 3 = 6 pixels, 3
    of them predicted and 1 pixel beside (inter 3, pred 4). C: nothing true, nothing predicted."""
    a, b, c = (np.full((1, 8, 8), 0.1) for _ in range(3))
    ta, tb, tc = (np.zeros((1, 8, 8), bool) for _ in range(3))
    a[0, 1:3, 1:4] = ta[0, 1:3, 1:4] = 0.9
    tb[0, 1:3, 1:4] = True
    b[0, 1, 1:4] = 0.9
    b[0, 6, 6] = 0.9
    return [(a, ta), (b, tb), (c, tc)]


def test_dataset_dice_is_two_sums_of_intersections_over_the_sums_of_areas():
    images = _two_defects()
    # inter 6 + 3 = 9, pred 6 + 4 = 10, true 6 + 6 = 12
    _, scores = gated(images, area_grid=(0,), metric="dataset").best()
    assert scores[0] == pytest.approx(2 * 9 / (10 + 12))
    # competition: A 1, B 2 x 3 / (4 + 6) = 0.6, C (empty on empty) 1
    _, scores = gated(images, area_grid=(0,)).best()
    assert scores[0] == pytest.approx((1 + 0.6 + 1) / 3)


def test_dataset_dice_sums_full_size_pixels_at_reduced_scales():
    # B stored at factor 4: inter 6 + 12 = 18, pred 6 + 16 = 22, true 6 + 24 = 30
    _, scores = gated(_two_defects()[:2], area_grid=(0,), metric="dataset", factors=[1.0, 4.0]).best()
    assert scores[0] == pytest.approx(2 * 18 / (22 + 30))


@pytest.mark.parametrize(
    "blob, expected", [pytest.param(None, 1.0, id="nothing-anywhere-scores-1"), pytest.param(0.9, 0.0, id="only-fp")]
)
def test_dataset_dice_of_a_class_without_true_pixels(blob, expected):
    _, scores = gated([image(blob, False)] * 3, area_grid=(0,), metric="dataset").best()
    assert scores[0] == expected


# --- the recall floor --------------------------------------------------------------------------------

# Two true defects: one at 0.9 (found at both thresholds), one at 0.6 (found at 0.5 only). Three
# clean images with a 0.6 false positive (predicted at 0.5). Threshold 0.8: Dice 1, 0, 1, 1, 1 =
# 4/5, recall 1/2; threshold 0.5: 1, 1, 0, 0, 0 = 2/5, recall 2/2.
FAINT = [image(0.9, True), image(0.6, True)] + [image(0.6, False)] * 3


@pytest.mark.parametrize(
    "floor, threshold, hits, score",
    [
        pytest.param(None, 0.8, 1, 4 / 5, id="no-floor"),
        pytest.param(0.5, 0.8, 1, 4 / 5, id="half-needs-1-of-2"),
        pytest.param(0.75, 0.5, 2, 2 / 5, id="three-quarters-needs-2-of-2"),
        pytest.param(1.0, 0.5, 2, 2 / 5, id="all"),
    ],
)
def test_a_recall_floor_changes_the_choice(floor, threshold, hits, score):
    choice = gated(FAINT, pixel_grid=(0.5, 0.8), area_grid=(0,), recall_floor=floor).choose()
    assert choice.postprocess.pixel_threshold[0] == threshold
    assert (choice.hits[0], choice.positives[0], choice.floor_met[0]) == (hits, 2, True)
    assert choice.scores[0] == pytest.approx(score)


def test_where_no_setting_reaches_the_floor_the_highest_recall_wins():
    # a third defect at 0.3 that no threshold finds: 0.5 finds 2 of 3, 0.8 finds 1 of 3
    images = [*FAINT, image(0.3, True)]
    choice = gated(images, pixel_grid=(0.5, 0.8), area_grid=(0,), recall_floor=1.0).choose()
    assert choice.postprocess.pixel_threshold[0] == 0.5
    assert (choice.hits[0], choice.positives[0], choice.floor_met[0]) == (2, 3, False)
    assert choice.recall[0] == pytest.approx(2 / 3)


def test_the_floor_counts_a_prediction_anywhere_on_the_image_as_found():
    # the defect's own pixels are at 0.3; a 0.9 blob elsewhere on the same image is predicted:
    # image-level detection recall counts it (Dice does not)
    probs, truth = image(0.3, True)
    probs[0, 6:8, 6:8] = 0.9
    choice = gated([(probs, truth)], area_grid=(0,), recall_floor=1.0).choose()
    assert (choice.hits[0], choice.floor_met[0]) == (1, True) and choice.scores[0] == 0.0


@pytest.mark.parametrize(
    "floor, positives, needed",
    [
        (0.9, 10, 9),
        (0.14, 50, 7),  # 0.14 * 50 is 7.000000000000001 in floats: 8 by a float ceiling
        (0.28, 25, 7),
        (0.1, 10, 1),
        (0.75, 2, 2),
        (0.5, 2, 1),
        (0.0, 5, 0),
        (1.0, 5, 5),
        (None, 5, 0),
        (0.9, 0, 0),  # no true defect: every setting meets the floor
    ],
)
def test_needed_hits_are_exact(floor, positives, needed):
    assert needed_hits(floor, positives) == needed


@pytest.mark.parametrize(
    "options, match",
    [
        ({"metric": "iou"}, "metric 'iou'"),
        ({"recall_floor": 1.5}, "recall floor 1.5"),
        ({"recall_floor": -0.1}, "recall floor -0.1"),
    ],
)
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        GatedSearch(1, [0.5], [0], [0], [], [], **options)


# --- training's search ----------------------------------------------------------------------------


def test_training_search_keeps_a_class_on_unless_allowed():
    # The old test of switching off (tests/core/test_postprocess.py) with and without allow_off:
    # a class that is confidently wrong on every image (64 pixels at 0.9, nothing true).
    def search(**options):
        s = PostprocessSearch(1, [0.5, 1.5], [0, 10, 100], **options)
        for _ in range(3):
            s.update(np.full((1, 8, 8), 0.9), np.zeros((1, 8, 8), bool))
        return s

    best, dice = search(allow_off=True).best()
    assert best.min_area[0] == 100 and dice[0] == 1.0  # over the 64 pixels: off, and first of the ties
    assert not best(np.full((1, 8, 8), 0.9)).any()
    s = PostprocessSearch(1, [0.5], [0, 10], allow_off=True)  # the old test, unchanged but for allow_off
    for _ in range(3):
        s.update(np.full((1, 8, 8), 0.9), np.zeros((1, 8, 8), bool))
    assert s.best()[0].min_area[0] == NEVER
    # min area 100 (> 64 pixels) and threshold 1.5 never predict either: off too
    best, dice = search().best()
    assert (best.pixel_threshold[0], best.min_area[0], dice[0]) == (0.5, 10, 0.0)
    assert best(np.full((1, 8, 8), 0.9)).any()
    assert search().scores().shape == (2, 4, 1)  # the "never" column is still scored, for the reports
