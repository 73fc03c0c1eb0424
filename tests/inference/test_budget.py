"""--time-budget: the projected total from the first batches, an early stop, or TTA dropped.

The networks here advance a fake clock instead of sleeping, so every projection is a
hand-computable number and the tests take no time."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import steelseg.inference.budget as budget_module
from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.core.outputs import PIXELS
from steelseg.core.postprocess import PostProcess
from steelseg.inference.ensemble import TTA, Member
from steelseg.inference.predictor import Budget, Predictor, TimeBudgetError


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


class SlowRamp:
    """A network whose first call takes ``warm_up`` seconds and every later one ``per_call``
    (on the fake clock); its output is a column ramp (0 left, 1 right): under hflip TTA the
    mean of the ramp and its mirror, 0.5 everywhere."""

    name = "slow"

    def __init__(self, clock, warm_up, per_call):
        self.clock, self.warm_up, self.per_call, self.calls = clock, warm_up, per_call, 0

    def __call__(self, x):
        self.clock.now += self.warm_up if self.calls == 0 else self.per_call
        self.calls += 1
        ramp = np.linspace(0, 1, x.shape[-1], dtype=np.float32)
        return {PIXELS: np.ascontiguousarray(np.broadcast_to(ramp, (len(x), 2, *x.shape[2:])))}

    def describe(self):
        return "slow fake"


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(budget_module, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


@pytest.fixture
def folder(tmp_path):
    """8 small images: with batch size 1, eight batches."""
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (4, 5), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


def slow_predictor(clock, warm_up, per_call, views=("none",)) -> Predictor:
    config = load_config(None, ["data.class_names=[a, b]"])
    member = Member("slow", config, SlowRamp(clock, warm_up, per_call), [0, 1], views=views)
    return Predictor([member], PostProcess.uniform(2, 0.5, 0), ["a", "b"], batch_size=1)


def test_a_prediction_over_budget_stops_after_the_first_batches(clock, folder):
    """Warm-up 30 s, then 6 s an image: after 3 of 8 images (42 s), 42 + 5 x 6 = 72 s > 60."""
    predictor = slow_predictor(clock, warm_up=30, per_call=6)
    message = (
        "projected 1.2 min for 8 images (6.00 s per image after the first batch), over the --time-budget of 1 min; "
        "use fewer members or TTA views, --drop-tta, or a larger budget"
    )
    with pytest.raises(TimeBudgetError) as caught:
        predictor.predict_folder(folder, progress=False, budget=Budget(1))
    assert str(caught.value) == message
    assert predictor.backend.calls == 3  # stopped long before the folder was done


def test_a_prediction_within_budget_finishes_with_its_projection(clock, folder):
    predictor = slow_predictor(clock, warm_up=30, per_call=6)
    budget = Budget(1.25)  # 75 s
    table = predictor.predict_folder(folder, progress=False, budget=budget)
    assert len(table.image_ids) == 8 and predictor.backend.calls == 8
    assert budget.projected == 72.0  # 42 s + 5 x 6 s, from the third batch on (the seventh projects the same)
    assert clock.now == 72.0  # the projection was right


def test_drop_tta_keeps_within_budget(clock, folder, capsys):
    """Two views at 4 s each: after 3 images (30 + 4 + 2 x 8 = 50 s) 50 + 5 x 8 = 90 s > 72 s,
    so TTA goes; one view at 4 s: 50 + 5 x 4 = 70 s."""
    predictor = slow_predictor(clock, warm_up=30, per_call=4, views=TTA["hflip"])
    budget = Budget(1.2, drop_tta=True)
    results = list(predictor.iter_folder(folder, progress=False, budget=budget))
    assert len(results) == 8
    assert [m.views for m in predictor.members] == [("none",)]
    assert predictor.backend.calls == 3 * 2 + 5
    assert "time budget: projected 1.5 min > 1.2 min; TTA dropped for the remaining 5 images" in capsys.readouterr().out
    assert budget.projected == 70.0 and clock.now == 70.0
    ramp = np.linspace(0, 1, 5)
    for index, (_, _, outputs) in enumerate(results):  # the first three with TTA, the rest without
        expected = np.full(5, 0.5) if index < 3 else ramp
        np.testing.assert_allclose(outputs.pixels[0], np.broadcast_to(expected, (4, 5)), atol=1e-6)


def test_drop_tta_without_tta_to_drop_still_stops(clock, folder):
    predictor = slow_predictor(clock, warm_up=30, per_call=6)
    with pytest.raises(TimeBudgetError, match="over the --time-budget of 1 min"):
        predictor.predict_folder(folder, progress=False, budget=Budget(1, drop_tta=True))


def test_drop_tta_that_is_not_enough_stops(clock, folder):
    """After the drop, 4 s an image still projects 70 s > 66 s: the second time it stops."""
    predictor = slow_predictor(clock, warm_up=30, per_call=4, views=TTA["hflip"])
    with pytest.raises(TimeBudgetError, match=r"projected 1\.2 min for 8 images \(4\.00 s per image"):
        predictor.predict_folder(folder, progress=False, budget=Budget(1.1, drop_tta=True))
    assert predictor.members[0].views == ("none",) and predictor.backend.calls == 3 * 2 + 2


def test_cli_time_budget_stops_with_one_line(half_scale_run, tmp_path, monkeypatch, capsys):
    """Every reading of the clock 100 s later: began 100, batches end at 200, 300, 400; the
    rate after the first is 100 s an image, so 300 + 7 x 100 s = 16.7 min for 10 images."""
    run, data = half_scale_run
    ticks = iter(range(100, 100_000, 100))
    monkeypatch.setattr(budget_module, "time", SimpleNamespace(monotonic=lambda: float(next(ticks))))
    out = tmp_path / "s.csv"
    argv = [
        "predict",
        str(run),
        str(data / "train_images"),
        "--out",
        str(out),
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        "1",
        "--time-budget",
        "1",
        "--quiet",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "steelseg predict: error: projected 16.7 min for 10 images (100.00 s per image after the first batch), "
        "over the "
        "--time-budget of 1 min; use fewer members or TTA views, --drop-tta, or a larger budget\n"
    )
    assert not out.exists()


def test_cli_drop_tta_needs_a_time_budget(half_scale_run, tmp_path, capsys):
    run, data = half_scale_run
    argv = ["predict", str(run), str(data / "train_images"), "--out", str(tmp_path / "s.csv"), "--drop-tta", "--quiet"]
    assert main(argv) == 1
    assert capsys.readouterr().err == "steelseg predict: error: --drop-tta needs --time-budget MINUTES\n"
    assert not (tmp_path / "s.csv").exists()


def test_cli_unknown_post_key_is_one_line(half_scale_run, tmp_path, capsys):
    run, data = half_scale_run
    out = tmp_path / "s.csv"
    assert (
        main(["predict", str(run), str(data / "train_images"), "--out", str(out), "--post", "bogus=1", "--quiet"]) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(
        "steelseg predict: error: --post 'bogus=1': expected KEY=VALUE with KEY one of pixel_threshold"
    )
    assert err.count("\n") == 1 and not out.exists()
