"""Data of any size: a mask-folder dataset whose images all differ in size (some smaller than
the training crop, some smaller than the network's 32-px stride) and that has 6 classes (more
than the 4 channels OpenCV resizes at once) trains, validates every image, and writes
out-of-fold files that match the labels; with random crops and with whole images."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from steelseg.config import load_config
from steelseg.core.preprocess import resize_masks, scaled_shape
from steelseg.files import rundir
from steelseg.files.datasets import open_dataset
from steelseg.training.data import PadToLargest, SameShapeBatches, TorchSegmentationData, loaders
from steelseg.training.fit import train
from steelseg.training.oof import load_oof, oof_entries

NUM_CLASSES = 6
OOF_SCALE = 0.5
# (H, W) of each image, by fold: fold 0 is validated on. Every size differs except the two
# 64x48 validation images, which SameShapeBatches must put in one batch. The crop is 32x64.
TRAIN_SIZES = [(20, 28), (40, 90), (50, 50), (70, 130), (31, 45)]  # 20x28, 31x45: below 32 px
VAL_SIZES = [(24, 30), (33, 200), (64, 48), (96, 64), (64, 48), (80, 100)]  # 24x30: below 32 px

TINY = [
    "model.encoder_name=tu-test_resnet",
    "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
    "data.batch_size=4",  # validation batches hold 2
    "data.crops_per_image=2",
    "train.epochs=1",
    "train.precision=32-true",
    f"train.oof_scale={OOF_SCALE}",
    "data.fold=0",
]
CROPS = {
    "crops": ["data.crop_height=32", "data.crop_width=64"],
    "whole": ["data.crop_height=null", "data.crop_width=null"],
}


def _labels(index: int, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 class ids: three rectangles of classes that cycle through 1..6."""
    rng = np.random.default_rng(index)
    labels = np.zeros((height, width), np.uint8)
    for k in range(3):
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        bottom, right = top + rng.integers(3, max(4, height // 2)), left + rng.integers(3, max(4, width // 2))
        labels[top:bottom, left:right] = (index + 2 * k) % NUM_CLASSES + 1
    return labels


def _write_dataset(root) -> dict[str, tuple[int, int]]:
    """images/*.png + masks/*.png + folds.csv; returns {image id: (H, W)} of the validation fold."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    val = {}
    with open(root / "folds.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "Fold"])
        for index, ((height, width), fold) in enumerate([(s, 1) for s in TRAIN_SIZES] + [(s, 0) for s in VAL_SIZES]):
            image_id = f"img{index:02d}-{height}x{width}.png"
            labels = _labels(index, height, width)
            image = np.random.default_rng(100 + index).integers(90, 140, (height, width)).astype(np.uint8)
            image[labels > 0] = 30 + 35 * labels[labels > 0]  # never 0: padding is the only black
            Image.fromarray(image).save(root / "images" / image_id)
            Image.fromarray(labels).save(root / "masks" / image_id)
            writer.writerow([image_id, fold])
            if fold == 0:
                val[image_id] = (height, width)
    return val


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("any-size") / "data"
    val = _write_dataset(root)
    labels = np.unique(np.concatenate([np.unique(np.asarray(Image.open(p))) for p in (root / "masks").iterdir()]))
    assert labels.tolist() == list(range(NUM_CLASSES + 1))  # every class is present somewhere
    return root, val


@pytest.fixture(scope="module", params=sorted(CROPS))
def run(request, dataset, tmp_path_factory):
    root, val = dataset
    config = load_config(None, TINY + CROPS[request.param] + [f"data.root={root}", f"data.folds={root / 'folds.csv'}"])
    out = tmp_path_factory.mktemp(f"run-{request.param}") / "run"
    train(config, out, progress=False)
    return out, root, val, config


def test_the_run_finishes_with_every_class(run):
    out, *_ = run
    assert (out / rundir.FINISHED).exists() and (out / rundir.SUMMARY).is_file()
    summary = rundir.load_summary(out)
    assert summary.class_names == [str(c) for c in range(1, NUM_CLASSES + 1)]  # found in the labels
    assert len(summary.val_class_dice_tuned) == NUM_CLASSES
    rows = (out / rundir.METRICS).read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[0] == "1"
    assert summary.train_image_shapes.min == (20, 28) and summary.train_image_shapes.max == (70, 130)


def test_out_of_fold_entries_match_the_labels_at_their_scale(run):
    out, root, val, _ = run
    oof = load_oof(out)
    entries = {image_id: (probs, masks) for image_id, probs, masks in oof_entries(oof)}
    assert sorted(entries) == sorted(val)  # one entry per validation image
    assert {i: tuple(s) for i, s in zip(oof["image_ids"], oof["image_shapes"])} == val
    for image_id, (probs, masks) in entries.items():
        expected = scaled_shape(val[image_id], OOF_SCALE)
        assert probs.shape == masks.shape == (NUM_CLASSES, *expected), image_id
        assert probs.dtype == np.float16 and 0 <= probs.min() and probs.max() <= 1
        labels = np.asarray(Image.open(root / "masks" / image_id))
        truth = labels[None] == np.arange(1, NUM_CLASSES + 1)[:, None, None]  # read here, not by datasets.py
        np.testing.assert_array_equal(masks, resize_masks(truth, OOF_SCALE), err_msg=image_id)
        assert masks.any(), image_id  # the comparison is not empty against empty


def test_validation_batches_are_whole_images_of_one_size(run):
    out, root, val, config = run
    dataset = open_dataset(root)
    val_index = [dataset.image_ids.index(image_id) for image_id in val]
    train_index = [i for i in range(len(dataset)) if i not in val_index]
    _, val_loader = loaders(config, dataset.subset(train_index), dataset.subset(val_index))
    seen = []
    for x, y in val_loader:
        assert x.shape[-2:] == y.shape[-2:]  # whole images, never padded or cropped
        seen += [tuple(x.shape[-2:])] * len(x)
    assert sorted(seen) == sorted(val.values())  # every validation image, once
    assert len(val_loader) == len(val) - 1  # the two 64x48 images share a batch


def test_training_items_below_the_crop_are_padded_not_lost(dataset):
    root, _ = dataset
    config = load_config(None, TINY + CROPS["crops"] + [f"data.root={root}"])
    source = open_dataset(root)
    small = source.image_ids.index("img00-20x28.png")  # smaller than the 32x64 crop both ways
    items = TorchSegmentationData(source.subset([small]), config.model, config.data)
    x, y = items[0]
    assert x.shape == (1, 32, 64) and y.shape == (NUM_CLASSES, 32, 64)
    black = -config.model.input_mean / config.model.input_std
    assert int((~torch.isclose(x[0], torch.tensor(black))).sum()) == 20 * 28  # the whole image is in the crop
    labels = np.asarray(Image.open(root / "masks" / "img00-20x28.png"))
    counts = [int((labels == c).sum()) for c in range(1, NUM_CLASSES + 1)]
    assert y.sum(dim=(1, 2)).int().tolist() == counts  # and every labelled pixel with it


# --- the two collation helpers, by hand -----------------------------------------------------


@pytest.mark.parametrize(
    "shapes, batch_size, expected",
    [
        pytest.param([], 2, [], id="no images"),
        pytest.param([(4, 4)] * 5, 2, [[0, 1], [2, 3], [4]], id="one size, last batch short"),
        pytest.param(
            [(4, 4), (8, 4), (4, 4), (8, 4), (4, 8)], 2, [[0, 2], [1, 3], [4]], id="grouped, first seen first"
        ),
        pytest.param([(4, 8), (8, 4)], 4, [[0], [1]], id="transposed sizes differ"),
        pytest.param([(2, 2), (3, 3), (2, 2), (2, 2)], 1, [[0], [2], [3], [1]], id="batch of one"),
    ],
)
def test_same_shape_batches(shapes, batch_size, expected):
    batches = SameShapeBatches(shapes, batch_size)
    assert list(batches) == expected and len(batches) == len(expected)


def test_pad_to_largest_pads_images_with_black_and_masks_with_background():
    wide = (torch.full((1, 2, 3), 5.0), torch.ones((2, 2, 3)))  # (in_channels, H, W), (C, H, W)
    tall = (torch.full((1, 3, 1), 7.0), torch.ones((2, 3, 1)))
    xs, ys = PadToLargest(black=-2.0)([wide, tall])
    assert xs.shape == (2, 1, 3, 3) and ys.shape == (2, 2, 3, 3)
    expected_x = torch.tensor(
        [
            [[5.0, 5.0, 5.0], [5.0, 5.0, 5.0], [-2.0, -2.0, -2.0]],
            [[7.0, -2.0, -2.0], [7.0, -2.0, -2.0], [7.0, -2.0, -2.0]],
        ]
    )
    expected_y = torch.tensor(
        [[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]
    )
    torch.testing.assert_close(xs[:, 0], expected_x, rtol=0, atol=0)
    for c in range(2):
        torch.testing.assert_close(ys[:, c], expected_y, rtol=0, atol=0)


def test_pad_to_largest_leaves_a_batch_of_one_size_untouched():
    items = [(torch.randn(1, 4, 6), torch.rand(3, 4, 6).round()) for _ in range(3)]
    xs, ys = PadToLargest(black=-2.0)(items)
    torch.testing.assert_close(xs, torch.stack([x for x, _ in items]), rtol=0, atol=0)
    torch.testing.assert_close(ys, torch.stack([y for _, y in items]), rtol=0, atol=0)
