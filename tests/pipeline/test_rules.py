"""The plan's rules on fingerprints whose figures are set by hand: each choice checked against
the arithmetic of the rule's docstring, not against the code's own output."""

from __future__ import annotations

import pytest

from steelseg.pipeline import rules
from steelseg.pipeline.fingerprint import ClassFingerprint, Fingerprint


def _q(value: float, low: float | None = None, high: float | None = None) -> dict[str, float]:
    low = value if low is None else low
    high = value if high is None else high
    return {"min": low, "p5": low, "p25": (low + value) / 2, "p50": value, "p75": value, "p95": high, "max": high}


def fingerprint(height=256, width=1600, extent=40.0, shares=(0.4, 0.1), area=2000.0, clean=0.3, empty=0.7, images=1000):
    classes = [
        ClassFingerprint(
            name=f"c{i}",
            image_share=s,
            images=int(s * images),
            area=_q(area, area / 10, area * 5),
            component=_q(area / 2, area / 20),
            extent=_q(extent, extent / 2),
            components_per_image=2.0,
        )
        for i, s in enumerate(shares)
    ]
    return Fingerprint(
        images=images,
        sizes={f"{height}x{width}": images},
        height=_q(height),
        width=_q(width),
        aspect_ratio=_q(width / height),
        channels={"1": images},
        intensity={"mean": 100.0, "std": 20.0},
        clean_share=clean,
        empty_pair_share=empty,
        classes=classes,
        near_duplicate_groups=0,
        near_duplicate_images=0,
    )


def test_strips_keep_their_scale_and_train_on_wide_crops():
    geo, _ = rules.geometry(fingerprint(256, 1600))
    assert geo.scale == 1.0
    assert geo.crop == (256, 512)  # 256 high, strips (aspect 6.25 >= 2.5): twice as wide
    assert geo.net_image == (256, 1600)


def test_coarser_halves_the_resolution_on_the_same_field_of_view():
    fp = fingerprint(256, 1600)  # 25th-percentile defect extent (20 + 40) / 2 = 30 px
    geo, _ = rules.geometry(fp)
    half, why = rules.coarser(geo, fp)
    assert (half.scale, half.crop, half.net_crop, half.net_image) == (0.5, (128, 256), (128, 256), (128, 800))
    assert "15.0 >= 6 px" in dict(why)["input scale"]
    quarter, _ = rules.coarser(half, fp)
    assert (quarter.scale, quarter.crop, quarter.net_image) == (0.25, (64, 128), (64, 416))  # 400 up to 416
    assert rules.coarser(quarter, fp) is None  # 30 px x 1/8 = 3.75 px < 6


def test_coarser_stops_at_small_defects_and_keeps_whole_images_whole():
    fp = fingerprint(256, 1600, extent=14)  # 25th percentile 10.5 px: 5.25 px at half
    assert rules.coarser(rules.geometry(fp)[0], fp) is None
    fp = fingerprint(200, 200, extent=30)
    half, why = rules.coarser(rules.geometry(fp)[0], fp)
    assert (half.scale, half.crop, half.net_crop) == (0.5, None, (128, 128))  # 100 px up to 128
    assert dict(why)["crop"] == "whole images"


def test_small_images_train_whole():
    geo, _ = rules.geometry(fingerprint(200, 200, extent=30))
    assert geo.crop is None and geo.scale == 1.0
    assert geo.net_crop == (224, 224)  # 200 rounded up to a multiple of 32


def test_large_photos_are_scaled_to_the_height_limit_unless_defects_would_vanish():
    # 1000 px high: 384/1000 = 0.384 -> 0.35 (down to a multiple of 0.05); defects of 40 px stay 14 px >= 12
    geo, _ = rules.geometry(fingerprint(1000, 1500, extent=80))
    assert geo.scale == 0.35
    # crops are cut from the scaled image (350x525 px), so they are given in its pixels: 256x256
    # (square: aspect 1.5), not 256/0.35 = 732 px of the photo
    assert geo.crop == geo.net_crop == (256, 256)
    assert geo.net_image == (352, 544)
    # defects whose 25th percentile is (20 + 10) / 2 = 15 px would shrink below 12 px at 0.384: 12/15 = 0.8
    geo, _ = rules.geometry(fingerprint(1000, 1500, extent=20))
    assert geo.scale == 0.8


def test_batch_is_the_largest_power_of_two_in_half_the_free_memory_capped_by_device():
    gib = 2**30
    assert rules.batch_size(100 * 2**20, 1 * gib, "cpu")[0] == 4  # 512 MiB / 100 MiB = 5 -> 4
    assert rules.batch_size(10 * 2**20, 16 * gib, "cpu")[0] == rules.CPU_MAX_BATCH
    assert rules.batch_size(10 * 2**20, 16 * gib, "cuda")[0] == rules.GPU_MAX_BATCH
    assert rules.batch_size(4 * gib, 1 * gib, "cuda")[0] == 1  # never below one


@pytest.mark.parametrize(
    "empty, expected",
    [(0.2, ["segment"]), (0.4, ["segment", "two_head"]), (0.75, ["segment", "classify", "two_head"])],
)
def test_families_follow_the_share_of_empty_pairs(empty, expected):
    assert rules.families(fingerprint(empty=empty))[0] == expected


def test_rare_classes_get_balanced_sampling_and_larger_pos_weight():
    sampler, weights, _ = rules.sampler_and_weights(fingerprint(shares=(0.4, 0.04), clean=0.1))
    assert sampler == "balanced"  # 0.04 / 0.4 = 0.1 < 0.25
    # pixel share ~ median area x image share: equal areas, so the ratio is 0.4/0.04 = 10 -> sqrt 3.16
    assert weights == [1.0, pytest.approx(3.16, abs=0.01)]
    assert rules.sampler_and_weights(fingerprint(shares=(0.4, 0.3), clean=0.1))[0] == "random"


def test_schedule_makes_whole_passes_when_they_fit():
    # 10 min = 600 s; a pass = 100 images x 0.5 s + 50 val x 0.2 s = 60 s -> 10 passes >= 8
    plan, _ = rules.schedule(10, train_images=100, val_images=50, batch=8, train_s=0.5, predict_s=0.2)
    assert (plan.epochs, plan.batches_per_epoch) == (10, None)
    assert plan.val_batches == 13  # 50 images in batches of 4


def test_schedule_shortens_epochs_when_passes_do_not_fit():
    # 10 min; 1000 images x 0.5 s = 500 s a pass -> 1 pass: 8 epochs of (75 s - 256 x 0.01 s) / 0.5 s = 144.9 images
    plan, _ = rules.schedule(10, train_images=1000, val_images=400, batch=8, train_s=0.5, predict_s=0.01)
    assert plan.epochs == rules.VALIDATIONS
    assert plan.batches_per_epoch == 18  # 144.9 images // 8
    assert plan.val_batches == 64  # at most 256 validation images, batches of 4


def test_validation_takes_at_most_a_fifth_of_the_time():
    # 600 s: 8 x 256 x 0.1 s = 205 s > 120 s -> 8 x 150 images (120 s); epochs of (75 - 15) / 0.5 = 120 images
    plan, why = rules.schedule(10, train_images=1000, val_images=400, batch=8, train_s=0.5, predict_s=0.1)
    assert (plan.epochs, plan.batches_per_epoch, plan.val_batches) == (8, 15, 38)
    assert "8 x 150 images" in why
    # slower still, 1 s an image: 64 images (the least), validated 3 times (the least): 192 s
    plan, why = rules.schedule(10, train_images=1000, val_images=400, batch=8, train_s=0.5, predict_s=1.0)
    assert (plan.epochs, plan.batches_per_epoch, plan.val_batches) == (3, 34, 16)  # (200 - 64) / 0.5 = 272 images
    assert rules.validation(600, 40, 1.0) == (40, 3)  # fewer images than the least: all of them


def test_flips_are_dropped_when_they_cost_too_much():
    assert rules.tta_views(0.1, 1000, 3600)[0] == "both"  # 300 s <= 540 s
    assert rules.tta_views(0.25, 1000, 3600)[0] == "hflip"  # 750 s > 540 s; 500 s fits
    assert rules.tta_views(1.0, 1000, 3600)[0] == "none"


def test_search_space_spans_the_defect_areas():
    areas, components, _ = rules.search_space(fingerprint(area=2000.0))
    assert areas[0] == 0
    assert areas[1] == 50  # a quarter of the 5th percentile (200 / 4)
    assert areas[-1] == 2000  # the largest median area
    # components up to the smallest class's 25th-percentile component, (100 + 1000) / 2 = 550, from 550 / 16
    assert components[0] == 0 and components[1] == 34 and components[-1] == 550


def test_folds_train_as_many_fold_models_as_get_enough_steps():
    fp = fingerprint(images=1000)
    # steps per fold model when n of k are trained: a fixed budget of 4,500 steps shared by n
    shared = lambda k, n: 4500 / n  # noqa: E731
    assert rules.folds(fp, shared)[:2] == (5, 4)  # 4500/4 = 1125 >= 1000; 4500/5 = 900 is not
    assert rules.folds(fp, lambda k, n: 2000 / n)[:2] == (5, 2)
    assert rules.folds(fp, lambda k, n: 10_000 / n)[:2] == (5, 5)
    k, trained, reason = rules.folds(fp, lambda k, n: 300 / n)
    assert (k, trained) == (5, 1) and "1 of 5 folds trained" in reason  # never none
    assert rules.folds(fingerprint(images=45), shared)[0] == 4  # 45 images: folds of >= 10 images
    assert rules.folds(fingerprint(images=30), shared)[0] == 3
