"""One Predictor for the CLI, the service, reports, export checks and benchmarks.

numpy in, numpy out: (N, H, W) uint8 gray images -> ``preprocess.to_input`` -> a backend
(``SegmentationNet.forward`` in torch or onnxruntime) -> ``preprocess.upsample_probs`` ->
(N, C, H, W) float32 probabilities -> ``PostProcess`` -> (C, H, W) bool masks. Validation and
out-of-fold files go through the same three steps, so a run's tuned thresholds apply to the
same numbers here. Nothing in this module imports torch; the chosen backend may.
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
from steelseg.images import read_gray, require_images
from steelseg.inference.backends import Backend, create_backend, resolve_backend
from steelseg.postprocess import PostProcess
from steelseg.preprocess import to_input, upsample_probs

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
    ``Predictor.from_run_dir``."""

    def __init__(
        self,
        config: Config,
        postprocess: PostProcess,
        backend: Backend,
        batch_size: int = 4,
        limits: SizeLimits | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.config = config
        self.class_names = config.output_class_names
        self.postprocess = postprocess
        self.backend = backend
        self.batch_size = batch_size
        self.limits = limits

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
        return cls(config, postprocess, chosen, batch_size, limits)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        return self.backend.describe()

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 gray images -> (N, C, H, W) float32 defect probabilities."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
            shape = getattr(images, "shape", None)
            raise InputError(f"expected (N, H, W) uint8 gray images, got {getattr(images, 'dtype', type(images).__name__)} {shape}")
        problem = self.limits.problem(images.shape[1:]) if self.limits else None
        if problem:
            raise InputError(f"image {problem}")
        return self._probabilities(images)

    def _probabilities(self, images: np.ndarray) -> np.ndarray:
        model = self.config.model
        x = to_input(images, model.input_mean, model.input_std, model.in_channels, model.input_scale)
        return upsample_probs(self.backend(x), images.shape[1:])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One (H, W) uint8 image -> (C, H, W) bool defect masks, post-processed."""
        return self.postprocess(self.predict_proba(image[None])[0])

    def iter_folder(self, image_dir: str | os.PathLike, progress: bool = True) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
        """Yield (path, image, probabilities) for every image of a folder, in batches; the next
        batch is read and decoded while the network runs on this one."""
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
                    probs = self._probabilities(np.stack([images[i] for i in group]))  # checked by _read
                    for i, p in zip(group, probs):
                        yield batch[i], images[i], p
                bar.update(len(batch))
        bar.close()

    def predict_folder(self, image_dir: str | os.PathLike, progress: bool = True) -> Annotations:
        """Post-processed masks of every image of a folder, run-length encoded. Post-processing
        and encoding run in a second thread, one batch behind the network."""
        result = Annotations(source=str(image_dir))
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=1) as encoder:
            for path, _, probs in self.iter_folder(image_dir, progress):
                pending.append((path.name, encoder.submit(self._encode, probs)))
                while len(pending) > 2 * self.batch_size:  # bounded: probabilities are large
                    _add_encoded(result, *pending.popleft())
            while pending:
                _add_encoded(result, *pending.popleft())
        return result

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
