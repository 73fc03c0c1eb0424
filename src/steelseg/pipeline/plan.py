"""A plan: everything ``steelseg fit`` will do, as YAML a user can read, edit and pass back.

``steelseg plan`` derives it from the dataset's fingerprint and a measured probe by the rules
of ``pipeline.rules`` (or takes a seed system's, ``pipeline.systems``); each choice carries the
reason it was made. A member is a bundled recipe (or a config file) plus dotted settings laid
over it, exactly what ``steelseg train CONFIG --set key=value`` would train; every member is
trained on every fold the plan trains (``folds_trained`` of the ``k``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from steelseg.config import Config, ConfigError, load_config, yaml_problem
from steelseg.files.atomic import write_text

PLAN = "plan.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def as_overrides(settings: dict[str, object]) -> list[str]:
    """``section.key: value`` settings as ``steelseg train --set`` overrides (values as JSON, which is YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in settings.items()]


class MemberPlan(_Strict):
    """One candidate of the ensemble: ``recipe`` (a bundled recipe's name or a config file) with
    ``settings`` (``section.key: value``) laid over it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    recipe: str = "default"
    settings: dict[str, object] = Field(default_factory=dict)
    minutes: float = Field(gt=0)  # planned training time of one fold
    # A member whose model of the same fold initialises this one's (fine-tuning, e.g. on
    # pseudo-labels); None: the recipe's own initialisation.
    warm_start: str | None = None

    def overrides(self) -> list[str]:
        return as_overrides(self.settings)

    def config(self, root: str | os.PathLike, folds: str | os.PathLike) -> Config:
        """The member's training config on ``root`` with the fit's ``folds`` file."""
        overrides = self.overrides()
        overrides += [f"data.root={json.dumps(str(root))}", f"data.folds={json.dumps(str(folds))}", "data.fold=0"]
        try:
            return load_config(self.recipe, overrides)
        except ConfigError as err:
            raise ConfigError(f"member {self.name}: {err}") from None


class TunePlan(_Strict):
    """How the shipped system's post-processing is searched (``inference.tune``)."""

    metric: Literal["competition", "dataset"] = "competition"
    recall_floor: float | None = Field(None, ge=0, le=1)
    allow_off: bool = False
    min_area_quantile: float | None = Field(None, ge=0, le=1)  # 5th place: 0.02 of true mask sizes
    pixel_grid: list[float] | None = None
    component_grid: list[int] = Field(default_factory=lambda: [0, 50, 100, 150, 250, 400])
    area_grid: list[int] | None = None


class PseudoPlan(_Strict):
    rounds: int = Field(0, ge=0)
    rule: Literal["first", "tenth", "both"] = "tenth"  # inference.pseudo_rules: 10th's needs no classifier
    minutes: float = Field(0, ge=0)  # retraining time of one fold per round


class DistillPlan(_Strict):
    """The optional last stage: the shipped system distilled into one network (``steelseg
    distill``), a run in ``DIR/student``. ``student`` is a bundled recipe or config file with
    ``settings`` laid over it; ``minutes``: its training time; ``teacher_minutes``: the planned
    time of the system's predictions it learns from (every training image, with the TTA)."""

    student: str = "default"
    settings: dict[str, object] = Field(default_factory=dict)
    minutes: float = Field(gt=0)
    teacher_minutes: float = Field(0, ge=0)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the teacher's soft targets in the loss

    def overrides(self) -> list[str]:
        return as_overrides(self.settings)


class Plan(_Strict):
    version: Literal[1] = 1
    system: str = "auto"  # "auto": derived by the rules; else a seed system's name
    budget_minutes: float = Field(gt=0)
    device: str = "cpu"
    k: int = Field(ge=2)
    # How many of the k folds get their models (the first ones): on a small budget one or two
    # fold models trained long beat k trained briefly; the out-of-fold files then cover those
    # folds' images only. None: all k.
    folds_trained: int | None = Field(None, ge=1)
    seed: int = 0
    tta: str = "both"
    members: list[MemberPlan] = Field(min_length=1)
    # greedy: forward selection on out-of-fold predictions; all: every member ships (a seed
    # team's fixed ensemble), unless its best single member scores better.
    select: Literal["greedy", "all"] = "greedy"
    clusters: dict[str, object] | None = None  # near-duplicate clusters (5th place): ensemble.yaml's
    tune: TunePlan = Field(default_factory=TunePlan)
    pseudo: PseudoPlan = Field(default_factory=PseudoPlan)
    export: bool = True
    distill: DistillPlan | None = None
    reasons: dict[str, str] = Field(default_factory=dict)  # choice -> why
    estimate: dict[str, float] = Field(default_factory=dict)  # stage -> planned minutes

    @model_validator(mode="after")
    def _folds_within_k(self) -> Plan:
        if self.folds_trained is not None and self.folds_trained > self.k:
            raise ValueError(f"folds_trained ({self.folds_trained}) is more than k ({self.k})")
        return self

    def trained_folds(self) -> list[int]:
        """The folds whose models are trained."""
        return list(range(self.folds_trained or self.k))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, width=110)


class PlanError(ConfigError):
    """A plan file that cannot be read; the message names the file and the key."""


def write_plan(path: str | os.PathLike, plan: Plan) -> Path:
    path = Path(path)
    write_text(path, _HEADER + plan.to_yaml())
    return path


def read_plan(path: str | os.PathLike) -> Plan:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise PlanError(f"{path}: cannot read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise PlanError(f"{path}: {yaml_problem(err)}") from None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise PlanError(f"{path}: {where}: {first['msg']}") from None
    names = [m.name for m in plan.members]
    if len(set(names)) != len(names):
        raise PlanError(f"{path}: members: two members are named {_first_repeat(names)!r}; names must differ")
    return plan


def _first_repeat(names: list[str]) -> str:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return ""


_HEADER = (
    "# steelseg plan: edit any value and pass the file back with `steelseg fit DATA --plan FILE`.\n"
    "# members[].settings are `steelseg train --set` keys laid over members[].recipe; minutes is\n"
    "# one fold's planned training time. `reasons` says why each value was chosen.\n"
)
