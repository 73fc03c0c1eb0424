"""`steelseg convert` and what it rests on: format detection, the Severstal source, refusals of
output folders, idempotent re-runs, and ``as_dataset_folder`` (reuse of an up-to-date
conversion)."""

import json
import os

import numpy as np
import pytest
from importer_samples import polygon, read_masks, rectangle, write_image, write_labelme

from steelseg.commands import convert as convert_command
from steelseg.commands.cli import main
from steelseg.errors import OutputExistsError
from steelseg.files.datasets import open_dataset
from steelseg.files.importers import IMPORTERS, ConvertError, as_dataset_folder, convert, detect_format


def _cli(capsys, *argv) -> tuple[int, list[str], list[str]]:
    code = main(["convert", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_the_command_converts_a_labelme_folder_and_says_what_it_wrote(labelme_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code, printed, errors = _cli(capsys, labelme_folder, "--to", "masks", out, "--quiet")
    assert code == 0 and errors == []
    assert printed == [
        f"wrote 3 images (1 clean, 3 hard-linked) to {out / 'images'} and their label masks to {out / 'masks'}",
        f"classes: 1 dent, 2 scratch (in {out / 'classes.json'})",
        "annotations: 3 (labelme)",
        "skipped: 0",
    ]
    dataset = open_dataset(out)
    image, masks = dataset.load(dataset.image_ids.index("a.png"))
    assert image.shape == (30, 40) and masks.shape == (2, 30, 40) and masks[1].sum() == 200
    # hard links where the file system allows: the very source file, no copy
    assert os.stat(out / "images" / "a.png").st_ino == os.stat(labelme_folder / "a.png").st_ino


def test_the_command_offers_every_importer():
    # the command lists them without importing the importers (a light --help)
    assert list(convert_command.FROM) == ["auto", *IMPORTERS]


def test_skip_bad_prints_each_skip_and_goes_on(labelme_folder, tmp_path, capsys):
    (labelme_folder / "bad.json").write_text('{"imagePath": "a.png"}')
    code, _, errors = _cli(capsys, labelme_folder, tmp_path / "out", "--quiet")
    assert code == 1 and errors == [
        f'steelseg convert: error: {labelme_folder / "bad.json"}: not a LabelMe file (no "shapes" list)'
    ]
    code, printed, errors = _cli(capsys, labelme_folder, tmp_path / "out2", "--skip-bad", "--quiet")
    assert code == 0 and printed[-1] == "skipped: 1"
    assert errors == [f'skipped {labelme_folder / "bad.json"}: not a LabelMe file (no "shapes" list)']


def test_user_mistakes_are_one_line_with_exit_code_1(labelme_folder, tmp_path, capsys):
    convert(labelme_folder, tmp_path / "masks")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    cases = [
        ([tmp_path / "nowhere", tmp_path / "o1"], f"{tmp_path / 'nowhere'}: not found"),
        ([tmp_path / "masks", tmp_path / "o2"], "already a mask folder (images/ + masks/): train on it as it is"),
        ([labelme_folder, tmp_path / "full"], "not empty and not a steelseg conversion (no converted.json)"),
        ([labelme_folder, labelme_folder / "out"], "overlaps the source folder"),
        ([labelme_folder, tmp_path / "o3", "--from", "cvat"], "labelmap.txt: not found"),
    ]
    for argv, expected in cases:
        code, printed, errors = _cli(capsys, *argv, "--quiet")
        assert code == 1 and printed == [] and len(errors) == 1, errors
        assert errors[0].startswith("steelseg convert: error: ") and expected in errors[0], errors


def test_severstal_csv_to_masks_with_the_higher_class_where_classes_overlap(tmp_path):
    src = tmp_path / "severstal"
    write_image(src / "train_images" / "a.png", (4, 3))
    write_image(src / "train_images" / "b.png", (4, 3))  # no row: clean
    # pixels are numbered down the columns from 1: class 1 on 3-5, class 2 on 5-6 (overlap: pixel 5)
    (src / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.png,1,3 3\na.png,2,5 2\n")
    assert detect_format(src) == "severstal"
    result = convert(src, tmp_path / "out")
    assert (result.images, result.clean, result.annotations, result.class_names) == (2, 1, 2, ["1", "2"])
    expected = np.array([[0, 2, 0], [0, 2, 0], [1, 0, 0], [1, 0, 0]], np.uint8)  # (0, 1) is pixel 5: class 2
    masks = read_masks(tmp_path / "out")
    assert (masks["a"] == expected).all() and masks["b"].max() == 0


def test_a_rerun_writes_the_same_files_and_drops_what_the_source_no_longer_has(labelme_folder, tmp_path):
    out = tmp_path / "out"
    convert(labelme_folder, out)
    first = {p.name: p.read_bytes() for p in (out / "masks").iterdir()}
    assert convert(labelme_folder, out).images == 3  # the same source: rewritten
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == first
    (labelme_folder / "a.json").unlink()
    (labelme_folder / "a.png").unlink()
    assert convert(labelme_folder, out).images == 2
    assert sorted(p.name for p in (out / "images").iterdir()) == ["b.jpg", "c.png"]
    assert sorted(read_masks(out)) == ["b", "c"]
    marker = json.loads((out / "converted.json").read_text())
    assert (
        marker["status"] == "complete" and marker["source"] == str(labelme_folder.resolve()) and marker["images"] == 2
    )


def test_a_conversion_of_another_source_is_not_overwritten(labelme_folder, tmp_path):
    convert(labelme_folder, tmp_path / "out")
    other = tmp_path / "other"
    write_image(other / "x.png")
    write_labelme(other / "x.json", [polygon("pit", rectangle(0, 0, 1, 1))], "x.png")
    with pytest.raises(OutputExistsError, match=f"holds a conversion of {labelme_folder.resolve()}, not of"):
        convert(other, tmp_path / "out")


def test_each_layout_is_detected(labelme_folder, tmp_path):
    assert detect_format(labelme_folder) == "labelme"
    assert detect_format(labelme_folder / "a.json") == "labelme"
    convert(labelme_folder, tmp_path / "masks")
    assert detect_format(tmp_path / "masks") == "mask_folder"
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    assert detect_format(tmp_path / "coco") == detect_format(tmp_path / "coco" / "instances.json") == "coco"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.json").write_text("{}")
    with pytest.raises(ConvertError, match="plain: no data set layout found: expected train_images/"):
        detect_format(tmp_path / "plain")
    with pytest.raises(ConvertError, match="notes.json: not a COCO or LabelMe .json"):
        detect_format(tmp_path / "plain" / "notes.json")


def test_as_dataset_folder_passes_trainable_layouts_and_reuses_an_up_to_date_conversion(labelme_folder, tmp_path):
    convert(labelme_folder, tmp_path / "masks")
    assert as_dataset_folder(tmp_path / "masks", tmp_path / "unused") == tmp_path / "masks"
    assert not (tmp_path / "unused").exists()
    work = tmp_path / "work"
    assert as_dataset_folder(labelme_folder, work) == work and len(open_dataset(work)) == 3
    mask = work / "masks" / "a.png"
    written = mask.stat().st_mtime_ns
    assert as_dataset_folder(labelme_folder, work) == work and mask.stat().st_mtime_ns == written  # reused
    write_labelme(labelme_folder / "a.json", [polygon("scratch", rectangle(0, 0, 4, 4))], "a.png")
    as_dataset_folder(labelme_folder, work)  # the JSON changed: converted again
    assert read_masks(work)["a"].sum() == 2 * 25


def test_a_conversion_killed_halfway_is_redone_not_reused(labelme_folder, tmp_path):
    work = tmp_path / "work"
    as_dataset_folder(labelme_folder, work)
    marker = json.loads((work / "converted.json").read_text())
    (work / "converted.json").write_text(json.dumps({**marker, "status": "incomplete"}))
    (work / "masks" / "a.png").unlink()
    assert as_dataset_folder(labelme_folder, work) == work and (work / "masks" / "a.png").is_file()
