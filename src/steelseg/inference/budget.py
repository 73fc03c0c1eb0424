"""``--time-budget``: a folder's prediction projected from its first batches, and stopped
early (or its TTA dropped) when the projection is over the budget. No torch."""

from __future__ import annotations

import time

from steelseg.errors import SteelsegError


class TimeBudgetError(SteelsegError, RuntimeError):
    """A prediction that cannot finish within its ``--time-budget``."""


class Budget:
    """``--time-budget``: after the first batches, the projected total time of the folder (the
    first batch, which warms the networks up, is timed apart); shown in the progress bar, and
    when over the budget either TTA is dropped (``drop_tta``: ``Predictor.drop_tta``) or
    ``TimeBudgetError`` stops the prediction early."""

    def __init__(self, minutes: float, drop_tta: bool = False, after: int = 3):
        self.seconds = minutes * 60
        self.drop_tta = drop_tta
        self.after = after  # batches before the first estimate

    def start(self, total: int) -> None:
        self.total, self.done, self.batches = total, 0, 0
        self.began = time.monotonic()
        self.first: tuple[float, int] | None = None  # (seconds, images) of the warm-up
        self.projected: float | None = None

    def update(self, images: int, predictor, bar) -> None:
        """``images`` more done by ``predictor`` (a ``Predictor``); ``bar``: the tqdm bar."""
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
        if self.drop_tta and predictor.drop_tta():
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
