"""Near-duplicate clusters (5th place): the Severstal test set holds overlapping photos of the
same sheet; averaging a class score over the copies before gating makes them agree. Pure
numpy + scipy.

Images are embedded by an encoder's bottleneck features (mean over the feature map), and
joined when their cosine distance is within ``distance`` (single linkage: chains of
overlapping photos become one cluster).
"""

from __future__ import annotations

import numpy as np


def cluster(embeddings: np.ndarray, distance: float) -> np.ndarray:
    """(N, D) features -> (N,) int cluster labels, 0..K-1 in order of first appearance."""
    n = len(embeddings)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    unit = embeddings.astype(np.float64)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.where(norms > 0, norms, 1)
    # |u - v|^2 / 2 = 1 - cos for unit vectors; scipy's "cosine" is NaN for a zero vector (and
    # linkage refuses NaN), this is 0.5 from it to any other and 0 between two zero vectors.
    raw = fcluster(linkage(pdist(unit, "sqeuclidean") / 2, method="single"), t=distance, criterion="distance")
    _, first, labels = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # relabel by first appearance: stable across runs
    return order[labels]


def share(scores: np.ndarray, labels: np.ndarray, how: str = "mean") -> np.ndarray:
    """(N, C) scores -> each image's cluster's mean (or max) score; NaN stays NaN."""
    out = np.empty_like(scores)
    for label in np.unique(labels):
        rows = labels == label
        block = scores[rows]
        if how == "max":
            out[rows] = np.fmax.reduce(block, axis=0)  # NaN only where all are: nanmax without its warning
        else:
            with np.errstate(invalid="ignore"):  # 0 / 0: NaN for a class no head predicts, no warning
                out[rows] = np.nansum(block, axis=0) / np.count_nonzero(~np.isnan(block), axis=0)
    return out
