"""Augmentations checked by value: small images whose pixel values encode the masks."""

import cv2
import numpy as np
import pytest

from steelseg.config import AugmentStep, DataConfig
from steelseg.training.augment import (
    AUGMENTATIONS,
    apply,
    blackout_image,
    blackout_mask,
    build_step,
    circular_shift,
    crop_resize,
    label_defects,
    seed_transform,
    select_defects,
    train_transform,
)

H, W = 32, 64
SEEDS = range(12)


def _masks() -> np.ndarray:
    """(4, H, W) bool: two defects of class 0, one of class 2, none of classes 1 and 3."""
    masks = np.zeros((4, H, W), bool)
    masks[0, 2:8, 3:10] = True
    masks[0, 20:30, 40:44] = True
    masks[2, 10:25, 15:35] = True
    return masks


def _coded(masks: np.ndarray) -> np.ndarray:
    """(H, W) uint8 image that says where the masks are: 200 on a defect, 50 elsewhere."""
    return np.where(masks.any(axis=0), 200, 50).astype(np.uint8)


def _ramp() -> np.ndarray:
    """(H, W) uint8 image with every pixel different from its mirror images and shifts."""
    return (np.arange(H * W).reshape(H, W) % 251 + 1).astype(np.uint8)


def _run(steps: list[AugmentStep], image: np.ndarray, masks: np.ndarray, seed: int = 0, **data):
    config = DataConfig(**{"crop_height": None, "crop_width": None, **data}, augment=steps)
    transform = train_transform(config)
    seed_transform(transform, seed)
    return apply(transform, image, masks)


# --- circular shift --------------------------------------------------------------------------


def test_circular_shift_is_a_roll_along_the_width_that_wraps():
    image, masks = _ramp(), _masks().transpose(1, 2, 0)
    np.testing.assert_array_equal(circular_shift(image, 5), np.roll(image, 5, axis=1))
    np.testing.assert_array_equal(circular_shift(masks, -7), np.roll(masks, -7, axis=1))
    np.testing.assert_array_equal(circular_shift(image, 3)[:, :3], image[:, -3:])  # wrapped
    np.testing.assert_array_equal(circular_shift(image, W), image)


def _shift_of(before: np.ndarray, after: np.ndarray) -> int:
    found = [k for k in range(W) if np.array_equal(np.roll(before, k, axis=1), after)]
    assert len(found) == 1, "output is not a roll of the input"
    return found[0]


@pytest.mark.parametrize("limit", [1.0, 0.1])
def test_circular_shift_transform_rolls_image_and_every_mask_together(limit):
    image, masks = _ramp(), _masks()
    shifts = set()
    for seed in SEEDS:
        out_image, out_masks = _run(
            [AugmentStep(name="circular_shift", p=1, params={"limit": limit})], image, masks, seed
        )
        k = _shift_of(image, out_image)
        np.testing.assert_array_equal(out_masks, np.roll(masks, k, axis=2))
        shifts.add(min(k, W - k))
    assert len(shifts) > 1
    assert max(shifts) <= int(limit * W)


# --- defect blackout --------------------------------------------------------------------------


def test_label_defects_numbers_connected_defects_per_class():
    labels = label_defects(_masks().transpose(1, 2, 0).astype(np.uint8))
    assert [labels[..., c].max() for c in range(4)] == [2, 0, 1, 0]
    np.testing.assert_array_equal(labels[..., 2] > 0, _masks()[2])


def test_blackout_zeroes_exactly_the_chosen_defect_and_unlabels_it():
    masks = _masks().transpose(1, 2, 0).astype(np.uint8)
    labels = label_defects(masks)
    second = labels[25, 42, 0]  # the class-0 defect at rows 20:30, columns 40:44
    removed = select_defects(labels, [(0, second)])
    expected = np.zeros((H, W), bool)
    expected[20:30, 40:44] = True
    np.testing.assert_array_equal(removed[..., 0], expected)
    assert not removed[..., 1:].any()
    image = _ramp()
    out = blackout_image(image, removed)
    assert (out[expected] == 0).all()
    np.testing.assert_array_equal(out[~expected], image[~expected])
    cleared = blackout_mask(masks, removed)
    np.testing.assert_array_equal(cleared[..., 0], _masks()[0] & ~expected)
    np.testing.assert_array_equal(cleared[..., 1:], masks[..., 1:])


def test_defect_blackout_empties_a_class_when_its_only_defect_goes():
    masks = np.zeros((4, H, W), bool)
    masks[3, 5:15, 20:50] = True
    image = _ramp()
    out_image, out_masks = _run([AugmentStep(name="defect_blackout", p=1)], image, masks)
    assert not out_masks.any()
    assert (out_image[masks[3]] == 0).all()
    np.testing.assert_array_equal(out_image[~masks[3]], image[~masks[3]])


def test_defect_blackout_removes_one_whole_defect_at_a_time():
    image, masks = _ramp(), _masks()
    for seed in SEEDS:
        out_image, out_masks = _run([AugmentStep(name="defect_blackout", p=1)], image, masks, seed)
        gone = masks & ~out_masks
        assert not (out_masks & ~masks).any()
        assert label_defects(gone.transpose(1, 2, 0).astype(np.uint8)).max(axis=(0, 1)).sum() == 1
        blacked = gone.any(axis=0)
        assert (out_image[blacked] == 0).all()
        np.testing.assert_array_equal(out_image[~blacked], image[~blacked])


def test_defect_blackout_leaves_clean_images_alone():
    image, masks = _ramp(), np.zeros((4, H, W), bool)
    out_image, out_masks = _run([AugmentStep(name="defect_blackout", p=1, params={"max_defects": 3})], image, masks)
    np.testing.assert_array_equal(out_image, image)
    assert not out_masks.any()


# --- crop and resize --------------------------------------------------------------------------


def test_crop_resize_function_resizes_the_box_back_to_the_input_size():
    image = _ramp()
    np.testing.assert_array_equal(crop_resize(image, (0, 0, H, W), cv2.INTER_LINEAR), image)
    half = crop_resize(image, (4, 8, 4 + H // 2, 8 + W // 2), cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(half, image[4 : 4 + H // 2, 8 : 8 + W // 2].repeat(2, 0).repeat(2, 1))
    one_channel = crop_resize(image[..., None], (0, 0, 10, 20), cv2.INTER_LINEAR)
    assert one_channel.shape == (H, W, 1)


@pytest.mark.parametrize("interpolation", [cv2.INTER_LINEAR, cv2.INTER_NEAREST_EXACT])
def test_crop_resize_keeps_the_size_and_masks_on_their_pixels(interpolation):
    masks = _masks()
    image = _coded(masks)
    changed = 0
    for seed in SEEDS:
        step = AugmentStep(name="crop_resize", p=1, params={"scale": [0.4, 0.8], "interpolation": interpolation})
        out_image, out_masks = _run([step], image, masks, seed)
        assert out_image.shape == (H, W) and out_masks.shape == (4, H, W)
        defect = out_masks.any(axis=0)
        # Linear interpolation blends 200 and 50 on defect borders; pure values must agree.
        assert defect[out_image == 200].all() and not defect[out_image == 50].any()
        if interpolation == cv2.INTER_NEAREST_EXACT:
            np.testing.assert_array_equal(out_image, _coded(out_masks))
        assert not out_masks[1].any() and not out_masks[3].any()  # no class appears from nowhere
        changed += not np.array_equal(out_masks, masks)
    assert changed == len(SEEDS)


# --- flips and pixel-only steps ---------------------------------------------------------------


@pytest.mark.parametrize("name, axis", [("hflip", 1), ("vflip", 0)])
def test_flips_equal_numpy_flips(name, axis):
    image, masks = _ramp(), _masks()
    out_image, out_masks = _run([AugmentStep(name=name, p=1)], image, masks)
    np.testing.assert_array_equal(out_image, np.flip(image, axis))
    np.testing.assert_array_equal(out_masks, np.flip(masks, axis + 1))


def test_p_zero_is_the_identity():
    image, masks = _ramp(), _masks()
    out_image, out_masks = _run([AugmentStep(name=n, p=0) for n in AUGMENTATIONS], image, masks)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_masks, masks)


@pytest.mark.parametrize(
    "name, params",
    [
        ("brightness_contrast", {"brightness_limit": [0.2, 0.3], "contrast_limit": 0}),
        ("gamma", {"gamma_limit": [150, 200]}),
        ("blur", {"sigma_limit": [1.0, 2.0]}),
        ("sharpen", {"alpha": [0.5, 1.0]}),
        ("blur_sharpen", {"blur": {"sigma_limit": [1.0, 2.0]}, "sharpen": {"alpha": [0.5, 1.0]}}),
    ],
)
def test_pixel_steps_change_pixels_never_masks(name, params):
    masks = _masks()
    image = _coded(masks)
    for seed in range(4):
        out_image, out_masks = _run([AugmentStep(name=name, p=1, params=params)], image, masks, seed)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert not np.array_equal(out_image, image)
        np.testing.assert_array_equal(out_masks, masks)


# --- randaugment --------------------------------------------------------------------------------


def _flips_applied(image: np.ndarray, out: np.ndarray) -> set[str]:
    candidates = {
        frozenset(): image,
        frozenset({"hflip"}): np.flip(image, 1),
        frozenset({"vflip"}): np.flip(image, 0),
        frozenset({"hflip", "vflip"}): np.flip(image, (0, 1)),
    }
    return next(set(k) for k, v in candidates.items() if np.array_equal(v, out))


@pytest.mark.parametrize("n, possible", [(0, [0]), (1, [0, 1]), (2, [0, 1, 2])])
def test_randaugment_applies_between_zero_and_n_ops(n, possible):
    image, masks = _ramp(), _masks()
    counts = set()
    for seed in range(24):
        step = AugmentStep(name="randaugment", p=1, params={"n": n, "ops": ["hflip", "vflip"]})
        out_image, out_masks = _run([step], image, masks, seed)
        applied = _flips_applied(image, out_image)
        counts.add(len(applied))
        flipped = masks
        for name in applied:
            flipped = np.flip(flipped, 2 if name == "hflip" else 1)
        np.testing.assert_array_equal(out_masks, flipped)
    assert counts == set(possible)


def test_randaugment_ops_take_params_and_keep_masks_aligned():
    masks = _masks()
    image = _coded(masks)
    ops = ["hflip", "circular_shift", {"name": "crop_resize", "params": {"interpolation": cv2.INTER_NEAREST_EXACT}}]
    for seed in SEEDS:
        out_image, out_masks = _run(
            [AugmentStep(name="randaugment", p=1, params={"n": 3, "ops": ops})], image, masks, seed
        )
        np.testing.assert_array_equal(out_image, _coded(out_masks))


# --- errors, the crop, seeding ----------------------------------------------------------------


def test_unknown_names_and_bad_params_raise_value_errors():
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'.*circular_shift.*hflip"):
        build_step(AugmentStep(name="rotate"))
    with pytest.raises(ValueError, match="hflip"):
        build_step(AugmentStep(name="hflip", params={"prob": 1}))
    with pytest.raises(ValueError, match="scale"):
        build_step(AugmentStep(name="crop_resize", params={"scale": [0.0, 2.0]}))
    with pytest.raises(ValueError, match="unknown augmentation 'nope'"):
        build_step(AugmentStep(name="randaugment", params={"ops": ["hflip", "nope"]}))
    with pytest.raises(ValueError, match="n must be"):
        build_step(AugmentStep(name="randaugment", params={"n": 3, "ops": ["hflip", "vflip"]}))
    with pytest.raises(ValueError, match="cannot include randaugment"):
        build_step(AugmentStep(name="randaugment", params={"ops": ["randaugment"]}))
    with pytest.raises(ValueError, match="unknown augmentation"):
        train_transform(DataConfig(augment=[AugmentStep(name="hflip"), AugmentStep(name="mosaic")]))


def test_crop_then_steps_keep_masks_on_their_pixels():
    masks = np.zeros((4, 48, 200), bool)
    masks[1, 10:30, 150:170] = True
    image = _coded(masks)
    steps = [AugmentStep(name=n, p=0.5) for n in ("hflip", "vflip", "circular_shift")]
    for seed in SEEDS:
        out_image, out_masks = _run(steps, image, masks, seed, crop_height=H, crop_width=W, defect_crop_fraction=1.0)
        assert out_image.shape == (H, W) and out_masks.shape == (4, H, W)
        assert out_masks[1].any()  # every crop lands on the defect
        np.testing.assert_array_equal(out_image, _coded(out_masks))


def test_seeded_transforms_repeat_and_steps_draw_independently():
    image, masks = _ramp(), _masks()
    steps = [AugmentStep(name="hflip", p=0.5), AugmentStep(name="vflip", p=0.5)]
    transform = train_transform(DataConfig(crop_height=None, crop_width=None, augment=steps))
    seed_transform(transform, 7)
    first = [apply(transform, image, masks)[0] for _ in range(16)]
    seed_transform(transform, 7)
    again = [apply(transform, image, masks)[0] for _ in range(16)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    # One generator shared by the steps: hflip and vflip do not always fire together.
    assert {len(_flips_applied(image, out)) for out in first} == {0, 1, 2}
