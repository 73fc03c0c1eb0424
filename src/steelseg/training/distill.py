"""Knowledge distillation: a student run trained on a teacher's probabilities and the true masks.

The teacher is a ``Predictor`` loaded as ``predict`` loads it (runs, folders of runs, ensemble
files, exported models; their TTA), never another path from network to probabilities. Its soft
targets on the run's training images and on the unlabelled images are computed once into
``RUN/teacher/{labelled,unlabelled}`` (``inference.teacher_cache``: float16 chunks, checksummed,
resumable); the student then trains in the usual loop (``fit._fit``) on items that carry them
(``distill_data``) with the loss of ``distill_loss``. ``config.distill`` says all this, so the
run is a normal run directory: ``train --resume`` continues it, ``predict`` takes it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from steelseg.config import Config, DistillConfig, load_config
from steelseg.errors import SteelsegError
from steelseg.files import rundir
from steelseg.files.datasets import SegmentationDataset
from steelseg.files.images import require_images
from steelseg.training.data import loaders

LABELLED, UNLABELLED = "labelled", "unlabelled"  # the cache's two folders under RUN/teacher


class DistillError(SteelsegError, ValueError):
    """A teacher that cannot teach this student on this data."""


def distill_config(
    config: str | os.PathLike | None,
    overrides: list[str],
    teachers: list[str | os.PathLike],
    data: str | os.PathLike,
    unlabelled: str | os.PathLike | None = None,
    **teacher_options,
) -> Config:
    """The student's config (a recipe or YAML file with ``overrides``, on ``data``) with its
    ``distill`` section: the teacher sources (absolute), the unlabelled folder and the options of
    ``DistillConfig`` (alpha, temperature, tta, backend, device, batch_size) given or set with
    ``--set distill.KEY=VALUE``."""
    if not teachers:
        raise DistillError("distill needs at least one TEACHER (a run, a folder of runs, an ensemble file or .onnx)")
    for teacher in teachers:
        if not Path(teacher).exists():
            raise DistillError(f"{teacher}: no such teacher (a run, a folder of runs, an ensemble file or .onnx)")
    if unlabelled:
        require_images(unlabelled)  # a missing or empty folder fails now, before any run folder
    base = load_config(config, [*overrides, f"data.root={data}"])
    settings = {**(base.distill.model_dump() if base.distill else {}), **teacher_options}
    settings["teacher"] = [str(Path(t).absolute()) for t in teachers]
    settings["unlabelled"] = str(Path(unlabelled).absolute()) if unlabelled else None
    return base.model_copy(update={"distill": DistillConfig.model_validate(settings)})


def load_teacher(distill: DistillConfig):
    """The teacher as ``predict`` loads it."""
    from steelseg.inference.predictor import Predictor

    return Predictor.load(
        distill.teacher, backend=distill.backend, device=distill.device, batch_size=distill.batch_size, tta=distill.tta
    )


def check_teacher(teacher, config: Config) -> None:
    """One line when the teacher predicts other classes than the student learns, or cannot give
    the student's pixel outputs."""
    names = config.output_class_names
    where = ", ".join(config.distill.teacher)
    if list(teacher.class_names) != list(names):
        raise DistillError(
            f"{where}: the teacher predicts classes {teacher.class_names}, the data ({config.data.root}) has {names}"
        )
    if not teacher.has_masks and config.model.task != "classify":
        raise DistillError(
            f"{where}: the teacher gives class scores only; a {config.model.task} student needs pixel "
            "probabilities (choose a classify student, e.g. --config first_place_cls_resnet34)"
        )


def teacher_targets(config: Config, train_set: SegmentationDataset, run_dir: Path, progress: bool = True):
    """The ``DistillSource`` of the run: the training images and the unlabelled ones with the
    teacher's targets, computed where ``run_dir/teacher`` does not hold them yet."""
    from steelseg.inference.teacher_cache import cache_teacher
    from steelseg.training.distill_data import DistillSource

    distill = config.distill
    if not distill.teacher:
        raise DistillError("distill.teacher lists no teacher: distil with `steelseg distill TEACHER... DATA`")
    unlabelled = require_images(distill.unlabelled) if distill.unlabelled else []
    if not isinstance(train_set, SegmentationDataset):
        raise DistillError("distill takes unlabelled images (--unlabelled), not data.pseudo")
    teacher = load_teacher(distill)
    check_teacher(teacher, config)
    folder = Path(run_dir) / rundir.TEACHER_DIR
    say = _say if progress else (lambda line: None)
    say(f"teacher: {teacher.describe()}; its probabilities are kept in {folder}")
    labelled = cache_teacher(teacher, train_set.image_paths, folder / LABELLED, progress=progress, log=_say)
    extra = cache_teacher(teacher, unlabelled, folder / UNLABELLED, progress=progress, log=_say) if unlabelled else None
    return DistillSource(train_set, labelled, unlabelled, extra)


def distill_loaders(config: Config, train_set, val_set, run_dir: Path, progress: bool = True):
    """``data.loaders`` of a distilled run: training items with the teacher's targets."""
    from steelseg.training.distill_data import DistillTorchData, PadSoft

    source = teacher_targets(config, train_set, run_dir, progress)
    black = -config.model.input_mean / config.model.input_std
    return loaders(config, source, val_set, DistillTorchData, PadSoft(black))


def _say(line: str) -> None:
    print(f"steelseg distill: {line}", file=sys.stderr, flush=True)
