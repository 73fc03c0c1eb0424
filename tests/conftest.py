import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SRC = Path(__file__).resolve().parents[1] / "src"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEVERSTAL_MINI = Path(os.environ.get("STEELSEG_SEVERSTAL_MINI", SHARED_DATA / "severstal-mini"))
NEU_SEG = Path(os.environ.get("STEELSEG_NEU_SEG", SHARED_DATA / "neu-seg"))


@pytest.fixture
def severstal_mini() -> Path:
    if not (SEVERSTAL_MINI / "train.csv").is_file():
        pytest.skip(f"real Severstal sample not found at {SEVERSTAL_MINI}")
    return SEVERSTAL_MINI


@pytest.fixture
def neu_seg() -> Path:
    if not (NEU_SEG / "masks").is_dir():
        pytest.skip(f"NEU-Seg not found at {NEU_SEG}")
    return NEU_SEG


@pytest.fixture(autouse=True, scope="session")
def _subprocesses_import_this_clone():
    """Processes the tests start (`sys.executable -m steelseg`, ddp_spawn workers) import this
    clone's src too, also under a plain `pytest`: the shared environment has no steelseg of its own."""
    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SRC)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), *others]))
        yield
