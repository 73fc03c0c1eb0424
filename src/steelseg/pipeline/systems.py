"""The seed teams' whole pipelines as named plans (``steelseg fit --system NAME``), as written up
in ``solutions.md`` and the seeds: members (bundled recipes, which hold each team's losses,
optimisers, crops, augmentations and fine-tuning stages), folds, TTA, how the ensemble is made
(every member ships: ``select: all``), post-processing search, pseudo-label rounds and
near-duplicate clusters. Where a write-up leaves a count open (how 9 models split into
architectures x folds), the split chosen is said in ``reasons``.

``scale="tiny"`` keeps each pipeline's shape (members, tasks, stages, TTA, gates, rounds) and
shrinks the networks and the training to run end to end in minutes: a tiny timm encoder, small
crops, one epoch of two batches per stage, two folds. ``scale="full"`` keeps the teams' sizes;
its cost on this machine is estimated by ``pipeline.costs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steelseg.config import load_config
from steelseg.errors import UsageError
from steelseg.pipeline.fingerprint import Fingerprint
from steelseg.pipeline.plan import MemberPlan, Plan, PseudoPlan, TunePlan


@dataclass(frozen=True)
class System:
    members: list[tuple[str, str, dict]]  # (name, recipe, settings)
    k: int
    tta: str
    note: str
    pseudo: PseudoPlan = field(default_factory=PseudoPlan)
    tune: TunePlan = field(default_factory=TunePlan)
    clusters: dict | None = None
    per_class: tuple[str, str, dict] | None = None  # one member per class of the data (9th/10th)


B3 = {"model.encoder_name": "efficientnet-b3"}
SYSTEMS = {
    "first_place": System(
        members=[
            ("cls-effb1", "first_place_cls_effb1", {}),
            ("cls-resnet34", "first_place_cls_resnet34", {}),
            ("unet-effb3", "first_place_unet", {}),
            ("fpn-effb3", "first_place_fpn", {}),
        ],
        k=5,
        tta="both",
        pseudo=PseudoPlan(rounds=2, rule="first"),
        note="4 classifiers (here effb1 + resnet34, each x folds) gate 9 segmenters (U-Net + FPN effb3 x folds); "
        "3-flip TTA; class gates, pixel threshold, minimum area and components tuned; two rounds of "
        "pseudo-labels kept when every class score is > 0.95 or < 0.05 and the masks agree",
    ),
    "third_place": System(
        members=[
            ("unet-scse-sx50", "third_place", {}),
            ("fpn-effb3", "third_place", {"model.arch": "fpn", "model.arch_params": {}, **B3}),
            ("unet-effb4", "third_place", {"model.encoder_name": "efficientnet-b4"}),
        ],
        k=3,
        tta="none",
        note="9 models averaged (3 architectures x 3 folds), no TTA, focal loss, plateau schedule, weighted sampler",
    ),
    "fourth_place": System(
        members=[
            ("twohead-r34", "fourth_place", {}),
            ("twohead-effb3", "fourth_place", B3),
            ("twohead-sx50", "fourth_place", {"model.encoder_name": "se_resnext50_32x4d"}),
        ],
        k=3,
        tta="both",
        note="9 two-headed nets (3 encoders x 3 folds), soft gating mask x class probability, "
        "3-flip TTA on averaged outputs",
    ),
    "fifth_place": System(
        members=[("unet-sx50", "fifth_place", {}), ("unet-effb3", "fifth_place", B3)],
        k=4,
        tta="both",
        tune=TunePlan(min_area_quantile=0.02),
        clusters={"distance": 0.05, "share": "mean"},
        note="8 U-Nets (2 encoders x 4 folds) on full strips, BCE then Lovasz; near-duplicate clusters share "
        "their class scores; minimum areas from the 2% quantile of true mask sizes",
    ),
    "seventh_place": System(
        members=[
            ("unet-effb4", "seventh_place", {}),
            ("unet-effb0", "seventh_place", {"model.encoder_name": "efficientnet-b0"}),
        ],
        k=3,
        tta="hflip",
        note="pure segmentation U-Nets (effb4, effb0; their b7 left out for time) with mixup and label "
        "smoothing, Noam schedule, crops then full-size fine-tuning",
    ),
    "tenth_place": System(
        members=[("cls-resnet34", "first_place_cls_resnet34", {})],
        per_class=("fpn", "tenth_place", {}),
        k=3,
        tta="hflip",
        pseudo=PseudoPlan(rounds=1, rule="tenth"),
        note="one FPN per defect class, gated by a classifier; 0.75 BCE + 0.25 Lovasz, RandAugment; per-class "
        "thresholds and minimum areas tuned; pseudo-labels by the share of confident pixels",
    ),
}

TINY = {
    "model.encoder_name": "tu-test_resnet",
    "data.crop_height": 32,
    "data.crop_width": 64,
    "data.batch_size": 2,
    "train.precision": "32-true",
    "train.accumulate_batches": 1,
    "train.epochs": 1,
    "train.batches_per_epoch": 2,
    "train.max_minutes": 2,
}
TINY_DECODERS = {
    "unet": {"decoder_channels": [16, 16, 16, 16, 16]},  # SCSE attention divides channels by 16
    "fpn": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},  # GroupNorm of 32 groups
}


def system_plan(name: str, fp: Fingerprint, budget_minutes: float, scale: str = "full") -> Plan:
    """The named system as a plan for data with ``fp``'s classes."""
    if name not in SYSTEMS:
        raise UsageError(f"--system {name}: unknown; choose one of {', '.join(SYSTEMS)}")
    system = SYSTEMS[name]
    members = list(system.members)
    if system.per_class:
        prefix, recipe, settings = system.per_class
        for c in range(1, len(fp.classes) + 1):
            members.append((f"{prefix}-class{c}", recipe, dict(settings, **{"data.classes": [c]})))
    tiny = scale == "tiny"
    plans = [_member(n, recipe, settings, system.tta, tiny) for n, recipe, settings in members]
    return Plan(
        system=name,
        budget_minutes=budget_minutes,
        k=2 if tiny else system.k,
        tta=system.tta,
        members=plans,
        select="all",
        tune=system.tune,
        pseudo=system.pseudo,
        clusters=system.clusters,
        reasons={"system": system.note, "scale": "tiny: tiny encoders, one short epoch per stage" if tiny else "full"},
    )


def student_settings(recipe: str, tiny: bool) -> dict[str, object]:
    """Settings of a seed system's distilled student (the seed teams had none): the recipe as it
    is, or at tiny scale shrunk like the members."""
    if not tiny:
        return {}
    settings = _member("student", recipe, {}, "none", tiny).settings
    settings.pop("train.oof_tta", None)
    return settings


def _member(name: str, recipe: str, settings: dict, tta: str, tiny: bool) -> MemberPlan:
    settings = dict(settings, **{"train.oof_tta": tta})
    if tiny:
        config = load_config(recipe, MemberPlan(name=name, recipe=recipe, settings=settings, minutes=1).overrides())
        arch_params = dict(config.model.arch_params, **TINY_DECODERS.get(config.model.arch, {}))
        settings.update(TINY, **{"model.arch_params": arch_params})
        if config.stages:
            settings["stages"] = [_tiny_stage(stage) for stage in config.stages]
    return MemberPlan(name=name, recipe=recipe, settings=settings, minutes=0.5 if tiny else 60.0)


def _tiny_stage(stage: dict) -> dict:
    stage = dict(stage)
    stage["train"] = dict(stage.get("train", {}), epochs=1)
    stage.pop("data", None)  # full-size fine-tuning stages would undo the tiny crops
    return stage
