"""The stages of ``steelseg fit`` (``pipeline.fit``): one ``run_<stage>(context)`` each, which
writes its files into the fit's folder and returns a note for ``fit.json``, and ``reload``,
which reads a finished stage's files back when a fit continues."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from steelseg.files import rundir
from steelseg.files.atomic import write_text
from steelseg.files.datasets import open_dataset
from steelseg.files.folds import make_folds, write_folds
from steelseg.pipeline.fingerprint import FINGERPRINT, Fingerprint, fingerprint_dataset, write_fingerprint
from steelseg.pipeline.plan import PLAN, Plan, read_plan, write_plan
from steelseg.pipeline.state import Tracker

FOLDS = "folds.csv"
MEMBERS = "members"
SELECTION = "selection.json"
REPORT = "report.html"
STUDENT = "student"  # the run fit --distill trains
DATA = "data"  # a converted copy of data given in another annotation format


@dataclass
class Context:
    request: object  # fit.FitRequest
    out: Path
    tracker: Tracker
    root: Path | None = None
    dataset: object = None
    fingerprint: Fingerprint | None = None
    plan: Plan | None = None
    selection: dict = field(default_factory=dict)
    extra: list = field(default_factory=list)  # members the pseudo-label rounds added (MemberPlan)
    oof: tuple | None = None  # (candidate names, their out-of-fold files): pipeline.choose reads them once

    def member_folder(self, name: str) -> Path:
        return self.out / MEMBERS / name

    def candidates(self) -> list:
        """Every member that may ship: the plan's and those retrained on pseudo-labels."""
        return [*self.plan.members, *self.extra]


def run_import(ctx: Context) -> str:
    from steelseg.files.importers import as_dataset_folder

    ctx.root = Path(as_dataset_folder(ctx.request.data, ctx.out / DATA, skip_bad=ctx.request.skip_bad))
    ctx.dataset = _open(ctx)
    converted = ctx.root != Path(ctx.request.data)
    return f"{'converted to ' + str(ctx.root) if converted else 'read'}: {len(ctx.dataset)} images"


def run_fingerprint(ctx: Context) -> str:
    ctx.fingerprint = fingerprint_dataset(ctx.dataset, progress=ctx.request.progress)
    write_fingerprint(ctx.out / FINGERPRINT, ctx.fingerprint)
    return f"{ctx.fingerprint.images} images, {len(ctx.fingerprint.classes)} classes"


def run_plan(ctx: Context) -> str:
    request = ctx.request
    if request.plan:
        ctx.plan = read_plan(request.plan)
        how = f"from {request.plan}"
        if request.distill:
            from steelseg.pipeline.planner import with_student

            ctx.plan = with_student(ctx.plan, request.distill)
    else:
        from steelseg.pipeline.planning import derive_plan

        ctx.plan = derive_plan(
            ctx.fingerprint,
            ctx.dataset,
            request.budget_minutes,
            request.device,
            request.system,
            request.scale,
            request.unlabelled is not None,
            ctx.tracker.spent(),
            request.distill,
        )
        how = f"seed system {request.system} ({request.scale})" if request.system else "by the rules"
    write_plan(ctx.out / PLAN, ctx.plan)
    if request.progress:
        from steelseg.pipeline.plan_table import format_plan

        print(format_plan(ctx.plan), flush=True)
    trained = len(ctx.plan.trained_folds())
    folds = f"{ctx.plan.k} folds" if trained == ctx.plan.k else f"{trained} of {ctx.plan.k} folds"
    return f"{how}: {len(ctx.plan.members)} candidates x {folds}"


def run_folds(ctx: Context) -> str:
    table = make_folds(ctx.dataset, k=ctx.plan.k, seed=ctx.plan.seed, progress=ctx.request.progress)
    write_folds(ctx.out / FOLDS, table)
    return f"{ctx.plan.k} folds; {table.summary().splitlines()[0]}"


def run_train(ctx: Context) -> str:
    from steelseg.pipeline.training_jobs import train_members

    return train_members(ctx)


def run_select(ctx: Context) -> str:
    from steelseg.pipeline.choose import select_members

    return select_members(ctx)


def run_tune(ctx: Context) -> str:
    from steelseg.pipeline.choose import tune_system

    return tune_system(ctx)


def run_pseudo(ctx: Context) -> str:
    from steelseg.pipeline.pseudo_rounds import pseudo_rounds

    return pseudo_rounds(ctx)


def run_export(ctx: Context) -> str:
    if not ctx.plan.export:
        return "not asked for by the plan"
    from steelseg.inference.export import export_onnx

    runs = [run for name in ctx.selection["shipped"]["members"] for run in _fold_runs(ctx.member_folder(name))]
    for run in runs:
        onnx = run / rundir.ONNX
        if not onnx.is_file() or onnx.stat().st_mtime < (run / rundir.WEIGHTS).stat().st_mtime:
            export_onnx(run)
        ctx.tracker.checkpoint()
    return f"{len(runs)} fold models to ONNX"


def run_distill(ctx: Context) -> str:
    from steelseg.pipeline.distill_stage import distill_system

    return distill_system(ctx)


def run_report(ctx: Context) -> str:
    from steelseg.reports.system import write_system_report

    write_system_report(ctx.out / REPORT, system_report_data(ctx))
    return str(ctx.out / REPORT)


def reload(name: str, ctx: Context) -> None:
    """Read the files of a finished stage back into ``ctx``."""
    if name == "import":
        converted = ctx.out / DATA
        ctx.root = converted if converted.is_dir() else Path(ctx.request.data)
        ctx.dataset = _open(ctx)
    elif name == "fingerprint":
        ctx.fingerprint = Fingerprint.model_validate(json.loads((ctx.out / FINGERPRINT).read_text()))
    elif name == "plan":
        ctx.plan = read_plan(ctx.out / PLAN)
    elif name in ("select", "tune", "pseudo"):
        ctx.selection = json.loads((ctx.out / SELECTION).read_text())
        if name == "pseudo":
            from steelseg.pipeline.pseudo_rounds import read_extra

            ctx.extra = read_extra(ctx)


def system_report_data(ctx: Context) -> dict:
    """Everything the system report shows, as plain data (reports/ knows nothing of fit)."""
    cv = {}
    for member in ctx.candidates():
        table = ctx.member_folder(member.name) / rundir.CV_TABLE
        cv[member.name] = table.read_text() if table.is_file() else ""
    post = (ctx.out / rundir.POSTPROCESS).read_text() if (ctx.out / rundir.POSTPROCESS).is_file() else "{}"
    return {
        "out": str(ctx.out),
        "plan": ctx.plan.model_dump(mode="json"),
        "plan_yaml": ctx.plan.to_yaml(),
        "fingerprint": ctx.fingerprint.model_dump(mode="json"),
        "class_names": list(ctx.dataset.class_names),
        "cv": cv,
        "selection": ctx.selection,
        "postprocess": json.loads(post),
        "stages": {k: v.model_dump() for k, v in ctx.tracker.state.stages.items()},
        "cuts": list(ctx.tracker.state.cuts),
        "budget_minutes": ctx.plan.budget_minutes,
        "student": _student_data(ctx),
    }


def _student_data(ctx: Context) -> dict | None:
    """The distilled student's validation score and what one image costs it against the system."""
    folder = ctx.out / STUDENT
    if ctx.plan.distill is None or not (folder / rundir.FINISHED).exists():
        return None
    from steelseg.inference.ensemble import TTA

    summary = rundir.load_summary(folder)
    shipped = ctx.selection.get("shipped", {}).get("members", [])
    passes = len(shipped) * len(ctx.plan.trained_folds()) * len(TTA[ctx.plan.tta])
    return {
        "run": str(folder),
        "recipe": ctx.plan.distill.student,
        "epoch": summary.epoch,
        "val_dice": summary.val_dice_tuned,
        "system_passes": passes,
    }


def write_system_files(ctx: Context, names: list[str], temperatures: dict[str, float], post_json: str) -> None:
    """``ensemble.yaml`` (members by relative path, so the folder can move) and ``postprocess.json``."""
    members = []
    for name in names:
        entry = {"run": f"{MEMBERS}/{name}", "tta": ctx.plan.tta}
        if temperatures.get(name, 1.0) != 1.0:
            entry["temperature"] = temperatures[name]
        members.append(entry)
    write_text(ctx.out / rundir.POSTPROCESS, post_json + "\n")
    document = {"members": members, "postprocess": rundir.POSTPROCESS}
    if ctx.plan.clusters is not None:
        document["clusters"] = ctx.plan.clusters
    header = f"# written by steelseg fit; predict with: steelseg predict {ctx.out} IMAGES --out CSV\n"
    write_text(ctx.out / rundir.ENSEMBLE, header + yaml.safe_dump(document, sort_keys=False))


def _open(ctx: Context):
    """The data set; with ``--skip-bad`` without its unreadable images and bad rows (printed)."""
    if not ctx.request.skip_bad:
        return open_dataset(ctx.root)
    from steelseg.config import DataConfig
    from steelseg.files.datasets import open_configured

    return open_configured(DataConfig(root=str(ctx.root), skip_bad=True), progress=ctx.request.progress)


def _fold_runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(rundir.FOLD_GLOB) if (p / rundir.CONFIG).is_file())
