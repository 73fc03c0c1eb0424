"""``GatedSearch`` against planted optima: synthetic out-of-fold probabilities built so that one
setting of the grid, and only one, scores best; its Dice checked by a direct loop."""

import itertools

import numpy as np
import pytest

from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.core.search import OFF, GatedSearch

H, W = 40, 80
BLOB = (slice(4, 16), slice(4, 16))  # 12 x 12 = 144 pixels: a true defect (or a look-alike)
HALO = (slice(3, 17), slice(3, 17))  # the blob and a 1-pixel ring of 52 pixels around it
CORE = (slice(9, 11), slice(9, 11))  # 4 pixels inside the blob
NOISE_A = (slice(24, 32), slice(30, 38))  # 8 x 8 = 64 pixels
NOISE_B = (slice(24, 32), slice(50, 58))  # 64 more
NOISE_C = (slice(4, 15), slice(40, 50))  # 11 x 10 = 110 pixels

# The planted optimum, for both classes: pixel threshold 0.6 (0.5 takes in the 0.55 halo, 0.8
# misses the 0.7 blob), components >= 100 (64-pixel noise goes, the 144-pixel blob stays),
# min area 120 (a lone 110-pixel noise component passes the components but not the area).
# Class 1 (no class head): a peak gate at 0.8 drops look-alike blobs whose max is 0.7, while
# defects have a 0.95 core. Class 2 (class head): a label gate at 0.7 drops the look-alikes on
# images whose head says 0.3 / 0.5 / 0.65, keeps defects at 0.75 / 0.8 / 0.9; one defect's max
# is exactly 0.6, so every peak gate of the grid loses it.
PIXEL_GRID = [0.5, 0.6, 0.8]
COMPONENT_GRID = [0, 50, 100, 200]
AREA_GRID = [0, 100, 120, 300]
LABEL_GRID = [0.4, 0.6, 0.7, 0.85]
PEAK_GRID = [0.6, 0.8, 0.97]
PLANTED = [
    {"pixel_threshold": 0.6, "min_component": 100, "min_area": 120, "head_threshold": OFF, "peak_threshold": 0.8},
    {"pixel_threshold": 0.6, "min_component": 100, "min_area": 120, "head_threshold": 0.7, "peak_threshold": OFF},
]


def _class1(role: str, rng) -> tuple[np.ndarray, np.ndarray]:
    probs, truth = rng.uniform(0.0, 0.3, (H, W)), np.zeros((H, W), bool)
    if role == "defect":
        probs[HALO], probs[BLOB], probs[CORE], probs[NOISE_A] = 0.55, 0.7, 0.95, 0.9
        truth[BLOB] = True
    elif role == "lookalike":
        probs[BLOB] = 0.7
    elif role == "two-small":
        probs[NOISE_A] = probs[NOISE_B] = 0.9  # 128 together: only the component size removes them
    elif role == "one-medium":
        probs[NOISE_C] = 0.9  # 110: only the min area removes it
    return probs, truth


def _class2(role: str, rng) -> tuple[np.ndarray, np.ndarray]:
    probs, truth = rng.uniform(0.0, 0.3, (H, W)), np.zeros((H, W), bool)
    if role == "defect":
        probs[HALO], probs[BLOB], probs[NOISE_A] = 0.55, 0.7, 0.9
        truth[BLOB] = True
    elif role == "edge":
        probs[HALO], probs[BLOB] = 0.55, 0.6  # max exactly 0.6: at the pixel threshold, not above a gate
        truth[BLOB] = True
    elif role == "lookalike":
        probs[BLOB], probs[NOISE_A] = 0.7, 0.9
    elif role == "head-false-positive":
        probs[NOISE_A] = probs[NOISE_B] = probs[NOISE_C] = 0.9
    return probs, truth


# (class 1 role, class 2 role, class 2 head)
IMAGES = [
    ("defect", "defect", 0.75),
    ("defect", "defect", 0.8),
    ("defect", "defect", 0.9),
    ("lookalike", "edge", 0.9),
    ("lookalike", "lookalike", 0.3),
    ("two-small", "lookalike", 0.5),
    ("one-medium", "lookalike", 0.65),
    ("two-small", "head-false-positive", 0.8),
    ("clean", "clean", 0.2),
]


@pytest.fixture(scope="module")
def planted():
    """[(probs (2, H, W) float64, truth (2, H, W) bool, heads (2,): NaN for class 1)]"""
    rng = np.random.default_rng(0)
    images = []
    for role1, role2, head in IMAGES:
        (p1, t1), (p2, t2) = _class1(role1, rng), _class2(role2, rng)
        images.append((np.stack([p1, p2]), np.stack([t1, t2]), np.array([np.nan, head])))
    return images


def _search(images, factor=1.0, **grids) -> GatedSearch:
    grids = {
        "pixel_grid": PIXEL_GRID,
        "component_grid": COMPONENT_GRID,
        "area_grid": AREA_GRID,
        "head_grid": LABEL_GRID,
        "peak_grid": PEAK_GRID,
        **grids,
    }
    search = GatedSearch(len(images[0][0]), has_heads=[False, True][: len(images[0][0])], **grids)
    for probs, truth, heads in images:
        search.update(probs, truth, heads, factor)
    return search


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """The competition Dice of one (image, class) pair, by hand."""
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * (pred & truth).sum() / total


def direct_dice(post: PostProcess, images, c: int) -> float:
    """Class ``c``'s mean Dice of ``post`` applied image by image (a one-class PostProcess)."""
    return float(
        np.mean(
            [
                dice(post(probs[c : c + 1], None if heads is None else heads[c : c + 1])[0], truth[c])
                for probs, truth, heads in images
            ]
        )
    )


def _one_class(post: PostProcess, c: int) -> PostProcess:
    keys = ("pixel_threshold", "min_area", "min_component", "fill_holes", "head_threshold", "peak_threshold")
    return PostProcess(
        *(getattr(post, k)[c : c + 1] for k in keys),
        peak=post.peak,
        peak_top_k=post.peak_top_k,
        soft_gate=post.soft_gate,
    )


def _chosen(post: PostProcess, c: int) -> dict:
    keys = ("pixel_threshold", "min_component", "min_area", "head_threshold", "peak_threshold")
    return {k: getattr(post, k)[c].item() for k in keys}


@pytest.mark.parametrize("c", [0, 1], ids=["peak-gated-class", "label-gated-class"])
def test_the_planted_optimum_is_the_only_best_setting_of_the_grid(planted, c):
    """The test's own premise, by brute force over the grid with the direct loop."""
    labels = [*LABEL_GRID, OFF] if c == 1 else [OFF]
    scores = {}
    grid = itertools.product(PIXEL_GRID, COMPONENT_GRID, [*AREA_GRID, NEVER], labels, [*PEAK_GRID, OFF])
    for t, s, a, label, peak in grid:
        post = PostProcess.uniform(1, t, a, min_component=s, head_threshold=label, peak_threshold=peak)
        scores[(t, s, a, label, peak)] = direct_dice(post, planted, c)
    best = max(scores.values())
    winners = [key for key, score in scores.items() if score == best]
    p = PLANTED[c]
    assert best == 1.0
    assert winners == [
        (p["pixel_threshold"], p["min_component"], p["min_area"], p["head_threshold"], p["peak_threshold"])
    ]


def test_search_finds_the_planted_optimum(planted):
    post, dices = _search(planted).best()
    assert [_chosen(post, c) for c in range(2)] == PLANTED
    np.testing.assert_array_equal(dices, [1.0, 1.0])
    assert [direct_dice(_one_class(post, c), planted, c) for c in range(2)] == [1.0, 1.0]
    assert post.peak == "max" and not post.soft_gate and not post.fill_holes.any()


@pytest.mark.parametrize(
    "grids",
    [
        pytest.param(
            {
                "pixel_grid": [0.5, 0.8],
                "component_grid": [0, 50],
                "area_grid": [0, 100],
                "head_grid": [],
                "peak_grid": [],
            },
            id="no-gates-coarse-grid",
        ),
        pytest.param({"component_grid": [0], "area_grid": [0], "head_grid": [0.6], "peak_grid": [0.6]}, id="no-sizes"),
        pytest.param({"pixel_grid": [0.5], "head_grid": [0.85], "peak_grid": [0.97]}, id="wrong-gates-only"),
    ],
)
def test_reported_dice_equals_a_direct_loop_when_the_optimum_is_out_of_reach(planted, grids):
    post, dices = _search(planted, **grids).best()
    assert (dices < 1).any()  # the planted optimum is not on these grids
    expected = [direct_dice(_one_class(post, c), planted, c) for c in range(2)]
    np.testing.assert_allclose(dices, expected, rtol=0, atol=1e-12)


def test_nan_heads_pass_no_label_gate(planted):
    # Class 2 with its heads unknown (NaN) on every image: a label gate would drop all 4 true
    # defects (5/9); ungated, the defects and the noise-only images score, the 4 look-alikes
    # do not (5/9 + 1/9 for the noise image: 6/9).
    images = [(p, t, np.array([np.nan, np.nan])) for p, t, _ in planted]
    post, dices = _search(images).best()
    assert post.head_threshold[1] == OFF
    assert dices[1] == pytest.approx(6 / 9)
    expected = [direct_dice(_one_class(post, c), images, c) for c in range(2)]
    np.testing.assert_allclose(dices, expected, atol=1e-12)


# --- reduced scale: limits are in full-size pixels --------------------------------------------------


# Stored at half scale (factor 4: one stored pixel is 2 x 2 full-size ones). Defects are 25 stored
# pixels (100 full-size), noise 24 stored pixels (96 full-size): a limit of 100 full-size pixels
# (25 stored) separates them; 96 (24 stored) keeps the noise; 104 (26 stored) loses the defect.
def _half_scale_images() -> list:
    rng = np.random.default_rng(1)
    images = []
    for i in range(6):
        probs, truth = rng.uniform(0, 0.2, (1, 16, 24)), np.zeros((1, 16, 24), bool)
        if i % 2:
            probs[0, 2:7, 2:7], truth[0, 2:7, 2:7] = 0.9, True  # 5 x 5
        else:
            probs[0, 8:14, 10:14] = 0.9  # 6 x 4
        images.append((probs, truth, None))
    return images


SCALED = [
    pytest.param({"component_grid": [0, 96, 100, 104], "area_grid": [0]}, "min_component", id="component-size"),
    pytest.param({"component_grid": [0], "area_grid": [0, 96, 100, 104]}, "min_area", id="min-area"),
]


@pytest.mark.parametrize("grids, key", SCALED)
def test_sizes_at_reduced_scale_are_compared_in_full_size_pixels(grids, key):
    images = _half_scale_images()
    grids = {"pixel_grid": [0.5], "head_grid": [], "peak_grid": [], **grids}
    post, dices = _search(images, factor=4.0, **grids).best()
    assert getattr(post, key)[0] == 100 and dices[0] == 1.0
    # The same post-processing at full size (every stored pixel a 2 x 2 block): the same Dice.
    full = [(np.kron(p, np.ones((1, 2, 2))), np.kron(t, np.ones((1, 2, 2), bool)), None) for p, t, _ in images]
    assert direct_dice(post, full, 0) == 1.0
    # Read as full-size pixels (factor 1), no limit of the grid separates defect from noise.
    post1, dices1 = _search(images, factor=1.0, **grids).best()
    assert dices1[0] < 1.0
    assert dices1[0] == pytest.approx(direct_dice(post1, images, 0))


# --- soft gate and holes ------------------------------------------------------------------------------


def test_soft_gated_search_agrees_with_the_direct_loop_and_a_headless_class_is_ungated():
    """Class 1 has no head (NaN): its pixels pass as they are, in the search and in PostProcess."""
    rng = np.random.default_rng(2)
    images = []
    for i, head in enumerate([0.9, 0.4, 0.95, 0.5]):
        probs, truth = rng.uniform(0, 0.2, (2, 12, 12)), np.zeros((2, 12, 12), bool)
        probs[:, 2:8, 2:8] = 0.7  # both classes: 0.7 everywhere on a 36-pixel square
        truth[0, 2:8, 2:8] = i != 1  # class 1 true on 3 images of 4
        truth[1, 2:8, 2:8] = head > 0.6  # class 2 true where its head is confident
        images.append((probs, truth, np.array([np.nan, head])))
    search = GatedSearch(2, [0.5, 0.6], [0], [0], [], [], has_heads=[False, True], soft_gate=True)
    for probs, truth, heads in images:
        search.update(probs, truth, heads)
    post, dices = search.best()
    assert post.soft_gate
    # class 2: 0.7 x 0.9 = 0.63 and 0.7 x 0.95 = 0.665 pass 0.6; 0.7 x 0.4 and 0.7 x 0.5 do not
    assert post.pixel_threshold[1] == 0.6 and dices[1] == 1.0
    expected = [direct_dice(_one_class(post, c), images, c) for c in range(2)]
    np.testing.assert_allclose(dices, expected, atol=1e-12)
    assert dices[0] == 0.75  # class 1: the square on every image, true on 3 of them


def test_fill_holes_in_the_search_counts_the_filled_pixels():
    ring = np.zeros((1, 7, 7))
    ring[0, 1:6, 1:6] = 0.9
    ring[0, 2:5, 2:5] = 0.1  # a 16-pixel ring around a 9-pixel hole
    truth = np.zeros((1, 7, 7), bool)
    truth[0, 1:6, 1:6] = True  # the defect is the whole 25-pixel square
    for fill, expected in ((True, 1.0), (False, 2 * 16 / (16 + 25))):
        search = GatedSearch(1, [0.5], [0], [0], [], [], fill_holes=[fill])
        search.update(ring, truth)
        post, dices = search.best()
        assert dices[0] == pytest.approx(expected)
        assert direct_dice(post, [(ring, truth, None)], 0) == pytest.approx(expected)


def test_no_images_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        GatedSearch(1, [0.5], [0], [0], [], []).best()


def test_a_top_k_peak_counts_full_size_pixels_at_a_reduced_scale():
    from steelseg.core.search import GatedSearch

    probs = np.full((1, 4, 4), 0.1, np.float32)
    probs[0, 0, :2] = 0.9  # two stored pixels = 8 full-size pixels at factor 4
    search = GatedSearch(1, [0.5], [0], [0], [], [], peak="top_k", peak_top_k=8)
    np.testing.assert_allclose(search.peaks(probs, factor=4.0), [0.9], rtol=1e-6)  # top 2 stored pixels
    np.testing.assert_allclose(search.peaks(probs, factor=1.0), [(2 * 0.9 + 6 * 0.1) / 8], rtol=1e-6)
