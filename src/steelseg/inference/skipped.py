"""``--skip-bad`` for predict and pseudo: images that cannot be predicted are logged and left out.

An image is bad when it cannot be read (truncated, zero bytes, not an image behind an image
suffix, channels no decoder takes, float values out of range, over the pixel cap) or when the
model cannot be trusted on its size (``inference.sizes.SizeLimits``). Without ``--skip-bad`` the
first one stops the command with its error; with it, each is one line on stderr as it is found
(``skipped FILE: reason``) and the command ends with the count (``summary``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class SkippedImages:
    """The images left out, by image id (file name) in the order found, with their reasons."""

    def __init__(self, log: Callable[[str], None] = _stderr):
        self.log = log
        self.reasons: dict[str, str] = {}

    def add(self, path: Path, error: Exception | str) -> None:
        """Record ``path`` as bad and log it; ``error``'s message may begin with the path."""
        reason = str(error).removeprefix(f"{path}: ")
        self.reasons[path.name] = reason
        self.log(f"skipped {path}: {reason}")

    def merge(self, reasons: dict[str, str]) -> None:
        """Skips another process logged already (sharded prediction): recorded, not logged again."""
        self.reasons.update(reasons)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.reasons

    def __len__(self) -> int:
        return len(self.reasons)

    def summary(self, total: int) -> str:
        return f"skipped {len(self)} bad image{'' if len(self) == 1 else 's'} of {total}"
