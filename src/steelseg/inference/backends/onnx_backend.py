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

from steelseg import threads
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
        chosen = threads.choose()
        options.intra_op_num_threads = chosen.count
        if chosen.passive:  # threads that spin steal a shared core from the process beside us
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(f"--device {device}: this onnxruntime has no CUDA provider; use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = _session(path, options, providers)
        self.path = path
        self.name = "onnx-int8" if path.name.endswith(".int8.onnx") else "onnx"
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.outputs = [output.name for output in self.session.get_outputs()]
        _check_input(path, self.session)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {INPUT: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.outputs, values))

    def describe(self) -> str:
        precision = "INT8" if self.name == "onnx-int8" else "fp32"
        return f"{self.name} (onnxruntime {precision}, {self.session.get_providers()[0]}, {self.path.name})"


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


def exported_file(run_dir: Path, int8: bool = False) -> Path:
    """The run's exported model (``model.onnx``, or ``model.int8.onnx`` with ``int8``); ``run_dir``
    may also be an exported model file on its own (``is_model_file``), which is then the answer."""
    if is_model_file(run_dir):
        return run_dir
    path = run_dir / (rundir.ONNX_INT8 if int8 else rundir.ONNX)
    if not path.is_file():
        how = f"steelseg export {run_dir} --int8 --calibration IMAGES" if int8 else f"steelseg export {run_dir}"
        raise BackendError(f"{path} not found: export the run first with `{how}`")
    rundir.verify_weights(path)  # changed since the export: refused, as changed weights are
    return path


def checked_file(run_dir: Path, config: Config, int8: bool = False) -> Path:
    """``exported_file``, checked against the run without keeping an inference session (for
    runtimes other than onnxruntime that read the same file)."""
    import onnxruntime as ort

    path = exported_file(run_dir, int8)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only read, never run
    session = _session(path, options, ["CPUExecutionProvider"])
    _check_input(path, session)
    _check_against_run(path, session, run_dir, config)
    return path


def from_run_dir(run_dir: Path, config: Config, device: str, int8: bool = False) -> OnnxBackend:
    """The run's model.onnx (model.int8.onnx with ``int8``), checked against the run: same
    weights, same classes. ``run_dir`` may also be an exported model file (``is_model_file``)."""
    path = exported_file(run_dir, int8)
    backend = OnnxBackend(path, device)
    _check_against_run(path, backend.session, run_dir, config)
    return backend


def int8_from_run_dir(run_dir: Path, config: Config, device: str) -> OnnxBackend:
    return from_run_dir(run_dir, config, device, int8=True)


def _check_against_run(path: Path, session, run_dir: Path, config: Config) -> None:
    meta = session.get_modelmeta().custom_metadata_map
    if META_WEIGHTS not in meta:
        raise BackendError(
            f"{path}: not exported by steelseg (no {META_WEIGHTS} metadata); run `steelseg export {run_dir}`"
        )
    alone = is_model_file(run_dir)
    if not alone and (run_dir / rundir.WEIGHTS).is_file() and meta[META_WEIGHTS] != rundir.weights_sha256(run_dir):
        raise BackendError(
            f"{path} was exported from other weights than {run_dir / rundir.WEIGHTS}; "
            f"run `steelseg export {run_dir}` again"
        )
    names = json.loads(meta.get(META_CLASS_NAMES, "[]"))
    if names != config.output_class_names:
        raise BackendError(f"{path}: classes {names} differ from the run's {config.output_class_names}")
    _check_outputs(path, session, config.model.task)
