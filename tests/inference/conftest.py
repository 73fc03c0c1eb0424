import shutil

import pytest

from steelseg.config import load_config
from steelseg.files import rundir, synth
from steelseg.training.fit import train

# A tiny U-Net run at half resolution, trained in fp32 so that exact comparisons are possible.
TINY = [
    "model.encoder_name=tu-test_resnet",
    "model.arch_params={decoder_channels: [16, 16, 8, 8, 8]}",
    "model.input_scale=0.5",
    "data.crop_height=32",
    "data.crop_width=64",
    "data.batch_size=4",
    "train.epochs=1",
    "train.precision=32-true",
    "train.oof_scale=null",
]


@pytest.fixture(scope="package")
def half_scale_run(tmp_path_factory):
    """(run directory, data folder) of a 1-epoch run at input_scale 0.5 on 64x320 strips."""
    root = tmp_path_factory.mktemp("half-scale")
    synth.write_dataset(root / "data", 10, seed=3, height=64, width=320, progress=False)
    train(load_config(None, TINY + [f"data.root={root / 'data'}"]), root / "run", progress=False)
    return root / "run", root / "data"


@pytest.fixture
def fresh_run(half_scale_run, tmp_path):
    """A private copy of the tiny run without its exports and backend choice, so that a test
    may export, quantise or change it."""
    source, _ = half_scale_run
    copy = tmp_path / "run"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("model*.onnx", rundir.BACKEND_CHOICE))
    return copy
