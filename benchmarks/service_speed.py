"""Service throughput: ``steelseg serve`` under concurrent clients on loopback against the
in-process Predictor, on the same real Severstal strips (256 x 1600).

    python benchmarks/service_speed.py [--data ../shared/data/severstal-mini] [--clients 8]
        [--requests 96] [--rounds 3] [--batch 4] [--max-wait-ms 5] [--backend auto]
        [--config default] [--run RUN_DIR]

The default recipe's network (U-Net / resnet18, 4 classes) with random weights and the last
layer's bias at -3, as in predict_throughput.py (a few percent of each strip marked, as a
trained model's), or a trained ``--run``. Then, on the same images:

- in-process: ``Predictor.predict_folder`` on a folder of the strips (read, decode, predict in
  batches of ``--batch``, post-process, RLE): the images/s ``steelseg predict`` reaches;
- service: ``steelseg serve`` as its own process on 127.0.0.1, ``--clients`` threads each
  posting strips (multipart JPEG uploads) one after another, ``--requests`` in all after a
  warm-up: requests/s over the wall time, p50 / p99 latency per request, and how many
  images each network batch held (from /health).

Both are measured in ``--rounds`` interleaved rounds (in-process, then service), so that a
slower spell of a shared machine hits both; medians are reported, and each round's figures.
The issue's target: service requests/s >= 0.8 x in-process images/s. The clients run in this
process; on a 2-core machine they take CPU from the server, as real clients on the same host
would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import httpx  # noqa: E402

from predict_throughput import DEFAULT_DATA, make_run  # noqa: E402
from steelseg.files.images import require_images  # noqa: E402
from steelseg.hardware import keep_freed_memory  # noqa: E402
from steelseg.inference.predictor import Predictor  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def in_process_seconds(predictor: Predictor, folder: Path) -> float:
    start = time.perf_counter()
    predictor.predict_folder(folder, progress=False)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, options: list[str], env: dict | None = None) -> subprocess.Popen:
    """``steelseg serve RUN --port PORT OPTIONS...`` as its own process, once /health answers."""
    command = [sys.executable, "-m", "steelseg", "serve", str(run), "--port", str(port), "--quiet", *options]
    env = dict(os.environ, PYTHONPATH=str(SRC), **(env or {}))
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def load(url: str, uploads: list[tuple[str, bytes]], clients: int, requests: int) -> tuple[float, list[float]]:
    """``requests`` posts from ``clients`` threads, each posting one after another: (wall seconds, latencies)."""
    latencies: list[float] = []
    per_client = [list(range(i, requests, clients)) for i in range(clients)]

    def client(indices: list[int]) -> None:
        with httpx.Client(timeout=120) as http:
            for i in indices:
                name, data = uploads[i % len(uploads)]
                start = time.perf_counter()
                response = http.post(f"{url}/predict", files={"file": (name, data, "image/jpeg")})
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"request {i}: HTTP {response.status_code}: {response.text[:300]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, per_client))
    return time.perf_counter() - start, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="severstal-mini (its train_images/)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=96, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "torch-amp", "onnx"])
    parser.add_argument("--config", default="default")
    parser.add_argument("--run", type=Path, help="a trained run to serve instead of random weights")
    args = parser.parse_args()
    images = args.data / "train_images"
    if not images.is_dir():
        raise SystemExit(f"{images}: not found (give --data, a folder with train_images/)")
    keep_freed_memory()  # as `predict` and `serve` set it
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or Path(tmp) / "run"
        if args.run is None:
            make_run(run, args.config, head_bias=-3.0)
        folder = Path(tmp) / "images"
        shutil.copytree(images, folder)
        count = len(require_images(folder))
        predictor = Predictor.load([run], backend=args.backend, batch_size=args.batch)
        predictor.predict_folder(folder, progress=False)  # warm-up
        print(f"model: {predictor.describe()}, {count} strips of 256x1600, batch {args.batch}", flush=True)
        uploads = [(p.name, p.read_bytes()) for p in require_images(folder)]
        port = free_port()
        options = [
            "--backend",
            args.backend,
            "--batch-size",
            str(args.batch),
            "--max-wait-ms",
            str(args.max_wait_ms),
            "--max-queue",
            str(4 * args.clients),
        ]
        server = start_server(run, port, options)
        url = f"http://127.0.0.1:{port}"
        in_process, served, latencies, per_batch = [], [], [], []
        try:
            load(url, uploads, args.clients, 2 * args.clients)  # warm-up
            for round_ in range(1, args.rounds + 1):
                in_process.append(count / in_process_seconds(predictor, folder))
                before = httpx.get(f"{url}/health").json()
                wall, times = load(url, uploads, args.clients, args.requests)
                after = httpx.get(f"{url}/health").json()
                served.append(args.requests / wall)
                latencies += times
                per_batch.append((after["images"] - before["images"]) / max(after["batches"] - before["batches"], 1))
                print(
                    f"round {round_}: in-process {in_process[-1]:.2f} images/s, service {served[-1]:.2f} requests/s "
                    f"({per_batch[-1]:.2f} images per network batch)",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(30)
    rate, service = statistics.median(in_process), statistics.median(served)
    print(f"in-process Predictor.predict_folder: {rate:.2f} images/s (median of {args.rounds})")
    print(
        f"service, {args.clients} concurrent clients on loopback, {args.requests} requests per round: "
        f"{service:.2f} requests/s "
        f"(median), latency p50 {1000 * percentile(latencies, 50):.0f} ms, "
        f"p99 {1000 * percentile(latencies, 99):.0f} ms, "
        f"{statistics.mean(per_batch):.2f} images per network batch (max-wait {args.max_wait_ms:g} ms)"
    )
    print(f"service / in-process: {service / rate:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
