import numpy as np

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
