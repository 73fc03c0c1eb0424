"""The tiniest network that trains end to end, as `steelseg train` options: tu-test_resnet with an
8-channel decoder on 32x64 crops, batch 2, fp32 (exact, so runs compare bit for bit). The tests
of everything around training (restarts, crashes, bad data, tasks) share it."""

from __future__ import annotations

TINY_NET = [
    "--set",
    "model.encoder_name=tu-test_resnet",
    "--set",
    "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
    "--set",
    "data.crop_height=32",
    "--set",
    "data.crop_width=64",
    "--set",
    "data.batch_size=2",
    "--set",
    "train.precision=32-true",
]


def tiny_cli(*overrides: str, epochs: int = 1) -> list[str]:
    """``TINY_NET``, then ``--set`` of each ``section.key=value`` override, ``--epochs``, ``--quiet``."""
    return [*TINY_NET, *(arg for value in overrides for arg in ("--set", value)), "--epochs", str(epochs), "--quiet"]


# The same network as plan settings (``steelseg fit --plan``): one epoch of two batches, and
# out-of-fold files made with the flip the system ships with.
TINY_SETTINGS = {
    "model.encoder_name": "tu-test_resnet",
    "model.arch_params": {"decoder_channels": [8, 8, 8, 8, 8]},
    "data.crop_height": 32,
    "data.crop_width": 64,
    "data.batch_size": 2,
    "train.precision": "32-true",
    "train.epochs": 1,
    "train.batches_per_epoch": 2,
    "train.oof_tta": "hflip",
}
