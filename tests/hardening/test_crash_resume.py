"""SIGKILL a real `steelseg train` again and again, resume it until it finishes, and land on
exactly what an uninterrupted run of the same config gives: every epoch in metrics.csv once,
the same weights (``torch.equal``: bit for bit, CPU fp32), the same summary.json scores.

Each kill waits for an event in the run folder, then for a seeded random delay:

    mid-epoch         a new resume.ckpt, then 0.02-0.15 s: training the next epoch
    checkpoint-write  a resume.ckpt temporary file appears: the checkpoint is being written
    after-validation  metrics.csv rewritten: the epoch's files are out, its checkpoint is not
    after-checkpoint  a new resume.ckpt, no delay: the first moments of the next epoch
    tail              the checkpoint of a run's last epoch, then 0-0.02 s: averaging,
                      out-of-fold files, the finished mark, or the next stage or fold

Five kills: the first four in a seeded random order, the tail last (after it little is left
to kill). Killed processes are restarted the way a person would: ``train --resume OUT`` once
a checkpoint exists, the original command before that. Only the main process is killed, as
the OOM killer would: DDP's spawned workers must die with it (else they train on, writing
the folder a --resume is using), which is checked too.

A checkpoint of these tiny models is written in a millisecond or two; the killed processes
run with a ``sitecustomize`` that makes each checkpoint write wait 0.3 s before its rename
(Lightning's writer, wrapped), so that "killed while writing the checkpoint" happens every
time instead of by luck. The uninterrupted runs do not have it.

Cost: each process pays ~5 s of imports (DDP: ~15 s, its workers import again). Five kills
run in the default suite for the two cheapest configs, one kill for the others (at the
moment that matters most for each); STEELSEG_CRASH_MATRIX=1 runs five for every config.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from steelseg.commands.cli import main
from steelseg.config import load_config
from steelseg.files import rundir, synth
from steelseg.files.datasets import open_dataset
from steelseg.files.folds import make_folds, write_folds
from steelseg.files.rundir import EpochResult
from steelseg.training.writer import RunDirWriter
from tiny_runs import TINY_NET

EPOCHS = 3  # per run: per stage, per fold
TINY = [
    *TINY_NET,
    "--set",
    "data.crops_per_image=2",
    "--set",
    "train.batches_per_epoch=8",
    "--set",
    "train.scheduler={name: cosine}",
]
SETUP = [*TINY, "--epochs", str(EPOCHS), "--quiet"]
STAGES_YAML = f"stages:\n  - {{name: finetune, train: {{epochs: {EPOCHS}, lr: 0.0005}}}}\n"
SLOW_CHECKPOINT = """\
# Test-only (tests/hardening/test_crash_resume.py): each checkpoint write waits before its
# rename, so a kill can land inside it. Every process started with this on its path,
# DDP's spawned workers included, imports it.
import os, time
from lightning.pytorch.plugins.io import TorchCheckpointIO

_save = TorchCheckpointIO.save_checkpoint

def _slow_save(self, checkpoint, path, storage_options=None):
    _save(self, checkpoint, path, storage_options)
    time.sleep(float(os.environ["STEELSEG_TEST_CHECKPOINT_WAIT"]))

TorchCheckpointIO.save_checkpoint = _slow_save
"""
KILLS = 5
FIVE_KILLS = ("balanced", "mixup")  # the cheapest configs; all with STEELSEG_CRASH_MATRIX=1


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    runs: tuple[str, ...] = (".",)  # run folders inside OUT whose results must match
    one_kill: str = "mid-epoch"  # the trigger of the single-kill test


CASES = {
    "balanced": Case("balanced", ("--set", "data.sampler=balanced")),
    "mixup": Case("mixup", ("--set", "train.mixup_alpha=0.4")),
    # 8 batches an epoch, 3 a step: every epoch ends with a short accumulation
    "accumulate": Case("accumulate", ("--set", "train.accumulate_batches=3")),
    "average_best": Case("average_best", ("--set", "train.average_best=2"), one_kill="tail"),  # while averaging
    "stages": Case("stages", ("--config", "{stages}"), (".", "stages/1", "stages/2-finetune"), one_kill="tail"),
    "fold_all": Case("fold_all", ("--folds", "{folds}", "--fold", "all"), ("fold-0", "fold-1"), one_kill="tail"),
    "ddp": Case(
        "ddp",
        (
            "--set",
            "train.accelerator=cpu",
            "--set",
            "train.devices=2",
            "--set",
            "train.strategy=ddp_spawn",
            "--set",
            "train.average_best=2",
        ),
        one_kill="checkpoint-write",
    ),
}


# --- running and killing -------------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_data(tmp_path_factory) -> Path:
    """12 strips of 64 x 256 (the validation split holds a defect), 2 folds, a stages recipe."""
    root = tmp_path_factory.mktemp("crash-data")
    synth.write_dataset(root / "data", 12, seed=3, height=64, width=256, progress=False)
    write_folds(root / "folds.csv", make_folds(open_dataset(root / "data"), k=2, progress=False))
    (root / "stages.yaml").write_text(STAGES_YAML)
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(SLOW_CHECKPOINT)
    return root


def _env(root: Path, slow_checkpoints: bool) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")
    if slow_checkpoints:
        env["PYTHONPATH"] = os.pathsep.join([str(root / "hook"), env.get("PYTHONPATH", "")])
        env["STEELSEG_TEST_CHECKPOINT_WAIT"] = "0.3"
    return env


def _train_command(root: Path, case: Case, out: Path) -> list[str]:
    args = [a.format(stages=root / "stages.yaml", folds=root / "folds.csv") for a in case.args]
    return [sys.executable, "-m", "steelseg", "train", str(root / "data"), "--out", str(out), *SETUP, *args]


def _next_command(root: Path, case: Case, out: Path) -> list[str]:
    """What a person types after a crash: --resume once a checkpoint exists, else the
    original command (a run that never finished an epoch is started again)."""
    if any(out.rglob(rundir.RESUME)):
        return [sys.executable, "-m", "steelseg", "train", "--resume", str(out), "--quiet"]
    return _train_command(root, case, out)


def _files(out: Path) -> dict[Path, tuple[int, int, int]]:
    # os.walk, not rglob: the run renames and removes folders while we look, and rglob
    # raises on a folder that vanished between listing and scanning (os.walk skips it).
    files = {}
    for folder, _, names in os.walk(out):
        for name in names:
            path = Path(folder) / name
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed or removed while we looked
                continue
            files[path] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return files


def _changed(name: str, before: dict, now: dict) -> list[Path]:
    return [p for p, stat in now.items() if p.name == name and before.get(p) != stat]


def _checkpoint_temporaries(files) -> list[Path]:
    return [p for p in files if p.name.startswith(f".{rundir.RESUME}.") and p.name.endswith(".tmp")]


def _metric_rows(run: Path) -> int:
    try:
        return len((run / rundir.METRICS).read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


TRIGGERS = {
    "mid-epoch": (lambda before, now: _changed(rundir.RESUME, before, now), lambda rng: rng.uniform(0.02, 0.15)),
    "checkpoint-write": (lambda before, now: set(_checkpoint_temporaries(now)) - set(before), lambda rng: 0.0),
    "after-validation": (lambda before, now: _changed(rundir.METRICS, before, now), lambda rng: 0.0),
    "after-checkpoint": (lambda before, now: _changed(rundir.RESUME, before, now), lambda rng: 0.0),
    "tail": (
        lambda before, now: _last_checkpoints(before, now),
        lambda rng: rng.uniform(0.0, 0.02),
    ),  # what follows is short
}


def _last_checkpoints(before: dict, now: dict) -> list[Path]:
    """New checkpoints of a run's last epoch: its metrics.csv has every epoch, and is older."""
    metrics = lambda p: now.get(p.parent / rundir.METRICS, (0, 0, 0))  # noqa: E731
    return [
        p
        for p in _changed(rundir.RESUME, before, now)
        if _metric_rows(p.parent) == EPOCHS and now[p][1] >= metrics(p)[1]
    ]


def _kill(process: subprocess.Popen) -> None:
    """SIGKILL the main process only; its DDP workers must follow it within seconds."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)  # not to leave them running after the test
        raise AssertionError("the workers of a killed `steelseg train` kept running")


def _group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies waiting for a reaper write nothing)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _run_and_kill(command: list[str], env: dict, out: Path, kind: str, rng: random.Random) -> dict:
    """Start ``command``, kill it at the trigger ``kind``; what happened, for the log."""
    fired, delay = TRIGGERS[kind]
    before = _files(out) if out.exists() else {}
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while process.poll() is None:
        if out.exists() and fired(before, _files(out)):
            time.sleep(delay(rng))
            break
        time.sleep(0.002)
    if process.poll() is not None:
        _, stderr = process.communicate()
        assert process.returncode == 0, f"{command} failed before its {kind} kill:\n{stderr.decode()[-3000:]}"
        return {"kind": kind, "phase": "finished before the kill"}
    at_kill = _files(out)
    _kill(process)
    return {"kind": kind, "phase": _phase(before, at_kill)}


def _phase(before: dict, at_kill: dict) -> str:
    """Where the kill landed, from the files: the newest of this process's writes."""
    if set(_checkpoint_temporaries(at_kill)) - set(before):
        return "writing a checkpoint"
    written = {
        name: max((at_kill[p][1] for p in _changed(name, before, at_kill)), default=0)
        for name in (rundir.METRICS, rundir.RESUME)
    }
    if not any(written.values()):
        return "before its first validation"
    if written[rundir.METRICS] > written[rundir.RESUME]:
        return "after a validation, before its checkpoint"
    return "after a checkpoint: in the next epoch, or at the end"


def _run_to_end(command: list[str], env: dict) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stderr[-3000:]}"


def _killed_run(root: Path, case: Case, out: Path, kills: int, seed: int) -> list[dict]:
    """Kill ``kills`` times at seeded moments, then resume until the run finishes."""
    rng = random.Random(seed)
    kinds = ["mid-epoch", "checkpoint-write", "after-validation", "after-checkpoint"]
    rng.shuffle(kinds)
    schedule = (kinds[: kills - 1] + ["tail"]) if kills > 1 else [case.one_kill]
    log, env = [], _env(root, slow_checkpoints=True)
    for kind in schedule:
        log.append(_run_and_kill(_next_command(root, case, out), env, out, kind, rng))
    if not _finished(out):
        _run_to_end(_next_command(root, case, out), _env(root, slow_checkpoints=False))
    return log


def _finished(out: Path) -> bool:
    return (out / rundir.FINISHED).exists() or (out / rundir.CV_TABLE).exists()


# --- comparing -----------------------------------------------------------------------------


def _scores(summary: dict) -> dict:
    """summary.json without its clock times (a resumed run spends more time)."""
    summary = {k: v for k, v in summary.items() if k != "seconds"}
    if "stages" in summary:
        summary["stages"] = {k: _scores(v) for k, v in summary["stages"].items()}
    return summary


def _rows(run: Path) -> list[list[str]]:
    """metrics.csv rows, the seconds column dropped."""
    lines = (run / rundir.METRICS).read_text().splitlines()
    return [line.split(",")[:1] + line.split(",")[2:] for line in lines]


def _assert_same_run(whole: Path, resumed: Path) -> None:
    """The same files, the same epochs once each, the same weights (exactly, not to a
    tolerance: torch.equal), the same scores."""
    assert _names(resumed) == _names(whole)
    if (whole / rundir.METRICS).exists():
        epochs = [int(row[0]) for row in _rows(resumed)[1:]]
        assert epochs == list(range(1, EPOCHS + 1)), f"{resumed}: epochs {epochs}"
        assert _rows(resumed) == _rows(whole)
    _assert_same_tensors(
        load_file(whole / rundir.WEIGHTS), load_file(resumed / rundir.WEIGHTS), resumed / rundir.WEIGHTS
    )
    if (whole / rundir.RESUME).exists():  # the last epoch's weights, not only the best
        last, resumed_last = (
            torch.load(r / rundir.RESUME, map_location="cpu", weights_only=True) for r in (whole, resumed)
        )
        assert last["epoch"] == resumed_last["epoch"] == EPOCHS - 1
        _assert_same_tensors(last["state_dict"], resumed_last["state_dict"], resumed / rundir.RESUME)
    assert _scores(json.loads((resumed / rundir.SUMMARY).read_text())) == _scores(
        json.loads((whole / rundir.SUMMARY).read_text())
    )
    for name in (rundir.POSTPROCESS, rundir.GATE, rundir.FINISHED):
        if (whole / name).exists():
            assert (resumed / name).read_bytes() == (whole / name).read_bytes(), f"{resumed / name} differs"
    for top in (whole / rundir.TOP_DIR).glob("*"):
        _assert_same_tensors(
            load_file(top / rundir.WEIGHTS), load_file(resumed / top.relative_to(whole) / rundir.WEIGHTS), top
        )
    if (whole / rundir.OOF).exists():
        with np.load(whole / rundir.OOF) as a, np.load(resumed / rundir.OOF) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), (
                f"{resumed / rundir.OOF} differs"
            )


def _names(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in [*run.glob("*"), *run.glob(f"{rundir.TOP_DIR}/*/*")])


def _assert_same_tensors(a: dict, b: dict, where) -> None:
    assert a.keys() == b.keys(), where
    for key in a:
        assert torch.equal(a[key], b[key]), f"{where}: {key} differs"


@pytest.fixture(scope="module")
def uninterrupted(crash_data):
    """The uninterrupted run of each case, made once for both tests."""
    made = {}

    def run(case: Case) -> Path:
        if case.name not in made:
            made[case.name] = crash_data / f"{case.name}-whole"
            _run_to_end(_train_command(crash_data, case, made[case.name]), _env(crash_data, slow_checkpoints=False))
        return made[case.name]

    return run


def _check(root: Path, whole: Path, case: Case, kills: int) -> list[dict]:
    killed = root / f"{case.name}-killed-{kills}"
    log = _killed_run(root, case, killed, kills, seed=sum(map(ord, case.name)) + kills)
    print(case.name, log)
    assert _finished(killed)
    assert all(entry["phase"] != "finished before the kill" for entry in log), log
    for run in case.runs:
        _assert_same_run(whole / run, killed / run)
    if (whole / rundir.CV_TABLE).exists():
        assert (killed / rundir.CV_TABLE).read_bytes() == (whole / rundir.CV_TABLE).read_bytes()
    assert not [p for p in killed.rglob("*.tmp")], "temporary files left behind"
    return log


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_five_kills_then_resume_give_the_uninterrupted_run(crash_data, uninterrupted, name):
    if name not in FIVE_KILLS and not os.environ.get("STEELSEG_CRASH_MATRIX"):
        pytest.skip(f"five kills of {name}: set STEELSEG_CRASH_MATRIX=1 (one kill runs by default)")
    case = CASES[name]
    log = _check(crash_data, uninterrupted(case), case, KILLS)
    phases = {entry["phase"] for entry in log}
    assert {"writing a checkpoint", "after a checkpoint: in the next epoch, or at the end"} <= phases, log


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in CASES if name not in FIVE_KILLS])
def test_one_kill_then_resume_gives_the_uninterrupted_run(crash_data, uninterrupted, name):
    case = CASES[name]
    log = _check(crash_data, uninterrupted(case), case, 1)
    if case.one_kill == "checkpoint-write":
        assert log[0]["phase"] == "writing a checkpoint", log


# --- the states a kill leaves, made by hand (fast) ------------------------------------------


def test_a_first_epoch_killed_before_its_checkpoint_starts_again(tmp_path, capsys):
    """Killed while its first checkpoint was written: weights, summary and metrics are out,
    resume.ckpt is not. --resume has nothing to continue from, so the original command must
    start the run again (it used to refuse: "already holds a run")."""
    data, run = tmp_path / "data", tmp_path / "run"
    synth.write_dataset(data, 6, seed=2, height=64, width=256, progress=False)
    command = [
        "train",
        str(data),
        "--out",
        str(run),
        *TINY,
        "--set",
        "train.oof_scale=null",
        "--epochs",
        "1",
        "--quiet",
    ]
    assert main(command) == 0
    (run / rundir.RESUME).rename(run / f".{rundir.RESUME}.x1y2z3.tmp")  # as a kill mid-rename leaves it
    (run / rundir.FINISHED).unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 1
    assert "never finished an epoch" in capsys.readouterr().err
    assert main(command) == 0
    assert [row[0] for row in _rows(run)] == ["epoch", "1"]
    assert (run / rundir.RESUME).is_file() and (run / rundir.FINISHED).is_file()
    assert not list(run.glob("*.tmp")), "the killed write's temporary file is still there"


def _result(epoch: int, dice: float) -> EpochResult:
    return EpochResult(
        epoch=epoch, train_loss=0.1, val_dice=dice, val_dice_tuned=dice, val_class_dice_tuned=[dice], lr=1e-3
    )


def _kept(run: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (run / rundir.TOP_DIR).glob("epoch-*"))


def test_epochs_displaced_from_the_best_k_go_only_after_the_next_checkpoint(tmp_path):
    """average_best=2. Epoch 3 scores best and displaces epoch 2; killed before epoch 3's
    checkpoint, the run replays epoch 3 from epoch 2's checkpoint, which keeps 1 and 2. On a
    GPU the replay may score otherwise (here: worst), so epoch 2's weights must still be there."""
    config = load_config(None, ["train.average_best=2"])
    module = SimpleNamespace(model=torch.nn.Linear(2, 1))
    trainer = SimpleNamespace(is_global_zero=True, save_checkpoint=lambda path, weights_only: None)
    writer = RunDirWriter(tmp_path, config, {})
    for epoch, dice in [(1, 0.5), (2, 0.4)]:
        writer.rows.append(_result(epoch, dice))
        writer._keep_top(module, writer.rows[-1])  # what on_validation_end does
        writer.on_train_epoch_end(trainer, module)
    after_epoch_2 = writer.state_dict()
    writer.rows.append(_result(3, 0.9))
    writer._keep_top(module, writer.rows[-1])
    assert _kept(tmp_path) == [1, 2, 3]  # epoch 2 is displaced, but its checkpoint is the last one
    resumed = RunDirWriter(tmp_path, config, {})  # killed here; resumed from epoch 2's checkpoint
    resumed.load_state_dict(after_epoch_2)
    resumed.on_fit_start(trainer, module)
    assert _kept(tmp_path) == [1, 2]
    resumed.rows.append(_result(3, 0.3))
    resumed._keep_top(module, resumed.rows[-1])
    resumed.on_train_epoch_end(trainer, module)
    assert _kept(tmp_path) == [1, 2]
