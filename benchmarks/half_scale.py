"""What the fast path's half resolution costs in accuracy: the default U-Net / resnet18 at full
resolution against the slim-decoder U-Net at ``model.input_scale=0.5`` (the network that
``int8_speed.py`` runs at 15 strips/s under openvino-int8), each trained for the same minutes on
the same synthetic half-clean strips (``fit_data.py``'s half-clean: 400 to train on, 100 held
out), scored on the held-out strips: competition and dataset Dice, and prediction time.

    python benchmarks/half_scale.py [--minutes 12] [--out runs/half-scale]

Same minutes, not same epochs: the half-resolution network sees about four times as many
strips in that time; that is what a user with a fixed training budget gets.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE))

from engine_figures import holdout_scores  # noqa: E402
from fit_data import prepare  # noqa: E402

SLIM = "model.arch_params={decoder_channels: [128, 64, 32, 16, 8]}"
RECIPES = {
    "default U-Net / resnet18, full resolution": [],
    "slim decoder, input_scale 0.5 (the fast path)": [SLIM, "model.input_scale=0.5"],
}


def train(data: Path, run: Path, minutes: float, settings: list[str]) -> None:
    if (run / "finished").is_file():
        return
    command = [sys.executable, "-m", "steelseg", "train", str(data), "--out", str(run), "--quiet"]
    command += ["--max-minutes", str(minutes), "--set", "train.epochs=1000"]
    command += [arg for value in settings for arg in ("--set", value)]
    subprocess.run(command, check=True, env=dict(os.environ, PYTHONPATH=str(SRC)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12)
    parser.add_argument("--out", type=Path, default=Path("runs/half-scale"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_data, test_data = prepare("half-clean", args.out, HERE.parents[1] / "shared" / "data")
    rows = []
    for i, (name, settings) in enumerate(RECIPES.items()):
        run = args.out / f"run-{i}"
        train(train_data, run, args.minutes, settings)
        result, seconds, images = holdout_scores([run], test_data)
        rows.append((name, result, seconds / images))
    print(f"\n{images} held-out half-clean strips, {args.minutes:g} min of training each")
    print(f"{'':<48}{'competition':>12}{'dataset':>9}{'s/strip':>9}  per class (dataset)")
    for name, result, per_image in rows:
        per_class = " ".join(f"{v:.4f}" for v in result.dataset_dice)
        print(f"{name:<48}{result.mean_dice:>12.4f}{result.dataset_dice.mean():>9.4f}{per_image:>9.3f}  {per_class}")


if __name__ == "__main__":
    main()
