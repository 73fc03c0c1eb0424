import numpy as np
import pytest

from steelseg.core.metrics import DiceAccumulator, dice, pair_dice

E = np.zeros((4, 4), bool)
FULL = np.ones((4, 4), bool)
LEFT = np.zeros((4, 4), bool)
LEFT[:, :2] = True
MIDDLE = np.zeros((4, 4), bool)
MIDDLE[:, 1:3] = True


@pytest.mark.parametrize(
    "name, pred, truth, expected",
    [
        ("empty vs empty scores 1", E, E, 1.0),
        ("empty prediction, defect in truth", E, LEFT, 0.0),
        ("false positive on a clean image", LEFT, E, 0.0),
        ("perfect", LEFT, LEFT, 1.0),
        ("half overlap", LEFT, MIDDLE, 0.5),
        ("prediction covers everything", FULL, LEFT, 2 * 8 / (16 + 8)),
    ],
)
def test_dice_edge_cases(name, pred, truth, expected):
    assert dice(pred, truth) == pytest.approx(expected), name
    assert pair_dice(pred[None], truth[None])[0] == pytest.approx(expected), name


def test_accumulator_competition_and_dataset_scores():
    acc = DiceAccumulator(num_classes=2)
    # image 1: class 1 perfect, class 2 empty/empty; image 2: class 1 half overlap, class 2 missed
    per_image = acc.update(np.stack([LEFT, E]), np.stack([LEFT, E]))
    np.testing.assert_allclose(per_image, [1.0, 1.0])
    acc.update(np.stack([LEFT, E]), np.stack([MIDDLE, LEFT]))
    scores = acc.result()
    np.testing.assert_allclose(scores.class_dice, [0.75, 0.5])
    assert scores.mean_dice == pytest.approx(0.625)  # mean over the 4 (image, class) pairs
    # dataset level, class 1: intersection 8 + 4, predicted 16, true 16
    assert scores.dataset_dice[0] == pytest.approx(2 * 12 / 32)
    assert scores.dataset_iou[0] == pytest.approx(12 / 20)
    # class 2: nothing predicted, 8 true pixels
    assert scores.dataset_dice[1] == 0.0 and scores.dataset_iou[1] == 0.0
    assert scores.num_images == 2


def test_dataset_scores_of_an_absent_class_are_one():
    acc = DiceAccumulator(num_classes=1)
    acc.update(E[None], E[None])
    scores = acc.result()
    assert scores.dataset_dice[0] == 1.0 and scores.dataset_iou[0] == 1.0


def test_accumulator_rejects_mismatched_shapes():
    acc = DiceAccumulator(num_classes=2)
    with pytest.raises(ValueError, match="must both be"):
        acc.update(np.stack([E, E]), E[None])
    with pytest.raises(ValueError, match="no images"):
        DiceAccumulator(1).result()
