"""``--backend auto``: the fastest backend that agrees with fp32, measured once per run and machine.

Which runtime is fastest depends on the network and the CPU (on this 2-core EPYC onnxruntime
beats torch-amp on efficientnet-b1 and loses on resnet18), so a rule cannot know it. Where a
run has been exported (``model.onnx``, and ``model.int8.onnx`` after ``export --int8``), every
backend that can run it here predicts the same batch of images the size of the run's training
images; those that agree with PyTorch fp32 (``core.parity``: mask pixels, mask Dice and
probabilities, after the run's post-processing; labels, for a classifier) compete on images/s,
and the fastest wins. The answer is kept
in the run's ``backend.json`` with the machine's signature (CPU, thread count, library versions,
the files measured), and used again while that signature holds.

Without an exported file the rule stands: torch-amp where the device computes in half precision
natively, torch fp32 elsewhere, onnx where torch is not installed; a GPU gets torch-amp.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelseg import hardware, threads
from steelseg.core.parity import MAX_MEAN_DIFF, MIN_AGREEMENT, MIN_MASK_DICE, Parity, compare
from steelseg.core.screening import present
from steelseg.files import rundir
from steelseg.files.atomic import write_text
from steelseg.inference.backends import EXPORTED, Backend, BackendError, create_backend, resolve_backend

BATCH = 4
REPEATS = 2  # timed calls after one warm-up; the best counts (a shared machine's noise only slows)
LIBRARIES = ("torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class Choice:
    backend: Backend
    reason: str


def choose(cls, run_dir: Path, config, run, device: str) -> Choice:
    """The backend ``auto`` means for the run in ``run_dir`` on ``device`` (module docstring).
    ``cls``: the Predictor class (passed in: no import circle)."""
    rule = resolve_backend("auto", device)
    candidates = _candidates(run_dir, device)
    if not set(candidates) & set(EXPORTED):
        why = "no exported model to measure against (`steelseg export RUN` lets auto try onnxruntime and OpenVINO)"
        return Choice(create_backend(rule, run_dir, config, device), f"auto: {rule} by rule, {why}")
    signature = _signature(run_dir, candidates)
    cached = _cached(run_dir, signature)
    if cached is not None:
        return Choice(create_backend(cached["backend"], run_dir, config, device), f"auto: {cached['reason']} (cached)")
    return _measure(cls, run_dir, config, run, device, candidates, signature)


def _candidates(run_dir: Path, device: str) -> list[str]:
    if device != "cpu":
        return []
    lone = run_dir.suffix == ".onnx"  # an exported file on its own: no weights for torch
    names = ["torch"] if hardware.torch_installed() and not lone else []  # fp32 first: the reference
    if names and hardware.cpu_has_bf16():
        names.append("torch-amp")
    onnx_file = run_dir if lone else run_dir / rundir.ONNX
    int8_file = run_dir / rundir.ONNX_INT8
    openvino = _installed("openvino")
    for name, path in (("onnx", onnx_file), ("openvino", onnx_file), ("onnx-int8", int8_file)):
        if path.is_file() and (openvino or name != "openvino"):
            names.append(name)
    if int8_file.is_file() and openvino:
        names.append("openvino-int8")
    return names


def _measure(cls, run_dir: Path, config, run, device: str, candidates: list[str], signature: dict) -> Choice:
    images = _images(run, config)
    post = run.postprocess if run is not None else rundir.read_postprocess(None, config, len(config.output_class_names))
    reference = None
    rates, agreements, backends, refused = {}, {}, {}, {}
    for name in candidates:  # the first is fp32: torch, or onnx where torch is not installed
        try:
            backend = create_backend(name, run_dir, config, device)
        except BackendError as err:
            refused[name] = str(err)
            continue
        predictor = cls.single(config, post, backend, batch_size=BATCH)
        outputs, rate = _timed(predictor, images)
        if reference is None and name in ("torch", "onnx"):
            reference = (predictor, outputs)
        backends[name], rates[name] = backend, rate
        if reference is not None:
            agreements[name] = _parity(reference[0], reference[1], outputs)
    passing = [n for n in rates if n in agreements and agreements[n].passes]
    if not passing:
        raise BackendError(f"{run_dir}: --backend auto found no backend that agrees with fp32; choose one by name")
    best = max(passing, key=rates.get)
    reason = _reason(best, images.shape, rates, agreements)
    if refused:  # e.g. a stale export: said, not fatal
        reason += "; not loaded: " + "; ".join(f"{n} ({why[:120]})" for n, why in refused.items())
    kept = _save(run_dir, {"signature": signature, "backend": best, "reason": reason, "images_per_second": rates})
    return Choice(backends[best], f"auto: {reason}" + ("" if kept else " (not cached: the run folder is read-only)"))


def _reason(best: str, shape: tuple, rates: dict, agreements: dict) -> str:
    table = ", ".join(f"{n} {rates[n]:.1f}/s" + (f" ({agreements[n]})" if n in agreements else "") for n in rates)
    reason = f"{best}, the fastest that agrees with fp32 on {shape[0]} images of {shape[1]}x{shape[2]}: {table}"
    failed = [n for n in rates if n in agreements and not agreements[n].passes]
    if failed:
        reason += (
            f"; refused (below {100 * MIN_AGREEMENT:g}% agreement, mask Dice {MIN_MASK_DICE:g} or above "
            f"{MAX_MEAN_DIFF:g} mean probability difference): {', '.join(failed)}"
        )
    return reason


def _timed(predictor, images: np.ndarray):
    outputs = predictor.predict_outputs(images)  # warm-up: first-call allocation and compilation
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        predictor.predict_outputs(images)
        best = min(best, time.perf_counter() - start)
    return outputs, len(images) / best


def _parity(reference_predictor, reference, outputs) -> Parity:
    """Masks (presence labels, for a classifier) after post-processing, and probabilities."""
    if reference.pixels is None:
        threshold = reference_predictor.presence_threshold
        return compare(
            present(reference.scores, threshold), present(outputs.scores, threshold), reference.scores, outputs.scores
        )
    ours = np.stack([reference_predictor.masks(reference[i]) for i in range(len(reference))])
    theirs = np.stack([reference_predictor.masks(outputs[i]) for i in range(len(outputs))])
    return compare(ours, theirs, reference.pixels, outputs.pixels)


def _images(run, config) -> np.ndarray:
    """``BATCH`` images the size of the run's largest training image (at most one 1600 px window
    wide; 256x512 where the run does not record it): smooth texture with dark streaks, so that
    probabilities spread over their range as they do on steel."""
    shapes = run.summary.train_image_shapes if run is not None and run.summary is not None else None
    height, width = (shapes.max[0], min(shapes.max[1], 1600)) if shapes is not None else (256, 512)
    return steel_texture(BATCH, height, width, streak=max(2, height // 50))


def steel_texture(n: int, height: int, width: int, streak: int) -> np.ndarray:
    """(n, height, width) uint8: smooth random texture (8 px cells, seed 0) with a dark streak
    ``streak`` rows high at a third of the height, so that a network's probabilities spread
    over their range. Export's check and auto's measurement both predict it."""
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 40, (n, height // 8 + 1, width // 8 + 1))
    images = np.kron(noise, np.ones((8, 8)))[:, :height, :width]
    images[:, height // 3 : height // 3 + streak, :] -= 90
    return images.clip(0, 255).astype(np.uint8)


def _signature(run_dir: Path, candidates: list[str]) -> dict:
    files = [run_dir] if run_dir.is_file() else [run_dir / n for n in (rundir.WEIGHTS, rundir.ONNX, rundir.ONNX_INT8)]
    return {
        "cpu": _cpu_model(),
        "threads": threads.choose().count,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "candidates": candidates,
        "files": {p.name: rundir.file_sha256(p) for p in files if p.is_file()},
    }


def _cached(run_dir: Path, signature: dict) -> dict | None:
    path = _choice_file(run_dir)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(saved, dict)
        and saved.get("signature") == signature
        and saved.get("backend") in EXPORTED + ("torch", "torch-amp")
    )
    return saved if ok else None


def _save(run_dir: Path, record: dict) -> bool:
    try:
        write_text(_choice_file(run_dir), json.dumps(record, indent=2) + "\n")
    except OSError:
        return False
    return True


def _choice_file(run_dir: Path) -> Path:
    # a lone exported file keeps its choice beside it, named after it
    return (
        run_dir.with_name(run_dir.name + "." + rundir.BACKEND_CHOICE)
        if run_dir.is_file()
        else run_dir / rundir.BACKEND_CHOICE
    )


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "unknown"
    )


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(name: str) -> bool:
    return _version(name) is not None
