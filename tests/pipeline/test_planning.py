"""``steelseg plan`` on data as users have it (a LabelMe folder), with a probe of known numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_planner import fake_measure

from steelseg.commands.cli import main
from steelseg.pipeline import planner
from steelseg.pipeline.plan import read_plan


@pytest.fixture
def labelme(tmp_path):
    """Three 120x300 photos, two with a 'pit' rectangle of 10x20 px drawn as a LabelMe polygon."""
    folder = tmp_path / "labelme"
    folder.mkdir()
    for i in range(3):
        name = f"photo{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (120, 300), dtype=np.uint8)).save(folder / name)
        shapes = []
        if i < 2:
            points = [[10, 10], [29, 10], [29, 19], [10, 19]]
            shapes = [{"label": "pit", "points": points, "shape_type": "polygon"}]
        document = {"shapes": shapes, "imagePath": name, "imageData": None, "imageHeight": 120, "imageWidth": 300}
        (folder / f"photo{i}.json").write_text(json.dumps(document))
    return folder


def test_plan_converts_fingerprints_and_writes_an_editable_plan(labelme, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(planner, "_default_measure", fake_measure())
    out = tmp_path / "plans" / "plan.yaml"
    out.parent.mkdir()
    assert main(["plan", str(labelme), "--budget", "20", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "input scale" in printed and "whole images" in printed  # 120x300 fits 256x512 network pixels
    plan = read_plan(out)
    assert plan.members[0].settings["data.crop_height"] is None
    fingerprint = json.loads((tmp_path / "plans" / "plan-fingerprint.json").read_text())
    assert fingerprint["images"] == 3 and fingerprint["classes"][0]["name"] == "pit"
    assert fingerprint["classes"][0]["area"]["p50"] == 200  # 20 x 10 px, as LabelMe draws it
    assert (tmp_path / "plans" / "plan-data" / "masks").is_dir()  # the converted copy


def test_an_existing_plan_is_not_overwritten_without_force(labelme, tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    out.write_text("# edited by hand\n")
    assert main(["plan", str(labelme), "--out", str(out)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert out.read_text() == "# edited by hand\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "DATA", "--out", "X", "--scale", "tiny"], "--scale tiny goes with --system NAME"),
        (["fit", "DATA", "--out", "X", "--address", "h:1"], "--address goes with --executor ray"),
        (["fit", "DATA", "--out", "X", "--budget", "0"], "must be above 0"),
    ],
)
def test_wrong_flags_are_one_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's own refusals: usage and one error line, exit 2
        code = exited.code
    assert code in (1, 2)
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_missing_data_folder_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "system"
    assert main(["fit", str(tmp_path / "nowhere"), "--out", str(out), "--quiet"]) == 1
    assert capsys.readouterr().err.strip() == f"steelseg fit: error: {tmp_path / 'nowhere'}: not found"
    assert not out.exists()  # so the corrected command starts cleanly


def test_one_unreadable_image_stops_fit_in_one_line_or_is_left_out_with_skip_bad(tiny_data, tmp_path, capsys):
    import shutil

    from steelseg.pipeline.plan import MemberPlan, Plan, write_plan
    from tiny_runs import TINY_SETTINGS

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    bad = sorted((data / "train_images").iterdir())[0]
    bad.write_bytes(b"not an image")
    plan = Plan(budget_minutes=5, k=2, members=[MemberPlan(name="unet", settings=TINY_SETTINGS, minutes=0.5)])
    plan_file = str(write_plan(tmp_path / "plan.yaml", plan))
    out = str(tmp_path / "system")
    assert main(["fit", str(data), "--out", out, "--plan", plan_file, "--quiet"]) == 1
    assert f"{bad}: cannot read image" in capsys.readouterr().err
    assert main(["fit", str(data), "--out", out, "--plan", plan_file, "--quiet", "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {bad}" in captured.err and "out-of-fold images" in captured.out
    assert "on 7 out-of-fold images" in captured.out  # the 8 strips less the bad one
