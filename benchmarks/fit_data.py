"""The data of benchmarks/fit_benchmark.py: each set split once into a part to fit on and a
held-out part, written (or linked) under the benchmark's folder; the split is fixed by seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))


def prepare(name: str, out: Path, shared: Path) -> tuple[Path, Path]:
    sets = {"neu": _neu, "bsdata": _bsdata, "half-clean": _half_clean, "half-clean-1k": _half_clean_1k, "mixed": _mixed}
    return sets[name](out, shared)


def _neu(out: Path, shared: Path) -> tuple[Path, Path]:
    from neu_engine import split_holdout

    data = shared / "neu-seg"
    if not (data / "masks").is_dir():
        sys.exit(f"NEU-Seg not found at {data}")
    train, test = split_holdout(data, out / "data")
    for part in (train, test):
        (part / "classes.json").write_text(json.dumps({"class_names": ["inclusion", "patches", "scratches"]}))
    return train, test


def _bsdata(out: Path, shared: Path) -> tuple[Path, Path]:
    """LabelMe JSONs (label/) and photos (data/): 20% of the JSONs held out (seed 0), each part a
    LabelMe folder of links; the held-out part converted to masks for scoring."""
    from steelseg.files.importers import convert

    data = shared / "bsdata"
    jsons = sorted((data / "label").glob("*.json"))
    if not jsons:
        sys.exit(f"BSData not found at {data}")
    order = np.random.default_rng(0).permutation(len(jsons))
    held = set(order[: round(len(jsons) * 0.2)].tolist())
    parts = {"train": out / "data" / "train-labelme", "test": out / "data" / "test-labelme"}
    for i, path in enumerate(jsons):
        part = parts["test" if i in held else "train"]
        part.mkdir(parents=True, exist_ok=True)
        image = data / "data" / json.loads(path.read_text())["imagePath"].replace("\\", "/").split("/")[-1]
        for source in (path, image):
            link = part / source.name
            if not link.exists():
                link.symlink_to(source.resolve())
    return parts["train"], convert(parts["test"], out / "data" / "test-masks", reuse=True).out


def _half_clean(out: Path, shared: Path) -> tuple[Path, Path]:
    from steelseg.files.synth import write_dataset

    train = write_dataset(out / "data" / "train", 400, seed=11, progress=False)
    test = write_dataset(out / "data" / "test", 100, seed=12, progress=False)
    return train, test


def _half_clean_1k(out: Path, shared: Path) -> tuple[Path, Path]:
    """The same strips, 1,000 to fit on and 200 held out: one trained fold of five then leaves 200
    out-of-fold images to select on instead of 80 (other seeds than ``half-clean``)."""
    from steelseg.files.synth import write_dataset

    train = write_dataset(out / "data" / "train", 1000, seed=13, progress=False)
    test = write_dataset(out / "data" / "test", 200, seed=14, progress=False)
    return train, test


SIZES = [(h, w) for h in (128, 160, 192, 224, 256, 320) for w in (256, 384, 512, 768)]


def _mixed(out: Path, shared: Path) -> tuple[Path, Path]:
    return _mixed_folder(out / "data" / "train", 300, seed=21), _mixed_folder(out / "data" / "test", 100, seed=22)


def _mixed_folder(folder: Path, n: int, seed: int) -> Path:
    """Synthetic strips cut and resized to 24 sizes; a fifth class of small discs on 5% of them."""
    from steelseg.files.datasets import write_class_names
    from steelseg.files.synth import CLASS_NAMES, make_strip

    if (folder / "classes.json").is_file():
        return folder
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for index in range(n):
        strip = make_strip(seed, index)
        height, width = SIZES[rng.integers(len(SIZES))]
        x0 = int(rng.integers(0, strip.image.shape[1] - 800))
        image = cv2.resize(strip.image[:, x0 : x0 + 800], (width, height), interpolation=cv2.INTER_AREA)
        labels = np.zeros((height, width), np.uint8)
        for c, mask in enumerate(strip.masks, start=1):
            part = cv2.resize(mask[:, x0 : x0 + 800].astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
            labels[part > 0] = c
        if rng.random() < 0.05:
            for _ in range(int(rng.integers(1, 4))):
                centre = (int(rng.integers(8, width - 8)), int(rng.integers(8, height - 8)))
                radius = int(rng.integers(3, 7))
                cv2.circle(image, centre, radius, int(rng.integers(10, 60)), -1)
                cv2.circle(labels, centre, radius, 5, -1)
        cv2.imwrite(str(folder / "images" / f"mixed_{seed}_{index:04d}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"mixed_{seed}_{index:04d}.png"), labels)
    write_class_names(folder, [*CLASS_NAMES, "pinholes"])
    return folder
