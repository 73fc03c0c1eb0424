import numpy as np
import pytest
from PIL import Image

from steelseg.files.annotations import AnnotationError
from steelseg.files.datasets import DatasetError, open_dataset, split_indices, write_class_names
from steelseg.files.images import ImageError


def _mask_folder(tmp_path, labels_per_image, size=(20, 30)):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i, labels in enumerate(labels_per_image):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(tmp_path / "images" / f"{i:03d}.jpg")
        Image.fromarray(labels.astype(np.uint8)).save(tmp_path / "masks" / f"{i:03d}.png")
    return tmp_path


def test_mask_folder_class_count_comes_from_the_labels(tmp_path):
    a = np.zeros((20, 30), np.uint8)
    a[2:5, 3:9] = 1
    b = np.zeros((20, 30), np.uint8)
    b[10:, :4] = 3
    dataset = open_dataset(_mask_folder(tmp_path, [a, b]))
    assert dataset.layout == "mask_folder" and dataset.class_names == ["1", "2", "3"]
    image, masks = dataset.load(1)
    assert image.shape == (20, 30) and masks.shape == (3, 20, 30)
    np.testing.assert_array_equal(masks[2], b == 3)
    assert not masks[:2].any()


def test_mask_folder_names_from_classes_json_and_unknown_label(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[0, 0] = 4
    root = _mask_folder(tmp_path, [labels])
    write_class_names(root, ["inclusion", "patches", "scratches"])
    dataset = open_dataset(root)
    assert dataset.num_classes == 3
    with pytest.raises(DatasetError, match=r"000.png: unknown class id 4 \(this dataset has 3 classes"):
        dataset.load(0)


def test_mask_folder_missing_and_wrong_size_mask(tmp_path):
    root = _mask_folder(tmp_path, [np.zeros((20, 30)), np.zeros((10, 30))])
    with pytest.raises(ImageError, match=r"001.png: label mask is 10x30, its image is 20x30"):
        open_dataset(root, class_names=["a"]).load(1)
    (root / "masks" / "000.png").unlink()
    with pytest.raises(DatasetError, match=r"000.png: label mask not found"):
        open_dataset(root)


def test_severstal_layout_with_clean_images(tmp_path):
    (tmp_path / "train_images").mkdir()
    for name in ["a.jpg", "b.jpg"]:
        Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "train_images" / name, format="PNG")
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\nb.jpg,2,1 3\n")
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "severstal" and dataset.image_ids == ["a.jpg", "b.jpg"]
    assert dataset.class_names == ["1", "2"]
    assert not dataset.load(0)[1].any()
    assert dataset.load(1)[1][1].sum() == 3


def test_severstal_layout_errors_name_the_row(tmp_path):
    (tmp_path / "train_images").mkdir()
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "train_images" / "a.jpg", format="PNG")
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 3\nghost.jpg,1,1 1\n")
    with pytest.raises(AnnotationError, match=r"train.csv:3: image ghost.jpg not found in"):
        open_dataset(tmp_path)
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,18 5\n")
    with pytest.raises(AnnotationError, match=r"train.csv:2: .* past the end of a 4x5 image"):
        open_dataset(tmp_path).load(0)
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,5,1 1\n")
    with pytest.raises(AnnotationError, match=r"train.csv:2: unknown class id 5"):
        open_dataset(tmp_path, class_names=["a", "b", "c", "d"])


def test_wrong_image_size_is_reported(tmp_path):
    (tmp_path / "train_images").mkdir()
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "train_images" / "a.jpg")
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    with pytest.raises(ImageError, match=r"a.jpg: image is 4x5 \(HxW\), expected 256x1600"):
        open_dataset(tmp_path, class_names=["1"], image_shape=(256, 1600)).load(0)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a dataset folder"):
        open_dataset(tmp_path)


def test_real_severstal_sample(severstal_mini):
    dataset = open_dataset(severstal_mini, class_names=["1", "2", "3", "4"])
    assert len(dataset) == 20
    present = np.zeros(4, int)
    for i in range(len(dataset)):
        image, masks = dataset.load(i)
        assert image.shape == (256, 1600)
        present += masks.any(axis=(1, 2))
    np.testing.assert_array_equal(present, [5, 3, 9, 2])  # the README's class counts


def test_real_neu_seg(neu_seg):
    dataset = open_dataset(neu_seg, class_names=["inclusion", "patches", "scratches"])
    assert dataset.layout == "mask_folder" and len(dataset) == 3630
    image, masks = dataset.load(0)
    assert image.shape == (200, 200) and masks.shape == (3, 200, 200) and masks.any()


def test_split_is_deterministic_and_disjoint():
    train, val = split_indices(10, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)
    np.testing.assert_array_equal(split_indices(10, 0.2, seed=3)[1], val)
    assert len(split_indices(2, 0.01, 0)[1]) == 1  # both sides non-empty


def test_a_class_subset_loads_only_those_channels(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[:5] = 1
    labels[10:] = 3
    dataset = open_dataset(_mask_folder(tmp_path, [labels]), class_names=["a", "b", "c"])
    only = dataset.select_classes([3, 1])
    assert only.class_names == ["c", "a"] and only.num_classes == 2
    np.testing.assert_array_equal(only.load(0)[1], dataset.load(0)[1][[2, 0]])
    np.testing.assert_array_equal(only.class_presence(), [[True, True]])
    assert only.subset([0]).class_names == ["c", "a"]
    with pytest.raises(DatasetError, match="class id 4 not in 1..3"):
        dataset.select_classes([4])


def test_missing_masks_stop_the_opening_at_the_first_with_a_count_of_the_rest(tmp_path):
    root = _mask_folder(tmp_path, [np.zeros((20, 30))] * 4)
    for stem in ["001", "002", "003"]:
        (root / "masks" / f"{stem}.png").unlink()
    with pytest.raises(DatasetError) as caught:
        open_dataset(root, class_names=["a"])
    mask, image = root / "masks" / "001.png", root / "images" / "001.jpg"
    assert str(caught.value) == f"{mask}: label mask not found for image {image} (and 2 more)"
    skipped = open_dataset(root, class_names=["a"], skip_bad=True)
    assert skipped.image_ids == ["000.jpg"] and sorted(skipped.skipped_ids) == ["001.jpg", "002.jpg", "003.jpg"]


def test_names_that_moved_out_of_datasets_still_import_from_it():
    # the mask-folder checks and Skip have modules of their own; older imports keep working
    from steelseg.files import datasets, mask_folders, skips

    assert datasets.Skip is skips.Skip
    assert (datasets.MASK_NOT_FOUND, datasets.MAX_INFERRED_CLASSES) == ("label mask not found", 32)
    assert datasets.MAX_INFERRED_CLASSES is mask_folders.MAX_INFERRED_CLASSES
