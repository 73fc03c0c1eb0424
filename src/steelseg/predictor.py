"""One Predictor for the CLI, the service, reports and benchmarks.

pre-processing -> network -> sigmoid -> post-processing, loaded from a run directory alone.
The network runs behind a small backend interface (``__call__(x) -> probabilities``) so that
the torch and exported runtimes are interchangeable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
from tqdm import tqdm

from steelseg.annotations import Annotations
from steelseg.images import list_images, read_gray
from steelseg.model import build_model, probabilities
from steelseg.preprocess import to_input, upsample_probs
from steelseg.rundir import load_postprocess, load_run_config, load_weights


class Backend(Protocol):
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(N, in_channels, H, W) float32 -> (N, C, H, W) float32 probabilities."""


class TorchBackend:
    def __init__(self, model: torch.nn.Module, head: str, device: str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.head = head

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        logits = self.model(torch.from_numpy(x).to(self.device))
        return probabilities(logits, self.head).float().cpu().numpy()


class Predictor:
    def __init__(self, run_dir: str | os.PathLike, device: str = "cpu", batch_size: int = 4):
        self.run_dir = Path(run_dir)
        self.config = load_run_config(run_dir)
        self.class_names = self.config.output_class_names
        self.postprocess = load_postprocess(run_dir, self.config)
        # The run's own weights replace whatever the network was initialised from.
        model = build_model(self.config.model.model_copy(update={"encoder_weights": None, "init_from": None}), self.num_classes)
        load_weights(run_dir, model)
        self.backend: Backend = TorchBackend(model, self.config.model.head, device)
        self.batch_size = batch_size

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 gray images -> (N, C, H, W) float32 defect probabilities."""
        model = self.config.model
        x = to_input(images, model.input_mean, model.input_std, model.in_channels, model.input_scale)
        return upsample_probs(self.backend(x), images.shape[-2:])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One (H, W) uint8 image -> (C, H, W) bool defect masks, post-processed."""
        return self.postprocess(self.predict_proba(image[None])[0])

    def iter_folder(self, image_dir: str | os.PathLike, progress: bool = True) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
        """Yield (path, image, probabilities) for every image of a folder, in batches."""
        paths = list_images(image_dir)
        bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
        for start in range(0, len(paths), self.batch_size):
            batch = paths[start : start + self.batch_size]
            images = [read_gray(p) for p in batch]
            for group in _same_shape_runs(images):
                probs = self.predict_proba(np.stack([images[i] for i in group]))
                for i, p in zip(group, probs):
                    yield batch[i], images[i], p
            bar.update(len(batch))
        bar.close()

    def predict_folder(self, image_dir: str | os.PathLike, progress: bool = True) -> Annotations:
        """Post-processed masks of every image of a folder, run-length encoded."""
        result = Annotations(source=str(image_dir))
        for path, _, probs in self.iter_folder(image_dir, progress):
            result.add_masks(path.name, self.postprocess(probs))
        return result


def _same_shape_runs(images: list[np.ndarray]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i, image in enumerate(images):
        if groups and images[groups[-1][-1]].shape == image.shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
