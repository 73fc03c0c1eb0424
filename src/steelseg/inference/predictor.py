"""One Predictor for the CLI, the service, reports, export checks and benchmarks.

numpy in, numpy out: (N, H, W) uint8 gray images -> each member of the ensemble (one run, or
several: ``inference.sources``) through its TTA views and backend -> per-class weighted
averages (``inference.ensemble``) -> ``Outputs``: (N, C, H, W) float32 pixel probabilities (not
for classifiers alone), (N, C) class scores and the class heads' probabilities -> the gated
``PostProcess`` -> (C, H, W) bool masks. A single run is an ensemble of one, and out-of-fold
files go through the same steps, so tuned thresholds apply to the same numbers here. Images
wider than the window (long strips) go through the same steps in overlapping windows, blended
back (``inference.windows``). Nothing in this module imports torch; the chosen backends may.

Around it: ``loading`` builds a Predictor from runs and ensemble files, ``sizes`` says which
images it takes, ``folders`` runs it over folders with read-ahead, ``budget`` holds it to a
``--time-budget`` and ``fingerprint`` says what decides its predictions (for ``resume``).
"""

from __future__ import annotations

import os

import numpy as np

from steelseg.config import Config
from steelseg.core.outputs import Outputs
from steelseg.core.postprocess import PostProcess, per_class
from steelseg.core.screening import present
from steelseg.files.annotations import Annotations
from steelseg.inference import folders, loading
from steelseg.inference.backends import Backend

# Budget, TimeBudgetError, Candidate, SizeLimits, InputError: imported from here by the CLI,
# the service, reports and tests, as before the split
from steelseg.inference.budget import Budget, TimeBudgetError  # noqa: F401
from steelseg.inference.candidates import Candidate
from steelseg.inference.ensemble import EnsembleError, Member, combine, ensemble_outputs
from steelseg.inference.fingerprint import predictor_fingerprint
from steelseg.inference.sizes import (
    DIVISOR,
    InputError,
    SizeLimits,
    check_images,
    members_window_unit,
    size_problem,
    window_setting,
)
from steelseg.inference.skipped import SkippedImages
from steelseg.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW, Windows, layout, predict_windows


class Predictor:
    """Networks, pre- and post-processing behind numpy arrays. Build it with
    ``Predictor.load(sources)`` (runs, folders of runs, ensemble files) or
    ``Predictor.from_run_dir``.

    ``screen_threshold`` (C,): the screening thresholds on the class scores (the first run's
    gate.json; by default the config's ``postprocess.screen_threshold``). ``presence_threshold``
    (C,), what ``screen`` compares the class scores with, is the post-processing's gate where it
    gates the class (its ``head_threshold``, else its ``peak_threshold``), else that screening
    threshold.

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
        screen_threshold: np.ndarray | None = None,
        clusters=None,
        window: int | None = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
        window_unit: int | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.window_unit = window_unit or members_window_unit(members, [DIVISOR] * len(members))
        self.window, self.overlap = window_setting(window, overlap, self.window_unit)
        self.members = members
        self.class_names = list(class_names)
        self.postprocess = postprocess
        self.batch_size = batch_size
        self.clusters = clusters  # sources.ClusterSpec or None
        self.has_masks = any(m.has_pixels for m in members)
        self.has_heads = any(m.has_heads for m in members)
        self._check()
        if screen_threshold is None:
            screen_threshold = per_class(self.config.postprocess.screen_threshold, self.num_classes, "screen_threshold")
        self.presence_threshold = presence_threshold(self.postprocess, screen_threshold)

    @classmethod
    def single(
        cls,
        config: Config,
        postprocess: PostProcess,
        backend: Backend,
        batch_size: int = 4,
        limits: SizeLimits | None = None,
        screen_threshold: np.ndarray | None = None,
    ) -> Predictor:
        """One network, no TTA: what a run directory is on its own."""
        member = Member("model", config, backend, list(range(len(config.output_class_names))), limits=limits)
        return cls([member], postprocess, config.output_class_names, batch_size, screen_threshold)

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

    load = classmethod(loading.load)  # runs, folders of runs and ensemble files -> a Predictor

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
        gated = self.postprocess.head_threshold > 0
        if (gated & ~headed).any() or (self.postprocess.soft_gate and not headed.any()):
            name = self.class_names[int(np.flatnonzero(gated & ~headed)[0])] if (gated & ~headed).any() else "any class"
            raise EnsembleError(
                f"head_threshold or soft_gate for {name} needs a member with a class head "
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

    def backend_notes(self) -> list[str]:
        """Why ``--backend auto`` chose each member's backend, one line per member it chose for."""
        notes = [m.backend_note for m in self.members if m.backend_note]
        return (
            notes if len(self.members) == 1 else [f"{m.name}: {m.backend_note}" for m in self.members if m.backend_note]
        )

    def fingerprint(self) -> dict:
        """What decides each image's candidate, as JSON-ready values (``inference.fingerprint``):
        two predictors with the same fingerprint give the same candidates for the same image."""
        return predictor_fingerprint(self)

    def drop_tta(self) -> bool:
        """Predict every member on its plain view only from now on (``Budget``); False when no
        member had more than one view, so nothing changed."""
        if not any(len(m.views) > 1 for m in self.members):
            return False
        for member in self.members:
            member.views = ("none",)
        return True

    # --- arrays --------------------------------------------------------------------------------

    def predict_outputs(self, images: np.ndarray) -> Outputs:
        """(N, H, W) uint8 gray images -> ``Outputs``: (N, C, H, W) float32 pixel probabilities
        (None without a pixel-predicting member; a two-headed network's gated by its class
        head), (N, C) class scores, and the class heads' (N, C) probabilities or None.

        Images wider than ``window`` go through the networks in windows, ``batch_size`` at a
        time: their pixel probabilities are the windows' blend, their class heads the max over
        the windows (a two-headed network gates each window's pixels by that window's head),
        and their class scores come from those as for whole images."""
        check_images(images)
        problem = self.size_problem(images.shape[1:])
        if problem:
            raise InputError(f"image {problem}")
        windows = self._windows(images.shape[2])
        if windows is None:
            pixels, heads = self._combined(images)
        else:
            pixels, heads = predict_windows(images, self._combined, windows, self.batch_size)
        return ensemble_outputs(pixels, heads, self.postprocess.peaks)

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
        ``presence_threshold``). An image with none can skip segmentation."""
        return present(self.predict_scores(images), self.presence_threshold)

    def masks(self, outputs: Outputs) -> np.ndarray:
        """One image's ``Outputs`` (pixels (C, H, W), scores (C,)) -> its (C, H, W) bool masks,
        post-processed and gated: what ``predict_folder`` encodes (without shared scores)."""
        return self.postprocess(outputs.pixels, outputs.heads)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One (H, W) uint8 image -> (C, H, W) bool defect masks, post-processed."""
        return self.masks(self.predict_outputs(image[None])[0])

    def size_problem(self, shape: tuple[int, int]) -> str | None:
        """What makes an image of ``shape`` (H, W) one some member is not trusted on (as a
        phrase after "image"), or None."""
        return size_problem(self.members, shape, self.window if self._windows(shape[1]) else None)

    def _combined(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        results = [member.outputs(images) for member in self.members]
        return combine(self.members, results, self.num_classes)

    def _windows(self, image_width: int) -> Windows | None:
        """None: the image is predicted whole."""
        if self.window is None or image_width <= self.window:
            return None
        return layout(image_width, self.window, self.overlap, self.window_unit)

    # --- folders: the functions of ``inference.folders`` are these methods ----------------------

    iter_folder = folders.iter_folder

    iter_candidates = folders.iter_candidates

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

    finish = folders.finish

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

    score_folder = folders.score_folder


def presence_threshold(postprocess: PostProcess, screen_threshold: np.ndarray) -> np.ndarray:
    """(C,) the threshold on the class scores above which a class is present: the
    post-processing's ``head_threshold`` where it gates the class on its heads, else its
    ``peak_threshold`` where it gates on the peak, else the screening threshold (gate.json)."""
    gated = np.where(postprocess.peak_threshold > 0, postprocess.peak_threshold, screen_threshold)
    return np.where(postprocess.head_threshold > 0, postprocess.head_threshold, gated)
