"""Typed configuration: YAML files whose keys are the parameter names; unknown keys are errors.

A run directory stores the fully resolved ``Config`` (class names included), so prediction,
export and serving need nothing else.

Paths in a config (data.root, data.folds, data.pseudo, model.init_from, model.encoder_weights)
are the user's and may point anywhere: a config is the user's own instructions for training,
and ``rundir.save_config`` stores them absolute so that the run works from any folder. They are
read by training only. Prediction, export and the service never follow a path from a run's
config.yaml (the network is built without init_from and encoder_weights and gets the run's own
checked weights), so a run directory from elsewhere cannot make them read or unpickle another
file. Weights files named here are read without running pickled code (``models/weights.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steelseg.errors import SteelsegError

BUNDLED_DIR = Path(__file__).parent / "configs"


class ConfigError(SteelsegError, ValueError):
    """A configuration file or override that does not describe a valid run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentStep(_Strict):
    """One training augmentation: a name from ``training.augment.AUGMENTATIONS``, the chance it
    is applied, and the keyword arguments of its implementation."""

    name: str
    p: float = Field(0.5, ge=0, le=1)
    params: dict[str, Any] = Field(default_factory=dict)


class LossTerm(_Strict):
    """One term of the training loss: a name from ``training.losses.LOSSES``, its weight in the
    sum, and the keyword arguments of its implementation (e.g. ``pos_weight``)."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Strict):
    root: str | None = None  # dataset folder (severstal or mask_folder layout)
    layout: Literal["auto", "severstal", "mask_folder"] = "auto"
    csv_name: str = "train.csv"
    class_names: list[str] | None = None  # None: from classes.json or the labels
    # Train on these class ids only (1-based): [2] makes a binary class-2 model, [1, 3, 4]
    # leaves class 2 out. None: every class.
    classes: list[int] | None = None
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    # Cross-validation: a CSV from `steelseg folds` and the fold to validate on; when set, it
    # replaces the random val_fraction split.
    folds: str | None = None
    fold: int | None = Field(None, ge=0)
    # Extra labelled folders (`steelseg pseudo` writes them; any dataset folder of the same
    # classes works) whose images join the TRAINING split only: validation, its tuned
    # thresholds and the out-of-fold files stay those of data.root, so a round of
    # pseudo-labels is judged on the same images as the round before. An image id that is
    # also in data.root is an error (a pseudo folder made from the training images by mistake).
    pseudo: list[str] | None = None
    # `train --skip-bad`: leave out unreadable images and bad rows (each logged, listed in the
    # run's skipped.txt) instead of stopping at the first; every image is decoded once first.
    skip_bad: bool = False
    crop_height: int | None = 256  # random training crops; None = full images
    crop_width: int | None = 512
    # Share of training crops placed on a defect when the image has one (rare classes get seen).
    defect_crop_fraction: float = Field(0.5, ge=0, le=1)
    crops_per_image: int = Field(1, ge=1)  # random crops of each image per training epoch
    # random: every image once per epoch; balanced: drawn so that each class set (and clean
    # images) is seen about equally often, however rare (Severstal class 2: 247 of 12,568).
    sampler: Literal["random", "balanced"] = "random"
    # Applied in order after the crop (see training/augment.py for the names and parameters).
    augment: list[AugmentStep] = Field(default_factory=lambda: [AugmentStep(name="hflip"), AugmentStep(name="vflip")])
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)

    @field_validator("pseudo", mode="before")
    @classmethod
    def _one_folder(cls, value):
        return [value] if isinstance(value, str) else value  # --set data.pseudo=runs/pseudo1


class ModelConfig(_Strict):
    # What the network answers (core.outputs.TASK_OUTPUTS names its outputs):
    #   segment   where: pixel probabilities per class (an smp architecture)
    #   classify  whether: one probability per class for the whole image (1st place)
    #   two_head  both from one encoder: a segmentation decoder and a class head whose
    #             probabilities gate the masks (4th place: mask_prob * class_prob)
    #   instance  a torchvision Mask R-CNN; its instances are merged into pixel probabilities
    task: Literal["segment", "classify", "two_head", "instance"] = "segment"
    arch: str = "unet"  # any segmentation_models_pytorch architecture (segment, two_head)
    # smp encoder, or "tu-<timm name>" for any timm backbone; instance: a torchvision resnet.
    encoder_name: str = "resnet18"
    # None, "imagenet" (from the hub cache; nothing is downloaded offline) or a local file.
    encoder_weights: str | None = None
    in_channels: Literal[1, 3] = 1
    # sigmoid: one independent output per class (multi-label); softmax: background + one per
    # class, valid because defect masks of different classes never overlap.
    head: Literal["sigmoid", "softmax"] = "sigmoid"
    # Passed to the smp architecture (instance: to torchvision's MaskRCNN).
    arch_params: dict[str, Any] = Field(default_factory=dict)
    # The class head of classify and two_head: pooling of the encoder's last features, dropout.
    class_pooling: Literal["avg", "max"] = "avg"
    class_dropout: float = Field(0.2, ge=0, lt=1)
    # How a network without a class head (segment, instance) scores a class for screening:
    # its largest pixel probability, or the mean of its score_top_k largest (5th place).
    score: Literal["max", "top_k"] = "max"
    score_top_k: int = Field(100, ge=1)
    # Inputs are scaled to [0, 1], then standardised with these (ImageNet's gray statistics).
    input_mean: float = 0.449
    input_std: float = 0.226
    # The network sees images resized by this factor (0.5: a quarter of the pixels, ~4x
    # faster); probabilities are resized back, so masks and scores stay at full resolution.
    input_scale: float = Field(1.0, gt=0, le=1)
    # Start from these weights: a run directory (its model.safetensors) or a .safetensors file.
    # Multi-stage training sets it to the previous stage's run.
    init_from: str | None = None


class SchedulerConfig(_Strict):
    """Learning-rate schedule: a name from ``training.optim.SCHEDULERS`` and its parameters."""

    name: Literal["constant", "plateau", "cosine", "flat_cosine", "noam"] = "constant"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    epochs: int = Field(20, ge=1)
    max_minutes: float | None = Field(None, gt=0)  # stop before an epoch that would not fit
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "radam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    # A weighted sum of terms; a bare name is one term of weight 1 (e.g. --set train.loss=focal).
    loss: list[LossTerm] = Field(
        default_factory=lambda: [LossTerm(name="bce", weight=0.5), LossTerm(name="dice", weight=0.5)]
    )
    # The class head's loss (classify, two_head), on the labels "class present in the crop";
    # two_head trains on loss + class_loss_weight x class_loss.
    class_loss: list[LossTerm] = Field(default_factory=lambda: [LossTerm(name="bce")])
    class_loss_weight: float = Field(0.5, ge=0)
    # Gradients of this many batches are summed before a step: effective batch = batch_size x this.
    accumulate_batches: int = Field(1, ge=1)
    seed: int = 0
    # auto: bf16-mixed on CPUs with native bf16, 16-mixed on GPUs, 32-true otherwise (the
    # exact fp32 path is "32-true"); "16-mixed" on a CPU runs as bf16-mixed.
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = "auto"
    channels_last: bool = True  # NHWC tensors: what CPU (oneDNN) and GPU convolutions run fastest
    accelerator: str = "auto"
    devices: int = Field(1, ge=1)
    strategy: str = "auto"  # with devices > 1: "ddp" (GPUs) or "ddp_spawn" (also CPU, gloo)
    tune_postprocess: bool = True  # search pixel threshold and min area on validation
    # An "epoch" of at most this many batches (then validation): checkpoints, budgets come often.
    batches_per_epoch: int | None = Field(None, ge=1)
    val_batches: int | None = Field(None, ge=1)  # validate on this many batches only (smoke tests)
    mixup_alpha: float | None = Field(None, gt=0)  # mixup (7th place): lam ~ Beta(alpha, alpha)
    # Average the k best epochs' weights at the end if that scores at least as well on validation.
    average_best: int = Field(0, ge=0)
    # Out-of-fold probabilities (oof.npz, float16) at this scale, for tuning later; None: not saved.
    oof_scale: float | None = Field(0.25, gt=0, le=1)
    # The TTA views the out-of-fold images are predicted with: those the shipped ensemble uses
    # (`steelseg fit` sets it), so that what is tuned on them is what predicts later.
    oof_tta: Literal["none", "hflip", "vflip", "both"] = "none"  # inference.ensemble.TTA's names
    # Trackers beside metrics.csv, the record (training.loggers); mlflow: a file store in RUN/mlruns or mlflow_uri
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] | None = None  # None: none, metrics.csv only
    mlflow_uri: str | None = None

    @field_validator("loss", "class_loss", mode="before")
    @classmethod
    def _bare_name(cls, value):
        return [{"name": value}] if isinstance(value, str) else value


class PostprocessConfig(_Strict):
    """Defaults, before tuning; a float or int applies to every class, a list is per class."""

    pixel_threshold: float | list[float] = 0.5
    min_area: int | list[int] = 0
    # Screening: a class is present when its score is above this (gate.json when
    # train.tune_postprocess is off; else the tuned one).
    screen_threshold: float | list[float] = 0.5
    # Tuned screening thresholds must keep at least this share of each class's positives (a
    # screen before segmentation that may not lose defects); None: the most accurate ones.
    screen_min_recall: float | None = Field(None, ge=0, le=1)
    threshold_grid: list[float] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    min_area_grid: list[int] = [0, 50, 100, 200, 400, 600, 900, 1200, 2000, 3000, 5000, 8000, 12000]
    # Screening thresholds tried on class scores (screening.py); 1.0, never present, is always added.
    screen_threshold_grid: list[float] = [round(0.05 * i, 2) for i in range(1, 20)]

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data):
        # Configs written before the screening keys were named for what they screen: the old
        # key is read as the new one (a stage's override under the old name wins over the base).
        if isinstance(data, dict) and any(old in data for old in OLD_POSTPROCESS_KEYS):
            data = dict(data)
            for old, new in OLD_POSTPROCESS_KEYS.items():
                if old in data:
                    data[new] = data.pop(old)
        return data

    @field_validator("threshold_grid", "min_area_grid", "screen_threshold_grid")
    @classmethod
    def _non_empty(cls, grid: list) -> list:
        if not grid:
            raise ValueError("grid must not be empty")
        return grid


class DistillConfig(_Strict):
    """``steelseg distill`` (training/distill.py): loss = alpha x BCE against the teacher's
    probabilities + (1 - alpha) x the recipe's loss on the masks (unlabelled images: the first
    part only). The teacher is read by training only, like data.root."""

    teacher: list[str] = Field(default_factory=list)  # anything `predict` takes, several averaged
    unlabelled: str | None = None  # a folder of images without masks
    alpha: float = Field(0.5, ge=0, le=1)
    # Soft targets and student logits divided by this before the sigmoid (Hinton et al.); the
    # soft loss is scaled by its square so that its gradients keep their size.
    temperature: float = Field(1.0, gt=0)
    tta: Literal["none", "hflip", "vflip", "both"] | None = None  # None: each teacher member's own
    backend: str = "auto"  # as `predict --backend`
    device: str = "auto"
    batch_size: int = Field(4, ge=1)


# postprocess keys of configs written by earlier versions -> their names now
OLD_POSTPROCESS_KEYS = {
    "label_threshold": "screen_threshold",
    "label_min_recall": "screen_min_recall",
    "label_threshold_grid": "screen_threshold_grid",
}


class Config(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    # Multi-stage training (1st place: BCE, then BCE + Dice; 7th: crops, then full images):
    # each entry overrides this config for one more stage, which starts from the previous
    # stage's best weights; e.g. [{name: finetune, train: {loss: [...], epochs: 5}}].
    stages: list[dict[str, Any]] = Field(default_factory=list)
    distill: DistillConfig | None = None  # set by `steelseg distill`

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.data.folds and self.data.fold is None:
            raise ValueError("data.folds is set: choose the validation fold with data.fold (or --fold)")
        if self.train.mixup_alpha and self.model.head == "softmax":
            raise ValueError("mixup needs the sigmoid head: the softmax losses take one class per pixel")
        task = self.model.task
        if task != "segment" and self.model.head == "softmax":
            raise ValueError(f"model.task {task} needs model.head sigmoid: its classes are independent labels")
        if task != "segment" and self.train.mixup_alpha:
            raise ValueError(f"mixup is for segmenters; model.task {task} does not take train.mixup_alpha")
        names, classes = self.data.class_names, self.data.classes
        if classes is not None and (not classes or len(set(classes)) != len(classes)):
            raise ValueError(f"data.classes must list distinct class ids, got {classes}")
        if names and classes and not all(1 <= c <= len(names) for c in classes):
            raise ValueError(f"data.classes {classes} must be ids within 1..{len(names)}")
        if names:  # known once the dataset was opened: training re-validates with them
            count = len(self.output_class_names)
            for key in ("pixel_threshold", "min_area", "screen_threshold"):
                value = getattr(self.postprocess, key)
                if isinstance(value, list) and len(value) != count:
                    raise ValueError(f"postprocess.{key} lists {len(value)} values; the model has {count} classes")
        if self.distill is not None:
            check_distill_student(self)
        if self.stages:
            self.stage_configs()  # a stage with a bad key fails now, not hours into training
        return self

    @property
    def output_class_names(self) -> list[str]:
        """Names of the classes the model outputs, in channel order (``data.classes`` applied)."""
        names = list(self.data.class_names or [])
        return [names[c - 1] for c in self.data.classes] if self.data.classes else names

    def stage_configs(self) -> list[tuple[str, Config]]:
        """[(stage name, its complete config)], the first stage being this config itself."""
        base = self.model_dump(mode="json", exclude={"stages"})
        stages = [("1", Config.model_validate(base))]
        for number, overrides in enumerate(self.stages, start=2):
            overrides = dict(overrides)
            name = f"{number}-{overrides.pop('name', 'stage')}"
            try:
                stages.append((name, Config.model_validate(_merge(base, overrides))))
            except ValidationError as err:
                raise ValueError(f"stage {name}:\n{_describe(err)}") from None
        return stages

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def check_distill_student(config: Config) -> None:
    """What a distilled student cannot be (one line naming the key each; ``fit --distill`` asks first)."""
    if config.model.task not in ("segment", "classify", "two_head"):
        raise ValueError(f"distill trains segment, classify or two_head students, not model.task {config.model.task}")
    if config.model.head != "sigmoid":
        raise ValueError("distill needs model.head sigmoid: the teacher's probabilities are per-class")
    if config.train.mixup_alpha:
        raise ValueError("distill does not take train.mixup_alpha")
    if config.stages:
        raise ValueError("distill trains one stage: choose a recipe without stages")
    if config.data.pseudo:
        raise ValueError("distill takes unlabelled images (--unlabelled), not data.pseudo")


def load_config(source: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or the name of a bundled recipe, e.g. ``"demo"``) and apply
    ``section.key=value`` overrides, whose values are parsed as YAML."""
    data: dict = {}
    if source is not None:
        path = resolve_config_path(source)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: {yaml_problem(err)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    for override in overrides or []:
        _apply_override(data, override)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}invalid configuration:\n{_describe(err)}") from None


def revalidate(config: Config) -> Config:
    """``config`` checked again, e.g. once the dataset's class names are known; problems are a
    ConfigError listing them, as from ``load_config``."""
    try:
        return Config.model_validate(config.model_dump())
    except ValidationError as err:
        raise ConfigError(f"invalid configuration:\n{_describe(err)}") from None


def resolve_config_path(source: str | os.PathLike) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    bundled = BUNDLED_DIR / f"{source}.yaml"
    if bundled.is_file():
        return bundled
    names = ", ".join(sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml")))
    raise ConfigError(f"{source}: no such config file or bundled recipe (bundled: {names})")


def _merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` laid over it, section by section; lists are replaced whole."""
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _apply_override(data: dict, override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    node[leaf] = yaml.safe_load(value)


def _describe(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        location = ".".join(str(p) for p in problem["loc"])
        lines.append(f"  {location}: {problem['msg']}")
    return "\n".join(lines)


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line for a YAML syntax error (its own text spans several): the line and the problem."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}not valid YAML ({getattr(err, 'problem', None) or type(err).__name__})"
