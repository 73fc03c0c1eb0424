"""The DDP code path on CPU: two processes, gloo backend, each training on half the crops."""

import json

import pytest

from steelseg.config import load_config
from steelseg.files import synth
from steelseg.training.fit import train


@pytest.mark.slow
def test_two_cpu_processes_share_each_epoch(tmp_path):
    synth.write_dataset(tmp_path / "data", 10, seed=5, height=64, width=256, progress=False)
    config = load_config(
        None,
        [
            f"data.root={tmp_path / 'data'}",
            "model.encoder_name=tu-test_resnet",
            "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
            "data.crop_height=32",
            "data.crop_width=64",
            "data.batch_size=2",
            "data.crops_per_image=2",
            "train.epochs=2",
            "train.accelerator=cpu",
            "train.devices=2",
            "train.strategy=ddp_spawn",
        ],
    )
    train(config, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2
    # 8 training images x 2 crops = 16 items; each process takes 8 a epoch = 4 steps of batch 2
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3
    assert summary["global_step"] == 4 * summary["epoch"]  # epochs counted from 1
    assert (tmp_path / "run" / "model.safetensors").is_file()
