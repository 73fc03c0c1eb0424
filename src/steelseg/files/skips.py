"""What ``skip_bad`` (``train --skip-bad``) leaves out of a dataset folder: one ``Skip`` per bad
row or image, kept by the dataset so that a run can list them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Skip:
    """A bad row or image that ``skip_bad`` left out: the message names the file (and row) and
    says why; ``image_id`` is the image left out (None when a row names no image of the set)."""

    message: str
    image_id: str | None = None
