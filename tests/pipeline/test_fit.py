"""``steelseg fit`` end to end on a tiny plan: the system folder works wherever a run does, a
kill anywhere continues to the same result, and the arguments must be repeated to continue."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.inference.predictor import Predictor
from steelseg.pipeline import stages
from steelseg.pipeline.fit import FitRequest, fit
from steelseg.pipeline.plan import MemberPlan, Plan, TunePlan, write_plan
from tiny_runs import TINY_SETTINGS

TINY = TINY_SETTINGS


def tiny_plan_file(folder):
    """Two tiny candidates (a U-Net and a two-headed net) on two folds, flips as TTA."""
    members = [
        MemberPlan(name="unet", settings=dict(TINY), minutes=0.5),
        MemberPlan(name="twohead", settings=dict(TINY, **{"model.task": "two_head"}), minutes=0.5),
    ]
    plan = Plan(budget_minutes=10, k=2, tta="hflip", members=members, tune=TunePlan(area_grid=[0, 20, 100]))
    return write_plan(folder / "plan.yaml", plan)


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    return tiny_plan_file(tmp_path_factory.mktemp("plan"))


@pytest.fixture(scope="module")
def fitted(tiny_data, tiny_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "system"
    assert main(["fit", str(tiny_data), "--out", str(out), "--plan", str(tiny_plan), "--budget", "10", "--quiet"]) == 0
    return out


def test_the_system_folder_holds_every_stage_s_files(fitted):
    for name in (
        "fit.json",
        "fingerprint.json",
        "plan.yaml",
        "folds.csv",
        "selection.json",
        "report.html",
        rundir.ENSEMBLE,
        rundir.POSTPROCESS,
    ):
        assert (fitted / name).is_file(), name
    state = json.loads((fitted / "fit.json").read_text())
    assert all(record["done"] for record in state["stages"].values())
    assert sorted(state["jobs"]) == ["twohead/fold-0", "twohead/fold-1", "unet/fold-0", "unet/fold-1"]
    for member in ("unet", "twohead"):
        assert (fitted / "members" / member / rundir.CV_TABLE).is_file()
    selection = json.loads((fitted / "selection.json").read_text())
    shipped = selection["shipped"]["members"]
    assert shipped and set(shipped) <= {"unet", "twohead"}
    assert selection["shipped"]["score"] >= selection["best_single_score"]
    for member in shipped:  # every shipped fold model was exported
        assert all((run / rundir.ONNX).is_file() for run in (fitted / "members" / member).glob("fold-*"))


def test_out_of_fold_files_were_made_with_the_shipped_tta(fitted):
    oof = np.load(fitted / "members" / "unet" / "fold-0" / rundir.OOF)
    assert str(oof["tta"]) == "hflip"


def test_predict_and_the_predictor_take_the_system_folder(fitted, tiny_data, tmp_path):
    predictor = Predictor.from_run_dir(fitted)
    shipped = json.loads((fitted / "selection.json").read_text())["shipped"]["members"]
    assert len(predictor.members) == 2 * len(shipped)  # each shipped member's two fold models
    out = tmp_path / "pred.csv"
    assert main(["predict", str(fitted), str(tiny_data / "train_images"), "--out", str(out), "--quiet"]) == 0
    assert out.read_text().startswith("ImageId")
    images = ["--images", str(tiny_data / "train_images")]
    assert main(["score", str(tiny_data / "train.csv"), str(out), "--run", str(fitted), *images]) == 0


def test_a_kill_after_any_stage_continues_to_the_same_result(fitted, tiny_data, tiny_plan, tmp_path, monkeypatch):
    out = tmp_path / "system"
    request = FitRequest(str(tiny_data), out, 10, plan=str(tiny_plan), progress=False)

    def killed(_ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "run_select", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(request)
    assert not (out / "selection.json").exists()
    monkeypatch.undo()
    fit(request)
    for name in ("selection.json", rundir.POSTPROCESS, rundir.ENSEMBLE):
        assert (out / name).read_text().replace(str(out), "") == (fitted / name).read_text().replace(str(fitted), "")


def test_continuing_with_other_arguments_is_refused(fitted, tiny_data, tiny_plan, capsys):
    code = main(["fit", str(tiny_data), "--out", str(fitted), "--plan", str(tiny_plan), "--budget", "20", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "budget_minutes differ" in err and "\n" not in err


def test_the_service_serves_the_system_folder(fitted, tiny_data):
    from fastapi.testclient import TestClient

    from steelseg.service.app import create_app

    image = next((tiny_data / "train_images").iterdir())
    client = TestClient(create_app(Predictor.load([fitted])))
    response = client.post("/predict", files={"file": (image.name, image.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert [c["name"] for c in response.json()["classes"]] == ["pits", "crazing", "scratches", "blotches"]


def test_a_plan_that_trains_one_of_its_folds_tunes_on_that_fold_s_images(tiny_data, tmp_path):
    plan = Plan(
        budget_minutes=10,
        k=3,
        folds_trained=1,
        tta="none",
        members=[MemberPlan(name="unet", settings=dict(TINY), minutes=0.5)],
        tune=TunePlan(area_grid=[0, 20]),
        export=False,
    )
    out = tmp_path / "system"
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    assert main(["fit", str(tiny_data), "--out", str(out), "--plan", str(plan_file), "--quiet"]) == 0
    assert [p.name for p in (out / "members" / "unet").glob("fold-*")] == ["fold-0"]
    with open(out / "folds.csv", newline="") as handle:
        folds = [row["Fold"] for row in csv.DictReader(handle)]
    in_fold_0 = folds.count("0")
    # selection and tuning saw exactly the images that the one fold model never trained on
    assert 0 < json.loads((out / "selection.json").read_text())["images"] == in_fold_0 < len(folds)
    assert len(Predictor.from_run_dir(out).members) == 1


def test_a_plan_cannot_train_more_folds_than_it_has(tmp_path):
    text = tiny_plan_file(tmp_path).read_text().replace("folds_trained: null", "folds_trained: 3")
    (tmp_path / "plan.yaml").write_text(text)
    from steelseg.pipeline.plan import PlanError, read_plan

    with pytest.raises(PlanError, match="folds_trained \\(3\\) is more than k \\(2\\)"):
        read_plan(tmp_path / "plan.yaml")
