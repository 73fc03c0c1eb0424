"""export --format smp: a folder segmentation_models_pytorch loads by itself, and back again."""

import json

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file

from steelseg.commands.cli import main
from steelseg.files import rundir
from steelseg.inference.backends.torch_backend import load_net
from steelseg.models.registry import build_model
from steelseg.models.weights import load_weights


@pytest.fixture
def exported(fresh_run, tmp_path):
    out = tmp_path / "smp-model"
    assert main(["export", str(fresh_run), "--format", "smp", "--out", str(out)]) == 0
    return fresh_run, out


def test_smp_loads_the_folder_alone_and_computes_the_run_s_logits(exported):
    run, out = exported
    assert {"config.json", "model.safetensors", "README.md", "steelseg.yaml"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["_model_class"] == "Unet"
    assert not any(key.startswith("net.") for key in load_file(out / "model.safetensors"))  # smp's own keys
    loaded = smp.from_pretrained(str(out)).eval()
    config = rundir.load_run_config(run)
    x = torch.rand(1, config.model.in_channels, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), load_net(run, config).net(x), atol=1e-6, rtol=0)
    card = (out / "README.md").read_text()
    for name in config.output_class_names:
        assert f"| {name} |" in card
    assert "validation mean Dice" in card and str(config.model.input_mean) in card


def test_model_init_from_takes_the_folder(exported):
    run, out = exported
    config = rundir.load_run_config(run)
    model = build_model(config.model.model_copy(update={"encoder_weights": None}), len(config.output_class_names))
    load_weights(out, model)
    expected = load_file(run / rundir.WEIGHTS)
    assert model.state_dict().keys() == expected.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    other = config.model.model_copy(update={"encoder_weights": None})
    with pytest.raises(rundir.RunDirError, match="do not fit this run's model"):
        load_weights(out, build_model(other, len(config.output_class_names) + 1))  # one class more


def test_what_smp_cannot_take_is_one_line(fresh_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("mine")
    assert main(["export", str(fresh_run), "--format", "smp", "--out", str(out)]) == 1
    assert "not an empty folder" in capsys.readouterr().err and (out / "x").read_text() == "mine"
    assert main(["export", str(fresh_run), "--format", "smp"]) == 1
    assert "give --out DIR" in capsys.readouterr().err
    config = rundir.load_run_config(fresh_run).model_copy()
    classify = config.model_copy(update={"model": config.model.model_copy(update={"task": "classify"})})
    rundir.save_config(fresh_run, classify)
    assert main(["export", str(fresh_run), "--format", "smp", "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert "classify run is not an smp segmentation network" in err and "\n" not in err
    assert not (tmp_path / "c").exists()
