"""``steelseg tune --metric / --recall-floor / --allow-off``: parsed, passed to ``tune``, and bad
values refused in one line naming the option (exit 1)."""

import json

import numpy as np
import pytest

from steelseg.commands.cli import build_parser, main
from steelseg.config import load_config
from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.files import rundir


def test_the_defaults_keep_every_class_on_with_the_competition_metric():
    args = build_parser().parse_args(["tune", "run"])
    assert (args.metric, args.recall_floor, args.allow_off) == ("competition", None, False)
    args = build_parser().parse_args(["tune", "run", "--metric", "dataset", "--recall-floor", "0.9", "--allow-off"])
    assert (args.metric, args.recall_floor, args.allow_off) == ("dataset", 0.9, True)


def test_the_options_reach_tune(monkeypatch, capsys):
    import steelseg.inference.tune as library

    seen = {}

    class Result:
        def report(self):
            return "the report"

    def fake(models, out, **options):
        seen.update(options)
        return Result()

    monkeypatch.setattr(library, "tune", fake)
    assert main(["tune", "run", "--metric", "dataset", "--recall-floor", "0.75", "--allow-off", "--quiet"]) == 0
    assert (seen["metric"], seen["recall_floor"], seen["allow_off"]) == ("dataset", 0.75, True)
    assert capsys.readouterr().out == "the report\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recall-floor", "1.5"], "--recall-floor: 1.5 is not a share in [0, 1]"),
        (["--recall-floor=-0.5"], "--recall-floor: -0.5 is not a share in [0, 1]"),
        (["--recall-floor", "nan"], "--recall-floor: nan is not a share in [0, 1]"),
        (["--metric", "iou"], "--metric: 'iou' is not one of competition, dataset"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_option(tmp_path, capsys, argv, message):
    # refused before any file is read: the run need not exist
    assert main(["tune", str(tmp_path / "no-run"), *argv, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"steelseg tune: error: {message}\n"


def test_a_recall_floor_that_is_not_a_number_is_argparses_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["tune", "run", "--recall-floor", "most"])
    assert exited.value.code == 2
    assert "argument --recall-floor: invalid float value: 'most'" in capsys.readouterr().err


def test_tune_end_to_end_keeps_the_class_on_and_says_how_it_scored(tmp_path, capsys):
    """One true 9-pixel defect and four clean images with a 9-pixel false positive, all at 0.9:
    the sources' own setting switches the class off (4/5); tuned, it stays on (1/5)."""
    config = load_config(None, [f"data.class_names={json.dumps(['pits'])}"])
    probs, masks = np.full((5, 1, 8, 8), 0.1), np.zeros((5, 1, 8, 8), bool)
    probs[:, 0, 2:5, 2:5] = 0.9
    masks[0, 0, 2:5, 2:5] = True
    run = tmp_path / "run"
    run.mkdir()
    rundir.save_config(run, config)
    np.savez(
        run / rundir.OOF,
        image_ids=np.array([f"{i}.jpg" for i in range(5)]),
        scores=probs.max(axis=(2, 3)).astype(np.float32),
        labels=masks.any(axis=(2, 3)),
        image_shapes=np.array([(8, 8)] * 5, dtype=np.int64),
        backend=np.array("test"),
        probs=probs.astype(np.float16),
        masks=masks,
        shapes=np.array([(8, 8)] * 5, dtype=np.int64),
    )
    (run / rundir.POSTPROCESS).write_text(PostProcess.uniform(1, 0.5, NEVER).to_json())
    grids = [
        "--pixel-grid",
        "0.5",
        "--component-grid",
        "0",
        "--area-grid",
        "0",
        "--head-grid",
        "0.5",
        "--peak-grid",
        "0.5",
    ]
    assert main(["tune", str(run), *grids, "--recall-floor", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "metric: competition Dice" in out and "defect recall floor: 1 " in out
    assert "pits: the sources' own setting never predicts it (switched off): not kept" in out
    assert next(line for line in out.splitlines() if line.startswith("after")).split() == ["after", "0.2000", "0.2000"]
    assert PostProcess.from_json((run / rundir.POSTPROCESS).read_text(), 1).min_area[0] == 0
    assert main(["tune", str(run), *grids, "--allow-off", "--quiet"]) == 0
    assert "classes may be switched off: yes" in capsys.readouterr().out
