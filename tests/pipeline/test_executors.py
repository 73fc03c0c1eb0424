"""Executors of the training jobs: the local one in order, Ray's on a local cluster of CPUs
(slow: starting Ray takes seconds), and a whole fit on Ray ending as the local fit does."""

from __future__ import annotations

import json
import posixpath

import pytest

from steelseg.errors import UsageError
from steelseg.pipeline.executors import executor, run_local, run_ray
from steelseg.pipeline.fit import FitRequest, fit


def square(x: int) -> int:
    return x * x


def test_local_runs_in_order_and_reports_each():
    heard = []
    assert run_local([(2,), (3,)], square, lambda i, r: heard.append((i, r))) == [4, 9]
    assert heard == [(0, 4), (1, 9)]


def test_an_unknown_executor_and_an_address_without_ray_are_one_line_errors():
    with pytest.raises(UsageError, match="choose one of local, ray"):
        executor("slurm")
    with pytest.raises(UsageError, match="--address goes with --executor ray"):
        run_local([], square, address="10.0.0.1:6379")


@pytest.mark.slow
def test_ray_returns_results_in_job_order():
    ray = pytest.importorskip("ray")
    try:  # a function Ray's workers can import (this test module is not on their path)
        assert run_ray([("a", str(i)) for i in range(5)], posixpath.join) == [f"a/{i}" for i in range(5)]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_fit_on_ray_ships_what_the_local_fit_ships(tiny_data, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from test_fit import tiny_plan_file

    plan = tiny_plan_file(tmp_path)
    results = {}
    try:
        for name in ("local", "ray"):
            out = tmp_path / name
            fit(FitRequest(str(tiny_data), out, 10, plan=str(plan), progress=False, executor=name))
            results[name] = json.loads((out / "selection.json").read_text())["shipped"]
    finally:
        ray.shutdown()
    assert results["ray"] == results["local"]
