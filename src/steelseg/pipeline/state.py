"""What ``steelseg fit`` has done so far, kept in ``DIR/fit.json`` after every stage and job:
the arguments it was started with (once training has begun, a second ``fit`` into the folder
must repeat them; before, it starts afresh), each
stage's seconds and whether it finished, and what the budget made it cut. Time already spent
counts against the budget when a killed fit continues.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, Field

from steelseg.errors import OutputExistsError
from steelseg.files.atomic import write_text

FIT_STATE = "fit.json"


class StageRecord(BaseModel):
    seconds: float = 0.0
    done: bool = False
    note: str = ""


class FitState(BaseModel):
    arguments: dict[str, object]
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    cuts: list[str] = Field(default_factory=list)  # what the budget shortened, in words
    jobs: dict[str, float] = Field(default_factory=dict)  # finished training job -> fit seconds when it ended


class Tracker:
    """The fit's state on disk and its clock: ``spent()`` is the recorded seconds of earlier
    attempts plus this one's; ``say`` prints one progress line with the time left."""

    def __init__(self, out: Path, arguments: dict[str, object], budget_minutes: float, progress: bool = True):
        self.path = out / FIT_STATE
        self.budget_s = budget_minutes * 60
        self.progress = progress
        if self.path.is_file():
            self.state = FitState.model_validate(json.loads(self.path.read_text()))
            # Until training has begun, a fit with other arguments starts afresh: only cheap,
            # rewritten files (the converted data, fingerprint, plan, folds) are there.
            started = bool(self.state.jobs) or (out / "members").exists()
            if self.state.arguments != arguments and not started:
                self.state = FitState(arguments=arguments)
            if self.state.arguments != arguments:
                changed = sorted(k for k in arguments if self.state.arguments.get(k) != arguments.get(k))
                raise OutputExistsError(
                    f"{out} holds a fit started with other arguments ({', '.join(changed)} differ); "
                    "repeat them to continue it, or choose another --out"
                )
        else:
            self.state = FitState(arguments=arguments)
        self._stage: str | None = None
        self._since = time.monotonic()

    def done(self, stage: str) -> bool:
        record = self.state.stages.get(stage)
        return bool(record and record.done)

    def begin(self, stage: str, number: int, total: int) -> None:
        self._stage, self._since = stage, time.monotonic()
        self.state.stages.setdefault(stage, StageRecord())
        self.say(f"[{number}/{total}] {stage}")

    def checkpoint(self) -> None:
        """Add the time since the last checkpoint to the current stage, and save."""
        now = time.monotonic()
        if self._stage is not None:
            self.state.stages[self._stage].seconds += now - self._since
        self._since = now
        self.save()

    def finish(self, note: str = "") -> None:
        self.checkpoint()
        record = self.state.stages[self._stage]
        record.done, record.note = True, note or record.note
        self.save()
        self._stage = None

    def cut(self, what: str) -> None:
        if what not in self.state.cuts:
            self.state.cuts.append(what)
            self.say(f"budget: {what}")
        self.save()

    def spent(self) -> float:
        running = time.monotonic() - self._since if self._stage is not None else 0.0
        return sum(r.seconds for r in self.state.stages.values()) + running

    def left(self) -> float:
        return self.budget_s - self.spent()

    def say(self, message: str) -> None:
        if self.progress:
            used = self.spent() / 60
            print(
                f"{message}  ({used:.1f} of {self.budget_s / 60:.0f} min used, {max(0.0, self.left()) / 60:.1f} left)",
                flush=True,
            )

    def save(self) -> None:
        write_text(self.path, json.dumps(self.state.model_dump(), indent=2) + "\n")
