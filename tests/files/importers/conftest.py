"""Fixtures of the importer tests (helpers: importer_samples.py)."""

from pathlib import Path

import pytest
from importer_samples import polygon, rectangle, write_image, write_labelme


@pytest.fixture
def labelme_folder(tmp_path) -> Path:
    """Two annotated images and one clean one (no JSON) in one folder."""
    root = tmp_path / "labelme"
    write_image(root / "a.png")
    write_labelme(root / "a.json", [polygon("scratch", rectangle(0, 0, 9, 19))], "a.png")
    write_image(root / "b.jpg", rgb=True)
    write_labelme(
        root / "b.json", [polygon("dent", rectangle(5, 5, 6, 6)), polygon("scratch", rectangle(0, 0, 1, 1))], "b.jpg"
    )
    write_image(root / "c.png")
    return root
