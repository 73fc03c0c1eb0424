"""``steelseg tune``: the ensemble's post-processing and member temperatures, from out-of-fold
files. No torch.

Each member (a run, a folder of runs such as ``train --fold all`` writes, or an ensemble
file's entry) brings the ``oof.npz`` of its runs: every training image predicted by the fold
model that never saw it. Images that every member predicted are combined as ``predict``
combines them (per class, by weight, after each member's temperature), and ``GatedSearch``
finds the pixel threshold, component size, minimum area and gates with the best competition
Dice. Out-of-fold files made without TTA tune an ensemble that predicts with it: the flips
average away noise, so the thresholds found are, if anything, cautious.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from steelseg.core.metrics import dice_from_counts
from steelseg.core.postprocess import NEVER, PostProcess
from steelseg.core.search import GatedSearch
from steelseg.errors import SteelsegError
from steelseg.files import rundir
from steelseg.files.atomic import write_text
from steelseg.inference.ensemble import scale_logits
from steelseg.inference.sources import Network, channels, check_compatible, ensemble_classes, resolve

TEMPERATURES = [0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0]
PIXELS_PER_CLASS = 400  # pixels sampled per image and class to fit temperatures


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


@dataclass
class TuneResult:
    postprocess: PostProcess
    before: np.ndarray  # (C,) mean Dice per class with the sources' post-processing
    after: np.ndarray  # (C,) ... with the tuned one
    class_names: list[str]
    images: int
    temperatures: list[tuple[str, float]]
    written: list[Path]
    skipped: int  # images some member lacks
    kept: list[str] = field(default_factory=list)  # classes that keep the sources' setting

    def report(self) -> str:
        names = self.class_names
        width = max(12, *(len(n) + 2 for n in names))
        lines = [
            f"tuned on {self.images} out-of-fold images"
            + (f" ({self.skipped} skipped: not predicted by every member)" if self.skipped else "")
        ]
        if self.temperatures:
            lines.append("temperatures: " + ", ".join(f"{name} {t:g}" for name, t in self.temperatures))
        lines.append(f"{'':<8}{'mean':>10}" + "".join(f"{n:>{width}}" for n in names))
        for label, values in (("before", self.before), ("after", self.after)):
            lines.append(f"{label:<8}{values.mean():>10.4f}" + "".join(f"{v:>{width}.4f}" for v in values))
        if self.kept:
            lines.append(f"kept the sources' own setting for {', '.join(self.kept)}: nothing on the grid did better")
        lines.append("post-processing:\n" + self.postprocess.describe(names))
        lines += [f"wrote {path}" for path in self.written]
        return "\n".join(lines)


def tune(
    sources: list[str | os.PathLike],
    out: str | os.PathLike | None = None,
    pixel_grid=None,
    component_grid=(0, 50, 100, 150, 250, 400),
    area_grid=None,
    label_grid=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    peak_grid=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    min_area_quantile: float | None = None,
    fill_holes: bool = False,
    soft_gate: bool = False,
    temperatures: bool = True,
    progress: bool = True,
) -> TuneResult:
    """Tune on the sources' out-of-fold files and write the result (see the module docstring);
    ``out``: the folder to write to (default: the first source's folder; needed for several)."""
    check_grids(
        pixel_grid=pixel_grid,
        component_grid=component_grid,
        area_grid=area_grid,
        label_grid=label_grid,
        peak_grid=peak_grid,
    )
    if min_area_quantile is not None and not 0 <= min_area_quantile <= 1:
        raise TuneError(f"--min-area-quantile: {min_area_quantile:g} is not in [0, 1]")
    resolved = resolve(sources)
    networks = resolved.networks
    check_compatible(networks)
    class_names, position = ensemble_classes(networks)
    num_classes = len(class_names)
    target = _target(sources, out, resolved)
    members = _load_members(networks, position, num_classes)
    if not any(any(e.probs is not None for e in m.entries.values()) for m in members):
        raise TuneError("no member has pixel probabilities in its out-of-fold files: there is no mask to tune")
    common = sorted(set.intersection(*(set(m.entries) for m in members)))
    skipped = len(set.union(*(set(m.entries) for m in members))) - len(common)
    if not common:
        raise TuneError("no image was predicted out of fold by every member: were they trained on the same folds?")
    fitted = []
    if temperatures and len(members) > 1:
        for member in members:
            member.temperature = fit_temperature(member, common)
            fitted.append((member.name, member.temperature))
    first = networks[0].config
    post_config = first.postprocess
    has_heads = np.zeros(num_classes, bool)
    for member in members:
        sample = member.entries[common[0]]
        if sample.heads is not None:
            has_heads |= ~np.isnan(sample.heads)
    fixed = None
    if min_area_quantile is not None:
        fixed = true_area_quantiles(members, common, num_classes, min_area_quantile)
    search = GatedSearch(
        num_classes,
        pixel_grid or _pixel_grid(),
        component_grid,
        area_grid or post_config.min_area_grid,
        label_grid,
        peak_grid,
        has_heads=has_heads,
        fill_holes=[fill_holes] * num_classes,
        soft_gate=soft_gate,
        peak=first.model.score,
        peak_top_k=first.model.score_top_k,
        fixed_min_area=fixed,
    )
    from tqdm import tqdm

    for image_id in tqdm(common, desc="tune", unit="img", disable=not progress):
        probs, heads, truth, factor = combine_entry(members, image_id, num_classes)
        search.update(probs, truth, heads, factor)
    post, _ = search.best()
    before_post = rundir.read_postprocess(resolved.postprocess, first, num_classes)  # the sources' own
    before, after = evaluate([before_post, post], members, common, num_classes)
    post, kept = keep_better(before_post, before, post, after)
    after = np.where(kept, before, after)  # classes are independent: a kept class scores as before
    written = _write(target, post, members, resolved, sources)
    kept_names = [class_names[c] for c in np.flatnonzero(kept)]
    return TuneResult(post, before, after, class_names, len(common), fitted, written, skipped, kept_names)


def keep_better(before_post: PostProcess, before: np.ndarray, post: PostProcess, after: np.ndarray):
    """The tuned post-processing with the sources' own kept for every class where the grid
    found nothing better (a value off the grid can beat it); classes are independent under
    the mean Dice. Settings shared by all classes (peak, soft gate) must agree, else the
    better as a whole. Returns (post-processing, (C,) bool: kept)."""
    worse = before > after + 1e-12
    if not worse.any():
        return post, worse
    shared = ("peak", "peak_top_k", "soft_gate")
    if any(getattr(post, k) != getattr(before_post, k) for k in shared):
        better = before.mean() > after.mean()
        return (before_post, np.ones_like(worse)) if better else (post, np.zeros_like(worse))
    merged = {
        name: np.where(worse, getattr(before_post, name), getattr(post, name))
        for name in ("pixel_threshold", "min_area", "min_component", "fill_holes", "label_threshold", "peak_threshold")
    }
    return replace(post, **merged), worse


def check_grids(**grids) -> None:
    """A TuneError naming the first grid value out of range."""
    for name, values in grids.items():
        for value in values or ():
            probability = name in ("pixel_grid", "label_grid", "peak_grid")
            if (probability and not 0 <= value <= 1) or (not probability and value < 0):
                allowed = "a probability in [0, 1]" if probability else "a size >= 0 pixels"
                raise TuneError(f"--{name.replace('_', '-')}: {value:g} is not {allowed}")


def _pixel_grid() -> list[float]:
    return [round(0.05 * i, 2) for i in range(4, 18)]  # 0.2 .. 0.85


def _target(sources, out, resolved) -> Path:
    if out is not None:
        return Path(out)
    if len(sources) > 1:
        raise TuneError("several models: give --out DIR for the ensemble's ensemble.yaml and postprocess.json")
    return resolved.folder


def _load_members(networks: list[Network], position: dict[int, int], num_classes: int) -> list[OofMember]:
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
                f"{path} and {other} share {len(shared)} of their out-of-fold images (first {min(shared)}) but not all: "
                f"the runs of {name} were trained on folds of different splits; train them with one folds file (data.folds)"
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


def fit_temperature(member: OofMember, image_ids: list[str], seed: int = 0) -> float:
    """The temperature from ``TEMPERATURES`` with the least log loss of the member's
    probabilities on a sample of pixels (or, for a classifier, of its class scores)."""
    rng = np.random.default_rng(seed)
    probs, truth = [], []
    for image_id in image_ids:
        entry = member.entries[image_id]
        if entry.probs is not None:
            flat = entry.probs.reshape(len(entry.probs), -1)
            known = ~np.isnan(flat[:, 0])
            pick = rng.integers(0, flat.shape[1], size=min(PIXELS_PER_CLASS, flat.shape[1]))
            probs.append(flat[known][:, pick].ravel())
            truth.append(entry.truth.reshape(len(entry.truth), -1)[known][:, pick].ravel())
        else:
            known = ~np.isnan(entry.heads)
            probs.append(entry.heads[known])
            truth.append(entry.labels[known])
    p, y = np.concatenate(probs), np.concatenate(truth)
    losses = [_log_loss(scale_logits(p, t), y) for t in TEMPERATURES]
    return TEMPERATURES[int(np.argmin(losses))]


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def combine_entry(members: list[OofMember], image_id: str, num_classes: int):
    """One image, as the ensemble predicts it: (probs (C, h, w), heads (C,) or None, truth
    (C, h, w), factor), members averaged per class by weight after their temperatures."""
    pixel_sum, pixel_weight, head_sum, head_weight = (
        None,
        np.zeros(num_classes),
        np.zeros(num_classes),
        np.zeros(num_classes),
    )
    truth, factor = None, 1.0
    for member in members:
        entry = member.entries[image_id]
        if entry.probs is not None:
            probs = entry.probs if member.temperature == 1.0 else scale_logits(entry.probs, member.temperature)
            if pixel_sum is None:
                pixel_sum = np.zeros(probs.shape, np.float32)
                truth, factor = entry.truth, entry.factor
            elif probs.shape != pixel_sum.shape:
                probs = _resize(probs, pixel_sum.shape[1:])
            known = ~np.isnan(probs[:, 0, 0])
            pixel_sum[known] += member.weight * probs[known]
            pixel_weight[known] += member.weight
        if entry.heads is not None:
            heads = entry.heads if member.temperature == 1.0 else scale_logits(entry.heads, member.temperature)
            known = ~np.isnan(heads)
            head_sum[known] += member.weight * heads[known]
            head_weight[known] += member.weight
    covered = pixel_weight > 0
    if not covered.all():
        raise TuneError(
            f"image {image_id}: no member predicts the pixels of class {int(np.flatnonzero(~covered)[0]) + 1}"
        )
    probs = pixel_sum / pixel_weight[:, None, None].astype(np.float32)
    heads = None
    if head_weight.any():
        heads = np.where(head_weight > 0, head_sum / np.maximum(head_weight, 1e-12), np.nan).astype(np.float32)
    return probs, heads, truth, factor


def _resize(probs: np.ndarray, shape) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(p, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) for p in probs])


def evaluate(
    posts: list[PostProcess], members: list[OofMember], image_ids: list[str], num_classes: int
) -> list[np.ndarray]:
    """(C,) mean competition Dice of each post-processing of ``posts`` on the combined
    out-of-fold images (each combined once), each image's sizes rescaled to its stored scale
    (an independent path from ``GatedSearch``'s counts)."""
    dice = np.zeros((len(posts), len(image_ids), num_classes))
    for row, image_id in enumerate(image_ids):
        probs, heads, truth, factor = combine_entry(members, image_id, num_classes)
        flat_true = truth.reshape(num_classes, -1)
        for k, post in enumerate(posts):
            scaled = replace(
                post,
                min_area=np.where(post.min_area >= NEVER, NEVER, np.ceil(post.min_area / factor - 1e-9)).astype(
                    np.int64
                ),
                min_component=np.ceil(post.min_component / factor - 1e-9).astype(np.int64),
                peak_top_k=max(1, round(post.peak_top_k / factor)),  # K full-size pixels
            )
            flat_pred = scaled(probs, heads).reshape(num_classes, -1)
            inter = np.count_nonzero(flat_pred & flat_true, axis=1)
            dice[k, row] = dice_from_counts(
                inter, np.count_nonzero(flat_pred, axis=1), np.count_nonzero(flat_true, axis=1)
            )
    return list(dice.mean(axis=1))


def true_area_quantiles(members, image_ids, num_classes: int, quantile: float) -> np.ndarray:
    """(C,) the ``quantile`` of true mask sizes (full-size pixels) per class (5th place: 2%)."""
    sizes = [[] for _ in range(num_classes)]
    for image_id in image_ids:
        entry = next(m.entries[image_id] for m in members if m.entries[image_id].truth is not None)
        counts = np.count_nonzero(entry.truth.reshape(num_classes, -1), axis=1) * entry.factor
        for c in np.flatnonzero(counts):
            sizes[c].append(counts[c])
    return np.array([int(np.quantile(s, quantile)) if s else 0 for s in sizes], dtype=np.int64)


def _write(target: Path, post: PostProcess, members: list[OofMember], resolved, sources) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = [target / rundir.POSTPROCESS]
    write_text(written[0], post.to_json() + "\n")
    if len(members) > 1 or len(sources) > 1:
        entries = []
        for member in members:
            spec = member.spec.model_dump(exclude_defaults=True)
            spec["run"] = str(Path(member.name).resolve())
            spec["weight"] = member.weight
            spec.pop("temperature", None)  # the entry's own, replaced by the one tuned with
            if member.temperature != 1.0:
                spec["temperature"] = member.temperature
            entries.append(spec)
        document = {"members": entries, "postprocess": rundir.POSTPROCESS}
        if resolved.clusters is not None:
            document["clusters"] = resolved.clusters.model_dump()
        path = target / rundir.ENSEMBLE
        write_text(
            path,
            "# written by steelseg tune; predict with: steelseg predict "
            + str(path)
            + " IMAGES --out CSV\n"
            + yaml.safe_dump(document, sort_keys=False),
        )
        written.append(path)
    return written
