"""The select and tune stages of ``steelseg fit``: which members ship, and with which
post-processing. Both are decided on the out-of-fold predictions of every candidate on the same
folds, made with the shipped TTA (``pipeline.selection``'s docstring says why that data and what
still differs from prediction). ``DIR/selection.json`` keeps every set scored, the best single
member and what shipped."""

from __future__ import annotations

import json

import numpy as np

from steelseg.files import rundir
from steelseg.files.atomic import write_text
from steelseg.inference.tune import tune_members
from steelseg.pipeline.selection import load_candidates, select
from steelseg.pipeline.stages import SELECTION, write_system_files

BEST_SINGLE_POSTPROCESS = "best-single.postprocess.json"


def select_members(ctx) -> str:
    members, class_names, images = _candidates(ctx)
    config = _first_config(ctx)
    say = print if ctx.request.progress else (lambda *_: None)
    selection = select(members, images, len(class_names), config, ctx.plan.tune, ctx.plan.select, say=say)
    ctx.selection = {
        "metric": selection.metric,
        "images": selection.images,
        "class_names": class_names,
        "chosen": selection.chosen,
        "best_single": selection.best_single,
        "temperatures": selection.temperatures,
        "singles": selection.singles,
        "steps": [vars(step) for step in selection.steps],
    }
    _save(ctx)
    return f"chose {' + '.join(selection.chosen)} of {len(members)} candidates"


def tune_system(ctx) -> str:
    """Tune the chosen set and the best single member on the plan's full grids; ship the better."""
    members, class_names, images = _candidates(ctx)
    by_name = {m.name: m for m in members}
    for member in members:
        member.temperature = ctx.selection["temperatures"].get(member.name, 1.0)
    config = _first_config(ctx)
    tune = ctx.plan.tune
    grids = {"component_grid": tune.component_grid, "area_grid": tune.area_grid, "pixel_grid": tune.pixel_grid}
    results = {}
    sets = {"chosen": ctx.selection["chosen"]}
    if ctx.selection["best_single"] is not None:
        sets["best single"] = [ctx.selection["best_single"]]
    for label, names in sets.items():
        if label == "best single" and names == sets["chosen"]:
            results[label] = results["chosen"]
            continue
        post, per_class = tune_members(
            [by_name[n] for n in names],
            images,
            len(class_names),
            config,
            metric=tune.metric,
            recall_floor=tune.recall_floor,
            allow_off=tune.allow_off,
            grids=grids,
            progress=ctx.request.progress,
            min_area_quantile=tune.min_area_quantile,
        )
        results[label] = (names, post, np.asarray(per_class, float))
    single = results.get("best single")
    shipped = "best single" if single is not None and single[2].mean() > results["chosen"][2].mean() else "chosen"
    names, post, per_class = results[shipped]
    write_system_files(ctx, names, ctx.selection["temperatures"], post.to_json())
    if single is not None:  # the comparison in the report, repeatable: the single member as tuned here
        write_text(ctx.out / BEST_SINGLE_POSTPROCESS, single[1].to_json() + "\n")
    ctx.selection["shipped"] = {"members": names, "score": float(per_class.mean()), "per_class": per_class.tolist()}
    ctx.selection["best_single_score"] = float(single[2].mean()) if single else None
    ctx.selection["best_single_per_class"] = single[2].tolist() if single else None
    ctx.selection["shipped_is"] = shipped
    _save(ctx)
    return f"shipped {' + '.join(names)} ({shipped}): {per_class.mean():.4f}"


def _candidates(ctx):
    """The candidates' out-of-fold files, read once per set of candidates (select, then tune, read
    the same files; a pseudo-label round adds candidates, and they are read again)."""
    names = tuple(m.name for m in ctx.candidates())
    if ctx.oof is None or ctx.oof[0] != names:
        ctx.oof = (names, load_candidates({name: ctx.member_folder(name) for name in names}))
    return ctx.oof[1]


def _first_config(ctx):
    """A member's config, for the defaults of the search (its minimum-area grid, peak score)."""
    first = ctx.member_folder(ctx.plan.members[0].name)
    return rundir.load_run_config(next(iter(sorted(first.glob(rundir.FOLD_GLOB)))))


def _save(ctx) -> None:
    write_text(ctx.out / SELECTION, json.dumps(ctx.selection, indent=2) + "\n")
