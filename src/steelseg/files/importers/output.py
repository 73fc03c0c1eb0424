"""Writing a conversion as a mask folder: ``OUT/images/`` (hard links to the source images where
the file system allows, else copies; embedded images written out), ``OUT/masks/<stem>.png``
(single-channel label maps, 0 = background, k = class k), ``OUT/classes.json`` and
``OUT/converted.json``.

``converted.json`` says what ``OUT`` is a conversion of (the source, format, image folder,
``skip_bad``), a fingerprint of its inputs (path, size and modification time of every annotation
file and image read) and, once complete, the counts. It is written first (``"status":
"incomplete"``) and last (``"complete"``), so a killed conversion is never taken for a finished
one. A folder that is not empty is written into only when its ``converted.json`` names the same
source: the re-run rewrites every file (each atomically) and removes the images and masks of
the earlier run that this one did not write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from steelseg.errors import OutputExistsError, SteelsegError
from steelseg.files.atomic import atomic_open, atomic_path, leftovers, write_text
from steelseg.files.datasets import write_class_names
from steelseg.files.images import IMAGE_SUFFIXES, decode_gray, read_shape
from steelseg.files.importers.common import MARKER, ConvertError, Imported, Problems, Sample
from steelseg.files.skips import Skip
from steelseg.version import __version__

IMAGES, MASKS = "images", "masks"
RECIPE_KEYS = ("source", "format", "images_dir", "skip_bad")


@dataclass
class ConvertResult:
    """What a conversion wrote (or, ``reused``, found already written)."""

    out: Path
    source: Path
    format: str
    images: int
    clean: int
    class_names: list[str]
    annotations: int
    skipped: list[Skip] = field(default_factory=list)
    linked: int = 0
    reused: bool = False

    def summary(self) -> list[str]:
        """A few lines for the terminal: images, classes, annotations, skipped."""
        if self.reused:
            head = f"{self.out} is an up-to-date conversion of {self.source} ({self.format}): nothing written"
        else:
            head = (
                f"wrote {self.images} images ({self.clean} clean, {self.linked} hard-linked) to {self.out / IMAGES} "
                f"and their label masks to {self.out / MASKS}"
            )
        names = ", ".join(f"{i} {name}" for i, name in enumerate(self.class_names[:12], start=1))
        more = f", ... ({len(self.class_names)} in all)" if len(self.class_names) > 12 else ""
        return [
            head,
            f"classes: {names}{more} (in {self.out / 'classes.json'})",
            f"annotations: {self.annotations} ({self.format})",
            f"skipped: {len(self.skipped)}",
        ]


def recipe(src: Path, fmt: str, images: Path | None, skip_bad: bool) -> dict:
    """What makes two conversions the same one (besides their inputs' fingerprint)."""
    return {
        "source": str(src.resolve()),
        "format": fmt,
        "images_dir": str(images.resolve()) if images else None,
        "skip_bad": skip_bad,
    }


def check_out(out: Path, src: Path, images: Path | None) -> dict | None:
    """Refuse an output folder that would mix with the source or overwrite other work; return
    the ``converted.json`` of an earlier conversion of the same source, if ``out`` holds one."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    target = out.resolve()
    for folder in [src] * src.is_dir() + [images] * bool(images):
        folder = folder.resolve()
        if target == folder or folder in target.parents or target in folder.parents:
            raise ConvertError(f"{out}: overlaps the source folder {folder} (one holds the other); write outside it")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    marker = out / MARKER
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        detail = "" if not marker.exists() else f"; its {MARKER} is unreadable ({type(err).__name__})"
        raise OutputExistsError(
            f"{out}: not empty and not a steelseg conversion (no {MARKER}){detail}; choose an empty or new folder"
        ) from None
    if not isinstance(previous, dict) or previous.get("source") != str(src.resolve()):
        other = previous.get("source") if isinstance(previous, dict) else None
        raise OutputExistsError(f"{out}: holds a conversion of {other}, not of {src.resolve()}; choose another folder")
    return previous


def fingerprint(imported: Imported, settings: dict) -> str:
    """sha256 of the settings and of every input's path, size and modification time."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted({os.path.abspath(p) for p in imported.inputs}):
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def up_to_date(out: Path, previous: dict | None, settings: dict, digest: str) -> bool:
    """Whether ``previous`` (the ``converted.json`` of ``out``) is a complete conversion of the
    same inputs, its images still all there."""
    if not previous or previous.get("status") != "complete" or previous.get("fingerprint") != digest:
        return False
    if any(previous.get(key) != settings[key] for key in RECIPE_KEYS):
        return False
    folder = out / IMAGES
    return folder.is_dir() and sum(1 for p in folder.iterdir() if not p.name.startswith(".")) == previous.get("images")


def reused(out: Path, previous: dict) -> ConvertResult:
    """The result an up-to-date earlier conversion recorded."""
    return ConvertResult(
        out,
        Path(previous["source"]),
        previous["format"],
        previous["images"],
        previous["clean"],
        previous["classes"],
        previous["annotations"],
        [Skip(message) for message in previous.get("skipped", [])],
        reused=True,
    )


@dataclass
class _Tally:
    names: set[str] = field(default_factory=set)
    clean: int = 0
    annotations: int = 0
    linked: int = 0


def write(imported: Imported, out: Path, settings: dict, digest: str, progress: bool = False) -> ConvertResult:
    """Write ``imported`` into ``out`` as a mask folder (see the module docstring)."""
    problems = Problems(settings["skip_bad"])
    problems.skipped = list(imported.skipped)
    samples = _unique(imported.samples, problems)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARKER, json.dumps({**settings, "status": "incomplete"}, indent=2) + "\n")
    for folder in (out / IMAGES, out / MASKS):
        folder.mkdir(exist_ok=True)
        for leftover in leftovers(folder):
            leftover.unlink(missing_ok=True)
    tally = _Tally()
    for sample in tqdm(samples, desc="convert", unit="img", disable=not progress):
        try:
            _write_sample(sample, out, tally)
        except SteelsegError as err:
            problems.add(str(err), sample.name)
    if not tally.names:
        raise ConvertError(f"{settings['source']}: no image to write ({len(problems.skipped)} skipped as bad)")
    write_class_names(out, imported.class_names)
    _remove_stale(out, tally.names)
    result = ConvertResult(
        out=out,
        source=Path(settings["source"]),
        format=settings["format"],
        images=len(tally.names),
        clean=tally.clean,
        class_names=list(imported.class_names),
        annotations=tally.annotations,
        skipped=problems.skipped,
        linked=tally.linked,
    )
    counts = {
        "images": result.images,
        "clean": result.clean,
        "classes": result.class_names,
        "annotations": result.annotations,
        "skipped": [skip.message for skip in result.skipped],
    }
    marker = {**settings, "status": "complete", "fingerprint": digest, "steelseg": __version__, **counts}
    write_text(out / MARKER, json.dumps(marker, indent=2) + "\n")
    return result


def _unique(samples: list[Sample], problems: Problems) -> list[Sample]:
    """The samples whose masks would not share a file (masks are paired with images by stem)."""
    seen: dict[str, Sample] = {}
    for sample in samples:
        stem = Path(sample.name).stem
        if stem in seen:
            first = seen[stem]
            problems.add(
                f"{sample.where}: image {sample.name} would share the mask {stem}.png with {first.name} "
                f"(from {first.where}); rename one",
                sample.name,
            )
            continue
        seen[stem] = sample
    return list(seen.values())


def _write_sample(sample: Sample, out: Path, tally: _Tally) -> None:
    if Path(sample.name).suffix.lower() not in IMAGE_SUFFIXES:
        raise ConvertError(f"{sample.where}: image {sample.name}: steelseg reads {', '.join(IMAGE_SUFFIXES)} files")
    if isinstance(sample.image, bytes):
        shape = decode_gray(sample.image, name=f"{sample.where}: imageData").shape
    else:
        shape = read_shape(sample.image)
    if sample.shape is not None and tuple(sample.shape) != tuple(shape):
        image = "its imageData" if isinstance(sample.image, bytes) else sample.image
        raise ConvertError(
            f"{sample.where}: says the image is {sample.shape[0]}x{sample.shape[1]} (HxW); "
            f"{image} is {shape[0]}x{shape[1]}"
        )
    labels = sample.labels(tuple(shape))
    with atomic_path(out / MASKS / f"{Path(sample.name).stem}.png") as tmp:
        Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).save(tmp, format="PNG")
    tally.linked += _place(sample.image, out / IMAGES / sample.name)
    tally.names.add(sample.name)
    present = np.unique(labels)
    tally.clean += int(present.max()) == 0
    tally.annotations += sample.annotations if sample.annotations is not None else int((present > 0).sum())


def _place(image: Path | bytes, dest: Path) -> bool:
    """Put ``image`` at ``dest`` atomically: a hard link when the file system allows it (True),
    else a copy (the bytes of an embedded image are written)."""
    if isinstance(image, bytes):
        with atomic_open(dest, "wb") as handle:
            handle.write(image)
        return False
    if dest.exists() and os.path.samefile(image, dest):
        return True
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")  # a name leftovers() finds
    try:
        os.link(image, tmp)
    except OSError:
        with atomic_path(dest) as copy:
            shutil.copyfile(image, copy)
        return False
    try:
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _remove_stale(out: Path, names: set[str]) -> None:
    """Images and masks an earlier conversion of the same source wrote and this one did not."""
    stems = {Path(name).stem for name in names}
    for path in (out / IMAGES).iterdir():
        if path.is_file() and not path.name.startswith(".") and path.name not in names:
            path.unlink()
    for path in (out / MASKS).iterdir():
        if path.is_file() and path.suffix == ".png" and path.stem not in stems:
            path.unlink()
