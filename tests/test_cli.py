import pytest

from steelseg.cli import main


def test_score_of_a_truth_file_against_itself_is_one(severstal_mini, capsys):
    for truth in ["train.csv", "train_2019_layout.csv"]:
        assert main(["score", str(severstal_mini / truth), str(severstal_mini / truth)]) == 0
        out = capsys.readouterr().out
        mean = next(line for line in out.splitlines() if line.startswith("mean"))
        assert mean.split()[1:] == ["1.0000", "1.0000", "1.0000"]


def test_score_of_all_empty_against_the_real_truth(severstal_mini, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    main(["score", str(severstal_mini / "train_2019_layout.csv"), str(severstal_mini / "train_2019_layout.csv")])
    capsys.readouterr()
    empty.write_text("ImageId_ClassId,EncodedPixels\n" + "".join(
        line.split(",")[0] + ",\n" for line in (severstal_mini / "train_2019_layout.csv").read_text().splitlines()[1:]
    ))
    assert main(["score", str(severstal_mini / "train_2019_layout.csv"), str(empty)]) == 0
    mean = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mean"))
    # 80 (image, class) pairs, 19 with a defect: all-empty scores 61 / 80
    assert float(mean.split()[1]) == pytest.approx(61 / 80, abs=1e-4)


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
    assert main(["augment-preview", str(tmp_path / "s"), "--config", "fifth_place", "--n", "2", "--out", str(out),
                 "--set", "data.crop_height=64", "--set", "data.crop_width=128"]) == 0  # fmt: skip
    assert out.read_bytes()[:4] == b"\x89PNG" and "wrote 2 augmented samples" in capsys.readouterr().out
