"""The wheel `make wheel` builds: one version, the licence, the extras a deployment chooses from."""

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import steelseg

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_version_the_licence_and_the_extras(tmp_path):
    build = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."]
    subprocess.run(
        [sys.executable, "-m", "pip", *build],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("steelseg-*.whl")
    assert wheel.name == f"steelseg-{steelseg.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"steelseg-{steelseg.__version__}.dist-info"
        meta = email.message_from_bytes(archive.read(f"{info}/METADATA"))
        licence = archive.read(f"{info}/licenses/LICENSE").decode()
    assert meta["Version"] == steelseg.__version__
    assert meta["License-Expression"] == "MIT" and licence.startswith("MIT License")
    assert {"serve", "serve-gpu", "train", "all"} <= set(meta.get_all("Provides-Extra"))
    gpu = [r for r in meta.get_all("Requires-Dist") if 'extra == "serve-gpu"' in r]
    assert any(r.startswith("onnxruntime-gpu") for r in gpu) and not any(r.startswith("onnxruntime>") for r in gpu)
    # the bundled recipes and the viewer page travel with the code
    assert "steelseg/configs/default.yaml" in names and "steelseg/service/viewer.html" in names
