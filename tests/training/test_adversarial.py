"""Adversarial validation on planted data: dark training strips, bright test strips, a few bright
training strips that must come out as the most test-like, and names shared by both folders."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import COMMANDS, build_parser, main
from steelseg.core import rle
from steelseg.errors import OutputExistsError, SteelsegError
from steelseg.files.datasets import open_dataset
from steelseg.files.folds import read_folds, split_by_fold
from steelseg.files.images import ImageError
from steelseg.files.likeness import AdversarialError, read_test_likeness, write_likeness
from steelseg.training.adversarial import (
    adversarial_config,
    assign_folds,
    most_test_like,
    run_adversarial,
    whole_image_rle,
)

DARK, BRIGHT = 50, 190
DARK_TRAIN = [f"img_{i:02d}.png" for i in range(15)]
BRIGHT_TRAIN = [f"img_{i:02d}.png" for i in range(15, 18)]  # training strips that look like the test set
TEST = [f"img_{i:02d}.png" for i in range(9)]  # every name also a training image's
ODD_SIZE = {"img_04.png": (40, 72)}  # one training and one test image of another size
# A tiny network that learns brightness in a few epochs; nothing downloaded.
TINY = [
    "model.encoder_name=tu-test_resnet",
    "model.input_scale=1.0",
    "data.batch_size=4",
    "train.epochs=3",
    "train.lr=0.01",
]


def _write(path, level, shape, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rng.normal(level, 12, shape), 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Train images in a severstal-layout dataset (train_images/ + an empty train.csv), test images
    in a plain folder, then one adversarial run (k=3) over them."""
    root = tmp_path_factory.mktemp("adversarial")
    rng = np.random.default_rng(0)
    train, test = root / "train" / "train_images", root / "test"
    for names, folder, level in ((DARK_TRAIN, train, DARK), (BRIGHT_TRAIN, train, BRIGHT), (TEST, test, BRIGHT)):
        for name in names:
            _write(folder / name, level, ODD_SIZE.get(name, (32, 64)), rng)
    (root / "train" / "train.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    # 1/6 of the 18 training images is 3: exactly the bright ones
    result = run_adversarial(train, test, root / "out", overrides=TINY, val_fraction=1 / 6, progress=False)
    return root, result


def _likeness_rows(path) -> list[tuple[str, str, float]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "ImageId,Set,TestLikeness"
    return [(name, kind, float(value)) for name, kind, value in (line.split(",") for line in lines[1:])]


# --- (a) the planted shift is found ----------------------------------------------------------


def test_bright_test_images_are_told_from_dark_training_images(planted):
    root, result = planted
    assert result.train_images == 18 and result.test_images == 9 and result.holdout_images == 3
    # every test image is bright, 15 of 18 training images dark: perfect separation of those
    # is (15 * 9 + 0.5 * 3 * 9) / (18 * 9) = 0.917
    assert result.auc > 0.8
    rows = _likeness_rows(root / "out" / "adversarial.csv")
    likeness = {(name, kind): value for name, kind, value in rows}
    assert len(likeness) == 27
    test_mean = np.mean([likeness[name, "test"] for name in TEST])
    assert test_mean > np.mean([likeness[name, "train"] for name in DARK_TRAIN]) + 0.1
    assert "AUC" in result.report() and "0.85" in result.report()


def test_fold_0_holds_the_test_like_training_images(planted):
    root, result = planted
    folds = read_folds(root / "out" / "folds.csv")
    assert sorted(folds) == sorted(DARK_TRAIN + BRIGHT_TRAIN)  # training images only, original names
    assert sorted(name for name, fold in folds.items() if fold == 0) == BRIGHT_TRAIN
    assert set(folds.values()) == {0, 1}
    # the command the report gives works on the user's training data: fold 0 validates on them
    assert f"steelseg train {root / 'train'} --folds {root / 'out' / 'folds.csv'} --fold 0" in result.report()
    dataset = open_dataset(root / "train")
    _, validation = split_by_fold(dataset.image_ids, folds, 0)
    assert [dataset.image_ids[i] for i in validation] == BRIGHT_TRAIN


def test_likeness_file_is_sorted_by_set_then_most_test_like_first(planted):
    root, _ = planted
    rows = _likeness_rows(root / "out" / "adversarial.csv")
    assert [kind for _, kind, _ in rows] == ["test"] * 9 + ["train"] * 18
    for kind in ("test", "train"):
        values = [value for _, k, value in rows if k == kind]
        assert values == sorted(values, reverse=True)
    assert all(
        len(line.rsplit(",", 1)[1]) == 8 for line in (root / "out" / "adversarial.csv").read_text().splitlines()[1:]
    )


def test_work_dataset_is_the_competition_layout(planted):
    root, _ = planted
    data = root / "out" / "data"
    assert json.loads((data / "classes.json").read_text()) == {"class_names": ["test"]}
    lines = (data / "train.csv").read_text().splitlines()
    assert lines[0] == "ImageId,ClassId,EncodedPixels"
    # hand-derived: 32 x 64 = 2048 pixels, 40 x 72 = 2880
    expected = {f"test__{name}": f"1 {2880 if name in ODD_SIZE else 2048}" for name in TEST}
    assert {line.split(",")[0]: line.split(",")[2] for line in lines[1:]} == expected
    assert all(line.split(",")[1] == "1" for line in lines[1:])
    assert rle.decode(whole_image_rle(40, 72), (40, 72)).all()
    # every fold the classifier was validated on held both kinds of image
    work = read_folds(data / "folds.csv")
    for fold in (0, 1, 2):
        kinds = {image_id.split("__")[0] for image_id, f in work.items() if f == fold}
        assert kinds == {"train", "test"}


# --- (b) names in both folders ----------------------------------------------------------------


def test_colliding_names_keep_their_own_images(planted):
    root, _ = planted
    images = sorted(p.name for p in (root / "out" / "data" / "train_images").iterdir())
    assert images == sorted([f"train__{n}" for n in DARK_TRAIN + BRIGHT_TRAIN] + [f"test__{n}" for n in TEST])
    # each work image is the file of its own folder: the bright test copy, the dark training one
    for name in TEST:
        test_copy = np.asarray(Image.open(root / "out" / "data" / "train_images" / f"test__{name}"))
        train_copy = np.asarray(Image.open(root / "out" / "data" / "train_images" / f"train__{name}"))
        assert test_copy.mean() > 150 > 90 > train_copy.mean()
    likeness = {(name, kind): value for name, kind, value in _likeness_rows(root / "out" / "adversarial.csv")}
    assert all(likeness[name, "test"] > likeness[name, "train"] for name in TEST)
    test_rows = read_test_likeness(root / "out" / "adversarial.csv")
    assert sorted(test_rows) == TEST and all(test_rows[name] == likeness[name, "test"] for name in TEST)


def test_a_used_output_folder_is_refused(planted):
    root, _ = planted
    with pytest.raises(OutputExistsError, match="already exists"):
        run_adversarial(root / "train" / "train_images", root / "test", root / "out", overrides=TINY, progress=False)


# --- (c) bad folders and options ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["train", "test"])
@pytest.mark.parametrize("problem, message", [("missing", "image folder not found"), ("empty", "no images found")])
def test_a_missing_or_empty_folder_is_a_one_line_error_naming_it(tmp_path, which, problem, message):
    rng = np.random.default_rng(1)
    folders = {"train": tmp_path / "train", "test": tmp_path / "test"}
    for name, folder in folders.items():
        if name != which:
            for i in range(3):
                _write(folder / f"{i}.png", DARK, (32, 64), rng)
    if problem == "empty":
        folders[which].mkdir()
        (folders[which] / "notes.txt").write_text("no images here")
    with pytest.raises(ImageError) as error:
        run_adversarial(folders["train"], folders["test"], tmp_path / "out", progress=False)
    assert str(error.value).startswith(f"{folders[which]}: {message}") and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_too_few_images_for_k_folds_fails_before_writing(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(5):
        _write(tmp_path / "train" / f"{i}.png", DARK, (32, 64), rng)
    for i in range(2):
        _write(tmp_path / "test" / f"{i}.png", BRIGHT, (32, 64), rng)
    with pytest.raises(AdversarialError, match=f"^{tmp_path / 'test'}: 2 images, too few for 3 folds"):
        run_adversarial(tmp_path / "train", tmp_path / "test", tmp_path / "out", k=3, progress=False)
    with pytest.raises(AdversarialError, match="val_fraction must be between 0 and 1, got 1.5"):
        run_adversarial(tmp_path / "train", tmp_path / "test", tmp_path / "out", k=2, val_fraction=1.5, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_same_images_on_both_sides_are_refused_before_writing(tmp_path):
    """An AUC of training images against themselves means nothing: the same folder, or a test
    folder holding (links to) training images, is refused naming it."""
    rng = np.random.default_rng(3)
    for i in range(6):
        _write(tmp_path / "train" / f"{i}.png", DARK, (32, 64), rng)
    with pytest.raises(AdversarialError, match="are the same folder"):
        run_adversarial(tmp_path / "train", tmp_path / "train" / ".", tmp_path / "out", progress=False)
    (tmp_path / "test").mkdir()
    for i in range(4):
        _write(tmp_path / "test" / f"t{i}.png", BRIGHT, (32, 64), rng)
    (tmp_path / "test" / "3.png").symlink_to(tmp_path / "train" / "3.png")
    with pytest.raises(AdversarialError, match=r"3\.png is among the training images too \(1 of the test images"):
        run_adversarial(tmp_path / "train", tmp_path / "test", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_command_line_parses_and_reports_errors_in_one_line(tmp_path, capsys):
    parser = build_parser()
    args = parser.parse_args(
        [
            "adversarial",
            str(tmp_path / "nope"),
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--k",
            "4",
            "--val-fraction",
            "0.1",
            "--minutes",
            "30",
            "--set",
            "train.epochs=1",
            "--quiet",
        ]
    )
    assert (args.k, args.val_fraction, args.minutes, args.set, args.config) == (4, 0.1, 30.0, ["train.epochs=1"], None)
    with pytest.raises(SteelsegError, match=f"^{tmp_path / 'nope'}: image folder not found$"):
        COMMANDS[args.command].run(args)
    assert main(["adversarial", str(tmp_path / "nope"), str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == f"steelseg adversarial: error: {tmp_path / 'nope'}: image folder not found\n"
    assert not (tmp_path / "o").exists()
    for bad in (["--val-fraction", "1"], ["--k", "1"], ["--minutes", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["adversarial", "a", "b", "--out", "o", *bad])
    assert "must be" in capsys.readouterr().err


def test_command_line_runs_and_prints_the_report(planted, tmp_path, capsys):
    root, _ = planted
    sets = [arg for override in [*TINY, "train.epochs=1"] for arg in ("--set", override)]
    code = main(
        [
            "adversarial",
            str(root / "train" / "train_images"),
            str(root / "test"),
            "--out",
            str(tmp_path / "out"),
            "--k",
            "2",
            "--val-fraction",
            "0.5",
            *sets,
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "over 18 training and 9 test images" in printed and "the 9 most test-like training images" in printed
    assert sorted(set(read_folds(tmp_path / "out" / "folds.csv").values())) == [0, 1]
    assert (tmp_path / "out" / "runs" / "fold-1" / "oof.npz").is_file() and not (
        tmp_path / "out" / "runs" / "fold-2"
    ).exists()


# --- the run's configuration ---------------------------------------------------------------------


def test_config_is_a_cheap_classifier_whatever_the_recipe_says(tmp_path):
    small = adversarial_config(None, [], tmp_path, minutes=6, k=3)
    assert (small.model.task, small.model.encoder_name, small.model.input_scale, small.model.encoder_weights) == (
        "classify",
        "resnet18",
        0.25,
        None,
    )
    assert (small.data.crop_height, small.train.max_minutes, small.data.fold) == (None, 2.0, 0)
    assert [step.name for step in small.data.augment] == ["hflip", "vflip"]
    # the 1st-place recipe brightens, darkens and blacks out defects; here the "defect" is the
    # whole test image and brightness may be the very difference: flips only
    recipe = adversarial_config(
        "first_place_cls_resnet34", ["model.task=segment", "train.oof_scale=null"], tmp_path, None, 3
    )
    assert [step.name for step in recipe.data.augment] == ["hflip", "vflip"]
    assert (recipe.model.task, recipe.model.encoder_name, recipe.model.in_channels) == ("classify", "resnet34", 3)
    assert recipe.train.oof_scale is not None and recipe.data.root == str(tmp_path)
    chosen = adversarial_config(None, ["data.augment=[{name: defect_blackout}, {name: gamma}]"], tmp_path, None, 3)
    assert [step.name for step in chosen.data.augment] == ["gamma"]


# --- pure helpers -----------------------------------------------------------------------------


def test_folds_are_stratified_and_deterministic():
    is_test = np.array([False] * 10 + [True] * 5)
    folds = assign_folds(is_test, 5, seed=3)
    assert [int((folds[~is_test] == f).sum()) for f in range(5)] == [2] * 5
    assert [int((folds[is_test] == f).sum()) for f in range(5)] == [1] * 5
    assert assign_folds(is_test, 5, seed=3).tolist() == folds.tolist()
    with pytest.raises(AdversarialError, match="6 folds"):
        assign_folds(is_test, 6)


@pytest.mark.parametrize(
    "likeness, fraction, chosen",
    [
        ([0.1, 0.9, 0.5, 0.7], 0.5, [False, True, False, True]),  # the top half
        ([0.1, 0.9, 0.5, 0.7], 0.01, [False, True, False, False]),  # at least one
        ([0.1, 0.9, 0.5, 0.7], 0.99, [False, True, True, True]),  # never all
        ([0.5, 0.5, 0.5], 0.34, [True, False, False]),  # a tie goes to the earlier image
    ],
)
def test_most_test_like(likeness, fraction, chosen):
    assert most_test_like(np.array(likeness), fraction).tolist() == chosen


# --- (d) the test-likeness file ----------------------------------------------------------------


def test_test_likeness_round_trip(tmp_path):
    path = tmp_path / "adversarial.csv"
    names = ["a.jpg", "b.jpg", "a.jpg", "c.jpg"]
    write_likeness(path, names, np.array([False, False, True, True]), np.array([0.99, 0.2, 0.123456789, 0.5]))
    assert path.read_text().splitlines() == [
        "ImageId,Set,TestLikeness",
        "c.jpg,test,0.500000",
        "a.jpg,test,0.123457",
        "a.jpg,train,0.990000",
        "b.jpg,train,0.200000",
    ]
    assert read_test_likeness(path) == {"c.jpg": 0.5, "a.jpg": 0.123457}


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("ImageId,Set\na.jpg,test\n", 1, "expected the header ImageId,Set,TestLikeness, got 'ImageId,Set'"),
        ("ImageId,Set,TestLikeness\na.jpg,test,0.5\nb.jpg,test\n", 3, "expected 3 columns, got 2"),
        ("ImageId,Set,TestLikeness\na.jpg,valid,0.5\n", 2, "Set 'valid' of image a.jpg is neither train nor test"),
        ("ImageId,Set,TestLikeness\na.jpg,test,high\n", 2, "TestLikeness of image a.jpg is 'high', not a number"),
        ("ImageId,Set,TestLikeness\na.jpg,test,1.5\n", 2, "TestLikeness of image a.jpg is 1.5, outside 0..1"),
        ("ImageId,Set,TestLikeness\na.jpg,test,nan\n", 2, "TestLikeness of image a.jpg is nan, outside 0..1"),
        ("ImageId,Set,TestLikeness\n,test,0.5\n", 2, "missing image id"),
        (
            "ImageId,Set,TestLikeness\na.jpg,test,0.5\n\na.jpg,test,0.4\n",
            4,
            "duplicate test image a.jpg (first at line 2)",
        ),
    ],
)
def test_malformed_likeness_file_names_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "adversarial.csv"
    path.write_text(text)
    with pytest.raises(AdversarialError) as error:
        read_test_likeness(path)
    assert str(error.value) == f"{path}:{line}: {message}"


def test_missing_likeness_file(tmp_path):
    with pytest.raises(AdversarialError, match="test-likeness file not found"):
        read_test_likeness(tmp_path / "nope.csv")


def test_import_is_light():
    code = textwrap.dedent(
        """
        import sys
        import steelseg.training.adversarial
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "timm", "scipy")))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
