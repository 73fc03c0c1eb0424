"""``predict`` and ``pseudo`` on a large folder, resumable: finished chunks kept beside the output.

``steelseg predict MODEL IMAGES --out sub.csv`` keeps its progress in ``sub.csv.parts/``
(``pseudo --out DIR``: ``DIR.parts/``):

- ``manifest.json``: what is being computed: the predictor's ``fingerprint`` (every model file
  with its SHA-256, backends, TTA views, post-processing, windows, batch size), the command's
  own settings, the chunk size and the image list (names, sizes and modification times);
- ``chunk-000003-<sha256 prefix>.npz``: one file per finished chunk of ``CHUNK`` images (a
  multiple of the batch size, so every batch is the one an uninterrupted run makes), holding
  each image's record (``predict``: its ``Candidate``, before the gates) and the images of the
  chunk that ``--skip-bad`` left out. Plain arrays only (loaded with ``allow_pickle=False``),
  written atomically, named by a checksum of their bytes.

Started again with the same command after a kill, a crash or an error, only the chunks without
a valid file are computed; a part file that fails its checksum or does not load is reported in
a warning and its chunk computed again. A manifest that differs (another model, other weights,
other images, other settings) is refused in one line: delete the folder to start afresh.
``predict`` gates all images at the end (``Predictor.finish``), over the stored and the new
candidates alike, so its submission equals an uninterrupted run's byte for byte. The folder is
removed once the output is written. Sharded prediction (torchrun) does not resume.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from steelseg.errors import SteelsegError
from steelseg.files.atomic import atomic_open, leftovers, write_text

# decode_strings, encode_strings: pseudo's records use them through this module too
from steelseg.inference.candidates import CandidateCodec, decode_strings, encode_strings  # noqa: F401
from steelseg.inference.skipped import SkippedImages

CHUNK = 256  # images per part file: a kill loses at most this many images' work
PARTS_SUFFIX = ".parts"
MANIFEST = "manifest.json"
FORMAT = 1
_PART = re.compile(r"chunk-(?P<index>\d{6})-(?P<sha>[0-9a-f]{16})\.npz")

R = TypeVar("R")


class ResumeError(SteelsegError, ValueError):
    """A work folder left by another computation (other models, images or settings)."""


class Codec(Protocol[R]):
    """How one chunk's records become plain arrays and back."""

    def encode(self, records: dict[str, R]) -> dict[str, np.ndarray]: ...

    def decode(self, arrays: dict[str, np.ndarray]) -> dict[str, R]: ...


def parts_folder(out: str | os.PathLike) -> Path:
    """The work folder of the output ``out``: ``out`` + ``.parts``, beside it."""
    out = Path(out)
    return out.with_name(out.name + PARTS_SUFFIX)


def chunk_size(requested: int, batch_size: int) -> int:
    """``requested`` rounded up to a multiple of ``batch_size``: chunks then start on batch
    boundaries, and a resumed run makes an uninterrupted run's batches."""
    if requested < 1:
        raise ResumeError(f"chunk size must be at least 1, got {requested}")
    return -(-requested // batch_size) * batch_size


def image_list(paths: list[Path]) -> dict:
    """The image list as the manifest records it: count and a SHA-256 of names, sizes and
    modification times (an image replaced under the same name changes it)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return {"count": len(paths), "sha256": digest.hexdigest()}  # not the folder: the same images moved are the same


class WorkFolder(Generic[R]):
    """The chunks of one computation over ``paths``, kept in ``folder`` (module docstring)."""

    def __init__(
        self,
        folder: Path,
        manifest: dict,
        paths: list[Path],
        size: int,
        codec: Codec[R],
        log: Callable[[str], None] | None = None,
    ):
        self.folder = folder
        manifest = {"format": FORMAT, **manifest, "chunk_size": size, "images": image_list(paths)}
        self.manifest = json.loads(json.dumps(manifest))  # as it reads back: lists, not tuples
        self.chunks = [paths[start : start + size] for start in range(0, len(paths), size)]
        self.codec = codec
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.saved = 0  # part files written by this run
        self.fresh = False  # the folder was made by this run
        self.resumed = 0  # images found finished

    def run(self, compute: Callable[[list[Path]], Iterable[tuple[str, R]]], skip: SkippedImages | None) -> dict[str, R]:
        """Every image's record by image id, in the order of ``paths``: finished chunks loaded,
        the others computed by ``compute(their paths)`` (records in path order; bad images
        recorded in ``skip``) and saved chunk by chunk. Images left out by ``--skip-bad`` in
        an earlier attempt are recorded in ``skip`` again, or, without it, raise their error."""
        self._open()
        try:
            done = self._finished(skip)
            todo = [i for i in range(len(self.chunks)) if i not in done]
            stream = compute([p for i in todo for p in self.chunks[i]]) if todo else ()
            for position, records in _completed(stream, [self.chunks[i] for i in todo], skip):
                index = todo[position]
                self._save(index, records, _skipped_in(self.chunks[index], skip))
                done[index] = records
        except BaseException as err:
            if self.fresh and not self.saved:
                self.remove()  # nothing worth keeping: leave no folder behind
                raise
            if isinstance(err, SteelsegError):  # its one line says where the work so far is
                raise type(err)(
                    f"{err} ({self._kept()} images done are kept in {self.folder}: run again to resume)"
                ) from None
            raise
        return {name: record for i in range(len(self.chunks)) for name, record in done[i].items()}

    @property
    def image_ids(self) -> list[str]:
        return [path.name for chunk in self.chunks for path in chunk]

    def remove(self) -> None:
        """Delete the work folder: only the files this module writes, then the folder if empty."""
        for path in self._own_files():
            path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass  # gone already, or holding someone else's files

    def _kept(self) -> int:
        """Images in the part files on disk (not checked)."""
        indices = {
            int(m["index"]) for m in map(_PART.fullmatch, (p.name for p in self.folder.glob("chunk-*.npz"))) if m
        }
        return sum(len(self.chunks[i]) for i in indices if i < len(self.chunks))

    def _own_files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        own = [self.folder / MANIFEST, *self.folder.glob("chunk-*.npz"), *leftovers(self.folder)]
        return [path for path in own if path.is_file()]

    # --- the folder --------------------------------------------------------------------------

    def _open(self) -> None:
        path = self.folder / MANIFEST
        if path.is_file():
            stored = self._stored_manifest(path)
            if stored is not None:
                _check_same(path, stored, self.manifest)
                for tmp in leftovers(self.folder):  # writes a kill interrupted
                    tmp.unlink(missing_ok=True)
                return
        self._check_ours()
        self.remove()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.fresh = True
            write_text(path, json.dumps(self.manifest, indent=1) + "\n")
        except OSError as err:
            raise ResumeError(
                f"cannot keep progress in {self.folder} ({err.strerror or err}): choose another output"
            ) from None

    def _check_ours(self) -> None:
        """A folder of that name with other files is not deleted to make room: someone else's."""
        if self.folder.exists() and not self.folder.is_dir():
            raise ResumeError(f"{self.folder} exists and is not a folder; progress is kept there: move it away")
        if self.folder.is_dir() and set(self.folder.iterdir()) - set(self._own_files()):
            raise ResumeError(
                f"{self.folder} holds files that are not steelseg progress; progress is kept there: move it away"
            )

    def _stored_manifest(self, path: Path) -> dict | None:
        try:
            stored = json.loads(path.read_text())
            if isinstance(stored, dict):
                return stored
        except (OSError, ValueError):
            pass
        self.log(f"warning: {path} cannot be read; starting afresh")
        return None

    def _finished(self, skip: SkippedImages | None) -> dict[int, dict[str, R]]:
        done: dict[int, dict[str, R]] = {}
        for path in sorted(self.folder.glob("chunk-*.npz")):
            index, records, skipped = self._load(path)
            if index is None or index in done:
                path.unlink(missing_ok=True)
                continue
            _record_earlier_skips(self.chunks[index], skipped, skip)
            done[index] = records
            self.resumed += len(self.chunks[index])
        if done:
            self.log(
                f"resuming from {self.folder}: {self.resumed} of {sum(map(len, self.chunks))} images already predicted"
            )
        return done

    def _load(self, path: Path) -> tuple[int | None, dict[str, R], dict[str, str]]:
        """(chunk index, records, skipped images' reasons); index None for a bad part file."""
        match = _PART.fullmatch(path.name)
        problem = None
        if match is None or int(match["index"]) >= len(self.chunks):
            problem = "is not a part of this computation"
        else:
            index = int(match["index"])
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest()[:16] != match["sha"]:
                problem = "fails its checksum (changed or damaged)"
            elif not zipfile.is_zipfile(io.BytesIO(data)):  # np.load would try it as a pickle, and blame that
                problem = "does not load (not an .npz archive)"
            else:
                try:
                    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                        arrays = {key: npz[key] for key in npz.files}
                    records = self.codec.decode(arrays)
                    skipped = dict(zip(arrays["skipped"].tolist(), arrays["reasons"].tolist()))
                except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as err:
                    problem = f"does not load ({type(err).__name__}: {err})"
                else:
                    if {*records, *skipped} == {p.name for p in self.chunks[index]}:
                        return index, records, skipped
                    problem = "does not hold the images of its chunk"
        self.log(f"warning: {path} {problem}; its images are predicted again")
        return None, {}, {}

    def _save(self, index: int, records: dict[str, R], skipped: dict[str, str]) -> None:
        arrays = self.codec.encode(records)
        arrays["skipped"] = np.array(list(skipped), dtype=str)
        arrays["reasons"] = np.array(list(skipped.values()), dtype=str)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        with atomic_open(
            self.folder / f"chunk-{index:06d}-{hashlib.sha256(data).hexdigest()[:16]}.npz", "wb"
        ) as handle:
            handle.write(data)
        self.saved += 1


def _check_same(path: Path, stored: dict, current: dict) -> None:
    """One line naming the first setting that differs (models, images, settings)."""
    if stored == current:
        return
    what = {
        "members": "other models, weights, backends or TTA",
        "images": "other images",
        "format": "an older steelseg",
    }
    key = next((k for k in [*current, *stored] if stored.get(k) != current.get(k)), "format")
    raise ResumeError(
        f"{path.parent} holds the progress of a prediction with {what.get(key, f'another {key}')} "
        f"(its {MANIFEST} differs in {key!r}): delete that folder to start afresh, or choose another --out"
    )


def _record_earlier_skips(chunk: list[Path], skipped: dict[str, str], skip: SkippedImages | None) -> None:
    if not skipped:
        return
    paths = {p.name: p for p in chunk}
    if skip is None:
        from steelseg.files.images import ImageError

        name, reason = next(iter(skipped.items()))
        raise ImageError(f"{paths[name]}: {reason}")
    for name, reason in skipped.items():
        skip.add(paths[name], reason)


def _skipped_in(chunk: list[Path], skip: SkippedImages | None) -> dict[str, str]:
    if skip is None:
        return {}
    return {p.name: skip.reasons[p.name] for p in chunk if p.name in skip}


def _completed(
    stream: Iterable[tuple[str, R]], chunks: list[list[Path]], skip: SkippedImages | None
) -> Iterator[tuple[int, dict[str, R]]]:
    """Group a stream of (image id, record), in path order, into ``chunks``: yield (position,
    records) as soon as every image of a chunk has a record or was skipped."""
    skipped = skip if skip is not None else ()
    records: dict[str, R] = {}
    position = offset = 0

    def complete() -> Iterator[tuple[int, dict[str, R]]]:
        nonlocal position, offset
        while position < len(chunks):
            chunk = chunks[position]
            while offset < len(chunk) and (chunk[offset].name in records or chunk[offset].name in skipped):
                offset += 1
            if offset < len(chunk):
                return
            yield position, {p.name: records.pop(p.name) for p in chunk if p.name in records}
            position, offset = position + 1, 0

    for name, record in stream:
        records[name] = record
        yield from complete()
    yield from complete()
    if position < len(chunks):  # the stream ended early: a bug, never a silent gap
        raise RuntimeError(f"no record for {chunks[position][offset]}")


def predict_candidates(
    predictor,
    image_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    progress: bool = True,
    budget=None,
    skip: SkippedImages | None = None,
    size: int = CHUNK,
    log: Callable[[str], None] | None = None,
    observe: Callable | None = None,
) -> tuple[dict, WorkFolder]:
    """Every image's ``Candidate`` of ``image_dir`` in file order, resumed from and saved to
    ``out``'s work folder (module docstring); also that folder, to ``remove`` once ``out`` is
    written. ``skip``: as ``Predictor.iter_folder``; ``observe``: as ``iter_candidates``, for
    the images predicted now (not those resumed)."""
    from steelseg.files.images import require_images

    paths = require_images(image_dir)
    codec = CandidateCodec.of(predictor)
    work = WorkFolder(
        parts_folder(out),
        {"command": "predict", **predictor.fingerprint()},
        paths,
        chunk_size(size, predictor.batch_size),
        codec,
        log,
    )

    def compute(todo: list[Path]):
        return predictor.iter_candidates(image_dir, progress, paths=todo, budget=budget, skip=skip, observe=observe)

    return work.run(compute, skip), work
