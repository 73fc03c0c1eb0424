"""Dice against the pixel threshold and the minimum area, on probabilities planted by hand.

One class, two 1x10 images:

    image 1: truth = pixels 0-3; probabilities 0.9 0.9 0.6 0.6 0.4 0.4 0 0 0 0
    image 2: no defect;          probabilities 0.55 on pixels 0-2, else 0

Pixels predicted at threshold 0.3 / 0.5 / 0.7: image 1 6 / 4 / 2 (all 4 true ones among
the first), image 2 3 / 3 / 0. Dice 2|P n T| / (|P| + |T|), an image with nothing true nor
predicted scoring 1, and a class mask of fewer than A pixels emptied.
"""

import numpy as np
import pytest

from steelseg.core.postprocess import NEVER
from steelseg.reports.sweeps import probability_curves

TRUTH_1 = np.array([[[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]]], bool)
PROBS_1 = np.array([[[0.9, 0.9, 0.6, 0.6, 0.4, 0.4, 0, 0, 0, 0]]], np.float32)
TRUTH_2 = np.zeros((1, 1, 10), bool)
PROBS_2 = np.array([[[0.55, 0.55, 0.55, 0, 0, 0, 0, 0, 0, 0]]], np.float32)
PAIRS = [(PROBS_1, TRUTH_1), (PROBS_2, TRUTH_2)]


def test_both_slices_pass_through_the_values_in_use():
    curves = probability_curves(
        PAIRS, 1, threshold_in_use=[0.5], min_area_in_use=[4], thresholds=[0.3, 0.5, 0.7], min_areas=[0, 3, 5]
    )
    assert curves.thresholds.tolist() == [0.3, 0.5, 0.7]
    # at min area 4: 0.3 -> image 1 8/10, image 2's 3 px removed (1); 0.5 -> 1, 1; 0.7 -> image 1's 2 px removed (0), 1
    np.testing.assert_allclose(curves.by_threshold[:, 0], [0.9, 1.0, 0.5])
    assert curves.min_areas.tolist() == [0, 3, 4, 5]  # the value in use joins the grid
    # at threshold 0.5: A 0 and 3 keep image 2's 3 px (0); A 4 removes them; A 5 removes image 1's 4 px too
    np.testing.assert_allclose(curves.by_min_area[:, 0], [0.5, 0.5, 1.0, 0.5])
    assert curves.threshold_in_use.tolist() == [0.5] and curves.min_area_in_use.tolist() == [4]


def test_a_class_switched_off_scores_as_predicting_nothing():
    curves = probability_curves(
        PAIRS, 1, threshold_in_use=[0.7], min_area_in_use=[NEVER], thresholds=[0.3, 0.5], min_areas=[0]
    )
    assert np.isnan(curves.min_area_in_use[0])
    np.testing.assert_allclose(curves.by_threshold[:, 0], [0.5, 0.5, 0.5])  # image 1: 0, image 2: 1
    # the min-area curve at threshold 0.7: A 0 -> image 1 4/6, image 2 1
    assert curves.min_areas.tolist() == [0]
    assert curves.by_min_area[0, 0] == pytest.approx((4 / 6 + 1) / 2)
