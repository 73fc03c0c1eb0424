"""The HTTP service: one Predictor behind FastAPI.

    POST /predict      an image (multipart field ``file``, or the raw bytes with an image
                       content type) -> per class the RLE, area, score and component boxes;
                       ``?overlay=1`` -> the image with its masks drawn, as PNG
    GET  /model        classes, colours, thresholds, post-processing, backend, versions
    GET  /health       liveness (the process answers), and the batcher's queue and counters
    GET  /ready        readiness: 200 while the batcher's worker runs and no batch has run longer
                       than ``request_timeout_s``; else 503 with the reason
    GET  /metrics      Prometheus metrics (``metrics``)
    GET  /             the viewer page
    GET  /docs         OpenAPI documentation (FastAPI's)

Only /predict and /model need the API key: probes (/health, /ready) and scrapers (/metrics)
run without one and learn nothing of the images, and the page asks for the key itself.

The model is loaded once. Networks run in the micro-batcher's thread (``batching``), so
concurrent requests share batches and the event loop never waits on them; decoding and
post-processing run in FastAPI's thread pool. Refusals: a wrong API key 401 and a declared
upload size over the limit 413 before the body is read (``guard``), an undeclared one as it
streams in (FastAPI's ``max_body_size``); a body slower than ``body_timeout_s`` 408 and headers
slower than ``header_timeout_s`` a closed connection (``protocol``); an image over the pixel limit 413
from its header, before decoding; a declared non-image type 415; bytes that decode to no image
400; an image the model cannot take 422; a full queue 503; a model that does not answer within
``request_timeout_s`` 504. Every answer carries its request id in ``X-Request-ID`` (``observe``).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import sys
import time
from contextlib import asynccontextmanager

import cv2
import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, Security, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from steelseg.errors import SteelsegError
from steelseg.files.images import ImageError, TooManyPixelsError, decode_gray
from steelseg.files.overlay import overlay
from steelseg.inference.predictor import InputError, Predictor
from steelseg.service.batching import MicroBatcher, QueueFullError
from steelseg.service.guard import API_KEY_HEADER, Guard
from steelseg.service.metrics import ServiceMetrics
from steelseg.service.observe import Observe
from steelseg.service.results import color_hex, image_result
from steelseg.service.schemas import ModelInfo, PredictAnswer, Ready
from steelseg.service.settings import ServiceSettings
from steelseg.version import __version__

log = logging.getLogger("steelseg.service")

IMAGE_TYPES = ("image/", "application/octet-stream")  # declared types taken as images
# The key as OpenAPI sees it, so that /docs can send it; auto_error=False because ``Guard``
# checks it, before the body is read, which a dependency cannot.
API_KEY_SCHEME = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key")


# /predict's answers besides 200 JSON, for the OpenAPI page
PREDICT_RESPONSES = {
    200: {
        "content": {"image/png": {}},
        "description": "JSON by default; with overlay=1 the image with its masks, as PNG",
    },
    400: {"description": "not a readable image"},
    401: {"description": "missing or wrong API key"},
    413: {"description": "upload or pixel count over the limit"},
    415: {"description": "not an image type"},
    422: {"description": "an image the model cannot take (size)"},
    503: {"description": "too many waiting requests"},
    504: {"description": "the model did not answer within the request timeout"},
}


def create_app(
    predictor: Predictor, settings: ServiceSettings | None = None, load_seconds: float | None = None
) -> FastAPI:
    """The service of ``predictor`` under ``settings`` (None: the defaults): the routes of the
    module docstring. ``load_seconds``: how long the model took to load, for /metrics."""
    settings = settings or ServiceSettings()
    metrics = ServiceMetrics(lambda: batcher.waiting, settings.max_batch, load_seconds)
    batcher = MicroBatcher(
        predictor.predict_outputs, settings.max_batch, settings.max_wait_ms, settings.max_queue, metrics.batch_done
    )

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(batcher.close)

    app = FastAPI(
        title="steelseg",
        version=__version__,
        summary="Steel-surface defect segmentation: per-class masks, areas, scores and boxes of an uploaded image.",
        lifespan=lifespan,
    )
    app.state.predictor, app.state.batcher, app.state.settings = predictor, batcher, settings
    max_bytes = round(settings.max_upload_mb * 1e6)
    keyed = [Security(API_KEY_SCHEME)] if settings.api_key else []  # declared only when one is needed
    _add_predict(app, predictor, batcher, settings, max_bytes, keyed)
    _add_pages(app, _model_info(predictor, settings), keyed)
    _add_probes(app, batcher, metrics, settings.request_timeout_s)
    _add_error_handlers(app, max_bytes)
    app.add_middleware(
        Guard,
        api_key=settings.api_key,
        protected={"/predict", "/model"},
        limited={"/predict"},
        max_bytes=max_bytes,
        body_timeout=settings.body_timeout_s,
    )
    app.add_middleware(Observe, metrics=metrics, routes={route.path for route in app.routes})  # outermost
    return app


def _add_predict(
    app: FastAPI, predictor: Predictor, batcher: MicroBatcher, settings: ServiceSettings, max_bytes: int, keyed: list
) -> None:
    @app.post(
        "/predict",
        summary="Defects of one image",
        max_body_size=max_bytes,
        response_model=PredictAnswer,
        responses=PREDICT_RESPONSES,
        dependencies=keyed,
    )
    async def predict(
        request: Request,
        file: UploadFile | None = File(None, description="the image (PNG, JPEG, BMP, TIFF; gray or colour)"),
        overlay_png: bool = Query(False, alias="overlay", description="return a PNG overlay instead of JSON"),
    ):
        started = time.perf_counter()
        data, name, declared = await _upload(request, file)
        if declared and not declared.startswith(IMAGE_TYPES):
            raise HTTPException(415, f"{name}: content type {declared} is not an image")
        image = await run_in_threadpool(_decode, data, name, settings.max_pixels)
        outputs = await _outputs(batcher, image, name, settings.request_timeout_s)
        if overlay_png:
            png = await run_in_threadpool(_overlay_png, predictor, image, outputs)
            return Response(png, media_type="image/png")
        classes = await run_in_threadpool(_result, predictor, outputs)  # post-processing, RLE: off the event loop
        return {
            "image": {"name": name, "height": image.shape[0], "width": image.shape[1]},
            "classes": classes,
            "elapsed_ms": round(1000 * (time.perf_counter() - started), 2),
        }


async def _outputs(batcher: MicroBatcher, image: np.ndarray, name: str, timeout: float):
    """The networks' outputs for ``image``, waited for at most ``timeout`` seconds: a backend that
    hangs must not hang its clients too. A request still queued at the deadline is dropped from
    the queue (its future is cancelled); one already running finishes unheard."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(batcher.submit(image)), timeout)
    except QueueFullError as err:
        raise HTTPException(503, str(err), headers={"Retry-After": "1"}) from None
    except InputError as err:
        raise HTTPException(422, f"{name}: {err}") from None
    except TimeoutError:
        raise HTTPException(504, f"{name}: the model did not answer within {timeout:g} s") from None


def _add_pages(app: FastAPI, model_info: dict, keyed: list) -> None:
    @app.get(
        "/model",
        summary="The model: classes, thresholds, post-processing, backend, versions",
        response_model=ModelInfo,
        dependencies=keyed,
    )
    async def model():
        return model_info

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(_viewer_html())


def _add_probes(app: FastAPI, batcher: MicroBatcher, metrics: ServiceMetrics, deadline: float) -> None:
    @app.get("/health", summary="Liveness and the batcher's queue (no API key)")
    async def health():
        return {"status": "ok", "waiting": batcher.waiting, "batches": batcher.batches, "images": batcher.images}

    @app.get(
        "/ready",
        summary="Readiness: the batcher runs and no batch is stuck (no API key)",
        response_model=Ready,
        responses={503: {"description": "not ready; detail says why"}},
    )
    async def ready():
        reason = _not_ready(batcher, deadline)
        if reason:
            raise HTTPException(503, reason)
        return {"status": "ready", "waiting": batcher.waiting}

    @app.get("/metrics", summary="Prometheus metrics (no API key: for scrapers)", response_class=PlainTextResponse)
    async def prometheus():
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)


def _not_ready(batcher: MicroBatcher, deadline: float) -> str | None:
    if not batcher.alive:
        return "the batcher's worker thread has stopped"
    running = batcher.running_for()
    if running > deadline:
        return f"a batch has been running for {running:.1f} s, longer than the {deadline:g} s deadline"
    return None


def _add_error_handlers(app: FastAPI, max_bytes: int) -> None:
    @app.exception_handler(SteelsegError)
    async def _user_error(request: Request, err: SteelsegError):
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 413 and err.detail == "Content Too Large":  # the body limit's own words: say which
            err = StarletteHTTPException(413, f"upload larger than the limit of {max_bytes / 1e6:g} MB")
        return await http_exception_handler(request, err)


async def _upload(request: Request, file: UploadFile | None) -> tuple[bytes, str, str]:
    """(bytes, a name for messages, the declared content type) of a multipart file or a raw body."""
    if file is not None:
        return await file.read(), file.filename or "upload", (file.content_type or "").lower()
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared.startswith("multipart/"):
        raise HTTPException(400, "multipart upload without a 'file' field")
    data = await request.body()
    if not data:
        raise HTTPException(400, "no image: send it as the multipart field 'file' or as the request body")
    return data, "upload", declared


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    try:
        return decode_gray(data, name, max_pixels)
    except TooManyPixelsError as err:
        raise HTTPException(413, str(err)) from None
    except ImageError as err:
        raise HTTPException(400, str(err)) from None


def _result(predictor: Predictor, outputs) -> list[dict]:
    masks = predictor.masks(outputs) if predictor.has_masks else None
    return image_result(outputs, masks, predictor.class_names, predictor.presence_threshold)


def _overlay_png(predictor: Predictor, image: np.ndarray, outputs) -> bytes:
    masks = predictor.masks(outputs) if predictor.has_masks else np.zeros((predictor.num_classes, *image.shape), bool)
    ok, png = cv2.imencode(".png", overlay(image, masks)[..., ::-1])  # OpenCV writes BGR
    return png.tobytes()


def _model_info(predictor: Predictor, settings: ServiceSettings) -> dict:
    post = predictor.postprocess
    return {
        "task": predictor.task,
        "classes": [
            {
                "id": c + 1,
                "name": name,
                "color": color_hex(c),
                "presence_threshold": float(predictor.presence_threshold[c]),
                "pixel_threshold": float(post.pixel_threshold[c]),
                "min_area": int(post.min_area[c]),
            }
            for c, name in enumerate(predictor.class_names)
        ],
        "masks": predictor.has_masks,
        "postprocess": post.describe(predictor.class_names),
        "backend": predictor.describe(),
        "members": [m.name for m in predictor.members],
        "limits": settings.public(),
        "api_key_header": API_KEY_HEADER,
        "versions": _versions(),
    }


def _versions() -> dict:
    """Versions of what is loaded; torch only if it was imported (an ONNX deployment has none)."""
    versions = {
        "steelseg": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    for module in ("onnxruntime", "torch", "fastapi"):
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "unknown")
    return versions


def _viewer_html() -> str:
    return importlib.resources.files("steelseg.service").joinpath("viewer.html").read_text(encoding="utf-8")
