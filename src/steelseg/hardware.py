"""What the machine offers, asked without importing torch unless the answer needs it.

The fast path by default: bf16 autocast where the CPU computes bf16 natively (AVX512-BF16 or
AMX), fp16 autocast on CUDA GPUs, fp32 otherwise. The exact fp32 path stays one setting away
(``train.precision: 32-true``, ``predict --backend torch``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from steelseg.errors import SteelsegError

PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed")


class DeviceError(SteelsegError, ValueError):
    """A device that was asked for but is not there."""


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (x86 avx512_bf16 or amx_bf16 flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def cuda_available() -> bool:
    if not torch_installed():
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; a GPU that is not there is an error."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise DeviceError(f"--device {device}: no CUDA GPU is visible to torch here; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeviceError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    return device


def resolve_precision(precision: str, device_type: str) -> str:
    """A config's ``train.precision`` for a device type ("cpu" or "cuda") -> Lightning's name.

    auto: 16-mixed on a GPU, bf16-mixed on a CPU with native bf16, 32-true otherwise. fp16
    autocast needs a GPU: on a CPU a "16-mixed" recipe runs in bf16, its CPU twin.
    """
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device_type == "cuda":
            return "16-mixed"
        return "bf16-mixed" if device_type == "cpu" and cpu_has_bf16() else "32-true"
    if precision == "16-mixed" and device_type == "cpu":
        return "bf16-mixed"
    return precision


def keep_freed_memory() -> str:
    """glibc's malloc, told to keep freed memory in the process: blocks up to 32 MiB (its
    maximum) from the heap rather than fresh mmaps, the heap never trimmed, 256 MiB of slack.
    By default it hands each forward's activations back to the kernel and the next forward
    pays page faults (zeroed pages) for them again: on a 2-core CPU a 3-network ensemble
    predicted 1.33 strips/s with it off, 2.06 with it on (benchmarks/engine_speed.py). The
    price: the process keeps its peak memory. Prediction commands call it; a no-op off glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "not glibc: malloc left as it is"
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    done = [
        libc.mallopt(m_mmap_threshold, 32 << 20),
        libc.mallopt(m_trim_threshold, 2**31 - 1),
        libc.mallopt(m_top_pad, 256 << 20),
    ]
    return "glibc mallopt: mmap threshold 32 MiB, no trim, 256 MiB top pad" + (
        "" if all(done) else f" (refused: {done})"
    )
