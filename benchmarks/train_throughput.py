"""Training throughput: U-Net-resnet34 on 256x512 crops, batch 4, against the data loader alone.

    python benchmarks/train_throughput.py [--steps 10] [--device cpu|cuda] [--workers 0]

Training steps (forward, loss, backward, optimiser) in fp32, bf16 autocast, and bf16 with
channels_last; the loader is the same pipeline training uses (decode, defect-centred crop,
flips) over synthetic 256x1600 strips. Prints images per second; the loader should be well
ahead of the training step, or the GPU (or CPU) waits for data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

# This repository's src, whichever python runs the script: the shared environment holds only
# the dependencies, never steelseg itself (see Makefile).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
from torch.utils.data import DataLoader

from steelseg.config import load_config
from steelseg.files import synth
from steelseg.files.datasets import open_dataset
from steelseg.hardware import resolve_precision
from steelseg.models.registry import build_model
from steelseg.training.data import TorchSegmentationData
from steelseg.training.losses import build_loss
from steelseg.training.sampling import EpochSampler

BATCH = 4


def loader_rate(loader: DataLoader, batches: int) -> float:
    iterator = iter(loader)
    next(iterator)  # workers start
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH / (time.perf_counter() - start)


def train_rate(config, batch, device: str, dtype: torch.dtype | None, channels_last: bool, steps: int) -> float:
    model = build_model(config.model, 4).to(device)
    loss_fn = build_loss(config.train.loss, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = (t.to(device) for t in batch)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device_type=device, dtype=dtype) if dtype else nullcontext()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model.logits(x)["probabilities"], y)
        loss.backward()
        optimizer.step()

    for _ in range(2):  # warm-up
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    config = load_config(
        None, ["model.encoder_name=resnet34", "model.in_channels=1", "data.crop_height=256", "data.crop_width=512"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        synth.write_dataset(Path(tmp), 32, seed=0, progress=False)
        data = TorchSegmentationData(open_dataset(tmp), config.model, config.data)
        loader = DataLoader(data, batch_size=BATCH, sampler=EpochSampler(len(data), 0), num_workers=args.workers)
        loading = loader_rate(loader, 7)
        batch = next(iter(loader))
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH} x 256x512"
    )
    print(f"{'data loader alone':<28}{loading:8.1f} images/s ({args.workers} workers)")
    # What `steelseg train` does by default here: train.precision auto, train.channels_last true.
    default = resolve_precision(config.train.precision, "cuda" if args.device.startswith("cuda") else "cpu")
    half = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(default)
    half_name = "fp16" if half is torch.float16 else "bf16"
    rates = {}
    for dtype in (None, half or torch.bfloat16):
        for channels_last in (False, True):
            name = f"train {'fp32' if dtype is None else half_name}" + (" + channels_last" if channels_last else "")
            rates[name] = train_rate(config, batch, args.device, dtype, channels_last, args.steps)
            is_default = dtype is half and channels_last == config.train.channels_last
            mark = (
                f"  <- default (precision auto = {default}, channels_last {config.train.channels_last})"
                if is_default
                else ""
            )
            print(f"{name:<28}{rates[name]:8.1f} images/s{mark}")
    default_name = f"train {'fp32' if half is None else half_name}" + (
        " + channels_last" if config.train.channels_last else ""
    )
    print(
        f"default / fp32: {rates[default_name] / rates['train fp32']:.2f}x; "
        f"loader / fastest training step: {loading / max(rates.values()):.1f}x"
    )


if __name__ == "__main__":
    main()
