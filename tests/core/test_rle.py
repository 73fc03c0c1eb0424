import numpy as np
import pytest

from steelseg.core import rle
from steelseg.files.annotations import read_annotations


def _mask(shape, pixels):
    """A mask with the given 1-indexed column-major pixel numbers set."""
    flat = np.zeros(shape[0] * shape[1], bool)
    flat[np.asarray(pixels, int) - 1] = True
    return flat.reshape(shape[1], shape[0]).T


@pytest.mark.parametrize(
    "name, shape, pixels, expected",
    [
        ("empty mask", (4, 5), [], ""),
        ("full mask", (4, 5), range(1, 21), "1 20"),
        ("top-left corner pixel", (4, 5), [1], "1 1"),
        ("bottom-right corner pixel", (4, 5), [20], "20 1"),
        ("bottom-left corner pixel", (4, 5), [4], "4 1"),
        ("top-right corner pixel", (4, 5), [17], "17 1"),
        ("run crossing a column", (4, 5), [3, 4, 5, 6], "3 4"),
        ("the competition's example", (4, 5), [1, 2, 3, 10, 11, 12, 13, 14], "1 3 10 5"),
        ("single row image", (1, 6), [2, 3, 5], "2 2 5 1"),
    ],
)
def test_encode_and_decode_known_cases(name, shape, pixels, expected):
    mask = _mask(shape, list(pixels))
    assert rle.encode(mask) == expected, name
    np.testing.assert_array_equal(rle.decode(expected, shape), mask)


def test_numbering_is_top_to_bottom_then_left_to_right():
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = True  # row 0, column 1 -> pixel 1 + 3 rows of column 0 = 4
    assert rle.encode(mask) == "4 1"


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2), (64, 128), (256, 1600)])
@pytest.mark.parametrize("density", [0.01, 0.5, 0.97])
def test_round_trip_random_masks(shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    for _ in range(5):
        mask = rng.random(shape) < density
        encoded = rle.encode(mask)
        decoded = rle.decode(encoded, shape)
        assert decoded.shape == shape and decoded.dtype == bool
        np.testing.assert_array_equal(decoded, mask)
        assert rle.encode(decoded) == encoded


def test_encode_accepts_any_nonzero_dtype():
    mask = np.array([[0, 3], [255, 0]], np.uint8)
    assert rle.encode(mask) == rle.encode(mask.astype(bool)) == "2 2"


@pytest.mark.parametrize(
    "encoded, message",
    [
        ("1 3 5", "odd number of tokens"),
        ("1 3 x 2", "non-integer token 'x'"),
        ("1 3 5 2.5", "non-integer token '2.5'"),
        ("0 3", "start 0 in run 1 is below 1"),
        ("-4 3", "start -4"),
        ("1 3 8 0", "length 0 in run 2 is below 1"),
        ("18 4", "past the end of a 4x5 image"),
        ("10 2 1 3", "runs out of order"),
        ("1 5 4 2", "overlapping runs"),
    ],
)
def test_decode_rejects_malformed(encoded, message):
    with pytest.raises(rle.RLEError, match=message):
        rle.decode(encoded, (4, 5))


def test_touching_runs_are_valid():
    np.testing.assert_array_equal(rle.decode("1 2 3 2", (2, 2)), np.ones((2, 2), bool))


def test_every_real_row_round_trips(severstal_mini):
    table = read_annotations(severstal_mini / "train.csv")
    assert len(table.encoded) == 19
    for (image_id, class_id), encoded in table.encoded.items():
        mask = rle.decode(encoded, (256, 1600))
        assert mask.any()
        assert rle.encode(mask) == encoded, (image_id, class_id)


def test_both_real_layouts_give_identical_masks(severstal_mini):
    long = read_annotations(severstal_mini / "train.csv")
    old = read_annotations(severstal_mini / "train_2019_layout.csv")
    assert len(old.image_ids) == 20 and set(long.image_ids) <= set(old.image_ids)
    assert old.encoded == long.encoded
    for image_id in old.image_ids:
        np.testing.assert_array_equal(old.masks(image_id, 4, (256, 1600)), long.masks(image_id, 4, (256, 1600)))
