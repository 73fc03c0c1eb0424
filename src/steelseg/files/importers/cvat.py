"""CVAT's "Segmentation mask 1.1" export (the PASCAL VOC layout): ``labelmap.txt``,
``SegmentationClass/<stem>.png`` colour masks, the images in ``JPEGImages/`` (or ``images/``, or
the folder given) and the image list in ``ImageSets/Segmentation/*.txt``.

- **Classes**: the labels of ``labelmap.txt`` in its order, without ``background``, are classes
  1..N. ``labelmap.txt`` lines are ``name:R,G,B:parts:actions``; ``#`` starts a comment. Black
  (0,0,0) is background whether listed or not (CVAT's own background entry), and so is the
  colour of a label named ``background``.
- **Images**: every stem listed in ``ImageSets/Segmentation/*.txt`` or with a mask in
  ``SegmentationClass/``, in name order. A listed image without a mask is clean; the image
  itself must exist (``<stem>.*`` in the image folder, exactly one).
- **Overlap**: none: a colour mask holds one colour per pixel.

Errors, each one line naming the file: a ``labelmap.txt`` line that is not ``name:R,G,B``, two
labels with one colour, a mask colour not in ``labelmap.txt`` (the error names the mask, the
colour and the first pixel of it), a mask of another size than its image, a listed image or a
mask without its image. With ``skip_bad`` the image concerned is left out instead.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from steelseg.files.images import IMAGE_SUFFIXES, pixel_limit
from steelseg.files.importers.common import (
    ConvertError,
    Imported,
    Problems,
    Sample,
    check_class_count,
    empty_labels,
    visible,
)

LABELMAP = "labelmap.txt"
MASKS = "SegmentationClass"
IMAGE_SETS = Path("ImageSets") / "Segmentation"
IMAGE_FOLDERS = ("JPEGImages", "images")


def read_cvat(src: Path, images: Path | None = None, skip_bad: bool = False) -> Imported:
    """A CVAT segmentation-mask export folder, by the rules of the module docstring."""
    src = Path(src)
    names, colours = read_labelmap(src / LABELMAP)
    check_class_count(names, str(src / LABELMAP))
    image_dir = images or next((src / name for name in IMAGE_FOLDERS if (src / name).is_dir()), None)
    if image_dir is None or not image_dir.is_dir():
        looked = image_dir or " or ".join(str(src / name) for name in IMAGE_FOLDERS)
        raise ConvertError(f"{looked}: image folder not found (give it with --images DIR)")
    by_stem = _images_by_stem(image_dir)
    problems, samples, inputs = Problems(skip_bad), [], [src / LABELMAP]
    for stem, where in _stems(src).items():
        found, mask = by_stem.get(stem, []), src / MASKS / f"{stem}.png"
        if len(found) != 1:
            what = "no image" if not found else f"{len(found)} images ({found[0].name}, {found[1].name})"
            problems.add(f"{where}: {what} named {stem}.* in {image_dir}", stem)
            continue
        if mask.is_file():
            labels = partial(_labels, mask, colours, src / LABELMAP)
            samples.append(Sample(found[0].name, found[0], str(mask), labels, annotations=None))
            inputs.append(mask)
        else:
            samples.append(Sample(found[0].name, found[0], str(found[0]), empty_labels))
        inputs.append(found[0])
    return Imported(names, samples, inputs, problems.skipped)


def read_labelmap(path: Path) -> tuple[list[str], dict[int, int]]:
    """The class names (background left out) and {packed 0xRRGGBB colour: class id, 0 for
    background}."""
    if not path.is_file():
        raise ConvertError(f"{path}: not found (a CVAT segmentation export has one)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConvertError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    names, colours, owner = [], {}, {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.strip().partition(":")
        if not name.strip():
            raise ConvertError(f"{path}:{number}: a label needs a name before its colour")
        key = _colour(f"{path}:{number}", name, rest.split(":")[0])
        background = name.strip().lower() == "background"
        if key in owner and owner[key] != name:
            raise ConvertError(f"{path}:{number}: {name!r} has the colour of {owner[key]!r}; each label needs its own")
        if not background and key == 0:
            raise ConvertError(f"{path}:{number}: {name!r} has the background colour 0,0,0")
        if name in names:
            raise ConvertError(f"{path}:{number}: label {name!r} is listed twice")
        if not background:
            names.append(name)
        owner[key], colours[key] = name, 0 if background else len(names)
    colours.setdefault(0, 0)
    return names, colours


def _colour(where: str, name: str, text: str) -> int:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise ConvertError(f"{where}: colour {text!r} of {name!r} is not R,G,B (each 0..255)")
    red, green, blue = (int(p) for p in parts)
    return red << 16 | green << 8 | blue


def _stems(src: Path) -> dict[str, str]:
    """{image stem: the file that names it} from the image lists and the masks, in stem order."""
    stems = {}
    for listing in sorted((src / IMAGE_SETS).glob("*.txt")):
        for number, line in enumerate(listing.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if line.strip():
                stems.setdefault(line.strip().split()[0], f"{listing}:{number}")
    masks = src / MASKS
    for mask in sorted(masks.rglob("*.png")) if masks.is_dir() else []:
        if visible(mask, masks):
            stems.setdefault(mask.relative_to(masks).with_suffix("").as_posix(), str(mask))
    if not stems:
        raise ConvertError(f"{src}: no image listed in {src / IMAGE_SETS} and no mask in {masks}")
    return dict(sorted(stems.items()))


def _images_by_stem(folder: Path) -> dict[str, list[Path]]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and visible(path, folder):
            found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), []).append(path)
    return found


def _labels(mask: Path, colours: dict[int, int], labelmap: Path, shape: tuple[int, int]) -> np.ndarray:
    """A colour mask as a label map; a colour not in ``colours`` is an error naming it."""
    rgb = _read_rgb(mask)
    if rgb.shape[:2] != tuple(shape):
        raise ConvertError(f"{mask}: mask is {rgb.shape[0]}x{rgb.shape[1]}, its image is {shape[0]}x{shape[1]} (HxW)")
    keys = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    unique, inverse = np.unique(keys, return_inverse=True)
    unknown = [int(key) for key in unique if int(key) not in colours]
    if unknown:
        y, x = np.argwhere(keys == unknown[0])[0]
        colour = ",".join(str(unknown[0] >> s & 0xFF) for s in (16, 8, 0))
        more = f" (and {len(unknown) - 1} more colours)" if len(unknown) > 1 else ""
        raise ConvertError(f"{mask}: colour {colour} (first at x={x}, y={y}) is not in {labelmap}{more}")
    lut = np.array([colours[int(key)] for key in unique], dtype=np.uint8)
    return lut[inverse.reshape(-1)].reshape(keys.shape)


def _read_rgb(mask: Path) -> np.ndarray:
    try:
        with Image.open(mask) as image:
            if image.width * image.height > pixel_limit():
                raise ConvertError(f"{mask}: {image.height}x{image.width} is over the pixel limit ({pixel_limit():,})")
            return np.asarray(image.convert("RGB"))
    except ConvertError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise ConvertError(f"{mask}: cannot read the colour mask ({err})") from None
