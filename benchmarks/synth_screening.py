"""A classifier on synthetic strips with clean ones among them: per-class AUC and the share of
clean and defective strips screened out, on strips it never saw.

    python benchmarks/synth_screening.py [--out runs/synth-screening] [--minutes 12]

Half of ``steelseg synth``'s strips are clean. ``first_place_cls_resnet34`` (at input_scale
0.5 and 128x768 crops, to fit a 2-core CPU) trains on 400 strips, its label thresholds tuned on
its 80 validation strips; then it predicts 200 fresh strips (seed 1) and ``steelseg score``
reports the screening against their truth. The held-out shares are the defaults of
benchmarks/screening_speed.py (--screened-clean, --lost-defective). Each command is printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

# The commands import this repository's src: the shared environment holds only the
# dependencies, never steelseg itself (see Makefile).
SRC = Path(__file__).resolve().parents[1] / "src"


def steelseg(*args: str) -> None:
    print("$ steelseg", shlex.join(args), flush=True)
    subprocess.run([sys.executable, "-m", "steelseg", *args], check=True, env=dict(os.environ, PYTHONPATH=str(SRC)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/synth-screening"))
    parser.add_argument("--minutes", type=float, default=12)
    args = parser.parse_args()
    train, test, run = args.out / "synth", args.out / "synth-test", args.out / "cls-resnet34"
    steelseg("synth", str(train), "--n", "400", "--quiet")
    steelseg(
        "train",
        str(train),
        "--out",
        str(run),
        "--config",
        "first_place_cls_resnet34",
        "--set",
        "model.input_scale=0.5",
        "--set",
        "data.crop_height=128",
        "--set",
        "data.crop_width=768",
        "--set",
        "train.batches_per_epoch=40",
        "--set",
        "train.accumulate_batches=1",
        "--epochs",
        "16",
        "--max-minutes",
        str(args.minutes),
        "--quiet",
    )
    steelseg("synth", str(test), "--n", "200", "--seed", "1", "--quiet")
    scores = args.out / "synth-test-scores.csv"
    steelseg("predict", str(run), str(test / "train_images"), "--out", str(scores), "--quiet")
    steelseg("score", str(test / "train.csv"), str(scores), "--images", str(test / "train_images"), "--run", str(run))


if __name__ == "__main__":
    main()
