import numpy as np
import pytest

from steelseg.core.postprocess import NEVER, PostProcess, thresholds_for
from steelseg.core.search import PostprocessSearch


def test_threshold_then_min_area_per_class():
    probs = np.zeros((2, 4, 4))
    probs[0, :2, :2] = 0.6  # 4 pixels of class 1
    probs[1, :3, :3] = 0.9  # 9 pixels of class 2
    post = PostProcess.uniform(2, [0.5, 0.95], [4, 1])
    masks = post(probs)
    assert masks[0].sum() == 4  # component exactly at min area is kept
    assert not masks[1].any()  # below class 2's pixel threshold
    assert not PostProcess.uniform(2, 0.5, 5)(probs)[0].any()  # one pixel short: dropped
    assert PostProcess.uniform(2, 0.6, 0)(probs)[0].sum() == 4  # probability == threshold counts


def test_json_round_trip_and_per_class_length():
    post = PostProcess.uniform(3, [0.4, 0.5, 0.6], 100)
    back = PostProcess.from_json(post.to_json())
    np.testing.assert_array_equal(back.pixel_threshold, [0.4, 0.5, 0.6])
    np.testing.assert_array_equal(back.min_area, [100, 100, 100])
    with pytest.raises(ValueError, match="one value per class"):
        PostProcess.uniform(3, [0.5, 0.5], 0)


def test_search_finds_the_threshold_and_area_that_separate_signal_from_noise():
    rng = np.random.default_rng(0)
    search = PostprocessSearch(1, [0.3, 0.5, 0.7], [0, 20, 100])
    for i in range(10):
        truth = np.zeros((1, 16, 16), bool)
        probs = rng.uniform(0, 0.45, (1, 16, 16))  # noise never reaches 0.5
        if i % 2:
            truth[0, 4:10, 4:10] = True  # 36-pixel defect on odd images
            probs[0, 4:10, 4:10] = 0.6
        search.update(probs, truth)
    best, dice = search.best()
    assert best.pixel_threshold[0] == 0.5 and best.min_area[0] == 20
    assert dice[0] == pytest.approx(1.0)
    scores = search.scores()  # (thresholds, areas + "never", classes), both descending
    assert scores.shape == (3, 4, 1)
    assert scores[0, 3, 0] == pytest.approx(0.5)  # never predicting: only the clean half scores
    assert scores[2, 2, 0] < 0.5  # threshold 0.3, no min area: noise flags every clean image


def test_search_switches_off_a_class_that_only_does_harm_when_allowed():
    # allowed only: by default a class is never switched off (tests/core/test_search_choice.py)
    search = PostprocessSearch(1, [0.5], [0, 10], allow_off=True)
    for _ in range(3):
        search.update(np.full((1, 8, 8), 0.9), np.zeros((1, 8, 8), bool))  # confident, always wrong
    best, dice = search.best()
    assert best.min_area[0] == NEVER and dice[0] == 1.0
    assert not best(np.ones((1, 8, 8))).any()


def test_search_on_data_without_defects_predicts_nothing():
    search = PostprocessSearch(2, [0.3, 0.5, 0.7], [0, 50])
    rng = np.random.default_rng(1)
    for _ in range(4):
        search.update(rng.uniform(0, 0.6, (2, 8, 8)), np.zeros((2, 8, 8), bool))
    best, dice = search.best()
    np.testing.assert_array_equal(dice, [1.0, 1.0])
    assert (best.pixel_threshold == 0.7).all() and (best.min_area == 50).all()  # the cautious end
    probs = rng.uniform(0, 0.6, (2, 8, 8))
    assert not best(probs).any()


@pytest.mark.parametrize("threshold", [0.7, 0.3, 0.5, 0.1, 0.9, 1.0, 0.0, 0.123456789])
def test_float32_thresholds_decide_exactly_as_float64(threshold):
    # float32(0.7) is just below 0.7: rounding alone would admit p = float32(0.7) < 0.7
    t32 = thresholds_for(np.float32, np.array([threshold]))[0]
    assert t32.dtype == np.float32
    near = np.float32(threshold)
    candidates = np.array([np.nextafter(near, np.float32(-1)), near, np.nextafter(near, np.float32(2))], np.float32)
    np.testing.assert_array_equal(candidates >= t32, candidates.astype(np.float64) >= threshold)
    post = PostProcess.uniform(1, threshold, 0)
    np.testing.assert_array_equal(post(candidates.reshape(1, 1, 3))[0, 0], candidates.astype(np.float64) >= threshold)
