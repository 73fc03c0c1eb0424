"""Pseudo-labels: unlabelled images a model is sure about, written as training data.

Two rules pick the images, both pure numpy (below); a picked image's labels are its
post-processed masks. The output folder has the competition's training layout, so the next
round trains on it with ``--set data.pseudo=[OUT]``: its images join the training split only,
never validation, where the model would be graded on its own answers.

- ``first``: 1st place. Every class score is above ``hi`` (0.95) or below ``lo`` (0.05), and
  the masks agree: a class scored above ``hi`` has a mask, one scored below ``lo`` has none
  (1,135 of 5,506 test images in their second round).
- ``tenth``: 10th place. Nearly every pixel of every class is confident (probability below
  ``low`` 0.2 or above ``high`` 0.8), where the uncertain rim that every predicted defect has
  (label borders are arbitrary) is forgiven: confident defect regions are grown by ``border``
  px before counting.
- ``both``: an image must pass both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from steelseg.core import rle
from steelseg.errors import OutputExistsError, SteelsegError
from steelseg.files.annotations import Annotations
from steelseg.files.atomic import current_umask, write_text
from steelseg.files.datasets import write_class_names
from steelseg.files.images import list_images, require_images
from steelseg.files.submission import write_submission

if TYPE_CHECKING:
    from steelseg.inference.skipped import SkippedImages

RULES = ("first", "tenth", "both")
HI, LO = 0.95, 0.05  # 1st place's class-score thresholds
LOW, HIGH = 0.2, 0.8  # 10th place's confident-pixel thresholds
BORDER = 3  # px of uncertain rim forgiven around a confident defect region
# At least this share of each class's pixels must be confident: on a 256x1600 strip 0.995
# leaves 2,048 uncertain pixels, about the smallest defect the 1st place kept for class 4
# (min area 2,000 px). An uncertain patch as large as a defect worth keeping is a real doubt.
MIN_CONFIDENT_SHARE = 0.995
INFO_FILE = "pseudo.json"
CHUNK = 256  # images per resumable part file (``inference.resume.CHUNK``; imported there only when predicting)


class PseudoError(SteelsegError, ValueError):
    """Pseudo-labels that cannot be made: a model without masks, bad thresholds, an image
    missing from the ranking."""


# --- the rules (pure numpy) ---------------------------------------------------------------


def first_place_rule(scores: np.ndarray, mask_present: np.ndarray, hi: float = HI, lo: float = LO) -> np.ndarray:
    """(N, C) float class scores and (N, C) bool "the post-processed mask is not empty" ->
    (N,) bool: every class is sure (score > ``hi`` or < ``lo``; the bounds themselves are not)
    and its mask agrees (present above ``hi``, absent below ``lo``)."""
    _check_pair("hi", hi, "lo", lo)
    scores = np.asarray(scores, dtype=np.float64)
    mask_present = np.asarray(mask_present, dtype=bool)
    if scores.ndim != 2 or scores.shape != mask_present.shape:
        raise ValueError(
            f"expected (N, C) scores and mask presence of one shape, got {scores.shape} and {mask_present.shape}"
        )
    sure_defect, sure_clean = scores > hi, scores < lo
    agrees = np.where(sure_defect, mask_present, sure_clean & ~mask_present)
    return agrees.all(axis=1)


def confident_share(pixels: np.ndarray, low: float = LOW, high: float = HIGH, border: int = BORDER) -> np.ndarray:
    """(C, H, W) float probabilities -> (C,) float64: each class's share of confident pixels.

    A pixel is confident below ``low`` or above ``high``, or when it lies within ``border`` px
    (a square: rows, columns and diagonals) of a pixel above ``high``. Only defect regions are
    grown: growing the confident background as well would forgive every uncertain structure
    thinner than 2 x ``border`` px, such as a faint crack nobody is sure of."""
    _check_pair("high", high, "low", low)
    _check_border(border)
    pixels = np.asarray(pixels)
    if pixels.ndim != 3:
        raise ValueError(f"expected (C, H, W) probabilities, got shape {pixels.shape}")
    sure_defect = pixels > high
    confident = sure_defect | (pixels < low)
    if border > 0:
        import cv2  # here, not at the top: the CLI imports this module to build its parser

        kernel = np.ones((2 * border + 1, 2 * border + 1), np.uint8)
        for c in range(len(pixels)):
            confident[c] |= cv2.dilate(sure_defect[c].view(np.uint8), kernel).view(bool)
    return confident.reshape(len(pixels), -1).mean(axis=1, dtype=np.float64)


def tenth_place_rule(shares: np.ndarray, min_share: float = MIN_CONFIDENT_SHARE) -> np.ndarray:
    """(N, C) ``confident_share`` of each image -> (N,) bool: every class at least ``min_share``."""
    _check_share(min_share)
    shares = np.asarray(shares, dtype=np.float64)
    if shares.ndim != 2:
        raise ValueError(f"expected (N, C) confident shares, got shape {shares.shape}")
    return (shares >= min_share).all(axis=1)


def _check_pair(upper_name: str, upper: float, lower_name: str, lower: float) -> None:
    if not 0 <= lower < upper <= 1:
        raise PseudoError(
            f"need 0 <= {lower_name} < {upper_name} <= 1, got {lower_name} {lower} and {upper_name} {upper}"
        )


def _check_border(border: int) -> None:
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        raise PseudoError(f"border must be a whole number of px >= 0, got {border!r}")


def _check_share(min_share: float) -> None:
    if not 0 < min_share <= 1:
        raise PseudoError(f"the confident share must be in (0, 1], got {min_share}")


def _check_settings(hi: float, lo: float, low: float, high: float, border: int, min_share: float) -> None:
    _check_pair("hi", hi, "lo", lo)
    _check_pair("high", high, "low", low)
    _check_border(border)
    _check_share(min_share)


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
    if rule not in RULES:
        raise PseudoError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if max_images is not None and max_images < 1:
        raise PseudoError(f"max images must be at least 1, got {max_images}")
    uses = ["first", "tenth"] if rule == "both" else [rule]
    _check_settings(hi, lo, low, high, border, min_share)  # before predicting, not after
    images, out = Path(images), Path(out)
    _check_out(out)
    if rank is not None:
        _check_ranked(images, rank)
    if not getattr(predictor, "has_masks", True):
        raise PseudoError(
            f"pseudo-labels need masks: a {getattr(predictor, 'task', 'classify')} run gives class scores only"
        )
    settings = dict(hi=hi, lo=lo, low=low, high=high, border=border, min_share=min_share)
    from steelseg.inference import resume

    paths = require_images(images)
    manifest = {
        "command": "pseudo",
        **predictor.fingerprint(),
        "rule": rule,
        "thresholds": _thresholds(uses, **settings),
    }
    work = resume.WorkFolder(
        resume.parts_folder(out),
        manifest,
        paths,
        resume.chunk_size(chunk_size, predictor.batch_size),
        _VerdictCodec(len(uses), len(predictor.class_names)),
        log,
    )
    verdicts = work.run(lambda todo: _judge(predictor, images, todo, uses, settings, progress, skip), skip)
    candidates, seen, passed = _selected(verdicts, paths, uses)
    if not candidates:
        work.remove()  # finished: a run with other settings starts afresh anyway
        if not seen:
            raise PseudoError(
                f"every one of the {len(paths)} images of {images} was skipped as bad (each listed above); "
                f"nothing written to {out}"
            )
        raise PseudoError(f"none of the {seen} images of {images} passed rule {rule}; nothing written to {out}")
    if rank is not None:
        candidates.sort(key=lambda c: -rank[c.path.name])  # stable: ties stay in name order
    kept = candidates[:max_images]
    class_names = list(predictor.class_names)
    result = PseudoResult(
        out=out,
        source=images,
        rule=rule,
        class_names=class_names,
        images=seen,
        passed=passed,
        selected=len(candidates),
        kept=len(kept),
        ranked=rank is not None,
        class_images=[sum(bool(c.encoded[i]) for c in kept) for i in range(len(class_names))],
        skipped=len(skip or ()),
    )
    info = {
        "train_only": True,  # data.pseudo adds these images to the training split, never to validation
        "rule": rule,
        "thresholds": _thresholds(uses, **settings),
        "source": str(images.resolve()),
        "class_names": class_names,
        "counts": {
            "images": seen,
            "passed": passed,
            "selected": len(candidates),
            "kept": len(kept),
            "class_images": dict(zip(class_names, result.class_images)),
            "skipped_bad": len(skip or ()),
        },
        "ranked_by_test_likeness": rank is not None,
        "max_images": max_images,
        **(made_with or {}),
    }
    _write(out, kept, class_names, info)
    work.remove()
    return result


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


# --- the command ----------------------------------------------------------------------------


def add_parser(commands) -> None:
    """Register ``steelseg pseudo`` on the CLI's sub-command parsers."""
    p = commands.add_parser("pseudo", help="pseudo-labels: the images a model is sure about, as a training dataset")
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="the model that labels the images: run directories, folders of runs or an ensemble .yaml, as for predict",
    )
    p.add_argument("images", help="folder of unlabelled images (e.g. the test set)")
    p.add_argument("--out", required=True, help="folder to create: train_images/, train.csv, classes.json, pseudo.json")
    p.add_argument(
        "--rule",
        choices=RULES,
        default="first",
        help="first (default): every class score > --hi or < --lo and the masks agree; tenth: the "
        "share of confident pixels is at least --confident-share; both",
    )
    p.add_argument(
        "--hi", type=float, default=HI, help=f"rule first: a class is surely present above this (default {HI})"
    )
    p.add_argument(
        "--lo", type=float, default=LO, help=f"rule first: a class is surely absent below this (default {LO})"
    )
    p.add_argument(
        "--confident-share",
        type=float,
        default=MIN_CONFIDENT_SHARE,
        help=f"rule tenth: least share of confident pixels in every class (default {MIN_CONFIDENT_SHARE})",
    )
    p.add_argument(
        "--rank",
        metavar="ADVERSARIAL_CSV",
        help="order the selected images by their test likeness (adversarial.csv of `steelseg adversarial`: "
        "ImageId,Set,TestLikeness), most test-like first",
    )
    p.add_argument("--max", type=int, dest="max_images", help="keep at most this many of the selected images")
    p.add_argument(
        "--tta",
        choices=["none", "hflip", "vflip", "both"],
        help="flip TTA for every member (default: each member's own)",
    )
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "torch-amp", "onnx"])
    p.add_argument("--device", default="auto", help="auto (default: a GPU if visible), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images that cannot be read or are of a size the model is not trusted on, each printed "
        "(skipped FILE: reason) with the count at the end, instead of stopping at the first",
    )
    p.add_argument("--chunk-size", type=int, default=CHUNK, help=argparse.SUPPRESS)  # images per resumable part
    p.epilog = (
        "A killed run resumes: each image's verdict is kept in OUT.parts/ (one file per finished 256 images) and "
        "the same command started again judges only the rest; the folder is removed once OUT is written. "
        "Another model or other images or settings are refused: delete OUT.parts/ to start afresh."
    )
    p.set_defaults(run=_run)


def _predictor(args):
    """The model that labels: a run or an ensemble, as ``predict`` loads it."""
    from steelseg.hardware import keep_freed_memory
    from steelseg.inference.predictor import Predictor

    keep_freed_memory()  # as predict: fewer page faults per forward
    return Predictor.load(
        args.models, backend=args.backend, device=args.device, batch_size=args.batch_size, tta=args.tta
    )


def _run(args) -> None:
    from steelseg.files.likeness import read_test_likeness
    from steelseg.inference.skipped import SkippedImages

    rank = read_test_likeness(args.rank) if args.rank else None  # a bad file fails before the model loads
    predictor = _predictor(args)
    made_with = {
        "model": [str(Path(m).resolve()) for m in args.models],
        "rank_file": str(Path(args.rank).resolve()) if args.rank else None,
    }
    result = run_pseudo(
        predictor,
        args.images,
        args.out,
        rule=args.rule,
        hi=args.hi,
        lo=args.lo,
        min_share=args.confident_share,
        rank=rank,
        max_images=args.max_images,
        progress=not getattr(args, "quiet", False),
        made_with=made_with,
        skip=SkippedImages() if args.skip_bad else None,
        chunk_size=args.chunk_size,
        log=lambda line: print(f"steelseg pseudo: {line}", file=sys.stderr, flush=True),
    )
    print(result.report())
