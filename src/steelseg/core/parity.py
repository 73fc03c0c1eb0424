"""How far one runtime's masks and probabilities are from a reference's (PyTorch fp32): the one
measure behind ``--backend auto``, ``export --int8``'s check and ``benchmarks/int8_speed.py``.

Agreeing is three things: at least ``MIN_AGREEMENT`` of the mask pixels equal after the run's
post-processing; where the reference marks at least ``MARKED`` of the pixels, a Dice of at least
``MIN_MASK_DICE`` between the two masks (steel is mostly clean: masks that mark nothing still
"agree" on 99% of the pixels, as OpenVINO 2026.4's run of an INT8 graph did); and probabilities
within ``MAX_MEAN_DIFF`` of the reference's on average (a graph a runtime executes wrongly
shifts them everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_AGREEMENT = 0.99
MIN_MASK_DICE = 0.9  # where the reference's masks mark at least MARKED of the pixels
MARKED = 1e-3
MAX_MEAN_DIFF = 0.02  # mean |probability - fp32's|: bf16 and a good INT8 graph stay below 0.005


@dataclass(frozen=True)
class Parity:
    agreement: float  # share of mask pixels (or presence labels) equal to the reference's
    dice: float | None  # the masks' Dice over the marked pixels; None where the reference marks too few
    mean_diff: float | None = None  # mean |probability difference|; None where not compared
    max_diff: float | None = None

    @property
    def passes(self) -> bool:
        dice_ok = self.dice is None or self.dice >= MIN_MASK_DICE
        diff_ok = self.mean_diff is None or self.mean_diff <= MAX_MEAN_DIFF
        return self.agreement >= MIN_AGREEMENT and dice_ok and diff_ok

    def __str__(self) -> str:
        dice = "" if self.dice is None else f", mask Dice {self.dice:.3f}"
        diff = "" if self.mean_diff is None else f", mean |dp| {self.mean_diff:.4f}"
        return f"{100 * self.agreement:.2f}% agree{dice}{diff}"


def compare(
    reference: np.ndarray, masks: np.ndarray, reference_probs: np.ndarray | None = None, probs: np.ndarray | None = None
) -> Parity:
    """``masks`` against ``reference`` (bool arrays of one shape: masks, or presence labels), and
    the probabilities behind them where given."""
    reference, masks = np.asarray(reference, dtype=bool), np.asarray(masks, dtype=bool)
    if reference.shape != masks.shape:
        raise ValueError(f"masks of shape {masks.shape} against a reference of shape {reference.shape}")
    marked = int(reference.sum()) + int(masks.sum())
    dice = 2 * int((reference & masks).sum()) / marked if reference.mean() >= MARKED else None
    mean_diff = max_diff = None
    if reference_probs is not None and probs is not None:
        diff = np.abs(np.asarray(probs, dtype=np.float32) - np.asarray(reference_probs, dtype=np.float32))
        mean_diff, max_diff = float(diff.mean()), float(diff.max())
    return Parity(float((reference == masks).mean()), dice, mean_diff, max_diff)
