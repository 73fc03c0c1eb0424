"""``steelseg fit``: a dataset to a tuned, exported, reported system, stage by stage.

Stages, each recorded in ``DIR/fit.json`` when it ends (``pipeline.state``): import (any
supported annotation format into a mask folder), fingerprint, plan (the rules', a plan file's or
a seed system's), folds, train (every member on every fold, each job resumable, with
out-of-fold files made with the shipped TTA), select (greedy forward selection on the
out-of-fold predictions, ``pipeline.selection``), tune (the chosen set and the best single
member on the full grids; the better one ships), export (ONNX of every shipped fold model),
distill (with ``--distill STUDENT``: the shipped system distilled into one network, the run
``DIR/student``; ``pipeline.distill_stage``), report (``DIR/report.html``). A killed fit
started again with the same arguments skips the finished stages and jobs and resumes the
interrupted training from its last epoch.

``DIR`` is then a system folder: ``ensemble.yaml`` (members as folders of folds, relative
paths), ``postprocess.json``, which ``predict``, ``serve``, ``score --run``, ``report --model``
and ``Predictor.from_run_dir`` take as they take a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from steelseg.files import rundir
from steelseg.pipeline import stages
from steelseg.pipeline.state import Tracker

STAGES = (
    "import",
    "fingerprint",
    "plan",
    "folds",
    "train",
    "select",
    "tune",
    "pseudo",
    "export",
    "distill",
    "report",
)


@dataclass
class FitRequest:
    data: str
    out: Path
    budget_minutes: float
    plan: str | None = None  # a plan file to run instead of planning
    system: str | None = None  # a seed system's name
    scale: str = "full"  # "tiny": the seed system shrunk to run in minutes (CI)
    unlabelled: str | None = None
    device: str = "cpu"
    progress: bool = True
    skip_bad: bool = False  # leave out unreadable images and bad annotations (each printed) instead of stopping
    executor: str = "local"  # pipeline.executors; not an argument to repeat: a fit may continue elsewhere
    address: str | None = None  # a Ray cluster's head
    distill: str | None = None  # a student recipe: the system is distilled into it at the end (DIR/student)

    def arguments(self) -> dict[str, object]:
        """What must be repeated to continue a fit (paths as given, made absolute)."""
        absolute = lambda p: None if p is None else str(Path(p).resolve())  # noqa: E731
        arguments = {
            "data": absolute(self.data),
            "budget_minutes": self.budget_minutes,
            "plan": absolute(self.plan),
            "system": self.system,
            "scale": self.scale,
            "unlabelled": absolute(self.unlabelled),
            "device": self.device,
            "skip_bad": self.skip_bad,
        }
        if self.distill:  # only when given: folders of fits from before --distill still continue
            arguments["distill"] = absolute(self.distill) if Path(self.distill).is_file() else self.distill
        return arguments


def fit(request: FitRequest) -> Path:
    """Run (or continue) every stage; returns the system folder."""
    out = request.out
    _preflight(request)
    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(out, request.arguments(), request.budget_minutes, request.progress)
    context = stages.Context(request, out, tracker)
    for number, name in enumerate(STAGES, start=1):
        if tracker.done(name):
            stages.reload(name, context)
            continue
        tracker.begin(name, number, len(STAGES))
        note = getattr(stages, f"run_{name}")(context)
        tracker.finish(note or "")
    tracker.say(f"done: {out} (predict with: steelseg predict {out} IMAGES --out CSV)")
    return out


def _preflight(request: FitRequest) -> None:
    """The mistakes that can be named before anything is written: one line each."""
    from steelseg.errors import UsageError
    from steelseg.files.importers import detect_format

    if request.out.exists() and not request.out.is_dir():
        raise UsageError(f"--out {request.out}: a file, not a folder")
    detect_format(request.data)  # a missing folder or an unknown layout
    if request.plan:
        from steelseg.pipeline.plan import read_plan

        read_plan(request.plan)
    if request.system:
        from steelseg.pipeline.systems import SYSTEMS

        if request.system not in SYSTEMS:
            raise UsageError(f"--system {request.system}: unknown; choose one of {', '.join(SYSTEMS)}")
    if request.distill:
        check_student(request.distill)
    if request.unlabelled and not Path(request.unlabelled).is_dir():
        raise UsageError(f"--unlabelled {request.unlabelled}: not a folder of images")


def describe_result(out: Path) -> str:
    """The lines ``steelseg fit`` prints at the end: chosen members and their out-of-fold scores."""
    selection = json.loads((out / stages.SELECTION).read_text())
    shipped = selection["shipped"]
    single = selection.get("best_single")
    against = f"; best single member {single}: {selection['best_single_score']:.4f}" if single else ""
    lines = [
        f"shipped: {' + '.join(shipped['members'])} ({selection['metric']} Dice on {selection['images']} "
        f"out-of-fold images: {shipped['score']:.4f}{against})",
    ]
    student = out / stages.STUDENT
    if (student / rundir.FINISHED).exists():
        lines.append(f"distilled into one network: {student} (predict with: steelseg predict {student} IMAGES)")
    lines.append(f"report: {out / stages.REPORT}")
    return "\n".join(lines)


def check_student(recipe: str) -> None:
    """An unknown or unsuitable ``--distill`` student, in one line, before any training."""
    from steelseg.config import ConfigError, check_distill_student, load_config

    config = load_config(recipe)  # an unknown recipe or a bad file: its own one line
    try:
        check_distill_student(config)
    except ValueError as err:
        raise ConfigError(f"--distill {recipe}: {err}") from None
