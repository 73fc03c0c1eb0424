"""How many threads the compute libraries get, chosen from the CPUs this process may use.

Beside a rolling mill the service runs next to retraining, on a few cores. Two things went
wrong there (measured in ``benchmarks/shared_machine.py``):

- Thread pools sized by ``os.cpu_count()``: a container limited to 2 CPUs on a 64-core host, or
  a process pinned with ``taskset``, ran dozens of threads on two cores.
- OpenMP threads that spin while they wait: with one of two cores busy, torch's second thread
  spun on a core it shared with another process, and training ran 5-8x slower until
  ``OMP_NUM_THREADS=1``. Passive waiting (``OMP_WAIT_POLICY=PASSIVE``; onnxruntime's
  ``allow_spinning=0``) hands the core back instead.

So the count is the CPUs of the process's affinity mask, lowered to its cgroup CPU quota
(containers), and waiting threads sleep. ``STEELSEG_THREADS=N`` (or ``OMP_NUM_THREADS``, which
steelseg leaves as it is) overrides the count, and ``STEELSEG_THREADS_SPIN=1`` restores spinning
for a machine that runs nothing else. OpenMP reads its environment when the library loads, so
``configure()`` must run before torch is imported: the ``steelseg`` command does; a program
that uses steelseg as a library calls it first.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from steelseg.errors import SteelsegError

THREADS_ENV = "STEELSEG_THREADS"
SPIN_ENV = "STEELSEG_THREADS_SPIN"
CGROUP = Path("/sys/fs/cgroup")


class ThreadsError(SteelsegError, ValueError):
    """A thread count that is not a positive whole number."""


@dataclass(frozen=True)
class Threads:
    count: int
    passive: bool  # waiting threads sleep instead of spinning
    reason: str

    def describe(self) -> str:
        wait = "passive" if self.passive else "spinning"
        return f"{self.count} thread{'s' * (self.count != 1)} ({self.reason}; {wait} wait)"


def usable_cpus() -> tuple[float, str]:
    """The CPUs this process may use: its affinity mask, lowered to its cgroup quota."""
    try:
        affinity = len(os.sched_getaffinity(0))
        where = "affinity"
    except (AttributeError, OSError):  # not Linux
        affinity, where = os.cpu_count() or 1, "cpu_count"
    quota = cgroup_quota()
    if quota is not None and quota < affinity:
        return quota, f"cgroup quota {quota:g} CPUs"
    return float(affinity), f"{affinity} CPUs in the {where}"


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """The cgroup CPU quota in CPUs (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def choose(environ: dict[str, str] | None = None) -> Threads:
    """The thread count and wait policy for this process (module docstring)."""
    environ = os.environ if environ is None else environ
    passive = environ.get(SPIN_ENV, "").strip() not in ("1", "true", "yes")
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = environ.get(name, "").strip()
        if value:
            return Threads(_positive(name, value), passive, f"{name}={value}")
    cpus, reason = usable_cpus()
    return Threads(max(1, math.floor(cpus)), passive, reason)


def configure(environ: dict[str, str] | None = None) -> Threads:
    """Set the OpenMP environment for ``choose()``'s answer (before torch loads), and torch's
    pools if torch is already loaded. Returns the choice; the backends read it too."""
    environ = os.environ if environ is None else environ
    threads = choose(environ)
    environ.setdefault("OMP_NUM_THREADS", str(threads.count))
    if threads.passive:
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads.count)
    return threads


def _positive(name: str, value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ThreadsError(f"{name}={value!r}: expected a whole number of threads, 1 or more")
    return count
