import numpy as np

from steelseg.files.overlay import COLORS, overlay, save_png, truth_vs_prediction


def test_masks_are_tinted_and_outlined_in_their_class_colour():
    image = np.full((20, 30), 100, np.uint8)
    masks = np.zeros((2, 20, 30), bool)
    masks[1, 5:15, 10:20] = True
    out = overlay(image, masks)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # untouched background
    np.testing.assert_array_equal(out[5, 12], COLORS[1])  # outline pixel
    inside = out[10, 15].astype(float)
    assert np.allclose(inside, 0.65 * 100 + 0.35 * COLORS[1], atol=1)


def test_truth_vs_prediction_panel(tmp_path):
    image = np.zeros((16, 64), np.uint8)
    truth = np.zeros((4, 16, 64), bool)
    truth[2, 4:8, 4:20] = True
    panel = truth_vs_prediction(image, truth, np.zeros_like(truth), "x.jpg", ["a", "b", "c", "d"])
    assert panel.shape == (3 * (16 + 22), 64, 3)
    save_png(tmp_path / "p.png", panel)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
