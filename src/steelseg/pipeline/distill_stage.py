"""The distill stage of ``steelseg fit --distill STUDENT``: the shipped system, loaded from the
fit's folder as ``predict`` loads it (every shipped member's fold models with the shipped TTA),
teaches one student network trained on every image (``training.distill``): the run
``DIR/student``, a normal run for predict, export, serve.

Like a training job it is brought to a finished run by ``training.fit.continue_run``: a killed
fit continues the teacher's cached predictions (``inference.teacher_cache`` computes only the
missing chunks) or the student's training from its last epoch. The student gets what the budget
has left less the report (and less the teacher's planned time while its predictions are still
to make), at most its planned minutes with the planner's slack; a shorter stop is a recorded cut.
"""

from __future__ import annotations

from steelseg.files import rundir
from steelseg.pipeline.plan import DistillPlan
from steelseg.pipeline.planner import MAX_MINUTES_SLACK
from steelseg.pipeline.stages import STUDENT
from steelseg.pipeline.training_jobs import CUT_TOLERANCE

REPORT_SECONDS = 30  # kept for the report after the student


def distill_system(ctx) -> str:
    spec = ctx.plan.distill
    if spec is None:
        return "not asked for (fit --distill STUDENT)"
    from steelseg.training.distill import distill_config
    from steelseg.training.fit import continue_run

    folder = ctx.out / STUDENT
    overrides = spec.overrides()
    if not (folder / rundir.FINISHED).exists():
        overrides.append(f"train.max_minutes={_minutes_allowed(ctx, spec, folder):.2f}")
    if ctx.request.skip_bad:
        overrides.append("data.skip_bad=true")
    teacher = {"alpha": spec.alpha, "device": ctx.request.device}
    config = distill_config(spec.student, overrides, [ctx.out], ctx.root, ctx.request.unlabelled, **teacher)
    summary = continue_run(config, folder, ctx.request.progress)
    ctx.tracker.checkpoint()
    if ctx.plan.export:
        from steelseg.inference.export import export_onnx

        if not (folder / rundir.ONNX).is_file():
            export_onnx(folder)
    return f"{folder}: validation Dice {summary.val_dice_tuned:.4f} (best epoch {summary.epoch})"


def _minutes_allowed(ctx, spec: DistillPlan, folder) -> float:
    """The student's hard stop (module docstring); a stop below its planned minutes is recorded."""
    teacher_s = 0.0 if rundir.has_finished_epoch(folder) else spec.teacher_minutes * 60
    allowed = max(0.1, (ctx.tracker.left() - REPORT_SECONDS - teacher_s) / 60)
    if allowed < spec.minutes * CUT_TOLERANCE:
        ctx.tracker.cut(f"student: {allowed:.1f} of {spec.minutes:.1f} planned minutes")
    limit = min(allowed, spec.minutes * MAX_MINUTES_SLACK)
    ctx.tracker.say(f"  distilling the system into {spec.student} (training at most {limit:.1f} min)")
    return limit
