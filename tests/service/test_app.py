"""Every endpoint and every refusal of the service, in process (FastAPI's test client), against
masks planted in the image (conftest): the truth is the rectangles drawn, not the code."""

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from steelseg.core import rle
from steelseg.inference.predictor import SizeLimits
from steelseg.service.app import ServiceSettings, create_app

from .conftest import CLASS_NAMES, GRAY, ThresholdNetwork, make_predictor, planted, png_bytes


def client(predictor, **settings) -> TestClient:
    return TestClient(create_app(predictor, ServiceSettings(**settings)))


def network_calls(predictor) -> int:
    return len(predictor.members[0].backend.batch_sizes)


def check_planted(answer: dict, height: int = 64, width: int = 160) -> None:
    _, truth = planted(height, width)
    assert answer["image"]["height"] == height and answer["image"]["width"] == width
    by_name = {c["name"]: c for c in answer["classes"]}
    assert list(by_name) == CLASS_NAMES and [c["id"] for c in answer["classes"]] == [1, 2, 3]
    for index, name in enumerate(CLASS_NAMES):
        np.testing.assert_array_equal(rle.decode(by_name[name]["rle"], (height, width)), truth[index])
    assert [by_name[n]["present"] for n in CLASS_NAMES] == [True, False, True]
    assert [by_name[n]["area"] for n in CLASS_NAMES] == [300, 0, 96]
    assert by_name["scratch"]["boxes"] == [{"x": 20, "y": 5, "width": 30, "height": 10, "area": 300}]
    assert by_name["patch"]["boxes"] == [] and by_name["patch"]["rle"] == ""
    assert by_name["pit"]["boxes"] == [{"x": 100, "y": 40, "width": 12, "height": 8, "area": 96}]
    assert by_name["scratch"]["score"] == 1.0 and by_name["patch"]["score"] == 0.0


def test_predict_multipart_returns_the_planted_masks_areas_and_boxes(predictor):
    image, _ = planted()
    response = client(predictor).post("/predict", files={"file": ("strip.png", png_bytes(image), "image/png")})
    assert response.status_code == 200, response.text
    check_planted(response.json())
    assert response.json()["image"]["name"] == "strip.png"


def test_predict_raw_body_and_a_colour_jpeg_free_png(predictor):
    image, _ = planted()
    rgb = np.repeat(image[..., None], 3, axis=2)  # a colour file of a gray picture, as Severstal's JPEGs are
    response = client(predictor).post("/predict", content=png_bytes(rgb), headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    check_planted(response.json())


def test_two_separate_components_give_two_boxes_largest_first(predictor):
    image = np.full((40, 80), GRAY, np.uint8)
    image[2:4, 2:4] = 255  # 4 px
    image[10:20, 50:60] = 255  # 100 px
    answer = client(predictor).post("/predict", files={"file": ("a.png", png_bytes(image), "image/png")}).json()
    assert answer["classes"][0]["boxes"] == [
        {"x": 50, "y": 10, "width": 10, "height": 10, "area": 100},
        {"x": 2, "y": 2, "width": 2, "height": 2, "area": 4},
    ]


def test_overlay_png_tints_the_masks_in_their_class_colours(predictor):
    image, _ = planted()
    response = client(predictor).post(
        "/predict?overlay=1", files={"file": ("strip.png", png_bytes(image), "image/png")}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    rgb = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    assert rgb.shape == (64, 160, 3)
    assert tuple(rgb[30, 70]) == (GRAY, GRAY, GRAY)  # no defect: the image unchanged
    inside_scratch = rgb[10, 35]  # 0.65 * 250 + 0.35 * (230, 25, 75): red
    np.testing.assert_allclose(inside_scratch, 0.65 * 250 + 0.35 * np.array([230, 25, 75]), atol=1)
    inside_pit = rgb[44, 106]  # 0.65 * 10 + 0.35 * (0, 130, 200): blue
    np.testing.assert_allclose(inside_pit, 0.65 * 10 + 0.35 * np.array([0, 130, 200]), atol=1)


def test_model_health_docs_and_page(predictor):
    c = client(predictor)
    model = c.get("/model").json()
    assert [k["name"] for k in model["classes"]] == CLASS_NAMES
    assert [k["color"] for k in model["classes"]] == ["#e6194b", "#3cb44b", "#0082c8"]
    assert {k["pixel_threshold"] for k in model["classes"]} == {0.5}
    assert model["masks"] is True and model["backend"] == "fake threshold network (numpy)"
    assert model["limits"]["api_key"] is False and "steelseg" in model["versions"]
    health = c.get("/health").json()
    assert health["status"] == "ok" and health["waiting"] == 0
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/predict", "/model", "/health"} <= set(paths)
    assert c.get("/docs").status_code == 200
    page = c.get("/")
    assert (
        page.status_code == 200
        and page.headers["content-type"].startswith("text/html")
        and "<html" in page.text.lower()
    )


def test_health_counts_images_and_batches(predictor):
    c = client(predictor)
    image, _ = planted()
    for _ in range(3):
        assert c.post("/predict", files={"file": ("a.png", png_bytes(image), "image/png")}).status_code == 200
    health = c.get("/health").json()
    assert health["images"] == 3 and 1 <= health["batches"] <= 3


def test_upload_over_the_size_limit_is_413_before_inference(predictor):
    image, _ = planted()
    data = png_bytes(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8))  # ~40 kB
    c = client(predictor, max_upload_mb=0.01)
    response = c.post("/predict", files={"file": ("big.png", data, "image/png")})
    assert response.status_code == 413 and "limit of 0.01 MB" in response.json()["detail"]
    assert network_calls(predictor) == 0
    assert c.post("/predict", files={"file": ("small.png", png_bytes(image), "image/png")}).status_code == 200


def test_streamed_upload_without_content_length_is_cut_at_the_limit(predictor):
    def chunks():
        for _ in range(100):
            yield b"\0" * 1000  # 100 kB in all, no Content-Length header

    response = client(predictor, max_upload_mb=0.01).post(
        "/predict", content=chunks(), headers={"content-type": "image/png"}
    )
    assert response.status_code == 413
    assert network_calls(predictor) == 0


def bomb_png(height: int, width: int) -> bytes:
    """A PNG header declaring height x width 8-bit gray pixels, with one short row of data: a
    decoder that trusted the header would allocate height x width bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_its_header(predictor):
    data = bomb_png(100_000, 100_000)  # 10 billion pixels in 100 bytes
    assert len(data) < 1000
    response = client(predictor).post("/predict", files={"file": ("bomb.png", data, "image/png")})
    assert response.status_code == 413
    assert "bomb.png" in response.json()["detail"] and "10000000000 pixels" in response.json()["detail"]
    assert network_calls(predictor) == 0


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(predictor):
    data = bomb_png(5000, 5000)  # 25 million pixels declared, under Pillow's own limit
    response = client(predictor).post("/predict", files={"file": ("big.png", data, "image/png")})
    assert response.status_code == 413 and "5000x5000" in response.json()["detail"]
    assert network_calls(predictor) == 0


def test_pixel_limit_is_a_setting(predictor):
    image, _ = planted()  # 64 x 160 = 10,240 pixels
    response = client(predictor, max_pixels=10_000).post(
        "/predict", files={"file": ("a.png", png_bytes(image), "image/png")}
    )
    assert response.status_code == 413 and "10,240 pixels" in response.json()["detail"]


@pytest.mark.parametrize(
    ("files", "content", "headers", "status", "says"),
    [
        ({"file": ("notes.txt", b"hello", "text/plain")}, None, None, 415, "text/plain is not an image"),
        (
            {"file": ("broken.png", b"\x89PNG\r\n\x1a\n garbage", "image/png")},
            None,
            None,
            400,
            "broken.png: cannot read image",
        ),
        ({"file": ("empty.png", b"", "image/png")}, None, None, 400, "empty.png"),
        ({"other": ("a.png", b"x", "image/png")}, None, None, 400, "without a 'file' field"),
        (None, b"", {"content-type": "image/png"}, 400, "no image"),
        (None, b"%PDF-1.4 not an image", {"content-type": "application/pdf"}, 415, "application/pdf is not an image"),
    ],
)
def test_non_images_are_refused_with_a_message(predictor, files, content, headers, status, says):
    response = client(predictor).post("/predict", files=files, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    assert network_calls(predictor) == 0


def test_image_the_model_cannot_take_is_422():
    predictor = make_predictor()
    predictor.members[0].limits = SizeLimits(min_side=32)
    response = client(predictor).post(
        "/predict", files={"file": ("tiny.png", png_bytes(np.zeros((16, 64), np.uint8)), "image/png")}
    )
    assert (
        response.status_code == 422
        and "tiny.png" in response.json()["detail"]
        and "minimum of 32" in response.json()["detail"]
    )


def test_api_key_is_required_before_the_body_is_read_and_no_inference_runs(predictor):
    image, _ = planted()
    c = client(predictor, api_key="s3cret")
    upload = {"file": ("a.png", png_bytes(image), "image/png")}
    keyless = c.post("/predict", files=upload)
    assert keyless.status_code == 401 and "x-api-key" in keyless.json()["detail"]
    assert keyless.headers["www-authenticate"] == 'APIKey header="X-API-Key"'  # names the header to send
    assert c.post("/predict", files=upload, headers={"x-api-key": "wrong"}).status_code == 401
    assert c.get("/model").status_code == 401
    assert network_calls(predictor) == 0
    for open_path in ("/health", "/ready", "/metrics", "/"):  # probes, scrapers and the page need no key
        assert c.get(open_path).status_code == 200, open_path
    response = c.post("/predict", files=upload, headers={"x-api-key": "s3cret"})
    assert response.status_code == 200
    check_planted(response.json())
    assert c.get("/model", headers={"X-API-Key": "s3cret"}).json()["limits"]["api_key"] is True
    assert "s3cret" not in c.get("/model", headers={"X-API-Key": "s3cret"}).text


def test_classifier_only_model_answers_presence_by_score():
    from steelseg.config import load_config
    from steelseg.core.outputs import CLASSES
    from steelseg.core.postprocess import PostProcess
    from steelseg.inference.ensemble import Member
    from steelseg.inference.predictor import Predictor

    class Scores:
        name = "fake"

        def __call__(self, x):
            return {CLASSES: np.tile(np.array([[0.9, 0.1, 0.6]], np.float32), (len(x), 1))}

        def describe(self):
            return "fake classifier"

    config = load_config(None, ["data.class_names=[scratch, patch, pit]", "model.task=classify"])
    predictor = Predictor(
        [Member("cls", config, Scores(), [0, 1, 2])],
        PostProcess.uniform(3, 0.5, 0),
        CLASS_NAMES,
        screen_threshold=np.array([0.5, 0.5, 0.7]),
    )
    image, _ = planted()
    answer = client(predictor).post("/predict", files={"file": ("a.png", png_bytes(image), "image/png")}).json()
    assert [c["present"] for c in answer["classes"]] == [True, False, False]  # 0.6 is under pit's 0.7
    assert [c["score"] for c in answer["classes"]] == pytest.approx([0.9, 0.1, 0.6])
    assert all(c["rle"] is None and c["area"] is None for c in answer["classes"])
    overlay = client(predictor).post("/predict?overlay=1", files={"file": ("a.png", png_bytes(image), "image/png")})
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"


def test_openapi_declares_the_key_and_the_answers_shapes(predictor):
    keyed = client(predictor, api_key="s3cret").get("/openapi.json").json()
    assert keyed["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "the service's API key",
    }
    paths = keyed["paths"]
    assert paths["/predict"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert paths["/model"]["get"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in paths["/health"]["get"] and "security" not in paths["/metrics"]["get"]
    ok = paths["/predict"]["post"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/PredictAnswer"}
    assert "image/png" in ok and "504" in paths["/predict"]["post"]["responses"]
    model = paths["/model"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert model == {"$ref": "#/components/schemas/ModelInfo"}
    open_service = client(predictor).get("/openapi.json").json()  # no key: none declared
    assert "securitySchemes" not in open_service.get("components", {})
    assert "security" not in open_service["paths"]["/predict"]["post"]


class StuckNetwork(ThresholdNetwork):
    """The planted network, but each call first waits for ``release``: a backend that hangs."""

    def __init__(self, release: threading.Event):
        super().__init__()
        self.release = release
        self.entered = threading.Event()

    def __call__(self, x):
        self.entered.set()
        self.release.wait(30)
        return super().__call__(x)


def test_a_stuck_backend_gives_504_after_the_request_timeout_and_ready_503():
    release = threading.Event()
    predictor = make_predictor()
    network = predictor.members[0].backend = StuckNetwork(release)
    c = client(predictor, request_timeout_s=0.5)
    upload = {"file": ("a.png", png_bytes(planted()[0]), "image/png")}
    try:
        assert c.get("/ready").status_code == 200
        began = time.monotonic()
        first = c.post("/predict", files=upload)
        first_s = time.monotonic() - began
        assert network.entered.is_set()  # the batch runs and hangs
        began = time.monotonic()
        queued = c.post("/predict", files=upload)  # waits behind the hung batch
        queued_s = time.monotonic() - began
        ready = c.get("/ready")
        health = c.get("/health")
    finally:
        release.set()
    for answer, seconds in ((first, first_s), (queued, queued_s)):
        assert answer.status_code == 504 and answer.json()["detail"] == "a.png: the model did not answer within 0.5 s"
        assert 0.5 <= seconds < 3.0, seconds  # the timeout, not the 30 s the network would hang
    assert ready.status_code == 503 and "a batch has been running for" in ready.json()["detail"]
    assert "longer than the 0.5 s deadline" in ready.json()["detail"]
    assert health.status_code == 200  # alive all along: liveness is not readiness
    deadline = time.monotonic() + 10
    while c.get("/ready").status_code != 200:  # released: the batch ends and the service is ready again
        assert time.monotonic() < deadline, "not ready again 10 s after the backend was released"
        time.sleep(0.05)
    assert network.batch_sizes == [1]  # the request that timed out in the queue was dropped, never run
    assert c.post("/predict", files=upload).status_code == 200


def test_ready_is_503_once_the_batcher_worker_has_stopped(predictor):
    app = create_app(predictor, ServiceSettings())
    c = TestClient(app)
    assert c.get("/ready").json() == {"status": "ready", "waiting": 0}
    app.state.batcher.close()  # what shutdown does; a worker that died looks the same
    ready = c.get("/ready")
    assert ready.status_code == 503 and ready.json() == {"detail": "the batcher's worker thread has stopped"}
    assert c.get("/health").status_code == 200
