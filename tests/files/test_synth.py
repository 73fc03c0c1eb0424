import numpy as np

from steelseg.files import synth
from steelseg.files.datasets import open_dataset


def test_same_seed_same_strip_other_seed_other_strip():
    a, b = synth.make_strip(7, 3), synth.make_strip(7, 3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, synth.make_strip(8, 3).image)


def test_strips_look_like_the_competition_data():
    strips = [synth.make_strip(0, i) for i in range(60)]
    assert all(s.image.shape == (256, 1600) and s.image.dtype == np.uint8 for s in strips)
    assert all(s.masks.shape == (4, 256, 1600) for s in strips)
    # masks of different classes never overlap
    assert all(s.masks.sum(axis=0).max() <= 1 for s in strips)
    present = np.array([s.masks.any(axis=(1, 2)) for s in strips])
    clean = ~present.any(axis=1)
    assert 0.3 < clean.mean() < 0.7  # about half the strips are clean
    counts = present.sum(axis=0)
    assert (counts > 0).all() and counts.argmax() == 2  # every class occurs, scratches most
    assert (present.sum(axis=1) >= 2).any()  # several classes on one strip happen
    # a black off-sheet band at one end happens, and no defect lies in it
    dark_ends = [s for s in strips if s.image[:, :20].mean() < 25 or s.image[:, -20:].mean() < 25]
    assert dark_ends
    for s in dark_ends:
        end = slice(0, 20) if s.image[:, :20].mean() < 25 else slice(-20, None)
        assert not s.masks[:, :, end].any()


def test_defects_change_the_pixels_under_their_masks():
    for i in range(40):
        strip = synth.make_strip(1, i)
        for mask in strip.masks:
            if mask.sum() > 200:
                inside = strip.image[mask].astype(float)
                ring = strip.image[~mask].astype(float)
                assert abs(inside.mean() - ring.mean()) > 2 or inside.std() > ring.std() * 1.2


def test_written_dataset_loads_back_identically(tmp_path):
    synth.write_dataset(tmp_path, 6, seed=2, progress=False)
    dataset = open_dataset(tmp_path)
    assert dataset.class_names == synth.CLASS_NAMES and len(dataset) == 6
    for i in range(6):
        image, masks = dataset.load(i)
        strip = synth.make_strip(2, i)
        np.testing.assert_array_equal(masks, strip.masks)
        assert np.abs(image.astype(int) - strip.image).mean() < 3  # JPEG, quality 95
    rows = (tmp_path / "train.csv").read_text().splitlines()[1:]
    assert all(row.split(",")[2] for row in rows)  # like train.csv: only non-empty masks


def test_any_strip_size():
    strip = synth.make_strip(0, 1, height=64, width=300)
    assert strip.image.shape == (64, 300) and strip.masks.shape == (4, 64, 300)
