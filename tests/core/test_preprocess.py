import cv2
import numpy as np
import pytest

from steelseg.core.preprocess import resize_image, resize_masks, to_input, upsample_probs


def test_to_input_standardises_and_repeats_channels():
    images = np.array([[[0, 255]]], np.uint8)
    x = to_input(images, mean=0.5, std=0.25, in_channels=3)
    assert x.shape == (1, 3, 1, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], -2.0)
    np.testing.assert_allclose(x[0, :, 0, 1], 2.0)


def test_half_scale_input_and_full_size_probabilities():
    image = np.zeros((256, 1600), np.uint8)
    image[:, 800:] = 200
    x = to_input(image, 0.0, 1.0, scale=0.5)
    assert x.shape == (1, 1, 128, 800)
    np.testing.assert_allclose(x[0, 0, 0, [0, 799]], [0.0, 200 / 255], atol=1e-6)
    probs = np.zeros((1, 2, 128, 800), np.float32)
    probs[0, 1, :, 400:] = 1.0
    full = upsample_probs(probs, (256, 1600))
    assert full.shape == (1, 2, 256, 1600)
    assert full[0, 1, :, 810:].min() == 1.0 and full[0, 1, :, :790].max() == 0.0 and full[0, 0].max() == 0.0


def test_masks_downscale_by_majority():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True  # one full 2x2 block
    masks[0, 2, 2] = True  # a quarter of a block: not enough
    small = resize_masks(masks, 0.5)
    np.testing.assert_array_equal(small[0], [[True, False], [False, False]])
    assert resize_image(np.zeros((5, 7), np.uint8), 1.0).shape == (5, 7)


# n * c = 160, 128, 256, 129, 258: cv2.resize takes at most 128 channels a call (OpenCV 5)
@pytest.mark.parametrize(("n", "c"), [(40, 4), (32, 4), (64, 4), (43, 3), (86, 3)])
def test_upsample_probs_matches_each_plane_resized_alone(n, c):
    probs = np.random.default_rng(n * c).random((n, c, 16, 24), np.float32)
    full = upsample_probs(probs, (32, 48))
    assert full.shape == (n, c, 32, 48) and full.dtype == np.float32
    truth = np.array(
        [[cv2.resize(probs[i, j], (48, 32), interpolation=cv2.INTER_LINEAR) for j in range(c)] for i in range(n)]
    )
    np.testing.assert_allclose(full, truth, rtol=0, atol=1e-6)
