"""The pseudo-label stage of ``steelseg fit`` (1st and 10th places: two rounds on the test images).

Each round: the system shipped so far labels the unlabelled images it is sure about
(``inference.pseudo``, the plan's rule) into ``DIR/pseudo/round-<r>``; every shipped member is
retrained on each fold from its own model of that fold, with the labelled images of its fold's
training side plus every round's pseudo-labels (``data.pseudo``: they never join validation, so
the out-of-fold files stay comparable); the retrained members join the candidates (named
``<member>.p<r>``) and selection and tuning run again, so a round that does not help is not
shipped. The members a round added are kept in ``DIR/pseudo/members.yaml`` for a fit that
continues.
"""

from __future__ import annotations

import yaml

from steelseg.files.atomic import write_text
from steelseg.inference.pseudo import INFO_FILE, pseudo_labels
from steelseg.inference.pseudo_rules import PseudoError
from steelseg.pipeline.plan import MemberPlan

PSEUDO_DIR = "pseudo"
EXTRA_FILE = "members.yaml"


def pseudo_rounds(ctx) -> str:
    from steelseg.pipeline.choose import select_members, tune_system
    from steelseg.pipeline.training_jobs import train_members

    rounds = ctx.plan.pseudo.rounds
    if not rounds:
        return "the plan has no pseudo-label rounds"
    if not ctx.request.unlabelled:
        ctx.tracker.cut(f"pseudo-labels: the plan has {rounds} round(s) but no --unlabelled images were given")
        return "skipped: no unlabelled images"
    notes = []
    for number in range(1, rounds + 1):
        folder = ctx.out / PSEUDO_DIR / f"round-{number}"
        if not (folder / INFO_FILE).is_file():
            try:
                result = pseudo_labels(
                    [ctx.out], ctx.request.unlabelled, folder, rule=ctx.plan.pseudo.rule, progress=ctx.request.progress
                )
            except PseudoError as err:
                notes.append(f"round {number}: {err}")
                break
            notes.append(f"round {number}: {result.kept} images labelled")
        new = [_retrained(ctx, name, number) for name in ctx.selection["shipped"]["members"]]
        new = [member for member in new if member.name not in {m.name for m in ctx.extra}]
        ctx.extra += new
        write_text(ctx.out / PSEUDO_DIR / EXTRA_FILE, yaml.safe_dump([m.model_dump() for m in ctx.extra]))
        train_members(ctx, new, later=("select and tune", "export", "distill"))
        select_members(ctx)
        notes.append(tune_system(ctx))
        ctx.tracker.checkpoint()
    return "; ".join(notes)


def read_extra(ctx) -> list[MemberPlan]:
    path = ctx.out / PSEUDO_DIR / EXTRA_FILE
    if not path.is_file():
        return []
    return [MemberPlan.model_validate(item) for item in yaml.safe_load(path.read_text()) or []]


def _retrained(ctx, name: str, number: int) -> MemberPlan:
    """``name``'s recipe and settings, trained from its own fold models on every round's labels."""
    by_name = {m.name: m for m in ctx.candidates()}
    member = by_name[name]
    base = name.split(".p")[0]
    folders = [str(ctx.out / PSEUDO_DIR / f"round-{r}") for r in range(1, number + 1)]
    minutes = ctx.plan.pseudo.minutes or member.minutes
    settings = dict(member.settings, **{"data.pseudo": folders})
    epochs = settings.get("train.epochs")
    if isinstance(epochs, int) and member.minutes > 0:
        settings["train.epochs"] = max(1, round(epochs * minutes / member.minutes))
    if settings.get("train.max_minutes") is not None:
        settings["train.max_minutes"] = round(minutes * 1.25, 2)
    return MemberPlan(
        name=f"{base}.p{number}", recipe=member.recipe, settings=settings, minutes=minutes, warm_start=name
    )
