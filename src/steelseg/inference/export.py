"""``steelseg export``: the run's network as ONNX, checked against PyTorch before it is kept.

The graph is the network's ``forward`` (padding to the stride, network, activation) with
dynamic batch, height and width, one output per name of its task (``core.outputs.TASK_OUTPUTS``).
It is written to a temporary file, checked by the onnx checker, then run by onnxruntime next
to PyTorch fp32 at a size other than the one it was traced at; only if both agree within
tolerance does it replace ``model.onnx``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from steelseg.core.outputs import PIXELS, TASK_OUTPUTS, Outputs
from steelseg.core.postprocess import PostProcess
from steelseg.core.screening import present
from steelseg.errors import SteelsegError
from steelseg.files import rundir
from steelseg.files.atomic import atomic_path
from steelseg.files.config_paths import without_machine_paths
from steelseg.inference.backend_choice import steel_texture
from steelseg.inference.backends import onnx_backend as meta
from steelseg.inference.backends.onnx_backend import OnnxBackend
from steelseg.inference.backends.torch_backend import TorchBackend, load_net
from steelseg.inference.predictor import Predictor
from steelseg.version import __version__

OPSET = 17


class ExportError(SteelsegError, RuntimeError):
    """An export whose graph does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class ExportCheck:
    """onnxruntime against PyTorch fp32 on the same images, after the full probability path."""

    path: Path
    check_shape: tuple[int, int, int]  # (N, H, W) of the images checked
    max_abs_diff: float  # of the probabilities (pixel and class)
    # Share of mask pixels equal after post-processing; for a classifier, of (image, class)
    # presence decisions at the label thresholds.
    mask_agreement: float
    size_bytes: int
    agreement_of: str = "mask"  # "label" for a classifier
    sha256: str = ""

    def report(self) -> str:
        n, h, w = self.check_shape
        return (
            f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, SHA-256 {self.sha256}); onnx checker passed; "
            f"onnxruntime vs PyTorch fp32 on {n} images of {h}x{w}: max |diff| {self.max_abs_diff:.2e}, "
            f"{self.agreement_of} agreement {100 * self.mask_agreement:.4f}%"
        )


def export_onnx(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    tolerance: float = 1e-4,
    min_agreement: float = 0.9999,
) -> ExportCheck:
    """Export the run in ``run_dir`` to ``out`` (default ``run_dir/model.onnx``) and check it."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / rundir.ONNX
    run = rundir.load_run(run_dir)  # config, post-processing and gate, each read once
    config = run.config
    if config.model.task == "instance":
        raise ExportError(
            f"{run_dir}: instance (Mask R-CNN) runs predict with the torch backends only; ONNX export covers "
            "the segment, classify and two_head tasks"
        )
    net = load_net(run_dir, config)
    postprocess = run.postprocess
    trace_shape = (1, config.model.in_channels, 64, 96)
    # Inside the run its SHA-256 is recorded beside the weights', and checked on every load.
    in_run = out.resolve().parent == run_dir.resolve()
    with rundir.writing_weights(out) if in_run else atomic_path(out) as tmp:
        _trace(net, torch.zeros(trace_shape), tmp, TASK_OUTPUTS[config.model.task])
        _add_metadata(tmp, run_dir, config, postprocess)
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as err:
            raise ExportError(f"{out}: the onnx checker refused the exported graph: {err}") from None
        check = _compare(run, net, tmp, tolerance, min_agreement)
    agreement_of = "mask" if PIXELS in TASK_OUTPUTS[config.model.task] else "label"
    size = out.stat().st_size
    return ExportCheck(out, check[0], check[1], check[2], size, agreement_of, rundir.file_sha256(out))


def _trace(net: torch.nn.Module, example: torch.Tensor, path: Path, outputs: tuple[str, ...]) -> None:
    # The TorchScript exporter (dynamo=False): it needs no onnxscript and records the padding
    # to the stride symbolically, so the graph pads any input size (checked below).
    image_axes = {0: "batch", 2: "height", 3: "width"}
    dynamic = {meta.INPUT: image_axes, **{name: image_axes if name == PIXELS else {0: "batch"} for name in outputs}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[meta.INPUT],
            output_names=list(outputs),
            dynamic_axes=dynamic,
        )


def _add_metadata(path: Path, run_dir: Path, config, postprocess: PostProcess) -> None:
    """Everything a deployment needs besides the graph: config, post-processing, classes, and
    the checksum of the weights it came from (a stale export is refused by the onnx backend)."""
    graph = onnx.load(str(path))
    entries = {
        meta.META_CONFIG: without_machine_paths(config).to_yaml(),
        meta.META_POSTPROCESS: postprocess.to_json(),
        meta.META_CLASS_NAMES: json.dumps(config.output_class_names),
        meta.META_WEIGHTS: rundir.weights_sha256(run_dir),
        meta.META_VERSION: __version__,
    }
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)
    graph.doc_string = (
        f"steelseg {config.model.task} network: input (N, in_channels, H, W) float32 = (gray/255 - input_mean) / "
        "input_std at input_scale; outputs 'probabilities' (N, classes, H, W) per-class defect probabilities "
        "and/or 'class_probabilities' (N, classes), as the task has them"
    )
    onnx.save(graph, str(path))


def _compare(run: rundir.Run, net, path: Path, tolerance: float, min_agreement: float):
    """Both runtimes through the Predictor's whole path on the same images, at a size and batch
    the graph was not traced at."""
    config, postprocess = run.config, run.postprocess
    images = _check_images(config)
    torch_side = Predictor.single(config, postprocess, TorchBackend(net, "cpu"), screen_threshold=run.gate)
    reference = torch_side.predict_outputs(images)
    exported = Predictor.single(config, postprocess, OnnxBackend(path, "cpu")).predict_outputs(images)
    diff = float(np.abs(reference.scores - exported.scores).max())
    if reference.pixels is not None:
        diff = max(diff, float(np.abs(reference.pixels - exported.pixels).max()))
    agreement = _agreement(reference, exported, postprocess, torch_side.presence_threshold)
    if not diff <= tolerance or agreement < min_agreement:
        raise ExportError(
            f"{run.path}: onnxruntime disagrees with PyTorch: max |diff| {diff:.2e} (tolerance {tolerance:.0e}), "
            f"mask agreement {100 * agreement:.4f}% (needs {100 * min_agreement:.2f}%); model.onnx was not written"
        )
    return images.shape, diff, agreement


def _check_images(config) -> np.ndarray:
    """Two images of a size unlike the trace's, not a multiple of the stride: smooth random
    texture with dark streaks, so probabilities spread over the whole range."""
    scale = config.model.input_scale
    height, width = round(200 / scale) // 2 * 2 + 6, round(330 / scale) + 3
    return steel_texture(2, height, width, streak=5)


def _agreement(a: Outputs, b: Outputs, postprocess: PostProcess, presence_threshold: np.ndarray) -> float:
    if a.pixels is None:
        return float((present(a.scores, presence_threshold) == present(b.scores, presence_threshold)).mean())
    equal = [(postprocess(x) == postprocess(y)).mean() for x, y in zip(a.pixels, b.pixels)]
    return float(np.mean(equal))
