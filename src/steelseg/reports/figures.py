"""Matplotlib drawings for the report pages, saved as small PNG files (atomically).

Import this module only inside the functions that draw: it loads matplotlib, which ``predict``
and ``serve`` never need. Figures use matplotlib's object API (``Figure``, no pyplot), so no
global state or GUI backend is involved and drawing is safe from any thread. Each class keeps
the colour it has in the overlays (``overlay.COLORS``).
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from steelseg.files.atomic import atomic_path
from steelseg.files.overlay import COLORS
from steelseg.reports.stats import area_bins

DPI = 100
COLUMN_WIDTH = 3.4  # inches per subplot column
ROW_HEIGHT = 2.6


def class_color(index: int) -> tuple[float, float, float]:
    """The overlay colour of class ``index`` (0-based), darkened where it is too light to read on white."""
    rgb = COLORS[index % len(COLORS)] / 255.0
    luminance = float(rgb @ np.array([0.299, 0.587, 0.114]))
    return tuple(rgb * min(1.0, 0.6 / luminance)) if luminance > 0.6 else tuple(rgb)


def new_figure(
    width: float, height: float, rows: int = 1, cols: int = 1, layout: str | None = "constrained"
) -> tuple[Figure, np.ndarray]:
    """A figure of ``width`` x ``height`` inches and its (rows, cols) axes; ``layout=None``
    leaves the margins to the caller (cheaper: training draws its curves every epoch)."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    return figure, figure.subplots(rows, cols, squeeze=False)


def save(figure: Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)


def dice_bars(class_labels: list[str], class_dice: np.ndarray, mean_dice: float, path: str | os.PathLike) -> None:
    """One bar per class and a grey bar for the mean, each with its value written on it."""
    labels, values = list(class_labels) + ["mean"], list(class_dice) + [mean_dice]
    colors = [class_color(i) for i in range(len(class_labels))] + [(0.5, 0.5, 0.5)]
    figure, axes = new_figure(max(4.0, 1.1 * len(labels) + 1), 3.0)
    ax = axes[0, 0]
    bars = ax.bar(range(len(labels)), values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("competition Dice")
    ax.set_title("Mean Dice over images, per class")
    save(figure, path)


def area_histograms(
    class_labels: list[str], series: dict[str, list[np.ndarray]], path: str | os.PathLike, title: str
) -> None:
    """One panel per class: a histogram of defect areas (pixels, log-spaced bins) for each of
    ``series`` (name -> per-class areas): one filled in the class's colour, or two drawn as
    outlines so that they can overlap (the first, the truth, in black)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    cols = min(len(class_labels), 4)
    rows = -(-len(class_labels) // cols)
    figure, axes = new_figure(COLUMN_WIDTH * cols, ROW_HEIGHT * rows + 0.4, rows, cols)
    for c, label in enumerate(class_labels):
        ax = axes.flat[c]
        areas = [lists[c] for lists in series.values()]
        bins = area_bins(*areas)
        for k, (name, values) in enumerate(zip(series, areas)):
            if len(series) == 1:
                style = dict(histtype="stepfilled", color=class_color(c), alpha=0.8)
            else:
                style = dict(
                    histtype="step",
                    linewidth=1.6,
                    color="black" if k == 0 else class_color(c),
                    linestyle="-" if k == 0 else "--",
                )
            ax.hist(values, bins=bins, label=f"{name} ({len(values)})", **style)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # the default labels minor ticks too, on top of each other
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("defect area (pixels)", fontsize=8)
        ax.set_ylabel("images", fontsize=8)
        ax.yaxis.get_major_locator().set_params(integer=True)  # counts of images
        ax.tick_params(labelsize=7)
        _legend(ax, fontsize=7)
    for ax in list(axes.flat)[len(class_labels) :]:
        ax.set_visible(False)
    figure.suptitle(title, fontsize=11)
    save(figure, path)


def sweep_curves(
    x: np.ndarray,
    dice: np.ndarray,
    class_labels: list[str],
    in_use: np.ndarray | None,
    xlabel: str,
    title: str,
    path: str | os.PathLike,
) -> None:
    """Mean Dice (X, C) against one post-processing value ``x`` (X,), a line per class; a
    class's value ``in_use`` (C,) is marked by a ring (NaN: not on this axis, no mark)."""
    figure, axes = new_figure(7.4, 3.4)
    ax = axes[0, 0]
    for c, label in enumerate(class_labels):
        color = class_color(c)
        ax.plot(x, dice[:, c], marker=".", color=color, label=label)
        if in_use is not None and np.isfinite(in_use[c]):
            at = int(np.argmin(np.abs(x - in_use[c])))
            ax.plot(x[at], dice[at, c], "o", markersize=10, markerfacecolor="none", markeredgewidth=2, color=color)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("competition Dice")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _legend(
        ax,
        fontsize=8,
        title="class (ring: in use)" if in_use is not None else "class",
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )  # beside the plot: never over a curve
    save(figure, path)


def count_bars(
    labels: list[str], counts: np.ndarray, xlabel: str, title: str, path: str | os.PathLike, colors: list | None = None
) -> None:
    """Bars of image counts with the count written on each."""
    figure, axes = new_figure(max(4.0, 0.9 * len(labels) + 1.5), 3.0)
    ax = axes[0, 0]
    bars = ax.bar(range(len(labels)), counts, color=colors or "#4c72b0")
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.set_ylim(0, max(1, int(np.max(counts, initial=0))) * 1.15)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title)
    save(figure, path)


def training_curves(
    metrics: dict[str, np.ndarray], class_names: list[str], path: str | os.PathLike, title: str
) -> None:
    """Two panels against epoch: the losses, and the validation Dice (untuned, tuned, tuned per
    class), the best epoch (highest tuned Dice: the weights kept) marked by a dotted line."""
    epoch = metrics["epoch"]
    figure, axes = new_figure(10.0, 3.4, 1, 2, layout=None)
    figure.subplots_adjust(left=0.065, right=0.99, bottom=0.14, top=0.84, wspace=0.18)  # fixed: a third of the time
    loss, dice = axes[0, 0], axes[0, 1]
    for column, style in (("train_loss", dict(color="#1f77b4")), ("val_loss", dict(color="#ff7f0e"))):
        if column in metrics and np.isfinite(metrics[column]).any():
            loss.plot(epoch, metrics[column], marker="o", markersize=3, label=column.replace("_", " "), **style)
    loss.set_title("Losses")
    loss.set_ylabel("loss")
    for column, style in (
        ("val_dice", dict(color="0.45", linestyle="--")),
        ("val_dice_tuned", dict(color="black", linewidth=2.2)),
    ):
        if column in metrics and np.isfinite(metrics[column]).any():
            label = "mean" + (", tuned post-processing" if column.endswith("tuned") else ", configured post-processing")
            dice.plot(epoch, metrics[column], marker="o", markersize=3, label=label, zorder=3, **style)
    for c, name in enumerate(class_names):
        values = metrics.get(f"val_dice_tuned_{name}")
        if values is not None and np.isfinite(values).any():
            dice.plot(
                epoch, values, marker=".", linewidth=1, alpha=0.75, color=class_color(c), label=f"{c + 1} {name}, tuned"
            )
    tuned = metrics.get("val_dice_tuned")
    best = ""
    if tuned is not None and np.isfinite(tuned).any():
        at = int(np.nanargmax(tuned))
        dice.axvline(epoch[at], color="0.3", linestyle=":", linewidth=1)
        best = f" (best: epoch {int(epoch[at])}, {tuned[at]:.4f})"
    dice.set_title("Validation Dice" + best)
    dice.set_ylabel("competition Dice")
    dice.set_ylim(0, 1.02)
    for ax in (loss, dice):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7, loc="lower right" if ax is dice else "upper right")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    figure.suptitle(title, fontsize=11)
    save(figure, path)


def _legend(ax, **options) -> None:
    if ax.get_legend_handles_labels()[0]:  # an empty legend is a warning and a stray box
        ax.legend(**options)
