"""The Severstal layout as a source: ``train_images/`` plus ``train.csv`` (either competition
layout), opened by ``files.datasets`` and decoded by ``core.rle``.

Classes are those of ``classes.json`` beside it, else 1..the highest class id of the table
(named "1", "2", ...). Where masks of different classes overlap, the higher class id wins. A
bad row or an image the table names but that is missing is an error, or with ``skip_bad``
left out (the image of a bad row with it), as ``steelseg train --skip-bad`` does.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from steelseg.files.annotations import Annotations
from steelseg.files.datasets import open_dataset
from steelseg.files.importers.common import ConvertError, Imported, Sample, empty_labels, paint


def read_severstal(src: Path, images: Path | None = None, skip_bad: bool = False) -> Imported:
    """A Severstal-layout folder, by the rules of the module docstring."""
    if images is not None:
        raise ConvertError(f"{images}: a Severstal folder's images are its train_images/; leave out --images")
    dataset = open_dataset(src, "severstal", skip_bad=skip_bad)
    annotations, count = dataset.annotations, len(dataset.all_class_names)
    samples = []
    for path in dataset.image_paths:
        present = [c for c in range(1, count + 1) if annotations.get(path.name, c)]
        labels = partial(_labels, annotations, path.name, present)
        samples.append(Sample(path.name, path, f"{annotations.source} (image {path.name})", labels, None, len(present)))
    inputs = [Path(annotations.source), *dataset.image_paths]
    return Imported(list(dataset.all_class_names), samples, inputs, list(dataset.skipped))


def _labels(annotations: Annotations, image_id: str, present: list[int], shape: tuple[int, int]) -> np.ndarray:
    labels = empty_labels(shape)
    for class_id in present:
        paint(labels, annotations.mask(image_id, class_id, shape), class_id)
    return labels
