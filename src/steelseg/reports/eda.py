"""``steelseg eda DATA --out DIR``: one HTML page about a labelled data set.

The folder is opened as training opens it (``datasets.open_dataset``: either layout, class
names from classes.json). The page shows how many images hold each class, how many classes
each image holds, the mask areas per class, and a few example overlays per class, picked
evenly over the file order (the same ones every time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelseg.core import rle
from steelseg.files.datasets import SegmentationDataset, open_dataset
from steelseg.files.images import read_label_map
from steelseg.reports import out_folder
from steelseg.reports.html import Page
from steelseg.reports.stats import class_labels, classes_per_image, spread_pick

PAGE = "index.html"
FIGURES_DIR = "figures"
DEFAULT_EXAMPLES = 3


@dataclass(frozen=True)
class DatasetStats:
    """Per image (N, C): mask areas in pixels; presence is area > 0."""

    image_ids: list[str]
    class_names: list[str]
    areas: np.ndarray

    @property
    def presence(self) -> np.ndarray:
        return self.areas > 0

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) images that hold each class."""
        return np.count_nonzero(self.presence, axis=0)

    @property
    def classes_per_image(self) -> np.ndarray:
        """(C + 1,) images holding 0, 1, ..., C classes."""
        return classes_per_image(self.presence)


def dataset_stats(dataset: SegmentationDataset, shapes: list[tuple[int, int]] | None = None) -> DatasetStats:
    """Mask areas of every image and class, without decoding images: from the run lengths of a
    table (severstal layout; checked against each image's (H, W) from ``shapes`` or the file
    headers, so a run past the end is an error naming its row, not a wrong area) or the label
    PNGs (mask_folder layout)."""
    count = dataset.num_classes
    areas = np.zeros((len(dataset), count), dtype=np.int64)
    if dataset.annotations is not None:
        shapes = dataset.image_shapes() if shapes is None else shapes
        row = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
        for (image_id, class_id), encoded in dataset.annotations.encoded.items():
            if image_id in row and class_id <= count:
                starts, lengths = rle.parse(encoded)
                height, width = shapes[row[image_id]]
                if starts[-1] + lengths[-1] - 1 > height * width:  # runs are sorted: the last ends last
                    dataset.annotations.mask(image_id, class_id, (height, width))  # raises, naming file and line
                areas[row[image_id], class_id - 1] = int(lengths.sum())  # runs never overlap
    else:
        for i, path in enumerate(dataset.image_paths):
            labels = read_label_map(dataset.mask_dir / f"{path.stem}.png")
            areas[i] = np.bincount(labels.ravel(), minlength=count + 1)[1 : count + 1]
    return DatasetStats(dataset.image_ids, dataset.class_names, areas)


def write_eda(data: str | os.PathLike, out: str | os.PathLike, examples: int = DEFAULT_EXAMPLES) -> Path:
    """Write ``OUT/index.html`` and its figures about the data set folder ``data``; returns the page's path."""
    from steelseg.reports import figures, sections

    dataset = open_dataset(data)
    shapes = dataset.image_shapes()
    stats = dataset_stats(dataset, shapes)
    out = out_folder(out, FIGURES_DIR)
    figures_dir = out / FIGURES_DIR
    labels = class_labels(stats.class_names)
    page = Page(f"steelseg eda: {Path(data).name}", out)
    page.items(_describe(dataset, stats, shapes))

    page.heading("Images per class")
    counts, total = stats.class_counts, max(len(stats.image_ids), 1)
    page.table(
        ["class", "images", "share of images"], [[label, int(n), float(n / total)] for label, n in zip(labels, counts)]
    )
    figures.count_bars(
        labels,
        counts,
        "class",
        "Images holding each class",
        figures_dir / "class-counts.png",
        colors=[figures.class_color(c) for c in range(len(labels))],
    )
    page.figure(figures_dir / "class-counts.png", "Images holding each class")

    page.heading("Classes per image")
    per_image = stats.classes_per_image
    page.table(
        ["classes in the image"] + [str(k) for k in range(len(per_image))], [["images"] + [int(n) for n in per_image]]
    )
    figures.count_bars(
        [str(k) for k in range(len(per_image))],
        per_image,
        "classes in the image",
        "Classes per image",
        figures_dir / "classes-per-image.png",
    )
    page.figure(figures_dir / "classes-per-image.png", "How many images hold 0, 1, 2, ... classes")

    sections.areas(page, figures_dir, {"masks": stats.areas}, stats.class_names, title="Mask areas per class")
    _examples(page, figures_dir, dataset, stats, examples, labels)
    return page.write(PAGE)


def _describe(dataset: SegmentationDataset, stats: DatasetStats, shapes: list[tuple[int, int]]) -> list[str]:
    sizes = sorted({f"{h}x{w}" for h, w in shapes})
    sizes_text = ", ".join(sizes) if len(sizes) <= 3 else f"{len(sizes)} sizes, {sizes[0]} to {sizes[-1]}"
    return [
        f"data set: {dataset.root} ({dataset.layout} layout)",
        f"{len(stats.image_ids)} images, {int(np.count_nonzero(stats.presence.any(axis=1)))} with a defect; "
        f"sizes (HxW): {sizes_text}",
        f"classes: {', '.join(class_labels(stats.class_names))}",
    ]


def _examples(
    page: Page, figures_dir: Path, dataset: SegmentationDataset, stats: DatasetStats, k: int, labels: list[str]
) -> None:
    from steelseg.files.overlay import label_bar, overlay, present_classes, save_png

    if k == 0:
        return
    page.heading("Examples per class")
    page.paragraph(
        f"Up to {k} images holding each class, spread over the file order; every class's mask in its colour."
    )
    for c, label in enumerate(labels):
        picked = spread_pick(list(np.flatnonzero(stats.presence[:, c])), k)
        if not picked:
            page.paragraph(f"{label}: no image holds it.", note=True)
            continue
        panels = []
        for i in picked:
            image, masks = dataset.load(int(i))
            panels.append(
                label_bar(overlay(image, masks), f"{stats.image_ids[i]}: {present_classes(masks, stats.class_names)}")
            )
        path = figures_dir / f"examples-class-{c + 1}.png"
        save_png(path, _stack(panels))
        page.figure(path, f"{label}: {len(picked)} of the {int(stats.class_counts[c])} images holding it")


def _stack(panels: list[np.ndarray]) -> np.ndarray:
    """(H_i, W_i, 3) pictures one above the other, narrower ones padded with white on the right."""
    width = max(p.shape[1] for p in panels)
    padded = [np.pad(p, ((0, 4), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate(padded, axis=0)
