"""INT8 and the fastest backend on the 20 real 256x1600 strips: images/s, agreement, Dice.

    python benchmarks/int8_speed.py [--data ../shared/data/severstal-mini] [--run RUN]
        [--train-minutes 4] [--copies 3] [--trials 3] [--batch 4] [--set KEY=VALUE ...]

A trained network is needed (a random one's masks say nothing about agreement): ``--run`` (if it
has not finished, it is trained there first, so later calls reuse it), or
the default recipe (U-Net / resnet18) trained here with ``steelseg train --max-minutes`` on 15
of the strips (``--set`` changes that recipe, e.g. a slimmer decoder:
``--set "model.arch_params={decoder_channels: [128, 64, 32, 16, 8]}"``). The other 5 (every
4th by name) are held out: neither training nor calibration sees them. Then ``steelseg export
--int8`` calibrates on the 15 and checks on the 5, and every backend predicts all 20 strips
(each ``--copies`` times per pass, best of ``--trials`` passes) end to end as ``steelseg
predict`` does (read, decode, network, post-processing, RLE, CSV):

    images/s; against torch fp32 over the 20 strips: pixel agreement of the masks, their Dice
    over the marked pixels (agreement alone says little when the masks are nearly empty), mean
    and largest probability difference; competition Dice on the 5 held-out strips and its
    difference from fp32's; minutes for Kaggle's 5,506.

Last, which backend ``--backend auto`` picks here, and why.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from steelseg import threads  # noqa: E402

threads.configure()  # before torch loads, as the steelseg command does

import numpy as np  # noqa: E402

from predict_throughput import DEFAULT_DATA, end_to_end_rate  # noqa: E402
from steelseg.core.metrics import DiceAccumulator  # noqa: E402
from steelseg.core.parity import compare  # noqa: E402
from steelseg.files.datasets import open_dataset, write_class_names  # noqa: E402
from steelseg.files.images import read_gray  # noqa: E402
from steelseg.inference.predictor import Predictor  # noqa: E402
from steelseg.inference.quantize import export_int8  # noqa: E402

BACKENDS = ["torch", "torch-amp", "onnx", "onnx-int8", "openvino", "openvino-int8"]
KAGGLE_TEST = 5506


def split(data: Path, root: Path) -> tuple[Path, Path]:
    """(training folder of 15 strips, held-out folder of 5), both in the competition layout."""
    with open(data / "train.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header, rows = rows[0], rows[1:]
    names = sorted(p.name for p in (data / "train_images").iterdir())
    held = set(names[3::4])
    folders = {}
    for part, keep in (("fit", lambda n: n not in held), ("held-out", lambda n: n in held)):
        folder = root / part
        (folder / "train_images").mkdir(parents=True)
        for name in filter(keep, names):
            shutil.copyfile(data / "train_images" / name, folder / "train_images" / name)
        with open(folder / "train.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([header] + [r for r in rows if keep(r[0])])
        # the competition's four classes, though the 15 strips may hold no class 4 (the CSV alone
        # would then give a 3-class model that cannot be checked on the held-out strips)
        write_class_names(folder, ["1", "2", "3", "4"])
        folders[part] = folder
    return folders["fit"], folders["held-out"]


def train(fit: Path, run: Path, minutes: float, settings: list[str]) -> None:
    command = [sys.executable, "-m", "steelseg", "train", str(fit), "--out", str(run), "--quiet"]
    command += ["--max-minutes", str(minutes), "--set", "train.epochs=1000", "--set", "data.val_fraction=0.2"]
    command += [arg for value in settings for arg in ("--set", value)]
    subprocess.run(command, check=True, env=dict(os.environ, PYTHONPATH=str(HERE.parent / "src")))


def masks_and_probabilities(predictor: Predictor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    outputs = [predictor.predict_outputs(image[None])[0] for image in images]
    return np.stack([predictor.masks(o) for o in outputs]), np.stack([o.pixels for o in outputs])


def held_out_dice(predictor: Predictor, held: Path) -> float:
    dataset = open_dataset(held)
    scores = DiceAccumulator(dataset.num_classes)
    for i in range(len(dataset)):
        image, truth = dataset.load(i)
        scores.update(predictor.masks(predictor.predict_outputs(image[None])[0]), truth.astype(bool))
    return scores.result().mean_dice


def measure(run: Path, data: Path, held: Path, folder: Path, args) -> dict:
    strips = np.stack([read_gray(p) for p in sorted((data / "train_images").iterdir())])
    rows, reference = {}, None
    for name in args.backends:
        predictor = Predictor.from_run_dir(run, backend=name, device="cpu", batch_size=args.batch)
        predictor.predict_outputs(strips[: args.batch])  # warm-up
        rate = max(end_to_end_rate(predictor, folder, folder.parent / "s.csv") for _ in range(args.trials))
        these = masks_and_probabilities(predictor, strips)
        reference = these if reference is None else reference
        vs = compare(reference[0], these[0], reference[1], these[1])
        rows[name] = (rate, vs, held_out_dice(predictor, held), predictor.describe())
    print(f"fp32 marks {100 * reference[0].mean():.3f}% of the pixels of the 20 strips (the truth: 2.6%)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--run",
        type=Path,
        help="a trained run of 256x1600 strips; trained there first if unfinished (default: a temporary one)",
    )
    parser.add_argument("--train-minutes", type=float, default=4.0)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a training override")
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=BACKENDS, help="torch first: the others are compared with it"
    )
    args = parser.parse_args()
    if not (args.data / "train_images").is_dir():
        sys.exit(f"severstal-mini not found at {args.data}")
    print(f"threads: {threads.choose().describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fit, held = split(args.data, tmp)
        run = tmp / "run"
        if args.run:
            if not (args.run / "finished").is_file():  # trained there once, reused by later calls
                train(fit, args.run, args.train_minutes, args.set)
            skip = shutil.ignore_patterns("*.ckpt", "oof.npz", "top", "stages", "*.onnx", "backend.json")
            shutil.copytree(args.run, run, ignore=skip)
        else:
            train(fit, run, args.train_minutes, args.set)
        print(export_int8(run, fit / "train_images", check=held, enforce=False).report())
        folder = tmp / "strips"
        folder.mkdir()
        for copy in range(args.copies):
            for path in (args.data / "train_images").iterdir():
                shutil.copyfile(path, folder / f"{copy}-{path.name}")
        rows = measure(run, args.data, held, folder, args)
        auto = Predictor.from_run_dir(run, device="cpu", batch_size=args.batch)
    amp, fp32_dice = rows.get("torch-amp", rows["torch"])[0], rows["torch"][2]
    versus = "/ torch-amp" if "torch-amp" in rows else "/ torch"
    print(
        f"\n{'backend':<15}{'images/s':>9}{versus:>12}{'agree':>9}{'mask Dice':>10}{'mean|dp|':>10}"
        f"{'max|dp|':>9}{'held-out Dice':>15}{'vs fp32':>9}{'5,506 strips':>14}{'parity':>8}  details"
    )
    for name, (rate, vs, dice, description) in rows.items():
        print(
            f"{name:<15}{rate:>9.2f}{rate / amp:>11.2f}x{100 * vs.agreement:>8.2f}%{_number(vs.dice):>10}"
            f"{vs.mean_diff:>10.5f}{vs.max_diff:>9.3f}{dice:>15.4f}{dice - fp32_dice:>+9.4f}"
            f"{KAGGLE_TEST / rate / 60:>10.1f} min{'passes' if vs.passes else 'FAILS':>8}  {description}"
        )
    print(f"\n--backend auto here: {auto.backend.name}; {' '.join(auto.backend_notes())}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
