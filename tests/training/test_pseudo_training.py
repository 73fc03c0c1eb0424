"""data.pseudo: extra labelled folders join the training split only. Validation, its out-of-fold
file and the split itself stay those of data.root; a folder of other classes, or one holding an
image of data.root (made from the training images by mistake), is a one-line error."""

import shutil

import numpy as np
import pytest

from steelseg.config import ConfigError, load_config
from steelseg.files import rundir, synth
from steelseg.files.datasets import CLASSES_FILE, open_configured, write_class_names
from steelseg.training.fit import train
from steelseg.training.oof import load_oof
from steelseg.training.splits import train_val_sets

H, W = 64, 128
PSEUDO_H = 96  # pseudo images are taller: where a 96-px image shows up, a pseudo image went
TINY = [
    "model.encoder_name=tu-test_resnet",
    "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
    "data.crop_height=32",
    "data.crop_width=64",
    "data.batch_size=4",
    "train.epochs=1",
    "train.batches_per_epoch=2",
    "train.precision=32-true",
    "train.oof_scale=0.25",
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(data.root with 8 strips of seed 0, a pseudo folder of 3 strips of seed 1)."""
    root = tmp_path_factory.mktemp("pseudo-training")
    synth.write_dataset(root / "data", 8, seed=0, height=H, width=W, progress=False)
    synth.write_dataset(root / "pseudo", 3, seed=1, height=PSEUDO_H, width=W, progress=False)
    return root / "data", root / "pseudo"


def _config(data, *overrides):
    return load_config(None, [f"data.root={data}", *overrides])


def _sets(config):
    return train_val_sets(config, open_configured(config.data))


def test_pseudo_images_join_the_training_split_only(folders):
    data, pseudo = folders
    plain_train, plain_val = _sets(_config(data))
    train_set, val_set = _sets(_config(data, f"data.pseudo=[{pseudo}]"))
    pseudo_ids = [f"synth_1_{i:05d}.jpg" for i in range(3)]
    assert val_set.image_ids == plain_val.image_ids and len(val_set) == round(8 * 0.2)
    assert train_set.image_ids == plain_train.image_ids + pseudo_ids and len(train_set) == len(plain_train) + 3
    assert not set(pseudo_ids) & set(val_set.image_ids)
    for i in range(3):  # the pseudo images come with their own masks
        image, masks = train_set.load(len(plain_train) + i)
        assert image.shape == (PSEUDO_H, W)
        np.testing.assert_array_equal(masks, synth.make_strip(1, i, PSEUDO_H, W).masks)
    image, masks = train_set.load(0)  # and the split's images with theirs
    np.testing.assert_array_equal(masks, synth.make_strip(0, int(plain_train.image_ids[0][8:13]), H, W).masks)
    presence = np.array([synth.make_strip(1, i, PSEUDO_H, W).masks.any(axis=(1, 2)) for i in range(3)])
    np.testing.assert_array_equal(train_set.class_presence()[-3:], presence)
    assert train_set.image_shapes()[-3:] == [(PSEUDO_H, W)] * 3


def test_a_fold_split_keeps_its_validation_fold(folders, tmp_path):
    data, pseudo = folders
    folds = tmp_path / "folds.csv"
    ids = [f"synth_0_{i:05d}.jpg" for i in range(8)]
    folds.write_text("ImageId,Fold\n" + "".join(f"{image_id},{i % 2}\n" for i, image_id in enumerate(ids)))
    train_set, val_set = _sets(_config(data, f"data.folds={folds}", "data.fold=1", f"data.pseudo={pseudo}"))
    assert val_set.image_ids == ids[1::2]
    assert train_set.image_ids == ids[0::2] + [f"synth_1_{i:05d}.jpg" for i in range(3)]


def test_selected_classes_apply_to_the_pseudo_images(folders):
    data, pseudo = folders
    train_set, _ = _sets(_config(data, "data.classes=[3]", f"data.pseudo=[{pseudo}]"))
    image, masks = train_set.load(len(train_set) - 1)
    np.testing.assert_array_equal(masks, synth.make_strip(1, 2, PSEUDO_H, W).masks[[2]])
    assert train_set.class_names == ["scratches"]


def test_a_folder_without_classes_json_takes_the_training_names(folders, tmp_path):
    data, pseudo = folders
    shutil.copytree(pseudo, tmp_path / "unnamed")
    (tmp_path / "unnamed" / CLASSES_FILE).unlink()
    train_set, _ = _sets(_config(data, f"data.pseudo=[{tmp_path / 'unnamed'}]"))
    assert train_set.class_names == synth.CLASS_NAMES and len(train_set) == 6 + 3


def _one_line_error(config) -> str:
    with pytest.raises(ConfigError) as err:
        _sets(config)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_an_image_of_the_training_data_is_an_error(folders, tmp_path):
    data, _ = folders
    leak = tmp_path / "leak"
    synth.write_dataset(leak, 2, seed=0, height=H, width=W, progress=False)  # the first two strips of data.root
    message = _one_line_error(_config(data, f"data.pseudo=[{leak}]"))
    assert message == f"data.pseudo: image synth_0_00000.jpg of {leak} is also in {data}; an image may be in only one"


def test_an_image_in_two_pseudo_folders_is_an_error(folders):
    data, pseudo = folders
    message = _one_line_error(_config(data, f"data.pseudo=[{pseudo}, {pseudo}]"))
    assert message.startswith(f"data.pseudo: image synth_1_00000.jpg of {pseudo} is also in {pseudo}")


def test_other_class_names_are_an_error(folders, tmp_path):
    data, pseudo = folders
    shutil.copytree(pseudo, tmp_path / "other")
    write_class_names(tmp_path / "other", ["a", "b", "c", "d"])
    message = _one_line_error(_config(data, f"data.pseudo=[{tmp_path / 'other'}]"))
    assert message.startswith(f"data.pseudo: {tmp_path / 'other'} has the classes a, b, c, d; the training data")


def test_a_bad_pseudo_folder_fails_before_the_run_folder_exists(folders, tmp_path):
    data, _ = folders
    with pytest.raises(ConfigError, match="also in"):
        train(_config(data, f"data.pseudo=[{data}]", *TINY), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_bare_folder_is_a_list_of_one_and_saved_paths_are_absolute(folders, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, ["data.pseudo=runs/pseudo1"])
    assert config.data.pseudo == ["runs/pseudo1"]
    assert rundir.absolute_paths(config).data.pseudo == [str(tmp_path / "runs" / "pseudo1")]
    assert rundir.absolute_paths(load_config(None, [])).data.pseudo is None


def test_training_reads_pseudo_images_and_validates_on_data_root_only(folders, tmp_path, monkeypatch):
    data, pseudo = folders
    shutil.copytree(pseudo, tmp_path / "pseudo")
    monkeypatch.chdir(tmp_path)
    summary = train(_config(data, "data.pseudo=[pseudo]", *TINY), tmp_path / "run", progress=False)
    # the 96-px pseudo images were in the training split, the validation images all 64 px
    assert summary.train_image_shapes.max == (PSEUDO_H, W) and summary.train_image_shapes.min == (H, W)
    oof = load_oof(tmp_path / "run")
    assert oof["image_ids"].tolist() == _sets(_config(data))[1].image_ids
    assert oof["image_shapes"].tolist() == [[H, W]] * len(oof["image_ids"])
    assert rundir.load_run_config(tmp_path / "run").data.pseudo == [str(tmp_path / "pseudo")]
