"""Near-duplicate clusters (5th place): planted copies of a few embeddings, and the class scores
shared within a cluster, checked against hand-computed values."""

import math
import warnings

import numpy as np
import pytest

from steelseg.inference.clusters import cluster, share


def _planted(order: str, noise: float = 1e-4, seed: int = 0) -> np.ndarray:
    """One embedding per letter of ``order``: the same letter is the same random vector plus
    tiny noise (a near-duplicate photo), different letters are independent vectors."""
    rng = np.random.default_rng(seed)
    bases = {letter: rng.normal(size=32) for letter in sorted(set(order))}
    return np.stack([bases[letter] + noise * rng.normal(size=32) for letter in order])


def _unit(angle_degrees: float) -> np.ndarray:
    return np.array([math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))])


CLUSTERS = [
    pytest.param(_planted("abacb"), 0.05, [0, 1, 0, 2, 1], id="copies-together-distinct-apart"),
    pytest.param(_planted("cacb"), 0.05, [0, 1, 0, 2], id="numbered-by-first-appearance"),
    pytest.param(_planted("abcd"), 0.05, [0, 1, 2, 3], id="all-distinct"),
    pytest.param(_planted("aaaa"), 0.05, [0, 0, 0, 0], id="all-copies"),
    pytest.param(
        np.array([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0], [-1.0, -2.0, -3.0]]), 0.05, [0, 0, 1], id="scale-free-sign-not"
    ),
    # cosine distance 1 - cos 10 deg = 0.0152 between neighbours, 1 - cos 20 deg = 0.0603 end to end:
    # single linkage chains them at 0.05, and 0.01 keeps all apart
    pytest.param(np.stack([_unit(0), _unit(10), _unit(20)]), 0.05, [0, 0, 0], id="chain-joins-at-0.05"),
    pytest.param(np.stack([_unit(0), _unit(10), _unit(20)]), 0.01, [0, 1, 2], id="chain-apart-at-0.01"),
    pytest.param(np.stack([_unit(0), _unit(20), _unit(40)]), 0.05, [0, 1, 2], id="steps-over-the-distance"),
    pytest.param(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1e-4], [0.0, 0.0]]), 0.05, [0, 1, 1, 0], id="zero-embeddings"),
    pytest.param(np.ones((1, 4)), 0.05, [0], id="one-image"),
    pytest.param(np.ones((0, 4)), 0.05, [], id="no-image"),
]


@pytest.mark.parametrize("embeddings, distance, expected", CLUSTERS)
def test_cluster(embeddings, distance, expected):
    labels = cluster(embeddings, distance)
    assert labels.tolist() == expected
    assert labels.dtype.kind == "i"


def test_float16_features_cluster_as_float32():
    embeddings = _planted("abba", noise=1e-3)
    assert cluster(embeddings.astype(np.float16), 0.05).tolist() == [0, 1, 1, 0]


N = np.nan
SCORES = np.array(
    [
        [0.2, N, 0.9],
        [0.4, 0.6, 0.1],
        [0.9, N, N],
        [0.7, 0.5, 0.3],
    ]
)
LABELS = np.array([0, 0, 1, 0])

SHARES = [
    # cluster 0 = rows 0, 1, 3: mean (0.2+0.4+0.7)/3, (0.6+0.5)/2 (NaN left out), (0.9+0.1+0.3)/3
    pytest.param("mean", [[1.3 / 3, 0.55, 1.3 / 3]] * 2 + [[0.9, N, N]] + [[1.3 / 3, 0.55, 1.3 / 3]], id="mean"),
    pytest.param("max", [[0.7, 0.6, 0.9]] * 2 + [[0.9, N, N]] + [[0.7, 0.6, 0.9]], id="max"),
]


@pytest.mark.parametrize("how, expected", SHARES)
def test_share(how, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a class no head predicts (all NaN) is normal: no warning
        shared = share(SCORES, LABELS, how)
    np.testing.assert_allclose(shared, expected)
    assert np.isnan(SCORES[0, 1])  # the input is left alone


def test_share_with_singletons_changes_nothing():
    np.testing.assert_array_equal(share(SCORES, np.arange(4), "mean"), SCORES)
    np.testing.assert_array_equal(share(SCORES, np.arange(4), "max"), SCORES)
