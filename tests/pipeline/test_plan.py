"""Plan files: written, edited by hand, read back; a bad one is one line naming the key."""

from __future__ import annotations

import pytest

from steelseg.pipeline.plan import MemberPlan, Plan, PlanError, read_plan, write_plan


def _plan() -> Plan:
    member = MemberPlan(name="unet", settings={"train.epochs": 3, "data.crop_height": None}, minutes=2.5)
    return Plan(budget_minutes=30, k=3, members=[member], reasons={"folds": "because"})


def test_a_written_plan_reads_back_equal(tmp_path):
    path = write_plan(tmp_path / "plan.yaml", _plan())
    assert path.read_text().startswith("# steelseg plan")
    assert read_plan(path) == _plan()


def test_a_members_config_is_its_recipe_with_the_settings_the_root_and_the_folds(tmp_path):
    config = _plan().members[0].config(tmp_path / "data", tmp_path / "folds.csv")
    assert config.train.epochs == 3 and config.data.crop_height is None
    assert config.data.root == str(tmp_path / "data") and config.data.folds == str(tmp_path / "folds.csv")
    assert config.model.encoder_name == "resnet18"  # the default recipe's


@pytest.mark.parametrize(
    "edit, message",
    [
        (("k: 3", "k: 1"), "k: Input should be greater than or equal to 2"),
        (("budget_minutes: 30", "budget_minutes: soon"), "budget_minutes"),
        (("name: unet", "name: ../x"), "members.0.name"),
        (("tta: both", "tta: both\nextra: 1"), "extra"),
        (("k: 3", "k: [3"), "not valid YAML"),
    ],
)
def test_a_bad_edit_is_one_line_naming_the_key(tmp_path, edit, message):
    path = write_plan(tmp_path / "plan.yaml", _plan())
    path.write_text(path.read_text().replace(*edit))
    with pytest.raises(PlanError, match=message) as err:
        read_plan(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_bad_setting_names_the_member(tmp_path):
    member = MemberPlan(name="unet", settings={"train.epochz": 3}, minutes=1)
    with pytest.raises(Exception, match="member unet"):
        member.config(tmp_path, tmp_path / "folds.csv")


def test_two_members_of_one_name_are_refused(tmp_path):
    plan = _plan()
    plan.members.append(plan.members[0])
    path = write_plan(tmp_path / "plan.yaml", plan)
    with pytest.raises(PlanError, match="two members are named 'unet'"):
        read_plan(path)
