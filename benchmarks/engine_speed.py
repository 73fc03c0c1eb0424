"""Engine speed: an ensemble's end-to-end prediction against its members' raw forward, and the 1st
place's ensemble projected onto Kaggle's test set.

    python benchmarks/engine_speed.py [--data ../shared/data/severstal-mini] [--n 20] [--batch 4]
        [--members unet-resnet18 fpn-resnet18 cls-resnet18] [--tta hflip] [--backend auto]
        [--device auto] [--threads T] [--repeats 3] [--post KEY=VALUE ...] [--coverage 0.02]
        [--keep-freed-memory] [--no-profile] [--project-backends auto [onnx]] [--project-batch B]
        [--unets 5] [--fpns 4] [--screened 0.5] [--skip-ensemble | --skip-projection]

Random weights (seed 0; speed does not depend on them), ``encoder_weights: null``: nothing is
downloaded. Segmenters' last-layer bias is -3 and, in (1), the pixel thresholds mark
``--coverage`` of the pixels, as a trained model's masks cover a few percent of a strip
(post-processing and RLE cost more the more they mark).

(1) One ensemble (default: U-Net and FPN / resnet18 segmenters, 1 channel, a resnet18
classifier, 3 channels) with ``--tta`` (default hflip: 2 views) from ``Predictor.load``, on the
same ``--n`` 256x1600 strips (severstal-mini's JPGs, copied under other names up to ``--n``;
synthetic JPGs where that folder is absent):

- end-to-end: ``Predictor.predict_folder``: read and decode, every member's every view,
  averaging, the gated post-processing (``--post``, default the 1st place's: components >= 150
  px, min area 600/600/900/2000, classifier > 0.6, peak gate), RLE;
- raw forward: ``member.backend(x)`` for every member and view on inputs prepared beforehand
  with ``member.inputs(images)``, only the backend calls timed.

Medians of ``--repeats`` interleaved passes after a warm-up batch; the issue's target is
end-to-end / raw >= 0.85 on CPU. Then one instrumented end-to-end pass: time per stage, in the
thread it runs in (``--no-profile`` skips it).

(2) The 1st place's ensemble on Kaggle's 5,506 test strips: 3 x efficientnet-b1 + resnet34
classifiers, ``--unets`` U-Net + ``--fpns`` FPN segmenters on efficientnet-b3, 3 TTA views (none,
hflip, vflip). One network of each kind is timed per strip (forward only) and projected:
classifiers on every strip; segmenters on every strip, and on the ``1 - --screened`` share the
classifiers let through (the Predictor itself segments every strip); also divided by (1)'s
end-to-end / raw.

``--keep-freed-memory`` measures with glibc's malloc keeping freed memory (``keep_freed_memory``):
the default hands every forward's activations back to the kernel, which costs page faults.
``--device auto`` takes a CUDA GPU where one is visible. On a 2-core machine with another
process busy, set OMP_NUM_THREADS=1 (else torch's two threads run several times slower).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

# This repository's src, whichever python runs the script: the shared environment holds only
# the dependencies, never steelseg itself (see Makefile).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from steelseg.config import load_config  # noqa: E402
from steelseg.core import rle  # noqa: E402
from steelseg.core.postprocess import PostProcess  # noqa: E402
from steelseg.errors import SteelsegError  # noqa: E402
from steelseg.files import rundir
from steelseg.files.images import read_gray, require_images  # noqa: E402
from steelseg.inference import ensemble as ensemble_module  # noqa: E402
from steelseg.inference import predictor as predictor_module  # noqa: E402
from steelseg.inference.backends import BACKENDS, resolve_backend  # noqa: E402
from steelseg.inference.ensemble import TTA  # noqa: E402
from steelseg.inference.predictor import Predictor  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal-mini"
CLASS_NAMES = "data.class_names=['1', '2', '3', '4']"
# name -> (recipe, overrides): the networks benchmarked; an ensemble is any list of them.
NETWORKS = {
    "unet-resnet18": ("default", []),
    "fpn-resnet18": ("default", ["model.arch=fpn"]),
    "cls-resnet18": ("first_place_cls_resnet34", ["model.encoder_name=resnet18"]),
    "cls-resnet34": ("first_place_cls_resnet34", []),
    "cls-effb1": ("first_place_cls_effb1", []),
    "unet-effb3": ("first_place_unet", []),
    "fpn-effb3": ("first_place_fpn", []),
}
# The 1st place's post-processing (postprocess.py): classifier gate 0.6, peak gate, pixel
# threshold 0.55, components under 150 px removed, whole-mask minimum areas.
FIRST_PLACE_POST = [
    "pixel_threshold=0.55",
    "min_component=150",
    "min_area=[600, 600, 900, 2000]",
    "head_threshold=0.6",
    "peak_threshold=[0.7, 0.7, 0.6, 0.6]",
]
KAGGLE_TEST = 5506
KAGGLE_MINUTES = 60
FIRST_PLACE_VIEWS = 3  # none, hflip, vflip


def make_run(run: Path, network: str, head_bias: float = -3.0, onnx: bool = False) -> None:
    """A run directory holding ``network`` (``NETWORKS``) with random weights; a segmenter's
    last-layer bias set to ``head_bias``; exported to ONNX when ``onnx``."""
    from steelseg.models.registry import build_model
    from steelseg.models.weights import save_weights

    recipe, overrides = NETWORKS[network]
    config = load_config(recipe, [CLASS_NAMES, "model.encoder_weights=null", *overrides])
    run.mkdir(parents=True)
    rundir.save_config(run, config)
    net = build_model(config.model, 4).eval()
    if config.model.task == "segment":
        net.net.segmentation_head[0].bias.data.fill_(head_bias)
    save_weights(run, net)
    if onnx:
        from steelseg.inference.export import export_onnx

        export_onnx(run)


def image_folder(folder: Path, data: Path, n: int) -> str:
    """``n`` 256x1600 strips in ``folder``: the real ones, copied under other names, or
    synthetic JPGs (smooth rows and noise, like steel) where ``data`` is absent."""
    folder.mkdir()
    real = data / "train_images"
    if real.is_dir():
        paths = require_images(real)
        for i in range(n):
            path = paths[i % len(paths)]
            shutil.copyfile(path, folder / f"{i // len(paths)}-{path.name}")
        return f"{n} real strips from {real} ({len(paths)} distinct)"
    rng = np.random.default_rng(0)
    for i in range(n):
        rows = np.linspace(60, 140, 256)[:, None] + rng.normal(0, 12, (256, 1600))
        cv2.imwrite(str(folder / f"synthetic-{i:04d}.jpg"), np.clip(rows, 0, 255).astype(np.uint8))
    return f"{n} synthetic strips ({real} not found)"


def keep_freed_memory() -> str:
    from steelseg.hardware import keep_freed_memory as keep  # what predict does

    return keep()


def page_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def raw_seconds(predictor: Predictor, inputs: list[list[list[np.ndarray]]]) -> float:
    """Every member's every view on the prepared inputs (batch -> member -> view): the backend
    calls alone (each returns numpy arrays, so a GPU has finished when it returns)."""
    total = 0.0
    for batch in inputs:
        for member, views in zip(predictor.members, batch):
            for x in views:
                start = time.perf_counter()
                member.backend(x)
                total += time.perf_counter() - start
    return total


def e2e_seconds(predictor: Predictor, folder: Path) -> float:
    start = time.perf_counter()
    predictor.predict_folder(folder, progress=False)
    return time.perf_counter() - start


class Stages:
    """Seconds per stage and the thread that spent them, summed over calls (thread-safe)."""

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def timed(self, stage: str, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                thread = "main" if threading.current_thread() is threading.main_thread() else "worker"
                with self.lock:
                    key = (stage, thread)
                    self.seconds[key] = self.seconds.get(key, 0.0) + spent

        return wrapper


@contextmanager
def instrumented(predictor: Predictor):
    """Time every stage of ``predict_folder`` in the thread it runs in, by wrapping the
    functions it calls; everything is put back afterwards."""
    stages = Stages()
    patches = [
        (predictor, "_read", "read + decode"),
        (ensemble_module, "to_input", "to_input (pre-process)"),
        (ensemble_module, "to_image", "to_image (resize, scores)"),
        (predictor_module, "combine", "combine (average members)"),
        (predictor_module, "ensemble_outputs", "ensemble_outputs (peaks)"),
        (PostProcess, "candidates", "candidates (post-process)"),
        (rle, "encode", "RLE encode"),
        (predictor, "finish", "finish (gates)"),
    ]
    for member in predictor.members:
        patches += [
            (member, "backend", f"backend {member_label(member)}"),
            (member, "outputs", f"outputs {member_label(member)}"),
        ]
    saved = []
    for owner, name, stage in patches:
        own = vars(owner).get(name)  # None: a method of the class, shadowed below
        saved.append((owner, name, own))
        setattr(owner, name, stages.timed(stage, own if own is not None else getattr(owner, name)))
    try:
        yield stages
    finally:
        for owner, name, own in reversed(saved):
            if own is None:
                delattr(owner, name)
            else:
                setattr(owner, name, own)


def member_label(member) -> str:
    return f"{Path(member.name).name} x{len(member.views)}"


def profile_table(stages: Stages, wall: float, n: int, raw: float) -> None:
    """The instrumented pass: ms per strip in each stage, and what is left on the main thread."""
    seconds = stages.seconds
    nested = ("backend ", "to_input", "to_image")  # inside a member's outputs

    def total(prefix: str) -> float:
        return sum(v for (stage, _), v in seconds.items() if stage.startswith(prefix))

    outputs, backend = total("outputs "), total("backend ")
    rows = [(stage, thread, v) for (stage, thread), v in seconds.items() if not stage.startswith("outputs ")]
    rows.append(
        ("flip back + average views (in outputs)", "main", outputs - backend - total("to_input") - total("to_image"))
    )
    # The main thread's stages that are not nested in one another: each member's outputs,
    # combine, ensemble_outputs, RLE (of post-processed strips) and the gates.
    main = outputs + sum(
        v for (stage, thread), v in seconds.items() if thread == "main" and not stage.startswith(("outputs ", *nested))
    )
    rows.append(("main thread, outside the stages above", "main", wall - main))
    print(f"\ninstrumented end-to-end pass: {wall:.2f} s for {n} strips ({n / wall:.2f} im/s)")
    print(f"{'stage':<44}{'thread':<8}{'ms/strip':>10}{'of wall':>9}")
    for stage, thread, value in sorted(rows, key=lambda row: -row[2]):
        print(f"{stage:<44}{thread:<8}{1000 * value / n:>10.1f}{value / wall:>9.1%}")
    print(
        "worker: the reader (2 threads) and post-processing (1 thread) run beside the main thread; "
        "'outside the stages': waiting for decoded strips, Python"
    )
    print(
        f"backend calls in this pass vs the raw forward alone: {backend:.2f} s vs {raw:.2f} s "
        f"({backend / raw - 1:+.0%})"
    )


def coverage(predictor: Predictor, images: np.ndarray) -> str:
    """What the masks look like before the gates (post-processing cost depends on it)."""
    outputs = predictor.predict_outputs(images)
    post = predictor.postprocess
    masks, peaks = zip(*(post.candidates(o.pixels, o.heads) for o in outputs))
    masks = np.stack(masks)
    thresholded = outputs.pixels >= post.pixel_threshold[None, :, None, None]
    runs = [len(rle.encode(m).split()) // 2 for image in masks for m in image if m.any()]
    kept = post.gate(np.stack(peaks), outputs.heads)
    return (
        f"pixels over the threshold {thresholded.mean():.1%}, after components and min area {masks.mean():.1%}; "
        f"{len(runs)} of {masks.shape[0] * masks.shape[1]} masks non-empty, "
        f"{np.mean(runs) if runs else 0:.0f} runs each; "
        f"{kept.mean():.0%} of (strip, class) pass the gates"
    )


def calibrated(predictor: Predictor, images: np.ndarray, share: float) -> PostProcess:
    """The post-processing with each class's pixel threshold at the quantile of the ensemble's
    probabilities on ``images`` that marks ``share`` of the pixels: random networks'
    probabilities are arbitrary (an average of members and views may never reach 0.55, or
    mark half the strip), so this gives post-processing and RLE a trained model's load."""
    pixels = predictor.predict_outputs(images).pixels
    thresholds = [float(np.quantile(pixels[:, c], 1 - share)) for c in range(pixels.shape[1])]
    return predictor.postprocess.override([f"pixel_threshold=[{', '.join(f'{t:.6f}' for t in thresholds)}]"])


def load_ensemble(args, tmp: Path, device: str, images: np.ndarray) -> Predictor:
    runs = []
    for i, network in enumerate(args.members):
        runs.append(tmp / f"{i}-{network}")
        make_run(runs[-1], network, onnx=args.backend == "onnx")
    predictor = Predictor.load(runs, args.backend, device, args.batch, tta=args.tta, overrides=args.post)
    if args.coverage:
        predictor.postprocess = calibrated(predictor, images[: args.batch], args.coverage)
    print(f"ensemble: {predictor.describe()}")
    for member in predictor.members:
        model = member.config.model
        arch = "classifier" if model.task == "classify" else model.arch
        print(
            f"  {Path(member.name).name}: {arch} / {model.encoder_name}, {model.in_channels} channel(s), "
            f"views {', '.join(member.views)}"
        )
    print("post-processing:\n" + predictor.postprocess.describe(predictor.class_names))
    print(f"masks ({args.batch} strips): {coverage(predictor, images[: args.batch])}")
    return predictor


def ensemble_speed(args, tmp: Path, folder: Path, device: str) -> float:
    """Part (1): prints the table, returns end-to-end / raw."""
    paths = require_images(folder)
    images = np.stack([read_gray(p) for p in paths])
    predictor = load_ensemble(args, tmp, device, images)
    inputs = [
        [member.inputs(images[i : i + args.batch]) for member in predictor.members]
        for i in range(0, len(images), args.batch)
    ]
    (tmp / "warm-up").mkdir()
    for path in paths[: args.batch]:
        shutil.copyfile(path, tmp / "warm-up" / path.name)
    predictor.predict_folder(tmp / "warm-up", progress=False)  # first calls: allocations, oneDNN kernel choice
    runs = {"raw": [], "end-to-end": []}
    faults = {"raw": [], "end-to-end": []}
    for _ in range(args.repeats):
        for name, work in (
            ("raw", lambda: raw_seconds(predictor, inputs)),
            ("end-to-end", lambda: e2e_seconds(predictor, folder)),
        ):
            before = page_faults()
            runs[name].append(work())
            faults[name].append(page_faults() - before)
    raw, e2e = statistics.median(runs["raw"]), statistics.median(runs["end-to-end"])
    n, views = len(images), sum(len(m.views) for m in predictor.members)
    print(
        f"\n(1) {n} strips, batch {args.batch}, {len(predictor.members)} networks, {views} forward passes per strip; "
        f"median of {args.repeats} passes (s: "
        + "; ".join(f"{k} {' '.join(f'{t:.2f}' for t in v)}" for k, v in runs.items())
        + ")"
    )
    print(f"{'':<36}{'images/s':>10}{'s/strip':>10}")
    print(f"{'raw forward (backend calls only)':<36}{n / raw:>10.2f}{raw / n:>10.3f}")
    print(f"{'end-to-end (predict_folder)':<36}{n / e2e:>10.2f}{e2e / n:>10.3f}")
    ratio = raw / e2e
    print(
        f"end-to-end / raw: {ratio:.2f} (target >= 0.85: {'met' if ratio >= 0.85 else 'NOT met'}); "
        f"the engine adds {(e2e - raw) / n * 1000:.0f} ms per strip around the forward"
    )
    print(
        "page faults per strip (memory the process got fresh from the kernel, 4 KiB each): "
        + ", ".join(f"{name} {statistics.median(counts) / n:,.0f}" for name, counts in faults.items())
    )
    if args.profile:
        with instrumented(predictor) as stages:
            wall = e2e_seconds(predictor, folder)
        profile_table(stages, wall, n, raw)
    return ratio


def forward_seconds(run: Path, backend: str, device: str, images: np.ndarray, repeats: int) -> tuple[float, str]:
    """One network's backend alone, per strip: median of ``repeats`` calls on one batch, after a warm-up."""
    predictor = Predictor.load([run], backend, device, len(images))
    member = predictor.members[0]
    x = member.inputs(images)[0]
    member.backend(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        member.backend(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(images), predictor.describe()


def projection(args, tmp: Path, images: np.ndarray, device: str, ratio: float | None) -> None:
    """Part (2): the 1st place's ensemble on Kaggle's test set, from one network of each kind."""
    kinds = {"cls-effb1": 3, "cls-resnet34": 1, "unet-effb3": args.unets, "fpn-effb3": args.fpns}
    backends = args.project_backends
    per_strip: dict[tuple[str, str], float] = {}
    for network in kinds:
        make_run(tmp / network, network, onnx="onnx" in backends)
        for backend in backends:
            per_strip[network, backend], details = forward_seconds(tmp / network, backend, device, images, args.repeats)
            print(
                f"  {network} on {backend}: {1000 * per_strip[network, backend]:.0f} ms per strip ({details})",
                flush=True,
            )
    n, views, passed = KAGGLE_TEST, FIRST_PLACE_VIEWS, 1 - args.screened
    print(
        "\n(2) 1st place's ensemble: 3 x cls-effb1 + cls-resnet34, "
        f"{args.unets} x unet-effb3 + {args.fpns} x fpn-effb3, "
        f"{views} TTA views, {n} strips of 256x1600, batch {len(images)}, on {device}"
    )
    names = [resolve_backend(b, device) for b in backends]
    print(f"{'network':<14}{'count':>6}" + "".join(f"{name + ' ms/strip':>20}" for name in names))
    for network, count in kinds.items():
        print(f"{network:<14}{count:>6}" + "".join(f"{1000 * per_strip[network, b]:>20.0f}" for b in backends))

    def minutes(backend: str, classifiers: bool) -> float:
        chosen = [count * per_strip[k, backend] for k, count in kinds.items() if k.startswith("cls") == classifiers]
        return sum(chosen) * views * n / 60

    segmenters = f"segmenters ({args.unets + args.fpns}) x {views} views"
    rows = {
        f"classifiers (4) x {views} views, every strip": [minutes(b, True) for b in backends],
        f"{segmenters}, every strip": [minutes(b, False) for b in backends],
        f"{segmenters}, {passed:.0%} of the strips": [minutes(b, False) * passed for b in backends],
        "total, segmenting every strip": [minutes(b, True) + minutes(b, False) for b in backends],
        f"total, screened ({args.screened:.0%} skipped)": [
            minutes(b, True) + minutes(b, False) * passed for b in backends
        ],
    }
    print(
        f"\nprojected minutes for {n} strips (forward only; 'x engine': divided by (1)'s end-to-end / raw"
        f"{f' = {ratio:.2f}' if ratio else ', not measured'}, an upper bound: the engine's own cost per view does not "
        f"grow with the network); Kaggle's limit: {KAGGLE_MINUTES} min"
    )
    print(f"{'':<44}" + "".join(f"{name:>12}{'x engine':>10}" for name in names))
    for label, values in rows.items():
        print(f"{label:<44}" + "".join(f"{v:>12.0f}{(f'{v / ratio:.0f}' if ratio else '-'):>10}" for v in values))
    best = min(list(rows.values())[-1])
    print(
        f"fastest projection: {best:.0f} min forward only = {best / KAGGLE_MINUTES:.1f}x "
        f"the {KAGGLE_MINUTES}-minute limit"
    )


def machine(device: str) -> str:
    import torch

    from steelseg import hardware

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    line = (
        f"CPU: {model}, {os.cpu_count()} logical CPUs, bf16 {'native' if hardware.cpu_has_bf16() else 'not native'}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )
    if device.startswith("cuda"):
        line += f"; GPU: {torch.cuda.get_device_name(torch.device(device))}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=20, help="strips in the folder (copies of the real ones beyond them)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--members",
        nargs="+",
        default=["unet-resnet18", "fpn-resnet18", "cls-resnet18"],
        choices=list(NETWORKS),
        metavar="NETWORK",
        help=f"networks of the ensemble: {', '.join(NETWORKS)}",
    )
    parser.add_argument(
        "--tta", default="hflip", choices=list(TTA), help="every member's TTA (both: none + hflip + vflip)"
    )
    parser.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement; the median counts")
    parser.add_argument(
        "--post",
        nargs="*",
        metavar="KEY=VALUE",
        help="post-processing (default: the 1st place's gates and sizes; no classifier gate without a classifier)",
    )
    parser.add_argument(
        "--coverage",
        type=float,
        default=0.02,
        help="share of pixels over the pixel threshold, calibrated on the first batch (0: --post's threshold)",
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc mallopt: keep freed memory (fewer page faults per forward; see keep_freed_memory)",
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the instrumented pass")
    parser.add_argument("--skip-projection", action="store_true", help="part (1) only")
    parser.add_argument("--skip-ensemble", action="store_true", help="part (2) only")
    parser.add_argument(
        "--project-backends", nargs="+", default=["auto"], choices=["auto", *BACKENDS], help="backends of part (2)"
    )
    parser.add_argument("--project-batch", type=int, help="batch of part (2) (default: --batch)")
    parser.add_argument("--unets", type=int, default=5, help="U-Nets among the 1st place's 9 segmenters")
    parser.add_argument("--fpns", type=int, default=4, help="FPNs among them")
    parser.add_argument("--screened", type=float, default=0.5, help="share of strips the classifiers screen out")
    args = parser.parse_args()
    if all(m.startswith("cls-") for m in args.members) and not args.skip_ensemble:
        parser.error("--members: predict_folder needs a segmenter among them")
    if args.post is None:
        has_classifier = any(m.startswith("cls-") for m in args.members)
        args.post = [p for p in FIRST_PLACE_POST if has_classifier or not p.startswith("head_threshold")]
    try:
        run(args)
    except SteelsegError as err:
        sys.exit(f"error: {err}")


def run(args) -> None:
    import torch

    from steelseg.hardware import resolve_device

    if args.keep_freed_memory:
        print(keep_freed_memory())
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the same random networks every run
    device = resolve_device(args.device)
    print(machine(device))
    print(
        f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
        "(1, 5, 15 min; other processes disturb the timings)"
    )
    print(
        f"device {device}; backend {args.backend} -> {resolve_backend(args.backend, device)}; "
        f"part (2) backends {', '.join(f'{b} -> {resolve_backend(b, device)}' for b in args.project_backends)}"
    )
    ratio = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        print(image_folder(folder, args.data, args.n), flush=True)
        if not args.skip_ensemble:
            ratio = ensemble_speed(args, Path(tmp), folder, device)
        if not args.skip_projection:
            batch = args.project_batch or args.batch
            images = np.stack([read_gray(p) for p in require_images(folder)[:batch]])
            projection(args, Path(tmp), images, device, ratio)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
