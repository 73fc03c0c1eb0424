"""Pseudo-labels: unlabelled images a model is sure about, written as training data.

The rules that pick the images (``first``, ``tenth``, ``both``) are pure numpy in
``pseudo_rules``; a picked image's labels are its post-processed masks. The output folder has the
competition's training layout, so the next round trains on it with ``--set data.pseudo=[OUT]``:
its images join the training split only, never validation, where the model would be graded on
its own answers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from steelseg.core import rle
from steelseg.errors import OutputExistsError
from steelseg.files.annotations import Annotations
from steelseg.files.atomic import current_umask, write_text
from steelseg.files.datasets import write_class_names
from steelseg.files.images import list_images, require_images
from steelseg.files.submission import write_submission
from steelseg.inference.pseudo_rules import (
    BORDER,
    HI,
    HIGH,
    LO,
    LOW,
    MIN_CONFIDENT_SHARE,
    RULES,
    PseudoError,
    check_settings,
    confident_share,
    first_place_rule,
    tenth_place_rule,
)

if TYPE_CHECKING:
    from steelseg.inference.skipped import SkippedImages

INFO_FILE = "pseudo.json"
CHUNK = 256  # images per resumable part file (``inference.resume.CHUNK``; imported there only when predicting)


# --- a folder of images -> a pseudo-labelled dataset ----------------------------------------


@dataclass(frozen=True)
class _Candidate:
    path: Path
    encoded: list[str]  # one run-length string per class: bounded memory, not probabilities


@dataclass(frozen=True)
class _Verdict:
    """One image judged: whether it passed each rule in use, and its masks run-length encoded
    (None unless it passed them all)."""

    passed: tuple[bool, ...]
    encoded: list[str] | None


@dataclass
class PseudoResult:
    out: Path
    source: Path
    rule: str
    class_names: list[str]
    images: int  # seen
    passed: dict[str, int]  # rule name ("first", "tenth") -> images that passed it
    selected: int  # passed the rule (both rules for "both")
    kept: int  # after ranking and max_images
    class_images: list[int] = field(default_factory=list)  # kept images that hold each class
    ranked: bool = False
    skipped: int = 0  # bad images left out (--skip-bad), not among ``images``

    def report(self) -> str:
        passed = ", ".join(f"{count} passed rule {name}" for name, count in self.passed.items())
        lines = [f"{self.selected} of {self.images} images of {self.source} selected ({passed})"]
        if self.skipped:
            lines.append(
                f"skipped {self.skipped} bad image{'s' if self.skipped != 1 else ''} of {self.images + self.skipped} "
                "(each listed above)"
            )
        if self.kept < self.selected or self.ranked:
            order = "the most test-like" if self.ranked else "the first by name"
            lines.append(f"kept {self.kept}: {order}")
        counts = ", ".join(f"{name} {n}" for name, n in zip(self.class_names, self.class_images))
        lines.append(f"wrote {self.kept} pseudo-labelled images to {self.out} (images with each class: {counts})")
        lines.append(f"train on them (training split only) with --set data.pseudo=[{self.out}]")
        return "\n".join(lines)


def pseudo_labels(
    models: list[str | os.PathLike],
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    load: dict | None = None,
    rank_file: str | os.PathLike | None = None,
    skip_bad: bool = False,
    **settings,
) -> PseudoResult:
    """``run_pseudo`` with the Predictor of ``models`` (runs, folders of runs, ensemble files;
    ``load``: the other keywords of ``Predictor.load``), ranked by the test likeness of
    ``rank_file`` (``adversarial.csv``; a bad file fails before the model loads); ``skip_bad``:
    log bad images and leave them out. ``settings``: the other keywords of ``run_pseudo``."""
    from steelseg.files.likeness import read_test_likeness
    from steelseg.hardware import keep_freed_memory
    from steelseg.inference.predictor import Predictor
    from steelseg.inference.skipped import SkippedImages

    rank = read_test_likeness(rank_file) if rank_file else None
    keep_freed_memory()  # as predict: fewer page faults per forward
    predictor = Predictor.load(models, **(load or {}))
    made_with = {
        "model": [str(Path(m).resolve()) for m in models],
        "rank_file": str(Path(rank_file).resolve()) if rank_file else None,
    }
    skip = SkippedImages() if skip_bad else None
    return run_pseudo(predictor, images, out, rank=rank, made_with=made_with, skip=skip, **settings)


def run_pseudo(
    predictor,
    images: str | os.PathLike,
    out: str | os.PathLike,
    rule: str = "first",
    hi: float = HI,
    lo: float = LO,
    low: float = LOW,
    high: float = HIGH,
    border: int = BORDER,
    min_share: float = MIN_CONFIDENT_SHARE,
    rank: dict[str, float] | None = None,
    max_images: int | None = None,
    progress: bool = True,
    made_with: dict | None = None,
    skip: SkippedImages | None = None,
    chunk_size: int = CHUNK,
    log=None,
) -> PseudoResult:
    """Predict every image of ``images`` with ``predictor`` (a ``Predictor``: ``iter_folder``,
    ``masks``, ``class_names``, ``batch_size``, ``fingerprint``), select those that pass
    ``rule``, order them by ``rank`` (test likeness by image id, highest first; else by name),
    keep at most ``max_images``, and write ``out``: ``train_images/`` (copies), ``train.csv``
    (non-empty masks, long layout), ``classes.json`` and ``pseudo.json`` (how it was made,
    ``made_with`` included). ``out`` appears whole or not at all; an existing non-empty ``out``
    is an OutputExistsError.

    ``skip``: bad images are logged there and left out (``Predictor.iter_folder``); every image
    bad is a PseudoError. Each image's verdict is kept in ``out.parts/``, ``chunk_size`` images a
    file, until ``out`` is written: a killed run started again with the same arguments judges
    only the rest (``inference.resume``; ``log`` receives its notes, default stderr)."""
    settings = dict(hi=hi, lo=lo, low=low, high=high, border=border, min_share=min_share)
    uses = _check_request(predictor, Path(images), Path(out), rule, settings, rank, max_images)
    images, out = Path(images), Path(out)
    paths = require_images(images)
    work = _work_folder(predictor, out, paths, rule, uses, settings, chunk_size, log)
    verdicts = work.run(lambda todo: _judge(predictor, images, todo, uses, settings, progress, skip), skip)
    candidates, seen, passed = _selected(verdicts, paths, uses)
    if not candidates:
        work.remove()  # finished: a run with other settings starts afresh anyway
        raise _nothing_selected(len(paths), seen, images, out, rule)
    if rank is not None:
        candidates.sort(key=lambda c: -rank[c.path.name])  # stable: ties stay in name order
    kept = candidates[:max_images]
    result = _result(out, images, rule, list(predictor.class_names), seen, passed, len(candidates), kept, rank, skip)
    _write(out, kept, result.class_names, _info(result, _thresholds(uses, **settings), max_images, made_with))
    work.remove()
    return result


def _result(out, images, rule, class_names, seen, passed, selected, kept, rank, skip) -> PseudoResult:
    return PseudoResult(
        out=out,
        source=images,
        rule=rule,
        class_names=class_names,
        images=seen,
        passed=passed,
        selected=selected,
        kept=len(kept),
        ranked=rank is not None,
        class_images=[sum(bool(c.encoded[i]) for c in kept) for i in range(len(class_names))],
        skipped=len(skip or ()),
    )


def _nothing_selected(images_found: int, seen: int, images: Path, out: Path, rule: str) -> PseudoError:
    if not seen:
        return PseudoError(
            f"every one of the {images_found} images of {images} was skipped as bad (each listed above); "
            f"nothing written to {out}"
        )
    return PseudoError(f"none of the {seen} images of {images} passed rule {rule}; nothing written to {out}")


def _check_request(predictor, images: Path, out: Path, rule: str, settings: dict, rank, max_images) -> list[str]:
    """Everything that can be wrong before predicting, not after; the rules in use."""
    if rule not in RULES:
        raise PseudoError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if max_images is not None and max_images < 1:
        raise PseudoError(f"max images must be at least 1, got {max_images}")
    check_settings(**settings)
    _check_out(out)
    if rank is not None:
        _check_ranked(images, rank)
    if not getattr(predictor, "has_masks", True):
        raise PseudoError(
            f"pseudo-labels need masks: a {getattr(predictor, 'task', 'classify')} run gives class scores only"
        )
    return ["first", "tenth"] if rule == "both" else [rule]


def _work_folder(predictor, out: Path, paths: list[Path], rule: str, uses, settings: dict, chunk_size: int, log):
    """The verdicts' resumable work folder ``out.parts/``, for this model, these images and settings."""
    from steelseg.inference import resume

    manifest = {
        "command": "pseudo",
        **predictor.fingerprint(),
        "rule": rule,
        "thresholds": _thresholds(uses, **settings),
    }
    return resume.WorkFolder(
        resume.parts_folder(out),
        manifest,
        paths,
        resume.chunk_size(chunk_size, predictor.batch_size),
        _VerdictCodec(len(uses), len(predictor.class_names)),
        log,
    )


def _info(result: PseudoResult, thresholds: dict, max_images: int | None, made_with: dict | None) -> dict:
    """``pseudo.json``: how the pseudo-labels were made."""
    return {
        "train_only": True,  # data.pseudo adds these images to the training split, never to validation
        "rule": result.rule,
        "thresholds": thresholds,
        "source": str(result.source.resolve()),
        "class_names": result.class_names,
        "counts": {
            "images": result.images,
            "passed": result.passed,
            "selected": result.selected,
            "kept": result.kept,
            "class_images": dict(zip(result.class_names, result.class_images)),
            "skipped_bad": result.skipped,
        },
        "ranked_by_test_likeness": result.ranked,
        "max_images": max_images,
        **(made_with or {}),
    }


def _judge(predictor, images: Path, paths: list[Path], uses: list[str], settings: dict, progress: bool, skip):
    """Yield (image id, ``_Verdict``) for ``paths``, in order: the masks of an image that passes
    every rule in ``uses`` encoded at once, so memory stays bounded."""
    for path, _, outputs in predictor.iter_folder(images, progress, paths=paths, skip=skip):
        if outputs.pixels is None:
            raise PseudoError("pseudo-labels need masks: this model gives class scores only")
        masks = predictor.masks(outputs)
        verdicts = _verdicts(uses, outputs, masks, **settings)
        selected = all(verdicts.values())
        yield (
            path.name,
            _Verdict(tuple(verdicts[name] for name in uses), [rle.encode(m) for m in masks] if selected else None),
        )


def _selected(
    verdicts: dict[str, _Verdict], paths: list[Path], uses: list[str]
) -> tuple[list[_Candidate], int, dict[str, int]]:
    """The images that passed every rule, in file order; how many were judged; how many passed each rule."""
    where = {p.name: p for p in paths}
    candidates = [_Candidate(where[name], v.encoded) for name, v in verdicts.items() if v.encoded is not None]
    passed = {name: sum(v.passed[i] for v in verdicts.values()) for i, name in enumerate(uses)}
    return candidates, len(verdicts), passed


class _VerdictCodec:
    """A chunk's verdicts as plain arrays for ``resume.WorkFolder``."""

    def __init__(self, rules: int, num_classes: int):
        self.rules, self.num_classes = rules, num_classes

    def encode(self, records: dict[str, _Verdict]) -> dict[str, np.ndarray]:
        from steelseg.inference import resume

        verdicts = list(records.values())
        rows = [v.encoded if v.encoded is not None else [""] * self.num_classes for v in verdicts]
        return {
            "image_ids": np.array(list(records), dtype=str),
            "passed": np.array([v.passed for v in verdicts], dtype=bool).reshape(len(verdicts), self.rules),
            "selected": np.array([v.encoded is not None for v in verdicts], dtype=bool),
            **resume.encode_strings(rows, self.num_classes),
        }

    def decode(self, arrays: dict[str, np.ndarray]) -> dict[str, _Verdict]:
        from steelseg.inference import resume

        image_ids = arrays["image_ids"].tolist()
        encoded = resume.decode_strings(arrays, len(image_ids), self.num_classes)
        passed, selected = arrays["passed"], arrays["selected"]
        if passed.shape != (len(image_ids), self.rules) or selected.shape != (len(image_ids),):
            raise ValueError(f"verdicts of shape {passed.shape} for {len(image_ids)} images and {self.rules} rules")
        return {
            image_id: _Verdict(tuple(bool(b) for b in passed[i]), encoded[i] if selected[i] else None)
            for i, image_id in enumerate(image_ids)
        }


def _verdicts(uses, outputs, masks, hi, lo, low, high, border, min_share) -> dict[str, bool]:
    verdicts = {}
    if "first" in uses:
        present = masks.reshape(len(masks), -1).any(axis=1)
        verdicts["first"] = bool(first_place_rule(outputs.scores[None], present[None], hi, lo)[0])
    if "tenth" in uses:
        shares = confident_share(outputs.pixels, low, high, border)
        verdicts["tenth"] = bool(tenth_place_rule(shares[None], min_share)[0])
    return verdicts


def _thresholds(uses, hi, lo, low, high, border, min_share) -> dict:
    thresholds = {}
    if "first" in uses:
        thresholds.update(hi=hi, lo=lo)
    if "tenth" in uses:
        thresholds.update(low=low, high=high, border=border, min_confident_share=min_share)
    return thresholds


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"{out} exists and is not an empty folder; choose another output folder")


def _check_ranked(images: Path, rank: dict[str, float]) -> None:
    """Every image must have a test likeness: found out now, not after predicting them all."""
    missing = [p.name for p in list_images(images) if p.name not in rank]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PseudoError(f"image {missing[0]} of {images} has no test likeness in the ranking{more}")


def _write(out: Path, kept: list[_Candidate], class_names: list[str], info: dict) -> None:
    """Fill a hidden folder beside ``out``, then rename it to ``out``: a crash leaves no half
    dataset that a later training would take for a whole one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "train_images").mkdir()
        annotations = Annotations(source=str(out / "train.csv"))
        for candidate in kept:
            shutil.copyfile(candidate.path, tmp / "train_images" / candidate.path.name)
            for class_id, encoded in enumerate(candidate.encoded, start=1):
                annotations.add(candidate.path.name, class_id, encoded)
        # Like the real train.csv: non-empty masks only; an image without a row is clean.
        write_submission(tmp / "train.csv", annotations, len(class_names), include_empty=False)
        write_class_names(tmp, class_names)
        write_text(tmp / INFO_FILE, json.dumps(info, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide it from other users
        try:
            os.replace(tmp, out)  # also over an empty folder
        except OSError:
            raise OutputExistsError(
                f"{out} appeared while the pseudo-labels were made; choose another output folder"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
