"""A Predictor over a folder of images: batches read ahead in threads, candidates encoded one
batch behind, gated together at the end (``finish``), or class scores alone. No torch.

The functions take the ``Predictor`` as their first argument: they are its methods of the same
names (``iter_folder``, ``iter_candidates``, ``finish``, ``score_folder``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from steelseg.core import rle
from steelseg.core.outputs import Outputs
from steelseg.errors import SteelsegError
from steelseg.files.annotations import Annotations
from steelseg.files.images import ImageError, read_gray, require_images
from steelseg.inference.budget import Budget
from steelseg.inference.candidates import Candidate
from steelseg.inference.ensemble import EnsembleError
from steelseg.inference.sizes import InputError
from steelseg.inference.skipped import SkippedImages


def iter_folder(
    predictor,
    image_dir: str | os.PathLike,
    progress: bool = True,
    *,
    paths: list[Path] | None = None,
    shard: tuple[int, int] = (0, 1),
    budget: Budget | None = None,
    skip: SkippedImages | None = None,
) -> Iterator[tuple[Path, np.ndarray, Outputs]]:
    """Yield (path, image, its ``Outputs``) for every image of a folder (or ``paths``), in
    batches; the next batches are read and decoded in threads while the networks run on
    this one (OpenCV decodes and numpy copies without holding the GIL, so threads overlap
    like worker processes, without sending every image through a pipe).

    ``shard`` = (rank, world size): only every world-size-th batch, starting at rank; the
    batches are the same as in one process, so each image's numbers are too.
    ``budget``: checked after every batch (``Budget``). ``skip``: an image that cannot be
    read or is of a size the model is not trusted on is recorded there (and logged) and
    left out, where it would otherwise stop the prediction with an ``ImageError`` or
    ``InputError`` naming it; the skip is recorded before any later image is yielded."""
    paths = require_images(image_dir) if paths is None else paths
    size = predictor.batch_size
    batches = [paths[start : start + size] for start in range(0, len(paths), size)]
    rank, world = shard
    mine = batches[rank::world]
    total = sum(len(b) for b in mine)
    bar = tqdm(total=total, desc="predict", unit="img", disable=not progress)
    if budget is not None:
        budget.start(total)
    keep_going = skip is not None
    with ThreadPoolExecutor(max_workers=2) as reader:
        pending = deque(reader.submit(read_images, predictor, batch, keep_going) for batch in mine[:2])
        for index, batch in enumerate(mine):
            images = pending.popleft().result()
            if index + 2 < len(mine):
                pending.append(reader.submit(read_images, predictor, mine[index + 2], keep_going))
            good = _drop_bad(batch, images, skip)
            for group in _same_shape_runs([images[i] for i in good]):
                group = [good[g] for g in group]
                outputs = predictor.predict_outputs(np.stack([images[i] for i in group]))
                for j, i in enumerate(group):
                    yield batch[i], images[i], outputs[j]
            bar.update(len(batch))
            if budget is not None:
                budget.update(len(batch), predictor, bar)
    bar.close()


def iter_candidates(
    predictor,
    image_dir: str | os.PathLike,
    progress: bool = True,
    *,
    paths: list[Path] | None = None,
    shard: tuple[int, int] = (0, 1),
    budget: Budget | None = None,
    skip: SkippedImages | None = None,
    observe: Callable[[Path, Outputs], None] | None = None,
) -> Iterator[tuple[str, Candidate]]:
    """Yield (image id, ``Candidate``) for every image of a folder (or ``paths``), in their
    order; arguments as ``iter_folder``. Post-processing and encoding run in a second
    thread, one batch behind the networks. ``observe(path, outputs)``, when given, sees each
    image's ``Outputs`` as they are made (``--review`` keeps its uncertainty from them)."""
    if not predictor.has_masks:
        raise InputError(f"a {predictor.task} run gives class scores, not masks: use score_folder")
    paths = require_images(image_dir) if paths is None else paths
    embed = embedder(predictor.members) if predictor.clusters is not None else None
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=1) as encoder:
        for path, image, outputs in iter_folder(
            predictor, image_dir, progress, paths=paths, shard=shard, budget=budget, skip=skip
        ):
            embedding = embed(image) if embed is not None else None
            if observe is not None:
                observe(path, outputs)
            encoded = encoder.submit(predictor.postprocess.candidates, outputs.pixels, outputs.heads)
            pending.append((path.name, outputs, embedding, encoded))
            while len(pending) > 2 * predictor.batch_size:  # bounded: probabilities are large
                yield _candidate(*pending.popleft())
        while pending:
            yield _candidate(*pending.popleft())


def finish(predictor, candidates: dict[str, Candidate], source: str = "", scores: dict | None = None) -> Annotations:
    """Gate the candidates (class scores shared within near-duplicate clusters first, when
    the ensemble says so) -> the submission's masks. ``scores`` receives the class scores."""
    image_ids = list(candidates)
    result = Annotations(source=source)
    if not image_ids:
        return result
    peaks = np.stack([candidates[i].peaks for i in image_ids])
    heads = np.stack([candidates[i].heads for i in image_ids]) if predictor.has_heads else None
    if predictor.clusters is not None:
        from steelseg.inference.clusters import cluster, share

        labels = cluster(np.stack([candidates[i].embedding for i in image_ids]), predictor.clusters.distance)
        peaks = share(peaks, labels, predictor.clusters.share)
        heads = None if heads is None else share(heads, labels, predictor.clusters.share)
    keep = predictor.postprocess.gate(peaks, heads)
    for row, image_id in enumerate(image_ids):
        for class_id, encoded in enumerate(candidates[image_id].encoded, start=1):
            result.add(image_id, class_id, encoded if keep[row, class_id - 1] else "")
        if scores is not None:
            scores[image_id] = candidates[image_id].scores
    return result


def score_folder(
    predictor,
    image_dir: str | os.PathLike,
    progress: bool = True,
    budget: Budget | None = None,
    skip: SkippedImages | None = None,
) -> tuple[list[str], np.ndarray]:
    """Class scores of every image of a folder: (image ids, (N, C) float32); ``skip``: bad
    images left out (``iter_folder``)."""
    image_ids, scores = [], []
    for path, _, outputs in iter_folder(predictor, image_dir, progress, budget=budget, skip=skip):
        image_ids.append(path.name)
        scores.append(outputs.scores)
    if not scores:  # every image skipped
        return [], np.zeros((0, predictor.num_classes), np.float32)
    return image_ids, np.stack(scores)


def read_images(predictor, paths: list[Path], keep_going: bool = False) -> list[np.ndarray | SteelsegError]:
    """The images of ``paths``; a bad one (unreadable, or of a size ``predictor`` is not trusted
    on) raises, or with ``keep_going`` stands as its error."""
    images: list[np.ndarray | SteelsegError] = []
    for path in paths:
        try:
            image = read_gray(path)
            problem = predictor.size_problem(image.shape)
            if problem:
                raise InputError(f"{path}: image {problem}")
        except (ImageError, InputError) as err:
            if not keep_going:
                raise
            image = err
        images.append(image)
    return images


def embedder(members):
    """A function from one (H, W) image to the encoder features of the first member that has
    them (for near-duplicate clusters)."""
    for member in members:
        embed = getattr(member.backend, "embed", None)
        if embed is not None:
            return lambda image, m=member: embed(m.inputs(image[None])[0])[0]
    raise EnsembleError("near-duplicate clusters need encoder features: give a member a torch backend")


def _candidate(image_id: str, outputs: Outputs, embedding, encoded: Future) -> tuple[str, Candidate]:
    masks, peaks = encoded.result()
    return image_id, Candidate([rle.encode(m) for m in masks], peaks, outputs.heads, outputs.scores, embedding)


def _drop_bad(paths: list[Path], images: list, skip: SkippedImages | None) -> list[int]:
    """The positions of the images that were read; the others are recorded in ``skip``."""
    good = []
    for i, (path, image) in enumerate(zip(paths, images)):
        if isinstance(image, SteelsegError):
            skip.add(path, image)
        else:
            good.append(i)
    return good


def _same_shape_runs(images: list[np.ndarray]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i, image in enumerate(images):
        if groups and images[groups[-1][-1]].shape == image.shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
