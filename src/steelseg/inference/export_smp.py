"""``steelseg export RUN --format smp --out DIR``: a run's network as segmentation_models_pytorch
saves its own (``save_pretrained``: ``config.json``, ``model.safetensors`` with smp's keys and a
model card ``README.md``), so that ``smp.from_pretrained(DIR)`` loads it without steelseg.

smp writes the files itself, so the folder is exactly what smp reads; steelseg adds to the card
what a user of the bare network must know (classes, input normalisation, the activation and the
tuned post-processing) and ``steelseg.yaml`` (the run's config, paths cut to their last part).
Before the folder appears it is loaded back with ``smp.from_pretrained`` and its logits compared
with the run's network. The other way round, ``model.init_from`` takes such a folder
(``models.weights.load_weights``). Only segment and two_head runs are smp networks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from steelseg.errors import OutputExistsError, SteelsegError
from steelseg.files import rundir
from steelseg.files.config_paths import without_machine_paths
from steelseg.inference.backends.torch_backend import load_net

TOLERANCE = 1e-5  # smp's network is the run's: only float summation order may differ


class SmpExportError(SteelsegError, ValueError):
    """A run that is not an smp network, or an export that does not reproduce it."""


@dataclass(frozen=True)
class SmpExport:
    folder: Path
    model_class: str
    max_abs_diff: float

    def report(self) -> str:
        return (
            f"wrote {self.folder} (smp {self.model_class}: config.json, model.safetensors, README.md); "
            f"smp.from_pretrained loads it; its logits differ from the run's by at most {self.max_abs_diff:.2e}"
        )


def export_smp(run_dir: str | os.PathLike, out: str | os.PathLike) -> SmpExport:
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"--out {out}: exists and is not an empty folder; choose a new one")
    run = rundir.load_run(run_dir)
    config = run.config
    if config.model.task not in ("segment", "two_head"):
        raise SmpExportError(
            f"{run_dir}: a {config.model.task} run is not an smp segmentation network; --format smp takes segment "
            "and two_head runs (export the others to ONNX)"
        )
    net = load_net(run_dir, config)
    smp_net = net.net
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        smp_net.save_pretrained(tmp, metrics=_metrics(run), dataset=_dataset(config))
        (tmp / "steelseg.yaml").write_text(without_machine_paths(config).to_yaml())
        _add_to_card(tmp / "README.md", config, run)
        diff = _check(smp_net, tmp, config.model.in_channels)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SmpExport(out, type(smp_net).__name__, diff)


def _check(smp_net: torch.nn.Module, folder: Path, in_channels: int) -> float:
    import segmentation_models_pytorch as smp

    loaded = smp.from_pretrained(str(folder)).eval()
    example = torch.rand(2, in_channels, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = smp_net.eval()(example), loaded(example)
    pairs = list(zip(ours, theirs)) if isinstance(ours, tuple) else [(ours, theirs)]
    diff = max(float((a - b).abs().max()) for a, b in pairs)
    if diff > TOLERANCE:
        raise SmpExportError(f"{folder}: smp.from_pretrained gives logits {diff:.2e} away from the run's; not written")
    return diff


def _metrics(run: rundir.Run) -> dict:
    summary = run.summary
    if summary is None:
        return {}
    return {"validation mean Dice (tuned)": round(summary.val_dice_tuned, 4), "best epoch": summary.epoch}


def _dataset(config) -> str:
    root = Path(config.data.root).name if config.data.root else "unknown"
    return f"{root} (classes: {', '.join(config.output_class_names)})"


def _add_to_card(card: Path, config, run: rundir.Run) -> None:
    """What the bare network's user must know, after smp's own card."""
    model = config.model
    post = run.postprocess
    classes = "\n".join(
        f"| {c} | {name} | {post.pixel_threshold[c - 1]:g} | {post.min_area[c - 1]} |"
        for c, name in enumerate(config.output_class_names, start=1)
    )
    text = f"""

## Trained with steelseg

Output channel `c` is the defect class below; the network outputs logits, steelseg applies a
{model.head} and the tuned post-processing (`steelseg.yaml` holds the whole run config).

| channel | class | pixel threshold | minimum area (px) |
|---|---|---|---|
{classes}

Input: gray images as {model.in_channels} channel(s), `x = (gray / 255 - {model.input_mean}) / {model.input_std}`,
resized by {model.input_scale} and padded to a multiple of the encoder's stride.

Post-processing, per class:

```
{post.describe(config.output_class_names)}
```
"""
    with open(card, "a", encoding="utf-8") as handle:
        handle.write(text)
