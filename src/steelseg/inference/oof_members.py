"""Out-of-fold files as ensemble members for ``steelseg tune`` (``inference.tune``): each
member's runs' ``oof.npz`` merged into one ``Entry`` per image, checked to be out of fold
(of the fold each run validated on, and of one split across the runs of a member). No torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steelseg.errors import SteelsegError
from steelseg.files import rundir
from steelseg.inference.sources import Network, channels


class TuneError(SteelsegError, ValueError):
    """Out-of-fold files that are missing or cannot be combined."""


@dataclass
class Entry:
    """One image as a member saw it out of fold: per ensemble class (NaN where the member
    does not predict it) pixel probabilities at the stored scale and class-head scores."""

    probs: np.ndarray | None  # (C, h, w) float32
    heads: np.ndarray | None  # (C,)
    truth: np.ndarray | None  # (C, h, w) bool
    labels: np.ndarray  # (C,) bool
    factor: float  # full-size pixels per stored pixel
    runs: dict[str, np.ndarray] = field(default_factory=dict)  # "probs", "heads" -> (C,) runs averaged into each class


@dataclass
class OofMember:
    name: str
    weight: float
    entries: dict[str, Entry] = field(default_factory=dict)
    temperature: float = 1.0
    spec: object = None  # sources.MemberSpec
    # The TTA views its runs' out-of-fold probabilities were made with (``oof.npz``'s ``tta``;
    # files from before it was recorded: none): what post-processing tuned on them expects.
    oof_tta: set[str] = field(default_factory=set)

    @property
    def tuned_tta(self) -> str | None:
        """The views every one of its out-of-fold files was made with, where that is a TTA
        (None: no TTA, or files that disagree, for which no one setting is right)."""
        return next(iter(self.oof_tta)) if len(self.oof_tta) == 1 and self.oof_tta != {"none"} else None


def load_members(networks: list[Network], position: dict[int, int], num_classes: int) -> list[OofMember]:
    """Group the networks by the source entry they came from; merge their out-of-fold files."""
    members: dict[int, OofMember] = {}
    seen: dict[int, list[tuple[Path, set[str], set[int]]]] = {}  # member -> (oof file, image ids, classes) of its runs
    for network in networks:
        # Until fitted, a member's temperature is its ensemble entry's: predict applies it too
        member = members.setdefault(
            network.member,
            OofMember(
                str(network.source), network.spec.weight, temperature=network.spec.temperature, spec=network.spec
            ),
        )
        path = _oof_path(network.run_dir)
        oof = rundir.load_oof(path.parent)
        where = [position[c] for c in channels(network.config)]
        _check_validated(network, path, oof["image_ids"].tolist())
        _check_folds(seen.setdefault(network.member, []), path, set(oof["image_ids"].tolist()), set(where), member.name)
        _merge(member, oof, where, num_classes, network.config.model.task, path)
        member.oof_tta.add(str(oof["tta"]) if "tta" in oof else "none")
    return list(members.values())


def _check_validated(network: Network, path: Path, image_ids: list[str]) -> None:
    """Every image of a run's out-of-fold file must be of the fold it validated on, when its
    folds file is still there to say: else the file is another run's (copied, or trained on
    another split), and thresholds tuned on images the network trained on would look better
    than they are."""
    data = network.config.data
    if not data.folds or data.fold is None or not Path(data.folds).is_file():
        return
    from steelseg.files.folds import read_folds

    folds = read_folds(data.folds)
    for image_id in image_ids:
        if folds.get(image_id) != data.fold:
            where = f"{data.folds} lacks it"
            if image_id in folds:
                where = f"{folds.where(image_id)} puts it in fold {folds[image_id]}"
            raise TuneError(
                f"{path}: image {image_id} is out of fold here, but the run validated on fold {data.fold} and {where}: "
                "this oof.npz was not made by this run's fold model"
            )


def _check_folds(
    runs: list[tuple[Path, set[str], set[int]]], path: Path, image_ids: set[str], classes: set[int], name: str
) -> None:
    """Runs of one member that predict the same classes must hold the same images out of fold
    (repeats of one fold) or none in common (the folds of one split). Some in common and some
    not: the folds come from different splits, and an image out of one run's fold may have
    trained another; its averaged probabilities would not be out of fold at all."""
    for other, other_ids, other_classes in runs:
        shared = image_ids & other_ids
        if classes & other_classes and shared and image_ids != other_ids:
            raise TuneError(
                f"{path} and {other} share {len(shared)} of their out-of-fold images (first {min(shared)}) "
                f"but not all: the runs of {name} were trained on folds of different splits; "
                "train them with one folds file (data.folds)"
            )
    runs.append((path, image_ids, classes))


def _oof_path(run_dir: Path) -> Path:
    path = run_dir / rundir.OOF
    if not path.is_file():
        stages = sorted((run_dir / rundir.STAGES_DIR).glob("*/" + rundir.OOF))
        if stages:
            return stages[-1]  # a multi-stage run: its last stage's
        raise TuneError(
            f"{path} not found: train with train.oof_scale set (the default 0.25) and data.folds, or write it for a "
            "finished run with steelseg.training.oof.write_run_oof"
        )
    return path


def _merge(member: OofMember, oof: dict, where: list[int], num_classes: int, task: str, path: Path) -> None:
    has_pixels = "probs" in oof
    has_heads = task in ("classify", "two_head")
    for i, image_id in enumerate(oof["image_ids"].tolist()):
        entry = member.entries.get(image_id)
        if entry is None:
            h, w = oof["shapes"][i] if has_pixels else (0, 0)
            full = oof["image_shapes"][i]
            entry = Entry(
                np.full((num_classes, h, w), np.nan, np.float32) if has_pixels else None,
                np.full(num_classes, np.nan, np.float32) if has_heads else None,
                np.zeros((num_classes, h, w), bool) if has_pixels else None,
                np.zeros(num_classes, bool),
                float(full[0] * full[1]) / (h * w) if has_pixels else 1.0,
            )
            member.entries[image_id] = entry
        if has_pixels:
            h, w = oof["shapes"][i]
            if entry.probs is None or entry.probs.shape[1:] != (h, w):
                raise TuneError(
                    f"{path}: image {image_id} is stored at {h}x{w}, another run of {member.name} has it at a "
                    "different size: give every run the same train.oof_scale"
                )
            probs = oof["probs"][i, :, :h, :w].astype(np.float32)
            _average_into(entry, "probs", where, probs)
            entry.truth[where] = oof["masks"][i, :, :h, :w]
        if has_heads:
            if entry.heads is None:
                entry.heads = np.full(num_classes, np.nan, np.float32)
            _average_into(entry, "heads", where, oof["scores"][i].astype(np.float32))
        entry.labels[where] = oof["labels"][i]


def _average_into(entry: Entry, name: str, where: list[int], values: np.ndarray) -> None:
    """Channels ``where`` of the entry's ``name`` array take ``values``; a channel already set
    (the same image predicted by several runs of one member, repeats of one fold) takes the
    mean of all of them, each run weighing the same."""
    target = getattr(entry, name)
    runs = entry.runs.setdefault(name, np.zeros(len(target), np.int64))
    for j, c in enumerate(where):
        runs[c] += 1
        target[c] = values[j] if runs[c] == 1 else (target[c] * (runs[c] - 1) + values[j]) / runs[c]
