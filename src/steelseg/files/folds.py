"""K-fold splits that keep near-duplicate images together and balance the defect classes.

The Severstal train set holds near-identical photos, sometimes with different masks; if one
copy lands in training and another in validation, validation scores leak. So images are
grouped by a perceptual hash first, and a group never splits across folds.

Core (pure numpy, deterministic per seed): ``perceptual_hash`` -> ``group_near_duplicates``
-> ``assign_folds``. I/O lives apart: ``make_folds`` reads a dataset, ``write_folds`` /
``read_folds`` store the table as CSV ``ImageId,Fold,Group``.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from steelseg.errors import SteelsegError
from steelseg.files.atomic import atomic_open
from steelseg.files.images import read_gray

HASH_ROWS, HASH_COLS = 8, 8  # 64 bits: one uint64 per image
FOLDS_HEADER = ["ImageId", "Fold", "Group"]


class FoldError(SteelsegError, ValueError):
    """A folds file that cannot be read (message starts ``file:line:``), or folds that miss an image."""


# --- hashing ----------------------------------------------------------------------------


def perceptual_hash(image: np.ndarray, rows: int = HASH_ROWS, cols: int = HASH_COLS) -> np.uint64:
    """Lighting-free average hash of an (H, W) image: a uint64 of ``rows * cols <= 64`` bits.

    The image is block-averaged to a ``rows x cols`` grid (32x200 px cells on a 256x1600
    strip, so noise and JPEG re-encoding average out); the separable lighting trend (row
    means + column means) is removed, and each bit says whether a cell's residual is above
    the median. Bits are row-major, first bit most significant.

    Why not a plain dHash (is a cell brighter than its left neighbour): every Severstal strip
    shares one lighting profile (bright middle, dark ends), which sets most dHash bits alike.
    On 20 real unrelated strips it put pairs 2-4 bits apart, and black off-sheet bands (equal
    cells) flipped up to 28 bits under a JPEG re-save. This hash kept unrelated strips >= 6
    bits apart and re-saves, noise and brightness/contrast changes within 2 bits. A flat
    image (all black) hashes to 0.
    """
    if image.ndim != 2:
        raise ValueError(f"perceptual_hash expects an (H, W) image, got shape {image.shape}")
    if rows * cols > 64:
        raise ValueError(f"a hash of {rows}x{cols} bits does not fit in 64 bits")
    cells = _block_means(image.astype(np.float64), rows, cols)
    residual = cells - cells.mean(axis=0, keepdims=True) - cells.mean(axis=1, keepdims=True) + cells.mean()
    residual = residual.round(6)  # float dust on flat or purely separable images is not a bit
    bits = (residual > np.median(residual)).ravel()
    weights = np.uint64(1) << np.arange(bits.size - 1, -1, -1, dtype=np.uint64)
    return np.uint64(np.sum(weights[bits], dtype=np.uint64))


def _block_means(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean of each cell of an even ``rows x cols`` grid over (H, W) float -> (rows, cols)."""
    height, width = image.shape
    if height < rows or width < cols:
        raise ValueError(f"image of {height}x{width} is too small for a {rows}x{cols} hash grid")
    # Integer cell edges, so sizes that do not divide evenly still give near-equal cells.
    y_edges = np.linspace(0, height, rows + 1).round().astype(int)
    x_edges = np.linspace(0, width, cols + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(image, y_edges[:-1], axis=0), x_edges[:-1], axis=1)
    return sums / np.outer(np.diff(y_edges), np.diff(x_edges))


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bit differences between uint64 hashes, broadcasting like ``a ^ b``; uint8 result."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


# --- grouping ---------------------------------------------------------------------------


def group_near_duplicates(hashes: np.ndarray, max_distance: int = 4, chunk: int = 1024) -> np.ndarray:
    """Group ids (N,) int64 for hashes (N,) uint64: images whose hashes differ in at most
    ``max_distance`` bits share a group, transitively (a~b, b~c puts a, b, c together).

    Group ids are 0..G-1, numbered by each group's first image, so they do not depend on
    anything but the hashes. Pairs are found ``chunk`` rows at a time, upper triangle only.
    """
    hashes = np.asarray(hashes, dtype=np.uint64).ravel()
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    # Identical hashes are one node: fewer pairs, and a heap of flat images stays cheap.
    unique, inverse = np.unique(hashes, return_inverse=True)
    firsts, seconds = [], []
    for start in range(0, unique.size, chunk):
        rows = unique[start : start + chunk]
        dist = hamming(rows[:, None], unique[None, start:])
        i, j = np.nonzero(dist <= max_distance)
        keep = i < j  # upper triangle (both offset by start), no self-pairs
        firsts.append(start + i[keep])
        seconds.append(start + j[keep])
    roots = _connected_components(unique.size, np.concatenate(firsts or [[]]), np.concatenate(seconds or [[]]))
    # Renumber by the first image of each group.
    image_roots = roots[inverse]
    _, first_seen, labels = np.unique(image_roots, return_index=True, return_inverse=True)
    rank = np.empty(first_seen.size, dtype=np.int64)
    rank[np.argsort(first_seen, kind="stable")] = np.arange(first_seen.size)
    return rank[labels].astype(np.int64)


def _connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find, vectorised: root (smallest member) of each of n nodes given edges a-b."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    parent = np.arange(n, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        unmerged = ra != rb
        if not unmerged.any():
            return parent
        ra, rb = ra[unmerged], rb[unmerged]
        low = np.minimum(ra, rb)
        # Hook each root onto the smaller root across an edge: parents only ever decrease,
        # so no cycles form; then jump pointers until every node points at its root.
        np.minimum.at(parent, ra, low)
        np.minimum.at(parent, rb, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


# --- fold assignment ----------------------------------------------------------------------


def assign_folds(presence: np.ndarray, groups: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold (N,) int64 in 0..k-1 for images with class presence (N, C) bool and group ids (N,).

    Stratified by class-presence signature (which classes an image holds; "no defect" is a
    signature too) and grouped: every group goes whole into one fold. Greedy: groups are
    shuffled with ``seed``, then taken largest first, each into the fold where its
    signatures are least represented relative to their totals; ties go to the fold least
    filled by the group's single classes, then to the smallest fold, then the lowest index.
    """
    presence = np.asarray(presence, dtype=bool)
    groups = np.asarray(groups).ravel()
    if presence.ndim != 2 or presence.shape[0] != groups.size:
        raise ValueError(f"presence must be (N, C), one row per entry of groups ({groups.size}), got {presence.shape}")
    group_ids, group_of = np.unique(groups, return_inverse=True)
    if not 2 <= k <= group_ids.size:
        raise ValueError(f"k must be between 2 and the number of groups ({group_ids.size}), got {k}")
    signature_counts = _per_group(group_of, group_ids.size, _one_hot_signatures(presence))
    class_counts = _per_group(group_of, group_ids.size, np.column_stack([presence, ~presence.any(axis=1)]))
    sizes = np.bincount(group_of, minlength=group_ids.size)

    rng = np.random.default_rng(seed)
    order = rng.permutation(group_ids.size)
    order = order[np.argsort(-sizes[order], kind="stable")]  # larger first, shuffled within a size

    # Dividing by the totals makes "relative to the target" comparable across rare and common labels.
    signature_weights = 1.0 / np.maximum(signature_counts.sum(axis=0), 1)
    class_weights = 1.0 / np.maximum(class_counts.sum(axis=0), 1)
    fold_signatures = np.zeros((k, signature_counts.shape[1]))
    fold_classes = np.zeros((k, class_counts.shape[1]))
    fold_sizes = np.zeros(k, dtype=np.int64)
    fold_of_group = np.empty(group_ids.size, dtype=np.int64)
    for g in order:
        signature_fill = fold_signatures @ (signature_counts[g] * signature_weights)
        class_fill = fold_classes @ (class_counts[g] * class_weights)
        best = np.lexsort((np.arange(k), fold_sizes, class_fill, signature_fill))[0]
        fold_of_group[g] = best
        fold_signatures[best] += signature_counts[g]
        fold_classes[best] += class_counts[g]
        fold_sizes[best] += sizes[g]
    return fold_of_group[group_of]


def _one_hot_signatures(presence: np.ndarray) -> np.ndarray:
    """(N, C) bool -> (N, S) one-hot over the S distinct class-presence rows."""
    _, signature = np.unique(presence, axis=0, return_inverse=True)
    signature = signature.ravel()
    return np.eye(signature.max(initial=-1) + 1, dtype=np.int64)[signature]


def _per_group(group_of: np.ndarray, n_groups: int, features: np.ndarray) -> np.ndarray:
    """Sum (N, F) per-image features per group -> (G, F) int64."""
    counts = np.zeros((n_groups, features.shape[1]), dtype=np.int64)
    np.add.at(counts, group_of, features.astype(np.int64))
    return counts


def summary(presence: np.ndarray, folds: np.ndarray, class_names: list[str] | None = None) -> str:
    """A text table: per fold, its image count, images holding each class, and clean images."""
    presence = np.asarray(presence, dtype=bool)
    folds = np.asarray(folds).ravel()
    names = list(class_names or [str(c) for c in range(1, presence.shape[1] + 1)])
    header = ["fold", "images", *names, "none"]
    rows = [[str(fold), *_counts(presence[folds == fold])] for fold in np.unique(folds)]
    rows.append(["all", *_counts(presence)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *rows])


def _counts(presence: np.ndarray) -> list[str]:
    """Images, images per class and clean images of (n, C) bool presence, as text."""
    return [str(len(presence)), *map(str, presence.sum(axis=0).tolist()), str(int((~presence.any(axis=1)).sum()))]


# --- I/O ----------------------------------------------------------------------------------


@dataclass
class FoldTable:
    """Folds of one dataset: one entry per image, in the dataset's order."""

    image_ids: list[str]
    folds: np.ndarray  # (N,) int64, 0..k-1
    groups: np.ndarray  # (N,) int64, near-duplicate group ids
    presence: np.ndarray  # (N, C) bool, class presence
    hashes: np.ndarray  # (N,) uint64 perceptual hashes
    class_names: list[str]
    distance: int = 4  # hash bits within which images were grouped (``make_folds`` may tighten it)
    asked_distance: int = 4

    def summary(self) -> str:
        """Fold table plus a line on grouping: one giant group would mean the hash threshold is too loose."""
        sizes = np.bincount(self.groups) if len(self.groups) else np.zeros(1, np.int64)
        grouped = int(sizes[sizes > 1].sum())
        tightened = (
            f" (within {self.distance} bit{'' if self.distance == 1 else 's'}, not {self.asked_distance}: "
            f"at {self.asked_distance} one group held "
            f"more images than a fold)"
            if self.distance < self.asked_distance
            else ""
        )
        return (
            f"{len(self.image_ids)} images in {int((sizes > 0).sum())} groups; {grouped} images share a group "
            f"with a near-duplicate{tightened}; largest group {int(sizes.max())} images\n"
            + summary(self.presence, self.folds, self.class_names)
        )


def make_folds(dataset, k: int = 5, seed: int = 0, max_distance: int = 4, progress: bool = True) -> FoldTable:
    """Hash every image of a ``SegmentationDataset`` (each read once), group near-duplicates
    and assign folds; class presence from ``dataset.class_presence()``. A k that does not fit raises ``FoldError``.
    """
    if k < 2:  # before reading thousands of images
        raise FoldError(f"k must be at least 2, got {k}")
    n = len(dataset)
    hashes = np.zeros(n, dtype=np.uint64)
    for i in tqdm(range(n), desc="hash", unit="img", disable=not progress):
        hashes[i] = perceptual_hash(read_gray(dataset.image_paths[i], dataset.image_shape))
    presence = dataset.class_presence()
    groups, distance = _bounded_groups(hashes, max_distance, n / k)
    try:
        folds = assign_folds(presence, groups, k, seed)
    except ValueError as err:
        raise FoldError(f"{dataset.root}: cannot make {k} folds of {n} images: {err}") from None
    return FoldTable(
        dataset.image_ids, folds, groups, presence, hashes, list(dataset.class_names), distance, max_distance
    )


def _bounded_groups(hashes: np.ndarray, max_distance: int, largest: float) -> tuple[np.ndarray, int]:
    """Near-duplicate groups at the largest distance <= ``max_distance`` whose largest group holds
    at most ``largest`` images (a fold's share), and that distance. Photos of one scene (a fixed
    camera on one machine part: BSData) chain at 4 bits into one group of most of the data set
    (200 of 259 images), which would leave one fold with most images and the others with a
    handful; identical hashes (distance 0) always stay together."""
    distance = max_distance
    groups = group_near_duplicates(hashes, distance)
    while distance > 0 and len(groups) and np.bincount(groups).max() > largest:
        distance -= 1
        groups = group_near_duplicates(hashes, distance)
    return groups, distance


def write_folds(path: str | os.PathLike, table: FoldTable) -> None:
    """Write ``ImageId,Fold,Group`` rows atomically, in the table's order."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FOLDS_HEADER)
        for image_id, fold, group in zip(table.image_ids, table.folds.tolist(), table.groups.tolist()):
            writer.writerow([image_id, fold, group])


class Folds(dict):
    """{image id: fold} as read from a file, remembering the file and each image's line for messages."""

    def __init__(self, source: str = "<memory>"):
        super().__init__()
        self.source = source
        self.lines: dict[str, int] = {}

    def where(self, image_id: str) -> str:
        line = self.lines.get(image_id)
        return f"{self.source}:{line}" if line else self.source


def read_folds(path: str | os.PathLike) -> Folds:
    """Read a folds CSV into {image id: fold}; every problem is reported as ``file:line: ...``.

    Needs ``ImageId`` and ``Fold`` columns (any order; other columns such as ``Group`` are
    carried but not checked).
    """
    path = Path(path)
    if not path.is_file():
        raise FoldError(f"{path}: folds file not found")
    folds = Folds(str(path))
    try:
        _read_folds_rows(path, folds)
    except UnicodeDecodeError as err:
        raise FoldError(f"{path}: not UTF-8 text ({err.reason}); expected a CSV from `steelseg folds`") from None
    except csv.Error as err:
        raise FoldError(f"{path}: not a CSV table ({err})") from None
    return folds


def _read_folds_rows(path: Path, folds: Folds) -> None:
    lines = folds.lines
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if "ImageId" not in header or "Fold" not in header:
            raise FoldError(f"{path}:1: expected a header with ImageId and Fold columns, got {','.join(header)!r}")
        id_column, fold_column = header.index("ImageId"), header.index("Fold")
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise FoldError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
            image_id, fold_text = row[id_column].strip(), row[fold_column].strip()
            if not image_id:
                raise FoldError(f"{path}:{line}: missing image id")
            # A strict pattern: int() would also take "1_0" or "+1".
            if not re.fullmatch(r"-?[0-9]+", fold_text):
                raise FoldError(f"{path}:{line}: fold {fold_text!r} of image {image_id} is not an integer")
            fold = int(fold_text)
            if fold < 0:
                raise FoldError(f"{path}:{line}: fold {fold} of image {image_id} is negative")
            if image_id in folds:
                raise FoldError(f"{path}:{line}: duplicate image {image_id} (first at line {lines[image_id]})")
            folds[image_id], lines[image_id] = fold, line


def split_by_fold(
    image_ids: list[str], folds: dict[str, int], fold: int, left_out: set[str] = frozenset()
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of ``image_ids`` for validation fold ``fold``.

    Every image needs a fold, and every image of ``folds`` must be one of ``image_ids`` or of
    ``left_out`` (images ``--skip-bad`` left out): folds of another data set would otherwise
    split this one silently. Both sides must keep an image."""
    missing = [image_id for image_id in image_ids if image_id not in folds]
    if missing:
        raise FoldError(
            f"image {missing[0]} has no fold" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if fold not in set(folds.values()):
        raise FoldError(f"fold {fold} not found; folds are {sorted(set(folds.values()))}")
    known = set(image_ids) | set(left_out)
    unknown = [image_id for image_id in folds if image_id not in known]
    if unknown:
        where = folds.where(unknown[0]) if isinstance(folds, Folds) else "folds"
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise FoldError(
            f"{where}: image {unknown[0]} is not in the data set{more}; were these folds made for other data?"
        )
    in_fold = np.array([folds[image_id] == fold for image_id in image_ids], dtype=bool)
    if in_fold.all() or not in_fold.any():
        side = "training" if in_fold.all() else "validation"
        raise FoldError(
            f"fold {fold} leaves no {side} image ({int(in_fold.sum())} of {len(image_ids)} images are in it)"
        )
    return np.flatnonzero(~in_fold), np.flatnonzero(in_fold)
