import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file

from steelseg.config import ModelConfig
from steelseg.models.encoders import WeightsError
from steelseg.models.registry import build_model

TINY = dict(encoder_name="tu-test_resnet", arch_params={"decoder_channels": [16, 16, 8, 8, 8]})


@pytest.mark.parametrize("arch", ["unet", "fpn"])
@pytest.mark.parametrize("size", [(64, 128), (50, 70), (33, 200)])
def test_any_input_size_gives_one_logit_map_per_class(arch, size):
    params = TINY["arch_params"] if arch == "unet" else {}
    model = build_model(ModelConfig(arch=arch, encoder_name="tu-test_resnet", arch_params=params), num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 4, *size)


def test_padding_does_not_change_an_already_aligned_input():
    model = build_model(ModelConfig(**TINY), num_classes=2).eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(model.logits(x)["probabilities"], model.net(x))
        torch.testing.assert_close(model(x), torch.sigmoid(model.net(x)))


def _first_conv(encoder):
    return next(p for p in encoder.state_dict().values() if p.ndim == 4)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_encoder_weights_load_and_adapt_rgb_to_gray(tmp_path, suffix):
    torch.manual_seed(0)
    rgb = build_model(ModelConfig(in_channels=3, **TINY), num_classes=4)
    state = {k: v.contiguous() for k, v in rgb.net.encoder.state_dict().items()}
    path = tmp_path / f"encoder{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    gray = build_model(ModelConfig(in_channels=1, encoder_weights=str(path), **TINY), num_classes=4)
    torch.testing.assert_close(_first_conv(gray.net.encoder), _first_conv(rgb.net.encoder).sum(dim=1, keepdim=True))
    for key, value in gray.net.encoder.state_dict().items():
        if value.ndim != 4 or value.shape[1] != 1:
            torch.testing.assert_close(value, state[key])


@pytest.mark.parametrize("task", ["classify", "two_head"])
def test_classifiers_load_a_segmenter_s_encoder_weights_file(tmp_path, task):
    # The same encoder weights file serves every task: a classifier or a two-headed network
    # starts from the encoder a segmenter was given.
    torch.manual_seed(0)
    donor = build_model(ModelConfig(in_channels=1, **TINY), num_classes=4)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in donor.net.encoder.state_dict().items()}, path)
    net = build_model(ModelConfig(task=task, in_channels=1, encoder_weights=str(path), **TINY), num_classes=4)
    encoder = net.encoder if task == "classify" else net.net.encoder
    for key, value in donor.net.encoder.state_dict().items():
        torch.testing.assert_close(encoder.state_dict()[key], value)


def test_weights_that_match_nothing_or_are_missing(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"something.else": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="no tensor matches the encoder"):
        build_model(ModelConfig(encoder_weights=str(path), **TINY), num_classes=1)
    with pytest.raises(WeightsError, match="encoder weights file not found"):
        build_model(ModelConfig(encoder_weights=str(tmp_path / "missing.pth"), **TINY), num_classes=1)


def test_failed_hub_download_explains_how_to_work_offline(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(smp, "create_model", offline)
    monkeypatch.setattr(smp.encoders, "get_encoder", offline)
    with pytest.raises(
        WeightsError, match=r"'imagenet' weights for encoder 'resnet18'.*set model.encoder_weights to its path"
    ):
        build_model(ModelConfig(encoder_name="resnet18", encoder_weights="imagenet"), num_classes=4)
    with pytest.raises(
        WeightsError, match=r"'imagenet' weights for encoder 'resnet34'.*offline|steelseg never needs the network"
    ):
        build_model(ModelConfig(task="classify", encoder_name="resnet34", encoder_weights="imagenet"), num_classes=4)


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(Exception, match="no_such_encoder"):
        build_model(ModelConfig(encoder_name="no_such_encoder"), num_classes=1)


def test_wide_single_output_convs_compute_in_fp32_under_bf16_autocast():
    # PyTorch 2.14's CPU bf16 backward of a >2048 -> 1 channel conv corrupts the heap and aborts
    # the process (the SCSE attention of resnet50-class U-Nets): run it in a child process.
    import subprocess
    import sys

    code = (
        "import torch; from torch import nn; from steelseg.models.nets import Fp32Conv2d, avoid_bf16_crash\n"
        "net = nn.Sequential(nn.Conv2d(3072, 1, 1), nn.Conv2d(8, 1, 1))\n"
        "keys = list(net.state_dict()); avoid_bf16_crash(net)\n"
        "assert type(net[0]) is Fp32Conv2d and type(net[1]) is nn.Conv2d and list(net.state_dict()) == keys\n"
        "x = torch.randn(2, 3072, 2, 4, requires_grad=True)\n"
        "for _ in range(5):\n"
        "    with torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "        y = net[0](x)\n"
        "    assert y.dtype == torch.float32\n"
        "    y.mean().backward()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-500:]
