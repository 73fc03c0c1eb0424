"""The onnxruntime backend: the run's ``model.onnx`` (``steelseg export``), no torch import.

The exported graph is the network's ``forward`` (padding, network, activation) with dynamic
batch, height and width and one output per name of its task (``core.outputs.TASK_OUTPUTS``); its
metadata carries the run's config, post-processing and the SHA-256 of the weights it was exported
from, so a stale export is refused, not used.

An ONNX file is checked before it is used, each problem one line naming the file: size,
structure, declared tensor sizes and external data (``onnx_file.check_onnx_file``), then that
onnxruntime loads it, that its one input is the 4-D float ``image``, steelseg's metadata, and
that its outputs are those of the run's task; a lone exported file's config must parse.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from steelseg.config import Config
from steelseg.core.outputs import PIXELS, TASK_OUTPUTS
from steelseg.files import rundir
from steelseg.inference.backends import BackendError
from steelseg.inference.backends.onnx_file import check_onnx_file

INPUT = "image"
# Keys of the ONNX file's metadata_props.
META_CONFIG = "steelseg.config"  # config.yaml, as text
META_POSTPROCESS = "steelseg.core.postprocess"  # postprocess.json, as text
META_CLASS_NAMES = "steelseg.class_names"  # JSON list
META_WEIGHTS = "steelseg.weights_sha256"
META_VERSION = "steelseg.version"


class OnnxBackend:
    def __init__(self, path: Path, device: str = "cpu"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(f"--device {device}: this onnxruntime has no CUDA provider; use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = _session(path, options, providers)
        self.path = path
        self.name = "onnx"
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.outputs = [output.name for output in self.session.get_outputs()]
        _check_input(path, self.session)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {INPUT: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.outputs, values))

    def describe(self) -> str:
        return f"onnx (onnxruntime fp32, {self.session.get_providers()[0]}, {self.path.name})"


def _session(path: Path, options, providers: list[str]):
    """An onnxruntime session of ``path``, checked first (``check_onnx_file``)."""
    import onnxruntime as ort

    check_onnx_file(path)
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own untyped errors for bad files
        raise BackendError(f"{path}: onnxruntime cannot load it ({type(err).__name__}: {_one_line(err)})") from None


def _check_input(path: Path, session) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
        found = ", ".join(f"{i.name} {i.type} of rank {len(i.shape)}" for i in inputs) or "none"
        raise BackendError(f"{path}: expected one input, {INPUT!r}, a 4-D float tensor (N, C, H, W); found {found}")


def _check_outputs(path: Path, session, task: str) -> None:
    expected = list(TASK_OUTPUTS[task])
    outputs = session.get_outputs()
    if [o.name for o in outputs] != expected:
        raise BackendError(f"{path}: outputs {[o.name for o in outputs]} are not those of a {task} run ({expected})")
    for output in outputs:
        rank = 4 if output.name == PIXELS else 2
        if len(output.shape) != rank or output.type != "tensor(float)":
            found = f"{output.type} of rank {len(output.shape)}"
            raise BackendError(f"{path}: output {output.name!r} is {found}; expected a float tensor of rank {rank}")


def _one_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    return lines[0][:300]


def is_model_file(path: Path) -> bool:
    """An exported model on its own (``steelseg export --out FILE``), not in a run directory."""
    return path.suffix.lower() == ".onnx" and path.is_file()


def read_model_file(path: Path) -> tuple[Config, str]:
    """The run config and post-processing (JSON text) an exported model carries, so that the
    file alone is a deployable model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only the metadata is read
    meta = _session(path, options, ["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    missing = [key for key in (META_CONFIG, META_POSTPROCESS, META_WEIGHTS) if key not in meta]
    if missing:
        raise BackendError(
            f"{path}: not exported by steelseg (no {missing[0]} metadata); export it with `steelseg export RUN`"
        )
    try:
        config = Config.model_validate(yaml.safe_load(meta[META_CONFIG]))
    except (yaml.YAMLError, ValidationError) as err:
        raise BackendError(f"{path}: its {META_CONFIG} metadata is not a valid config ({type(err).__name__})") from None
    return config, meta[META_POSTPROCESS]


def from_run_dir(run_dir: Path, config: Config, device: str) -> OnnxBackend:
    """The run's model.onnx, checked against the run: same weights, same classes. ``run_dir``
    may also be an exported model file (``is_model_file``)."""
    alone = is_model_file(run_dir)
    path = run_dir if alone else run_dir / rundir.ONNX
    if not path.is_file():
        raise BackendError(f"{path} not found: export the run first with `steelseg export {run_dir}`")
    backend = OnnxBackend(path, device)
    meta = backend.metadata
    if META_WEIGHTS not in meta:
        raise BackendError(
            f"{path}: not exported by steelseg (no {META_WEIGHTS} metadata); run `steelseg export {run_dir}`"
        )
    if not alone and (run_dir / rundir.WEIGHTS).is_file() and meta[META_WEIGHTS] != rundir.weights_sha256(run_dir):
        raise BackendError(
            f"{path} was exported from other weights than {run_dir / rundir.WEIGHTS}; "
            f"run `steelseg export {run_dir}` again"
        )
    names = json.loads(meta.get(META_CLASS_NAMES, "[]"))
    if names != config.output_class_names:
        raise BackendError(f"{path}: classes {names} differ from the run's {config.output_class_names}")
    _check_outputs(path, backend.session, config.model.task)
    return backend
