"""Distillation on real steel data (NEU-Seg): a resnet18 U-Net student distilled from the fold
ensemble with flip TTA, against that teacher and a student of the same recipe trained on the
masks alone, on the 20% hold-out of ``neu_engine.py`` (its split function, seed 0).

    python benchmarks/distill_benchmark.py [--data ../shared/data/neu-seg] [--k 3] [--minutes 6]
                                           [--out runs/neu-distill] [--quick]
    python benchmarks/distill_benchmark.py --half-clean runs/fit-half-clean-1k-60 [--from-member]
                                           [--student two_head|segment] [--minutes 10]

Every figure is the competition mean Dice on the held-out images and the seconds per image of
prediction (CPU unless a GPU is visible). The teacher is ``neu_engine``'s fold ensemble (trained
here if ``OUT/default`` has not finished); the students get ``--minutes`` each. ``--quick`` runs
the whole path in a few minutes on a subset (300 training images, 100 held-out, 2 folds, 0.5 min
per run): it shows the path works, not what distillation gains.

``--half-clean FIT_BENCH [--from-member]`` instead takes the folder of ``fit_benchmark.py half-clean`` (its fit's
U-Net and classifier screen members, its training and held-out synthetic strips). The
teacher is both members gated and tuned on their out-of-fold files (``steelseg tune``), so a
classifier is in it; the students are two-headed U-Nets (a class head learns the teacher's class
scores; ``--student segment``: plain U-Nets, the teacher's knowledge in the pixels alone), distilled
or trained on the masks alone for ``--minutes`` each, scored on the held-out
strips with competition and dataset Dice. Both students train as the teacher's U-Net did (its
input scale, crop, sampler, loss, epoch length, cosine schedule), for as many epochs as the
minutes hold at its seconds per epoch. ``--from-member`` starts both students from the weights of
the teacher's own trained U-Net fold model (its class head fresh), at a fifth of its learning
rate: the student then has to learn what the screen adds, not the whole segmenter again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from neu_engine import CLASSES, DEFAULT_DATA, SRC, TRAIN, split_holdout, steelseg, train  # noqa: E402

NAMES = ["inclusion", "patches", "scratches"]
STUDENT_NAMES = {"two_head": "two-headed student", "segment": "U-Net student"}
STUDENT = [*TRAIN, "--set", "train.epochs=1000"]  # the default recipe (U-Net resnet18), whole images


def subset(folder: Path, out: Path, count: int) -> Path:
    """The first ``count`` images of a mask folder (and their masks), linked into ``out``."""
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for image in sorted((folder / "images").iterdir())[:count]:
        mask = Path(image.name).stem + ".png"
        for sub, name in (("images", image.name), ("masks", mask)):
            if not (out / sub / name).exists():
                (out / sub / name).symlink_to((folder / sub / name).resolve())
    return out


def students(cv_data: Path, teacher: Path, out: Path, minutes: float) -> tuple[Path, Path]:
    """(the distilled student, the student of the masks alone), each trained unless finished."""
    limit = ["--set", f"train.max_minutes={minutes}", "--quiet"]
    distilled, plain = out / "student-distilled", out / "student-masks"
    if not (distilled / "finished").is_file():
        steelseg("distill", str(teacher), str(cv_data), "--out", str(distilled), "--tta", "both", *STUDENT, *limit)
    if not (plain / "finished").is_file():
        steelseg("train", str(cv_data), "--out", str(plain), *STUDENT, *limit)
    return distilled, plain


def half_clean(bench: Path, minutes: float, from_member: bool = False, task: str = "two_head") -> None:
    """The ``--half-clean`` comparison (module docstring), in ``BENCH/distill``; with
    ``from_member`` both students start from the weights of the teacher's trained U-Net fold model
    (a two-headed student's class head fresh) instead of from scratch, in
    ``BENCH/distill-from-member``; a ``task`` other than two_head adds ``-TASK`` to the folder.
    Where today's ``steelseg tune`` writes another ensemble file for the same members than the
    teacher's (a teacher tuned before tune kept the members' TTA), that one is scored too."""
    from neu_engine import SRC

    sys.path.insert(0, str(SRC))
    from engine_figures import holdout_scores

    fit, out = bench / "fit", bench / "distill"
    train_data, test_data = bench / "data" / "train", bench / "data" / "test"
    teacher, retuned = out / "teacher", out / "teacher-now"
    for folder in (teacher, retuned):
        if not (folder / "ensemble.yaml").is_file():
            steelseg("tune", str(fit / "members" / "unet"), str(fit / "members" / "screen"), "--out", str(folder))
    folds = sorted(path.parent for path in (fit / "members" / "unet").glob("fold-*/finished"))
    two_head = ["--set", f"model.task={task}", *student_settings(folds[0], minutes, from_member)]
    if from_member:
        two_head += ["--set", f"model.init_from={folds[0].resolve()}"]
        out = bench / "distill-from-member"
        print(f"both students start from {folds[0]} (the teacher's U-Net)")
    out = out if task == "two_head" else out.with_name(f"{out.name}-{task}")
    distilled, plain = out / "student-distilled", out / "student-masks"
    start = time.monotonic()
    if not (distilled / "finished").is_file():
        teachers = [str(teacher / "ensemble.yaml"), str(train_data)]
        steelseg("distill", *teachers, "--out", str(distilled), *two_head, "--quiet")
    if not (plain / "finished").is_file():
        steelseg("train", str(train_data), "--out", str(plain), *two_head, "--quiet")
    print(f"students: {(time.monotonic() - start) / 60:.1f} min")
    images = len(list((test_data / "train_images").iterdir()))
    shipped = json.loads((fit / "selection.json").read_text())["shipped"]["members"]
    members = {name: yaml.safe_load((name / "ensemble.yaml").read_text())["members"] for name in (teacher, retuned)}
    views = members[teacher][0].get("tta", "none")
    rows = [(f"teacher: U-Net + classifier screen, tuned, TTA {views}", [teacher / "ensemble.yaml"], None)]
    if members[retuned] != members[teacher]:
        views = members[retuned][0].get("tta", "none")
        rows.append((f"the same members tuned by today's tune, TTA {views}", [retuned / "ensemble.yaml"], None))
    rows += [
        (f"fit's shipped system ({' + '.join(shipped)})", [fit], None),
        (f"{STUDENT_NAMES[task]} distilled from the teacher", [distilled], None),
        (f"{STUDENT_NAMES[task]} of the masks alone", [plain], None),
    ]
    print(f"\n{'held-out half-clean strips (' + str(images) + ')':<56}{'competition':>12}{'dataset':>9}  ms/image")
    for name, models, tta in rows:
        result, seconds, _ = holdout_scores(models, test_data, None, tta, None)
        dataset = float(result.dataset_dice.mean())
        print(f"{name:<56}{result.mean_dice:>12.4f}{dataset:>9.4f}  {1000 * seconds / images:8.1f}")


def student_settings(run: Path, minutes: float, fine_tune: bool) -> list[str]:
    """``--set`` options for a student to train as the teacher's U-Net ``run`` did: its input
    scale and crop (a plan halves the resolution where the budget is short for the hardware),
    sampler, batch, loss, epoch length and cosine schedule, with as many epochs as 90% of
    ``minutes`` hold at ``run``'s own seconds per epoch, so the learning rate decays within the
    minutes. With ``fine_tune`` (the student starts from ``run``'s weights) a fifth of its
    learning rate: the full rate on trained weights undoes their training first (measured
    2026-12-03: 2 epochs at 1e-3 took the teacher's U-Net from 0.987 to 0.911)."""
    from steelseg.reports.curves import read_metrics

    config = yaml.safe_load((run / "config.yaml").read_text())
    seconds = read_metrics(run / "metrics.csv")[0]["seconds"]  # since the start, at each epoch's end
    epoch_s = float(seconds[-1]) / len(seconds)
    data, train = config["data"], config["train"]
    settings = {
        "model.input_scale": config["model"]["input_scale"],
        **{f"data.{key}": data[key] for key in ("crop_height", "crop_width", "sampler", "batch_size")},
        **{f"train.{key}": train[key] for key in ("loss", "batches_per_epoch", "val_batches", "scheduler")},
        "train.epochs": max(1, int(0.9 * minutes * 60 // epoch_s)),
        "train.max_minutes": minutes,
        "train.lr": train["lr"] / 5 if fine_tune else train["lr"],
    }
    epochs, lr = settings["train.epochs"], settings["train.lr"]
    print(f"students: {epochs} epochs of {epoch_s:.0f} s (the teacher U-Net's), learning rate {lr:g}")
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--out", type=Path, help="default runs/neu-distill (--quick: runs/neu-distill-quick)")
    parser.add_argument("--quick", action="store_true", help="a few minutes on a subset: the path, not the gain")
    parser.add_argument("--half-clean", type=Path, metavar="FIT_BENCH", help="fit_benchmark.py half-clean's folder")
    parser.add_argument(
        "--from-member", action="store_true", help="--half-clean: students start from the teacher's U-Net weights"
    )
    parser.add_argument(
        "--student", choices=sorted(STUDENT_NAMES), default="two_head", help="--half-clean: the students' model.task"
    )
    args = parser.parse_args()
    if args.half_clean:
        return half_clean(args.half_clean, args.minutes, args.from_member, args.student)
    if not (args.data / "masks").is_dir():
        sys.exit(f"NEU-Seg not found at {args.data}")
    args.out = args.out or Path("runs/neu-distill-quick" if args.quick else "runs/neu-distill")
    cv_data, test_data = split_holdout(args.data, args.out)
    if args.quick:
        cv_data = subset(cv_data, args.out / "quick-cv", 300)
        test_data = subset(test_data, args.out / "quick-test", 100)
        args.k, args.minutes = 2, 0.5
    start = time.monotonic()
    teacher = train(cv_data, args.out, args.k, args.minutes)
    distilled, plain = students(cv_data, teacher, args.out, args.minutes)
    print(f"training: {(time.monotonic() - start) / 60:.1f} min")
    report(teacher, distilled, plain, test_data, len(list((test_data / "images").iterdir())))


def report(teacher: Path, distilled: Path, plain: Path, test_data: Path, images: int) -> None:
    sys.path.insert(0, str(SRC))
    from engine_figures import test_dice

    rows = [
        (f"teacher: {len(list(teacher.glob('fold-*')))}-fold ensemble + flip TTA (both)", [teacher], "both"),
        ("student distilled from it (U-Net resnet18)", [distilled], None),
        ("student of the masks alone (same recipe)", [plain], None),
    ]
    print(f"\n{'held-out NEU-Seg ' + CLASSES:<56}{'mean Dice':>10}  per class            ms/image")
    for name, models, tta in rows:
        dice, per_class, seconds = test_dice(models, test_data, NAMES, tta=tta)
        print(f"{name:<56}{dice:>10.4f}  {' '.join(f'{d:.4f}' for d in per_class)}  {1000 * seconds / images:8.1f}")


if __name__ == "__main__":
    main()
