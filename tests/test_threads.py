"""Thread counts from the CPUs a process may use, passive waits, and the user's override."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steelseg import threads

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_quota(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_quota(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_quota(tmp_path) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert threads.cgroup_quota(tmp_path) is None


def test_count_follows_the_affinity_mask():
    chosen = threads.choose({})
    assert chosen.count == max(1, int(threads.usable_cpus()[0]))
    assert chosen.passive


def test_quota_below_affinity_lowers_the_count(monkeypatch):
    monkeypatch.setattr(threads, "cgroup_quota", lambda root=threads.CGROUP: 0.5)
    cpus, reason = threads.usable_cpus()
    assert cpus == 0.5 and "quota" in reason
    assert threads.choose({}).count == 1  # never below one thread


@pytest.mark.parametrize("name", [threads.THREADS_ENV, "OMP_NUM_THREADS"])
def test_user_override(name):
    chosen = threads.choose({name: "3"})
    assert chosen.count == 3 and name in chosen.reason


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_override_is_one_clear_error(value):
    with pytest.raises(threads.ThreadsError, match=f"{threads.THREADS_ENV}='{value}'"):
        threads.choose({threads.THREADS_ENV: value})


def test_spin_override():
    assert not threads.choose({threads.SPIN_ENV: "1"}).passive


def test_configure_sets_openmp_but_keeps_the_users_choice():
    environ = {}
    chosen = threads.configure(environ)
    assert environ == {"OMP_NUM_THREADS": str(chosen.count), "OMP_WAIT_POLICY": "PASSIVE"}
    environ = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.configure(environ).count == 1
    assert environ["OMP_WAIT_POLICY"] == "ACTIVE"


def _torch_threads(env: dict, cpus: set[int] | None = None) -> str:
    """torch's thread count in a fresh `steelseg`-configured process, pinned to ``cpus``."""
    code = "from steelseg import threads; threads.configure(); import torch; print(torch.get_num_threads())"
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", threads.THREADS_ENV)
    } | env
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env | {"PYTHONPATH": SRC},
        preexec_fn=pin,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_torch_gets_the_pinned_count_in_a_fresh_process():
    """The independent truth: torch's own count in a process pinned with sched_setaffinity."""
    first = min(os.sched_getaffinity(0))
    assert _torch_threads({}, {first}) == "1"
    assert _torch_threads({threads.THREADS_ENV: "2"}, {first}) == "2"


def test_bad_override_on_the_command_line_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC, **{threads.THREADS_ENV: "lots"})
    done = subprocess.run(
        [sys.executable, "-m", "steelseg", "synth", str(tmp_path / "d"), "--n", "2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"steelseg synth: error: {threads.THREADS_ENV}='lots': expected a whole number of threads, 1 or more"
    ]
