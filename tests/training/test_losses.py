import re

import pytest
import torch
import torch.nn.functional as F

from steelseg.config import LossTerm
from steelseg.training.losses import LOSSES, build_loss, class_index_map

N, C, H, W = 2, 4, 16, 16
PW = [2.0, 2.0, 1.0, 1.5]  # the 1st place's pos_weight


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index map (N, H, W), masks (N, C, H, W), logits (N, C, H, W) and softmax logits (N, C+1, H, W)."""
    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, C + 1, (N, H, W), generator=g)
    masks = F.one_hot(index, C + 1).permute(0, 3, 1, 2)[:, 1:].float()
    return index, masks, torch.randn(N, C, H, W, generator=g), torch.randn(N, C + 1, H, W, generator=g)


INDEX, MASKS, LOGITS, SOFT_LOGITS = _batch()
ONE_HOT = F.one_hot(INDEX, C + 1).permute(0, 3, 1, 2).float()  # (N, C+1, H, W), background first


def loss(*terms: tuple, head: str = "sigmoid", num_classes: int = C):
    """build_loss from (name, weight, params) tuples."""
    return build_loss([LossTerm(name=n, weight=w, params=p) for n, w, p in terms], num_classes, head)


def one(name: str, head: str = "sigmoid", **params):
    return loss((name, 1.0, params), head=head)


_bce = F.binary_cross_entropy_with_logits


def _bce_per_class(logits, target, pos_weight):
    """BCE mean over all pixels, each class with its own scalar pos_weight."""
    per_class = [
        _bce(logits[:, c], target[:, c], reduction="none", pos_weight=torch.tensor(w)) for c, w in enumerate(pos_weight)
    ]
    return torch.stack(per_class, dim=1).mean()


def _smoothed(target, s):
    return target * (1 - s) + s / 2


def test_class_index_map_background_is_0_and_class_k_is_k():
    masks = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]).view(1, 2, 1, 4)
    assert class_index_map(masks).tolist() == [[[0, 1, 0, 2]]]
    assert torch.equal(class_index_map(MASKS), INDEX)


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, lambda: _bce(LOGITS, MASKS)),
        ({"pos_weight": PW}, lambda: _bce_per_class(LOGITS, MASKS, PW)),
        ({"label_smoothing": 0.2}, lambda: _bce(LOGITS, _smoothed(MASKS, 0.2))),
        ({"pos_weight": PW, "label_smoothing": 0.1}, lambda: _bce_per_class(LOGITS, _smoothed(MASKS, 0.1), PW)),
    ],
    ids=["plain", "pos_weight", "label_smoothing", "both"],
)
def test_bce_matches_hand_computation(params, expected):
    torch.testing.assert_close(one("bce", **params)(LOGITS, MASKS), expected())


def test_bce_label_smoothing_optimum_is_the_smoothed_target():
    # targets 1 -> 0.9 and 0 -> 0.1 for s = 0.2: the loss is flat at those probabilities
    logits = torch.logit(MASKS * 0.8 + 0.1).requires_grad_()
    one("bce", label_smoothing=0.2)(logits, MASKS).backward()
    assert logits.grad.abs().max() < 1e-7


def test_bce_pos_weight_is_a_buffer_so_it_follows_the_device():
    buffers = dict(one("bce", pos_weight=PW).named_buffers())
    assert buffers["parts.0.pos_weight"].flatten().tolist() == PW


def _dice_by_hand(probs, target):
    """1 - Dice per class over the whole batch, mean over classes."""
    inter = (probs * target).sum(dim=(0, 2, 3))
    return (1 - 2 * inter / (probs.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3)))).mean()


@pytest.mark.parametrize(
    "head, logits, masks, expected",
    [
        ("sigmoid", 20 * (2 * MASKS - 1), MASKS, 0.0),
        ("sigmoid", -20 * (2 * MASKS - 1), MASKS, 1.0),
        # a class absent from the batch adds 0 to the mean over classes (smp)
        ("sigmoid", -20 * (2 * MASKS - 1), MASKS * torch.tensor([1.0, 1, 1, 0]).view(1, C, 1, 1), 0.75),
        ("softmax", 20 * ONE_HOT, MASKS, 0.0),
        ("softmax", -20 * ONE_HOT, MASKS, 1.0),
    ],
    ids=["perfect", "inverted", "inverted-class-4-absent", "softmax-perfect", "softmax-inverted"],
)
def test_dice_extremes(head, logits, masks, expected):
    assert one("dice", head)(logits, masks).item() == pytest.approx(expected, abs=1e-4)


def test_dice_is_per_class_over_the_batch():
    torch.testing.assert_close(one("dice")(LOGITS, MASKS), _dice_by_hand(LOGITS.sigmoid(), MASKS))
    torch.testing.assert_close(
        one("dice", "softmax")(SOFT_LOGITS, MASKS), _dice_by_hand(SOFT_LOGITS.softmax(dim=1), ONE_HOT)
    )


def _bce_none():
    return _bce(LOGITS, MASKS, reduction="none")


def _ce_none():
    return F.cross_entropy(SOFT_LOGITS, INDEX, reduction="none")


@pytest.mark.parametrize(
    "head, params, expected",
    [
        ("sigmoid", {"gamma": 0.0}, lambda: _bce_none().mean()),
        # alpha = 0.25 weighs positives, 1 - alpha = 0.75 negatives; no renormalisation
        ("sigmoid", {"gamma": 0.0, "alpha": 0.25}, lambda: (_bce_none() * (0.75 - 0.5 * MASKS)).mean()),
        ("sigmoid", {"gamma": 2.0}, lambda: ((1 - torch.exp(-_bce_none())) ** 2 * _bce_none()).mean()),
        ("softmax", {"gamma": 0.0}, lambda: _ce_none().mean()),
        ("softmax", {"gamma": 2.0}, lambda: ((1 - torch.exp(-_ce_none())) ** 2 * _ce_none()).mean()),
    ],
    ids=["gamma0-is-bce", "alpha", "gamma2", "softmax-gamma0-is-ce", "softmax-gamma2"],
)
def test_focal_matches_hand_computation(head, params, expected):
    logits = LOGITS if head == "sigmoid" else SOFT_LOGITS
    torch.testing.assert_close(one("focal", head, **params)(logits, MASKS), expected())


@pytest.mark.parametrize(
    "head, logits, expected",
    [
        ("sigmoid", 10 * (2 * MASKS - 1), 0.0),
        # right side but inside the margin: every hinge error is 0.5, and the Lovasz weights sum to 1
        ("sigmoid", 0.5 * (2 * MASKS - 1), 0.5),
        ("softmax", 20 * ONE_HOT, 0.0),
    ],
    ids=["confident", "inside-margin", "softmax-confident"],
)
def test_lovasz_values(head, logits, expected):
    assert one("lovasz", head)(logits, MASKS).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("head, logits", [("sigmoid", -10 * (2 * MASKS - 1)), ("softmax", -20 * ONE_HOT)])
def test_lovasz_of_wrong_predictions_is_positive(head, logits):
    assert one("lovasz", head)(logits, MASKS).item() > 0.5


@pytest.mark.parametrize("head, logits", [("sigmoid", LOGITS), ("softmax", SOFT_LOGITS)])
def test_lovasz_per_image_is_the_mean_over_images(head, logits):
    lovasz = one("lovasz", head)
    per_image = torch.stack([lovasz(logits[i : i + 1], MASKS[i : i + 1]) for i in range(N)]).mean()
    torch.testing.assert_close(lovasz(logits, MASKS), per_image)
    assert not torch.isclose(one("lovasz", head, per_image=False)(logits, MASKS), per_image)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_ce_matches_torch_on_the_index_map(smoothing):
    expected = F.cross_entropy(SOFT_LOGITS, INDEX, label_smoothing=smoothing)
    torch.testing.assert_close(one("ce", "softmax", label_smoothing=smoothing)(SOFT_LOGITS, MASKS), expected)


@pytest.mark.parametrize(
    "head, logits, first, second",
    [
        ("sigmoid", LOGITS, ("bce", {"pos_weight": PW}), ("dice", {})),
        ("softmax", SOFT_LOGITS, ("ce", {"label_smoothing": 0.1}), ("lovasz", {})),
    ],
)
def test_terms_add_with_their_weights(head, logits, first, second):
    (a, a_params), (b, b_params) = first, second
    total = loss((a, 0.75, a_params), (b, 0.25, b_params), head=head)(logits, MASKS)
    alone = [one(name, head, **params)(logits, MASKS) for name, params in (first, second)]
    torch.testing.assert_close(total, 0.75 * alone[0] + 0.25 * alone[1])


@pytest.mark.parametrize(
    "terms, head, message",
    [
        ([("iou", 1.0, {})], "sigmoid", "unknown loss 'iou'; choose one of bce, ce, dice, focal, lovasz"),
        ([("ce", 1.0, {})], "sigmoid", "loss 'ce' needs head='softmax', not head='sigmoid'"),
        ([("bce", 1.0, {})], "softmax", "loss 'bce' needs head='sigmoid', not head='softmax'"),
        ([("bce", 1.0, {"pos_weight": PW[:3]})], "sigmoid", "pos_weight has 3 values but there are 4 classes"),
        ([("bce", 1.0, {"label_smoothing": 1.5})], "sigmoid", "label_smoothing must be in [0, 1), got 1.5"),
        ([("dice", 1.0, {"gama": 2})], "sigmoid", "loss 'dice' (head='sigmoid'), params {'gama': 2}"),
        ([("focal", 1.0, {"alpha": 0.25})], "softmax", "unexpected keyword argument 'alpha'"),
        ([("bce", 1.0, {})], "tanh", "unknown head 'tanh'; choose one of sigmoid, softmax"),
        ([], "sigmoid", "the loss needs at least one term"),
    ],
    ids=["unknown", "ce-sigmoid", "bce-softmax", "pos_weight-length", "smoothing", "bad-param", "alpha-softmax"]
    + ["head", "empty"],
)
def test_bad_configurations_raise(terms, head, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        loss(*terms, head=head)


def test_logits_that_do_not_fit_the_head_raise():
    with pytest.raises(ValueError, match=r"built for 4 classes and 5 logit channels"):
        one("ce", "softmax")(LOGITS, MASKS)


def test_registry_names():
    assert sorted(LOSSES) == ["bce", "ce", "dice", "focal", "lovasz"]
