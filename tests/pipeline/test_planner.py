"""make_plan with a probe of known numbers: the budget's arithmetic checked by hand."""

from __future__ import annotations

import pytest
from test_rules import fingerprint

from steelseg.pipeline import rules
from steelseg.pipeline.planner import make_plan
from steelseg.training.probe import Probe

GIB = 2**30


def fake_measure(train_s=0.05, predict_s=0.02, per_sample=50 * 2**20):
    """Seconds per image as given for 256x512 crops and 256x1600 images, in proportion to the
    pixels for others (as a network's cost is)."""
    calls = []

    def measure(config, crop, image, batch, device, dataset=None):
        calls.append((config.model.task, crop, image, batch))
        train = train_s * crop[0] * crop[1] / (256 * 512)
        predict = predict_s * image[0] * image[1] / (256 * 1600)
        return Probe(train, predict, per_sample, batch, crop, image, "bf16-mixed", device)

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
    # training of all members on the trained folds + the other stages' estimates fill the budget
    trained = len(plan.trained_folds())
    assert sum(m.minutes for m in plan.members) * trained == pytest.approx(plan.estimate["train"], rel=0.01)
    assert sum(plan.estimate.values()) + rules.FIXED_SECONDS / 60 == pytest.approx(60, abs=0.05)
    # each segmenter's fold model gets MIN_FOLD_STEPS steps; one more fold would not (give or take
    # the few seconds more of out-of-fold prediction and export that one more fold takes):
    # a step of 8 images takes 0.4 s; the validations 8 x 200 images x 0.02 s = 32 s
    steps = (unet.minutes * 60 - 32) / 0.4
    assert (trained, steps) == (2, pytest.approx(1522, abs=2))
    assert steps * trained / (trained + 1) < rules.MIN_FOLD_STEPS * 1.02
    # memory: 4 GiB free for samples of 50 MiB -> 81 -> capped at 8 on a CPU; probed at 2 first, then at 8
    assert {m.settings["data.batch_size"] for m in plan.members} == {8}
    assert [c[3] for c in measure.calls] == [2, 8, 2, 8, 2, 8]
    assert unet.settings["train.oof_tta"] == plan.tta
    assert unet.settings["train.max_minutes"] == pytest.approx(unet.minutes * 1.25, abs=0.01)


def test_extra_candidates_are_dropped_when_time_is_short():
    # defects of 10.5 px (25th percentile) would fall below 6 px at half the resolution: it stays
    fp = fingerprint(images=1000, empty=0.75, extent=14)
    plan = make_plan(fp, ["a", "b"], 20, "cpu", measure=fake_measure(train_s=0.3), free_bytes=8 * GIB)
    assert [m.name for m in plan.members] == ["unet"]
    assert "two-head dropped" in plan.reasons["families"] and "screen dropped" in plan.reasons["families"]
    assert plan.members[0].settings["model.input_scale"] == 1.0


def test_a_short_budget_halves_the_resolution_before_it_drops_the_screen():
    # at full resolution a fold's unet alone would get (1200 s - 60 fixed - 20 export - 12 s of
    # flipped out-of-fold prediction - validations) / (0.3 s x 8 images) < 1000 steps; at half the
    # resolution a step costs a quarter: the unet and its screen (half a unet's share) get 2/3 and
    # 1/3 of the time, and the unet still over 1000 steps; a two-headed net would leave it too few
    fp = fingerprint(images=1000, empty=0.75)  # 25th-percentile defect 30 px: 15 px at half
    measure = fake_measure(train_s=0.3)
    plan = make_plan(fp, ["a", "b"], 20, "cpu", measure=measure, free_bytes=8 * GIB)
    assert [m.name for m in plan.members] == ["unet", "screen"]
    assert "two-head dropped" in plan.reasons["families"]
    for member in plan.members:
        assert member.settings["model.input_scale"] == 0.5
        assert (member.settings["data.crop_height"], member.settings["data.crop_width"]) == (128, 256)
    # the unet probed at full resolution, then at half; the other candidates at half only
    assert measure.calls[:4] == [
        ("segment", (256, 512), (256, 1600), 2),
        ("segment", (256, 512), (256, 1600), 8),
        ("segment", (128, 256), (128, 800), 2),
        ("segment", (128, 256), (128, 800), 8),
    ]
    assert {(c[0], c[1]) for c in measure.calls[4:]} == {("classify", (128, 256)), ("two_head", (128, 256))}
    assert "half of 1" in plan.reasons["input scale"] and "optimiser steps in a fold" in plan.reasons["input scale"]


def test_a_budget_with_no_time_to_train_is_refused():
    fp = fingerprint(images=1000)
    with pytest.raises(rules.BudgetError, match="larger --budget"):
        make_plan(fp, ["a", "b"], 1, "cpu", measure=fake_measure(predict_s=0.5), free_bytes=8 * GIB)


def test_unlabelled_images_plan_a_pseudo_round_and_keep_time_for_it():
    fp = fingerprint(images=1000, empty=0.2)
    without = make_plan(fp, ["a", "b"], 60, "cpu", measure=fake_measure(), free_bytes=8 * GIB)
    with_pseudo = make_plan(fp, ["a", "b"], 60, "cpu", measure=fake_measure(), free_bytes=8 * GIB, unlabelled=True)
    assert (without.pseudo.rounds, with_pseudo.pseudo.rounds) == (0, 1)
    # 40% of the training time kept for retraining (the other stages shrink a little with fewer folds)
    assert with_pseudo.estimate["train"] == pytest.approx(without.estimate["train"] * 0.6, rel=0.05)


def test_a_small_budget_trains_fewer_fold_models_for_longer():
    fp = fingerprint(images=1000, empty=0.2)
    small = make_plan(fp, ["a", "b"], 20, "cpu", measure=fake_measure(), free_bytes=8 * GIB)
    large = make_plan(fp, ["a", "b"], 120, "cpu", measure=fake_measure(), free_bytes=8 * GIB)
    assert small.k == large.k == 5
    assert len(small.trained_folds()) < len(large.trained_folds())
    assert small.members[0].minutes > 20 / 5  # one fold model gets more than a fifth of the budget
    # the out-of-fold images predicted are those of the trained folds only
    assert small.estimate["out-of-fold prediction"] < large.estimate["out-of-fold prediction"]


def test_flips_are_dropped_before_a_budget_is_refused():
    fp = fingerprint(images=1000, empty=0.2, extent=14)  # defects too small to halve the resolution
    # predicting 200 out-of-fold images x 3 views x 2 s = 20 min > 15% of 30 min; 2 views also too many
    plan = make_plan(fp, ["a", "b"], 30, "cpu", measure=fake_measure(predict_s=2.0), free_bytes=8 * GIB)
    assert (plan.tta, len(plan.trained_folds())) == ("none", 1)


def test_a_distilled_student_gets_its_share_less_the_teacher_s_predictions():
    fp = fingerprint(images=1000, empty=0.2)
    plan = make_plan(fp, ["a", "b"], 60, "cpu", measure=fake_measure(), free_bytes=8 * GIB, distill="default")
    without = make_plan(fp, ["a", "b"], 42, "cpu", measure=fake_measure(), free_bytes=8 * GIB)
    # 30% of 60 min kept: the system is planned as on a 42-minute budget
    assert plan.estimate["distill"] == 18.0
    assert [m.minutes for m in plan.members] == [m.minutes for m in without.members]
    assert sum(plan.estimate.values()) + rules.FIXED_SECONDS / 60 == pytest.approx(60, abs=0.05)
    # the teacher: 1000 images x 3 flip views x the trained fold models x 0.02 s
    student, trained = plan.distill, len(plan.trained_folds())
    assert plan.tta == "both"
    assert student.teacher_minutes == pytest.approx(1000 * 3 * trained * 0.02 / 60, abs=0.01)
    assert student.minutes == pytest.approx(18 - student.teacher_minutes - rules.EXPORT_SECONDS / 60, abs=0.01)
    assert student.student == "default" and student.settings["data.batch_size"] == 8
    assert student.settings["train.max_minutes"] == pytest.approx(student.minutes * 1.25, abs=0.01)
    assert "student trains" in plan.reasons["distill"]


def test_no_time_left_to_distill_is_refused():
    fp = fingerprint(images=1000, empty=0.2)
    with pytest.raises(rules.BudgetError, match="no time to distill"):
        make_plan(fp, ["a", "b"], 30, "cpu", measure=fake_measure(predict_s=0.2), free_bytes=8 * GIB, distill="default")
