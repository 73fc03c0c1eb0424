"""``steelseg tune``: the ensemble's post-processing and member temperatures, from out-of-fold
files. No torch. (Not ``core.search``, the grid search it runs, nor ``reports.sweeps``, the
report's Dice sweeps.)

Each member (a run, a folder of runs such as ``train --fold all`` writes, or an ensemble
file's entry) brings the ``oof.npz`` of its runs (``inference.oof_members``): every training
image predicted by the fold model that never saw it. Images that every member predicted are
combined as ``predict`` combines them (per class, by weight, after each member's temperature:
``inference.oof_combine``), and ``GatedSearch`` finds the pixel threshold, component size,
minimum area and gates (``head_threshold`` on the class heads, ``peak_threshold`` on the peaks)
with the best competition Dice. Out-of-fold files made without TTA tune an ensemble that
predicts with it: the flips average away noise, so the thresholds found are, if anything,
cautious.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from steelseg.core.postprocess import PostProcess
from steelseg.core.search import GatedSearch
from steelseg.files import rundir
from steelseg.files.atomic import write_text
from steelseg.inference.oof_combine import combine_entry, evaluate, fit_temperature, true_area_quantiles
from steelseg.inference.oof_members import Entry, OofMember, TuneError, load_members
from steelseg.inference.sources import check_compatible, ensemble_classes, resolve

# Imported from here by tests and the CLI, as before the split
__all__ = ["Entry", "OofMember", "TuneError", "TuneResult", "check_grids", "fit_temperature", "keep_better", "tune"]
_load_members = load_members


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
    head_grid=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    peak_grid=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    min_area_quantile: float | None = None,
    fill_holes: bool = False,
    soft_gate: bool = False,
    temperatures: bool = True,
    progress: bool = True,
) -> TuneResult:
    """Tune on the sources' out-of-fold files and write the result (see the module docstring);
    ``out``: the folder to write to (default: the first source's folder; needed for several).
    ``head_grid``: the class-head gates (``head_threshold``) tried; ``peak_grid``: the peak gates."""
    grids = dict(pixel_grid=pixel_grid, component_grid=component_grid, area_grid=area_grid, head_grid=head_grid)
    check_grids(**grids, peak_grid=peak_grid)
    if min_area_quantile is not None and not 0 <= min_area_quantile <= 1:
        raise TuneError(f"--min-area-quantile: {min_area_quantile:g} is not in [0, 1]")
    resolved = resolve(sources)
    networks = resolved.networks
    check_compatible(networks)
    class_names, position = ensemble_classes(networks)
    num_classes = len(class_names)
    target = _target(sources, out, resolved)
    members = load_members(networks, position, num_classes)
    common, skipped = _common_images(members)
    fitted = _fit_temperatures(members, common) if temperatures and len(members) > 1 else []
    first = networks[0].config
    fixed = None
    if min_area_quantile is not None:
        fixed = true_area_quantiles(members, common, num_classes, min_area_quantile)
    search = GatedSearch(
        num_classes,
        pixel_grid or _pixel_grid(),
        component_grid,
        area_grid or first.postprocess.min_area_grid,
        head_grid,
        peak_grid,
        has_heads=_has_heads(members, common[0], num_classes),
        fill_holes=[fill_holes] * num_classes,
        soft_gate=soft_gate,
        peak=first.model.score,
        peak_top_k=first.model.score_top_k,
        fixed_min_area=fixed,
    )
    post = _search(search, members, common, num_classes, progress)
    before_post = resolved.read_postprocess(first, num_classes)  # the sources' own
    before, after = evaluate([before_post, post], members, common, num_classes)
    post, kept = keep_better(before_post, before, post, after)
    after = np.where(kept, before, after)  # classes are independent: a kept class scores as before
    written = _write(target, post, members, resolved, sources)
    kept_names = [class_names[c] for c in np.flatnonzero(kept)]
    return TuneResult(post, before, after, class_names, len(common), fitted, written, skipped, kept_names)


def _common_images(members: list[OofMember]) -> tuple[list[str], int]:
    """The image ids every member predicted out of fold, sorted, and how many others some did."""
    if not any(any(e.probs is not None for e in m.entries.values()) for m in members):
        raise TuneError("no member has pixel probabilities in its out-of-fold files: there is no mask to tune")
    common = sorted(set.intersection(*(set(m.entries) for m in members)))
    skipped = len(set.union(*(set(m.entries) for m in members))) - len(common)
    if not common:
        raise TuneError("no image was predicted out of fold by every member: were they trained on the same folds?")
    return common, skipped


def _fit_temperatures(members: list[OofMember], image_ids: list[str]) -> list[tuple[str, float]]:
    """Each member's temperature fitted (and set): [(member name, temperature)]."""
    fitted = []
    for member in members:
        member.temperature = fit_temperature(member, image_ids)
        fitted.append((member.name, member.temperature))
    return fitted


def _has_heads(members: list[OofMember], image_id: str, num_classes: int) -> np.ndarray:
    """(C,) bool: the classes some member has a class head for (as their entries of one image say)."""
    has_heads = np.zeros(num_classes, bool)
    for member in members:
        sample = member.entries[image_id]
        if sample.heads is not None:
            has_heads |= ~np.isnan(sample.heads)
    return has_heads


def _search(search: GatedSearch, members: list[OofMember], image_ids: list[str], num_classes: int, progress: bool):
    """The best post-processing of ``search`` over the combined out-of-fold images."""
    from tqdm import tqdm

    for image_id in tqdm(image_ids, desc="tune", unit="img", disable=not progress):
        probs, heads, truth, factor = combine_entry(members, image_id, num_classes)
        search.update(probs, truth, heads, factor)
    post, _ = search.best()
    return post


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
        for name in ("pixel_threshold", "min_area", "min_component", "fill_holes", "head_threshold", "peak_threshold")
    }
    return replace(post, **merged), worse


def check_grids(**grids) -> None:
    """A TuneError naming the first grid value out of range."""
    for name, values in grids.items():
        for value in values or ():
            probability = name in ("pixel_grid", "head_grid", "peak_grid")
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
