"""make_plan with a probe of known numbers: the budget's arithmetic checked by hand."""

from __future__ import annotations

import pytest
from test_rules import fingerprint

from steelseg.pipeline import rules
from steelseg.pipeline.planner import make_plan
from steelseg.training.probe import Probe

GIB = 2**30


def fake_measure(train_s=0.05, predict_s=0.02, per_sample=50 * 2**20):
    calls = []

    def measure(config, crop, image, batch, device, dataset=None):
        calls.append((config.model.task, crop, image, batch))
        return Probe(train_s, predict_s, per_sample, batch, crop, image, "bf16-mixed", device)

    measure.calls = calls
    return measure


def test_members_share_the_training_time_and_the_estimate_fits_the_budget():
    fp = fingerprint(images=1000, empty=0.75)
    measure = fake_measure()
    plan = make_plan(fp, ["a", "b"], 60, "cpu", measure=measure, free_bytes=8 * GIB)
    assert [m.name for m in plan.members] == ["unet", "screen", "two-head"]
    unet, screen, two_head = plan.members
    assert screen.minutes == pytest.approx(unet.minutes / 2, abs=0.01)  # the screen's share is half
    assert two_head.minutes == unet.minutes
    # training of all members on all folds + the other stages' estimates stay within the budget
    assert sum(m.minutes for m in plan.members) * plan.k == pytest.approx(plan.estimate["train"], rel=0.01)
    assert sum(plan.estimate.values()) <= 60
    # memory: 4 GiB free for samples of 50 MiB -> 81 -> capped at 8 on a CPU; probed at 2 first, then at 8
    assert {m.settings["data.batch_size"] for m in plan.members} == {8}
    assert [c[3] for c in measure.calls] == [2, 8, 2, 8, 2, 8]
    assert unet.settings["train.oof_tta"] == plan.tta
    assert unet.settings["train.max_minutes"] == pytest.approx(unet.minutes * 1.25, abs=0.01)


def test_extra_candidates_are_dropped_when_time_is_short():
    fp = fingerprint(images=1000, empty=0.75)
    plan = make_plan(fp, ["a", "b"], 20, "cpu", measure=fake_measure(train_s=0.3), free_bytes=8 * GIB)
    assert [m.name for m in plan.members] == ["unet"]
    assert "two-head dropped" in plan.reasons["families"] and "screen dropped" in plan.reasons["families"]


def test_a_budget_with_no_time_to_train_is_refused():
    fp = fingerprint(images=1000)
    with pytest.raises(rules.BudgetError, match="larger --budget"):
        make_plan(fp, ["a", "b"], 1, "cpu", measure=fake_measure(predict_s=0.5), free_bytes=8 * GIB)


def test_unlabelled_images_plan_a_pseudo_round_and_keep_time_for_it():
    fp = fingerprint(images=1000, empty=0.2)
    without = make_plan(fp, ["a", "b"], 60, "cpu", measure=fake_measure(), free_bytes=8 * GIB)
    with_pseudo = make_plan(fp, ["a", "b"], 60, "cpu", measure=fake_measure(), free_bytes=8 * GIB, unlabelled=True)
    assert (without.pseudo.rounds, with_pseudo.pseudo.rounds) == (0, 1)
    assert with_pseudo.members[0].minutes == pytest.approx(without.members[0].minutes * 0.6, rel=0.01)
