"""The service under load and attack: ``steelseg serve`` as its own process on loopback, an API
key set, ``--requests`` good requests from ``--clients`` concurrent clients while attackers send,
at the same time: uploads over the size limit, decompression bombs, requests without the key,
malformed multipart bodies, slow-header (slowloris) and slow-body clients.

    python benchmarks/service_load.py [--requests 2000] [--clients 16] [--size 256x400]
        [--data ../shared/data/severstal-mini] [--max-seconds 900] [--backend auto]

The model is the default recipe's network (U-Net / resnet18) with random weights and the last
bias at -3 (as predict_throughput.py). Good requests are crops of the real severstal-mini strips
(``--size``, default a quarter strip, so that 2,000 requests take minutes on 2 CPU cores).

Printed: the count of answers by status for good requests and for each attack (every good one
must be 200, no answer may be 5xx, every attack must be refused with its 4xx or a closed
connection); requests/s and p50 / p99 latency of the good requests; the server's RSS after
the warm-up, after every quarter of the load, and at the end; and the number of images the
networks ran, which must equal the good requests (refused requests run no inference). Meanwhile
``/metrics`` is scraped every ``--scrape-seconds`` (as Prometheus would, without the key): at
the end its answers by route and status, its latency quantiles (from the histogram's buckets),
its errors by status, queue depth seen, and batch sizes are printed next to the client's own
counts, which they must match for /predict. It exits 1 if any of these fail. ``--max-seconds``
bounds the run: the load stops there and says so.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from predict_throughput import DEFAULT_DATA, make_run  # noqa: E402
from service_speed import free_port, start_server  # noqa: E402
from steelseg.files.images import read_gray, require_images  # noqa: E402

KEY = "load-test-key"


def crops(data: Path, height: int, width: int) -> list[bytes]:
    """PNG crops of the real strips, one per strip and position, as uploads."""
    uploads = []
    for path in require_images(data / "train_images"):
        image = read_gray(path)
        for left in range(0, image.shape[1] - width + 1, width):
            buffer = io.BytesIO()
            Image.fromarray(image[:height, left : left + width]).save(buffer, format="PNG")
            uploads.append(buffer.getvalue())
    return uploads


def bomb(height: int = 60_000, width: int = 60_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Attacks:
    """Attackers in threads until stopped; ``results[kind]`` counts their answers."""

    def __init__(self, url: str, port: int):
        self.url, self.port = url, port
        self.stop = threading.Event()
        self.results: dict[str, Counter] = {}
        self.lock = threading.Lock()

    def record(self, kind: str, outcome) -> None:
        with self.lock:
            self.results.setdefault(kind, Counter())[outcome] += 1

    def http(self, kind: str, **request) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    self.record(kind, client.post(f"{self.url}/predict", **request).status_code)
                except httpx.HTTPError as err:
                    self.record(kind, type(err).__name__)
                time.sleep(0.05)

    def slow(self, kind: str, first: bytes) -> None:
        """Open a connection, send ``first``, then nothing: the server must close it."""
        while not self.stop.is_set():
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            sock.sendall(first)
            try:
                answer = sock.recv(4096)
                outcome = "closed" if not answer else answer.split(b" ", 2)[1].decode()
            except (ConnectionResetError, TimeoutError) as err:
                outcome = "closed" if isinstance(err, ConnectionResetError) else "never closed"
            sock.close()
            self.record(kind, outcome)

    def threads(self, image: bytes) -> list[threading.Thread]:
        key = {"X-API-Key": KEY}
        jobs = [
            (
                "oversized upload",
                self.http,
                dict(content=b"\0" * 3_000_000, headers={**key, "content-type": "image/png"}),
            ),
            ("decompression bomb", self.http, dict(files={"file": ("bomb.png", bomb(), "image/png")}, headers=key)),
            ("no API key", self.http, dict(files={"file": ("a.png", image, "image/png")})),
            (
                "malformed multipart",
                self.http,
                dict(content=b"--x\r\nbroken", headers={**key, "content-type": "multipart/form-data; boundary=x"}),
            ),
            ("slow headers", self.slow, b"POST /predict HTTP/1.1\r\nHost: x\r\n"),
            (
                "slow body",
                self.slow,
                (
                    f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
                    "Content-Type: image/png\r\nContent-Length: 9999\r\n\r\n"
                ).encode(),
            ),
        ]
        return [
            threading.Thread(
                target=fn,
                args=(kind, arg) if fn == self.slow else (kind,),
                kwargs={} if fn == self.slow else arg,
                daemon=True,
            )
            for kind, fn, arg in jobs
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--size", default="256x400", help="HxW of the uploaded crops")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "torch-amp", "onnx"])
    parser.add_argument("--scrape-seconds", type=float, default=2.0, help="how often /metrics is read")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    uploads = crops(args.data, height, width)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run, "default", head_bias=-3.0)
        port = free_port()
        options = [
            "--backend",
            args.backend,
            "--max-upload-mb",
            "2",
            "--max-queue",
            "64",
            "--body-timeout",
            "5",
            "--header-timeout",
            "5",
        ]
        server = start_server(run, port, options, env={"STEELSEG_API_KEY": KEY})
        url = f"http://127.0.0.1:{port}"
        try:
            failures = load_and_attack(server, url, port, uploads, args)
        finally:
            server.terminate()
            server.wait(30)
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    sys.exit(1 if failures else 0)


def load_and_attack(server: subprocess.Popen, url: str, port: int, uploads: list[bytes], args) -> list[str]:
    key = {"X-API-Key": KEY}
    with httpx.Client(timeout=60) as client:  # warm-up
        for data in uploads[: 2 * args.clients]:
            client.post(f"{url}/predict", files={"file": ("w.png", data, "image/png")}, headers=key)
    warm = httpx.get(f"{url}/health").json()["images"]
    rss = [("after warm-up", rss_mb(server.pid))]
    statuses, latencies = Counter(), []
    lock = threading.Lock()
    done = 0
    started = time.monotonic()
    quarter = max(args.requests // 4, 1)

    def client(indices: list[int]) -> None:
        nonlocal done
        rng = random.Random(indices[0])
        with httpx.Client(timeout=60) as http:
            for i in indices:
                if time.monotonic() - started > args.max_seconds:
                    return
                data = uploads[rng.randrange(len(uploads))]
                t0 = time.perf_counter()
                try:
                    status = http.post(
                        f"{url}/predict", files={"file": (f"{i}.png", data, "image/png")}, headers=key
                    ).status_code
                except httpx.HTTPError as err:
                    status = type(err).__name__
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    statuses[status] += 1
                    done += 1
                    if done % quarter == 0:
                        rss.append((f"after {done} requests", rss_mb(server.pid)))

    scraper = Scraper(url, args.scrape_seconds, server.pid)
    scraper.start()
    before = scraper.read()
    attacks = Attacks(url, port)
    attackers = attacks.threads(uploads[0])
    for thread in attackers:
        thread.start()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client, [list(range(c, args.requests, args.clients)) for c in range(args.clients)]))
    wall = time.monotonic() - started
    attacks.stop.set()
    for thread in attackers:
        thread.join(60)
    health = httpx.get(f"{url}/health").json()
    rss.append(("at the end", rss_mb(server.pid)))
    scraper.stop.set()
    scraper.join(30)
    after = scraper.read()

    good = sum(statuses.values())
    p50, p99 = (statistics.quantiles(latencies, n=100, method="inclusive")[q - 1] for q in (50, 99))
    print(
        f"good requests: {good} of {args.requests} in {wall:.0f} s from {args.clients} clients "
        f"({good / wall:.1f} requests/s), "
        f"statuses {dict(statuses)}, latency p50 {1000 * p50:.0f} ms, p99 {1000 * p99:.0f} ms"
    )
    for kind, outcomes in attacks.results.items():
        print(f"attack {kind}: {sum(outcomes.values())} tries, answers {dict(outcomes)}")
    print("server RSS (MB): " + ", ".join(f"{label} {mb:.0f}" for label, mb in rss))
    ran = health["images"] - warm
    print(f"images the networks ran during the load: {ran} (good requests answered 200: {statuses[200]})")

    failures = report_metrics(before, after, scraper, statuses)
    if good < args.requests:
        failures.append(f"the load stopped at --max-seconds {args.max_seconds:g} after {good} requests")
    if set(statuses) != {200}:
        failures.append(f"good requests not all 200: {dict(statuses)}")
    expected = {
        "oversized upload": {413},
        "decompression bomb": {413},
        "no API key": {401},
        "malformed multipart": {400},
        "slow headers": {"closed"},
        "slow body": {"408"},
    }
    for kind, allowed in expected.items():
        outcomes = set(attacks.results.get(kind, {}))
        if not outcomes or not outcomes <= allowed:
            failures.append(
                f"attack {kind}: answers {sorted(map(str, outcomes))}, expected {sorted(map(str, allowed))}"
            )
    if any(isinstance(s, int) and s >= 500 for c in [statuses, *attacks.results.values()] for s in c):
        failures.append("a 5xx answer")
    if ran != statuses[200]:
        failures.append(
            f"the networks ran {ran} images for {statuses[200]} good requests: refused requests ran inference"
        )
    return failures


class Scraper(threading.Thread):
    """Reads /metrics every ``every`` seconds, keeping the largest queue depth seen and the
    server's RSS at each scrape."""

    def __init__(self, url: str, every: float, pid: int):
        super().__init__(daemon=True)
        self.url, self.every, self.pid = url, every, pid
        self.stop = threading.Event()
        self.scrapes, self.max_queue, self.rss = 0, 0.0, []

    def read(self) -> dict:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def run(self) -> None:
        while not self.stop.wait(self.every):
            samples = self.read()
            self.scrapes += 1
            self.max_queue = max(self.max_queue, samples.get(("steelseg_queue_depth", ()), 0.0))
            self.rss.append(rss_mb(self.pid))


def _delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _quantile(before: dict, after: dict, q: float) -> float:
    """The q-quantile of /predict's latency during the load, from the histogram's buckets (the
    upper bound of the bucket it falls in, as Prometheus' histogram_quantile without interpolation)."""
    buckets = sorted(
        (
            float("inf") if dict(labels)["le"] == "+Inf" else float(dict(labels)["le"]),
            after[(name, labels)] - before.get((name, labels), 0.0),
        )
        for name, labels in after
        if name == "steelseg_request_seconds_bucket" and dict(labels).get("route") == "/predict"
    )
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= q * total)


def report_metrics(before: dict, after: dict, scraper: Scraper, statuses: Counter) -> list[str]:
    by_status = {
        dict(labels)["status"]: after[(name, labels)] - before.get((name, labels), 0.0)
        for name, labels in after
        if name == "steelseg_requests_total" and dict(labels).get("route") == "/predict"
    }
    errors = {
        dict(labels)["status"]: after[(name, labels)] - before.get((name, labels), 0.0)
        for name, labels in after
        if name == "steelseg_errors_total"
    }
    batches = _delta(before, after, "steelseg_batch_size_count")
    images = _delta(before, after, "steelseg_images_predicted_total")
    print(
        f"/metrics ({scraper.scrapes} scrapes): /predict by status {by_status}; latency of every /predict answer "
        f"(refusals included) p50 <= "
        f"{1000 * _quantile(before, after, 0.5):.0f} ms, p99 <= {1000 * _quantile(before, after, 0.99):.0f} ms; "
        f"errors by status {errors}; largest queue depth seen {scraper.max_queue:.0f}; {images:.0f} images in "
        f"{batches:.0f} batches ({images / max(batches, 1):.2f} per batch); RSS at the scrapes "
        f"{min(scraper.rss, default=0):.0f}-{max(scraper.rss, default=0):.0f} MB"
    )
    return (
        []
        if by_status.get("200", 0) == statuses[200]
        else [f"/metrics counted {by_status.get('200', 0):.0f} /predict 200s, the clients {statuses[200]}"]
    )


if __name__ == "__main__":
    main()
