"""Kill a real training process with SIGKILL mid-epoch, resume it, and land on the same weights."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from steelseg.files import synth
from steelseg.files.rundir import RESUME

SETUP = [
    "--set",
    "model.encoder_name=tu-test_resnet",
    "--set",
    "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
    "--set",
    "data.crop_height=32",
    "--set",
    "data.crop_width=64",
    "--set",
    "data.crops_per_image=12",
    "--set",
    "data.batch_size=2",
    "--set",
    "train.scheduler={name: cosine}",
    "--epochs",
    "4",
]


def _train(*args) -> list[str]:
    return [sys.executable, "-m", "steelseg", "train", *args, "--quiet"]


def _final_weights(run):
    state = torch.load(run / RESUME, map_location="cpu", weights_only=True)
    return state["state_dict"], state["optimizer_states"][0]["state"], state["epoch"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    data = tmp_path / "data"
    synth.write_dataset(data, 6, seed=3, height=64, width=256, progress=False)
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    subprocess.run(_train(str(data), "--out", str(tmp_path / "whole"), *SETUP), check=True, env=env)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_train(str(data), "--out", str(killed), *SETUP), env=env)
    checkpoint = killed / RESUME
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first = checkpoint.stat().st_mtime_ns
    time.sleep(0.3)  # into the second epoch, before it ends
    assert process.poll() is None, "training finished before it could be killed; make the epochs longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.stat().st_mtime_ns == first, "killed after the second epoch's checkpoint, not mid-epoch"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 0

    before = (killed / "metrics.csv").read_text().splitlines()
    assert len(before) == 2  # header + the one finished epoch
    out = subprocess.run(_train("--resume", str(killed)), check=True, env=env, capture_output=True, text=True).stdout
    assert "resuming at epoch 2 of 4" in out
    whole_weights, whole_optimizer, whole_epoch = _final_weights(tmp_path / "whole")
    resumed_weights, resumed_optimizer, resumed_epoch = _final_weights(killed)
    assert whole_epoch == resumed_epoch == 3
    for key, value in whole_weights.items():
        torch.testing.assert_close(resumed_weights[key], value, rtol=0, atol=0, msg=key)
    for index, state in whole_optimizer.items():
        torch.testing.assert_close(resumed_optimizer[index]["exp_avg"], state["exp_avg"], rtol=0, atol=0)
    whole_rows = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    resumed_rows = (killed / "metrics.csv").read_text().splitlines()
    assert len(whole_rows) == len(resumed_rows) == 5
    drop_seconds = lambda row: row.split(",")[:1] + row.split(",")[2:]  # noqa: E731
    assert list(map(drop_seconds, whole_rows)) == list(map(drop_seconds, resumed_rows))
    # the first epoch's row, time included, comes from the checkpoint: it was not trained again
    assert resumed_rows[:2] == before
