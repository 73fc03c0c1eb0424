"""One self-contained HTML page: headings, sentences, tables and figures, nothing else.

Every piece of text that reaches the page goes through ``html.escape``: image ids, file names
and class names come from users' files. Figures are PNG files referenced by paths relative to
the page, so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote

from steelseg.files.atomic import write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr:last-child td { font-weight: 600; }
table.plain tr:last-child td { font-weight: normal; }
figure { margin: 0.5em 0 1.5em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
p.note { color: #555; }
"""


class Page:
    """An HTML page built top to bottom; ``write`` saves it atomically."""

    def __init__(self, title: str, folder: str | os.PathLike):
        self.title = title
        self.folder = Path(folder)  # where the page lives: figure paths are made relative to it
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self._parts.append(f"<h{level}>{_e(text)}</h{level}>")

    def paragraph(self, text: str, note: bool = False) -> None:
        self._parts.append(f'<p class="note">{_e(text)}</p>' if note else f"<p>{_e(text)}</p>")

    def items(self, texts: list[str]) -> None:
        self._parts.append("<ul>" + "".join(f"<li>{_e(t)}</li>" for t in texts) + "</ul>")

    def table(self, header: list[str], rows: list[list], total_row: bool = False) -> None:
        """A table of ``rows`` (cells: text, ints, or floats shown with 4 decimals); with
        ``total_row`` the last row is set in bold (a mean or a sum)."""
        head = "".join(f"<th>{_e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{_e(cell_text(c))}</td>" for c in row) + "</tr>" for row in rows)
        style = "" if total_row else ' class="plain"'
        self._parts.append(f"<table{style}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, path: str | os.PathLike, caption: str) -> None:
        """A PNG that already exists, shown at its size (or the page's width)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: figure not written")  # a bug, not a user mistake
        src = quote(path.resolve().relative_to(self.folder.resolve()).as_posix())
        self._parts.append(
            f'<figure><img src="{_e(src)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'
        )

    def render(self) -> str:
        body = "\n".join(self._parts)
        return (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(self.title)}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{_e(self.title)}</h1>\n{body}\n</body>\n</html>\n"
        )

    def write(self, name: str = "index.html") -> Path:
        path = self.folder / name
        write_text(path, self.render())
        return path


def cell_text(value) -> str:
    """How a table shows a value: floats with 4 decimals (as ``steelseg score`` prints Dice)."""
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def _e(text) -> str:
    return html.escape(str(text), quote=True)
