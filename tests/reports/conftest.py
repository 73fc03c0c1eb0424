"""Tiny hand-made inputs for the report pages."""

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from PIL import Image

# 8x16 strips (H x W). Run lengths count down each column first, from pixel 1: column j is
# pixels 8j+1 .. 8j+8.
HEIGHT, WIDTH = 8, 16


def write_images(folder: Path, image_ids: list[str], height: int = HEIGHT, width: int = WIDTH) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, image_id in enumerate(image_ids):
        ramp = (np.arange(height * width).reshape(height, width) * 3 + 40 * k) % 200 + 30
        Image.fromarray(ramp.astype(np.uint8)).save(folder / image_id)
    return folder


def write_long_csv(path: Path, rows: list[tuple[str, int, str]]) -> Path:
    """ImageId,ClassId,EncodedPixels rows, written by hand (no steelseg code involved)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ImageId,ClassId,EncodedPixels\n" + "".join(f"{i},{c},{e}\n" for i, c, e in rows))
    return path


def image_sources(page: Path) -> list[str]:
    """Every <img src> of an HTML page, URL-decoded."""

    class Images(HTMLParser):
        sources: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.sources.append(unquote(dict(attrs)["src"]))

    parser = Images()
    parser.sources = []
    parser.feed(page.read_text())
    return parser.sources


def assert_figures_exist(page: Path) -> list[str]:
    sources = image_sources(page)
    assert sources, f"{page} shows no figure"
    for src in sources:
        assert not Path(src).is_absolute() and (page.parent / src).is_file(), (
            f"{page} shows {src}, which does not exist"
        )
        assert (page.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return sources
