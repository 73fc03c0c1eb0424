"""Two clones share one cached environment, yet each imports its own src.

The Makefile used to install steelseg editable into the shared environment, so the clone that
ran `make` last decided what every other clone imported. Here two copies of this clone both set
the environment up, then each asks which steelseg it runs: each must name its own src, and a
marker planted in one copy only must show up in that copy only.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared_cache() -> Path:
    """The STEELSEG_CACHE of the environment these tests run in (as the Makefile resolves it)."""
    if "STEELSEG_CACHE" in os.environ:
        return Path(os.environ["STEELSEG_CACHE"])
    lock_hash = hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()[:16]
    if Path(sys.prefix).name == f"venv-{lock_hash}":
        return Path(sys.prefix).parent
    return Path.home() / ".cache" / "steelseg"


def _make(clone: Path, target: str, cache: Path) -> str:
    # No PYTHONPATH or make state from this run: what a clone imports must come from its Makefile.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    command = ["make", "-s", "-C", str(clone), target, f"STEELSEG_CACHE={cache}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _copy_clone(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("Makefile", "requirements.lock", "pyproject.toml"):
        shutil.copy2(source / name, target / name)
    shutil.copytree(source / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


def test_two_clones_sharing_the_environment_each_import_their_own_src(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make not found")
    cache = _shared_cache()
    lock_hash = hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()[:16]
    venv = cache / f"venv-{lock_hash}"
    if not (venv / ".complete").is_file():
        pytest.skip(f"the environment for this lock is not complete ({venv / '.complete'} missing); run `make venv`")
    clone_a = _copy_clone(ROOT, tmp_path / "clone-a")
    clone_b = _copy_clone(ROOT, tmp_path / "clone-b")
    with open(clone_b / "src" / "steelseg" / "__init__.py", "a") as init:
        init.write('\nMARKER = "clone-b"\n')

    # Both set up before either runs: with an install in the shared environment, b's setup
    # would redirect a.
    for clone in (clone_a, clone_b):
        _make(clone, "venv", cache)
    seen = {clone: _make(clone, "where", cache).splitlines() for clone in (clone_a, clone_b)}

    for clone, marker in ((clone_a, ""), (clone_b, "clone-b")):
        package, seen_marker = seen[clone]
        assert Path(package).resolve() == (clone / "src" / "steelseg").resolve()
        assert seen_marker == marker
