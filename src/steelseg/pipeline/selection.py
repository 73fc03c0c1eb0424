"""Which candidates ship: greedy forward selection on out-of-fold predictions (Caruana et al.
2004; nnU-Net picks its best configuration or pair the same way).

Every candidate was trained on the same folds and predicted each image from the one fold model
that never saw it, with the TTA the system ships with (``train.oof_tta``). A set of candidates is
scored as ``predict`` would combine them (per class, by weight, after each one's fitted
temperature), with its post-processing tuned on those same images: the score of a set is the
score it would ship with. Start from the best single candidate; add the candidate that raises
the score most; stop when none raises it. The shipped set is therefore never worse, on these
images, than its best single member, and the record says by how much it is better.

What still differs from prediction: a member predicts new images with the average of its k fold
models, not with one; the average is smoother than any one of them (see the report's note).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steelseg.errors import SteelsegError
from steelseg.inference.oof_combine import fit_temperature
from steelseg.inference.oof_members import OofMember, load_members
from steelseg.inference.sources import check_compatible, ensemble_classes, resolve
from steelseg.inference.tune import tune_members
from steelseg.pipeline.plan import TunePlan

GAIN = 1e-4  # a candidate must raise the mean score by more than this to join
# Coarse grids for scoring sets; the chosen set is tuned on the full grids afterwards.
COARSE = {"pixel_grid": [0.3, 0.4, 0.5, 0.6, 0.7], "head_grid": [0.3, 0.5, 0.7], "peak_grid": [0.5, 0.7, 0.9]}


class SelectionError(SteelsegError, ValueError):
    """Candidates from which no system can be made."""


@dataclass
class Step:
    members: list[str]
    score: float  # mean over classes
    per_class: list[float]


@dataclass
class Selection:
    chosen: list[str]
    best_single: str | None  # None: no candidate predicts every class alone (per-class models)
    temperatures: dict[str, float]
    steps: list[Step] = field(default_factory=list)  # every set scored, in order
    singles: dict[str, float] = field(default_factory=dict)  # candidate -> its score alone
    metric: str = "competition"
    images: int = 0


def load_candidates(folders: dict[str, Path]) -> tuple[list[OofMember], list[str], list[str]]:
    """The candidates' merged out-of-fold files (named by ``folders``' keys), the class names,
    and the image ids every candidate predicted."""
    resolved = resolve([str(path) for path in folders.values()])
    check_compatible(resolved.networks)
    class_names, position = ensemble_classes(resolved.networks)
    members = load_members(resolved.networks, position, len(class_names))
    for member, name in zip(members, folders):
        member.name = name
    common = sorted(set.intersection(*(set(m.entries) for m in members)))
    return members, class_names, common


def select(
    members: list[OofMember],
    image_ids: list[str],
    num_classes: int,
    config,
    tune: TunePlan,
    mode: str = "greedy",
    say=print,
) -> Selection:
    """Greedy forward selection (module docstring), or with ``mode="all"`` every candidate (a seed
    team's fixed ensemble); fits each candidate's temperature first. Candidates that predict only
    some classes (per-class models) are scored in sets only."""
    temperatures = {}
    for member in members:
        member.temperature = fit_temperature(member, image_ids) if len(members) > 1 else 1.0
        temperatures[member.name] = member.temperature
    by_name = {m.name: m for m in members}
    steps: list[Step] = []

    def score(names: list[str]) -> Step:
        _, per_class = tune_members(
            [by_name[n] for n in names],
            image_ids,
            num_classes,
            config,
            metric=tune.metric,
            recall_floor=tune.recall_floor,
            allow_off=tune.allow_off,
            grids=dict(COARSE, component_grid=tune.component_grid, area_grid=tune.area_grid),
            min_area_quantile=tune.min_area_quantile,
        )
        step = Step(list(names), float(np.mean(per_class)), [float(v) for v in per_class])
        steps.append(step)
        say(f"  {' + '.join(names)}: {step.score:.4f}")
        return step

    singles = {m.name: score([m.name]) for m in members if _covers(m, num_classes)}
    if mode == "all":
        everything = score([m.name for m in members]) if len(members) > 1 or not singles else None
        best = max(singles.values(), key=lambda s: s.score) if singles else everything
        chosen = everything if everything is not None else best
        return _selection(chosen, best, singles, temperatures, steps, tune, image_ids)
    if not singles:
        raise SelectionError("no candidate predicts the masks of every class: a system needs such a segmenter")
    best = max(singles.values(), key=lambda s: s.score)
    current = best
    while True:
        left = [m.name for m in members if m.name not in current.members]
        if not left:
            break
        trial = max((score([*current.members, name]) for name in left), key=lambda s: s.score)
        if trial.score <= current.score + GAIN:
            break
        current = trial
    return _selection(current, best, singles, temperatures, steps, tune, image_ids)


def _selection(chosen: Step, best: Step, singles: dict, temperatures, steps, tune: TunePlan, image_ids) -> Selection:
    return Selection(
        chosen=chosen.members,
        best_single=best.members[0] if len(best.members) == 1 else None,
        temperatures=temperatures,
        steps=steps,
        singles={name: step.score for name, step in singles.items()},
        metric=tune.metric,
        images=len(image_ids),
    )


def _covers(member: OofMember, num_classes: int) -> bool:
    """Whether the member predicts the pixels of every class (not a per-class model, not a classifier)."""
    entry = next(iter(member.entries.values()))
    return entry.probs is not None and not np.isnan(entry.probs[:, 0, 0]).any()
