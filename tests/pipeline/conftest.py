"""Shared by the fit tests: eight synthetic 128x512 strips (four hold defects)."""

from __future__ import annotations

import pytest

from steelseg.files.synth import write_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 8, seed=1, height=128, width=512, progress=False)
