"""Masks as LabelMe polygons: hand-made shapes (pixel, line, rectangle, ring, a component inside
a hole, nested holes, shapes on the image border) and random masks full of holes, each drawn
back by the LabelMe importer's rule (cv2.fillPoly, boundary included, points as pixel centres)
and compared pixel for pixel with the mask itself."""

import cv2
import numpy as np
import pytest

from steelseg.core.polygons import MIN_POINTS, polygons


def _drawn(rings: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """As ``files.importers.labelme`` draws a polygon."""
    canvas = np.zeros(shape, np.uint8)
    for ring in rings:
        cv2.fillPoly(canvas, [np.rint(ring).astype(np.int32)], 1)
    return canvas.astype(bool)


def _ring(size: int, wall: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[1:-1, 1:-1] = True
    mask[1 + wall : -1 - wall, 1 + wall : -1 - wall] = False
    return mask


def _shapes() -> dict[str, np.ndarray]:
    pixel = np.zeros((5, 5), bool)
    pixel[2, 3] = True
    line = np.zeros((5, 9), bool)
    line[2, 1:8] = True
    diagonal = np.eye(6, dtype=bool)
    island = _ring(12, 2)
    island[5:7, 5:7] = True  # a component inside the hole
    nested = _ring(20, 2)
    nested[5:15, 5:15] = _ring(10, 2)  # a ring inside the hole of a ring
    two_holes = np.ones((8, 14), bool)
    two_holes[3:5, 2:5] = two_holes[2:6, 8:12] = False
    thin_wall = np.ones((7, 7), bool)  # a hole whose top border is the outline itself
    thin_wall[1:6, 1:6] = False
    return {
        "one pixel": pixel,
        "a line": line,
        "a diagonal": diagonal,
        "a ring": _ring(10, 2),
        "a component inside a hole": island,
        "a ring inside a ring": nested,
        "two holes": two_holes,
        "a hole in a one-pixel wall": thin_wall,
        "the whole image": np.ones((4, 6), bool),
    }


@pytest.mark.parametrize("mask", _shapes().values(), ids=_shapes().keys())
def test_hand_made_shapes_draw_back_to_their_pixels(mask):
    rings = polygons(mask)
    assert all(len(ring) >= MIN_POINTS and ring.dtype.kind == "i" for ring in rings)
    assert (_drawn(rings, mask.shape) == mask).all()


def test_a_rectangle_is_its_four_corners_and_a_pixel_three_copies_of_itself():
    mask = np.zeros((30, 20), bool)
    mask[0:20, 0:10] = True  # 10 x 20 pixels: LabelMe's polygon (0, 0), (9, 0), (9, 19), (0, 19)
    (ring,) = polygons(mask)
    assert sorted(map(tuple, ring.tolist())) == [(0, 0), (0, 19), (9, 0), (9, 19)]
    assert polygons(_shapes()["one pixel"])[0].tolist() == [[3, 2]] * 3


def test_a_ring_is_one_polygon_with_its_hole_left_empty():
    mask = _ring(10, 2)
    (ring,) = polygons(mask)
    drawn = _drawn([ring], mask.shape)
    assert not drawn[3:7, 3:7].any() and drawn[1:9, 1:9].sum() == mask.sum()


def test_each_component_is_a_polygon_and_an_empty_mask_has_none():
    assert polygons(np.zeros((4, 4), bool)) == []
    assert len(polygons(_shapes()["a component inside a hole"])) == 2
    assert len(polygons(_shapes()["a ring inside a ring"])) == 2
    with pytest.raises(ValueError, match="2-D"):
        polygons(np.zeros((1, 4, 4), bool))


def _random_masks():
    rng = np.random.default_rng(11)
    for trial in range(300):
        height, width = (int(v) for v in rng.integers(3, 48, 2))
        noise = rng.random((height, width)).astype(np.float32)
        if trial % 2:  # blobs with holes and islands; else salt-and-pepper, the worst case
            noise = cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(0.8, 3)))
        yield noise > np.quantile(noise, rng.uniform(0.2, 0.8))


def test_random_masks_full_of_holes_draw_back_exactly():
    for mask in _random_masks():
        assert (_drawn(polygons(mask), mask.shape) == mask).all()


def test_straight_runs_are_cut_to_their_ends():
    mask = np.zeros((64, 320), bool)
    mask[10:50, 20:300] = True
    mask[20:30, 100:110] = False  # a hole
    (ring,) = polygons(mask)
    # 4 outline corners; the bridge's top, walked to and back to; the hole's 8 points (its border
    # pixels at the corners touch it only diagonally, so they are cut) and its top again
    assert len(ring) == 4 + 2 + 8 + 1
    assert (_drawn([ring], mask.shape) == mask).all()
