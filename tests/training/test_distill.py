"""Distillation: a student trained on a planted teacher's probabilities agrees with that teacher
on held-out images better than the same student trained on the masks alone; soft maps go
through crops and flips exactly as the masks; the loss is the hand-derived mix."""

import math

import numpy as np
import pytest
import torch

from steelseg.config import DistillConfig, LossTerm, load_config
from steelseg.core.outputs import CLASSES, PIXELS
from steelseg.core.postprocess import PostProcess
from steelseg.files import synth
from steelseg.files.images import list_images, read_gray
from steelseg.inference.predictor import Predictor
from steelseg.training.augment import seed_transform, train_transform
from steelseg.training.distill import distill_config
from steelseg.training.distill_data import apply_soft
from steelseg.training.distill_loss import distill_loss, soft_bce
from steelseg.training.fit import train
from steelseg.training.losses import build_loss

H, W = 64, 128
CLASS_NAMES = ["pits", "crazing", "scratches", "blotches"]  # synth's
STUDENT = [
    "model.encoder_name=tu-test_resnet",
    "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}",
    "data.crop_height=32",
    "data.crop_width=64",
    "data.batch_size=4",
    "data.val_fraction=0.2",
    "train.epochs=1",  # one epoch: the run keeps its last weights (validation has no masks to rank)
    "data.crops_per_image=16",  # 40 batches
    "train.lr=0.01",
    "train.precision=32-true",
    "train.oof_scale=null",
    "train.seed=1",
]


class BrightPixels(torch.nn.Module):
    """The planted teacher: class 1 ("pits") is every pixel brighter than mid-gray, whatever the
    masks say; the other classes are never present. The synthetic masks mark none of this."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        gray = image[:, :1] * self.std + self.mean  # back to [0, 1]
        bright = torch.sigmoid(40 * (gray - 0.5))
        return torch.cat([bright, torch.zeros_like(bright).repeat(1, 3, 1, 1)], dim=1)


def planted_teacher(path):
    """``BrightPixels`` as an exported model file that ``predict`` (and so ``distill``) takes."""
    import onnx

    from steelseg.inference.backends import onnx_backend as meta

    config = load_config(None, ["model.encoder_name=tu-test_resnet", f"data.class_names={CLASS_NAMES}"])
    net = BrightPixels(config.model.input_mean, config.model.input_std)
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 64, 96),),
        str(path),
        dynamo=False,
        input_names=[meta.INPUT],
        output_names=[PIXELS],
        dynamic_axes={meta.INPUT: axes, PIXELS: axes},
    )
    graph = onnx.load(str(path))
    entries = {
        meta.META_CONFIG: config.to_yaml(),
        meta.META_POSTPROCESS: PostProcess.uniform(4, 0.5, 0).to_json(),
        meta.META_CLASS_NAMES: str(CLASS_NAMES).replace("'", '"'),
        meta.META_WEIGHTS: "0" * 64,
    }
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill-planted")
    synth.write_dataset(root / "data", 12, seed=0, height=H, width=W, progress=False)
    synth.write_dataset(root / "held-out", 4, seed=9, height=H, width=W, progress=False)
    return root, planted_teacher(root / "teacher.onnx")


def _agreement_gap(run, teacher, images) -> float:
    """Mean |student - teacher| of the class-1 probabilities on ``images``."""
    batch = np.stack([read_gray(p) for p in images])
    student = Predictor.load([run], backend="torch", device="cpu").predict_proba(batch)
    truth = Predictor.load([teacher], backend="onnx", device="cpu").predict_proba(batch)
    return float(np.abs(student[:, 0] - truth[:, 0]).mean())


def test_a_distilled_student_agrees_with_its_teacher_better_than_one_trained_on_the_masks(planted):
    root, teacher = planted
    overrides = STUDENT + ["distill.alpha=0.9"]  # read by distill_config, not by the plain run
    plain = load_config(None, [*STUDENT, f"data.root={root / 'data'}"])
    train(plain, root / "plain", progress=False)
    student = distill_config(None, overrides, [teacher], root / "data", backend="onnx", device="cpu")
    assert student.distill.alpha == 0.9 and student.model == plain.model and student.train == plain.train
    train(student, root / "student", progress=False)
    held_out = list_images(root / "held-out" / "train_images")
    plain_gap = _agreement_gap(root / "plain", teacher, held_out)
    distilled_gap = _agreement_gap(root / "student", teacher, held_out)
    assert distilled_gap < 0.6 * plain_gap, (distilled_gap, plain_gap)


# --- soft maps follow the masks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "augment",
    [
        pytest.param("[{name: hflip, p: 1.0}, {name: vflip, p: 1.0}]", id="flips"),
        pytest.param("[{name: crop_resize, p: 1.0, params: {scale: [0.5, 0.7]}}]", id="crop-resize"),
        pytest.param("[{name: defect_blackout, p: 1.0}]", id="blackout"),
        pytest.param("[{name: circular_shift, p: 1.0}]", id="circular-shift"),
    ],
)
def test_soft_maps_get_the_crop_and_augmentation_of_the_masks(augment):
    """Soft maps equal to the masks must still equal them after any crop and augmentation."""
    data = load_config(None, ["data.crop_height=32", "data.crop_width=48", f"data.augment={augment}"]).data
    strip = synth.make_strip(0, 1, H, W)
    transform = train_transform(data)
    for seed in range(6):
        seed_transform(transform, seed)
        image, masks, soft = apply_soft(transform, strip.image, strip.masks, strip.masks.astype(np.float32) * 0.75)
        assert soft.shape == masks.shape == (4, 32, 48) and soft.dtype == np.float32
        np.testing.assert_array_equal(soft, masks * np.float32(0.75))


def test_the_crop_is_the_one_the_masks_alone_get():
    data = load_config(None, ["data.crop_height=32", "data.crop_width=48"]).data
    strip = synth.make_strip(0, 2, H, W)
    plain, soft = train_transform(data), train_transform(data)
    seed_transform(plain, 5), seed_transform(soft, 5)
    out = plain(image=strip.image, mask=strip.masks.transpose(1, 2, 0).astype(np.uint8))
    image, masks, _ = apply_soft(soft, strip.image, strip.masks, np.ones((4, H, W), np.float32))
    np.testing.assert_array_equal(image, out["image"])
    np.testing.assert_array_equal(masks, out["mask"].transpose(2, 0, 1).astype(bool))


# --- the loss -----------------------------------------------------------------------------------


def test_soft_bce_at_a_temperature_is_the_hand_derived_value():
    # logit 2 at T = 2 -> sigmoid(1); teacher 0.5 stays 0.5; loss = T^2 x BCE(sigmoid(1), 0.5)
    p = 1 / (1 + math.exp(-1.0))
    expected = 4 * -(0.5 * math.log(p) + 0.5 * math.log(1 - p))
    assert soft_bce(torch.tensor([2.0]), torch.tensor([0.5]), 2.0).item() == pytest.approx(expected, rel=1e-6)
    assert soft_bce(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(math.log(2), rel=1e-6)


def test_the_loss_mixes_soft_and_recipe_parts_and_unlabelled_images_skip_the_recipe_part():
    torch.manual_seed(0)
    recipe = build_loss([LossTerm(name="bce", weight=0.5), LossTerm(name="dice", weight=0.5)], 2)

    def recipe_loss(logits, masks):
        return recipe(logits[PIXELS], masks)

    logits = {PIXELS: torch.randn(3, 2, 8, 8), CLASSES: torch.randn(3, 2)}
    masks = (torch.rand(3, 2, 8, 8) > 0.7).float()
    pixels = torch.rand(3, 2, 8, 8)
    soft = {"pixels": pixels, "scores": torch.rand(3, 2), "labelled": torch.tensor([1.0, 0.0, 1.0])}
    config = DistillConfig(teacher=["t"], alpha=0.25)
    got = distill_loss(recipe_loss, logits, masks, soft, config, class_weight=0.5).item()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    soft_part = bce(logits[PIXELS], pixels) + 0.5 * bce(logits[CLASSES], pixels.amax(dim=(2, 3)))
    hard_part = recipe(logits[PIXELS][[0, 2]], masks[[0, 2]])
    assert got == pytest.approx((0.25 * soft_part + 0.75 * hard_part).item(), rel=1e-5)
    only_soft = DistillConfig(teacher=["t"], alpha=1.0)
    assert distill_loss(recipe_loss, logits, masks, soft, only_soft, 0.5).item() == pytest.approx(
        soft_part.item(), rel=1e-5
    )
