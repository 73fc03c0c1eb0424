"""The inference engine on real steel data (NEU-Seg): one model, the fold ensemble with flip
TTA, and both after ``steelseg tune`` on the out-of-fold predictions.

    python benchmarks/neu_engine.py [--data ../shared/data/neu-seg] [--k 3] [--minutes 6]
                                    [--out runs/neu-engine] [--phase train|evaluate|all]

The published NEU-Seg test split is not available here, so 20% of the 3,630 images (seed 0)
are held out as the test set; the other 80% are split into ``--k`` folds (``steelseg folds``)
and the default recipe is trained on each (``train --fold all``, from scratch, whole 200x200
images, ``--minutes`` per fold). Every figure is the competition mean Dice on the held-out
images: each image scores 1 for a class it lacks and the model leaves empty.

Phases are resumable: training is skipped when the CV folder has finished.
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

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "neu-seg"
SRC = Path(__file__).resolve().parents[1] / "src"
CLASSES = "[inclusion, patches, scratches]"
TRAIN = [
    "--config",
    "default",
    "--set",
    f"data.class_names={CLASSES}",
    "--set",
    "data.crop_height=null",
    "--set",
    "data.crop_width=null",  # 200x200: whole images
    "--set",
    "train.oof_scale=1.0",  # out-of-fold files at full size (200x200) for tune
    "--set",
    "train.batches_per_epoch=50",
]


def split_holdout(data: Path, out: Path, fraction: float = 0.2, seed: int = 0) -> tuple[Path, Path]:
    """Link NEU-Seg's images and masks into ``out/cv`` and ``out/test`` (``fraction`` held out)."""
    names = sorted(p.name for p in (data / "images").iterdir())
    order = np.random.default_rng(seed).permutation(len(names))
    test = set(order[: round(len(names) * fraction)].tolist())
    for part in ("cv", "test"):
        for sub in ("images", "masks"):
            (out / part / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        part = out / ("test" if i in test else "cv")
        mask = Path(name).stem + ".png"
        for sub, file in (("images", name), ("masks", mask)):
            link = part / sub / file
            if not link.exists():
                link.symlink_to((data / sub / file).resolve())
    return out / "cv", out / "test"


def steelseg(*args: str) -> str:
    print("$ steelseg", shlex.join(args), flush=True)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-m", "steelseg", *args], env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    print(done.stdout, end="", flush=True)
    return done.stdout


def train(cv_data: Path, out: Path, k: int, minutes: float) -> Path:
    runs = out / "default"
    fold_runs = [runs / f"fold-{f}" for f in range(k)]
    if (runs / "cv.csv").is_file() or all((r / "finished").is_file() for r in fold_runs):
        print(f"{runs} has finished: not training again")
        return runs
    folds = out / "folds.csv"
    if not folds.is_file():
        steelseg("folds", str(cv_data), "--out", str(folds), "--k", str(k), "--quiet")
    steelseg(
        "train",
        str(cv_data),
        "--out",
        str(runs),
        *TRAIN,
        "--folds",
        str(folds),
        "--fold",
        "all",
        "--epochs",
        "1000",
        "--max-minutes",
        str(minutes),
        "--quiet",
    )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--out", type=Path, default=Path("runs/neu-engine"))
    parser.add_argument("--phase", choices=["train", "evaluate", "all"], default="all")
    args = parser.parse_args()
    if not (args.data / "masks").is_dir():
        sys.exit(f"NEU-Seg not found at {args.data}")
    cv_data, test_data = split_holdout(args.data, args.out)
    start = time.monotonic()
    runs = train(cv_data, args.out, args.k, args.minutes)
    print(f"training: {(time.monotonic() - start) / 60:.1f} min")
    if args.phase == "train":
        return
    evaluate(runs, test_data, args.out)


def evaluate(runs: Path, test_data: Path, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    sys.path.insert(0, str(SRC))
    from engine_figures import row, test_dice
    from steelseg.training.oof import write_run_oof

    for fold in sorted(runs.glob("fold-*")):
        if not (fold / "oof.npz").is_file():  # runs trained before train.oof_scale was set here
            print(f"writing the out-of-fold file of {fold}", flush=True)
            write_run_oof(fold, scale=1.0, progress=False)
    names = ["inclusion", "patches", "scratches"]
    tuned = runs / "postprocess.json"
    if tuned.exists():
        tuned.unlink()  # "before" means the folds' own post-processing
    # "one model": the fold that scored best on its own validation images, the strongest single
    # model to hold the ensemble against
    best = max(
        sorted(runs.glob("fold-*")), key=lambda f: json.loads((f / "summary.json").read_text())["val_dice_tuned"]
    )
    rows = [
        row(f"one model ({best.name}), its validation-tuned post-processing", test_dice([best], test_data, names)),
        row("fold ensemble + flip TTA (both)", test_dice([runs], test_data, names, tta="both")),
    ]
    steelseg("tune", str(runs), "--quiet")
    rows += [
        row(f"one model ({best.name}), after tune", test_dice([best], test_data, names, postprocess=tuned)),
        row("fold ensemble + flip TTA (both), after tune", test_dice([runs], test_data, names, tta="both")),
    ]
    print(f"\n{'held-out NEU-Seg images: competition mean Dice':<52}{'mean':>10}  per class")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
