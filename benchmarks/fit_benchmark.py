"""``steelseg fit`` against ``steelseg train`` with its defaults at the same budget, scored on
held-out images that neither training, tuning nor selection saw.

    python benchmarks/fit_benchmark.py DATASET --budget MINUTES [--out runs/fit-DATASET]
                                       [--skip-baseline] [--side-by-side] [--shared ../shared/data]

DATASET:
  neu         NEU-Seg (3 classes, 200x200): the 20% hold-out of benchmarks/neu_engine.py (seed 0)
  bsdata      BSData (1 class, LabelMe polygons, 42 photo sizes): 20% of the JSON files held out
              (seed 0); fit reads the LabelMe folder itself, the hold-out is converted to masks
  half-clean  synthetic 256x1600 strips, half without defects (files/synth.py): 400 to fit on,
              100 held out (other seed)
  half-clean-1k  the same kind of strips, 1,000 to fit on and 200 held out (other seeds)
  mixed       a mask folder of 300 (+100 held out) images of 24 sizes with five classes, the fifth
              rare (5% of images) and small (discs of 3-6 px radius): files/synth.py strips
              resized and cut, discs painted on

Figures: competition mean Dice (each image scores 1 for a class it lacks and the model leaves
empty) and dataset Dice (per class over all pixels of the hold-out), per class too; for the
fit also its best single member (its folds, the plan's TTA, its own tuned post-processing).
Phases resume: a finished fit or baseline folder is not trained again.

--side-by-side runs the fit and the baseline at the same time, each on its own core of the machine
(sched affinity, one OpenMP thread): both get the same hardware for the same minutes, and the pair
takes the budget once instead of twice. Figures measured so say so; they are not comparable with
figures from the whole machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE))

from fit_data import prepare  # noqa: E402
from steelseg.files.importers import as_dataset_folder  # noqa: E402


def steelseg(*args: str, core: int | None = None) -> float:
    """Run the CLI; with ``core``, on that one CPU with one OpenMP thread (--side-by-side)."""
    print("$ steelseg", shlex.join(args), flush=True)
    start = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    pin = None
    if core is not None:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        pin = lambda: os.sched_setaffinity(0, {core})  # noqa: E731
    subprocess.run([sys.executable, "-m", "steelseg", *args], env=env, check=True, preexec_fn=pin)
    return (time.monotonic() - start) / 60


def scores(models: list[Path], test: Path, tta: str | None = None, postprocess: Path | None = None) -> dict:
    """Competition and dataset Dice of ``models`` on the labelled folder ``test``."""
    from engine_figures import holdout_scores

    result, seconds, images = holdout_scores(models, test, tta=tta, postprocess=postprocess, check_size=False)
    return {
        "competition": round(result.mean_dice, 4),
        "competition_per_class": result.class_dice.round(4).tolist(),
        "dataset": round(float(np.mean(result.dataset_dice)), 4),
        "dataset_per_class": np.asarray(result.dataset_dice).round(4).tolist(),
        "predict_seconds": round(seconds, 1),
        "images": images,
    }


def run_fit(train: Path, out: Path, budget: float, core: int | None = None) -> tuple[Path, float]:
    system = out / "fit"
    if (system / "report.html").is_file():
        minutes = _previous(out, "fit_minutes")
        if math.isnan(minutes):  # not recorded (the benchmark stopped after the fit): the fit's own clock
            minutes = sum(_stage_minutes(system).values())
        return system, minutes
    args = ("fit", str(train), "--out", str(system), "--budget", str(budget), "--quiet")
    return system, steelseg(*args, core=core)


def run_baseline(train: Path, out: Path, budget: float, core: int | None = None) -> tuple[Path, float]:
    run = out / "train-default"
    if (run / "finished").is_file():
        return run, _previous(out, "baseline_minutes")
    data = as_dataset_folder(train, out / "train-masks")  # train reads masks: LabelMe is converted first
    args = ("train", str(data), "--out", str(run), "--max-minutes", str(budget), "--epochs", "1000", "--quiet")
    return run, steelseg(*args, core=core)


def _previous(out: Path, key: str) -> float:
    path = out / "results.json"
    return json.loads(path.read_text()).get(key, float("nan")) if path.is_file() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["neu", "bsdata", "half-clean", "half-clean-1k", "mixed"])
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--side-by-side", action="store_true", help="fit and baseline at once, one core each")
    args = parser.parse_args()
    out = args.out or Path("runs") / f"fit-{args.dataset}-{args.budget:g}"
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    train, test = prepare(args.dataset, out, args.shared)
    if args.side_by_side and not args.skip_baseline:
        with ThreadPoolExecutor(2) as pool:
            fit = pool.submit(run_fit, train, out, args.budget, 0)
            baseline = pool.submit(run_baseline, train, out, args.budget, 1)
            (system, results["fit_minutes"]), (run, results["baseline_minutes"]) = fit.result(), baseline.result()
        results["side_by_side"] = True
    else:
        system, results["fit_minutes"] = run_fit(train, out, args.budget)
    results_path.write_text(json.dumps(results, indent=2))
    selection = json.loads((system / "selection.json").read_text())
    results["fit"] = scores([system], test)
    results["shipped"] = selection["shipped"]["members"]
    results["stages"] = _stage_minutes(system)
    results["plan"] = _plan_lines(system)
    single = selection.get("best_single")
    if single:
        import yaml

        tta = yaml.safe_load((system / "plan.yaml").read_text())["tta"]
        post = system / "best-single.postprocess.json"
        results["best_single"] = dict(scores([system / "members" / single], test, tta, post), member=single)
    if not args.skip_baseline:
        if not args.side_by_side:
            run, results["baseline_minutes"] = run_baseline(train, out, args.budget)
        results["baseline"] = scores([run], test)
    results_path.write_text(json.dumps(results, indent=2))
    print_table(args, results)


def _stage_minutes(system: Path) -> dict[str, float]:
    stages = json.loads((system / "fit.json").read_text())["stages"]
    return {name: round(stage["seconds"] / 60, 2) for name, stage in stages.items()}


def _plan_lines(system: Path) -> list[str]:
    """The plan's table as fit printed it (pipeline.plan_table)."""
    from steelseg.pipeline.plan import read_plan
    from steelseg.pipeline.plan_table import format_plan

    return format_plan(read_plan(system / "plan.yaml")).splitlines()


def print_table(args, results: dict) -> None:
    print("\n".join(results.get("plan", [])))
    stages = results.get("stages", {})
    print("minutes per stage: " + ", ".join(f"{name} {minutes:.1f}" for name, minutes in stages.items()))
    where = ", fit and baseline side by side on one core each" if results.get("side_by_side") else ""
    print(f"\n{args.dataset}, budget {args.budget:g} min{where}, held-out images: {results['fit']['images']}")
    print(f"{'':<44}{'minutes':>9}{'competition':>13}{'dataset':>10}  per class (competition | dataset)")
    rows = [("fit: " + " + ".join(results["shipped"]), "fit", results["fit_minutes"])]
    if "best_single" in results:
        rows.append((f"fit's best single member ({results['best_single']['member']})", "best_single", None))
    if "baseline" in results:
        rows.append(("train with the defaults", "baseline", results["baseline_minutes"]))
    for name, key, minutes in rows:
        r = results[key]
        per_class = " ".join(f"{v:.4f}" for v in r["competition_per_class"])
        per_class += " | " + " ".join(f"{v:.4f}" for v in r["dataset_per_class"])
        shown = f"{minutes:.1f}" if minutes is not None else ""
        print(f"{name[:43]:<44}{shown:>9}{r['competition']:>13.4f}{r['dataset']:>10.4f}  {per_class}")


if __name__ == "__main__":
    main()
