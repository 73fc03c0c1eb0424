"""The ``mask_folder`` layout checked before it is opened: ``images/`` paired with ``masks/`` by
stem, and the class count the labels imply when no ``classes.json`` names the classes.

Each problem found is a ``Skip`` naming the file; the caller decides whether the first one is
an error (``open_dataset``) or all are left out (``skip_bad``).
"""

from __future__ import annotations

from pathlib import Path

from steelseg.errors import SteelsegError
from steelseg.files.images import read_label_map
from steelseg.files.skips import Skip

# Without classes.json a mask folder's labels give the class count; a label above this is far
# likelier a 0/255 binary mask than a 255-class data set.
MAX_INFERRED_CLASSES = 32
MASK_NOT_FOUND = "label mask not found"


def mask_path(image_path: Path, mask_dir: Path) -> Path:
    """The label mask of ``image_path``: same stem, PNG, in ``mask_dir``."""
    return mask_dir / f"{image_path.stem}.png"


def unpaired(image_paths: list[Path], mask_dir: Path) -> list[Skip]:
    """Images without a mask, images that would share one (a.jpg and a.png: masks are found by
    stem) and masks without an image (labelled data whose image is lost, as a train.csv row
    naming no image), in that order."""
    problems, by_stem = [], {}
    for path in image_paths:
        mask = mask_path(path, mask_dir)
        if path.stem in by_stem:
            other = by_stem[path.stem]
            shared = f"{path}: images {other.name} and {path.name} would share the label mask {mask}; rename one"
            problems.append(Skip(shared, path.name))
            problems.append(Skip(f"{other}: shares the label mask {mask} with {path.name}", other.name))
        elif not mask.is_file():
            problems.append(Skip(f"{mask}: {MASK_NOT_FOUND} for image {path}", path.name))
        by_stem.setdefault(path.stem, path)
    for mask in sorted(mask_dir.glob("*.png")) if mask_dir.is_dir() else []:
        if mask.stem not in by_stem:
            problems.append(
                Skip(f"{mask}: label mask without an image in {image_paths[0].parent} (looked for {mask.stem}.*)")
            )
    return problems


def top_label(
    image_paths: list[Path], mask_dir: Path, left_out: set[str], classes_file: Path
) -> tuple[int, list[Skip]]:
    """The highest label of the masks of ``image_paths`` (bar the image names in ``left_out``),
    and the masks that cannot give one: unreadable, or with a label above MAX_INFERRED_CLASSES
    (the message tells the user to write ``classes_file``)."""
    top, bad = 0, []
    for path in image_paths:
        mask = mask_path(path, mask_dir)
        if path.name in left_out:
            continue
        try:
            label = int(read_label_map(mask).max(initial=0))
        except SteelsegError as err:
            bad.append(Skip(str(err), path.name))
            continue
        if label > MAX_INFERRED_CLASSES:
            bad.append(
                Skip(
                    f"{mask}: label value {label}, and no {classes_file} says how many classes there are "
                    f"(a 0/255 binary mask?): label masks hold class ids 1..N; write {classes_file.name} for more "
                    f"than {MAX_INFERRED_CLASSES} classes",
                    path.name,
                )
            )
            continue
        top = max(top, label)
    return top, bad


def first_problem(problems: list[Skip]) -> str:
    """The message that stops the opening: the first problem, with how many more masks are
    missing when it is a missing mask."""
    missing = sum(MASK_NOT_FOUND in skip.message for skip in problems)
    more = f" (and {missing - 1} more)" if MASK_NOT_FOUND in problems[0].message and missing > 1 else ""
    return problems[0].message + more
