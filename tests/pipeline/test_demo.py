import json

import pytest

from steelseg.config import load_config
from steelseg.pipeline.demo import run_demo


def test_tiny_demo_writes_everything_it_promises(tmp_path):
    config = load_config(
        "demo",
        [
            "model.encoder_name=tu-test_resnet",
            "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
            "model.input_scale=0.25",
            "data.crop_height=32",
            "data.crop_width=64",
            "data.crops_per_image=1",
            "train.epochs=1",
        ],
    )
    lines = []
    result = run_demo(tmp_path, n_train=6, n_test=4, config=config, n_overlays=4, progress=False, say=lines.append)
    assert (tmp_path / "submission.csv").read_text().count("\n") == 1 + 4 * 4
    assert json.loads((tmp_path / "scores.json").read_text())["mean_dice"] == pytest.approx(result["mean_dice"])
    assert 0 <= result["all_empty_mean_dice"] <= 1 and 0 <= result["mean_dice"] <= 1
    assert len(list((tmp_path / "overlays").glob("*.png"))) >= 1
    assert any(line.startswith("mean Dice") for line in lines)
    with pytest.raises(FileExistsError, match="earlier demo"):
        run_demo(tmp_path, n_train=6, n_test=4, config=config, progress=False, say=lines.append)
