"""Class scores and soft gating on hand-made arrays (core/outputs.py)."""

import numpy as np
import pytest

from steelseg.config import ModelConfig
from steelseg.core.outputs import CLASSES, PIXELS, soft_gate, to_image
from steelseg.core.postprocess import max_score, top_k_score


def _probs() -> np.ndarray:
    """(1, 2, 2, 3): class 0 has one hot pixel, class 1 a spread of values."""
    return np.array(
        [[[[0.1, 0.9, 0.2], [0.0, 0.1, 0.3]], [[0.5, 0.6, 0.7], [0.8, 0.2, 0.4]]]],
        dtype=np.float32,
    )


def test_max_score_is_the_largest_pixel_of_each_class():
    np.testing.assert_array_equal(max_score(_probs()), np.array([[0.9, 0.8]], np.float32))


@pytest.mark.parametrize(
    "k, expected",
    [
        (1, [0.9, 0.8]),
        (2, [(0.9 + 0.3) / 2, (0.8 + 0.7) / 2]),
        (3, [(0.9 + 0.3 + 0.2) / 3, (0.8 + 0.7 + 0.6) / 3]),
        (6, [1.6 / 6, 3.2 / 6]),  # every pixel: the mean
        (100, [1.6 / 6, 3.2 / 6]),  # more than the image has: every pixel
    ],
)
def test_top_k_score_is_the_mean_of_the_k_largest_pixels(k, expected):
    np.testing.assert_allclose(top_k_score(_probs(), k), [expected], rtol=1e-6)


def test_soft_gate_multiplies_each_class_map_by_its_class_probability():
    pixels = _probs()
    gated = soft_gate(pixels, np.array([[0.5, 0.0]], np.float32))
    np.testing.assert_allclose(gated[0, 0], [[0.05, 0.45, 0.1], [0.0, 0.05, 0.15]], rtol=1e-6)
    np.testing.assert_array_equal(gated[0, 1], np.zeros((2, 3)))
    assert gated.dtype == np.float32


def test_two_headed_outputs_are_gated_and_scored_by_the_class_head():
    pixels, classes = _probs(), np.array([[0.5, 0.25]], np.float32)
    out = to_image({PIXELS: pixels, CLASSES: classes}, (2, 3), ModelConfig(task="two_head"))
    np.testing.assert_allclose(out.pixels, pixels * np.array([0.5, 0.25]).reshape(1, 2, 1, 1), rtol=1e-6)
    np.testing.assert_array_equal(out.scores, classes)


def test_segmenter_scores_come_from_its_pixels_at_image_size():
    pixels = _probs()
    out = to_image({PIXELS: pixels}, (4, 6), ModelConfig(score="top_k", score_top_k=4))
    assert out.pixels.shape == (1, 2, 4, 6)
    np.testing.assert_allclose(out.scores, top_k_score(out.pixels, 4), rtol=1e-6)
    assert to_image({PIXELS: pixels}, (2, 3), ModelConfig()).scores.tolist() == max_score(pixels).tolist()


def test_a_classifier_has_scores_and_no_pixels():
    out = to_image({CLASSES: np.array([[0.2, 0.7]], np.float32)}, (256, 1600), ModelConfig(task="classify"))
    assert out.pixels is None and out.scores.tolist() == [[pytest.approx(0.2), pytest.approx(0.7)]]
    assert len(out) == 1 and out[0].scores.shape == (2,)
