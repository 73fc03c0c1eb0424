"""A short measured probe of one training config on this device: seconds per training image,
seconds per predicted image, and the memory one training sample needs. ``steelseg plan`` reads
it to choose batch sizes and epochs (nnU-Net sizes its patches from GPU memory; here the CPU's
throughput is the usual limit, so time is measured as well).

The training step is the one ``SegmentationModule`` takes (same network, loss, channels_last
and autocast precision), on random inputs of the planned crop, at the planned batch. Memory:
on CUDA the allocator's peak; on a CPU, which keeps no such count, the bytes of every module's
output in one forward pass (what autograd keeps for the backward), times ``BACKWARD_FACTOR``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from steelseg.config import Config
from steelseg.hardware import resolve_precision
from steelseg.training.module import SegmentationModule

BACKWARD_FACTOR = 2.5  # gradients and the optimiser's workspace beside the kept activations
_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


@dataclass(frozen=True)
class Probe:
    train_seconds_per_image: float  # at the probed batch size, crop and precision
    predict_seconds_per_image: float  # one view of one whole (scaled) image
    bytes_per_sample: int  # training memory of one sample (see the module docstring)
    batch_size: int
    crop: tuple[int, int]  # (h, w) the network saw in training
    image: tuple[int, int]  # (h, w) the network saw in prediction
    precision: str
    device: str


def probe(
    config: Config,
    crop: tuple[int, int],
    image: tuple[int, int],
    batch_size: int,
    device: str,
    steps: int = 6,
    dataset=None,
) -> Probe:
    """Measure ``config`` (class names resolved) on ``device``: ``steps`` timed training steps of
    ``batch_size`` crops of ``crop`` (network pixels) after one warm-up step, their median (bsdata,
    one core, three runs of ``plan`` by ``benchmarks/probe_repeat.py``: the planned batch's probe
    spread 9% with two timed steps, 3% with six), then timed predictions of ``image``-sized inputs. With ``dataset`` (a
    ``SegmentationDataset``) the batches are real ones from training's own loaders, so that the
    times include reading, cropping and augmenting images, and validation is timed as training
    validates (whole images, scores and the threshold search); without it they are random tensors
    of those sizes."""
    torch.manual_seed(0)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    precision = resolve_precision(config.train.precision, device_type)
    module = SegmentationModule(config).to(device)
    memory = torch.channels_last if config.train.channels_last else torch.contiguous_format
    optimizer = torch.optim.Adam(module.model.parameters(), lr=1e-4)
    train_batches, val_batches = _batches(config, module, crop, image, batch_size, dataset)
    activation = _Activations(module.model) if device_type == "cpu" else None
    step_seconds = []
    for _ in range(steps + 1):
        if device_type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        x, y = next(train_batches)
        x, y = x.to(device).contiguous(memory_format=memory), y.to(device)
        with _autocast(precision, device_type):
            loss = module._loss(module.model.logits(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device_type)
        step_seconds.append(time.perf_counter() - start)
        if activation is not None:
            activation.stop()
    per_sample = (
        torch.cuda.max_memory_allocated(device) // batch_size
        if device_type == "cuda"
        else int(activation.bytes * BACKWARD_FACTOR) // batch_size
    )
    predict = _predict_seconds(module, val_batches, memory, precision, device, device_type)
    train_s = statistics.median(step_seconds[1:]) / batch_size
    return Probe(train_s, predict, int(per_sample), batch_size, crop, image, precision, device)


def _batches(config: Config, module, crop, image, batch_size: int, dataset):
    """(training batches, validation batches) as endless iterators of (x, y)."""
    if dataset is None:
        channels, classes = config.model.in_channels, module.num_classes

        def random(n, size):
            while True:
                yield torch.randn(n, channels, *size), (torch.rand(n, classes, *size) > 0.9).float()

        return random(batch_size, crop), random(1, image)
    from itertools import cycle

    from steelseg.training.data import loaders

    if config.data.classes:  # a per-class model (10th place) trains on its classes' masks only
        dataset = dataset.select_classes(config.data.classes)
    data = config.data.model_copy(update={"batch_size": batch_size})
    train_loader, val_loader = loaders(config.model_copy(update={"data": data}), dataset, dataset)
    return cycle(train_loader), cycle(val_loader)


def _predict_seconds(module, batches, memory, precision, device, device_type) -> float:
    """Seconds per image of validation: the forward pass, and with real batches the scoring too."""
    module.eval()
    module.on_validation_epoch_start()
    times = []
    with torch.inference_mode(), _autocast(precision, device_type):
        for _ in range(3):
            start = time.perf_counter()
            x, y = next(batches)
            x = x.to(device).contiguous(memory_format=memory)
            module.validation_step((x, y.to(device)), 0)
            _sync(device_type)
            times.append((time.perf_counter() - start) / len(x))
    return sum(times[1:]) / 2


def _autocast(precision: str, device_type: str):
    dtype = _AUTOCAST.get(precision)
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


class _Activations:
    """Sums the bytes of every leaf module's output during the first forward pass."""

    def __init__(self, net: torch.nn.Module):
        self.bytes = 0
        self._hooks = [m.register_forward_hook(self._add) for m in net.modules() if not list(m.children())]

    def _add(self, _module, _inputs, output) -> None:
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                self.bytes += tensor.numel() * tensor.element_size()

    def stop(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
