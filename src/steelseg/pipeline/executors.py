"""Where the training jobs of ``steelseg fit`` run: ``EXECUTORS = {name: runner}``.

A job is ``(config, folder, fold)``: one member on one fold, brought to a finished run by
``training.cv.train_fold`` (fresh, resumed or already done), so any executor can be killed and
started again. ``local`` runs the jobs here, one after another (the default: on one machine
the jobs would only compete for its cores). ``ray`` runs each as a Ray task, one GPU each where
the cluster has GPUs, else one CPU slot; ``address`` joins a running cluster (``ray start
--head`` on one machine, ``ray start --address HEAD`` on the others, steelseg installed on each
and the data and the fit folder on a shared path); without it Ray starts a local cluster.
Ray is the ``steelseg[cluster]`` extra: imported only here, only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from steelseg.errors import UsageError

Job = tuple  # (config, folder, fold)


def run_local(jobs: list[Job], work: Callable, each: Callable | None = None, address: str | None = None) -> list:
    """Run the jobs in order; ``each(index, result)`` hears each one finish."""
    if address is not None:
        raise UsageError("--address goes with --executor ray")
    results = []
    for index, job in enumerate(jobs):
        results.append(work(*job))
        if each is not None:
            each(index, results[-1])
    return results


def run_ray(jobs: list[Job], work: Callable, each: Callable | None = None, address: str | None = None) -> list:
    """Run the jobs as Ray tasks, at most one GPU each; results in job order."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage report to the internet
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray: install the steelseg[cluster] extra (pip install 'ray>=2.60')"
        ) from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    remote = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)(work)
    pending = {remote.remote(*job): index for index, job in enumerate(jobs)}
    results: list = [None] * len(jobs)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(done[0])
        results[index] = ray.get(done[0])
        if each is not None:
            each(index, results[index])
    return results


EXECUTORS = {"local": run_local, "ray": run_ray}


def executor(name: str) -> Callable:
    if name not in EXECUTORS:
        raise UsageError(f"--executor {name}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]
