"""The uncertainty of ``predict --review``: each term on hand-derived values, the pixel counts
on planted probabilities, and the ranking's ties."""

import numpy as np
import pytest

from steelseg.core import uncertainty

# (score, threshold, class doubt derived by hand)
CLASS_DOUBT = {
    "on the threshold": (0.6, 0.6, 1.0),
    "far side at 0, threshold 0.3": (0.0, 0.3, 1 - 0.3 / 0.7),
    "far side at 1, threshold 0.5": (1.0, 0.5, 0.0),
    "near side at 0, threshold 0.8": (0.0, 0.8, 0.0),
    "threshold 0: doubt is 1 - score": (0.25, 0.0, 0.75),
    "threshold 1: doubt is the score": (0.25, 1.0, 0.25),
}


@pytest.mark.parametrize("score, threshold, expected", CLASS_DOUBT.values(), ids=CLASS_DOUBT.keys())
def test_class_doubt(score, threshold, expected):
    assert uncertainty.class_doubt(np.array([score]), np.array([threshold]))[0] == pytest.approx(expected)


def test_pixel_counts_of_planted_probabilities():
    # class 1 (threshold 0.5): 0.55 and 0.45 near, 0.65 and 0.9 sure, 0.35 and 0.1 neither;
    # class 2 (threshold 0.3): 0.35 near, 0.45 and above sure, 0.1 neither
    pixels = np.array([[[0.55, 0.45, 0.65], [0.9, 0.35, 0.1]]], np.float32)
    pixels = np.concatenate([pixels, pixels])
    near, sure = uncertainty.pixel_counts(pixels, np.array([0.5, 0.3]), band=0.1)
    assert near.tolist() == [2, 1] and sure.tolist() == [2, 4]
    assert near.dtype == np.int64


def test_pixel_doubt_is_the_near_share_with_a_floor():
    near, sure = np.array([100, 0, 300, 5]), np.array([0, 50, 100, 0])
    assert uncertainty.pixel_doubt(near, sure, floor=100).tolist() == pytest.approx([0.5, 0.0, 0.6, 5 / 105])


def test_doubt_is_the_mean_of_the_class_and_pixel_doubts():
    counts = uncertainty.Counts(np.array([0.5, 0.9], np.float32), np.array([100, 0]), np.array([0, 0]), (4, 4))
    # class 1: class doubt 1 (on its threshold), pixel doubt 0.5; class 2: 1 - 0.4 / 0.5 = 0.2 and 0
    assert uncertainty.doubt(counts, np.array([0.5, 0.5]), floor=100).tolist() == pytest.approx([0.75, 0.1])


def test_most_uncertain_ranks_highest_first_with_ties_by_image_id():
    values = {"c.jpg": 0.5, "a.jpg": 0.9, "b.jpg": 0.5, "d.jpg": 0.1}
    assert uncertainty.most_uncertain(values, 3) == ["a.jpg", "b.jpg", "c.jpg"]
    assert uncertainty.most_uncertain(values, 10) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
