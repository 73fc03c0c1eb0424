"""The class-scores CSV: round trip, one-line errors naming file and line, and `score` on it."""

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.files.class_scores import ClassScoresError, is_class_scores, read_class_scores, write_class_scores


def test_round_trip(tmp_path):
    scores = np.array([[0.9, 0.1], [0.25, 0.5]])
    path = tmp_path / "s.csv"
    assert write_class_scores(path, ["a.jpg", "b.jpg"], scores, scores > 0.3) == 4
    assert is_class_scores(path)
    back = read_class_scores(path, 2)
    assert back.image_ids == ["a.jpg", "b.jpg"]
    np.testing.assert_allclose(back.scores, scores)
    assert back.present.tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize(
    "body, message",
    [
        ("a.jpg,1,0.5,1\na.jpg,1,0.4,0\n", ":3: a.jpg class 1 is listed twice"),
        ("a.jpg,1,0.5,1\n", "a.jpg lacks class 2"),
        ("a.jpg,3,0.5,1\n", ":2: ClassId 3 is outside 1..2"),
        ("a.jpg,1,1.5,1\n", ":2: Probability 1.5 is not in [0, 1]"),
        ("a.jpg,1,nan,1\n", ":2: Probability nan"),
        ("a.jpg,1,0.5,yes\n", ":2: Present 'yes' must be 0 or 1"),
        ("a.jpg,1,0.5\n", ":2: expected 4 columns"),
        ("a.jpg,x,0.5,1\n", ":2: ClassId 'x'"),
        ("", "lists no images"),
    ],
)
def test_bad_rows_are_named(tmp_path, body, message):
    path = tmp_path / "s.csv"
    path.write_text("ImageId,ClassId,Probability,Present\n" + body)
    with pytest.raises(ClassScoresError) as err:
        read_class_scores(path, 2)
    assert message in str(err.value) and str(path) in str(err.value)


def test_bom_and_crlf_are_read(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeffImageId,ClassId,Probability,Present\r\na.jpg,1,0.5,1\r\na.jpg,2,0.1,0\r\n".encode())
    assert is_class_scores(path) and read_class_scores(path, 2).scores.tolist() == [[0.5, 0.1]]


def test_score_reports_screening_of_a_scores_file(tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 3\nb.jpg,2,5 2\n")
    scores = tmp_path / "scores.csv"
    # a: class 1 right; b: class 2 missed; c: clean, screened out
    write_class_scores(
        scores,
        ["a.jpg", "b.jpg", "c.jpg"],
        np.array([[0.9, 0.1], [0.2, 0.3], [0.1, 0.2]]),
        np.array([[1, 0], [0, 0], [0, 0]], bool),
    )
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (images / name).write_bytes(b"")  # only the names count for the image set
    assert main(["score", str(truth), str(scores), "--images", str(images), "--num-classes", "2"]) == 0
    out = capsys.readouterr().out
    # 2 of 3 images screened out; c is the only clean one; b (defective) lost
    assert (
        "screened out (no class present): 66.7% of 3 images; clean images: 100.0%; defective images (lost): 50.0%"
        in out
    )
    assert main(["score", str(truth), str(scores), "--num-classes", "2"]) == 1  # truth names 2 images, scores 3
    assert "not the same ones" in capsys.readouterr().err
