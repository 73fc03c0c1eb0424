"""The ``steelseg`` command: parse arguments, call one library function, print."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    from steelseg.errors import SteelsegError

    try:
        args.run(args)
    except SteelsegError as err:
        print(f"steelseg {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


def _synth(args) -> None:
    from steelseg.files.synth import write_dataset

    out = write_dataset(args.out, args.n, seed=args.seed, progress=not args.quiet)
    print(f"wrote {args.n} strips to {out / 'train_images'} and their masks to {out / 'train.csv'}")


def _train(args) -> None:
    from steelseg.config import load_config
    from steelseg.training.fit import resume, resume_point, train

    if args.resume:
        if (
            args.data
            or args.out
            or args.set
            or args.epochs
            or args.max_minutes
            or args.fold
            or args.folds
            or args.per_class
            or args.skip_bad
        ):
            raise SystemExit("steelseg train --resume RUN_DIR takes nothing else: the run's config.yaml says it all")
        from steelseg.training.cv import cv_resume_point, is_cv_folder, resume_all_folds

        if is_cv_folder(args.resume):  # the output folder of --fold all
            print(cv_resume_point(args.resume), flush=True)
            print(resume_all_folds(args.resume, progress=not args.quiet))
            _print_skipped(args.resume)
            return
        print(resume_point(args.resume), flush=True)
        summary = resume(args.resume, progress=not args.quiet)
        _print_summary(summary, args.resume)
        _print_skipped(args.resume)
        return
    if not args.out:
        raise SystemExit("steelseg train: --out RUN_DIR is required (or --resume RUN_DIR)")
    overrides = list(args.set or [])
    if args.skip_bad:
        overrides.append("data.skip_bad=true")
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.max_minutes:
        overrides.append(f"train.max_minutes={args.max_minutes}")
    if args.folds:
        overrides.append(f"data.folds={args.folds}")
    if args.fold == "all":
        from steelseg.training.cv import train_all_folds

        overrides.append("data.fold=0")  # each fold in turn
        print(train_all_folds(load_config(args.config, overrides), args.out, progress=not args.quiet))
        _print_skipped(args.out)
        return
    if args.fold is not None:
        overrides.append(f"data.fold={args.fold}")
    if args.per_class:
        from steelseg.training.per_class import train_per_class

        print(train_per_class(load_config(args.config, overrides), args.out, progress=not args.quiet))
        _print_skipped(args.out)
        return
    summary = train(load_config(args.config, overrides), args.out, progress=not args.quiet)
    _print_summary(summary, args.out)
    _print_skipped(args.out)


def _print_skipped(out) -> None:
    """With --skip-bad: how many bad rows and images the run left out, and where they are listed."""
    from steelseg.training.data import count_skipped

    count, files = count_skipped(out)
    if files:
        where = files[0] if len(files) == 1 else f"{len(files)} skipped.txt files under {out}"
        plural = "s" if count != 1 else ""
        print(f"--skip-bad: left out {count} bad row{plural} or image{plural} (listed in {where})")


def _print_summary(summary, run_dir) -> None:
    """The best epoch's scores and, when the run scores classes, its screening report."""
    from pathlib import Path

    from steelseg.core.screening import format_report
    from steelseg.files.rundir import GATE

    if summary.task == "classify":  # no masks to score
        what = "presence accuracy (the mean Dice if every mask let through were perfect)"
    else:
        what = "mean Dice"
    print(
        f"best epoch {summary.epoch}: validation {what} {summary.val_dice_tuned:.4f} "
        f"(untuned {summary.val_dice:.4f}); run saved in {run_dir}"
    )
    if summary.screening is not None:
        print(f"screening on the validation images (label thresholds tuned there, saved in {Path(run_dir) / GATE}):")
        print(format_report(summary.screening, summary.class_names))


def _folds(args) -> None:
    from steelseg.config import DataConfig
    from steelseg.files.datasets import open_configured
    from steelseg.files.folds import make_folds, write_folds

    dataset = open_configured(DataConfig(root=args.data, skip_bad=args.skip_bad), progress=not args.quiet)
    table = make_folds(dataset, k=args.k, seed=args.seed, max_distance=args.max_distance, progress=not args.quiet)
    write_folds(args.out, table)
    print(table.summary())
    print(f"wrote {len(table.image_ids)} rows to {args.out}")
    if args.skip_bad:
        print(f"--skip-bad: left out {len(dataset.skipped)} bad rows or images (train with --skip-bad too)")


def _augment_preview(args) -> None:
    from steelseg.config import load_config
    from steelseg.files.datasets import open_configured
    from steelseg.training.preview import write_augment_preview

    config = load_config(args.config, list(args.set or []) + ([f"data.root={args.data}"] if args.data else []))
    data = config.data
    if not data.root:
        raise SystemExit("steelseg augment-preview: give a dataset folder (or data.root in the config)")
    path = write_augment_preview(open_configured(data), data, args.out, n=args.n, seed=args.seed)
    print(f"wrote {args.n} augmented samples to {path}")


def _predict(args) -> None:
    from steelseg.inference import sharding
    from steelseg.inference.predictor import Budget, Predictor
    from steelseg.inference.skipped import SkippedImages

    if args.drop_tta and not args.time_budget:
        raise SystemExit("steelseg predict: error: --drop-tta needs --time-budget MINUTES")
    _check_outputs(args)
    from steelseg.hardware import keep_freed_memory

    keep_freed_memory()  # far fewer page faults per forward: 1.5x faster on a 2-core CPU
    shard = sharding.world()
    predictor = Predictor.load(
        args.models,
        backend=args.backend,
        device=sharding.rank_device(args.device),
        batch_size=args.batch_size,
        check_size=not args.any_size,
        tta=args.tta,
        postprocess=args.postprocess,
        overrides=args.post,
        window=args.window,
        overlap=args.overlap,
    )
    lead = shard is None or shard[0] == 0  # the process that talks and writes
    if not args.quiet and lead:
        print(f"predicting with {predictor.describe()}" + (f", {shard[1]} processes" if shard else ""), flush=True)
        if predictor.has_masks and (len(predictor.members) > 1 or args.post or args.postprocess):
            print("post-processing:\n" + predictor.postprocess.describe(predictor.class_names), flush=True)
    budget = Budget(args.time_budget, args.drop_tta) if args.time_budget else None
    progress = not args.quiet and lead
    skip = SkippedImages() if args.skip_bad else None
    if not predictor.has_masks:  # classifiers only: their class scores are the output
        if args.scores:
            raise SystemExit(
                "steelseg predict: error: a classify run writes its class scores to --out; --scores is for runs with masks"
            )
        if shard:
            raise SystemExit(
                "steelseg predict: error: sharded prediction writes submissions; run classifiers in one process"
            )
        image_ids, scores = predictor.score_folder(args.images, progress=progress, budget=budget, skip=skip)
        _refuse_all_skipped(args.images, image_ids, skip)
        _write_scores(args.out, image_ids, scores, predictor)
        _warn_skipped(
            skip, len(image_ids) + len(skip or ()), f"{args.out} leaves {'it' if len(skip or ()) == 1 else 'them'} out"
        )
        return
    _predict_masks(args, predictor, shard, progress, budget, skip)


def _check_outputs(args) -> None:
    """Found out before any image is predicted, not after."""
    from steelseg.files.submission import check_output_file

    check_output_file(args.out, "--out")
    if args.scores:
        check_output_file(args.scores, "--scores")


def _predict_masks(args, predictor, shard, progress: bool, budget, skip) -> None:
    """The submission (and --scores): sharded, or in one process resumable from the work folder."""
    import numpy as np

    from steelseg.files.images import require_images
    from steelseg.files.submission import with_every_image, write_submission
    from steelseg.inference import resume, sharding

    scores: dict | None = {} if args.scores else None
    work = None
    if shard:
        predictions = sharding.predict_sharded(predictor, args.images, progress, scores, budget, skip)
        if predictions is None:
            return  # not rank 0: its share went to rank 0
        _refuse_all_skipped(args.images, predictions.image_ids, skip)
        image_ids = [p.name for p in require_images(args.images)]
    else:
        candidates, work = resume.predict_candidates(
            predictor,
            args.images,
            args.out,
            progress=progress,
            budget=budget,
            skip=skip,
            size=args.chunk_size,
            log=_say("predict"),
        )
        if skip and not candidates:
            work.remove()  # every image is bad: nothing worth resuming from
        _refuse_all_skipped(args.images, candidates, skip)
        predictions = predictor.finish(candidates, str(args.images), scores)
        image_ids = work.image_ids
    if skip:  # a submission lists every image: the skipped ones with empty masks
        predictions = with_every_image(predictions, image_ids, predictor.num_classes)
    rows = write_submission(args.out, predictions, predictor.num_classes, layout=args.layout)
    print(f"wrote {rows} rows ({len(predictions.image_ids)} images x {predictor.num_classes} classes) to {args.out}")
    if scores is not None:
        _write_scores(args.scores, list(scores), np.stack(list(scores.values())), predictor)
    if work is not None:
        work.remove()  # the outputs are whole: the progress is no longer needed
    them = "it" if len(skip or ()) == 1 else "them"
    what = f"{args.out} gives {them} empty masks (no defect) so that it lists every image"
    _warn_skipped(
        skip, len(predictions.image_ids), what + (f"; {args.scores} leaves {them} out" if args.scores else "")
    )


def _say(command: str):
    """Lines for people on stderr, named by the command like its errors."""
    return lambda line: print(f"steelseg {command}: {line}", file=sys.stderr, flush=True)


def _refuse_all_skipped(images, predicted, skip) -> None:
    """--skip-bad with every image bad: an error, never an exit 0 with an empty output."""
    if skip and not predicted:
        from steelseg.inference.predictor import InputError

        raise InputError(
            f"every one of the {len(skip)} images of {images} was skipped as bad (each listed above); nothing written"
        )


def _warn_skipped(skip, total: int, what: str) -> None:
    if skip:
        print(f"steelseg predict: warning: {skip.summary(total)} (each listed above); {what}", file=sys.stderr)


def _tune(args) -> None:
    from steelseg.inference.tune import tune

    grids = {
        k: v
        for k, v in (
            ("pixel_grid", args.pixel_grid),
            ("component_grid", args.component_grid),
            ("area_grid", args.area_grid),
            ("label_grid", args.label_grid),
            ("peak_grid", args.peak_grid),
        )
        if v
    }
    result = tune(
        args.models,
        args.out,
        min_area_quantile=args.min_area_quantile,
        fill_holes=args.fill_holes,
        soft_gate=args.soft_gate,
        temperatures=not args.no_temperature,
        progress=not args.quiet,
        **grids,
    )
    print(result.report())


def _write_scores(path, image_ids: list[str], scores, predictor) -> None:
    from steelseg.core.screening import present
    from steelseg.files.class_scores import write_class_scores

    flags = present(scores, predictor.label_threshold)
    rows = write_class_scores(path, image_ids, scores, flags)
    screened = int((~flags.any(axis=1)).sum())
    print(
        f"wrote {rows} class scores ({len(image_ids)} images x {predictor.num_classes} classes) to {path}; "
        f"{screened} of {len(image_ids)} images have no class above its label threshold"
    )


def _export(args) -> None:
    from steelseg.inference.export import export_onnx

    print(export_onnx(args.run_dir, args.out, tolerance=args.tolerance).report())


def _score(args) -> None:
    from steelseg.files.class_scores import is_class_scores
    from steelseg.files.scoring import SEVERSTAL_NUM_CLASSES, format_scores, read_image_set, score_files, screen_files

    run_config = None
    if args.run_dir is not None:
        from steelseg.files.rundir import load_run_config  # only when asked: the run's config names the classes

        run_config = load_run_config(args.run_dir)
        class_names = run_config.output_class_names
        num_classes = len(class_names)
    else:
        # the default lives here, not in argparse: a default of 4 would let `--num-classes 4 --run X`
        # pass the mutually exclusive group, which compares values with the default by identity
        num_classes = SEVERSTAL_NUM_CLASSES if args.num_classes is None else args.num_classes
        class_names = [""] * num_classes
    image_set = read_image_set(args.images, args.sample_submission)
    if is_class_scores(args.pred):  # from a classifier, or `predict --scores`: the screening report
        from steelseg.core.screening import format_report

        report, warnings = screen_files(args.truth, args.pred, num_classes, image_set, allow_missing=args.allow_missing)
        if run_config is not None:  # the thresholds the Present column was decided with
            from steelseg.files.rundir import load_gate

            report = report.model_copy(update={"label_threshold": load_gate(args.run_dir, run_config).tolist()})
        table = format_report(report, [name or str(i) for i, name in enumerate(class_names, start=1)])
    else:
        scores, warnings = score_files(
            args.truth, args.pred, tuple(args.shape), num_classes, image_set, allow_missing=args.allow_missing
        )
        table = format_scores(scores, class_names)
    for warning in warnings:
        print(f"steelseg score: warning: {warning}", file=sys.stderr)
    print(table)


def _demo(args) -> None:
    from steelseg.config import load_config
    from steelseg.pipeline.demo import run_demo

    config = load_config(args.config, args.set)
    run_demo(args.out, n_train=args.n_train, n_test=args.n_test, config=config, progress=not args.quiet)


def _at_least(minimum: float, number: type = int, strict: bool = False):
    """An argparse type: a finite ``number`` >= ``minimum`` (> if ``strict``); else a one-line error."""

    def parse(text: str):
        value = number(text)  # a ValueError here is argparse's "invalid int value: 'x'"
        if not (value > minimum if strict else value >= minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {minimum}, got {text}")
        return value

    parse.__name__ = number.__name__
    return parse


_positive_int = _at_least(1)


def _parser() -> argparse.ArgumentParser:
    from steelseg.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW  # numpy only: --help imports no torch

    parser = argparse.ArgumentParser(prog="steelseg", description="Find and outline defects on photos of steel sheet.")
    commands = parser.add_subparsers(dest="command")

    p = commands.add_parser("synth", help="write synthetic steel strips in the competition's layout")
    p.add_argument("out", help="output folder (gets train_images/, train.csv, classes.json)")
    p.add_argument("--n", type=_positive_int, default=100, help="number of strips (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_synth)

    p = commands.add_parser(
        "train", help="train a model (model.task: segment, classify, two_head, instance) into a run directory"
    )
    p.add_argument("data", nargs="?", help="dataset folder (severstal or mask-folder layout)")
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed run from its last finished epoch")
    p.add_argument("--config", default="default", help="YAML file or bundled recipe name (default: default)")
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--max-minutes", type=_at_least(0, float, strict=True))
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--folds", help="folds CSV from `steelseg folds` (sets data.folds)")
    p.add_argument("--fold", help="validation fold: a number, or 'all' to train every fold and print the CV table")
    p.add_argument("--per-class", action="store_true", help="one binary model per class, in OUT/class-<id>-<name>")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images and bad rows, each printed and listed in RUN_DIR/skipped.txt, instead of "
        "stopping at the first (sets data.skip_bad; every image is decoded once before training)",
    )
    p.set_defaults(run=_train)

    p = commands.add_parser("folds", help="split a dataset into k folds, stratified, near-duplicates kept together")
    p.add_argument("data", help="dataset folder (severstal or mask-folder layout)")
    p.add_argument("--out", required=True, help="CSV to write (ImageId,Fold,Group)")
    p.add_argument("--k", type=_at_least(2), default=5, help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-distance", type=int, default=4, help="hash bits two near-duplicates may differ in (default 4)"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images and bad rows (printed), as train --skip-bad does",
    )
    p.set_defaults(run=_folds)

    p = commands.add_parser("augment-preview", help="write a PNG grid of augmented training samples with their masks")
    p.add_argument("data", nargs="?", help="dataset folder (default: data.root of the config)")
    p.add_argument("--out", default="augment-preview.png")
    p.add_argument("--config", default="default", help="YAML file or bundled recipe name")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    p.add_argument("--n", type=_positive_int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_augment_preview)

    p = commands.add_parser(
        "predict",
        help="predict a folder of images with a run or an ensemble into a submission CSV (class scores for classifiers)",
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="a run directory, a folder of runs (train --fold all or --per-class: each run a member) or an "
        "ensemble .yaml; several are averaged",
    )
    p.add_argument("images", help="folder of images")
    p.add_argument(
        "--out", required=True, help="submission CSV to write; for classifiers alone, their class scores CSV"
    )
    p.add_argument(
        "--scores", metavar="CSV", help="also write each image's class scores (ImageId,ClassId,Probability,Present)"
    )
    p.add_argument(
        "--layout",
        choices=["long", "2019"],
        default="long",
        help="CSV layout (default long: ImageId,ClassId,EncodedPixels)",
    )
    p.add_argument(
        "--tta",
        choices=["none", "hflip", "vflip", "both"],
        help="flip TTA for every member, averaged in probability space (both: none+hflip+vflip, 3x the time); "
        "default: each member's own (none for runs)",
    )
    p.add_argument(
        "--postprocess",
        metavar="JSON",
        help="post-processing file to use (default: the ensemble's, e.g. from `steelseg tune`)",
    )
    p.add_argument(
        "--post",
        action="append",
        metavar="KEY=VALUE",
        help="override a post-processing value, for every class or per class: pixel_threshold=0.55, "
        "min_area=[600,600,900,2000], min_component=150, fill_holes=true, label_threshold=0.6, "
        "peak_threshold=[0.7,0.7,0.6,0.6], peak=top_k, peak_top_k=100, soft_gate=true (repeatable)",
    )
    p.add_argument(
        "--time-budget",
        type=_at_least(0, float, strict=True),
        metavar="MINUTES",
        help="project the total after the first batches and stop with an error when it will not fit",
    )
    p.add_argument("--drop-tta", action="store_true", help="with --time-budget: drop TTA instead of stopping")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "torch-amp", "onnx"],
        help="auto (default): torch-amp where the hardware has fast half precision (bf16 CPU, GPU), else "
        "torch; torch: exact fp32; onnx: the run's model.onnx (steelseg export) on onnxruntime",
    )
    p.add_argument("--device", default="auto", help="auto (default: a GPU if visible), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument(
        "--any-size",
        action="store_true",
        help="predict images whose size is far from the training images' (by default an error)",
    )
    p.add_argument(
        "--window",
        type=_at_least(0),
        default=DEFAULT_WINDOW,
        metavar="PX",
        help=f"predict images wider than this in overlapping windows this wide, blended back (default {DEFAULT_WINDOW}, "
        "rounded down to a multiple of the networks' input step; 0: always whole images)",
    )
    p.add_argument(
        "--overlap",
        type=_at_least(0),
        default=DEFAULT_OVERLAP,
        metavar="PX",
        help=f"at least this much overlap between neighbouring windows (default {DEFAULT_OVERLAP})",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images that cannot be read or are of a size the model is not trusted on, each printed "
        "(skipped FILE: reason) with the count at the end, instead of stopping at the first; the "
        "submission still lists every image, a skipped one with empty masks (no defect), and --scores "
        "leaves it out",
    )
    p.add_argument("--chunk-size", type=_positive_int, default=256, help=argparse.SUPPRESS)  # images per resumable part
    p.epilog = (
        "A killed or failed prediction resumes: progress is kept in OUT.parts/ (one file per finished 256 images) and "
        "the same command started again (--skip-bad may be added) predicts only the rest, for the same submission; "
        "the folder is removed once OUT is written. Another model, other weights, other images or other settings "
        "are refused: delete OUT.parts/ to start afresh. Sharded prediction (torchrun) and classifiers alone do not "
        "resume."
    )
    p.set_defaults(run=_predict)

    p = commands.add_parser(
        "tune", help="tune an ensemble's gated post-processing and member temperatures on out-of-fold files (mean Dice)"
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="runs with oof.npz (train --fold all writes them), folders of runs or an ensemble .yaml",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where postprocess.json (and, for several models, ensemble.yaml) go; default: the model's folder",
    )
    p.add_argument(
        "--pixel-grid", type=float, nargs="+", metavar="P", help="pixel thresholds to try (default 0.2 .. 0.85)"
    )
    p.add_argument(
        "--component-grid",
        type=int,
        nargs="+",
        metavar="PX",
        help="connected-component sizes to try, full-size pixels (default 0 50 100 150 250 400)",
    )
    p.add_argument(
        "--area-grid",
        type=int,
        nargs="+",
        metavar="PX",
        help="minimum class areas to try (default: the config's min_area_grid)",
    )
    p.add_argument(
        "--label-grid",
        type=float,
        nargs="+",
        metavar="P",
        help="class-head gates to try (default 0.3 .. 0.9, and none)",
    )
    p.add_argument(
        "--peak-grid",
        type=float,
        nargs="+",
        metavar="P",
        help="max / top-K gates to try (default 0.3 .. 0.9, and none)",
    )
    p.add_argument(
        "--min-area-quantile",
        type=float,
        metavar="Q",
        help="minimum areas from this quantile of the true mask sizes instead of the search (5th place: 0.02)",
    )
    p.add_argument("--fill-holes", action="store_true", help="fill holes in the masks (tuned with it)")
    p.add_argument(
        "--soft-gate", action="store_true", help="multiply pixel probabilities by the class heads' (tuned with it)"
    )
    p.add_argument("--no-temperature", action="store_true", help="keep every member's temperature at 1")
    p.set_defaults(run=_tune)

    p = commands.add_parser("export", help="export a run's network to ONNX, checked against PyTorch")
    p.add_argument("run_dir")
    p.add_argument("--out", help="ONNX file to write (default RUN_DIR/model.onnx)")
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest |probability difference| accepted (default 1e-4)"
    )
    p.set_defaults(run=_export)

    p = commands.add_parser(
        "score", help="score a submission against the truth (competition mean Dice), or class scores (AUC, screening)"
    )
    p.add_argument("truth")
    p.add_argument(
        "pred", help="submission CSV, or a class scores CSV from `predict` (ImageId,ClassId,Probability,Present)"
    )
    p.add_argument(
        "--shape", type=int, nargs=2, default=[256, 1600], metavar=("H", "W"), help="image size (default 256 1600)"
    )
    image_set = p.add_mutually_exclusive_group()
    image_set.add_argument("--images", metavar="DIR", help="score over the image files of this folder")
    image_set.add_argument("--sample-submission", metavar="CSV", help="score over the image ids this CSV lists")
    classes = p.add_mutually_exclusive_group()
    classes.add_argument("--num-classes", type=int, metavar="N", help="number of classes, ids 1..N (default 4)")
    classes.add_argument(
        "--run", dest="run_dir", metavar="RUN_DIR", help="take the classes and their names from this run"
    )
    p.add_argument("--allow-missing", action="store_true", help="score images the prediction lacks as empty (warns)")
    p.set_defaults(run=_score)

    p = commands.add_parser("demo", help="synthesise data, train, predict, score, draw: the whole path")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--n-train", type=_positive_int, default=240)
    p.add_argument("--n-test", type=_positive_int, default=60)
    p.add_argument("--config", default="demo", help="YAML file or bundled recipe (default: demo)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    p.set_defaults(run=_demo)

    from steelseg.inference import pseudo
    from steelseg.reports import curves as report_curves
    from steelseg.reports import eda, report
    from steelseg.service import serve
    from steelseg.training import adversarial

    adversarial.add_parser(commands)
    pseudo.add_parser(commands)
    serve.add_parser(commands)
    report.add_parser(commands)
    eda.add_parser(commands)
    report_curves.add_parser(commands)

    for sub in commands.choices.values():
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


if __name__ == "__main__":
    sys.exit(main())
