import io
import shutil

import numpy as np
import pytest
from PIL import Image

from steelseg.files import synth
from steelseg.files.datasets import open_dataset
from steelseg.files.folds import (
    FoldError,
    FoldTable,
    assign_folds,
    group_near_duplicates,
    hamming,
    make_folds,
    perceptual_hash,
    read_folds,
    split_by_fold,
    summary,
    write_folds,
)


def _strip(index: int, seed: int = 3) -> np.ndarray:
    return synth.make_strip(seed, index, height=128, width=800).image


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


# --- hashing -------------------------------------------------------------------------------


def test_hamming_counts_differing_bits_and_broadcasts():
    assert hamming(0, 0b1011) == 3
    assert hamming(0, np.uint64(2**64 - 1)) == 64
    a = np.array([0, 1, 3], dtype=np.uint64)
    np.testing.assert_array_equal(hamming(a[:, None], a[None]), [[0, 1, 2], [1, 0, 1], [2, 1, 0]])


def test_hash_same_image_close_different_image_far():
    image, other = _strip(0), _strip(1)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    h = perceptual_hash(image)
    assert isinstance(h, np.uint64)
    assert perceptual_hash(image.copy()) == h
    assert hamming(h, perceptual_hash(noisy)) <= 2
    assert hamming(h, perceptual_hash(_jpeg(image, 70))) <= 2
    assert hamming(h, perceptual_hash(other)) >= 12


def test_hash_ignores_lighting_but_flat_images_hash_to_zero():
    image = _strip(2).astype(float)
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    # A brighter middle and a vertical tilt: the lighting every strip of a camera shares.
    lit = np.clip(image * 0.9 + 30 * np.sin(np.pi * xx / image.shape[1]) + 0.1 * yy, 0, 255).astype(np.uint8)
    assert hamming(perceptual_hash(image.astype(np.uint8)), perceptual_hash(lit)) <= 2
    assert perceptual_hash(np.zeros((64, 320), np.uint8)) == 0
    assert perceptual_hash(np.full((64, 320), 7, np.uint8)) == 0


def test_hash_rejects_bad_shapes():
    with pytest.raises(ValueError, match="fit in 64 bits"):
        perceptual_hash(np.zeros((64, 320), np.uint8), rows=8, cols=9)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        perceptual_hash(np.zeros((3, 64, 320), np.uint8))


# --- grouping ------------------------------------------------------------------------------


def test_groups_are_transitive_and_numbered_by_first_image():
    far = np.uint64(0xFFFF_FFFF_0000_0000)
    # a-b and b-c are 4 bits apart, a-c 8: a chain, one group at max_distance 4.
    hashes = np.array([far, 0b0, 0b1111, 0b1111_1111, 0b0], dtype=np.uint64)
    np.testing.assert_array_equal(group_near_duplicates(hashes, 4), [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(group_near_duplicates(hashes, 3), [0, 1, 2, 3, 1])
    np.testing.assert_array_equal(group_near_duplicates(hashes, 0), [0, 1, 2, 3, 1])


def _components_by_search(hashes: np.ndarray, max_distance: int) -> list[set[int]]:
    near = hamming(hashes[:, None], hashes[None]) <= max_distance
    seen, components = set(), []
    for start in range(len(hashes)):
        if start in seen:
            continue
        stack, component = [start], set()
        while stack:
            node = stack.pop()
            if node not in component:
                component.add(node)
                stack.extend(np.flatnonzero(near[node]).tolist())
        seen |= component
        components.append(component)
    return components


def test_groups_match_a_graph_search_in_any_chunking():
    rng = np.random.default_rng(5)
    centres = rng.integers(0, 2**63, 12, dtype=np.uint64)
    flips = [np.uint64(1) << np.uint64(bit) for bit in range(64)]
    hashes = [c ^ flips[rng.integers(64)] ^ flips[rng.integers(64)] for c in centres[rng.integers(0, 12, 150)]]
    hashes = np.array(hashes, dtype=np.uint64)
    expected = sorted(sorted(c) for c in _components_by_search(hashes, 3))
    for chunk in (7, 1024):
        groups = group_near_duplicates(hashes, 3, chunk=chunk)
        found = sorted(sorted(np.flatnonzero(groups == g).tolist()) for g in np.unique(groups))
        assert found == expected
    assert group_near_duplicates(np.array([], np.uint64), 4).shape == (0,)


# --- fold assignment -------------------------------------------------------------------


def _single_class_presence(counts: list[int], num_classes: int = 4) -> np.ndarray:
    """Rows with one class each (class num_classes = clean), counts[c] of class c, shuffled."""
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(0).shuffle(labels)
    return labels[:, None] == np.arange(num_classes)[None]


def test_folds_balance_each_class_within_one():
    presence = _single_class_presence([23, 17, 12, 9, 40])[:, :4]  # 5th label: no defect
    folds = assign_folds(presence, np.arange(len(presence)), k=5, seed=0)
    per_class = np.array([presence[folds == f].sum(axis=0) for f in range(5)])
    clean = np.array([(~presence[folds == f].any(axis=1)).sum() for f in range(5)])
    assert (per_class.max(axis=0) - per_class.min(axis=0) <= 1).all()
    assert clean.max() - clean.min() <= 1
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 101


def test_folds_balance_each_class_presence_signature_within_one():
    rng = np.random.default_rng(3)
    presence = rng.random((300, 4)) < [0.2, 0.1, 0.5, 0.15]  # images holding 0 to 4 classes
    folds = assign_folds(presence, np.arange(300), k=5, seed=0)
    _, signature = np.unique(presence, axis=0, return_inverse=True)
    per_signature = np.array(
        [np.bincount(signature.ravel()[folds == f], minlength=signature.max() + 1) for f in range(5)]
    )
    assert (per_signature.max(axis=0) - per_signature.min(axis=0) <= 1).all()
    # A class adds up several signatures' leftovers: the class tie-break keeps it near even
    # (without it this example spreads by 3).
    per_class = np.array([presence[folds == f].sum(axis=0) for f in range(5)])
    assert (per_class.max(axis=0) - per_class.min(axis=0) <= 2).all()


def test_no_group_spans_two_folds_and_sizes_stay_close():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 150, 400)
    presence = rng.random((400, 4)) < [0.1, 0.05, 0.4, 0.1]
    folds = assign_folds(presence, groups, k=5, seed=3)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= np.bincount(groups).max()
    per_class = np.array([presence[folds == f].sum(axis=0) for f in range(5)])
    assert (per_class.max(axis=0) - per_class.min(axis=0) <= 4).all()


def test_large_groups_go_first():
    # One group of 5 and five singletons into 2 folds: only 5 + 5 is balanced.
    groups = np.array([0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
    folds = assign_folds(np.zeros((10, 2), bool), groups, k=2, seed=0)
    assert len(set(folds[:5])) == 1 and set(folds[5:]) == {1 - folds[0]}


def test_folds_are_deterministic_per_seed():
    presence = _single_class_presence([30, 20, 10, 5, 35])
    groups = np.arange(100) // 2
    a = assign_folds(presence, groups, k=4, seed=7)
    np.testing.assert_array_equal(a, assign_folds(presence, groups, k=4, seed=7))
    assert not np.array_equal(a, assign_folds(presence, groups, k=4, seed=8))
    assert set(a.tolist()) == {0, 1, 2, 3}


def test_k_must_fit_the_groups():
    presence = np.zeros((6, 4), bool)
    groups = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="k must be between 2 and the number of groups \\(3\\), got 1"):
        assign_folds(presence, groups, k=1, seed=0)
    with pytest.raises(ValueError, match="got 4"):
        assign_folds(presence, groups, k=4, seed=0)
    assert sorted(assign_folds(presence, groups, k=3, seed=0)[::2].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="presence must be"):
        assign_folds(presence[:5], groups, k=2, seed=0)


def test_summary_counts_images_and_classes_per_fold():
    presence = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [0, 0]], bool)
    text = summary(presence, np.array([0, 0, 1, 1, 1]), ["pits", "lines"])
    lines = [line.split() for line in text.splitlines()]
    assert lines == [
        ["fold", "images", "pits", "lines", "none"],
        ["0", "2", "2", "1", "0"],
        ["1", "3", "0", "1", "2"],
        ["all", "5", "2", "2", "2"],
    ]


# --- files ---------------------------------------------------------------------------------


def _table(ids: list[str], folds: list[int], groups: list[int]) -> FoldTable:
    n = len(ids)
    return FoldTable(ids, np.array(folds), np.array(groups), np.zeros((n, 1), bool), np.zeros(n, np.uint64), ["1"])


def test_write_and_read_round_trip(tmp_path):
    path = tmp_path / "sub" / "folds.csv"
    write_folds(path, _table(["a.jpg", "b.jpg", "c.jpg"], [1, 0, 1], [0, 1, 0]))
    assert path.read_text() == "ImageId,Fold,Group\na.jpg,1,0\nb.jpg,0,1\nc.jpg,1,0\n"
    assert read_folds(path) == {"a.jpg": 1, "b.jpg": 0, "c.jpg": 1}
    assert [p.name for p in path.parent.iterdir()] == ["folds.csv"]  # no temporary left behind


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("", 1, "expected a header with ImageId and Fold"),
        ("ImageId,Group\na.jpg,0\n", 1, "expected a header with ImageId and Fold"),
        ("ImageId,Fold,Group\na.jpg,0\n", 2, "expected 3 columns, got 2"),
        ("ImageId,Fold,Group\na.jpg,0,0\nb.jpg,one,1\n", 3, "fold 'one' of image b.jpg is not an integer"),
        ("ImageId,Fold,Group\na.jpg,1_0,0\n", 2, "fold '1_0' of image a.jpg is not an integer"),
        ("ImageId,Fold,Group\na.jpg,-1,0\n", 2, "fold -1 of image a.jpg is negative"),
        ("ImageId,Fold,Group\n,0,0\n", 2, "missing image id"),
        ("ImageId,Fold,Group\na.jpg,0,0\n\na.jpg,1,0\n", 4, r"duplicate image a.jpg \(first at line 2\)"),
    ],
)
def test_malformed_folds_file_names_file_and_line(tmp_path, text, where, message):
    path = tmp_path / "folds.csv"
    path.write_text(text)
    with pytest.raises(FoldError, match=f"folds.csv:{where}: {message}"):
        read_folds(path)


def test_missing_folds_file(tmp_path):
    with pytest.raises(FoldError, match="nope.csv: folds file not found"):
        read_folds(tmp_path / "nope.csv")


def test_split_by_fold():
    folds = {"a": 0, "b": 1, "c": 0, "d": 2}
    train, val = split_by_fold(["a", "b", "c", "d"], folds, 0)
    assert train.tolist() == [1, 3] and val.tolist() == [0, 2]
    with pytest.raises(FoldError, match=r"image e has no fold \(and 1 more\)"):
        split_by_fold(["a", "e", "f"], folds, 0)
    with pytest.raises(FoldError, match=r"fold 5 not found; folds are \[0, 1, 2\]"):
        split_by_fold(["a"], folds, 5)


# --- end to end ----------------------------------------------------------------------------


def test_make_folds_keeps_a_near_duplicate_with_its_original(tmp_path):
    root = synth.write_dataset(tmp_path / "data", 12, seed=0, height=64, width=320, progress=False)
    original = "synth_0_00004.jpg"
    # An exact copy, and a re-saved slightly noisy one, each with a mask that disagrees with
    # the original's, as happens in Severstal.
    shutil.copy(root / "train_images" / original, root / "train_images" / "copy.jpg")
    image = np.asarray(Image.open(root / "train_images" / original))
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(root / "train_images" / "noisy.jpg", quality=85)
    with open(root / "train.csv", "a") as handle:
        handle.write("copy.jpg,2,1 40\nnoisy.jpg,4,1 40\n")

    dataset = open_dataset(root)
    table = make_folds(dataset, k=3, seed=0, progress=False)
    ids = table.image_ids
    same = [ids.index(original), ids.index("copy.jpg"), ids.index("noisy.jpg")]
    assert len(set(table.groups[same].tolist())) == 1 and len(set(table.folds[same].tolist())) == 1
    assert len(np.unique(table.groups)) == 12  # no other image grouped
    assert table.presence[same[1], 1] and table.presence[same[2], 3]
    truth = np.array([dataset.load(i)[1].any(axis=(1, 2)) for i in range(len(dataset))])
    np.testing.assert_array_equal(table.presence, truth)
    assert sorted(set(table.folds.tolist())) == [0, 1, 2]
    assert "14 images in 12 groups; 3 images share a group" in table.summary()

    write_folds(tmp_path / "folds.csv", table)
    assert read_folds(tmp_path / "folds.csv") == dict(zip(ids, table.folds.tolist()))


def test_make_folds_on_mask_folder_reads_presence_from_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        Image.fromarray(_strip(i)[:64, :320]).save(tmp_path / "images" / f"{i}.png")
        labels = np.zeros((64, 320), np.uint8)
        labels[:5, :5] = i  # image i holds class i (0: none)
        Image.fromarray(labels).save(tmp_path / "masks" / f"{i}.png")
    dataset = open_dataset(tmp_path, class_names=["a", "b", "c"])
    table = make_folds(dataset, k=2, seed=0, progress=False)
    np.testing.assert_array_equal(table.presence, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert len(set(table.groups.tolist())) == 4
    with pytest.raises(
        FoldError, match="cannot make 5 folds of 4 images: k must be between 2 and the number of groups"
    ):
        make_folds(dataset, k=5, progress=False)
    with pytest.raises(FoldError, match="k must be at least 2, got 1"):
        make_folds(dataset, k=1, progress=False)


def test_a_chain_of_similar_photos_is_not_one_giant_group(tmp_path, monkeypatch):
    # Photos of one scene (BSData: a fixed camera on one spindle) differ from the next by a bit or
    # two, so at 4 bits they chain transitively into one group of most of the data set, and one
    # fold would hold it all. Here image i hashes to i ones: each one bit from the next.
    from steelseg.files import folds as folds_module

    root = synth.write_dataset(tmp_path / "data", 12, seed=0, height=64, width=320, progress=False)
    dataset = open_dataset(root)
    chain = iter(np.uint64((1 << i) - 1) for i in range(12))
    monkeypatch.setattr(folds_module, "perceptual_hash", lambda _image: next(chain))
    table = make_folds(dataset, k=3, seed=0, progress=False)
    assert len(np.unique(table.groups)) == 12  # at 0 bits no two chain; at 1 bit all 12 would
    assert np.bincount(table.folds).max() <= 5  # not 12 in one fold
    assert "within 0 bits, not 4" in table.summary()
