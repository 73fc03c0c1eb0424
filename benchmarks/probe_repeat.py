"""How much ``steelseg plan``'s throughput probe varies from one run to the next, by the number of
timed training steps: the seconds per training image that each probe of ``plan`` measured, for
``--repeats`` runs of ``plan`` at each step count.

    python benchmarks/probe_repeat.py DATA [--budget 30] [--steps 2 6] [--repeats 3]

Run it pinned (``taskset -c 0`` with ``OMP_NUM_THREADS=1``) to see one core's noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import steelseg.training.probe as probe_module  # noqa: E402
from steelseg.commands.cli import main as steelseg  # noqa: E402


def measured(data: str, budget: float, steps: int) -> list[float]:
    """Seconds per training image of every probe one ``plan`` run takes, probed with ``steps``."""
    original, seen = probe_module.probe, []

    def probe(*args, **kwargs):
        result = original(*args, **dict(kwargs, steps=steps))
        seen.append(result.train_seconds_per_image)
        return result

    probe_module.probe = probe  # the planner imports it from the module when it measures
    try:
        with tempfile.TemporaryDirectory() as tmp:
            steelseg(["plan", data, "--budget", str(budget), "--out", str(Path(tmp) / "plan.yaml")])
    finally:
        probe_module.probe = original
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--budget", type=float, default=30)
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 6])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = {steps: [measured(args.data, args.budget, steps) for _ in range(args.repeats)] for steps in args.steps}
    print(f"\n{'timed steps':>11}  seconds per training image, probe by probe (in the order plan takes them)")
    for steps, runs in rows.items():
        for run in runs:
            print(f"{steps:>11}  " + "  ".join(f"{s:.3f}" for s in run))
        spread = [f"{min(each):.3f}-{max(each):.3f} ({max(each) / min(each) - 1:.0%})" for each in zip(*runs)]
        print(f"{'range':>11}  " + "  ".join(spread))


if __name__ == "__main__":
    main()
