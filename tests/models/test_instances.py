import numpy as np
import pytest
import torch
import torchvision

from steelseg.config import ConfigError
from steelseg.core.instances import instances_from_masks
from steelseg.models.encoders import WeightsError
from steelseg.models.instance import InstanceNet, merge_instances

# Small detector budgets: the mask head's 256-channel convs per detection dominate CPU time.
FAST = dict(
    rpn_pre_nms_top_n_train=50,
    rpn_post_nms_top_n_train=50,
    rpn_pre_nms_top_n_test=50,
    rpn_post_nms_top_n_test=20,
    box_batch_size_per_image=32,
    box_detections_per_img=5,
)


def _net(in_channels, **kwargs):
    torch.manual_seed(0)
    return InstanceNet("resnet18", in_channels, num_classes=2, **{**FAST, **kwargs})


# --- instances_from_masks -------------------------------------------------------------------


def test_components_become_boxes_labels_and_masks():
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 0:2, 0:3] = True  # class 1: a 2x3 rectangle
    masks[0, 4, 5] = masks[0, 5, 6] = True  # class 1: touching at a corner, one 8-connected defect
    masks[1, 2:4, 3] = masks[1, 3, 4] = True  # class 2: an L
    masks[1, 5, 0] = True  # class 2: one pixel in the corner

    boxes, labels, instance_masks = instances_from_masks(masks.astype(np.uint8))

    np.testing.assert_array_equal(boxes, [[0, 0, 3, 2], [5, 4, 7, 6], [3, 2, 5, 4], [0, 5, 1, 6]])
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(labels, [1, 1, 2, 2])
    assert labels.dtype == np.int64
    expected = np.zeros((4, 6, 8), np.uint8)
    expected[0, 0:2, 0:3] = 1
    expected[1, 4, 5] = expected[1, 5, 6] = 1
    expected[2, 2:4, 3] = expected[2, 3, 4] = 1
    expected[3, 5, 0] = 1
    np.testing.assert_array_equal(instance_masks, expected)
    assert instance_masks.dtype == np.uint8


@pytest.mark.parametrize(
    "masks",
    [np.zeros((4, 5, 7), bool), np.zeros((0, 5, 7), bool)],
    ids=["no defect", "no class"],
)
def test_no_defect_gives_zero_instances_of_the_right_shapes(masks):
    boxes, labels, instance_masks = instances_from_masks(masks)
    assert (boxes.shape, labels.shape, instance_masks.shape) == ((0, 4), (0,), (0, 5, 7))
    assert (boxes.dtype, labels.dtype, instance_masks.dtype) == (np.float32, np.int64, np.uint8)


def test_full_mask_is_one_instance_covering_the_image():
    boxes, labels, _ = instances_from_masks(np.ones((1, 3, 4), bool))
    np.testing.assert_array_equal(boxes, [[0, 0, 4, 3]])
    np.testing.assert_array_equal(labels, [1])


# --- merge_instances ------------------------------------------------------------------------


def test_merge_takes_the_score_weighted_max_per_class():
    masks = np.zeros((3, 1, 3, 4), np.float32)
    masks[0, 0, 0:2, 0:2] = 0.8  # class 1, score 0.5
    masks[1, 0, 2, 2], masks[1, 0, 2, 3] = 0.5, 1.0  # class 2, score 0.9
    masks[2, 0, 1, 1:3], masks[2, 0, 0, 0] = 0.6, 0.2  # class 1, score 1.0, overlaps the first
    labels, scores = torch.tensor([1, 2, 1]), torch.tensor([0.5, 0.9, 1.0])

    merged = merge_instances(labels, scores, torch.from_numpy(masks), num_classes=3, height=3, width=4)

    expected = np.zeros((3, 3, 4), np.float32)
    expected[0] = [[0.4, 0.4, 0, 0], [0.4, 0.6, 0.6, 0], [0, 0, 0, 0]]  # max(0.5 * 0.8, 1.0 * mask)
    expected[1] = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0.45, 0.9]]
    # class 3 has no instance: stays 0
    assert merged.dtype == torch.float32
    np.testing.assert_allclose(merged.numpy(), expected, atol=1e-6)


def test_merge_of_no_detection_is_all_zero():
    merged = merge_instances(torch.zeros(0, dtype=torch.int64), torch.zeros(0), torch.zeros(0, 1, 3, 4), 2, 3, 4)
    torch.testing.assert_close(merged, torch.zeros(2, 3, 4))


# --- InstanceNet ----------------------------------------------------------------------------


def _defect_masks(n, height, width):
    masks = torch.zeros(n, 2, height, width)
    masks[0, 0, 5:30, 10:20] = 1  # image 0: one defect of each class; any further image: none
    masks[0, 1, 35:45, 40:65] = 1
    return masks


@pytest.mark.parametrize("in_channels, size", [(1, (64, 96)), (3, (50, 70))])
def test_losses_train_and_forward_gives_probabilities_at_the_input_size(in_channels, size):
    net = _net(in_channels)
    x = torch.randn(2, in_channels, *size)
    first_conv = net.maskrcnn.backbone.body.conv1.weight
    mask_logits = net.maskrcnn.roi_heads.mask_predictor.mask_fcn_logits.weight
    before = first_conv.detach().clone(), mask_logits.detach().clone()

    loss = net.losses(x, _defect_masks(2, *size))  # image 1 has no defect
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    loss.backward()
    optimizer.step()
    # the gradient reaches the first layer and the mask head
    assert not torch.equal(first_conv.detach(), before[0])
    assert not torch.equal(mask_logits.detach(), before[1])

    no_defect = net.losses(x, torch.zeros(2, 2, *size))
    assert no_defect.ndim == 0 and torch.isfinite(no_defect)

    net.eval()
    with torch.no_grad():
        probabilities = net(x)
    assert probabilities.shape == (2, 2, *size) and probabilities.dtype == torch.float32
    assert 0 <= probabilities.min() and probabilities.max() <= 1


def test_bf16_autocast_and_channels_last_give_the_fp32_probabilities():
    net = _net(1, box_score_thresh=0.0).eval()  # threshold 0: random weights still detect something
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        reference = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = net(x)
        net.to(memory_format=torch.channels_last)
        channels_last = net(x.contiguous(memory_format=torch.channels_last))
    assert reference.max() > 0
    # the detector runs in fp32 under autocast: bf16 boxes would snap to every 8th pixel past x=1024
    torch.testing.assert_close(under_autocast, reference)
    torch.testing.assert_close(channels_last, reference, atol=1e-4, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = net.train().losses(x, _defect_masks(1, 64, 96))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_losses_in_eval_mode_and_forward_in_train_mode_leave_modes_and_statistics_alone():
    net = _net(1)
    x, masks = torch.randn(1, 1, 64, 96), _defect_masks(1, 64, 96)
    bn = net.maskrcnn.backbone.body.bn1
    net.eval()
    running_mean = bn.running_mean.clone()
    with torch.no_grad():
        assert torch.isfinite(net.losses(x, masks))  # a validation loss
    torch.testing.assert_close(bn.running_mean, running_mean)
    assert not any(module.training for module in net.modules())
    net.train()
    with torch.no_grad():
        assert net(x).shape == (1, 2, 64, 96)
    assert all(module.training for module in net.modules())


# --- encoder weights ------------------------------------------------------------------------


def test_local_encoder_weights_load_into_the_backbone_summing_rgb_for_gray(tmp_path):
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()  # torchvision's keys, fc included
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = InstanceNet("resnet18", 1, 2, encoder_weights=str(path))
    body = net.maskrcnn.backbone.body
    torch.testing.assert_close(body.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(body.layer2[0].bn1.running_var, state["layer2.0.bn1.running_var"])


def test_unreachable_imagenet_weights_explain_how_to_work_offline(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError, match=r"resnet18-f37072fd\.pth into .*checkpoints.*model\.encoder_weights"):
        InstanceNet("resnet18", 1, 2, encoder_weights="imagenet")


def test_unknown_encoder_names_the_valid_ones():
    with pytest.raises(ConfigError, match="'efficientnet-b0'.*resnet18, resnet34"):
        InstanceNet("efficientnet-b0", 1, 2)
