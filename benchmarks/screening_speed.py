"""Screening speed: a classifier's time per 256x1600 strip next to the segmenter's, and what screening saves.

    python benchmarks/screening_speed.py [--data ../shared/data/severstal-mini] [--batch 4] [--trials 3]
                                         [--screened-clean 1.0] [--lost-defective 0.177]
                                         [--clean-share 0.5] [--n 5506]

(a) One run directory per network, random weights (speed does not depend on them; see
predict_throughput.py, whose ``make_run`` builds them and exports each to ONNX):

- ``first_place_cls_resnet34`` and ``first_place_cls_effb1``: the 1st place classifiers
  (3 input channels, full 256x1600 strips at inference), timed on ``Predictor.predict_scores``;
- ``default``: the U-Net / resnet18 segmenter, timed on ``Predictor.predict_proba`` then
  post-processing and run-length encoding of every mask (what segmenting an image costs after
  it is decoded); its last layer's bias is -3, so its masks cover a few percent of the pixels
  as a trained model's do, not ~90% as a random one's.

Each on the auto backend (torch-amp here: bf16 autocast) and onnx (``export_onnx``), on the
real severstal-mini strips, preloaded and decoded, in batches of ``--batch``; best of
``--trials`` passes after a warm-up. Decoding a strip is timed apart: both pipelines pay it once.

(b) For ``--n`` strips of which ``--clean-share`` are clean: segmenting them all against
classifying them all and segmenting only the strips the classifier lets through. The screening
rates are measured, not assumed: ``--screened-clean`` (share of clean strips screened out) and
``--lost-defective`` (share of defective strips screened out, i.e. defects lost); the defaults
are the synthetic measurement below: first_place_cls_resnet34 at input_scale 0.5, trained on
``steelseg synth --n 400`` (label thresholds tuned on its 80 validation strips), scored on 200
fresh strips (seed 1; 87 clean, 113 defective): 100% of the clean strips screened out, 22.1% of
the defective ones lost (on the validation strips the thresholds were tuned on: 100% and 13.6%).
Pass the rates of your own classifier (``steelseg score`` on held-out strips, or the run's
summary.json "screening": clean_screened_out, defective_screened_out).

The synthetic measurement behind the defaults: ``python benchmarks/synth_screening.py``
(~11 minutes on 2 idle CPU cores; with another process keeping one core busy, set
OMP_NUM_THREADS=1, else torch's two threads run 5-8x slower).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# This repository's src, whichever python runs the script: the shared environment holds only
# the dependencies, never steelseg itself (see Makefile).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # predict_throughput's make_run
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

from predict_throughput import make_run  # noqa: E402
from steelseg.core import rle  # noqa: E402
from steelseg.files.images import read_gray, require_images  # noqa: E402
from steelseg.inference.backends import resolve_backend  # noqa: E402
from steelseg.inference.predictor import Predictor  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal-mini"
SEGMENTER = "default"
CLASSIFIERS = ["first_place_cls_resnet34", "first_place_cls_effb1"]
# The synthetic measurement in the docstring: share of clean / defective held-out strips
# screened out at the label thresholds tuned on validation (87 clean, 113 defective).
SYNTH_SCREENED_CLEAN = 1.0
SYNTH_LOST_DEFECTIVE = 25 / 113


def classify(predictor: Predictor, images: np.ndarray) -> None:
    predictor.predict_scores(images)


def segment(predictor: Predictor, images: np.ndarray) -> None:
    for probs in predictor.predict_proba(images):
        for mask in predictor.postprocess(probs):
            rle.encode(mask)


def seconds_per_image(work, predictor: Predictor, pictures: np.ndarray, batch: int, trials: int) -> float:
    """Best of ``trials`` passes over ``pictures`` in batches, after a warm-up batch: a shared
    2-core machine is noisy, and the best pass is the one least disturbed."""
    work(predictor, pictures[:batch])  # first-call allocations, oneDNN kernel choice
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for i in range(0, len(pictures), batch):
            work(predictor, pictures[i : i + batch])
        best = min(best, (time.perf_counter() - start) / len(pictures))
    return best


def decode_seconds(paths: list[Path], trials: int) -> float:
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for path in paths:
            read_gray(path)
        best = min(best, (time.perf_counter() - start) / len(paths))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--trials", type=int, default=3, help="passes over the strips per measurement; the best counts")
    parser.add_argument(
        "--screened-clean",
        type=float,
        default=SYNTH_SCREENED_CLEAN,
        help="measured share of clean strips the classifier screens out",
    )
    parser.add_argument(
        "--lost-defective",
        type=float,
        default=SYNTH_LOST_DEFECTIVE,
        help="measured share of defective strips the classifier screens out (lost)",
    )
    parser.add_argument("--clean-share", type=float, default=0.5, help="share of clean strips in the set (default 0.5)")
    parser.add_argument("--n", type=int, default=5506, help="strips in the set (default: Kaggle's 5,506 test strips)")
    args = parser.parse_args()
    images = args.data / "train_images"
    if not images.is_dir():
        sys.exit(f"severstal-mini not found at {args.data}")
    paths = require_images(images)
    pictures = np.stack([read_gray(p) for p in paths])
    import torch

    default = resolve_backend("auto", "cpu")
    backends = [default, "onnx"]
    print(
        f"{len(paths)} real strips of {pictures.shape[1]}x{pictures.shape[2]}, batch {args.batch}, "
        f"best of {args.trials}; "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"auto backend: {default}"
    )
    decode = decode_seconds(paths, args.trials)
    times: dict[tuple[str, str], float] = {}
    details: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in [SEGMENTER, *CLASSIFIERS]:
            run = Path(tmp) / recipe
            make_run(run, recipe, -3.0 if recipe == SEGMENTER else None)
            work = segment if recipe == SEGMENTER else classify
            for backend in backends:
                predictor = Predictor.from_run_dir(run, backend=backend, device="cpu", batch_size=args.batch)
                times[recipe, backend] = seconds_per_image(work, predictor, pictures, args.batch, args.trials)
                details[recipe, backend] = predictor.describe()
                print(f"  {recipe} on {backend}: {1000 * times[recipe, backend]:.0f} ms per strip", flush=True)

    print(f"\n(a) time per 256x1600 strip, decoded (decoding one: {1000 * decode:.1f} ms, not included)")
    print(f"{'network':<26}{'task':<10}{'backend':<11}{'ms/strip':>10}{'strips/s':>10}{'/ segmenter':>13}  details")
    for recipe in [SEGMENTER, *CLASSIFIERS]:
        task = "segment" if recipe == SEGMENTER else "classify"
        for backend in backends:
            t = times[recipe, backend]
            ratio = t / times[SEGMENTER, backend]
            print(
                f"{recipe:<26}{task:<10}{backend:<11}{1000 * t:>10.0f}{1 / t:>10.2f}{ratio:>12.2f}x  "
                f"{details[recipe, backend]}"
            )
    print("segmenter: predict_proba + post-processing + RLE of 4 masks; classifiers: predict_scores")

    n, s = args.n, args.clean_share
    clean, defective = round(n * s), n - round(n * s)
    passed = clean * (1 - args.screened_clean) + defective * (1 - args.lost_defective)
    rates = "defaults: the synthetic measurement"
    if (args.screened_clean, args.lost_defective) != (SYNTH_SCREENED_CLEAN, SYNTH_LOST_DEFECTIVE):
        rates = "given"
    print(
        f"\n(b) {n} strips, {s:.0%} clean ({clean} clean, {defective} defective); screening rates used: "
        f"{args.screened_clean:.1%} of clean strips screened out, {args.lost_defective:.1%} of defective strips lost "
        f"({rates})"
    )
    print(
        f"segmented after screening: {passed:.0f} of {n} strips ({passed / n:.1%}); "
        f"defective strips lost: {defective * args.lost_defective:.0f}"
    )
    print(f"{'classifier':<26}{'backend':<11}{'segment all':>13}{'screen + segment':>18}{'saved':>9}{'break-even':>12}")
    for recipe in CLASSIFIERS:
        for backend in backends:
            seg, cls = times[SEGMENTER, backend], times[recipe, backend]
            all_minutes = n * (decode + seg) / 60
            screened_minutes = (n * (decode + cls) + passed * seg) / 60
            saved = 1 - screened_minutes / all_minutes
            # screening pays when the classifier costs less than the segmentation it skips
            break_even = cls / seg
            print(
                f"{recipe:<26}{backend:<11}{all_minutes:>9.1f} min{screened_minutes:>14.1f} min{saved:>9.1%}"
                f"{break_even:>11.0%}"
            )
    print(
        "break-even: the share of strips screening must skip to pay for classifying them all "
        "(classifier / segmenter time)"
    )


if __name__ == "__main__":
    main()
