"""Backends run the network: ``(N, in_channels, h, w) float32`` -> its outputs by name
(``core.outputs.TASK_OUTPUTS``: (N, C, h, w) pixel and/or (N, C) class probabilities, float32) at
the network's resolution. A registry of names, each imported only when
chosen, so that an ONNX-only deployment never imports torch.

    torch      PyTorch, fp32, eager: the exact reference
    torch-amp  PyTorch with autocast (bf16 on CPUs with native bf16, fp16 on GPUs) and
               channels_last: the fast default where the hardware has it
    onnx       onnxruntime on the run's model.onnx (``steelseg export``); no torch import
    onnx-int8  onnxruntime on model.int8.onnx (``steelseg export --int8``): INT8 convolutions
    openvino   OpenVINO on model.onnx, bf16 where the CPU has it; no torch import
    openvino-int8  OpenVINO on model.int8.onnx
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from steelseg.config import Config
from steelseg.errors import SteelsegError

# name -> (module, factory): the module is imported only when the backend is chosen.
BACKENDS = {
    "torch": ("steelseg.inference.backends.torch_backend", "exact"),
    "torch-amp": ("steelseg.inference.backends.torch_backend", "mixed"),
    "onnx": ("steelseg.inference.backends.onnx_backend", "from_run_dir"),
    "onnx-int8": ("steelseg.inference.backends.onnx_backend", "int8_from_run_dir"),
    "openvino": ("steelseg.inference.backends.openvino_backend", "from_run_dir"),
    "openvino-int8": ("steelseg.inference.backends.openvino_backend", "int8_from_run_dir"),
}
# Backends that read an exported file and never import torch.
EXPORTED = ("onnx", "onnx-int8", "openvino", "openvino-int8")


class BackendError(SteelsegError, ValueError):
    """A backend that is unknown or cannot run here."""


class Backend(Protocol):
    name: str

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, in_channels, h, w) float32 -> the network's probabilities by output name."""

    def describe(self) -> str:
        """One line for people: backend, precision, device."""


def resolve_backend(name: str, device: str) -> str:
    """``auto`` -> torch-amp where the device computes in half precision natively (a GPU, a CPU
    with bf16), torch (fp32) elsewhere, onnx when torch is not installed."""
    from steelseg import hardware

    if name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {name!r}; choose auto or one of {', '.join(BACKENDS)}")
        return name
    if not hardware.torch_installed():
        return "onnx"
    fast = device.startswith("cuda") or hardware.cpu_has_bf16()
    return "torch-amp" if fast else "torch"


def create_backend(name: str, run_dir: str | Path, config: Config, device: str) -> Backend:
    """The backend ``name`` (see ``BACKENDS``) for the run in ``run_dir`` on ``device``."""
    module_name, factory = BACKENDS[name]
    module = importlib.import_module(module_name)
    return getattr(module, factory)(Path(run_dir), config, device)
