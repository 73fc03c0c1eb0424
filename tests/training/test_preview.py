"""The augmentation preview: a deterministic grid of labelled tiles."""

import numpy as np
import pytest
from PIL import Image

from steelseg.config import AugmentStep, DataConfig
from steelseg.files.datasets import open_dataset
from steelseg.files.overlay import LABEL_HEIGHT
from steelseg.training.preview import GAP, sample_tile, tile_grid, write_augment_preview

CLASSES = ["pits", "crazing", "scratches", "blotches"]


@pytest.fixture
def dataset(tmp_path):
    """Three 40 x 100 images in the mask_folder layout, two with a defect."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        labels = np.zeros((40, 100), np.uint8)
        if i:
            labels[10:30, 20 * i : 20 * i + 30] = i + 1
        Image.fromarray(rng.integers(40, 220, (40, 100), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(labels).save(root / "masks" / f"{i}.png")
    return open_dataset(root, "mask_folder", CLASSES)


def _config() -> DataConfig:
    steps = [
        AugmentStep(name=n) for n in ("hflip", "vflip", "brightness_contrast", "circular_shift", "defect_blackout")
    ]
    return DataConfig(crop_height=32, crop_width=64, augment=steps)


def test_preview_is_a_grid_of_crop_sized_tiles_and_repeats_per_seed(dataset, tmp_path):
    out = write_augment_preview(dataset, _config(), tmp_path / "out" / "preview.png", n=4, seed=0)
    assert out == tmp_path / "out" / "preview.png"
    tile_h, tile_w = LABEL_HEIGHT + 32, 64
    with Image.open(out) as picture:
        assert picture.size == (2 * tile_w + GAP, 2 * tile_h + GAP)  # 4 wide tiles: 2 x 2
        assert picture.mode == "RGB"
    again = write_augment_preview(dataset, _config(), tmp_path / "again.png", n=4, seed=0)
    other = write_augment_preview(dataset, _config(), tmp_path / "other.png", n=4, seed=1)
    assert again.read_bytes() == out.read_bytes()
    assert other.read_bytes() != out.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["preview.png"]  # no temp left


def test_more_samples_than_images_and_bad_n(dataset, tmp_path):
    out = write_augment_preview(dataset, _config(), tmp_path / "p.png", n=5, seed=0)
    with Image.open(out) as picture:  # 5 tiles: 2 columns, 3 rows
        assert picture.size == (2 * 64 + GAP, 3 * (LABEL_HEIGHT + 32) + 2 * GAP)
    with pytest.raises(ValueError, match="n must"):
        write_augment_preview(dataset, _config(), tmp_path / "q.png", n=0)


def test_tile_shows_the_overlay_under_a_label():
    image = np.full((32, 64), 100, np.uint8)
    masks = np.zeros((4, 32, 64), bool)
    masks[2, 8:24, 8:40] = True
    tile = sample_tile(image, masks, CLASSES)
    clean = sample_tile(image, np.zeros_like(masks), CLASSES)
    assert tile.shape == clean.shape == (LABEL_HEIGHT + 32, 64, 3)
    assert not np.array_equal(tile[:LABEL_HEIGHT], clean[:LABEL_HEIGHT])  # different labels
    assert (clean[LABEL_HEIGHT:] == 100).all() and (tile[LABEL_HEIGHT + 16, 20] != 100).any()


def test_tile_grid_places_tiles_row_by_row_and_pads_smaller_ones():
    tiles = [np.full((20, 20, 3), v, np.uint8) for v in (1, 2, 3)] + [np.full((12, 20, 3), 4, np.uint8)]
    grid = tile_grid(tiles, gap=2)  # square tiles: 2 x 2
    assert grid.shape == (42, 42, 3)
    assert (grid[:20, :20] == 1).all() and (grid[:20, 22:] == 2).all() and (grid[22:, :20] == 3).all()
    assert (grid[22:34, 22:] == 4).all() and (grid[34:, 22:] == 255).all() and (grid[20:22] == 255).all()
