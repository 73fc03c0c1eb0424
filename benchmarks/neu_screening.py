"""Screening on real steel (NEU-Seg): can the 1st place classifier tell clean crops from defective ones?

    python benchmarks/neu_screening.py [--data ../shared/data/neu-seg] [--out runs/neu-screening]
                                       [--minutes 12] [--encoder resnet34] [--epochs 16]

NEU-Seg has no clean images (every one of its 3,630 holds a defect), so this builds a set of
real crops with clean ones among them, all 96x96 so that size is no cue:

- from each image, one crop on a defect: centred on a random defect pixel (moved inside the
  image), labelled with every class that has a pixel in it;
- from each image that has one, one crop without a single defect pixel (clean), drawn at random
  among all such windows. 1,480 of the 3,630 images have no such window (their defects spread
  too wide), so the set is 2,150 clean and 3,630 defective crops: 37% clean, not half. The
  screened shares are per group (of the clean crops, of the defective crops), so the mix does
  not change them, only the share of all crops screened out.

It is written as a mask-folder dataset in ``OUT/crops`` (images/, masks/ label maps,
classes.json) with a folds CSV that keeps the two crops of an image on the same side: fold 0,
10% of the NEU images (seed 0), is the validation split. Then ``first_place_cls_resnet34``
(multi-label classifier, flips, brightness/contrast, defect blackout, SGD, cosine) is trained
from scratch on whole crops (1 input channel: the data is gray and no pretrained weights
are used), batch 32 without accumulation, for ``--epochs`` of ``--batches-per-epoch`` batches
within ``--minutes`` (16 x 100 batches of resnet34 take ~10 minutes on 2 idle CPU cores). The
screening report of its best epoch is printed: per-class ROC AUC, the label thresholds tuned on
validation, and the share of clean crops screened out and of defective crops lost.

The synthetic counterpart (severstal-like strips, half clean), whose held-out screening rates
are benchmarks/screening_speed.py's defaults, is in that script's docstring.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

# The crops are written with this repository's src; the training run imports it too: the
# shared environment holds only the dependencies, never steelseg itself (see Makefile).
SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from steelseg.files.datasets import write_class_names  # noqa: E402
from steelseg.files.images import list_images, read_gray, read_label_map  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "neu-seg"
CLASS_NAMES = ["inclusion", "patches", "scratches"]
CROP = 96
FOLDS = 10  # fold 0 validates: 10% of the NEU images, both crops of each


def windows_sum(defect: np.ndarray, size: int) -> np.ndarray:
    """Defect pixels in every size x size window: (H - size + 1, W - size + 1), by top-left corner."""
    integral = np.pad(defect.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]


def make_crops(data: Path, out: Path, seed: int = 0) -> dict[str, int]:
    """Write the crop set (see the module docstring) into ``out``; returns counts."""
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    paths = list_images(data / "images")
    fold_of = rng.permutation(len(paths)) % FOLDS
    rows, counts = [], {"images": len(paths), "defective": 0, "clean": 0, "no clean window": 0}
    for path, fold in zip(paths, fold_of):
        image, labels = read_gray(path), read_label_map(data / "masks" / f"{path.stem}.png")
        height, width = labels.shape
        defect = labels > 0
        ys, xs = np.nonzero(defect)
        pick = rng.integers(len(ys))
        top = int(np.clip(ys[pick] - CROP // 2, 0, height - CROP))
        left = int(np.clip(xs[pick] - CROP // 2, 0, width - CROP))
        crops = [("d", top, left)]
        clean_tops, clean_lefts = np.nonzero(windows_sum(defect, CROP) == 0)
        if len(clean_tops):
            pick = rng.integers(len(clean_tops))
            crops.append(("c", int(clean_tops[pick]), int(clean_lefts[pick])))
        else:
            counts["no clean window"] += 1
        for kind, top, left in crops:
            name = f"{path.stem}_{kind}.png"
            window = np.s_[top : top + CROP, left : left + CROP]
            Image.fromarray(image[window]).save(out / "images" / name)
            Image.fromarray(labels[window]).save(out / "masks" / name)
            rows.append((name, int(fold), path.stem))
            counts["defective" if kind == "d" else "clean"] += 1
    with open(out / "folds.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["ImageId", "Fold", "Group"])
        writer.writerows(rows)
    write_class_names(out, CLASS_NAMES)
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/neu-screening"))
    parser.add_argument("--minutes", type=float, default=12, help="training budget (train.max_minutes)")
    parser.add_argument("--encoder", default="resnet34", help="model.encoder_name (the recipe's: resnet34)")
    parser.add_argument(
        "--epochs", type=int, default=16, help="epochs of the cosine schedule; set so they fit --minutes"
    )
    parser.add_argument("--batches-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (the recipe's 0.01)")
    args = parser.parse_args()
    if not (args.data / "masks").is_dir():
        sys.exit(f"NEU-Seg not found at {args.data}")
    crops = args.out / "crops"
    start = time.monotonic()
    if (crops / "counts.json").is_file():
        counts = json.loads((crops / "counts.json").read_text())
        print(f"crops already in {crops}")
    else:
        counts = make_crops(args.data, crops)
        print(f"wrote crops to {crops} in {time.monotonic() - start:.0f} s")
    print(
        f"{counts['images']} NEU images -> {counts['defective']} defective and {counts['clean']} clean "
        f"{CROP}x{CROP} crops "
        f"({counts['no clean window']} images have no defect-free {CROP}x{CROP} window)"
    )

    run = args.out / f"cls-{args.encoder}"
    command = [
        "steelseg",
        "train",
        str(crops),
        "--out",
        str(run),
        "--config",
        "first_place_cls_resnet34",
        "--folds",
        str(crops / "folds.csv"),
        "--fold",
        "0",
        "--set",
        f"data.class_names=[{', '.join(CLASS_NAMES)}]",
        "--set",
        "data.crop_height=null",
        "--set",
        "data.crop_width=null",  # whole 96x96 crops
        "--set",
        "model.in_channels=1",  # gray data, no pretrained weights to match
        "--set",
        f"model.encoder_name={args.encoder}",
        "--set",
        f"data.batch_size={args.batch_size}",
        "--set",
        "train.accumulate_batches=1",
        "--set",
        f"train.lr={args.lr}",
        "--set",
        f"train.batches_per_epoch={args.batches_per_epoch}",
        "--set",
        "train.oof_scale=null",
        "--epochs",
        str(args.epochs),
        "--max-minutes",
        str(args.minutes),
        "--quiet",
    ]
    print("$", shlex.join(command), flush=True)
    start = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    subprocess.run([sys.executable, "-m", "steelseg", *command[1:]], check=True, env=env)
    minutes = (time.monotonic() - start) / 60

    from steelseg.core.screening import format_report
    from steelseg.files.rundir import load_summary

    summary = load_summary(run)
    epochs = len((run / "metrics.csv").read_text().splitlines()) - 1
    report = summary.screening
    print(
        f"\nNEU-Seg {CROP}x{CROP} crops, validation fold 0: {report.images} crops; classifier "
        f"first_place_cls_resnet34 with {args.encoder}, 1 channel, from scratch; best epoch {summary.epoch} "
        f"of {epochs}, {minutes:.1f} min"
    )
    print(format_report(report, summary.class_names))
    aucs = [a for a in report.auc if a is not None]
    print(
        f"mean AUC {np.mean(aucs):.4f}; presence accuracy {summary.val_dice_tuned:.4f} at the tuned thresholds "
        f"(untuned: {summary.val_dice:.4f}); summary in {run / 'summary.json'}"
    )


if __name__ == "__main__":
    main()
