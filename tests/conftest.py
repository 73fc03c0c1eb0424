import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist each worker gets its share of the CPUs for torch's and OpenMP's
    threads (and so do the processes it starts). Every worker taking every core oversubscribes
    them, and OpenMP's spinning threads then make training 3-4x slower, not 2x."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)


_share_the_cores_between_workers()  # before anything imports torch, which reads them once

SRC = Path(__file__).resolve().parents[1] / "src"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Under this variable (CI: .ci/run) a real data set that is missing fails the tests that need it.
REQUIRE_SHARED = "STEELSEG_REQUIRE_SHARED"


def shared_folder(variable: str, default: str, marker: str, what: str) -> Path:
    """The folder named by the environment ``variable``, else ``SHARED_DATA / default``, if it
    holds ``marker``. Else the test skips (real data is optional on a fresh clone), or fails
    with one line naming the folder when STEELSEG_REQUIRE_SHARED is set: a data set gone
    missing in CI must not pass as a few skipped tests."""
    folder = Path(os.environ.get(variable, SHARED_DATA / default))
    if (folder / marker).exists():
        return folder
    if os.environ.get(REQUIRE_SHARED, "") not in ("", "0"):
        pytest.fail(f"{what} not found at {folder} (no {marker}) although {REQUIRE_SHARED} is set", pytrace=False)
    pytest.skip(f"{what} not found at {folder}")


@pytest.fixture
def severstal_mini() -> Path:
    return shared_folder("STEELSEG_SEVERSTAL_MINI", "severstal-mini", "train.csv", "real Severstal sample")


@pytest.fixture
def neu_seg() -> Path:
    return shared_folder("STEELSEG_NEU_SEG", "neu-seg", "masks", "NEU-Seg")


def pytest_terminal_summary(terminalreporter) -> None:
    """Where the viewer's browser tests (tests/service/test_viewer_browser.py) skipped, one line
    above the short summary on what to install: their skip says it, e.g. "chromium not found at
    /usr/bin/chromium; install it with `apt-get install chromium chromium-driver`"."""
    reasons = [
        report.longrepr[2].removeprefix("Skipped: ")
        for report in terminalreporter.stats.get("skipped", [])
        if "test_viewer_browser" in report.nodeid and isinstance(report.longrepr, tuple)
    ]
    for reason in dict.fromkeys(reasons):
        terminalreporter.write_line(f"browser tests skipped: {reason}", yellow=True)


@pytest.fixture(autouse=True, scope="session")
def _subprocesses_import_this_clone():
    """Processes the tests start (`sys.executable -m steelseg`, ddp_spawn workers) import this
    clone's src too, also under a plain `pytest`: the shared environment has no steelseg of its own."""
    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SRC)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), *others]))
        yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Eight synthetic 128x512 strips in the competition layout (four hold defects): the data of
    the fit, plan and probe tests."""
    from steelseg.files.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data"), 8, seed=1, height=128, width=512, progress=False)
