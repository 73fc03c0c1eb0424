"""A Predictor built from model sources: runs, folders of runs, ensemble files and exported
model files (``inference.sources``), each run's files read once (``rundir.load_run``). No
torch unless a torch backend is chosen."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from steelseg import hardware
from steelseg.core.postprocess import PostProcess
from steelseg.files import rundir
from steelseg.inference import backend_choice
from steelseg.inference.backends import EXPORTED, create_backend, resolve_backend
from steelseg.inference.backends.onnx_backend import is_model_file
from steelseg.inference.ensemble import EnsembleError, Member, tta_views
from steelseg.inference.sizes import input_divisor, members_window_unit, size_limits
from steelseg.inference.sources import Network, Resolved, channels, check_compatible, ensemble_classes, resolve
from steelseg.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW

if TYPE_CHECKING:
    from steelseg.inference.predictor import Predictor  # the class is passed in: no import circle


def load(
    cls,
    sources: list[str | os.PathLike],
    backend: str = "auto",
    device: str = "auto",
    batch_size: int = 4,
    check_size: bool = True,
    tta: str | None = None,
    postprocess: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    window: int | None = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
) -> Predictor:
    """``Predictor.load`` (``cls``: the class): runs, folders of runs and ensemble files
    (``inference.sources``) as one predictor. ``tta`` replaces every member's TTA;
    ``postprocess`` a JSON file that replaces the sources' post-processing; ``overrides``
    ``KEY=VALUE`` changes to it; ``window`` and ``overlap``: images wider than the window in
    overlapping windows (see the Predictor)."""
    resolved = resolve(sources, tta)
    networks = resolved.networks
    check_compatible(networks)
    class_names, position = ensemble_classes(networks)
    names = [_backend_name(network, backend) for network in networks]
    device = _device("onnx" if all(n in EXPORTED for n in names) else backend, device)
    members = [_member(cls, n, name, position, device, check_size) for n, name in zip(networks, names)]
    post = _postprocess(resolved, len(class_names), postprocess, overrides)
    first = networks[0]
    gate = _gate(first) if len(networks) == 1 else None
    unit = members_window_unit(members, [input_divisor(network.run) for network in networks])
    return cls(members, post, class_names, batch_size, gate, resolved.clusters, window, overlap, unit)


def _backend_name(network: Network, backend: str) -> str:
    """The member's own backend (an ensemble file's, or onnx for an exported file), else
    ``backend``; an exported file takes any backend that reads exported files."""
    if is_model_file(Path(network.run_dir)) and backend in EXPORTED:
        return backend
    return network.spec.backend or backend


def _member(cls, network: Network, name: str, position: dict[int, int], device: str, check_size: bool) -> Member:
    if name == "auto":
        choice = backend_choice.choose(cls, Path(network.run_dir), network.config, network.run, device)
        backend, note = choice.backend, choice.reason
    else:
        name, note = resolve_backend(name, device), ""
        backend = create_backend(name, network.run_dir, network.config, device)
        if name == "torch-amp" and not device.startswith("cuda") and not hardware.cpu_has_bf16():
            # autocast emulates bf16 here: 0.30 strips/s against fp32's 1.54 on an AVX2 EPYC
            note = (
                "torch-amp: this CPU has no native bf16, so autocast emulates it (about 5x slower than --backend torch)"
            )
    if is_model_file(Path(network.run_dir)):  # no run beside it whose record could check it
        sha = rundir.file_sha256(network.run_dir)
        unchecked = f"{Path(network.run_dir).name} is a file outside a run, unchecked: SHA-256 {sha}"
        note = "; ".join(filter(None, [note, f"{unchecked} (compare it with the one export printed)"]))
    return Member(
        str(network.run_dir),
        network.config,
        backend,
        [position[c] for c in channels(network.config)],
        network.weight,
        tta_views(network.spec.tta),
        network.spec.temperature,
        size_limits(network.run, network.config) if check_size else None,
        backend_note=note,
    )


def _postprocess(
    resolved: Resolved, num_classes: int, path: str | os.PathLike | None, overrides: list[str] | None
) -> PostProcess:
    """The sources' post-processing, or the file ``path`` (``--postprocess``), with the
    ``KEY=VALUE`` ``overrides`` (``--post``) applied."""
    post = resolved.read_postprocess(resolved.networks[0].config, num_classes, Path(path) if path else None)
    if overrides:
        try:
            post = post.override(overrides)
        except ValueError as err:
            raise EnsembleError(f"--post {err}") from None
    return post


def _gate(network: Network):
    """A lone network's screening thresholds (C,): its run's gate.json, else its config's (an
    exported model file has no gate.json)."""
    return network.run.gate if network.run is not None else rundir.default_gate(network.config)


def _device(backend: str, device: str) -> str:
    if backend in EXPORTED and device in ("auto", "cpu"):
        return "cpu"  # decided without importing torch
    from steelseg.hardware import resolve_device

    return resolve_device(device)
