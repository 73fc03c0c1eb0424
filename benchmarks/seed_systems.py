"""The six seed systems through ``steelseg fit``: each end to end at ``--scale tiny`` (minutes per
system, what shipped), and each one's full-scale cost on this machine.

    python benchmarks/seed_systems.py [--shared ../shared/data] [--out runs/seed-systems]
                                      [--images 12568] [--skip-tiny] [--skip-cost]

Tiny: 8 synthetic 128x512 strips (files/synth.py, seed 1), 6 more as unlabelled images for the
pseudo-label rounds, budget 10 minutes each. Full-scale cost: ``steelseg plan DATA --system
NAME`` on the 20 real Severstal strips of severstal-mini (each member's recipe probed on this
machine at its own crop), then scaled linearly to ``--images`` (the competition's 12,568
training strips); GPU-hours at the assumed factor of ``pipeline.costs.GPU_SPEEDUP``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))

SYSTEMS = ["first_place", "third_place", "fourth_place", "fifth_place", "seventh_place", "tenth_place"]


def steelseg(*args: str) -> tuple[str, float]:
    start = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-m", "steelseg", *args], env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    return done.stdout, time.monotonic() - start


def tiny(out: Path) -> None:
    from steelseg.files.synth import write_dataset

    data = write_dataset(out / "data", 8, seed=1, height=128, width=512, progress=False)
    unlabelled = write_dataset(out / "unlabelled", 6, seed=7, height=128, width=512, progress=False)
    print(f"{'system (tiny)':<16}{'seconds':>9}  shipped; pseudo-label stage")
    for name in SYSTEMS:
        system = out / name
        args = ["fit", str(data), "--out", str(system), "--system", name, "--scale", "tiny", "--budget", "10"]
        _, seconds = steelseg(*args, "--unlabelled", str(unlabelled / "train_images"), "--quiet")
        selection = json.loads((system / "selection.json").read_text())
        pseudo = json.loads((system / "fit.json").read_text())["stages"]["pseudo"]["note"]
        shipped = " + ".join(selection["shipped"]["members"])
        print(f"{name:<16}{seconds:>9.0f}  {shipped}; {pseudo[:90]}", flush=True)


def cost(out: Path, shared: Path, images: int) -> None:
    data = shared / "severstal-mini"
    if not data.is_dir():
        sys.exit(f"severstal-mini not found at {data}")
    print(f"\n{'system (full)':<16}{'h on 20 strips':>15}{f'h on {images}':>12}{'GPU-h (assumed)':>17}  members")
    for name in SYSTEMS:
        plan = out / f"{name}.plan.yaml"
        args = ["plan", str(data), "--system", name, "--out", str(plan), "--force", "--quiet", "--device", "cpu"]
        printed, _ = steelseg(*args)
        hours = float(re.search(r"about ([0-9.]+) h on this machine", printed).group(1))
        gpu = float(re.search(r"~([0-9.]+) GPU-hours", printed).group(1))
        members = len(re.findall(r"^  member ", printed, flags=re.M))
        factor = images / 20
        print(f"{name:<16}{hours:>15.2f}{hours * factor:>12.0f}{gpu * factor:>17.1f}  {members}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/seed-systems"))
    parser.add_argument("--images", type=int, default=12568)
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.skip_tiny:
        tiny(args.out)
    if not args.skip_cost:
        cost(args.out, args.shared, args.images)


if __name__ == "__main__":
    main()
