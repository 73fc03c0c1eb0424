"""The inference engine on synthetic strips with clean ones among them: one segmenter, the
fold ensemble with flip TTA, both after ``steelseg tune``, and the ensemble with a classifier
gate (its label threshold tuned on the out-of-fold files with the rest).

    python benchmarks/synth_engine.py [--out runs/synth-engine] [--n 300] [--k 3]
                                      [--seg-minutes 4] [--cls-minutes 3] [--phase train|evaluate|all]

Half of ``steelseg synth``'s strips are clean. ``--n`` strips (seed 0) are split into ``--k``
folds; the demo recipe (segmenter) and ``first_place_cls_resnet34`` (classifier, at
input_scale 0.5 and 128x768 crops to fit a 2-core CPU) train on each fold; 100 fresh strips
(seed 1) are the test set. Every figure is the competition mean Dice on those. Training is
skipped for a folder that has finished.
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

SRC = Path(__file__).resolve().parents[1] / "src"
CLS = [
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
]


def steelseg(*args: str) -> None:
    print("$ steelseg", shlex.join(args), flush=True)
    subprocess.run([sys.executable, "-m", "steelseg", *args], check=True, env=dict(os.environ, PYTHONPATH=str(SRC)))


def train(out: Path, n: int, k: int, seg_minutes: float, cls_minutes: float) -> tuple[Path, Path, Path]:
    data, test = out / "synth", out / "synth-test"
    if not (data / "train.csv").is_file():
        steelseg("synth", str(data), "--n", str(n), "--quiet")
    if not (test / "train.csv").is_file():
        steelseg("synth", str(test), "--n", "100", "--seed", "1", "--quiet")
    folds = out / "folds.csv"
    if not folds.is_file():
        steelseg("folds", str(data), "--out", str(folds), "--k", str(k), "--quiet")
    seg, cls = out / "segmenter", out / "classifier"
    for run, recipe, minutes in ((seg, ["--config", "demo"], seg_minutes), (cls, CLS, cls_minutes)):
        if (run / "cv.csv").is_file():
            print(f"{run} has finished: not training again")
            continue
        steelseg(
            "train",
            str(data),
            "--out",
            str(run),
            *recipe,
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
    return seg, cls, test


def evaluate(seg: Path, cls: Path, test: Path, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from engine_figures import row, test_dice

    for tuned in (seg / "postprocess.json", out / "gated" / "postprocess.json"):
        if tuned.exists():
            tuned.unlink()  # "before" means the folds' own post-processing
    best = max(sorted(seg.glob("fold-*")), key=lambda f: json.loads((f / "summary.json").read_text())["val_dice_tuned"])
    rows = [  # one segmenter: the fold best on its own validation images
        row(f"one segmenter ({best.name}), its validation-tuned post-processing", test_dice([best], test)),
        row("segmenter folds + flip TTA (both)", test_dice([seg], test, tta="both")),
    ]
    steelseg("tune", str(seg), "--quiet")
    rows += [
        row(f"one segmenter ({best.name}), after tune", test_dice([best], test, postprocess=seg / "postprocess.json")),
        row("segmenter folds + flip TTA (both), after tune", test_dice([seg], test, tta="both")),
    ]
    steelseg("tune", str(seg), str(cls), "--out", str(out / "gated"), "--quiet")
    ensemble = out / "gated" / "ensemble.yaml"
    rows += [
        row("segmenter folds + classifier folds (gate), after tune", test_dice([ensemble], test)),
        row("... + flip TTA (both)", test_dice([ensemble], test, tta="both")),
    ]
    print(f"\n{'100 held-out synthetic strips: mean Dice':<52}{'mean':>10}  per class")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/synth-engine"))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seg-minutes", type=float, default=4)
    parser.add_argument("--cls-minutes", type=float, default=3)
    parser.add_argument("--phase", choices=["train", "evaluate", "all"], default="all")
    args = parser.parse_args()
    start = time.monotonic()
    seg, cls, test = train(args.out, args.n, args.k, args.seg_minutes, args.cls_minutes)
    print(f"training: {(time.monotonic() - start) / 60:.1f} min", flush=True)
    if args.phase != "train":
        evaluate(seg, cls, test, args.out)


if __name__ == "__main__":
    main()
