"""A data set's fingerprint (the first stage of plan/fit) and the time one pass takes.

    python benchmarks/fingerprint.py DATA [DATA ...] [--out DIR]

DATA: a Severstal-layout or mask-folder data set (e.g. ../shared/data/severstal-mini,
../shared/data/neu-seg). Prints the figures the plan's rules will read; with --out, writes each
fingerprint.json there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from steelseg.files.datasets import open_dataset
from steelseg.pipeline.fingerprint import FINGERPRINT, fingerprint_dataset, write_fingerprint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="write DIR/<data name>/fingerprint.json")
    args = parser.parse_args()
    for root in args.data:
        started = time.monotonic()
        fp = fingerprint_dataset(open_dataset(root), progress=False)
        seconds = time.monotonic() - started
        sizes = ", ".join(f"{size} x{count}" for size, count in list(fp.sizes.items())[:3])
        print(f"{root}: {fp.images} images in {seconds:.1f} s; sizes {sizes}; channels {fp.channels}")
        print(
            f"  gray mean {fp.intensity['mean']:.1f} std {fp.intensity['std']:.1f}; clean share {fp.clean_share:.3f}; "
            f"empty pairs {fp.empty_pair_share:.3f}; near-duplicates: {fp.near_duplicate_groups} groups, "
            f"{fp.near_duplicate_images} images"
        )
        for c in fp.classes:
            area = "-" if c.area is None else f"{c.area['p50']:.0f}"
            component = "-" if c.component is None else f"{c.component['p50']:.0f}"
            print(f"  {c.name}: share {c.image_share:.3f}, median area {area} px, median component {component} px")
        if args.out:
            print(f"  wrote {write_fingerprint(args.out / root.name / FINGERPRINT, fp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
