"""``steelseg eda`` on hand-made data sets (counts known by construction) and on a synthetic one."""

import csv
import json

import numpy as np
from PIL import Image

from steelseg.commands.cli import main
from steelseg.files import synth
from steelseg.files.datasets import open_dataset
from steelseg.reports.eda import dataset_stats, write_eda

from .conftest import assert_figures_exist, write_images, write_long_csv

NAMES = ["pits", "crazing", "scratches", "blotches"]
# 8x16 images; run lengths by hand: "1 8" is column 0 (8 px), "17 4" the top half of column 2.
ROWS = [
    ("img0.png", 1, "1 8"),
    ("img0.png", 3, "17 4"),
    ("img1.png", 1, "1 3"),
    ("img3.png", 3, "9 16"),
    ("img3.png", 4, "33 8"),
]


def _severstal(root):
    write_images(root / "train_images", ["img0.png", "img1.png", "img2.png", "img3.png"])
    write_long_csv(root / "train.csv", ROWS)
    (root / "classes.json").write_text(json.dumps({"class_names": NAMES}))
    return root


def test_counts_and_areas_equal_hand_counts(tmp_path):
    stats = dataset_stats(open_dataset(_severstal(tmp_path / "data")))
    assert stats.class_counts.tolist() == [2, 0, 2, 1]
    assert stats.classes_per_image.tolist() == [1, 1, 2, 0, 0]  # img2; img1; img0 and img3
    assert stats.areas.tolist() == [[8, 0, 4, 0], [3, 0, 0, 0], [0, 0, 0, 0], [0, 0, 16, 8]]


def test_mask_folder_areas_come_from_the_label_pngs(tmp_path):
    root = tmp_path / "neu"
    write_images(root / "images", ["a.png", "b.png"], 6, 6)
    (root / "masks").mkdir()
    labels = np.zeros((6, 6), np.uint8)
    labels[0, :4] = 1
    labels[5, 4:] = 2
    Image.fromarray(labels).save(root / "masks" / "a.png")
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(root / "masks" / "b.png")
    stats = dataset_stats(open_dataset(root))
    assert stats.areas.tolist() == [[4, 2], [0, 0]]


def test_page_shows_the_counts_and_existing_figures(tmp_path):
    page = write_eda(_severstal(tmp_path / "data"), tmp_path / "out", examples=2)
    text = page.read_text()
    sources = assert_figures_exist(page)
    assert "figures/examples-class-1.png" in sources and "figures/examples-class-2.png" not in sources
    assert "2 crazing: no image holds it." in text
    assert "<td>1 pits</td><td>2</td><td>0.5000</td>" in text  # 2 of 4 images


def test_synthetic_data_set_through_the_cli(tmp_path, capsys):
    data = synth.write_dataset(tmp_path / "synth", 6, seed=4, height=64, width=320, progress=False)
    out = tmp_path / "eda"
    assert main(["eda", str(data), "--out", str(out), "--examples", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'index.html'}"
    with open(data / "train.csv") as handle:  # counted independently of steelseg's reader
        rows = [row for row in csv.DictReader(handle) if row["EncodedPixels"]]
    for class_id, name in enumerate(synth.CLASS_NAMES, start=1):
        count = len({row["ImageId"] for row in rows if int(row["ClassId"]) == class_id})
        assert f"<td>{class_id} {name}</td><td>{count}</td>" in (out / "index.html").read_text()
    assert_figures_exist(out / "index.html")


def test_bad_examples_value_and_missing_folder_are_one_line(tmp_path, capsys):
    data = _severstal(tmp_path / "data")
    assert main(["eda", str(data), "--out", str(tmp_path / "out"), "--examples", "two"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--examples" in err and "'two'" in err
    assert main(["eda", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nothing" in err and "not found" in err
