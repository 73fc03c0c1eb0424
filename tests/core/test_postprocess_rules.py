"""Each rule of the gated ``PostProcess``, one table of named edges per rule; every expected
mask or number is drawn or derived by hand in the table."""

import json
import re

import numpy as np
import pytest

from steelseg.core.postprocess import NEVER, PostProcess, fill_holes, remove_small_components


def draw(*rows: str) -> np.ndarray:
    """'#' = True: a mask drawn as text, one string per row."""
    return np.array([[ch == "#" for ch in row] for row in rows])


def one_class(mask: np.ndarray, high: float = 0.9, low: float = 0.1) -> np.ndarray:
    """(1, H, W) probabilities: ``high`` on the mask, ``low`` elsewhere."""
    return np.where(mask, high, low)[None].astype(np.float64)


# --- connected components ------------------------------------------------------------------

COMPONENTS = [
    pytest.param(
        draw("##...", "##...", "....."), 4, draw("##...", "##...", "....."), id="square-exactly-at-limit-kept"
    ),
    pytest.param(
        draw("##...", "##...", "....."), 5, draw(".....", ".....", "....."), id="one-pixel-under-limit-removed"
    ),
    pytest.param(
        draw("#....", ".#...", "....."), 2, draw("#....", ".#...", "....."), id="diagonal-pair-is-one-component"
    ),
    pytest.param(draw("#.#..", ".....", "....."), 2, draw(".....", ".....", "....."), id="pixels-two-apart-are-two"),
    pytest.param(draw("##..#", "#...#", "....."), 3, draw("##...", "#....", "....."), id="l-kept-pair-removed"),
    pytest.param(draw("#...#", ".....", "..#.."), 1, draw("#...#", ".....", "..#.."), id="limit-1-keeps-single-pixels"),
    pytest.param(draw("#...#", ".....", "..#.."), 0, draw("#...#", ".....", "..#.."), id="limit-0-is-off"),
    pytest.param(draw("#####", "#####", "#####"), 15, draw("#####", "#####", "#####"), id="full-mask-at-limit"),
    pytest.param(draw("#....", ".....", "....#"), 2, draw(".....", ".....", "....."), id="opposite-corner-pixels"),
]


@pytest.mark.parametrize("mask, min_component, expected", COMPONENTS)
def test_min_component(mask, min_component, expected):
    post = PostProcess.uniform(1, 0.5, 0, min_component=min_component)
    np.testing.assert_array_equal(post(one_class(mask))[0], expected)
    if min_component > 1:
        np.testing.assert_array_equal(remove_small_components(mask, min_component), expected)


# --- minimum area ----------------------------------------------------------------------------

SQUARE = draw("......", ".###..", ".###..", ".###..", "......")  # 9 pixels

MIN_AREA = [
    pytest.param(SQUARE, 9, 9, id="exactly-at-limit-kept"),
    pytest.param(SQUARE, 10, 0, id="one-over-the-mask-emptied"),
    pytest.param(SQUARE, 0, 9, id="zero-is-off"),
    pytest.param(draw("#....#", "......", "#....#"), 4, 4, id="total-of-scattered-pixels-counts"),
    pytest.param(np.ones((5, 6), bool), NEVER, 0, id="never-empties-a-full-mask"),
    pytest.param(np.zeros((5, 6), bool), 0, 0, id="no-positive-pixels"),
]


@pytest.mark.parametrize("mask, min_area, expected_pixels", MIN_AREA)
def test_min_area(mask, min_area, expected_pixels):
    masks = PostProcess.uniform(1, 0.5, min_area)(one_class(mask))
    assert masks.sum() == expected_pixels
    if expected_pixels:
        np.testing.assert_array_equal(masks[0], mask)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="plain"),
        pytest.param({"min_component": 5}, id="components"),
        pytest.param({"fill_holes": True}, id="holes"),
        pytest.param({"peak_threshold": 0.05}, id="peak-gate"),
        pytest.param(
            {"min_component": 5, "fill_holes": True, "peak_threshold": 0.5, "peak": "top_k", "peak_top_k": 3}, id="all"
        ),
    ],
)
def test_a_class_without_positive_pixels_stays_empty(options):
    probs = np.zeros((2, 6, 8))
    probs[1, 1:4, 1:4] = 0.9  # the other class has a 9-pixel defect
    masks = PostProcess.uniform(2, 0.5, 0, **options)(probs)
    assert not masks[0].any()
    assert masks[1].sum() == 9


# --- holes -------------------------------------------------------------------------------------

HOLES = [
    pytest.param(
        draw(".....", ".###.", ".#.#.", ".###.", "....."),
        draw(".....", ".###.", ".###.", ".###.", "....."),
        id="ring-filled",
    ),
    pytest.param(
        draw("......", ".####.", ".#..#.", ".####.", "......"),
        draw("......", ".####.", ".####.", ".####.", "......"),
        id="two-pixel-hole-filled",
    ),
    pytest.param(
        draw(".#.#.", ".#.#.", ".###.", "....."),
        draw(".#.#.", ".#.#.", ".###.", "....."),
        id="u-open-to-the-border-not-filled",
    ),
    pytest.param(draw("#.#..", "###..", "....."), draw("#.#..", "###..", "....."), id="hole-on-the-border-not-filled"),
    pytest.param(
        draw(".....", ".###.", ".#.#.", ".##..", "....."),
        draw(".....", ".###.", ".###.", ".##..", "....."),
        id="diagonal-gap-does-not-open-a-hole",
    ),
    pytest.param(
        draw(".....", ".###.", ".#...", ".###.", "....."),
        draw(".....", ".###.", ".#...", ".###.", "....."),
        id="side-gap-opens-it",
    ),
    pytest.param(draw("###", "#.#", "###"), draw("###", "###", "###"), id="ring-on-the-whole-image"),
    pytest.param(draw("...", "...", "..."), draw("...", "...", "..."), id="empty"),
]


@pytest.mark.parametrize("mask, expected", HOLES)
def test_fill_holes(mask, expected):
    np.testing.assert_array_equal(fill_holes(mask), expected)
    np.testing.assert_array_equal(PostProcess.uniform(1, 0.5, 0, fill_holes=True)(one_class(mask))[0], expected)
    np.testing.assert_array_equal(PostProcess.uniform(1, 0.5, 0, fill_holes=False)(one_class(mask))[0], mask)


# --- head gate -----------------------------------------------------------------------------------

HEAD_GATE = [
    pytest.param(0.6, 0.61, True, id="above-kept"),
    pytest.param(0.6, 0.6, False, id="exactly-at-threshold-dropped"),
    pytest.param(0.6, 0.3, False, id="below-dropped"),
    pytest.param(0.0, 0.0, True, id="zero-is-off"),
    pytest.param(0.6, np.nan, False, id="nan-head-dropped"),
    pytest.param(1.0, 1.0, False, id="one-never-passes"),
]


@pytest.mark.parametrize("head_threshold, head, kept", HEAD_GATE)
def test_head_gate(head_threshold, head, kept):
    probs = one_class(SQUARE)
    post = PostProcess.uniform(1, 0.5, 0, head_threshold=head_threshold)
    assert post(probs, np.array([head])).sum() == (9 if kept else 0)
    assert post.gate(np.array([0.9]), np.array([head]))[0] == kept


def test_head_gate_is_per_class_and_an_off_class_ignores_its_nan_head():
    probs = np.stack([one_class(SQUARE)[0]] * 3)
    post = PostProcess.uniform(3, 0.5, 0, head_threshold=[0.5, 0.0, 0.5])
    masks = post(probs, np.array([0.7, np.nan, 0.4]))
    assert [int(m.sum()) for m in masks] == [9, 9, 0]


def test_head_gate_without_heads_is_an_error_and_off_needs_none():
    with pytest.raises(ValueError, match="class head"):
        PostProcess.uniform(1, 0.5, 0, head_threshold=0.5)(one_class(SQUARE))
    assert PostProcess.uniform(1, 0.5, 0)(one_class(SQUARE)).sum() == 9


# --- peak gate -----------------------------------------------------------------------------------

# Pixel values 0.9, 0.8, 0.4, 0.3 on a background of 0.0: max 0.9; top-3 mean (0.9 + 0.8 + 0.4) / 3
# = 0.7; top-2 mean 0.85; top-10 mean (0.9 + 0.8 + 0.4 + 0.3) / 10 = 0.24 (zeros count).
PEAK_PIXELS = np.zeros((1, 4, 5))
PEAK_PIXELS[0, 0, 0], PEAK_PIXELS[0, 0, 1], PEAK_PIXELS[0, 3, 4], PEAK_PIXELS[0, 2, 0] = 0.9, 0.8, 0.4, 0.3

PEAKS = [
    pytest.param("max", 1, 0.9, id="max"),
    pytest.param("top_k", 1, 0.9, id="top-1-is-max"),
    pytest.param("top_k", 2, 0.85, id="top-2"),
    pytest.param("top_k", 3, 0.7, id="top-3"),
    pytest.param("top_k", 10, 0.24, id="top-10-counts-background"),
    pytest.param("top_k", 1000, 2.4 / 20, id="k-over-the-image-means-all-pixels"),
]


@pytest.mark.parametrize("peak, top_k, expected", PEAKS)
def test_peaks(peak, top_k, expected):
    post = PostProcess.uniform(1, 0.5, 0, peak=peak, peak_top_k=top_k)
    assert post.peaks(PEAK_PIXELS)[0] == pytest.approx(expected)
    batch = np.stack([PEAK_PIXELS, PEAK_PIXELS / 2])  # (N, C, H, W) -> (N, C)
    np.testing.assert_allclose(post.peaks(batch), [[expected], [expected / 2]])


PEAK_GATE = [
    pytest.param("max", 0.85, 2, id="max-above-threshold-kept"),
    pytest.param("max", 0.9, 0, id="max-exactly-at-threshold-dropped"),
    pytest.param("top_k", 0.65, 2, id="top-3-mean-above-kept"),
    pytest.param("top_k", 0.75, 0, id="top-3-mean-below-dropped-though-max-passes"),
    pytest.param("top_k", 0.0, 2, id="zero-is-off"),
]


@pytest.mark.parametrize("peak, threshold, pixels", PEAK_GATE)
def test_peak_gate(peak, threshold, pixels):
    post = PostProcess.uniform(1, 0.5, 0, peak=peak, peak_top_k=3, peak_threshold=threshold)
    assert post(PEAK_PIXELS).sum() == pixels  # 0.9 and 0.8 are at least the pixel threshold


# --- soft gate -------------------------------------------------------------------------------------

SOFT_GATE = [
    pytest.param(0.75, 0.75, 9, 0.5625, id="0.75-times-0.75-passes-0.5"),
    pytest.param(0.75, 0.5, 0, 0.375, id="0.75-times-0.5-fails-0.5"),
    pytest.param(1.0, 0.5, 9, 0.5, id="product-exactly-at-threshold-kept"),
    pytest.param(0.75, np.nan, 9, 0.75, id="nan-head-no-gate"),  # no head predicts the class, as GatedSearch
]


@pytest.mark.parametrize("high, head, pixels, peak", SOFT_GATE)
def test_soft_gate_multiplies_before_threshold_and_peaks(high, head, pixels, peak):
    probs = one_class(SQUARE, high=high, low=0.0)
    post = PostProcess.uniform(1, 0.5, 0, soft_gate=True)
    masks, peaks = post.candidates(probs, np.array([head]))
    assert masks.sum() == pixels
    assert peaks[0] == peak  # products of binary fractions: exact
    assert post(probs, np.array([head])).sum() == pixels


def test_soft_gate_needs_heads():
    with pytest.raises(ValueError, match="class head"):
        PostProcess.uniform(1, 0.5, 0, soft_gate=True)(one_class(SQUARE))


# --- order of operations ----------------------------------------------------------------------------

# A 10-pixel blob and four lone pixels: 14 pixels in all. With min_component 2 and min_area 12,
# the components go first (10 left, under 12: emptied); counting the total first would keep
# the class (14 >= 12) and leave the blob.
BLOB_AND_SPECKS = draw(
    "#.......#",
    "..#####..",
    "..#####..",
    "#.......#",
)
# An 8-pixel ring around one hole: filled it has 9 pixels, so min_area 9 keeps it only when the
# holes are filled before the area is counted.
RING = draw(".....", ".###.", ".#.#.", ".###.", ".....")
# Threshold before components: two 4-pixel squares joined by a bridge pixel at 0.45. At pixel
# threshold 0.5 they are two components of 4 (removed at min_component 5); at 0.4, one of 9.
BRIDGED = np.zeros((1, 2, 5))
BRIDGED[0, :, :2] = BRIDGED[0, :, 3:] = 0.9
BRIDGED[0, 0, 2] = 0.45

ORDER = [
    pytest.param(one_class(BLOB_AND_SPECKS), {"min_component": 2, "min_area": 12}, 0, id="components-before-area"),
    pytest.param(
        one_class(BLOB_AND_SPECKS), {"min_component": 2, "min_area": 10}, 10, id="components-then-area-at-limit"
    ),
    pytest.param(one_class(BLOB_AND_SPECKS), {"min_component": 0, "min_area": 12}, 14, id="no-components-total-passes"),
    pytest.param(one_class(RING), {"fill_holes": True, "min_area": 9}, 9, id="holes-before-area"),
    pytest.param(one_class(RING), {"fill_holes": False, "min_area": 9}, 0, id="unfilled-ring-under-area"),
    pytest.param(one_class(RING), {"fill_holes": True, "min_component": 9}, 0, id="components-before-holes"),
    pytest.param(BRIDGED, {"pixel_threshold": 0.5, "min_component": 5}, 0, id="threshold-before-components"),
    pytest.param(BRIDGED, {"pixel_threshold": 0.4, "min_component": 5}, 9, id="bridge-above-threshold-joins"),
]


@pytest.mark.parametrize("probs, options, pixels", ORDER)
def test_order_of_operations(probs, options, pixels):
    options = {"pixel_threshold": 0.5, "min_area": 0, **options}
    post = PostProcess.uniform(1, options.pop("pixel_threshold"), options.pop("min_area"), **options)
    assert post(probs).sum() == pixels


def test_pixel_threshold_is_inclusive_in_float32_and_float16():
    for dtype in (np.float16, np.float32, np.float64):
        probs = np.array([[[0.5, np.nextafter(dtype(0.5), dtype(0))]]], dtype=dtype)
        np.testing.assert_array_equal(PostProcess.uniform(1, 0.5, 0)(probs)[0], [[True, False]])


# --- JSON ----------------------------------------------------------------------------------------------

EVERY_FIELD = {
    "pixel_threshold": [0.3, 0.45, 0.5, 0.625],
    "min_area": [0, 600, 900, NEVER],
    "min_component": [0, 1, 150, 400],
    "fill_holes": [True, False, True, False],
    "head_threshold": [0.0, 0.6, 0.7, 0.6],
    "peak_threshold": [0.5, 0.0, 0.6, 0.55],
    "peak": "top_k",
    "peak_top_k": 7,
    "soft_gate": True,
}


def _fields(post: PostProcess) -> dict:
    return {name: (value.tolist() if isinstance(value, np.ndarray) else value) for name, value in vars(post).items()}


def test_json_round_trip_of_every_field():
    post = PostProcess.uniform(
        4,
        EVERY_FIELD["pixel_threshold"],
        EVERY_FIELD["min_area"],
        **{k: v for k, v in EVERY_FIELD.items() if k not in ("pixel_threshold", "min_area")},
    )
    assert json.loads(post.to_json()) == EVERY_FIELD
    back = PostProcess.from_json(post.to_json(), 4)
    assert _fields(back) == EVERY_FIELD
    assert back.min_component.dtype == np.int64 and back.fill_holes.dtype == bool
    assert PostProcess.from_json(json.dumps(EVERY_FIELD)).num_classes == 4  # the count from the file


def test_an_old_file_with_only_threshold_and_area_loads_with_the_gates_off():
    post = PostProcess.from_json('{"pixel_threshold": [0.5, 0.4], "min_area": [100, 0]}', 2)
    assert _fields(post) == {
        "pixel_threshold": [0.5, 0.4],
        "min_area": [100, 0],
        "min_component": [0, 0],
        "fill_holes": [False, False],
        "head_threshold": [0.0, 0.0],
        "peak_threshold": [0.0, 0.0],
        "peak": "max",
        "peak_top_k": 100,
        "soft_gate": False,
    }
    assert not post.uses_heads


def test_defaults_fill_only_the_keys_a_file_lacks():
    defaults = {"peak": "top_k", "peak_top_k": 5}
    post = PostProcess.from_json('{"pixel_threshold": [0.5], "min_area": [0]}', 1, defaults=defaults)
    assert (post.peak, post.peak_top_k) == ("top_k", 5)
    post = PostProcess.from_json('{"pixel_threshold": [0.5], "min_area": [0], "peak": "max"}', 1, defaults=defaults)
    assert (post.peak, post.peak_top_k) == ("max", 5)


def _file(**changes) -> str:
    data = {"pixel_threshold": [0.5, 0.5], "min_area": [0, 0], **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...})


BAD_FILES = [
    pytest.param(_file(min_size=[1, 2]), "unknown key 'min_size'", id="unknown-key"),
    pytest.param(_file(min_component=[0]), r"min_component must list one value per class \(2\)", id="short-list"),
    pytest.param(_file(head_threshold=0.5), r"head_threshold must list one value per class", id="scalar-not-list"),
    pytest.param(
        _file(pixel_threshold=[0.5, 1.5]), r"pixel_threshold\[1\] = 1.5 is not a probability", id="threshold-over-1"
    ),
    pytest.param(_file(peak_threshold=[0.5, "0.5"]), r"peak_threshold\[1\] = '0.5'", id="threshold-a-string"),
    pytest.param(_file(head_threshold=[True, 0.5]), r"head_threshold\[0\] = True", id="threshold-a-bool"),
    pytest.param(_file(label_threshold=[0.5, 1.5]), r"label_threshold\[1\] = 1.5", id="old-name-named-as-written"),
    pytest.param(
        _file(label_threshold=[0.5, 0.5], head_threshold=[0.5, 0.5]),
        "old name of head_threshold",
        id="old-and-new-name",
    ),
    pytest.param(_file(min_area=[-1, 0]), r"min_area\[0\] = -1 is not a whole number", id="negative-area"),
    pytest.param(_file(min_area=[0, 10.5]), r"min_area\[1\] = 10.5", id="fractional-area"),
    pytest.param(_file(min_component=[True, 0]), r"min_component\[0\] = True", id="bool-size"),
    pytest.param(_file(fill_holes=[1, 0]), r"fill_holes\[0\] = 1 is not true or false", id="fill-holes-int"),
    pytest.param(_file(soft_gate="yes"), r"soft_gate = 'yes'", id="soft-gate-string"),
    pytest.param(_file(peak="mean"), r"peak = 'mean' is not one of max, top_k", id="unknown-peak"),
    pytest.param(_file(peak_top_k=0), r"peak_top_k = 0 is not a whole number >= 1", id="top-k-zero"),
    pytest.param(_file(peak_top_k=2.5), r"peak_top_k = 2.5", id="top-k-fraction"),
    pytest.param(_file(min_area=...), "not a post-processing file.*min_area", id="missing-min-area"),
    pytest.param("[0.5, 0.5]", "not a post-processing file", id="a-list"),
    pytest.param("{pixel_threshold", "not a post-processing file", id="not-json"),
]


@pytest.mark.parametrize("text, message", BAD_FILES)
def test_bad_files_are_one_line_errors_naming_the_key(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        PostProcess.from_json(text, 2)
    assert "\n" not in str(caught.value)


def test_a_file_for_another_class_count_is_rejected():
    with pytest.raises(ValueError, match=r"pixel_threshold must list one value per class \(4\)"):
        PostProcess.from_json(_file(), 4)


# --- override -------------------------------------------------------------------------------------------

BASE = PostProcess.uniform(4, 0.5, 100, min_component=10, head_threshold=0.6)

OVERRIDES = [
    pytest.param(["min_area=600"], {"min_area": [600] * 4}, id="scalar-for-every-class"),
    pytest.param(["min_area=[600,600,900,2000]"], {"min_area": [600, 600, 900, 2000]}, id="per-class-list"),
    pytest.param(
        ["pixel_threshold=0.55", "min_component=150"],
        {"pixel_threshold": [0.55] * 4, "min_component": [150] * 4},
        id="two-keys",
    ),
    pytest.param(["min_area=1", "min_area=2"], {"min_area": [2] * 4}, id="the-last-wins"),
    pytest.param(["fill_holes=[true, false, true, false]"], {"fill_holes": [True, False, True, False]}, id="booleans"),
    pytest.param(["head_threshold=0"], {"head_threshold": [0.0] * 4}, id="gate-off"),
    pytest.param(["label_threshold=0.7"], {"head_threshold": [0.7] * 4}, id="old-name-of-the-head-gate"),
    pytest.param(
        ["peak=top_k", "peak_top_k=5", "peak_threshold=0.7"],
        {"peak": "top_k", "peak_top_k": 5, "peak_threshold": [0.7] * 4},
        id="peak-gate",
    ),
    pytest.param([" soft_gate =true"], {"soft_gate": True}, id="spaces-around-the-key"),
    pytest.param([], {}, id="nothing"),
]


@pytest.mark.parametrize("assignments, changed", OVERRIDES)
def test_override(assignments, changed):
    before = _fields(BASE)
    after = _fields(BASE.override(assignments))
    assert after == {**before, **changed}
    assert _fields(BASE) == before  # frozen: a new PostProcess


BAD_OVERRIDES = [
    pytest.param(
        ["min_size=3"], r"'min_size=3': expected KEY=VALUE with KEY one of pixel_threshold, min_area", id="unknown-key"
    ),
    pytest.param(["min_area"], r"'min_area': expected KEY=VALUE", id="no-value"),
    pytest.param(["min_area=[1, 2]"], r"min_area must list one value per class \(4\)", id="wrong-length"),
    pytest.param(["pixel_threshold=2"], r"pixel_threshold\[0\] = 2 is not a probability", id="out-of-range"),
    pytest.param(["min_area=big"], r"min_area\[0\] = 'big'", id="not-a-number"),
    pytest.param(["min_area=[1, 2"], r"'min_area=\[1, 2': '\[1, 2' is not a value", id="bad-yaml"),
    pytest.param(["peak=mean"], r"peak = 'mean'", id="unknown-peak"),
]


@pytest.mark.parametrize("assignments, message", BAD_OVERRIDES)
def test_bad_overrides_name_the_assignment(assignments, message):
    with pytest.raises(ValueError, match=message) as caught:
        BASE.override(assignments)
    assert "\n" not in str(caught.value)
    assert re.search(re.escape(assignments[0].split("=")[0].strip()), str(caught.value))
