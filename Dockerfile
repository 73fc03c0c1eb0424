# The service alone, torch-free: `steelseg[serve]` (numpy, OpenCV, Pillow, onnxruntime, FastAPI,
# uvicorn) serving an exported model. Build it from the repository root:
#
#   steelseg export runs/my-run --out deploy/model.onnx      # on a machine with steelseg[train]
#   docker build -t steelseg-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/deploy:/models:ro" -e STEELSEG_API_KEY=change-me steelseg-serve
#
# then open http://localhost:8000/ (the viewer) or POST images to /predict. The model is
# mounted, not baked in, so one image serves any export; the command's options follow the image
# name (e.g. `... steelseg-serve /models/other.onnx --batch-size 8`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# OpenCV's headless wheel still needs these shared libraries on a slim Debian.
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/steelseg
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve]" && useradd --create-home --uid 10001 steelseg

USER steelseg
EXPOSE 8000
ENTRYPOINT ["steelseg", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["/models/model.onnx"]
