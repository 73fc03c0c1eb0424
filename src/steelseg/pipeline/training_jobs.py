"""The train stage of ``steelseg fit``: every member on every fold the plan trains, as independent jobs.

Each job brings ``DIR/members/<member>/fold-<i>`` to a finished run (``training.cv.train_fold``:
a fresh start, a resume from its last epoch, or nothing when it has finished), so a killed fit
loses at most one epoch. Before each job the budget is checked: the time left, less what the
later stages are planned to take, is shared among the jobs still to run by the plan's shares;
a job whose share is below its planned minutes gets that share as its hard stop
(``train.max_minutes``, which ends training before an epoch that would not fit) and the cut is
recorded for the report.
"""

from __future__ import annotations

from steelseg.pipeline.executors import executor, run_local
from steelseg.pipeline.planner import MAX_MINUTES_SLACK
from steelseg.pipeline.stages import FOLDS
from steelseg.training.cv import start_cv_folder, train_fold, write_cv_table

LATER_STAGES = ("out-of-fold prediction", "select and tune", "export", "distill")
CUT_TOLERANCE = 0.98  # a share this close to the plan is not a cut


def train_members(ctx, members=None, later: tuple[str, ...] = LATER_STAGES) -> str:
    """Train ``members`` (default: the plan's) on every fold; ``later``: the stages still to come
    after them, whose planned minutes are kept free."""
    plan = ctx.plan
    members = plan.members if members is None else members
    jobs = [(member, fold) for member in members for fold in plan.trained_folds()]
    folds_csv = ctx.out / FOLDS
    configs = {member.name: _config(ctx, member, folds_csv) for member in members}
    for member in members:
        start_cv_folder(configs[member.name], ctx.member_folder(member.name))
    run = executor(ctx.request.executor)
    if run is run_local:  # one after another: each job's share is decided just before it starts
        summaries = []
        for index, (member, fold) in enumerate(jobs):
            config = _limited(ctx, configs[member.name], member, fold, _minutes_allowed(ctx, jobs[index:], later))
            summaries += run_local([(config, ctx.member_folder(member.name), fold, ctx.request.progress)], train_fold)
            _record(ctx, member, fold)
    else:  # all at once: each job gets its planned time
        work = [
            (_limited(ctx, configs[m.name], m, fold, None), ctx.member_folder(m.name), fold, False) for m, fold in jobs
        ]
        summaries = run(work, train_fold, lambda i, _: _record(ctx, *jobs[i]), ctx.request.address)
    by_member: dict[str, list] = {member.name: [] for member in members}
    for (member, _), summary in zip(jobs, summaries):
        by_member[member.name].append(summary)
    lines = []
    for member in members:
        table = write_cv_table(ctx.member_folder(member.name), by_member[member.name], plan.trained_folds())
        lines.append(f"{member.name}:\n{table}")
    if ctx.request.progress:
        print("\n".join(lines), flush=True)
    return f"{len(jobs)} jobs"


def _limited(ctx, config, member, fold: int, minutes: float | None):
    """The job's config: warm-started if the member says so, stopped at ``minutes`` (or at its
    planned time with slack); a share below the plan is recorded as a cut."""
    config = _warm_started(config, member, fold, ctx)
    key = f"{member.name}/fold-{fold}"
    if key in ctx.tracker.state.jobs:
        return config  # finished: train_fold only reads its summary
    planned_stop = config.train.max_minutes or member.minutes * MAX_MINUTES_SLACK
    if minutes is not None and minutes < member.minutes * CUT_TOLERANCE:
        ctx.tracker.cut(f"{key}: {minutes:.1f} of {member.minutes:.1f} planned minutes")
    limit = planned_stop if minutes is None else min(minutes, planned_stop)
    ctx.tracker.say(f"  training {key} (at most {limit:.1f} min)")
    return config.model_copy(update={"train": config.train.model_copy(update={"max_minutes": limit})})


def _record(ctx, member, fold: int) -> None:
    key = f"{member.name}/fold-{fold}"
    if key not in ctx.tracker.state.jobs:
        ctx.tracker.state.jobs[key] = round(ctx.tracker.spent(), 1)  # when it finished, in fit time
    ctx.tracker.checkpoint()


def _config(ctx, member, folds_csv):
    config = member.config(ctx.root, folds_csv)
    if ctx.request.skip_bad:  # as the data set was opened: without its bad images and rows
        config = config.model_copy(update={"data": config.data.model_copy(update={"skip_bad": True})})
    return config


def _warm_started(config, member, fold: int, ctx):
    """``config`` initialised from ``member.warm_start``'s model of the same fold, if it has one."""
    if member.warm_start is None:
        return config
    run = ctx.member_folder(member.warm_start) / f"fold-{fold}"
    return config.model_copy(update={"model": config.model.model_copy(update={"init_from": str(run)})})


def _minutes_allowed(ctx, remaining, later_stages) -> float:
    """This job's share of the time left for training (module docstring)."""
    later = sum(ctx.plan.estimate.get(name, 0.0) for name in later_stages) * 60
    available = max(0.0, ctx.tracker.left() - later)
    total = sum(member.minutes for member, _ in remaining)
    first = remaining[0][0].minutes
    return max(0.1, available * first / max(total, 1e-9) / 60)
