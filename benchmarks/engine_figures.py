"""Shared by neu_engine.py and synth_engine.py: the competition mean Dice of a model (a run,
a folder of runs or an ensemble file, with TTA and a post-processing file) on a labelled
folder, through the same ``Predictor`` as ``steelseg predict``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from steelseg.core.metrics import DiceAccumulator  # noqa: E402
from steelseg.files.datasets import open_dataset  # noqa: E402
from steelseg.inference.predictor import Predictor  # noqa: E402


def holdout_scores(
    models: list[Path],
    test_data: Path,
    class_names: list[str] | None = None,
    tta: str | None = None,
    postprocess: Path | None = None,
    check_size: bool = True,
):
    """(the ``DiceAccumulator``'s scores, seconds of prediction, images) of ``models`` on every
    image of the labelled folder ``test_data``."""
    import numpy as np

    predictor = Predictor.load(models, tta=tta, postprocess=postprocess, batch_size=8, check_size=check_size)
    dataset = open_dataset(test_data, class_names=class_names)
    start = time.monotonic()
    predictions = predictor.predict_folder(dataset.image_paths[0].parent, progress=False)
    seconds = time.monotonic() - start
    scores = DiceAccumulator(predictor.num_classes)
    for i, image_id in enumerate(dataset.image_ids):
        image, truth = dataset.load(i)
        pred = [predictions.mask(image_id, c, image.shape) for c in range(1, predictor.num_classes + 1)]
        scores.update(np.stack(pred), truth)
    return scores.result(), seconds, len(dataset)


def test_dice(
    models: list[Path],
    test_data: Path,
    class_names: list[str] | None = None,
    tta: str | None = None,
    postprocess: Path | None = None,
) -> tuple[float, list[float], float]:
    """(mean Dice, per-class Dice, seconds) of ``models`` on every image of ``test_data``."""
    result, seconds, _ = holdout_scores(models, test_data, class_names, tta, postprocess)
    return result.mean_dice, result.class_dice.round(4).tolist(), seconds


def row(name: str, figures: tuple[float, list[float], float]) -> str:
    dice, per_class, seconds = figures
    return f"{name:<52}{dice:>10.4f}  {' '.join(f'{d:.4f}' for d in per_class)}  ({seconds:.0f} s)"
