"""Which INT8 weight format each runtime runs right: raw network outputs of onnxruntime and
OpenVINO on four QDQ variants of one trained run, against its fp32 ONNX model.

    python benchmarks/int8_variants.py RUN [--images ../shared/data/severstal-mini/train_images]

RUN: a trained run (``benchmarks/int8_speed.py --run RUN`` trains one on the real strips).
Every variant is calibrated on the network inputs the Predictor makes from ``--images`` (as
``steelseg export --int8`` does) and run on the first 8 of them; printed per runtime: mean
|probability difference| from fp32's, and for onnxruntime also the masks after the run's
post-processing against fp32's (``core.parity``). A runtime that runs a file right stays near
the quantisation error of the others (about 0.01 here); one that runs it wrongly is far off.
Variants: weights per channel or per tensor, in 8 bits or 7 (``reduce_range``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from steelseg import threads  # noqa: E402

threads.configure()  # before torch loads, as the steelseg command does

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import openvino as ov  # noqa: E402

from steelseg.files import rundir  # noqa: E402
from steelseg.inference import quantize  # noqa: E402
from steelseg.inference.backends.onnx_backend import INPUT, OnnxBackend  # noqa: E402
from steelseg.inference.predictor import Predictor  # noqa: E402

VARIANTS = {
    "per channel, 8 bits": dict(per_channel=True, reduce_range=False),
    "per channel, 7 bits": dict(per_channel=True, reduce_range=True),
    "per tensor, 8 bits": dict(per_channel=False, reduce_range=False),
    "per tensor, 7 bits (export --int8)": dict(per_channel=False, reduce_range=True),
}
SHOWN = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=Path, default=HERE.parents[1] / "shared/data/severstal-mini/train_images")
    args = parser.parse_args()
    run = rundir.load_run(args.run)
    fp32 = quantize._fresh_fp32(args.run, run.config)
    reference = Predictor.from_run_dir(args.run, backend="torch", device="cpu", batch_size=1)
    inputs = quantize._network_inputs(reference, quantize.open_images(args.images, run.config))
    shown = inputs[:SHOWN]
    exact = ort.InferenceSession(str(fp32))
    truth = [exact.run(None, {INPUT: x})[0] for x in shown]
    core = ov.Core()
    images = quantize.open_images(args.images, run.config)
    images = images.subset(list(range(min(SHOWN, len(images.paths)))))
    print(f"{'INT8 weights':<36}{'onnxruntime':>12}{'OpenVINO':>10}  onnxruntime's masks vs fp32's")
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in VARIANTS.items():
            path = Path(tmp) / "int8.onnx"
            quantize._quantize(fp32, path, inputs, **options)
            session, compiled = ort.InferenceSession(str(path)), core.compile_model(str(path), "CPU")
            ours = _mean_diff([session.run(None, {INPUT: x})[0] for x in shown], truth)
            theirs = _mean_diff([compiled(x)[0] for x in shown], truth)
            quantize._add_metadata(fp32, path, {})
            backend = OnnxBackend(path, "cpu")
            int8 = Predictor.single(run.config, run.postprocess, backend, batch_size=1, screen_threshold=run.gate)
            parity = quantize._compare(reference, int8, images)[0]  # masks, as export --int8 checks them
            print(f"{name:<36}{ours:>12.4f}{theirs:>10.4f}  {parity}")


def _mean_diff(outputs: list[np.ndarray], truth: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(outputs, truth)]))


if __name__ == "__main__":
    main()
