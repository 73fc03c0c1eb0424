"""Screening thresholds, ROC AUC and the screening report on hand-made tables (screening.py)."""

import itertools
import json

import numpy as np
import pytest

from steelseg.core.screening import (
    NEVER,
    ScreeningReport,
    roc_auc,
    screening_report,
    thresholds_from_json,
    thresholds_to_json,
    tune_screen_thresholds,
)

GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def _pairwise_auc(scores, labels) -> float:
    """The definition itself: over every (positive, negative) pair, 1 if the positive scores
    higher, 0.5 on a tie."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return sum(wins) / len(wins)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_the_pairwise_definition_ties_included(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 40) / 5  # many ties
    labels = rng.random(40) < 0.4
    assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels))


def test_auc_is_none_without_both_kinds_of_image():
    assert roc_auc([0.2, 0.9], [True, True]) is None
    assert roc_auc([0.2, 0.9], [False, False]) is None
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0


def test_tuning_finds_the_planted_thresholds():
    # Class 0: positives from 0.35, negatives up to 0.3: only 0.3 of the grid separates them.
    # Class 1: positives from 0.72, negatives up to 0.65: only 0.7 does (0.6 flags the 0.65
    # negative, 0.8 misses the 0.72 and 0.8 positives: present means strictly above).
    scores = np.array([[0.35, 0.72], [0.40, 0.80], [0.50, 0.95], [0.10, 0.65], [0.30, 0.20], [0.20, 0.55]])
    labels = np.array([[1, 1], [1, 1], [1, 1], [0, 0], [0, 0], [0, 0]], bool)
    thresholds, accuracy = tune_screen_thresholds(scores, labels, GRID)
    assert thresholds.tolist() == [0.3, 0.7] and accuracy.tolist() == [1.0, 1.0]
    # and each is the unique best of an exhaustive search over the grid
    for c in range(2):
        ranked = sorted(GRID, key=lambda t: -((scores[:, c] > t) == labels[:, c]).mean())
        best = ((scores[:, c] > ranked[0]) == labels[:, c]).mean()
        assert ((scores[:, c] > ranked[1]) == labels[:, c]).mean() < best


def test_tuning_prefers_the_highest_of_equal_thresholds():
    # Positives at 0.9, negatives at 0.1: every threshold from 0.1 to 0.8 is perfect.
    scores = np.array([[0.9], [0.9], [0.1], [0.1]])
    labels = np.array([[1], [1], [0], [0]], bool)
    thresholds, accuracy = tune_screen_thresholds(scores, labels, GRID)
    assert thresholds.tolist() == [0.8] and accuracy.tolist() == [1.0]


def test_a_class_without_positives_is_never_flagged():
    # Every score is high (an untrained model); flagging any image of a class that validation
    # never shows would be the "threshold search flags everything" bug.
    scores = np.full((5, 2), 0.97)
    labels = np.array([[1, 0]] * 5, bool)
    thresholds, accuracy = tune_screen_thresholds(scores, labels, GRID)
    assert thresholds[1] == NEVER and accuracy[1] == 1.0
    assert thresholds[0] <= 0.9  # the class with positives is flagged


def test_a_minimum_recall_lowers_the_threshold_until_it_keeps_enough_positives():
    # Positives 0.9, 0.9, 0.25, 0.15; negatives 0.2, 0.2, 0.1, 0.1. Most accurate: 0.2
    # (recall 3/4: 0.15 missed; 7/8 right). Recall 1 needs 0.1, which flags two negatives.
    scores = np.array([[0.9], [0.9], [0.25], [0.15], [0.2], [0.2], [0.1], [0.1]])
    labels = np.array([[1], [1], [1], [1], [0], [0], [0], [0]], bool)
    assert tune_screen_thresholds(scores, labels, GRID)[0].tolist() == [0.2]
    assert tune_screen_thresholds(scores, labels, GRID, min_recall=0.75)[0].tolist() == [0.2]
    thresholds, accuracy = tune_screen_thresholds(scores, labels, GRID, min_recall=1.0)
    assert thresholds.tolist() == [0.1] and accuracy.tolist() == [6 / 8]
    # no threshold of the grid keeps every positive: the lowest one
    assert tune_screen_thresholds(scores, labels, [0.3, 0.5], min_recall=1.0)[0].tolist() == [0.3]
    # a class without positives is still never flagged
    clean = tune_screen_thresholds(np.full((3, 1), 0.9), np.zeros((3, 1), bool), GRID, min_recall=1.0)
    assert clean[0].tolist() == [NEVER]


def test_report_counts_on_a_hand_made_table():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.2], [0.7, 0.6], [0.1, 0.1]])
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0], [0, 0]], bool)
    report = screening_report(scores, labels, np.array([0.5, 0.5]))
    # class 0 flags images 0 and 3: 1 true positive of 2 flagged, 1 of 2 positives found
    assert report.precision[0] == 0.5 and report.recall[0] == 0.5 and report.accuracy[0] == 0.6
    # class 1 flags images 1 and 3: precision 1/2, recall 1/1
    assert report.precision[1] == 0.5 and report.recall[1] == 1.0
    # screened out (no class above 0.5): images 2 and 4; image 4 is clean, image 2 is not
    assert report.screened_out == 0.4
    assert report.clean_screened_out == 0.5  # of clean images 3 and 4
    assert report.defective_screened_out == pytest.approx(1 / 3)  # of defective 0, 1, 2
    assert report.positives == [2, 1] and report.images == 5
    flags = scores > 0.5
    assert screening_report(scores, labels, flags=flags).model_dump(exclude={"screen_threshold"}) == report.model_dump(
        exclude={"screen_threshold"}
    )


def test_gate_file_round_trips_and_refuses_bad_values():
    assert thresholds_from_json(thresholds_to_json(np.array([0.6, 1.0])), 2).tolist() == [0.6, 1.0]
    for text, message in [
        ('{"screen_threshold": [0.5]}', "one value per class"),
        ('{"screen_threshold": [0.5, 1.5]}', "screen_threshold[1]"),
        ('{"screen_threshold": [0.5, true]}', "screen_threshold[1]"),
        ('{"label_threshold": [0.5, 1.5]}', "label_threshold[1]"),  # an earlier version's file: its own key named
        ("{}", "not a screening-threshold file"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            thresholds_from_json(text, 2)


def test_gate_file_written_by_an_earlier_version_still_loads():
    """gate.json once named its key label_threshold; a report in an old summary.json too."""
    assert json.loads(thresholds_to_json(np.array([0.25]))) == {"screen_threshold": [0.25]}
    assert thresholds_from_json('{"label_threshold": [0.3, 0.7]}', 2).tolist() == [0.3, 0.7]
    old = {"label_threshold": [0.4], "auc": [None], "precision": [None], "recall": [None], "accuracy": [1.0]}
    report = ScreeningReport.model_validate({**old, "positives": [0], "images": 1, "screened_out": 1.0})
    assert report.screen_threshold == [0.4]
    assert "label_threshold" not in report.model_dump() and report.model_dump()["screen_threshold"] == [0.4]
