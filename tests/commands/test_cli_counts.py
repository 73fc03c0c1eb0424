"""Counts on the command line: a non-positive value is refused by argparse in one line naming the option."""

import pytest

from steelseg.commands.cli import build_parser, main

CASES = [
    # (name, argv, option, message)
    ("synth --n 0", ["synth", "out", "--n", "0"], "--n", "must be at least 1, got 0"),
    ("synth --n -3", ["synth", "out", "--n=-3"], "--n", "must be at least 1, got -3"),
    ("folds --k 1", ["folds", "data", "--out", "f.csv", "--k", "1"], "--k", "must be at least 2, got 1"),
    ("folds --k 0", ["folds", "data", "--out", "f.csv", "--k", "0"], "--k", "must be at least 2, got 0"),
    (
        "predict --batch-size 0",
        ["predict", "run", "images", "--out", "s.csv", "--batch-size", "0"],
        "--batch-size",
        "must be at least 1, got 0",
    ),
    ("augment-preview --n 0", ["augment-preview", "data", "--n", "0"], "--n", "must be at least 1, got 0"),
    ("demo --n-train 0", ["demo", "--n-train", "0"], "--n-train", "must be at least 1, got 0"),
    ("demo --n-test -1", ["demo", "--n-test=-1"], "--n-test", "must be at least 1, got -1"),
    ("train --epochs 0", ["train", "data", "--out", "run", "--epochs", "0"], "--epochs", "must be at least 1, got 0"),
    (
        "train --max-minutes 0",
        ["train", "data", "--out", "run", "--max-minutes", "0"],
        "--max-minutes",
        "must be above 0, got 0",
    ),
    (
        "train --max-minutes -1.5",
        ["train", "data", "--out", "run", "--max-minutes=-1.5"],
        "--max-minutes",
        "must be above 0, got -1.5",
    ),
    (
        "train --max-minutes nan",
        ["train", "data", "--out", "run", "--max-minutes", "nan"],
        "--max-minutes",
        "must be above 0, got nan",
    ),
    (
        "train --max-minutes inf",
        ["train", "data", "--out", "run", "--max-minutes", "inf"],
        "--max-minutes",
        "must be above 0, got inf",
    ),
    (
        "predict --batch-size two",
        ["predict", "run", "images", "--out", "s.csv", "--batch-size", "two"],
        "--batch-size",
        "invalid int value: 'two'",
    ),
    (
        "train --max-minutes ten",
        ["train", "data", "--out", "run", "--max-minutes", "ten"],
        "--max-minutes",
        "invalid float value: 'ten'",
    ),
]


@pytest.mark.parametrize("name, argv, option, message", CASES, ids=[c[0] for c in CASES])
def test_bad_counts_are_refused_in_one_line_naming_the_option(capsys, name, argv, option, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: {message}" in err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "error" in line] == [err.splitlines()[-1]]


@pytest.mark.parametrize(
    "argv, attribute, value",
    [
        (["synth", "out", "--n", "1"], "n", 1),
        (["folds", "data", "--out", "f.csv", "--k", "2"], "k", 2),
        (["predict", "run", "images", "--out", "s.csv", "--batch-size", "1"], "batch_size", 1),
        (["train", "data", "--out", "run", "--max-minutes", "0.5"], "max_minutes", 0.5),
        (["train", "data", "--out", "run", "--epochs", "1"], "epochs", 1),
        (["demo"], "n_train", 240),
    ],
)
def test_the_smallest_allowed_counts_and_the_defaults_pass(argv, attribute, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, attribute) == value and type(getattr(args, attribute)) is type(value)
