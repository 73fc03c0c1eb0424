"""``steelseg export RUN --int8 --calibration IMAGES``: an INT8 ONNX model, kept only if it agrees.

onnxruntime's static quantisation: QDQ format (what both onnxruntime and OpenVINO run as INT8),
INT8 weights with one scale per tensor in 7 bits (``reduce_range``), unsigned INT8 activations
whose ranges are calibrated (min/max) on the network inputs the Predictor makes from the given
images, so preprocessing, scale and padding are those of prediction. The fp32 ``model.onnx`` is
exported first when missing or stale.

Why not per-channel 8-bit weights, the usual choice (``benchmarks/int8_variants.py``, a trained
U-Net / resnet18 on the real strips): OpenVINO 2026.4 runs onnxruntime's per-channel QDQ weights
wrongly on both CPUs tried (mean probability 0.09 off fp32's, against 0.012 per tensor; its
masks missed every defect fp32 marked), and on CPUs without VNNI (AVX2 only) onnxruntime's own
u8 x s8 kernels saturate with full-range 8-bit weights (mask Dice 0.000 against fp32's; 0.974
with 7-bit weights). Per-tensor 7-bit weights agree on both runtimes, at the same speed.

Before ``model.int8.onnx`` is kept it predicts held-out images next to PyTorch fp32 with the
run's post-processing: the share of mask pixels that agree, and the competition Dice (against
the true masks where the images have them, else against fp32's masks) are printed; a model below
``min_agreement`` or losing more than ``max_dice_drop`` is refused with that line. The held-out
images are ``check`` if given, else every fourth of the calibration images (by name), which then
do not calibrate.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from steelseg.core.metrics import DiceAccumulator
from steelseg.core.parity import MIN_MASK_DICE, compare
from steelseg.core.screening import present
from steelseg.errors import SteelsegError
from steelseg.files import rundir
from steelseg.files.datasets import DatasetError, open_dataset
from steelseg.files.images import ImageError, read_gray, require_images
from steelseg.inference.backends import BackendError
from steelseg.inference.backends import onnx_backend as meta
from steelseg.inference.backends.onnx_backend import OnnxBackend, checked_file
from steelseg.inference.backends.torch_backend import TorchBackend, load_net
from steelseg.inference.predictor import Predictor

META_INT8 = "steelseg.int8"  # JSON: how the file was calibrated and checked
MAX_CALIBRATION = 64  # images; min/max ranges settle well before this


class QuantizeError(SteelsegError, RuntimeError):
    """An INT8 model that does not agree with fp32, or images that cannot calibrate one."""


@dataclass(frozen=True)
class Images:
    """Images from a folder, with their true masks where the folder is a dataset of the run's classes."""

    source: Path
    paths: list[Path]
    dataset: object | None = None  # files.datasets.SegmentationDataset, aligned with ``paths``

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.dataset is not None:
            return self.dataset.load(i)
        return read_gray(self.paths[i]), None

    def subset(self, indices: list[int]) -> Images:
        dataset = self.dataset.subset(indices) if self.dataset is not None else None
        return Images(self.source, [self.paths[i] for i in indices], dataset)


@dataclass(frozen=True)
class Int8Check:
    path: Path
    calibrated_on: int
    checked_on: int
    check_source: str
    agreement: float  # share of mask pixels (labels, for a classifier) equal to fp32's
    dice_fp32: float | None  # competition Dice against the true masks; None without masks
    dice_int8: float  # against the true masks, or against fp32's masks without them
    size_bytes: int
    fp32_bytes: int
    mask_dice: float | None = None  # INT8's masks against fp32's over the marked pixels; None: fp32 marks too few
    refused: str | None = None  # why the check failed, where export_int8 was told not to enforce it

    def report(self) -> str:
        against = (
            f"Dice vs truth: fp32 {self.dice_fp32:.4f}, INT8 {self.dice_int8:.4f} "
            f"(difference {self.dice_int8 - self.dice_fp32:+.4f})"
            if self.dice_fp32 is not None
            else f"Dice of INT8 masks against fp32's {self.dice_int8:.4f}"
        )
        return (
            f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, fp32 {self.fp32_bytes / 1e6:.1f} MB); calibrated on "
            f"{self.calibrated_on} images; checked against PyTorch fp32 on {self.checked_on} held-out images "
            f"({self.check_source}): pixel agreement {100 * self.agreement:.3f}%"
            + ("" if self.mask_dice is None else f", mask Dice against fp32's {self.mask_dice:.4f}")
            + f", {against}"
            + ("" if self.refused is None else f"; FAILS THE CHECK, kept for measurement only: {self.refused}")
        )


def export_int8(
    run_dir: str | os.PathLike,
    calibration: str | os.PathLike,
    check: str | os.PathLike | None = None,
    min_agreement: float = 0.99,
    max_dice_drop: float = 0.01,
    max_calibration: int = MAX_CALIBRATION,
    enforce: bool = True,
) -> Int8Check:
    """Write ``run_dir/model.int8.onnx`` (module docstring). ``enforce=False`` keeps a model that
    fails the check (``Int8Check.refused`` then says why): for benchmarks that measure it anyway."""
    run_dir = Path(run_dir)
    run = rundir.load_run(run_dir)
    config = run.config
    if config.model.task == "instance":
        raise QuantizeError(f"{run_dir}: instance (Mask R-CNN) runs have no ONNX export to quantise")
    fp32 = _fresh_fp32(run_dir, config)
    calibrate, held_out, check_source = _split(run, calibration, check)
    calibrate = calibrate.subset(list(range(min(len(calibrate.paths), max_calibration))))
    net = load_net(run_dir, config)
    reference = Predictor.single(
        config, run.postprocess, TorchBackend(net, "cpu"), batch_size=1, screen_threshold=run.gate
    )
    out = run_dir / rundir.ONNX_INT8
    with rundir.writing_weights(out) as tmp:  # its SHA-256 recorded, checked on every load
        inputs = _network_inputs(reference, calibrate)
        _quantize(fp32, tmp, inputs)
        _add_metadata(fp32, tmp, {"calibration": str(calibrate.source), "images": len(calibrate.paths)})
        quantized = Predictor.single(
            config, run.postprocess, OnnxBackend(tmp, "cpu"), batch_size=1, screen_threshold=run.gate
        )
        parity, dice_fp32, dice_int8 = _compare(reference, quantized, held_out)
        agreement, mask_dice = parity.agreement, parity.dice
        drop = (dice_fp32 if dice_fp32 is not None else 1.0) - dice_int8
        # mostly clean steel: masks that miss fp32's defects still agree on most pixels
        blind = mask_dice is not None and mask_dice < MIN_MASK_DICE
        refused = None
        if agreement < min_agreement or drop > max_dice_drop or blind:
            refused = (
                f"{run_dir}: the INT8 model disagrees with fp32 on {len(held_out.paths)} held-out images: pixel "
                f"agreement {100 * agreement:.3f}% (needs {100 * min_agreement:g}%), Dice drop {drop:+.4f} "
                f"(at most {max_dice_drop:g}), mask Dice against fp32's "
                f"{'-' if mask_dice is None else f'{mask_dice:.4f}'} (needs {MIN_MASK_DICE:g})"
            )
            if enforce:
                raise QuantizeError(f"{refused}; {out.name} was not written")
    return Int8Check(
        out,
        len(calibrate.paths),
        len(held_out.paths),
        check_source,
        agreement,
        dice_fp32,
        dice_int8,
        out.stat().st_size,
        fp32.stat().st_size,
        mask_dice,
        refused,
    )


def _fresh_fp32(run_dir: Path, config) -> Path:
    """The run's model.onnx, exported (and checked) first when it is missing or stale."""
    try:
        return checked_file(run_dir, config)
    except BackendError:
        from steelseg.inference.export import export_onnx

        return export_onnx(run_dir).path


def _split(run, calibration, check) -> tuple[Images, Images, str]:
    images = open_images(Path(calibration), run.config)
    if check is not None:
        held_out = open_images(Path(check), run.config)
        return images, held_out, f"from {check}"
    if len(images.paths) < 2:
        raise QuantizeError(f"{calibration}: give at least 2 images (or --check IMAGES to check on)")
    order = sorted(range(len(images.paths)), key=lambda i: images.paths[i].name)
    held = order[3::4] or order[-1:]
    rest = [i for i in order if i not in set(held)]
    return images.subset(rest), images.subset(held), f"every 4th of {calibration}, not calibrated on"


def open_images(folder: Path, config) -> Images:
    """A dataset folder of the run's classes (images with their masks), else a folder of images."""
    try:
        dataset = open_dataset(folder)
    except (DatasetError, ImageError, OSError) as err:
        dataset, why = None, str(err)
    if dataset is not None and len(dataset):
        if dataset.class_names != config.output_class_names:
            raise QuantizeError(
                f"{folder}: a dataset of classes {dataset.class_names}, the run's are {config.output_class_names}"
            )
        return Images(folder, list(dataset.image_paths), dataset)
    if not folder.is_dir():
        raise QuantizeError(f"{folder}: folder of images not found")
    try:
        return Images(folder, require_images(folder))
    except ImageError as err:
        extra = f" (as a dataset: {why})" if dataset is None and (folder / "train_images").is_dir() else ""
        raise QuantizeError(f"{err}{extra}") from None


def _network_inputs(reference: Predictor, images: Images) -> list[np.ndarray]:
    """What the network is fed when the Predictor predicts ``images``: recorded at the backend."""
    seen: list[np.ndarray] = []
    backend = reference.members[0].backend

    def recording(x: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(np.array(x, dtype=np.float32))
        return backend(x)

    reference.members[0].backend = recording
    try:
        for i in range(len(images.paths)):
            reference.predict_outputs(images.load(i)[0][None])
    finally:
        reference.members[0].backend = backend
    return seen


def _quantize(
    fp32: Path, out: Path, inputs: list[np.ndarray], per_channel: bool = False, reduce_range: bool = True
) -> None:
    """``fp32`` quantised into ``out``, calibrated on ``inputs``; the defaults are what runs right
    on both runtimes (module docstring; ``benchmarks/int8_variants.py`` tries the others)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(inputs)

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {meta.INPUT: x}

    # onnxruntime.quantization logs advice to the root logger ("consider pre-processing ...")
    logging.disable(logging.WARNING)
    try:
        quantize_static(
            str(fp32),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,  # OpenVINO mis-runs per-channel QDQ weights (module docstring)
            reduce_range=reduce_range,  # 7-bit weights: no u8 x s8 saturation on CPUs without VNNI
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        logging.disable(logging.NOTSET)


def _add_metadata(fp32: Path, path: Path, record: dict) -> None:
    """The fp32 file's steelseg metadata (config, post-processing, weights checksum), and how it
    was calibrated."""
    source = onnx.load(str(fp32), load_external_data=False)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for entry in source.metadata_props:
        model.metadata_props.add(key=entry.key, value=entry.value)
    model.metadata_props.add(key=META_INT8, value=json.dumps(record))
    onnx.save(model, str(path))


def _compare(reference: Predictor, quantized: Predictor, images: Images):
    """(``core.parity`` of INT8's masks against fp32's, fp32's Dice against the truth or None,
    INT8's Dice against the truth or against fp32's masks). A classifier compares presence
    labels as 1x1 masks."""
    classes = reference.num_classes
    truth_fp32, truth_int8, int8_fp32 = DiceAccumulator(classes), DiceAccumulator(classes), DiceAccumulator(classes)
    has_truth = images.dataset is not None
    ours, theirs = [], []
    for i in range(len(images.paths)):
        image, truth = images.load(i)
        a, b = _masks(reference, image), _masks(quantized, image)
        ours.append(a)
        theirs.append(b)
        int8_fp32.update(b, a)
        if has_truth:
            truth = truth.astype(bool) if a.ndim == 3 else truth.reshape(classes, -1).any(axis=1)[:, None, None]
            truth_fp32.update(a, truth)
            truth_int8.update(b, truth)
    # images of several sizes: flattened, the masks still compare pixel by pixel
    parity = compare(np.concatenate([m.ravel() for m in ours]), np.concatenate([m.ravel() for m in theirs]))
    if not has_truth:
        return parity, None, int8_fp32.result().mean_dice
    return parity, truth_fp32.result().mean_dice, truth_int8.result().mean_dice


def _masks(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    outputs = predictor.predict_outputs(image[None])
    if not predictor.has_masks:
        return present(outputs.scores, predictor.presence_threshold)[0][:, None, None]
    return predictor.masks(outputs[0])
