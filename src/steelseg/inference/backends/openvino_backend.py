"""The OpenVINO backend: Intel's CPU runtime on the run's exported ONNX file, no torch import.

It reads the same ``model.onnx`` (or ``model.int8.onnx``) as the onnxruntime backend, after the
same checks against the run (``onnx_backend.checked_file``), and compiles it for the CPU in bf16
where the CPU computes bf16 natively (fp32 elsewhere; an INT8 file runs its quantised layers in
INT8). Threads follow ``steelseg.threads``; on a shared machine they are not pinned to cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steelseg import hardware, threads
from steelseg.config import Config
from steelseg.inference.backends import BackendError
from steelseg.inference.backends.onnx_backend import INPUT, checked_file


class OpenVinoBackend:
    def __init__(self, path: Path, device: str = "cpu"):
        try:
            import openvino as ov
        except ImportError:
            raise BackendError(
                "--backend openvino: the openvino package is not installed (pip install openvino)"
            ) from None
        if device != "cpu":
            raise BackendError(f"--backend openvino runs on the CPU here; got --device {device}")
        chosen = threads.choose()
        int8 = path.name.endswith(".int8.onnx")
        # An INT8 file keeps its float layers in f32: OpenVINO 2026.4 finds no CPU kernel for some
        # of its QDQ layers under the bf16 hint ("No suitable implementations").
        self.precision = "bf16" if hardware.cpu_has_bf16() and not int8 else "f32"
        settings = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": chosen.count,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": not chosen.passive,
        }
        try:
            self.model = ov.Core().compile_model(str(path), "CPU", settings)
        except Exception as err:  # OpenVINO raises its own untyped errors
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise BackendError(f"{path}: OpenVINO cannot compile it ({first[:300]})") from None
        self.path = path
        self.name = "openvino-int8" if int8 else "openvino"
        self.outputs = [output.get_any_name() for output in self.model.outputs]
        self.request = self.model.create_infer_request()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        results = self.request.infer({INPUT: np.ascontiguousarray(x, dtype=np.float32)})
        return {
            name: np.array(results[output], dtype=np.float32) for name, output in zip(self.outputs, self.model.outputs)
        }

    def describe(self) -> str:
        return f"{self.name} (OpenVINO, {self.precision} inference precision, CPU, {self.path.name})"


def from_run_dir(run_dir: Path, config: Config, device: str) -> OpenVinoBackend:
    return OpenVinoBackend(checked_file(run_dir, config, int8=False), device)


def int8_from_run_dir(run_dir: Path, config: Config, device: str) -> OpenVinoBackend:
    return OpenVinoBackend(checked_file(run_dir, config, int8=True), device)
