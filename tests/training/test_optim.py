import math

import pytest
import torch

from steelseg.config import SchedulerConfig, load_config
from steelseg.training.optim import build_optimizer, build_scheduler, cosine_factor, flat_cosine_factor, noam_factor


@pytest.mark.parametrize(
    "name, step, total, params, expected",
    [
        ("cosine start", 0, 100, {}, 1.0),
        ("cosine middle", 50, 100, {}, 0.5),
        ("cosine end", 100, 100, {}, 0.0),
        ("cosine floor", 100, 100, {"min_factor": 0.1}, 0.1),
        ("cosine warm-up", 4, 100, {"warmup_steps": 10}, 0.5),
        ("flat part", 69, 100, {"flat_fraction": 0.7}, 1.0),
        ("after flat: half-way down", 85, 100, {"flat_fraction": 0.7}, 0.5),
    ],
)
def test_cosine_schedules(name, step, total, params, expected):
    factor = cosine_factor if name.startswith("cosine") else flat_cosine_factor
    assert factor(step, total, **params) == pytest.approx(expected, abs=1e-9), name


def test_noam_rises_then_decays_as_inverse_square_root():
    assert noam_factor(0, 0, warmup_steps=10) == pytest.approx(0.1)
    assert noam_factor(9, 0, warmup_steps=10) == pytest.approx(1.0)
    assert noam_factor(39, 0, warmup_steps=10) == pytest.approx(math.sqrt(10 / 40))


@pytest.mark.parametrize(
    "name, kind",
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("radam", torch.optim.RAdam), ("sgd", torch.optim.SGD)],
)
def test_optimizers(name, kind):
    config = load_config(
        None, [f"train.optimizer={name}", "train.lr=0.01", "train.weight_decay=0.001", "train.momentum=0.8"]
    ).train
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], config)
    assert isinstance(optimizer, kind)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 0.001
    if name == "sgd":
        assert group["momentum"] == 0.8


def test_step_schedule_moves_the_learning_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    entry = build_scheduler(optimizer, SchedulerConfig(name="cosine"), total_steps=10)
    assert entry["interval"] == "step"
    for _ in range(5):
        optimizer.step()
        entry["scheduler"].step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_plateau_halves_after_patience_and_waits_out_its_cooldown():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    entry = build_scheduler(optimizer, SchedulerConfig(name="plateau"), total_steps=10)
    assert entry["monitor"] == "val_dice_tuned" and entry["interval"] == "epoch"
    plateau = entry["scheduler"]
    lrs = []
    for score in [0.5] + [0.4] * 10:  # the validation Dice never improves again
        plateau.step(score)
        lrs.append(optimizer.param_groups[0]["lr"])
    # 3rd place: factor 0.5, patience 3, cooldown 3
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert build_scheduler(optimizer, SchedulerConfig(), total_steps=10) is None
