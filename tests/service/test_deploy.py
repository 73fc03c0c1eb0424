"""Serving a real exported model: without torch in the process, as a real server process on
loopback under concurrent clients, and the ``serve`` command's one-line errors."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from steelseg.core import rle
from steelseg.files.images import read_gray
from steelseg.inference.predictor import Predictor

# What a torch-free deployment must never import (the serve extra installs none of them).
TRAINING_STACK = [
    "torch",
    "torchvision",
    "lightning",
    "pytorch_lightning",
    "segmentation_models_pytorch",
    "timm",
    "albumentations",
]


def reference(run_dir: Path, images: list[Path]) -> list[np.ndarray]:
    """The run's masks from PyTorch fp32 in this process: an independent path to compare with."""
    predictor = Predictor.from_run_dir(run_dir, backend="torch")
    return [predictor.predict(read_gray(path)) for path in images]


def masks_of(answer: dict) -> np.ndarray:
    height, width = answer["image"]["height"], answer["image"]["width"]
    return np.stack([rle.decode(c["rle"], (height, width)) for c in answer["classes"]])


def test_serving_an_onnx_file_imports_no_torch_and_matches_pytorch(tiny_export, tmp_path):
    run_dir, onnx_file, images = tiny_export
    paths = sorted(images.iterdir())[:3]
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys

        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {TRAINING_STACK!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)

        sys.meta_path.insert(0, NotInstalled())
        from fastapi.testclient import TestClient
        from steelseg.inference.predictor import Predictor
        from steelseg.service.app import create_app

        client = TestClient(create_app(Predictor.load([{str(onnx_file)!r}])))
        answers = [client.post("/predict", files={{"file": (p, open(p, "rb").read(), "image/jpeg")}}).json()
                   for p in {[str(p) for p in paths]!r}]
        model = client.get("/model").json()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {TRAINING_STACK!r})
        print(json.dumps({{"answers": answers, "model": model, "loaded": loaded}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert "onnx" in result["model"]["backend"] and "torch" not in result["model"]["versions"]
    expected = reference(run_dir, paths)
    for answer, truth in zip(result["answers"], expected):
        agreement = (masks_of(answer) == truth).mean()
        assert agreement >= 0.999, agreement  # onnxruntime vs PyTorch fp32: the export's own tolerance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], port: int, env: dict | None = None, quiet: bool = True) -> subprocess.Popen:
    command = [sys.executable, "-m", "steelseg", "serve", *args, "--port", str(port)] + (["--quiet"] if quiet else [])
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited {server.returncode}: {server.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError("server did not answer /health within 60 s")


@pytest.mark.slow
def test_real_server_process_answers_concurrent_clients_in_shared_batches(tiny_export):
    run_dir, onnx_file, images = tiny_export
    paths = sorted(images.iterdir())[:8]
    port = free_port()
    env = dict(os.environ, STEELSEG_API_KEY="k3y", OMP_NUM_THREADS="1")
    server = start_server([str(onnx_file), "--max-wait-ms", "200", "--batch-size", "4"], port, env)
    try:
        url = f"http://127.0.0.1:{port}"

        def ask(path: Path) -> dict:
            response = httpx.post(
                f"{url}/predict",
                files={"file": (path.name, path.read_bytes(), "image/jpeg")},
                headers={"X-API-Key": "k3y"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(8) as clients:  # 8 clients at once, 2 images each
            answers = list(clients.map(ask, paths + paths))
        assert (
            httpx.post(f"{url}/predict", files={"file": ("a.jpg", paths[0].read_bytes(), "image/jpeg")}).status_code
            == 401
        )
        health = httpx.get(f"{url}/health").json()
    finally:
        server.terminate()
        server.wait(30)
    assert health["images"] == 16 and health["batches"] < 16  # requests shared batches
    expected = reference(run_dir, paths)
    for answer, truth in zip(answers, expected + expected):
        assert (masks_of(answer) == truth).mean() >= 0.999
    assert server.returncode is not None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["/no/such/run"], "/no/such/run: not found"),
        (["RUN", "--port", "0"], "--port 0 is not a port number"),
        (["RUN", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["RUN", "--max-upload-mb", "0"], "--max-upload-mb must be at least"),
        (["BROKEN"], "onnxruntime cannot load it"),
    ],
)
def test_serve_command_errors_are_one_line(tiny_export, tmp_path, args, says):
    run_dir, _, _ = tiny_export
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    args = [str(run_dir) if a == "RUN" else str(broken) if a == "BROKEN" else a for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "steelseg", "serve", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.startswith("steelseg serve: error: ") and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_port_in_use_is_one_line(tiny_export):
    _, onnx_file, _ = tiny_export
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "steelseg", "serve", str(onnx_file), "--port", str(port), "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"steelseg serve: error: cannot listen on 127.0.0.1:{port} "), done.stderr


def test_real_server_logs_one_json_object_per_line_with_request_ids(tiny_export):
    _, onnx_file, images = tiny_export
    image = sorted(images.iterdir())[0]
    port = free_port()
    env = dict(os.environ, STEELSEG_API_KEY="k3y", STEELSEG_LOG_FORMAT="json", OMP_NUM_THREADS="1")
    server = start_server([str(onnx_file)], port, env, quiet=False)
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"X-API-Key": "k3y", "X-Request-ID": "line-7-strip-42"}
        files = {"file": (image.name, image.read_bytes(), "image/jpeg")}
        answer = httpx.post(f"{url}/predict", files=files, headers=headers, timeout=60)
        keyless = httpx.post(f"{url}/predict", files=files, timeout=60)
        ready = httpx.get(f"{url}/ready", timeout=10)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        server.terminate()
        server.wait(30)
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "line-7-strip-42"
    assert keyless.status_code == 401 and len(keyless.headers["x-request-id"]) == 32
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    load = next(line for line in metrics.splitlines() if line.startswith("steelseg_model_load_seconds "))
    assert float(load.split()[1]) > 0
    lines = [json.loads(line) for line in server.stdout.read().splitlines() if line.strip()]  # each one JSON
    access = [line for line in lines if line["request_id"] == "line-7-strip-42"]
    assert [(a["route"], a["status"], a["level"]) for a in access] == [("/predict", 200, "INFO")] and access[0][
        "ms"
    ] > 0
    assert any("with the API key from $STEELSEG_API_KEY" in line["message"] for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines are JSON too


def without_steelseg_variables() -> dict:
    return {name: value for name, value in os.environ.items() if not name.startswith("STEELSEG_")}


def dockerfile_command(instruction: str) -> list[str]:
    dockerfile = Path(__file__).resolve().parents[2] / "Dockerfile"
    line = next(line for line in dockerfile.read_text().splitlines() if line.startswith(instruction + " "))
    return json.loads(line.removeprefix(instruction + " "))


def test_the_dockerfile_serves_every_interface_only_with_a_key_or_no_auth():
    entrypoint = dockerfile_command("ENTRYPOINT")
    assert entrypoint[:2] == ["steelseg", "serve"] and "0.0.0.0" in entrypoint and "--no-auth" not in entrypoint
    assert "--no-auth" not in dockerfile_command("CMD")
    command = [sys.executable, "-m", "steelseg", *entrypoint[1:], "/no/such/model.onnx", "--port", str(free_port())]
    env = without_steelseg_variables()
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith("steelseg serve: error: refusing to serve 0.0.0.0 without an API key: set ")
    assert "$STEELSEG_API_KEY" in refused.stderr and "--no-auth" in refused.stderr
    # either way out gets past the check, to the model (which does not exist here)
    for extra, more_env in (([], {"STEELSEG_API_KEY": "k"}), (["--no-auth"], {})):
        done = subprocess.run(command + extra, capture_output=True, text=True, timeout=60, env={**env, **more_env})
        assert done.returncode == 1 and "/no/such/model.onnx" in done.stderr and "API key" not in done.stderr
