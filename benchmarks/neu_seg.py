"""The default recipe against a plain baseline on real steel data (NEU-Seg), same time budget.

    python benchmarks/neu_seg.py [--data ../shared/data/neu-seg] [--minutes 10] [--out runs/neu-seg]
                                 [--runs "default recipe" baseline "two heads" "mask r-cnn"]

Validation split: 10% of the 3,630 training images (363), drawn with split_seed 0 (the published
test split is not available here). Baseline: smp U-Net-resnet18, Adam, BCE, no augmentation.
Both runs train from scratch (no pretrained weights) on full 200x200 images for the same
number of minutes and are scored by their best epoch on the same validation split.
``--runs`` adds the other model families on the same split and settings: "two heads"
(``model.task=two_head``: U-Net-resnet18 with a class head, soft gating) and "mask r-cnn"
(``model.task=instance``: Mask R-CNN with a resnet18 FPN, fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "neu-seg"
# The training runs import this repository's src: the shared environment holds only the
# dependencies, never steelseg itself (see Makefile).
SRC = Path(__file__).resolve().parents[1] / "src"
COMMON = [
    "--set",
    "data.class_names=[inclusion, patches, scratches]",
    "--set",
    "data.crop_height=null",
    "--set",
    "data.crop_width=null",  # 200x200: whole images
    "--set",
    "train.oof_scale=null",
    # 2 CPU cores train U-Net-resnet18 at a few images per second: validate every 50 batches
    # (400 images) on a 10% split so both runs get several validations inside the budget.
    "--set",
    "data.val_fraction=0.1",
    "--set",
    "train.batches_per_epoch=50",
]
RECIPES = {
    "default recipe": ["--config", "default"],
    "baseline": [
        "--config",
        "default",
        "--set",
        "train.loss=bce",
        "--set",
        "data.augment=[]",
        "--set",
        "data.defect_crop_fraction=0",
    ],
    "two heads": ["--config", "default", "--set", "model.task=two_head"],
    "mask r-cnn": ["--config", "default", "--set", "model.task=instance"],
}
DEFAULT_RUNS = ["default recipe", "baseline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/neu-seg"))
    parser.add_argument(
        "--runs", nargs="+", choices=list(RECIPES), default=DEFAULT_RUNS, help="which runs (default: the first two)"
    )
    args = parser.parse_args()
    if not (args.data / "masks").is_dir():
        sys.exit(f"NEU-Seg not found at {args.data}")
    rows = []
    for name in args.runs:
        recipe = RECIPES[name]
        run = args.out / name.replace(" ", "-")
        command = [
            "steelseg",
            "train",
            str(args.data),
            "--out",
            str(run),
            *recipe,
            *COMMON,
            "--epochs",
            "1000",
            "--max-minutes",
            str(args.minutes),
            "--quiet",
        ]
        print("$", shlex.join(command), flush=True)
        start = time.monotonic()
        env = dict(os.environ, PYTHONPATH=str(SRC))
        subprocess.run([sys.executable, "-m", "steelseg", *command[1:]], check=True, env=env)
        summary = json.loads((run / "summary.json").read_text())
        epochs = len((run / "metrics.csv").read_text().splitlines()) - 1
        rows.append((name, summary, epochs, (time.monotonic() - start) / 60))
    # mean Dice: the competition metric with the post-processing tuned on validation;
    # mean IoU: dataset-level per class at pixel threshold 0.5, as papers report it.
    print(f"\n{'run':<16}{'mean Dice':>10}{'mean IoU':>10}{'best/epochs':>12}{'minutes':>9}  per-class Dice")
    for name, s, epochs, minutes in rows:
        per_class = " ".join(f"{v:.3f}" for v in s["val_class_dice_tuned"])
        best = f"{s['epoch']}/{epochs}"  # epochs count from 1
        print(f"{name:<16}{s['val_dice_tuned']:>10.4f}{s['val_iou']:>10.4f}{best:>12}{minutes:>9.1f}  {per_class}")
        if "screening" in s:  # the class scores: a two-headed net's head, a segmenter's max pixel
            auc = " ".join("-" if a is None else f"{a:.3f}" for a in s["screening"]["auc"])
            print(f"{'':<16}class-score AUC {auc}")


if __name__ == "__main__":
    main()
