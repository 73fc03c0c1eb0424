"""One Predictor for the CLI, the service, reports, export checks and benchmarks.

numpy in, numpy out: (N, H, W) uint8 gray images -> ``preprocess.to_input`` -> a backend
(the network's ``forward`` in torch or onnxruntime) -> ``gating.to_image`` -> (N, C, H, W)
float32 pixel probabilities (not for a classifier) and (N, C) class scores -> ``PostProcess``
-> (C, H, W) bool masks, and the label thresholds -> which classes are present. Validation and
out-of-fold files go through the same steps, so a run's tuned thresholds apply to the same
numbers here. Nothing in this module imports torch; the chosen backend may.
"""

from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from steelseg import rle, rundir
from steelseg.annotations import Annotations
from steelseg.config import Config
from steelseg.errors import SteelsegError
from steelseg.gating import PIXELS, TASK_OUTPUTS, Outputs, to_image
from steelseg.images import read_gray, require_images
from steelseg.inference.backends import Backend, create_backend, resolve_backend
from steelseg.postprocess import PostProcess, per_class
from steelseg.preprocess import to_input
from steelseg.screening import present

SIZE_TOLERANCE = 2.0  # the shorter image side may differ from training's by this factor


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


class Predictor:
    """A run's network, pre- and post-processing behind numpy arrays. Build it with
    ``Predictor.from_run_dir``.

    ``label_threshold`` (C,): a class is present in an image when its score is above it (the
    run's gate.json; by default the config's ``postprocess.label_threshold``)."""

    def __init__(
        self,
        config: Config,
        postprocess: PostProcess,
        backend: Backend,
        batch_size: int = 4,
        limits: SizeLimits | None = None,
        label_threshold: np.ndarray | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.config = config
        self.class_names = config.output_class_names
        self.postprocess = postprocess
        self.backend = backend
        self.batch_size = batch_size
        self.limits = limits
        self.task = config.model.task
        self.has_masks = PIXELS in TASK_OUTPUTS[self.task]
        if label_threshold is None:
            label_threshold = per_class(config.postprocess.label_threshold, self.num_classes, "label_threshold")
        self.label_threshold = np.asarray(label_threshold)

    @classmethod
    def from_run_dir(
        cls,
        run_dir: str | os.PathLike,
        backend: str = "auto",
        device: str = "auto",
        batch_size: int = 4,
        check_size: bool = True,
    ) -> "Predictor":
        """Load the run in ``run_dir`` on ``backend`` (auto, torch, torch-amp, onnx) and
        ``device`` (auto, cpu, cuda, cuda:N). ``check_size=False`` predicts images of any size."""
        run_dir = Path(run_dir)
        config = rundir.load_run_config(run_dir)
        postprocess = rundir.load_postprocess(run_dir, config)
        device = _device(backend, device)
        chosen = create_backend(resolve_backend(backend, device), run_dir, config, device)
        limits = _size_limits(run_dir, config) if check_size else None
        return cls(config, postprocess, chosen, batch_size, limits, rundir.load_gate(run_dir, config))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        return self.backend.describe()

    def predict_outputs(self, images: np.ndarray) -> Outputs:
        """(N, H, W) uint8 gray images -> ``Outputs``: (N, C, H, W) float32 pixel probabilities
        (None for a classifier; a two-headed network's gated by its class head) and (N, C)
        class scores."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
            shape = getattr(images, "shape", None)
            raise InputError(f"expected (N, H, W) uint8 gray images, got {getattr(images, 'dtype', type(images).__name__)} {shape}")
        problem = self.limits.problem(images.shape[1:]) if self.limits else None
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
        model = self.config.model
        x = to_input(images, model.input_mean, model.input_std, model.in_channels, model.input_scale)
        return to_image(self.backend(x), images.shape[1:], model)

    def masks(self, outputs: Outputs) -> np.ndarray:
        """One image's ``Outputs`` (pixels (C, H, W), scores (C,)) -> its (C, H, W) bool masks,
        post-processed and gated: what ``predict_folder`` encodes."""
        return self.postprocess(outputs.pixels)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One (H, W) uint8 image -> (C, H, W) bool defect masks, post-processed."""
        return self.postprocess(self.predict_proba(image[None])[0])

    def iter_folder(self, image_dir: str | os.PathLike, progress: bool = True) -> Iterator[tuple[Path, np.ndarray, Outputs]]:
        """Yield (path, image, its ``Outputs``) for every image of a folder, in batches; the
        next batch is read and decoded while the network runs on this one."""
        paths = require_images(image_dir)
        batches = [paths[start : start + self.batch_size] for start in range(0, len(paths), self.batch_size)]
        bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(self._read, batches[0])
            for index, batch in enumerate(batches):
                images = pending.result()
                if index + 1 < len(batches):
                    pending = reader.submit(self._read, batches[index + 1])
                for group in _same_shape_runs(images):
                    outputs = self._outputs(np.stack([images[i] for i in group]))  # checked by _read
                    for j, i in enumerate(group):
                        yield batch[i], images[i], outputs[j]
                bar.update(len(batch))
        bar.close()

    def predict_folder(self, image_dir: str | os.PathLike, progress: bool = True, scores: dict | None = None) -> Annotations:
        """Post-processed masks of every image of a folder, run-length encoded. Post-processing
        and encoding run in a second thread, one batch behind the network. ``scores``, when
        given, receives each image's class scores by image id."""
        if not self.has_masks:
            raise InputError(f"a {self.task} run gives class scores, not masks: use score_folder")
        result = Annotations(source=str(image_dir))
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=1) as encoder:
            for path, _, outputs in self.iter_folder(image_dir, progress):
                pending.append((path.name, encoder.submit(self._encode, outputs.pixels)))
                if scores is not None:
                    scores[path.name] = outputs.scores
                while len(pending) > 2 * self.batch_size:  # bounded: probabilities are large
                    _add_encoded(result, *pending.popleft())
            while pending:
                _add_encoded(result, *pending.popleft())
        return result

    def score_folder(self, image_dir: str | os.PathLike, progress: bool = True) -> tuple[list[str], np.ndarray]:
        """Class scores of every image of a folder: (image ids, (N, C) float32)."""
        image_ids, scores = [], []
        for path, _, outputs in self.iter_folder(image_dir, progress):
            image_ids.append(path.name)
            scores.append(outputs.scores)
        return image_ids, np.stack(scores)

    def _encode(self, probs: np.ndarray) -> list[str]:
        return [rle.encode(mask) for mask in self.postprocess(probs)]

    def _read(self, paths: list[Path]) -> list[np.ndarray]:
        images = [read_gray(path) for path in paths]
        for path, image in zip(paths, images):
            problem = self.limits.problem(image.shape) if self.limits else None
            if problem:
                raise InputError(f"{path}: image {problem}")
        return images


def _add_encoded(result: Annotations, image_id: str, encoded: Future) -> None:
    for class_id, mask in enumerate(encoded.result(), start=1):
        result.add(image_id, class_id, mask)


def _device(backend: str, device: str) -> str:
    if backend == "onnx" and device in ("auto", "cpu"):
        return "cpu"  # decided without importing torch
    from steelseg.hardware import resolve_device

    return resolve_device(device)


def _size_limits(run_dir: Path, config: Config) -> SizeLimits:
    """From the run's summary when it records the training images' sizes; else the network's
    minimum alone."""
    divisor, shorter = 32, None
    if (run_dir / rundir.SUMMARY).is_file():
        summary = rundir.load_summary(run_dir)
        divisor = summary.input_divisor
        if summary.train_image_shapes is not None:
            shorter = summary.train_image_shapes.shorter_side
    return SizeLimits(math.ceil(divisor / config.model.input_scale), shorter)


def _same_shape_runs(images: list[np.ndarray]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i, image in enumerate(images):
        if groups and images[groups[-1][-1]].shape == image.shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
