"""A pseudo-label round inside ``fit``: the labelled folder joins the training side of every
shipped member, retrained from its own fold models, and selection runs again with them.
The labelling itself (``inference.pseudo``, tested there) is replaced by a folder of known
labels, since a one-epoch network is sure of nothing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from steelseg.files import rundir
from steelseg.files.synth import write_dataset
from steelseg.inference.pseudo import INFO_FILE
from steelseg.pipeline import pseudo_rounds
from steelseg.pipeline.fit import FitRequest, fit
from steelseg.pipeline.plan import MemberPlan, Plan, PseudoPlan, TunePlan, write_plan
from tiny_runs import TINY_SETTINGS as TINY


@pytest.fixture
def labelled_by_hand(monkeypatch):
    calls = []

    def fake(models, images, out, rule, progress):
        calls.append((models, images, rule))
        write_dataset(out, 4, seed=9, height=128, width=512, progress=False)  # other image ids than the data's
        (out / INFO_FILE).write_text("{}")
        return SimpleNamespace(kept=4)

    monkeypatch.setattr(pseudo_rounds, "pseudo_labels", fake)
    return calls


def test_a_round_retrains_the_shipped_members_on_the_pseudo_labels(tiny_data, labelled_by_hand, tmp_path):
    plan = Plan(
        budget_minutes=10,
        k=2,
        tta="hflip",
        members=[MemberPlan(name="unet", settings=dict(TINY), minutes=0.5)],
        tune=TunePlan(area_grid=[0, 20, 100]),
        pseudo=PseudoPlan(rounds=1, rule="tenth", minutes=0.25),
    )
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    out = tmp_path / "system"
    fit(FitRequest(str(tiny_data), out, 10, plan=str(plan_file), unlabelled=str(tmp_path), progress=False))
    [(models, images, rule)] = labelled_by_hand
    assert models == [out] and rule == "tenth"  # the system shipped so far labels them
    for fold in (0, 1):
        config = rundir.load_run_config(out / "members" / "unet.p1" / f"fold-{fold}")
        assert config.data.pseudo == [str(out / "pseudo" / "round-1")]
        assert config.model.init_from == str(out / "members" / "unet" / f"fold-{fold}")
    selection = json.loads((out / "selection.json").read_text())
    assert ["unet", "unet.p1"] in [step["members"] for step in selection["steps"]]  # a candidate again
    state = json.loads((out / "fit.json").read_text())
    assert "round 1: 4 images labelled" in state["stages"]["pseudo"]["note"]


def test_without_unlabelled_images_the_rounds_are_skipped_and_said(tiny_data, tmp_path):
    plan = Plan(
        budget_minutes=10,
        k=2,
        members=[MemberPlan(name="unet", settings=dict(TINY), minutes=0.5)],
        pseudo=PseudoPlan(rounds=2),
    )
    out = tmp_path / "system"
    fit(FitRequest(str(tiny_data), out, 10, plan=str(write_plan(tmp_path / "plan.yaml", plan)), progress=False))
    state = json.loads((out / "fit.json").read_text())
    assert state["stages"]["pseudo"]["note"] == "skipped: no unlabelled images"
    assert any("no --unlabelled images" in cut for cut in state["cuts"])
