"""``steelseg fit --distill STUDENT``: the shipped system is the teacher of one student network,
a normal run in DIR/student, within the budget; a fit killed after the stage does not train it
again; a student distill cannot train is refused before any training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.files import rundir
from steelseg.inference.predictor import Predictor
from steelseg.pipeline import stages
from steelseg.pipeline.fit import FitRequest, fit
from steelseg.pipeline.plan import DistillPlan, MemberPlan, Plan, TunePlan, read_plan, write_plan
from tiny_runs import TINY_SETTINGS

STUDENT = {k: v for k, v in TINY_SETTINGS.items() if k != "train.oof_tta"}


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    """One tiny U-Net on 2 folds and a tiny student (its settings kept when --distill names it)."""
    plan = Plan(
        budget_minutes=10,
        k=2,
        tta="hflip",
        members=[MemberPlan(name="unet", settings=dict(TINY_SETTINGS), minutes=0.5)],
        tune=TunePlan(area_grid=[0, 20]),
        distill=DistillPlan(student="default", settings=STUDENT, minutes=0.5),
    )
    return write_plan(tmp_path_factory.mktemp("plan") / "plan.yaml", plan)


@pytest.fixture(scope="module")
def distilled(tiny_data, plan_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "system"
    args = ["fit", str(tiny_data), "--out", str(out), "--plan", str(plan_file), "--budget", "10", "--quiet"]
    assert main([*args, "--distill", "default"]) == 0
    return out


def test_the_student_is_a_finished_run_taught_by_the_system(distilled, tiny_data, tmp_path):
    student = distilled / stages.STUDENT
    assert (student / rundir.FINISHED).exists() and (student / rundir.ONNX).is_file()
    config = load_config(student / rundir.CONFIG)
    assert config.distill.teacher == [str(distilled.absolute())]
    assert config.model.encoder_name == "tu-test_resnet"  # the plan's student settings were kept
    assert config.train.max_minutes is not None and config.train.max_minutes <= 0.5 * 1.25 + 1e-9
    state = json.loads((distilled / "fit.json").read_text())
    assert state["stages"]["distill"]["done"] and "validation Dice" in state["stages"]["distill"]["note"]
    assert read_plan(distilled / "plan.yaml").distill.student == "default"
    # one network: the student predicts as a run does, with its own single model
    predictor = Predictor.from_run_dir(student)
    assert len(predictor.members) == 1
    out = tmp_path / "pred.csv"
    assert main(["predict", str(student), str(tiny_data / "train_images"), "--out", str(out), "--quiet"]) == 0
    assert out.read_text().startswith("ImageId")


def test_the_teacher_s_cached_targets_are_the_system_s_probabilities(distilled, tiny_data):
    from steelseg.files.images import read_gray
    from steelseg.inference.teacher_cache import TeacherTargets

    cache = TeacherTargets.of_folder(distilled / stages.STUDENT / "teacher" / "labelled", has_pixels=True)
    assert len(cache) > 0
    system = Predictor.from_run_dir(distilled)
    name = sorted(cache.where)[0]
    expected = system.predict_outputs(read_gray(tiny_data / "train_images" / name)[None])[0].pixels
    assert np.abs(cache.load(name).pixels.astype(np.float32) - expected).max() < 2e-3  # float16 storage


def test_a_fit_killed_after_the_stage_does_not_train_the_student_again(tiny_data, plan_file, tmp_path, monkeypatch):
    out = tmp_path / "system"
    request = FitRequest(str(tiny_data), out, 10, plan=str(plan_file), progress=False, distill="default")

    def killed(_ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "run_report", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(request)
    weights = (out / stages.STUDENT / rundir.WEIGHTS).read_bytes()
    monkeypatch.undo()
    fit(request)
    assert (out / stages.REPORT).is_file()
    assert (out / stages.STUDENT / rundir.WEIGHTS).read_bytes() == weights


def test_a_student_distill_cannot_train_is_one_line(tiny_data, tmp_path, capsys):
    out = tmp_path / "system"
    assert main(["fit", str(tiny_data), "--out", str(out), "--distill", "seventh_place_softmax", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--distill seventh_place_softmax" in err and "sigmoid" in err and "\n" not in err
    assert not out.exists()
    assert main(["fit", str(tiny_data), "--out", str(out), "--distill", "no-such-recipe", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no-such-recipe" in err and "\n" not in err
