"""A predictor whose answer is known by construction, for the service's tests: its network says
"defect" (probability 1) exactly where the image is bright (> 200) in class 1 ("scratch"), where
it is dark (< 50) in class 3 ("pit"), and nowhere in class 2 ("patch"). Drawing a bright
rectangle and a dark one into a gray image therefore plants the masks the service must return."""

from __future__ import annotations

import io
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from steelseg.config import load_config
from steelseg.core.outputs import PIXELS
from steelseg.core.postprocess import PostProcess
from steelseg.inference.ensemble import Member
from steelseg.inference.predictor import Predictor

CLASS_NAMES = ["scratch", "patch", "pit"]
GRAY = 128


class ThresholdNetwork:
    """(N, 1, h, w) float input in 0..1 (mean 0, std 1) -> class 1 bright, class 2 never, class 3 dark."""

    name = "fake"

    def __init__(self):
        self.batch_sizes: list[int] = []

    def __call__(self, x):
        self.batch_sizes.append(len(x))
        bright = (x[:, 0] > 200 / 255).astype(np.float32)
        dark = (x[:, 0] < 50 / 255).astype(np.float32)
        return {PIXELS: np.stack([bright, np.zeros_like(bright), dark], axis=1)}

    def describe(self):
        return "fake threshold network (numpy)"


def make_predictor(batch_size: int = 4, min_area: int = 0) -> Predictor:
    config = load_config(None, ["data.class_names=[scratch, patch, pit]", "model.input_mean=0", "model.input_std=1"])
    member = Member("fake", config, ThresholdNetwork(), [0, 1, 2])
    return Predictor([member], PostProcess.uniform(3, 0.5, min_area), CLASS_NAMES, batch_size)


def planted(height: int = 64, width: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A gray image with a bright 10x30 rectangle at rows 5-14, columns 20-49 (class 1) and a
    dark 8x12 one at rows 40-47, columns 100-111 (class 3); and its true (3, H, W) masks."""
    image = np.full((height, width), GRAY, np.uint8)
    masks = np.zeros((3, height, width), bool)
    image[5:15, 20:50] = 250
    masks[0, 5:15, 20:50] = True
    image[40:48, 100:112] = 10
    masks[2, 40:48, 100:112] = True
    return image, masks


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def predictor() -> Predictor:
    return make_predictor()


# A tiny U-Net, one epoch on 64x320 synthetic strips: a real network to export and serve.
TINY = [
    "model.encoder_name=tu-test_resnet",
    "model.arch_params={decoder_channels: [16, 16, 8, 8, 8]}",
    "data.crop_height=32",
    "data.crop_width=64",
    "data.batch_size=4",
    "train.epochs=1",
    "train.oof_scale=null",
]


@pytest.fixture(scope="package")
def tiny_export(tmp_path_factory):
    """(run directory, its model exported to a lone .onnx file, a folder of test strips)."""
    from steelseg.config import load_config
    from steelseg.files import synth
    from steelseg.inference.export import export_onnx
    from steelseg.training.fit import train

    root = tmp_path_factory.mktemp("tiny-export")
    synth.write_dataset(root / "data", 10, seed=5, height=64, width=320, progress=False)
    train(load_config(None, TINY + [f"data.root={root / 'data'}"]), root / "run", progress=False)
    export_onnx(root / "run", root / "deploy" / "steel.onnx")
    return root / "run", root / "deploy" / "steel.onnx", root / "data" / "train_images"


@contextmanager
def serve(app, header_timeout: float | None = None):
    """The app on a free loopback port in a background thread, as ``steelseg serve`` runs it
    (with its header deadline when ``header_timeout`` is given): yields its base URL."""
    import uvicorn

    from steelseg.service.protocol import with_header_timeout

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    port = sock.getsockname()[1]
    http = with_header_timeout(header_timeout) if header_timeout else "h11"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=http))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(url, thread)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _wait_for_health(url: str, thread: threading.Thread, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the service at {url} did not answer /health within {timeout} s")
        time.sleep(0.05)
