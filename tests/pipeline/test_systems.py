"""The seed systems as plans: each one's shape as its write-up says, every member a valid
config; and (slow, in CI) each runs end to end through fit at the tiny scale."""

from __future__ import annotations

import json

import pytest
from test_rules import fingerprint

from steelseg.errors import UsageError
from steelseg.pipeline.fit import FitRequest, fit
from steelseg.pipeline.systems import SYSTEMS, system_plan

FOUR_CLASSES = fingerprint(shares=(0.2, 0.05, 0.4, 0.1))


@pytest.mark.parametrize("name", list(SYSTEMS))
@pytest.mark.parametrize("scale", ["full", "tiny"])
def test_every_member_of_every_system_is_a_valid_config(name, scale, tmp_path):
    plan = system_plan(name, FOUR_CLASSES, 60, scale)
    assert plan.select == "all" and plan.system == name
    for member in plan.members:
        config = member.config(tmp_path, tmp_path / "folds.csv")
        assert config.train.oof_tta == plan.tta
        if scale == "tiny":
            assert config.model.encoder_name == "tu-test_resnet" and config.train.epochs == 1
            assert all(stage.train.epochs == 1 for _, stage in config.stage_configs())


def test_the_systems_keep_their_teams_shapes():
    first = system_plan("first_place", FOUR_CLASSES, 60)
    tasks = [m.config(".", "f").model.task for m in first.members]
    assert tasks == ["classify", "classify", "segment", "segment"]
    assert (first.k, first.tta, first.pseudo.rounds, first.pseudo.rule) == (5, "both", 2, "first")
    assert len(first.members[2].config(".", "f").stages) == 1  # BCE, then the BCE + Dice fine-tuning stage
    third = system_plan("third_place", FOUR_CLASSES, 60)
    assert len(third.members) * third.k == 9 and third.tta == "none"
    fourth = system_plan("fourth_place", FOUR_CLASSES, 60)
    assert {m.config(".", "f").model.task for m in fourth.members} == {"two_head"}
    fifth = system_plan("fifth_place", FOUR_CLASSES, 60)
    assert len(fifth.members) * fifth.k == 8 and fifth.clusters and fifth.tune.min_area_quantile == 0.02
    tenth = system_plan("tenth_place", FOUR_CLASSES, 60)
    assert [m.config(".", "f").data.classes for m in tenth.members[1:]] == [[1], [2], [3], [4]]  # one per class


def test_an_unknown_system_names_the_choices():
    with pytest.raises(UsageError, match="--system second_place: unknown; choose one of first_place"):
        system_plan("second_place", FOUR_CLASSES, 60)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_each_system_runs_end_to_end_at_the_tiny_scale(name, tiny_data, tmp_path):
    out = tmp_path / name
    fit(FitRequest(str(tiny_data), out, 10, system=name, scale="tiny", progress=False))
    selection = json.loads((out / "selection.json").read_text())
    assert selection["shipped"]["members"]
    state = json.loads((out / "fit.json").read_text())
    assert all(record["done"] for record in state["stages"].values())
    assert (out / "report.html").is_file() and (out / "ensemble.yaml").is_file()
