"""The dataset fingerprint on a hand-made mask folder whose every figure is counted by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from steelseg.files.datasets import open_dataset, write_class_names
from steelseg.pipeline.fingerprint import (
    FINGERPRINT,
    component_sizes,
    fingerprint_dataset,
    histogram_stats,
    write_fingerprint,
)


def _noise(seed: int, shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def hand_made(tmp_path):
    """Four images: a (20x30; class 1: a 3x3 and a separate 2x2 component), b (20x30; class 2:
    a 4x5 block; stored as RGB with equal bands), c (20x40, clean), d (a copy of a's pixels,
    clean: its near-duplicate)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    a, b, c = _noise(1, (20, 30)), _noise(2, (20, 30)), _noise(3, (20, 40))
    labels = {name: np.zeros(image.shape, np.uint8) for name, image in zip("abcd", (a, b, c, a))}
    labels["a"][2:5, 2:5] = 1
    labels["a"][10:12, 10:12] = 1
    labels["b"][5:9, 20:25] = 2
    for name, image in zip("abcd", (a, b, c, a)):
        picture = Image.fromarray(np.stack([image] * 3, -1)) if name == "b" else Image.fromarray(image)
        picture.save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(labels[name]).save(tmp_path / "masks" / f"{name}.png")
    write_class_names(tmp_path, ["pits", "scratches"])
    return tmp_path, (a, b, c, a)


def test_every_figure_matches_the_hand_count(hand_made):
    root, images = hand_made
    fp = fingerprint_dataset(open_dataset(root), progress=False)
    assert fp.images == 4
    assert fp.sizes == {"20x30": 3, "20x40": 1}
    assert (fp.height["min"], fp.height["max"]) == (20, 20)
    assert (fp.width["min"], fp.width["p50"], fp.width["max"]) == (30, 30, 40)
    assert (fp.aspect_ratio["min"], fp.aspect_ratio["p50"], fp.aspect_ratio["max"]) == (1.5, 1.5, 2.0)
    assert fp.channels == {"1": 3, "3": 1}
    assert fp.clean_share == 0.5  # c and d
    assert fp.empty_pair_share == 0.75  # 2 of 8 (image, class) pairs hold a defect
    pits, scratches = fp.classes
    assert (pits.name, pits.images, pits.image_share) == ("pits", 1, 0.25)
    assert (pits.area["min"], pits.area["max"]) == (13, 13)  # 9 + 4 pixels
    assert (pits.component["min"], pits.component["max"], pits.components_per_image) == (4, 9, 2.0)
    assert (scratches.area["p50"], scratches.component["p50"], scratches.components_per_image) == (20, 20, 1.0)
    assert (pits.extent["min"], pits.extent["max"], scratches.extent["p50"]) == (2, 3, 5)  # 2x2, 3x3; 4 rows x 5 cols
    assert (fp.near_duplicate_groups, fp.near_duplicate_images) == (1, 2)  # a and d
    pixels = np.concatenate([image.ravel() for image in images]).astype(np.float64)
    assert fp.intensity["mean"] == pytest.approx(pixels.mean())
    assert fp.intensity["std"] == pytest.approx(pixels.std())


def test_a_class_never_present_has_no_quantiles(hand_made):
    root, _ = hand_made
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "masks" / "b.png")  # b: no scratches now
    fp = fingerprint_dataset(open_dataset(root), progress=False)
    scratches = fp.classes[1]
    assert (scratches.images, scratches.area, scratches.component, scratches.components_per_image) == (
        0,
        None,
        None,
        None,
    )
    assert fp.clean_share == 0.75


@pytest.mark.parametrize(
    "mask, sizes",
    [
        ("empty", []),
        ("corner pixel", [1]),
        ("diagonal touch is one component (8-connected)", [2]),
        ("two apart", [1, 1]),
    ],
)
def test_component_sizes(mask, sizes):
    grid = np.zeros((4, 4), bool)
    if mask == "corner pixel":
        grid[3, 3] = True
    elif mask.startswith("diagonal"):
        grid[0, 0] = grid[1, 1] = True
    elif mask == "two apart":
        grid[0, 0] = grid[2, 2] = True
    assert sorted(component_sizes(grid).tolist()) == sizes


def test_gray_level_quantiles_are_the_lowest_level_reaching_the_share():
    histogram = np.zeros(256, np.int64)
    histogram[[10, 20, 30, 40]] = 1  # four pixels
    stats = histogram_stats(histogram)
    assert (stats["p5"], stats["p25"], stats["p50"], stats["p75"], stats["p95"]) == (10, 10, 20, 30, 40)
    assert stats["mean"] == 25


def test_images_too_small_to_hash_are_no_near_duplicates(tmp_path):
    # two different 4x4 images: too small for the 8x8 hash grid, so never grouped together
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name, seed in (("a", 1), ("b", 2)):
        Image.fromarray(_noise(seed, (4, 4))).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / f"{name}.png")
    write_class_names(tmp_path, ["pits"])
    fp = fingerprint_dataset(open_dataset(tmp_path), progress=False)
    assert (fp.images, fp.near_duplicate_groups, fp.near_duplicate_images) == (2, 0, 0)


def test_written_json_reads_back(hand_made, tmp_path):
    root, _ = hand_made
    fp = fingerprint_dataset(open_dataset(root), progress=False)
    path = write_fingerprint(tmp_path / FINGERPRINT, fp)
    assert json.loads(path.read_text()) == fp.model_dump()
