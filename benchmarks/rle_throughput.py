"""RLE encode / decode throughput (masks per second) on the real Severstal masks at 256 x 1600.

    python benchmarks/rle_throughput.py [--data ../shared/data/severstal-mini] [--seconds 3]

Uses the 19 real non-empty masks of severstal-mini; when that folder is absent it says so and
uses the masks of synthetic strips instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# This repository's src, whichever python runs the script: the shared environment holds only
# the dependencies, never steelseg itself (see Makefile).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np

from steelseg.core import rle
from steelseg.files import synth
from steelseg.files.annotations import read_annotations

SHAPE = (256, 1600)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal-mini"


def load_masks(data: Path) -> tuple[list[np.ndarray], str]:
    if (data / "train.csv").is_file():
        table = read_annotations(data / "train.csv")
        return [rle.decode(e, SHAPE) for e in table.encoded.values()], f"{len(table.encoded)} real masks from {data}"
    masks = [m for i in range(40) for m in synth.make_strip(0, i).masks if m.any()]
    return masks, f"{len(masks)} synthetic masks ({data} not found)"


def rate(function, items, seconds: float) -> float:
    """Items per second of ``function`` over ``items``, repeated for at least ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for item in items:
            function(item)
        done += len(items)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    masks, source = load_masks(args.data)
    # Row-major, as a model's thresholded output is (decode returns a column-major view,
    # which would flatter the encoder).
    masks = [np.ascontiguousarray(m) for m in masks]
    encoded = [rle.encode(m) for m in masks]
    empty = np.zeros(SHAPE, bool)
    pixels = np.mean([m.sum() for m in masks])
    runs = np.mean([len(e.split()) // 2 for e in encoded])
    print(f"masks: {source}; {SHAPE[0]}x{SHAPE[1]}, mean {pixels:.0f} defect pixels, {runs:.0f} runs")
    print(f"encode          {rate(rle.encode, masks, args.seconds):10.0f} masks/s")
    print(f"decode          {rate(lambda e: rle.decode(e, SHAPE), encoded, args.seconds):10.0f} masks/s")
    print(f"encode (empty)  {rate(rle.encode, [empty], args.seconds):10.0f} masks/s")
    print(f"decode (empty)  {rate(lambda e: rle.decode(e, SHAPE), [''], args.seconds):10.0f} masks/s")


if __name__ == "__main__":
    main()
