import pytest

from steelseg.commands.cli import COMMANDS, main


def test_score_of_a_truth_file_against_itself_is_one(severstal_mini, capsys):
    for truth in ["train.csv", "train_2019_layout.csv"]:
        assert main(["score", str(severstal_mini / truth), str(severstal_mini / truth)]) == 0
        out = capsys.readouterr().out
        mean = next(line for line in out.splitlines() if line.startswith("mean"))
        assert mean.split()[1:] == ["1.0000", "1.0000", "1.0000"]


@pytest.mark.parametrize(
    "truth, image_set",
    [
        ("train_2019_layout.csv", []),  # it names every image: the same set as the prediction
        ("train.csv", ["--images", "train_images"]),
        ("train.csv", ["--sample-submission", "train_2019_layout.csv"]),
    ],
)
def test_score_of_all_empty_against_the_real_truth(severstal_mini, tmp_path, capsys, truth, image_set):
    empty = tmp_path / "empty.csv"
    empty.write_text(
        "ImageId_ClassId,EncodedPixels\n"
        + "".join(
            line.split(",")[0] + ",\n"
            for line in (severstal_mini / "train_2019_layout.csv").read_text().splitlines()[1:]
        )
    )
    image_set = image_set and [image_set[0], str(severstal_mini / image_set[1])]
    assert main(["score", str(severstal_mini / truth), str(empty), *image_set]) == 0
    mean = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mean"))
    # 80 (image, class) pairs, 19 with a defect: all-empty scores 61 / 80
    assert float(mean.split()[1]) == pytest.approx(61 / 80, abs=1e-4)


def _refusal(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return captured.err


def test_score_refusals_are_one_line_with_exit_code_1(severstal_mini, tmp_path, capsys):
    truth, full = str(severstal_mini / "train.csv"), str(severstal_mini / "train_2019_layout.csv")
    err = _refusal(capsys, ["score", truth, full])
    assert err.startswith(f"steelseg score: error: {truth} names 15 images and {full} 20, not the same ones")
    assert err.rstrip().endswith("pass --images DIR or --sample-submission CSV to say which images are scored")

    header_only = tmp_path / "pred.csv"
    header_only.write_text("ImageId,ClassId,EncodedPixels\n")
    err = _refusal(capsys, ["score", truth, str(header_only), "--images", str(severstal_mini / "train_images")])
    assert err == f"steelseg score: error: {header_only}: lists no images (only a header)\n"

    err = _refusal(capsys, ["score", full, truth, "--sample-submission", full])
    lacks = f"{truth}: lacks 5 of the 20 images of sample submission {full}, first 000789191.jpg"
    assert err.startswith(f"steelseg score: error: {lacks} ")


def test_score_allow_missing_warns_with_the_count(severstal_mini, capsys):
    truth, pred = severstal_mini / "train_2019_layout.csv", severstal_mini / "train.csv"
    argv = ["score", str(truth), str(pred), "--images", str(severstal_mini / "train_images"), "--allow-missing"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"steelseg score: warning: {pred}: lacks 5 of the 20 images")
    # the 5 images train.csv leaves out have no defect: scored as empty, they agree with the truth
    assert next(line for line in captured.out.splitlines() if line.startswith("mean")).split()[1] == "1.0000"


def test_score_takes_class_names_from_a_run(tmp_path, capsys):
    from steelseg.config import load_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(load_config(None, ["data.class_names=[pit, scratch, patch]"]).to_yaml())
    truth, pred = tmp_path / "truth.csv", tmp_path / "pred.csv"
    truth.write_text("ImageId,ClassId,EncodedPixels\na.jpg,2,1 4\nb.jpg,3,\n")
    pred.write_text("ImageId,ClassId,EncodedPixels\na.jpg,2,1 2\nb.jpg,1,\n")
    assert main(["score", str(truth), str(pred), "--run", str(run), "--shape", "2", "4"]) == 0
    rows = {line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines()[1:4]}
    # class 2 on a.jpg: 2 of 4 pixels found, Dice 2*2/(2+4); b.jpg is clean: 1
    assert list(rows) == ["pit", "scratch", "patch"]
    assert rows["scratch"][:3] == ["2", "scratch", f"{(2 * 2 / 6 + 1) / 2:.4f}"]
    assert rows["pit"][2] == rows["patch"][2] == "1.0000"

    truth.write_text("ImageId,ClassId,EncodedPixels\na.jpg,4,1 4\nb.jpg,3,\n")
    assert main(["score", str(truth), str(pred), "--run", str(run), "--shape", "2", "4"]) == 1
    assert "truth.csv:2: unknown class id 4 for image a.jpg (expected 1..3)" in capsys.readouterr().err


def test_score_num_classes_and_run_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["score", "t.csv", "p.csv", "--num-classes", "4", "--run", str(tmp_path)])
    assert exited.value.code == 2
    assert "argument --run: not allowed with argument --num-classes" in capsys.readouterr().err


def test_score_names_the_bad_row(tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\na.jpg,2,9 x\n")
    assert main(["score", str(truth), str(truth)]) == 1
    assert "truth.csv:3: image a.jpg class 2: non-integer token 'x'" in capsys.readouterr().err


def test_synth_command(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--n", "3", "--seed", "4", "--quiet"]) == 0
    assert len(list((tmp_path / "s" / "train_images").iterdir())) == 3
    assert "wrote 3 strips" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "synth" in capsys.readouterr().out


def test_augment_preview_command(tmp_path, capsys):
    main(["synth", str(tmp_path / "s"), "--n", "2", "--quiet"])
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "augment-preview",
                str(tmp_path / "s"),
                "--config",
                "fifth_place",
                "--n",
                "2",
                "--out",
                str(out),
                "--set",
                "data.crop_height=64",
                "--set",
                "data.crop_width=128",
            ]
        )
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG" and "wrote 2 augmented samples" in capsys.readouterr().out


# --- the table of commands ---------------------------------------------------------------------

ORDER = [
    "synth",
    "train",
    "folds",
    "augment-preview",
    "predict",
    "tune",
    "export",
    "score",
    "demo",
    "adversarial",
    "pseudo",
    "serve",
    "report",
    "eda",
    "report-curves",
    "plan",
    "fit",
    "convert",
    "distill",
]


def test_the_table_lists_every_command_in_order_each_a_module_with_help_arguments_and_run():
    assert list(COMMANDS) == ORDER
    for name, module in COMMANDS.items():
        assert module.__name__ == "steelseg.commands." + name.replace("-", "_")
        assert isinstance(module.HELP, str) and module.HELP and "\n" not in module.HELP
        assert callable(module.add_arguments) and callable(module.run)


def test_the_top_level_help_lists_every_command_with_its_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listed = "".join(capsys.readouterr().out.split())  # argparse wraps long lines, at hyphens too
    for name, module in COMMANDS.items():
        assert "".join(f"{name} {module.HELP}".split()) in listed


@pytest.mark.parametrize("name", ORDER)
def test_every_command_has_its_help_page(name, capsys):
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: steelseg {name} ") and "--quiet" in out


# --- user mistakes in options: one line, `steelseg CMD: error: MESSAGE`, exit code 1 ------------

USAGE_ERRORS = [
    # (name, argv, message)
    ("train without --out", ["train", "data"], "--out RUN_DIR is required (or --resume RUN_DIR)"),
    (
        "train --resume with more",
        ["train", "--resume", "run", "--epochs", "2"],
        "--resume RUN_DIR takes nothing else: the run's config.yaml says it all",
    ),
    ("augment-preview without data", ["augment-preview"], "give a dataset folder (or data.root in the config)"),
    (
        "predict --drop-tta alone",
        ["predict", "run", "images", "--out", "s.csv", "--drop-tta"],
        "--drop-tta needs --time-budget MINUTES",
    ),
    ("serve --port 0", ["serve", "run", "--port", "0"], "--port 0 is not a port number (1-65535)"),
    ("serve --batch-size 0", ["serve", "run", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("serve --window -1", ["serve", "run", "--window=-1"], "--window must be at least 0, got -1"),
    ("serve --max-pixels 0", ["serve", "run", "--max-pixels", "0"], "--max-pixels must be at least 1, got 0"),
]


@pytest.mark.parametrize("name, argv, message", USAGE_ERRORS, ids=[case[0] for case in USAGE_ERRORS])
def test_usage_errors_are_one_line_naming_the_command(tmp_path, monkeypatch, capsys, name, argv, message):
    monkeypatch.chdir(tmp_path)  # nothing may be written, wherever the relative paths point
    assert _refusal(capsys, argv) == f"steelseg {argv[0]}: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_version_is_printed_from_its_one_source(capsys):
    import tomllib
    from pathlib import Path

    import steelseg

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"steelseg {steelseg.__version__}"
    # the package metadata reads the same attribute: there is no second number to forget
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "steelseg.version.__version__"}
