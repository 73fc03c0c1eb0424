"""COCO's uncompressed RLE written in numpy: hand-derived counts for each edge, then random masks
decoded back by a decoder written here (repeat the alternating values, refold column-major) and
by pycocotools, COCO's own reference, where installed; the box against pycocotools' toBbox."""

import numpy as np
import pytest

from steelseg.core import coco_rle


def _decode(counts: list[int], shape: tuple[int, int]) -> np.ndarray:
    """The counts as COCO defines them, independently: runs of 0, 1, 0, ... down the columns."""
    values = np.arange(len(counts)) % 2
    return np.repeat(values, counts).astype(bool).reshape(shape[1], shape[0]).T


# 3 rows x 2 columns; pixel order down the columns: (0,0) (1,0) (2,0) (0,1) (1,1) (2,1)
CASES = {
    "empty mask": ([[0, 0], [0, 0], [0, 0]], [6]),
    "full mask": ([[1, 1], [1, 1], [1, 1]], [0, 6]),
    "top-left pixel: a leading 0": ([[1, 0], [0, 0], [0, 0]], [0, 1, 5]),
    "bottom-right pixel": ([[0, 0], [0, 0], [0, 1]], [5, 1]),
    "run crossing a column": ([[0, 1], [0, 0], [1, 0]], [2, 2, 2]),
    "column-major, not row-major": ([[0, 1], [0, 1], [0, 0]], [3, 2, 1]),
}


@pytest.mark.parametrize("mask, counts", CASES.values(), ids=CASES.keys())
def test_counts_of_hand_derived_masks(mask, counts):
    mask = np.array(mask, dtype=bool)
    assert coco_rle.counts(mask) == counts
    assert coco_rle.segmentation(mask) == {"counts": counts, "size": [3, 2]}
    assert (_decode(counts, mask.shape) == mask).all()


def test_counts_take_any_dtype_and_refuse_other_than_two_dimensions():
    assert coco_rle.counts(np.array([[0, 7], [0, 0]], np.uint8)) == [2, 1, 1]
    with pytest.raises(ValueError, match="2-D"):
        coco_rle.counts(np.zeros((1, 2, 2), bool))


def _random_masks():
    rng = np.random.default_rng(7)
    for height, width, density in [(1, 1, 0.5), (1, 9, 0.5), (9, 1, 0.5), (17, 23, 0.3), (64, 320, 0.05)]:
        for _ in range(20):
            yield rng.random((height, width)) < density


def test_random_masks_decode_back_with_the_independent_decoder():
    for mask in _random_masks():
        counts = coco_rle.counts(mask)
        assert sum(counts) == mask.size and all(c > 0 for c in counts[1:])
        assert (_decode(counts, mask.shape) == mask).all()


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # pycocotools, numpy 2
def test_random_masks_decode_back_with_pycocotools_and_match_its_own_encoding():
    coco_mask = pytest.importorskip("pycocotools.mask")
    from steelseg.files.importers.coco import string_counts  # pycocotools' compressed counts, decoded

    for mask in _random_masks():
        height, width = mask.shape
        decoded = coco_mask.decode(coco_mask.frPyObjects(coco_rle.segmentation(mask), height, width))
        assert (decoded.astype(bool) == mask).all()
        theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert string_counts("pycocotools", theirs["counts"].decode()) == coco_rle.counts(mask)
        if mask.any():
            assert coco_rle.bbox(mask) == coco_mask.toBbox(theirs).tolist()


def test_bbox_is_x_y_width_height_in_pixel_edges():
    mask = np.zeros((5, 7), bool)
    assert coco_rle.bbox(mask) == [0.0, 0.0, 0.0, 0.0]
    mask[3, 6] = True
    assert coco_rle.bbox(mask) == [6.0, 3.0, 1.0, 1.0]
    mask[1:3, 2:5] = True
    assert coco_rle.bbox(mask) == [2.0, 1.0, 5.0, 3.0]
