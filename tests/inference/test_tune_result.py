"""``keep_better``: when the sources' own post-processing is kept for a class, now that it may
not switch a class off (without ``allow_off``) nor undo the recall floor. Scores are given."""

import numpy as np

from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.inference.oof_combine import OofCounts
from steelseg.inference.tune import keep_better
from steelseg.inference.tune_result import _eligible

TUNED = PostProcess.uniform(2, [0.5, 0.5], [0, 0], min_component=[150, 150])
BEFORE, AFTER = np.array([0.9, 0.8]), np.array([0.6, 0.7])  # the sources' own scores better on both


def test_an_off_setting_of_the_sources_is_not_kept_without_allow_off():
    own = PostProcess.uniform(2, [0.3, 0.6], [NEVER, 20])
    post, kept = keep_better(own, BEFORE, TUNED, AFTER)
    assert kept.tolist() == [False, True]
    assert post.min_area.tolist() == [0, 20] and post.pixel_threshold.tolist() == [0.5, 0.6]
    post, kept = keep_better(own, BEFORE, TUNED, AFTER, allow_off=True)  # the old behaviour
    assert kept.tolist() == [True, True] and post.min_area.tolist() == [NEVER, 20]


def test_every_way_of_switching_off_counts():
    # a gate at 1 (no score is above 1), a min area over the largest image (64 pixels)
    gate = PostProcess.uniform(2, 0.5, 0, head_threshold=[1.0, 0.0])
    assert keep_better(gate, BEFORE, TUNED, AFTER)[1].tolist() == [False, True]
    big = PostProcess.uniform(2, 0.5, [65, 64])
    assert keep_better(big, BEFORE, TUNED, AFTER, pixels=64)[1].tolist() == [False, True]
    assert keep_better(big, BEFORE, TUNED, AFTER)[1].tolist() == [True, True]  # size unknown: only NEVER


def test_a_class_the_recall_floor_rules_out_is_not_kept():
    own = PostProcess.uniform(2, [0.3, 0.6], [10, 20])
    post, kept = keep_better(own, BEFORE, TUNED, AFTER, eligible=np.array([True, False]))
    assert kept.tolist() == [True, False] and post.pixel_threshold.tolist() == [0.3, 0.5]


def test_shared_settings_that_differ_keep_the_sources_only_where_every_class_may():
    soft = PostProcess.uniform(2, 0.5, 0, peak="top_k")
    own = PostProcess.uniform(2, [0.3, 0.6], [NEVER, 20])  # better as a whole, but class 1 off
    post, kept = keep_better(own, BEFORE, soft, AFTER)
    assert post is soft and not kept.any()
    post, kept = keep_better(own, BEFORE, soft, AFTER, allow_off=True)
    assert post is own and kept.all()


def _counts(hits: list[int], positives: list[int]) -> OofCounts:
    """Counts of (1 image per positive + 1 clean) x 1 class with ``hits`` of the positives predicted."""
    n = max(positives) + 1
    true, pred = np.zeros((n, len(hits)), np.int64), np.zeros((n, len(hits)), np.int64)
    for c, (h, p) in enumerate(zip(hits, positives)):
        true[:p, c] = 5
        pred[:h, c] = 3
    return OofCounts(np.minimum(true, pred), pred, true, np.ones(n))


def test_the_sources_own_setting_is_eligible_as_the_search_choice_is():
    # class 1: own finds 1 of 2, tuned 2 of 2; class 2: own 1 of 4, tuned 2 of 4
    own, tuned = _counts([1, 1], [2, 4]), _counts([2, 2], [2, 4])
    assert _eligible(own, tuned, None).tolist() == [True, True]  # no floor: all
    assert _eligible(own, tuned, 0.5).tolist() == [True, False]  # needs 1 of 2, 2 of 4
    # floor 1: the tuned misses it on class 2 too; the own finds fewer there: not eligible
    assert _eligible(own, tuned, 1.0).tolist() == [False, False]
    assert _eligible(tuned, own, 1.0).tolist() == [True, True]  # finds at least as many as a miss
