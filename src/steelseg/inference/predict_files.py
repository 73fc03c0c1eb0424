"""A folder of images predicted into files: the submission CSV (and each image's class scores),
or, for classifiers alone, the class scores CSV.

Masks are predicted either sharded across the processes ``torchrun`` started (rank 0 writes), or
in one process resumable from ``OUT.parts/`` (``inference.resume``). With ``skip_bad`` the bad
images are logged and left out: the submission still lists every image, a skipped one with empty
masks, and the class scores leave it out; every image bad is an ``InputError``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from steelseg.errors import UsageError
from steelseg.inference.resume import CHUNK


@dataclass
class Written:
    """What a prediction wrote, in lines for people; ``skipped``: the note on left-out images
    (``--skip-bad``), a warning, or None when none were."""

    lines: list[str] = field(default_factory=list)
    skipped: str | None = None


def _stdout(line: str) -> None:
    print(line, flush=True)


def predict_files(
    models: list[str | os.PathLike],
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    load: dict | None = None,
    scores: str | os.PathLike | None = None,
    layout: str = "long",
    time_budget: float | None = None,
    drop_tta: bool = False,
    skip_bad: bool = False,
    chunk_size: int = CHUNK,
    progress: bool = True,
    say: Callable[[str], None] = _stdout,
    log: Callable[[str], None] | None = None,
    review: int | None = None,
    review_out: str | os.PathLike | None = None,
) -> Written:
    """Load ``models`` (runs, folders of runs, ensemble files; ``load``: the other keywords of
    ``Predictor.load``) and predict every image of ``images`` into ``out``; ``scores``: also
    write the class scores there. ``time_budget`` (minutes) with ``drop_tta``: see ``Budget``.
    ``say`` hears what predicts, before it starts (when ``progress``); ``log`` the notes of a
    resumed prediction (default stderr). ``review``: also write that many of the images the model
    is least sure of into ``review_out`` (``inference.review``). Outputs are checked before any
    image is predicted."""
    from steelseg.files.submission import check_output_file
    from steelseg.hardware import keep_freed_memory
    from steelseg.inference import sharding
    from steelseg.inference.predictor import Budget, Predictor
    from steelseg.inference.skipped import SkippedImages

    check_output_file(out, "--out")
    if scores:
        check_output_file(scores, "--scores")
    keep_freed_memory()  # far fewer page faults per forward: 1.5x faster on a 2-core CPU
    load = dict(load or {})
    shard = sharding.world()
    _check_review(review, review_out, shard)
    load["device"] = sharding.rank_device(load.get("device", "auto"))
    predictor = Predictor.load(models, **load)
    lead = shard is None or shard[0] == 0  # the process that talks and writes
    progress = progress and lead
    if progress:
        _announce(predictor, shard, bool(load.get("overrides") or load.get("postprocess")), say)
    job = _Job(
        predictor,
        images,
        out,
        scores or None,
        shard,
        progress,
        Budget(time_budget, drop_tta) if time_budget else None,
        SkippedImages() if skip_bad else None,
        _review(predictor, review, review_out),
    )
    if not predictor.has_masks:  # classifiers only: their class scores are the output
        return _predict_scores(job)
    return _predict_masks(job, layout, chunk_size, log)


@dataclass
class _Job:
    predictor: object
    images: str | os.PathLike  # as given: messages name them so
    out: str | os.PathLike
    scores: str | os.PathLike | None
    shard: tuple[int, int] | None
    progress: bool
    budget: object
    skip: object  # SkippedImages or None
    review: object = None  # inference.review.Review or None

    @property
    def them(self) -> str:
        return "it" if len(self.skip or ()) == 1 else "them"


def _announce(predictor, shard, post_options: bool, say: Callable[[str], None]) -> None:
    say(f"predicting with {predictor.describe()}" + (f", {shard[1]} processes" if shard else ""))
    for note in predictor.backend_notes():
        say(f"backend {note}")
    if predictor.has_masks and (len(predictor.members) > 1 or post_options):
        say("post-processing:\n" + predictor.postprocess.describe(predictor.class_names))


def _predict_scores(job: _Job) -> Written:
    if job.scores:
        raise UsageError("a classify run writes its class scores to --out; --scores is for runs with masks")
    if job.shard:
        raise UsageError("sharded prediction writes submissions; run classifiers in one process")
    image_ids, scores = job.predictor.score_folder(job.images, progress=job.progress, budget=job.budget, skip=job.skip)
    _refuse_all_skipped(job.images, image_ids, job.skip)
    written = Written([_write_scores(job.out, image_ids, scores, job.predictor)])
    written.skipped = _skipped(job.skip, len(image_ids) + len(job.skip or ()), f"{job.out} leaves {job.them} out")
    return written


def _predict_masks(job: _Job, layout: str, chunk_size: int, log) -> Written:
    """The submission (and the class scores): sharded, or in one process resumable from the work folder."""
    from steelseg.files.submission import with_every_image, write_submission

    scores: dict | None = {} if job.scores else None
    if job.shard:
        found = _sharded(job, scores)
        if found is None:
            return Written()  # not rank 0: its share went to rank 0
        predictions, image_ids, work = *found, None
    else:
        predictions, image_ids, work = _resumable(job, scores, chunk_size, log)
    predictor = job.predictor
    if job.skip:  # a submission lists every image: the skipped ones with empty masks
        predictions = with_every_image(predictions, image_ids, predictor.num_classes)
    rows = write_submission(job.out, predictions, predictor.num_classes, layout=layout)
    written = Written(
        [f"wrote {rows} rows ({len(predictions.image_ids)} images x {predictor.num_classes} classes) to {job.out}"]
    )
    if scores is not None:
        written.lines.append(_write_scores(job.scores, list(scores), np.stack(list(scores.values())), predictor))
    if job.review is not None:  # before the progress goes: a failed review resumes from it
        predicted = [image_id for image_id in predictions.image_ids if image_id not in (job.skip or ())]
        written.lines.append(job.review.write(predictions, job.images, predicted, job.progress))
    if work is not None:
        work.remove()  # the outputs are whole: the progress is no longer needed
    what = f"{job.out} gives {job.them} empty masks (no defect) so that it lists every image"
    if job.scores:
        what += f"; {job.scores} leaves {job.them} out"
    written.skipped = _skipped(job.skip, len(predictions.image_ids), what)
    return written


def _sharded(job: _Job, scores: dict | None):
    """(predictions, every image id) on rank 0; None on the others."""
    from steelseg.files.images import require_images
    from steelseg.inference import sharding

    predictions = sharding.predict_sharded(job.predictor, job.images, job.progress, scores, job.budget, job.skip)
    if predictions is None:
        return None
    _refuse_all_skipped(job.images, predictions.image_ids, job.skip)
    return predictions, [p.name for p in require_images(job.images)]


def _resumable(job: _Job, scores: dict | None, chunk_size: int, log):
    """(predictions, every image id, the work folder to remove once the outputs are written)."""
    from steelseg.inference import resume

    candidates, work = resume.predict_candidates(
        job.predictor,
        job.images,
        job.out,
        progress=job.progress,
        budget=job.budget,
        skip=job.skip,
        size=chunk_size,
        log=log,
        observe=job.review.record if job.review is not None else None,
    )
    if job.skip and not candidates:
        work.remove()  # every image is bad: nothing worth resuming from
    _refuse_all_skipped(job.images, candidates, job.skip)
    return job.predictor.finish(candidates, str(job.images), scores), work.image_ids, work


def _check_review(review: int | None, review_out, shard) -> None:
    """Before the models load: --review and --review-out together, in one process, into a new
    or empty folder."""
    if review is None and review_out is None:
        return
    if review_out is None:
        raise UsageError("--review N needs --review-out DIR, the new or empty folder to write the images into")
    if review is None:
        raise UsageError("--review-out needs --review N, the number of images to write there")
    if shard:
        raise UsageError("--review runs in one process: predict without torchrun to write a review")
    from steelseg.files.review_folder import check_review_folder

    check_review_folder(review_out)


def _review(predictor, review: int | None, review_out):
    if review is None:
        return None
    if not predictor.has_masks:
        raise UsageError(f"--review writes masks for people to correct; a {predictor.task} run gives no masks")
    from steelseg.inference.review import Review

    return Review(predictor, review, review_out)


def _refuse_all_skipped(images, predicted, skip) -> None:
    """--skip-bad with every image bad: an error, never an exit 0 with an empty output."""
    if skip and not predicted:
        from steelseg.inference.predictor import InputError

        raise InputError(
            f"every one of the {len(skip)} images of {images} was skipped as bad (each listed above); nothing written"
        )


def _skipped(skip, total: int, what: str) -> str | None:
    return f"{skip.summary(total)} (each listed above); {what}" if skip else None


def _write_scores(path, image_ids: list[str], scores: np.ndarray, predictor) -> str:
    from steelseg.core.screening import present
    from steelseg.files.class_scores import write_class_scores

    flags = present(scores, predictor.presence_threshold)
    rows = write_class_scores(path, image_ids, scores, flags)
    screened = int((~flags.any(axis=1)).sum())
    return (
        f"wrote {rows} class scores ({len(image_ids)} images x {predictor.num_classes} classes) to {path}; "
        f"{screened} of {len(image_ids)} images have no class above its label threshold"
    )
