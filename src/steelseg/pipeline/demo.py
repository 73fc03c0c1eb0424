"""``steelseg demo``: the whole path on synthetic strips, in a few minutes on a laptop CPU.

synthesise train + separate test strips -> train -> predict the test set -> score it next to
the all-empty submission -> overlay pictures of truth vs prediction.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from steelseg.config import Config, load_config
from steelseg.errors import OutputExistsError
from steelseg.files import rundir, synth
from steelseg.files.annotations import Annotations, read_annotations
from steelseg.files.atomic import write_text
from steelseg.files.images import read_gray
from steelseg.files.overlay import save_png, truth_vs_prediction
from steelseg.files.scoring import format_scores, score_annotations
from steelseg.files.submission import write_submission
from steelseg.inference.predictor import Predictor

SHAPE = (synth.HEIGHT, synth.WIDTH)


def run_demo(
    out: str | os.PathLike,
    n_train: int = 240,
    n_test: int = 60,
    config: Config | None = None,
    n_overlays: int = 8,
    progress: bool = True,
    say=print,
) -> dict:
    """Run the demo into ``out``; returns the test scores of the model and of all-empty."""
    out = Path(out)
    started = time.monotonic()
    config = config or load_config("demo")
    train_dir, test_dir, run_dir = out / "data" / "train", out / "data" / "test", out / "run"
    if (run_dir / rundir.CONFIG).exists():
        raise OutputExistsError(f"{out} holds an earlier demo; remove it or pick another --out")
    say(f"[1/4] synthesising {n_train} training and {n_test} test strips in {out / 'data'}")
    synth.write_dataset(train_dir, n_train, seed=0, progress=progress)
    synth.write_dataset(test_dir, n_test, seed=1, progress=progress)

    say(f"[2/4] training {config.model.arch}-{config.model.encoder_name} (at most {config.train.max_minutes} min)")
    from steelseg.training.fit import train  # Lightning stays out of the prediction path

    config = config.model_copy(update={"data": config.data.model_copy(update={"root": str(train_dir)})})
    summary = train(config, run_dir, progress=progress)
    say(f"      best epoch {summary.epoch}: validation mean Dice {summary.val_dice_tuned:.4f}")

    say("[3/4] predicting the test strips")
    predictor = Predictor.from_run_dir(run_dir)
    predictions = predictor.predict_folder(test_dir / "train_images", progress=progress)
    write_submission(out / "submission.csv", predictions, predictor.num_classes)

    say("[4/4] scoring")
    truth, images, classes = read_annotations(test_dir / "train.csv"), predictions.image_ids, predictor.num_classes
    scores = score_annotations(truth, predictions, classes, SHAPE, images)
    baseline = score_annotations(truth, Annotations(), classes, SHAPE, images)  # all-empty submission
    table = format_scores(scores, predictor.class_names, baseline)
    write_overlays(out / "overlays", test_dir / "train_images", truth, predictions, predictor.class_names, n_overlays)
    result = {
        "mean_dice": scores.mean_dice,
        "all_empty_mean_dice": baseline.mean_dice,
        "class_dice": scores.class_dice.tolist(),
        "dataset_iou": scores.dataset_iou.tolist(),
        "minutes": round((time.monotonic() - started) / 60, 2),
        "run_dir": str(run_dir),
    }
    write_text(out / "scores.json", json.dumps(result, indent=2) + "\n")
    say(table)
    say(
        f"mean Dice {scores.mean_dice:.4f} vs all-empty {baseline.mean_dice:.4f} "
        f"({result['minutes']} min). Submission: {out / 'submission.csv'}; pictures: {out / 'overlays'}"
    )
    return result


def write_overlays(
    folder: Path, image_dir: Path, truth: Annotations, predictions: Annotations, class_names: list[str], n: int
) -> None:
    """Truth-vs-prediction pictures of ``n`` test strips: three quarters with defects, the rest clean."""
    defective = {image_id for image_id, _ in truth.encoded}
    with_defects = [i for i in predictions.image_ids if i in defective]
    clean = [i for i in predictions.image_ids if i not in defective]
    for image_id in with_defects[: n - n // 4] + clean[: n // 4]:
        image = read_gray(image_dir / image_id)
        true_masks = truth.masks(image_id, len(class_names), image.shape)
        pred_masks = predictions.masks(image_id, len(class_names), image.shape)
        picture = truth_vs_prediction(image, true_masks, pred_masks, image_id, class_names)
        save_png(folder / f"{Path(image_id).stem}.png", picture)
