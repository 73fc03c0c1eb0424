"""``steelseg tune``: the ensemble's post-processing and member temperatures, from out-of-fold
files. No torch. (Not ``core.search``, the grid search it runs, nor ``reports.sweeps``, the
report's Dice sweeps.)

Each member (a run, a folder of runs such as ``train --fold all`` writes, or an ensemble
file's entry) brings the ``oof.npz`` of its runs (``inference.oof_members``): every training
image predicted by the fold model that never saw it. Images that every member predicted are
combined as ``predict`` combines them (per class, by weight, after each member's temperature:
``inference.oof_combine``), and ``GatedSearch`` finds the pixel threshold, component size,
minimum area and gates (``head_threshold`` on the class heads, ``peak_threshold`` on the peaks)
with the best score (``metric``: the competition's mean per-image Dice, or the dataset Dice),
among the settings that never switch a class off (unless ``allow_off``) and whose defect
recall meets ``recall_floor``. ``tune_members`` is that search for any set of members (the
ensemble selection scores subsets with it); ``tune`` adds the sources' own setting
(``inference.tune_result``) and the files. Out-of-fold files made without TTA tune an ensemble
that predicts with it: the flips average away noise, so the thresholds found are, if anything,
cautious.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from steelseg.config import Config
from steelseg.core.postprocess import PostProcess
from steelseg.core.search import METRICS, GatedSearch, SearchChoice
from steelseg.files import rundir
from steelseg.files.atomic import write_text
from steelseg.inference.oof_combine import combine_entry, evaluate, fit_temperature, true_area_quantiles
from steelseg.inference.oof_members import Entry, OofMember, TuneError, load_members
from steelseg.inference.sources import check_compatible, ensemble_classes, resolve
from steelseg.inference.tune_result import TuneResult, compare, keep_better

# Imported from here by tests and the CLI, as before the split
__all__ = [
    "Entry",
    "OofMember",
    "TuneError",
    "TuneResult",
    "check_grids",
    "fit_temperature",
    "keep_better",
    "score_members",
    "tune",
    "tune_members",
]
_load_members = load_members
GRIDS = {  # None: the pixel grid of _pixel_grid(), the area grid of the config (min_area_grid)
    "pixel_grid": None,
    "component_grid": (0, 50, 100, 150, 250, 400),
    "area_grid": None,
    "head_grid": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "peak_grid": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
}


def tune(
    sources: list[str | os.PathLike],
    out: str | os.PathLike | None = None,
    pixel_grid=None,
    component_grid=GRIDS["component_grid"],
    area_grid=None,
    head_grid=GRIDS["head_grid"],
    peak_grid=GRIDS["peak_grid"],
    min_area_quantile: float | None = None,
    fill_holes: bool = False,
    soft_gate: bool = False,
    temperatures: bool = True,
    progress: bool = True,
    *,
    metric: str = "competition",
    recall_floor: float | None = None,
    allow_off: bool = False,
) -> TuneResult:
    """Tune on the sources' out-of-fold files and write the result (see the module docstring);
    ``out``: the folder to write to (default: the first source's folder; needed for several).
    ``head_grid``: the class-head gates (``head_threshold``) tried; ``peak_grid``: the peak gates.
    ``metric``, ``recall_floor``, ``allow_off``: as ``tune_members``."""
    grids = dict(
        pixel_grid=pixel_grid,
        component_grid=component_grid,
        area_grid=area_grid,
        head_grid=head_grid,
        peak_grid=peak_grid,
    )
    check_options(grids, metric, recall_floor, min_area_quantile)
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
    options = dict(metric=metric, recall_floor=recall_floor, allow_off=allow_off)
    choice = _choose(
        members, common, num_classes, first, grids, progress, fill_holes, soft_gate, min_area_quantile, **options
    )
    before_post = resolved.read_postprocess(first, num_classes)  # the sources' own
    result = compare(before_post, choice, members, common, class_names, **options)
    result.written = _write(target, result.postprocess, members, resolved, sources)
    result.images, result.temperatures, result.skipped = len(common), fitted, skipped
    views = members[0].tuned_tta
    if len(result.written) == 1 and views and members[0].spec.tta == "none":
        # No ensemble file to carry the views: the user must ask predict for them.
        result.notes.append(f"the out-of-fold files were made with TTA {views}: predict with the same --tta, as tuned")
    return result


def tune_members(
    members: list[OofMember],
    image_ids: list[str],
    num_classes: int,
    config: Config,
    *,
    metric: str = "competition",
    recall_floor: float | None = None,
    allow_off: bool = False,
    grids: dict | None = None,
    progress: bool = False,
    fill_holes: bool = False,
    soft_gate: bool = False,
    min_area_quantile: float | None = None,
) -> tuple[PostProcess, np.ndarray]:
    """The gated post-processing ``GatedSearch`` finds for ``members`` combined (with the
    temperatures they carry: nothing is fitted here) on ``image_ids``, and its (C,) score per
    class with ``metric`` on those images, as ``score_members`` computes it (a path independent
    of the search's own counts). What ``tune`` runs, without the files and the sources' own
    setting.

    ``metric``: "competition" (per class, the mean over images of each image's Dice; an empty
    prediction of an empty truth scores 1) or "dataset" (per class, 2 sum|P n T| / (sum|P| +
    sum|T|) over all images; 1 for a class with no true and no predicted pixel anywhere).
    ``recall_floor``: only settings whose defect recall (``core.search.needed_hits``: the share of
    the images with a true defect of the class where the prediction has a pixel of it) is at least
    this are eligible; where none on the grid is, the one with the highest recall. ``allow_off``:
    settings that never predict a class (min area NEVER, gates at 1) may be chosen.
    ``grids``: any of ``GRIDS``' keys (e.g. coarse grids for a fast search); None values and
    missing keys take the defaults. ``config``: a member's (its min_area_grid is the default area
    grid, its ``model.score`` / ``score_top_k`` the peak gate's score). A ``TuneError`` names a bad
    option."""
    grids = dict(GRIDS, **{k: v for k, v in (grids or {}).items() if v is not None})
    check_options(grids, metric, recall_floor, min_area_quantile)
    options = dict(metric=metric, recall_floor=recall_floor, allow_off=allow_off)
    choice = _choose(
        members, image_ids, num_classes, config, grids, progress, fill_holes, soft_gate, min_area_quantile, **options
    )
    return choice.postprocess, score_members([choice.postprocess], members, image_ids, num_classes, metric)[0]


def score_members(
    posts: list[PostProcess],
    members: list[OofMember],
    image_ids: list[str],
    num_classes: int,
    metric: str = "competition",
) -> list[np.ndarray]:
    """(C,) score per class (``metric``, as in ``tune_members``) of each post-processing of
    ``posts`` on ``members`` combined (with their temperatures) on ``image_ids``; each image is
    combined once for all of them. ``PostProcess`` makes every mask: an independent check of
    the search's counts. (``oof_combine.evaluate``, with the option checked.)"""
    check_options({}, metric, None, None)
    return evaluate(posts, members, image_ids, num_classes, metric)


def check_options(grids: dict, metric: str, recall_floor: float | None, min_area_quantile: float | None) -> None:
    """A one-line ``TuneError`` naming the first bad option (as its command-line flag)."""
    unknown = sorted(set(grids) - set(GRIDS))
    if unknown:
        raise TuneError(f"unknown grid {unknown[0]!r}; the grids are {', '.join(GRIDS)}")
    check_grids(**grids)
    if metric not in METRICS:
        raise TuneError(f"--metric: {metric!r} is not one of {', '.join(METRICS)}")
    if recall_floor is not None and not 0 <= recall_floor <= 1:  # NaN fails too
        raise TuneError(f"--recall-floor: {recall_floor:g} is not a share in [0, 1]")
    if min_area_quantile is not None and not 0 <= min_area_quantile <= 1:
        raise TuneError(f"--min-area-quantile: {min_area_quantile:g} is not in [0, 1]")


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


def _choose(
    members, image_ids, num_classes, config, grids, progress, fill_holes, soft_gate, min_area_quantile, **options
) -> SearchChoice:
    """The ``GatedSearch`` over the combined out-of-fold images and what it chose; ``options``:
    metric, recall_floor, allow_off."""
    from tqdm import tqdm

    fixed = None
    if min_area_quantile is not None:
        fixed = true_area_quantiles(members, image_ids, num_classes, min_area_quantile)
    try:
        search = GatedSearch(
            num_classes,
            grids["pixel_grid"] or _pixel_grid(),
            grids["component_grid"],
            grids["area_grid"] or config.postprocess.min_area_grid,
            grids["head_grid"],
            grids["peak_grid"],
            has_heads=_has_heads(members, image_ids[0], num_classes),
            fill_holes=[fill_holes] * num_classes,
            soft_gate=soft_gate,
            peak=config.model.score,
            peak_top_k=config.model.score_top_k,
            fixed_min_area=fixed,
            **options,
        )
    except ValueError as err:  # a grid with nothing but "off" settings
        raise TuneError(str(err)) from None
    for image_id in tqdm(image_ids, desc="tune", unit="img", disable=not progress):
        probs, heads, truth, factor = combine_entry(members, image_id, num_classes)
        search.update(probs, truth, heads, factor)
    try:
        return search.choose()
    except ValueError as err:  # every size of a grid over the images' size
        raise TuneError(str(err)) from None


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
            if "tta" not in spec and member.tuned_tta:
                # The post-processing was tuned on probabilities averaged over these views:
                # predicting without them would threshold other numbers than were tuned.
                spec["tta"] = member.tuned_tta
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
