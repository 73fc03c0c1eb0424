import shutil

import pytest

from steelseg.commands.cli import main
from steelseg.files import synth
from tiny_runs import tiny_cli

# A tiny run (test_resnet, 1 epoch on 64x256 strips) for the untrusted-file tests.
UNTRUSTED_SETUP = tiny_cli("train.oof_scale=null")


class _Planted:
    """Unpickled, it calls ``open(marker, "w")``, which creates the marker file: any code could
    run in its place. Loading must refuse it before that."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="session")
def untrusted_setup() -> list[str]:
    """``UNTRUSTED_SETUP``: the command-line options of the tiny run."""
    return list(UNTRUSTED_SETUP)


@pytest.fixture(scope="session")
def untrusted_run(tmp_path_factory):
    """(run directory, data folder) of a tiny finished run, trained once; copy it
    (``untrusted_copy``) before changing it."""
    root = tmp_path_factory.mktemp("untrusted")
    synth.write_dataset(root / "data", 6, seed=2, height=64, width=256, progress=False)
    assert main(["train", str(root / "data"), "--out", str(root / "run"), *UNTRUSTED_SETUP]) == 0
    return root / "run", root / "data"


@pytest.fixture
def untrusted_copy(untrusted_run, tmp_path):
    """A fresh copy of ``untrusted_run``'s run directory, to change."""
    run, _ = untrusted_run
    return shutil.copytree(run, tmp_path / "run")


@pytest.fixture
def untrusted_pickle(tmp_path):
    """``plant(path, how="torch")`` writes a malicious pickle at ``path`` and returns the marker
    file it would create if it were ever unpickled: ``torch``: a ``torch.save`` checkpoint-like
    dict (epoch, state_dict) holding the object; ``npz``: an .npz whose array holds it."""
    import numpy as np
    import torch

    marker = tmp_path / "PWNED"

    def plant(path, how: str = "torch"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if how == "torch":
            torch.save({"epoch": 0, "state_dict": {}, "payload": _Planted(marker)}, path)
        else:
            with open(path, "wb") as handle:  # np.savez would add .npz to a name without it
                np.savez(handle, probs=np.array([_Planted(marker)], dtype=object))
        return marker

    return plant


# --- inference side: bad data and resumed prediction (test_bad_inference.py, test_predict_resume.py) ---

# A tiny U-Net (test_resnet), one epoch on 64x320 strips, trained in fp32 for exact comparisons.
INFERENCE_TINY = [
    "model.encoder_name=tu-test_resnet",
    "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
    "data.crop_height=32",
    "data.crop_width=64",
    "data.batch_size=4",
    "train.epochs=1",
    "train.precision=32-true",
    "train.oof_scale=null",
]


@pytest.fixture(scope="session")
def inference_run(tmp_path_factory):
    """(run directory, folder of 12 test strips of 64x320) of a tiny finished run; never change
    it (copy it first)."""
    from steelseg.config import load_config
    from steelseg.training.fit import train

    root = tmp_path_factory.mktemp("inference")
    synth.write_dataset(root / "data", 10, seed=3, height=64, width=320, progress=False)
    train(load_config(None, INFERENCE_TINY + [f"data.root={root / 'data'}"]), root / "run", progress=False)
    synth.write_dataset(root / "test", 12, seed=11, height=64, width=320, progress=False)
    return root / "run", root / "test" / "train_images"
