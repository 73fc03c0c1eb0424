"""The tuned post-processing against the sources' own, for ``steelseg tune``
(``inference.tune``): which classes keep the sources' own setting (``keep_better``: never one
that switches a class off without ``allow_off``, never one the recall floor rules out), and
the ``TuneResult`` with its report. No torch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from steelseg.core.postprocess import PostProcess
from steelseg.core.search import SearchChoice, needed_hits, switched_off
from steelseg.inference.oof_combine import OofCounts, count

METRIC_WORDS = {
    "competition": "competition Dice (per class, the mean over images of each image's Dice; empty on empty scores 1)",
    "dataset": "dataset Dice (per class, 2 sum|P n T| / (sum|P| + sum|T|) over all images)",
}


@dataclass
class TuneResult:
    postprocess: PostProcess
    before: np.ndarray  # (C,) score per class with the sources' post-processing (``metric``)
    after: np.ndarray  # (C,) ... with the tuned one
    class_names: list[str]
    images: int
    temperatures: list[tuple[str, float]]
    written: list[Path]
    skipped: int  # images some member lacks
    kept: list[str] = field(default_factory=list)  # classes that keep the sources' setting
    metric: str = "competition"
    recall_floor: float | None = None
    allow_off: bool = False
    hits: np.ndarray | None = None  # (C,) after tuning: images with a true defect and a predicted pixel
    positives: np.ndarray | None = None  # (C,) images with a true defect
    notes: list[str] = field(default_factory=list)  # one line per class: floor missed, own setting off

    def report(self) -> str:
        names = self.class_names
        width = max(12, *(len(n) + 2 for n in names))
        lines = [
            f"tuned on {self.images} out-of-fold images"
            + (f" ({self.skipped} skipped: not predicted by every member)" if self.skipped else ""),
            f"metric: {METRIC_WORDS[self.metric]}",
            "defect recall floor: "
            + ("none" if self.recall_floor is None else f"{self.recall_floor:g}")
            + " (the share of the images with a true defect of a class where a pixel of it is predicted)",
            "classes may be switched off: " + ("yes (--allow-off)" if self.allow_off else "no"),
        ]
        if self.temperatures:
            lines.append("temperatures: " + ", ".join(f"{name} {t:g}" for name, t in self.temperatures))
        lines.append(f"{'':<8}{'mean':>10}" + "".join(f"{n:>{width}}" for n in names))
        for label, values in (("before", self.before), ("after", self.after)):
            lines.append(f"{label:<8}{values.mean():>10.4f}" + "".join(f"{v:>{width}.4f}" for v in values))
        if self.hits is not None:
            recall = [f"{h / p:.4f}" if p else "n/a" for h, p in zip(self.hits, self.positives)]
            lines.append(f"{'recall':<8}{'':>10}" + "".join(f"{r:>{width}}" for r in recall))
            lines.append(
                f"{'found':<8}{'':>10}" + "".join(f"{f'{h}/{p}':>{width}}" for h, p in zip(self.hits, self.positives))
            )
        if self.kept:
            lines.append(f"kept the sources' own setting for {', '.join(self.kept)}: nothing on the grid did better")
        lines += self.notes
        lines.append("post-processing:\n" + self.postprocess.describe(names))
        lines += [f"wrote {path}" for path in self.written]
        return "\n".join(lines)


def compare(before_post, choice: SearchChoice, members, image_ids, class_names, **options) -> TuneResult:
    """The sources' own post-processing against the search's choice, counted on the images
    (``count``), with the own kept where better (``keep_better``); the files are not written."""
    metric, recall_floor, allow_off = options["metric"], options["recall_floor"], options["allow_off"]
    own, tuned = count([before_post, choice.postprocess], members, image_ids, len(class_names))
    before, after = own.score(metric), tuned.score(metric)
    eligible = _eligible(own, tuned, recall_floor)
    post, kept = keep_better(
        before_post, before, choice.postprocess, after, allow_off=allow_off, eligible=eligible, pixels=choice.pixels
    )
    hits = np.where(kept, own.hits, tuned.hits)
    return TuneResult(
        post,
        before,
        np.where(kept, before, after),  # classes are independent: a kept class scores as before
        class_names,
        len(image_ids),
        [],
        [],
        0,
        kept=[class_names[c] for c in np.flatnonzero(kept)],
        metric=metric,
        recall_floor=recall_floor,
        allow_off=allow_off,
        hits=hits,
        positives=tuned.positives,
        notes=_notes(class_names, before_post, choice.pixels, hits, tuned.positives, **options),
    )


def _eligible(own: OofCounts, tuned: OofCounts, recall_floor: float | None) -> np.ndarray:
    """(C,) bool: where the sources' own setting is as eligible under the recall floor as the
    search's choice: it meets the floor, or neither does and it detects at least as many."""
    needed = np.array([needed_hits(recall_floor, int(p)) for p in tuned.positives], dtype=np.int64)
    return (own.hits >= needed) | ((tuned.hits < needed) & (own.hits >= tuned.hits))


def _notes(class_names, own: PostProcess, pixels, hits, positives, metric, recall_floor, allow_off) -> list[str]:
    """One line per class whose recall is under the floor, and per class the sources' own
    setting switched off (not kept without allow_off)."""
    notes = []
    if not allow_off:
        for c in np.flatnonzero(switched_off(own, pixels)):
            notes.append(
                f"{class_names[c]}: the sources' own setting never predicts it (switched off): "
                "not kept (--allow-off allows it)"
            )
    for c, name in enumerate(class_names):
        needed = needed_hits(recall_floor, int(positives[c]))
        if hits[c] < needed:
            notes.append(
                f"{name}: no setting on the grid reaches the recall floor {recall_floor:g} ({needed} of "
                f"{positives[c]} images with a true defect); the highest recall was chosen: {hits[c]}/{positives[c]}"
            )
    return notes


def keep_better(
    before_post: PostProcess,
    before: np.ndarray,
    post: PostProcess,
    after: np.ndarray,
    *,
    allow_off: bool = False,
    eligible: np.ndarray | None = None,
    pixels: float | None = None,
):
    """The tuned post-processing with the sources' own kept for every class where the grid
    found nothing better (a value off the grid can beat it); classes are independent under
    either metric. The sources' own is never kept for a class it switches off
    (``core.search.switched_off``; ``pixels``: the largest image's size) unless ``allow_off``,
    nor where ``eligible`` (C,) bool (the recall floor's verdict; default: everywhere) says no.
    Settings shared by all classes (peak, soft gate) must agree, else the better as a whole
    (the sources' own only where every class may keep it). Returns (post-processing, (C,)
    bool: kept)."""
    allowed = np.ones(len(before), bool) if eligible is None else np.asarray(eligible, bool).copy()
    if not allow_off:
        allowed &= ~switched_off(before_post, pixels)
    worse = (before > after + 1e-12) & allowed
    if not worse.any():
        return post, worse
    shared = ("peak", "peak_top_k", "soft_gate")
    if any(getattr(post, k) != getattr(before_post, k) for k in shared):
        better = before.mean() > after.mean() and allowed.all()
        return (before_post, np.ones_like(worse)) if better else (post, np.zeros_like(worse))
    merged = {
        name: np.where(worse, getattr(before_post, name), getattr(post, name))
        for name in ("pixel_threshold", "min_area", "min_component", "fill_holes", "head_threshold", "peak_threshold")
    }
    return replace(post, **merged), worse
