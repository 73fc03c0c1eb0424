"""One Predictor for the CLI, the service, reports, export checks and benchmarks.

numpy in, numpy out: (N, H, W) uint8 gray images -> each member of the ensemble (one run, or
several: ``inference.sources``) through its TTA views and backend -> per-class weighted
averages (``inference.ensemble``) -> ``Outputs``: (N, C, H, W) float32 pixel probabilities (not
for classifiers alone), (N, C) class scores and the class heads' probabilities -> the gated
``PostProcess`` -> (C, H, W) bool masks. A single run is an ensemble of one, and out-of-fold
files go through the same steps, so tuned thresholds apply to the same numbers here. Images
wider than the window (long strips) go through the same steps in overlapping windows, blended
back (``inference.windows``). Nothing in this module imports torch; the chosen backends may.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from steelseg.config import Config
from steelseg.core import rle
from steelseg.core.outputs import Outputs
from steelseg.core.postprocess import PostProcess, per_class
from steelseg.core.screening import present
from steelseg.errors import SteelsegError
from steelseg.files import rundir
from steelseg.files.annotations import Annotations
from steelseg.files.images import ImageError, read_gray, require_images
from steelseg.inference.backends import Backend, create_backend, resolve_backend
from steelseg.inference.ensemble import EnsembleError, Member, combine, ensemble_outputs, tta_views
from steelseg.inference.skipped import SkippedImages
from steelseg.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW, Windows, layout, predict_windows, window_unit

SIZE_TOLERANCE = 2.0  # the shorter image side may differ from training's by this factor
DIVISOR = 32  # the input divisor assumed where a run does not record its own


class InputError(SteelsegError, ValueError):
    """Images the model cannot be trusted on: wrong dtype or shape, too small, far from the
    sizes it was trained on."""


@dataclass(frozen=True)
class SizeLimits:
    """Which image sizes a model is trusted on (pixels of the image, before input_scale)."""

    min_side: int  # below this the network's deepest layer sees less than one cell
    shorter_side: tuple[int, int] | None = None  # range of min(H, W); None: not known

    def problem(self, shape: tuple[int, int]) -> str | None:
        if min(shape) < self.min_side:
            return f"is {shape[0]}x{shape[1]} (HxW), below the network's minimum of {self.min_side} px per side"
        if self.shorter_side is not None:
            low, high = self.shorter_side
            if not low / SIZE_TOLERANCE <= min(shape) <= high * SIZE_TOLERANCE:
                trained = f"{low}" if low == high else f"{low}-{high}"
                return (
                    f"is {shape[0]}x{shape[1]} (HxW): its shorter side is more than {SIZE_TOLERANCE:g}x away from "
                    f"the training images' ({trained} px); resize it to the training scale, or pass --any-size "
                    "to predict anyway"
                )
        return None


class TimeBudgetError(SteelsegError, RuntimeError):
    """A prediction that cannot finish within its ``--time-budget``."""


@dataclass
class Candidate:
    """One image's prediction before the gates: each class's mask run-length encoded, its
    peak, class-head probabilities (or None), class scores, and encoder features (or None)."""

    encoded: list[str]
    peaks: np.ndarray
    heads: np.ndarray | None
    scores: np.ndarray
    embedding: np.ndarray | None = None


class Predictor:
    """Networks, pre- and post-processing behind numpy arrays. Build it with
    ``Predictor.load(sources)`` (runs, folders of runs, ensemble files) or
    ``Predictor.from_run_dir``.

    ``label_threshold`` (C,): a class is present in an image when its score is above it (the
    gate's threshold where the post-processing gates the class, else the first run's gate.json;
    by default the config's ``postprocess.label_threshold``).

    ``window``: images wider than this (px) are predicted in windows this wide overlapping by at
    least ``overlap`` px (``inference.windows``); None or 0: always whole images. It is rounded
    down to a multiple of ``window_unit`` (default: the networks' input divisor, 32, at each
    member's ``input_scale``), so that no window is padded inside a network."""

    def __init__(
        self,
        members: list[Member],
        postprocess: PostProcess,
        class_names: list[str],
        batch_size: int = 4,
        label_threshold: np.ndarray | None = None,
        clusters=None,
        window: int | None = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
        window_unit: int | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.window_unit = window_unit or _window_unit(members, [DIVISOR] * len(members))
        self.window, self.overlap = _window_setting(window, overlap, self.window_unit)
        self.members = members
        self.class_names = list(class_names)
        self.postprocess = postprocess
        self.batch_size = batch_size
        self.clusters = clusters  # sources.ClusterSpec or None
        self.has_masks = any(m.has_pixels for m in members)
        self.has_heads = any(m.has_heads for m in members)
        self._check()
        if label_threshold is None:
            label_threshold = per_class(self.config.postprocess.label_threshold, self.num_classes, "label_threshold")
        gated = np.where(self.postprocess.peak_threshold > 0, self.postprocess.peak_threshold, label_threshold)
        self.label_threshold = np.where(self.postprocess.label_threshold > 0, self.postprocess.label_threshold, gated)

    @classmethod
    def single(
        cls,
        config: Config,
        postprocess: PostProcess,
        backend: Backend,
        batch_size: int = 4,
        limits: SizeLimits | None = None,
        label_threshold: np.ndarray | None = None,
    ) -> Predictor:
        """One network, no TTA: what a run directory is on its own."""
        member = Member("model", config, backend, list(range(len(config.output_class_names))), limits=limits)
        return cls([member], postprocess, config.output_class_names, batch_size, label_threshold)

    @classmethod
    def from_run_dir(
        cls,
        run_dir: str | os.PathLike,
        backend: str = "auto",
        device: str = "auto",
        batch_size: int = 4,
        check_size: bool = True,
        window: int | None = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
    ) -> Predictor:
        """Load the run in ``run_dir`` on ``backend`` (auto, torch, torch-amp, onnx) and
        ``device`` (auto, cpu, cuda, cuda:N). ``check_size=False`` predicts images of any size;
        ``window``, ``overlap``: long images in windows (see the class)."""
        return cls.load([run_dir], backend, device, batch_size, check_size, window=window, overlap=overlap)

    @classmethod
    def load(
        cls,
        sources: list[str | os.PathLike],
        backend: str = "auto",
        device: str = "auto",
        batch_size: int = 4,
        check_size: bool = True,
        tta: str | None = None,
        postprocess: str | os.PathLike | None = None,
        overrides: list[str] | None = None,
        window: int | None = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
    ) -> Predictor:
        """Runs, folders of runs and ensemble files (``inference.sources``) as one predictor.
        ``tta`` replaces every member's TTA; ``postprocess`` a JSON file that replaces the
        sources' post-processing; ``overrides`` ``KEY=VALUE`` changes to it; ``window`` and
        ``overlap``: images wider than the window in overlapping windows (see the class)."""
        from steelseg.inference.sources import channels, check_compatible, ensemble_classes, resolve

        resolved = resolve(sources, tta)
        networks = resolved.networks
        check_compatible(networks)
        class_names, position = ensemble_classes(networks)
        first = networks[0]
        only_onnx = all((n.spec.backend or backend) == "onnx" for n in networks)
        device = _device("onnx" if only_onnx else backend, device)
        members = []
        for network in networks:
            name = resolve_backend(network.spec.backend or backend, device)
            members.append(
                Member(
                    str(network.run_dir),
                    network.config,
                    create_backend(name, network.run_dir, network.config, device),
                    [position[c] for c in channels(network.config)],
                    network.weight,
                    tta_views(network.spec.tta),
                    network.spec.temperature,
                    _size_limits(network.run_dir, network.config) if check_size else None,
                )
            )
        post = resolved.read_postprocess(first.config, len(class_names), Path(postprocess) if postprocess else None)
        if overrides:
            try:
                post = post.override(overrides)
            except ValueError as err:
                raise EnsembleError(f"--post {err}") from None
        gate = rundir.load_gate(first.run_dir, first.config) if len(networks) == 1 else None
        unit = _window_unit(members, [_input_divisor(network.run_dir) for network in networks])
        return cls(members, post, class_names, batch_size, gate, resolved.clusters, window, overlap, unit)

    def _check(self) -> None:
        covered = np.zeros(self.num_classes, dtype=bool)
        headed = np.zeros(self.num_classes, dtype=bool)
        for member in self.members:
            covered[member.channels] |= member.has_pixels
            headed[member.channels] |= member.has_heads
        if self.has_masks and not covered.all():
            missing = self.class_names[int(np.flatnonzero(~covered)[0])]
            raise EnsembleError(f"no member predicts the pixels of class {missing!r}: add a run that does")
        if self.postprocess.num_classes != self.num_classes:
            raise EnsembleError(
                f"the post-processing has {self.postprocess.num_classes} classes, the models {self.num_classes}"
            )
        label = self.postprocess.label_threshold > 0
        if (label & ~headed).any() or (self.postprocess.soft_gate and not headed.any()):
            name = self.class_names[int(np.flatnonzero(label & ~headed)[0])] if (label & ~headed).any() else "any class"
            raise EnsembleError(
                f"label_threshold or soft_gate for {name} needs a member with a class head "
                "(a classifier or two-headed run)"
            )

    @property
    def config(self) -> Config:
        """The first member's run config (class names, defaults)."""
        return self.members[0].config

    @property
    def backend(self) -> Backend:
        """The first member's backend."""
        return self.members[0].backend

    @property
    def task(self) -> str:
        return self.config.model.task if len(self.members) == 1 else "ensemble"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        if len(self.members) == 1 and self.members[0].views == ("none",):
            return self.backend.describe()
        views = sorted({len(m.views) for m in self.members})
        backends = sorted({m.backend.describe() for m in self.members})
        return f"{len(self.members)} networks x {'/'.join(map(str, views))} TTA views on {'; '.join(backends)}"

    def predict_outputs(self, images: np.ndarray) -> Outputs:
        """(N, H, W) uint8 gray images -> ``Outputs``: (N, C, H, W) float32 pixel probabilities
        (None without a pixel-predicting member; a two-headed network's gated by its class
        head), (N, C) class scores, and the class heads' (N, C) probabilities or None.

        Images wider than ``window`` go through the networks in windows, ``batch_size`` at a
        time: their pixel probabilities are the windows' blend, their class heads the max over
        the windows (a two-headed network gates each window's pixels by that window's head),
        and their class scores come from those as for whole images."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
            shape = getattr(images, "shape", None)
            raise InputError(
                f"expected (N, H, W) uint8 gray images, got {getattr(images, 'dtype', type(images).__name__)} {shape}"
            )
        problem = self._size_problem(images.shape[1:])
        if problem:
            raise InputError(f"image {problem}")
        return self._outputs(images)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 gray images -> (N, C, H, W) float32 defect probabilities."""
        if not self.has_masks:
            raise InputError(f"a {self.task} run gives class scores, not masks: use predict_scores")
        return self.predict_outputs(images).pixels

    def predict_scores(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 gray images -> (N, C) float32 probability that each class is present."""
        return self.predict_outputs(images).scores

    def screen(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 gray images -> (N, C) bool: which classes are present (scores above
        the label thresholds). An image with none can skip segmentation."""
        return present(self.predict_scores(images), self.label_threshold)

    def _outputs(self, images: np.ndarray) -> Outputs:
        windows = self._windows(images.shape[2])
        if windows is None:
            pixels, heads = self._combined(images)
        else:
            pixels, heads = predict_windows(images, self._combined, windows, self.batch_size)
        return ensemble_outputs(pixels, heads, self.postprocess.peaks)

    def _combined(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        results = [member.outputs(images) for member in self.members]
        return combine(self.members, results, self.num_classes)

    def _windows(self, image_width: int) -> Windows | None:
        """None: the image is predicted whole."""
        if self.window is None or image_width <= self.window:
            return None
        return layout(image_width, self.window, self.overlap, self.window_unit)

    def masks(self, outputs: Outputs) -> np.ndarray:
        """One image's ``Outputs`` (pixels (C, H, W), scores (C,)) -> its (C, H, W) bool masks,
        post-processed and gated: what ``predict_folder`` encodes (without shared scores)."""
        return self.postprocess(outputs.pixels, outputs.heads)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One (H, W) uint8 image -> (C, H, W) bool defect masks, post-processed."""
        return self.masks(self.predict_outputs(image[None])[0])

    def iter_folder(
        self,
        image_dir: str | os.PathLike,
        progress: bool = True,
        *,
        paths: list[Path] | None = None,
        shard: tuple[int, int] = (0, 1),
        budget: Budget | None = None,
        skip: SkippedImages | None = None,
    ) -> Iterator[tuple[Path, np.ndarray, Outputs]]:
        """Yield (path, image, its ``Outputs``) for every image of a folder (or ``paths``), in
        batches; the next batches are read and decoded in threads while the networks run on
        this one (OpenCV decodes and numpy copies without holding the GIL, so threads overlap
        like worker processes, without sending every image through a pipe).

        ``shard`` = (rank, world size): only every world-size-th batch, starting at rank; the
        batches are the same as in one process, so each image's numbers are too.
        ``budget``: checked after every batch (``Budget``). ``skip``: an image that cannot be
        read or is of a size the model is not trusted on is recorded there (and logged) and
        left out, where it would otherwise stop the prediction with an ``ImageError`` or
        ``InputError`` naming it; the skip is recorded before any later image is yielded."""
        paths = require_images(image_dir) if paths is None else paths
        batches = [paths[start : start + self.batch_size] for start in range(0, len(paths), self.batch_size)]
        rank, world = shard
        mine = batches[rank::world]
        total = sum(len(b) for b in mine)
        bar = tqdm(total=total, desc="predict", unit="img", disable=not progress)
        if budget is not None:
            budget.start(total)
        with ThreadPoolExecutor(max_workers=2) as reader:
            pending = deque(reader.submit(self._read, batch, skip is not None) for batch in mine[:2])
            for index, batch in enumerate(mine):
                images = pending.popleft().result()
                if index + 2 < len(mine):
                    pending.append(reader.submit(self._read, mine[index + 2], skip is not None))
                good = _drop_bad(batch, images, skip)
                for group in _same_shape_runs([images[i] for i in good]):
                    group = [good[g] for g in group]
                    outputs = self._outputs(np.stack([images[i] for i in group]))  # checked by _read
                    for j, i in enumerate(group):
                        yield batch[i], images[i], outputs[j]
                bar.update(len(batch))
                if budget is not None:
                    budget.update(len(batch), self, bar)
        bar.close()

    def candidates_folder(
        self,
        image_dir: str | os.PathLike,
        progress: bool = True,
        *,
        shard: tuple[int, int] = (0, 1),
        budget: Budget | None = None,
        skip: SkippedImages | None = None,
    ) -> dict[str, Candidate]:
        """Every image's ``Candidate`` (this shard's), by image id (``skip``: as ``iter_folder``)."""
        return dict(self.iter_candidates(image_dir, progress, shard=shard, budget=budget, skip=skip))

    def iter_candidates(
        self,
        image_dir: str | os.PathLike,
        progress: bool = True,
        *,
        paths: list[Path] | None = None,
        shard: tuple[int, int] = (0, 1),
        budget: Budget | None = None,
        skip: SkippedImages | None = None,
    ) -> Iterator[tuple[str, Candidate]]:
        """Yield (image id, ``Candidate``) for every image of a folder (or ``paths``), in their
        order; arguments as ``iter_folder``. Post-processing and encoding run in a second
        thread, one batch behind the networks."""
        if not self.has_masks:
            raise InputError(f"a {self.task} run gives class scores, not masks: use score_folder")
        paths = require_images(image_dir) if paths is None else paths
        embed = self._embedder() if self.clusters is not None else None
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=1) as encoder:
            for path, image, outputs in self.iter_folder(
                image_dir, progress, paths=paths, shard=shard, budget=budget, skip=skip
            ):
                embedding = embed(image) if embed is not None else None
                pending.append(
                    (
                        path.name,
                        outputs,
                        embedding,
                        encoder.submit(self.postprocess.candidates, outputs.pixels, outputs.heads),
                    )
                )
                while len(pending) > 2 * self.batch_size:  # bounded: probabilities are large
                    yield _candidate(*pending.popleft())
            while pending:
                yield _candidate(*pending.popleft())

    def finish(self, candidates: dict[str, Candidate], source: str = "", scores: dict | None = None) -> Annotations:
        """Gate the candidates (class scores shared within near-duplicate clusters first, when
        the ensemble says so) -> the submission's masks. ``scores`` receives the class scores."""
        image_ids = list(candidates)
        result = Annotations(source=source)
        if not image_ids:
            return result
        peaks = np.stack([candidates[i].peaks for i in image_ids])
        heads = np.stack([candidates[i].heads for i in image_ids]) if self.has_heads else None
        if self.clusters is not None:
            from steelseg.inference.clusters import cluster, share

            labels = cluster(np.stack([candidates[i].embedding for i in image_ids]), self.clusters.distance)
            peaks = share(peaks, labels, self.clusters.share)
            heads = None if heads is None else share(heads, labels, self.clusters.share)
        keep = self.postprocess.gate(peaks, heads)
        for row, image_id in enumerate(image_ids):
            for class_id, encoded in enumerate(candidates[image_id].encoded, start=1):
                result.add(image_id, class_id, encoded if keep[row, class_id - 1] else "")
            if scores is not None:
                scores[image_id] = candidates[image_id].scores
        return result

    def predict_folder(
        self,
        image_dir: str | os.PathLike,
        progress: bool = True,
        scores: dict | None = None,
        budget: Budget | None = None,
        skip: SkippedImages | None = None,
    ) -> Annotations:
        """Post-processed, gated masks of every image of a folder, run-length encoded.
        ``scores``, when given, receives each image's class scores by image id; ``skip``: bad
        images left out (``iter_folder``)."""
        return self.finish(
            self.candidates_folder(image_dir, progress, budget=budget, skip=skip), str(image_dir), scores
        )

    def score_folder(
        self,
        image_dir: str | os.PathLike,
        progress: bool = True,
        budget: Budget | None = None,
        skip: SkippedImages | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Class scores of every image of a folder: (image ids, (N, C) float32); ``skip``: bad
        images left out (``iter_folder``)."""
        image_ids, scores = [], []
        for path, _, outputs in self.iter_folder(image_dir, progress, budget=budget, skip=skip):
            image_ids.append(path.name)
            scores.append(outputs.scores)
        if not scores:  # every image skipped
            return [], np.zeros((0, self.num_classes), np.float32)
        return image_ids, np.stack(scores)

    def fingerprint(self) -> dict:
        """What decides each image's candidate, as JSON-ready values: every member's model file
        and its SHA-256, backend, views, weight, temperature and classes; the post-processing;
        the windows; the batch size (batches are the unit of computation) and the clusters.
        Two predictors with the same fingerprint give the same candidates for the same image."""
        members = [
            {
                "model": str(Path(m.name).resolve()),
                "sha256": _weights_sha256(m),
                "backend": m.backend.describe(),
                "views": list(m.views),
                "weight": m.weight,
                "temperature": m.temperature,
                "channels": list(m.channels),
            }
            for m in self.members
        ]
        return {
            "members": members,
            "postprocess": json.loads(self.postprocess.to_json()),
            "window": self.window,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "clusters": None if self.clusters is None else self.clusters.model_dump(),
        }

    def _embedder(self):
        for member in self.members:
            embed = getattr(member.backend, "embed", None)
            if embed is not None:
                return lambda image, m=member: embed(m.inputs(image[None])[0])[0]
        raise EnsembleError("near-duplicate clusters need encoder features: give a member a torch backend")

    def _size_problem(self, shape: tuple[int, int]) -> str | None:
        windowed = self._windows(shape[1]) is not None
        for member in self.members:
            problem = member.limits.problem(shape) if member.limits else None
            if problem:
                return problem
            problem = member.limits.problem((shape[0], self.window)) if member.limits and windowed else None
            if problem:
                return (
                    f"is {shape[0]}x{shape[1]} (HxW), cut into --window {self.window} px windows; each window {problem}"
                )
        return None

    def _read(self, paths: list[Path], keep_going: bool = False) -> list[np.ndarray | SteelsegError]:
        """The images of ``paths``; a bad one raises, or with ``keep_going`` stands as its error."""
        images: list[np.ndarray | SteelsegError] = []
        for path in paths:
            try:
                image = read_gray(path)
                problem = self._size_problem(image.shape)
                if problem:
                    raise InputError(f"{path}: image {problem}")
            except (ImageError, InputError) as err:
                if not keep_going:
                    raise
                image = err
            images.append(image)
        return images


class Budget:
    """``--time-budget``: after the first batches, the projected total time of the folder (the
    first batch, which warms the networks up, is timed apart); shown in the progress bar, and
    when over the budget either TTA is dropped (``drop_tta``) or ``TimeBudgetError`` stops the
    prediction early."""

    def __init__(self, minutes: float, drop_tta: bool = False, after: int = 3):
        self.seconds = minutes * 60
        self.drop_tta = drop_tta
        self.after = after  # batches before the first estimate

    def start(self, total: int) -> None:
        self.total, self.done, self.batches = total, 0, 0
        self.began = time.monotonic()
        self.first: tuple[float, int] | None = None  # (seconds, images) of the warm-up
        self.projected: float | None = None

    def update(self, images: int, predictor: Predictor, bar) -> None:
        self.done += images
        self.batches += 1
        elapsed = time.monotonic() - self.began
        if self.first is None:
            self.first = (elapsed, self.done)
            return
        if self.batches < self.after or self.done >= self.total:
            return
        seconds, count = self.first
        rate = (elapsed - seconds) / (self.done - count)
        self.projected = elapsed + rate * (self.total - self.done)
        bar.set_postfix_str(f"projected {self.projected / 60:.1f} of {self.seconds / 60:g} min")
        if self.projected <= self.seconds:
            return
        if self.drop_tta and any(len(m.views) > 1 for m in predictor.members):
            for member in predictor.members:
                member.views = ("none",)
            bar.write(
                f"time budget: projected {self.projected / 60:.1f} min > {self.seconds / 60:g} min; TTA dropped "
                f"for the remaining {self.total - self.done} images"
            )
            self.first, self.batches = (elapsed, self.done), 1  # measure the new rate afresh
            return
        raise TimeBudgetError(
            f"projected {self.projected / 60:.1f} min for {self.total} images ({rate:.2f} s per image after the first "
            f"batch), over the --time-budget of {self.seconds / 60:g} min; use fewer members or TTA views, --drop-tta, "
            "or a larger budget"
        )


def _candidate(image_id: str, outputs: Outputs, embedding, encoded: Future) -> tuple[str, Candidate]:
    masks, peaks = encoded.result()
    return image_id, Candidate([rle.encode(m) for m in masks], peaks, outputs.heads, outputs.scores, embedding)


def _drop_bad(paths: list[Path], images: list, skip: SkippedImages | None) -> list[int]:
    """The positions of the images that were read; the others are recorded in ``skip``."""
    good = []
    for i, (path, image) in enumerate(zip(paths, images)):
        if isinstance(image, SteelsegError):
            skip.add(path, image)
        else:
            good.append(i)
    return good


def _weights_sha256(member: Member) -> str | None:
    """SHA-256 of the file a member's backend loaded: an ONNX file, else the run's weights."""
    onnx = getattr(member.backend, "path", None)
    if onnx is not None:
        return rundir.file_sha256(onnx)
    weights = Path(member.name) / rundir.WEIGHTS
    return rundir.file_sha256(weights) if weights.is_file() else None


def _device(backend: str, device: str) -> str:
    if backend == "onnx" and device in ("auto", "cpu"):
        return "cpu"  # decided without importing torch
    from steelseg.hardware import resolve_device

    return resolve_device(device)


def _size_limits(run_dir: Path, config: Config) -> SizeLimits:
    """From the run's summary when it records the training images' sizes; else the network's
    minimum alone."""
    shorter = None
    if (run_dir / rundir.SUMMARY).is_file():
        summary = rundir.load_summary(run_dir)
        if summary.train_image_shapes is not None:
            shorter = summary.train_image_shapes.shorter_side
    return SizeLimits(math.ceil(_input_divisor(run_dir) / config.model.input_scale), shorter)


def _input_divisor(run_dir: Path) -> int:
    """The multiple the run's network pads its inputs to, from its summary (else ``DIVISOR``)."""
    return rundir.load_summary(run_dir).input_divisor if (run_dir / rundir.SUMMARY).is_file() else DIVISOR


def _window_unit(members: list[Member], divisors: list[int]) -> int:
    """The width every member sees as a multiple of its input divisor (``windows.window_unit``)."""
    return math.lcm(*(window_unit(d, m.config.model.input_scale) for m, d in zip(members, divisors)))


def _window_setting(window: int | None, overlap: int, unit: int) -> tuple[int | None, int]:
    """``window`` and ``overlap`` checked: (the window rounded down to a multiple of ``unit``, or
    None for whole images; the overlap)."""
    if not window:
        return None, overlap
    if window < unit:
        raise InputError(
            f"--window {window}: below the networks' input step of {unit} px; give at least {unit}, "
            "or 0 for whole images"
        )
    rounded = window // unit * unit
    if not 0 <= overlap <= rounded - unit:
        raise InputError(
            f"--overlap {overlap}: windows of {rounded} px take an overlap from 0 to {rounded - unit} px "
            f"(the window minus the networks' input step of {unit} px)"
        )
    return rounded, overlap


def _same_shape_runs(images: list[np.ndarray]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i, image in enumerate(images):
        if groups and images[groups[-1][-1]].shape == image.shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
