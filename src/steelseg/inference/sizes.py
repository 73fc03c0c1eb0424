"""Which images a Predictor takes: the sizes each network is trusted on, checked input arrays,
and the window setting for long strips (``inference.windows``). No torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from steelseg.config import Config
from steelseg.errors import SteelsegError
from steelseg.files.rundir import Run
from steelseg.inference.ensemble import Member
from steelseg.inference.windows import window_unit

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


def check_images(images: np.ndarray) -> None:
    """An ``InputError`` unless ``images`` are (N, H, W) uint8 gray images."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        shape = getattr(images, "shape", None)
        raise InputError(
            f"expected (N, H, W) uint8 gray images, got {getattr(images, 'dtype', type(images).__name__)} {shape}"
        )


def size_problem(members: list[Member], shape: tuple[int, int], window: int | None) -> str | None:
    """What is wrong with an image of ``shape`` (H, W) for some member, or None; ``window``:
    the width it is cut into (None: predicted whole)."""
    for member in members:
        problem = member.limits.problem(shape) if member.limits else None
        if problem:
            return problem
        problem = member.limits.problem((shape[0], window)) if member.limits and window else None
        if problem:
            return f"is {shape[0]}x{shape[1]} (HxW), cut into --window {window} px windows; each window {problem}"
    return None


def size_limits(run: Run | None, config: Config) -> SizeLimits:
    """From the run's summary when it records the training images' sizes; else the network's
    minimum alone. ``run`` None: an exported model file, which has no summary."""
    summary = run.summary if run is not None else None
    shorter = None
    if summary is not None and summary.train_image_shapes is not None:
        shorter = summary.train_image_shapes.shorter_side
    return SizeLimits(math.ceil(input_divisor(run) / config.model.input_scale), shorter)


def input_divisor(run: Run | None) -> int:
    """The multiple the run's network pads its inputs to, from its summary (else ``DIVISOR``)."""
    return run.summary.input_divisor if run is not None and run.summary is not None else DIVISOR


def members_window_unit(members: list[Member], divisors: list[int]) -> int:
    """The width every member sees as a multiple of its input divisor (``windows.window_unit``)."""
    return math.lcm(*(window_unit(d, m.config.model.input_scale) for m, d in zip(members, divisors)))


def window_setting(window: int | None, overlap: int, unit: int) -> tuple[int | None, int]:
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
