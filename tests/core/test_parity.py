"""core.parity against counts worked out by hand."""

import numpy as np
import pytest

from steelseg.core.parity import compare


def test_counts_on_a_small_planted_case():
    reference = np.zeros((2, 10, 100), bool)
    reference[0, 2:4, 10:30] = True  # 40 px marked: 0.2% of 2,000
    masks = reference.copy()
    masks[0, 2:4, 10:20] = False  # 20 of them lost
    masks[1, 0, :5] = True  # 5 px added
    probs_ref, probs = np.zeros(reference.shape, np.float32), np.zeros(reference.shape, np.float32)
    probs[0, 0, 0] = 0.5
    parity = compare(reference, masks, probs_ref, probs)
    assert parity.agreement == pytest.approx(1 - 25 / 2000)
    assert parity.dice == pytest.approx(2 * 20 / (40 + 25))
    assert parity.mean_diff == pytest.approx(0.5 / 2000) and parity.max_diff == pytest.approx(0.5)
    assert not parity.passes  # agreement 98.75%, Dice 0.62


def test_masks_that_mark_nothing_fail_where_the_reference_marks_defects():
    reference = np.zeros((1, 100, 100), bool)
    reference[0, :2, :] = True  # 2% marked
    parity = compare(reference, np.zeros_like(reference))
    assert parity.agreement == pytest.approx(0.98) and parity.dice == 0.0 and not parity.passes
    few = np.zeros((1, 100, 100), bool)
    few[0, 0, :5] = True  # 0.05%: too few for a Dice to mean anything
    parity = compare(few, np.zeros_like(few))
    assert parity.dice is None and parity.passes and parity.mean_diff is None


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shape"):
        compare(np.zeros((2, 3), bool), np.zeros((3, 2), bool))
