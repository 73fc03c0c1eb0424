# The service alone, torch-free: `steelseg[serve]` (numpy, OpenCV, Pillow, onnxruntime, FastAPI,
# uvicorn) serving an exported model. Build it from the repository root:
#
#   steelseg export runs/my-run --out deploy/model.onnx      # on a machine with steelseg[train]
#   docker build -t steelseg-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/deploy:/models:ro" -e STEELSEG_API_KEY=change-me steelseg-serve
#
# then open http://localhost:8000/ (the viewer) or POST images to /predict. The model is
# mounted, not baked in, so one image serves any export; the command's options follow the image
# name (e.g. `... steelseg-serve /models/other.onnx --batch-size 8`) or come as STEELSEG_<OPTION>
# variables (e.g. `-e STEELSEG_BATCH_SIZE=8 -e STEELSEG_LOG_FORMAT=json`).
#
# A key is required: the container listens on every interface, and `steelseg serve` refuses that
# without STEELSEG_API_KEY. Serving without one is a choice to write down, behind your own proxy
# or on a closed network: `docker run ... steelseg-serve /models/model.onnx --no-auth` (or
# `-e STEELSEG_NO_AUTH=1`). Its `serving ...` line at start says whether it runs with a key.
# Probes and scrapers need no key: /health (liveness), /ready (readiness), /metrics (Prometheus).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# OpenCV's headless wheel still needs these shared libraries on a slim Debian.
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/steelseg
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
# The versions we test: requirements.lock as constraints (its hashes dropped: pip checks hashes
# only for a whole hash-pinned set, and the local package has none).
RUN sed -e '/--hash=/d' -e 's/ \\$//' requirements.lock > /tmp/constraints.txt \
    && pip install -c /tmp/constraints.txt ".[serve]" && rm /tmp/constraints.txt \
    && useradd --create-home --uid 10001 steelseg

USER steelseg
EXPOSE 8000
# No --no-auth here: without STEELSEG_API_KEY the container stops at once, in one line, unless
# the run adds --no-auth itself (tests/service/test_deploy.py holds this line to it).
ENTRYPOINT ["steelseg", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["/models/model.onnx"]
