"""Tiny hand-made data sets for the importer tests: images written with Pillow, LabelMe JSONs
written as dicts, so each test states the annotation whose pixels it counts; and the real
bsdata folder, found as tests/conftest.py finds shared data."""

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, shape=(30, 40), rgb: bool = False) -> Path:
    """A gray (or RGB) image of ``shape`` (H, W) with a gradient, as PNG or JPEG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(shape[0] * shape[1]) % 251).reshape(shape).astype(np.uint8)
    image = Image.fromarray(np.stack([pixels] * 3, axis=-1) if rgb else pixels)
    image.save(path)
    return path


def image_bytes(shape=(30, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros(shape, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def polygon(label: str, points, kind: str = "polygon") -> dict:
    return {"label": label, "points": [list(p) for p in points], "shape_type": kind, "group_id": None, "flags": {}}


def write_labelme(path: Path, shapes: list[dict], image_path: str | None, shape=(30, 40), image_data=None) -> Path:
    """A LabelMe 4.5-style JSON (``imageData`` null unless given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "version": "4.5.6",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
        "imageHeight": shape[0],
        "imageWidth": shape[1],
    }
    path.write_text(json.dumps(document))
    return path


def rectangle(x0, y0, x1, y1):
    """The four corners of an axis-aligned rectangle, LabelMe order."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def read_masks(out: Path) -> dict[str, np.ndarray]:
    """{mask stem: label map} of a converted folder."""
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((out / "masks").glob("*.png"))}


SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"  # beside the clone, as tests/conftest.py has it


def shared_or_skip(variable: str, default: str, marker: str, what: str) -> Path:
    """``tests/conftest.shared_folder``: the folder named by ``variable`` (else SHARED_DATA /
    ``default``) if it holds ``marker``; else skip, or fail under STEELSEG_REQUIRE_SHARED."""
    folder = Path(os.environ.get(variable, SHARED_DATA / default))
    if (folder / marker).exists():
        return folder
    if os.environ.get("STEELSEG_REQUIRE_SHARED", "") not in ("", "0"):
        pytest.fail(
            f"{what} not found at {folder} (no {marker}) although STEELSEG_REQUIRE_SHARED is set", pytrace=False
        )
    pytest.skip(f"{what} not found at {folder}")
