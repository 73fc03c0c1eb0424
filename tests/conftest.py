import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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
