"""The declared answers match the built ones: every field that ``results`` and the app put in an
answer is declared in ``schemas`` (else the response model would drop it silently), and no
declared field is missing from a real answer."""

from fastapi.testclient import TestClient

from steelseg.service.app import ServiceSettings, create_app
from steelseg.service.results import image_result
from steelseg.service.schemas import Box, ClassResult, ImageInfo, ModelClass, ModelInfo, PredictAnswer

from .conftest import make_predictor, planted, png_bytes


def test_the_predict_answer_has_exactly_the_declared_fields():
    predictor = make_predictor()
    image, _ = planted()
    outputs = predictor.predict_outputs(image[None])[0]
    # the per-class entries as ``results`` builds them, before any response model filters them
    classes = image_result(outputs, predictor.masks(outputs), predictor.class_names, predictor.presence_threshold)
    assert all(set(entry) == set(ClassResult.model_fields) for entry in classes)
    boxes = [box for entry in classes for box in entry["boxes"]]
    assert len(boxes) == 2 and all(set(box) == set(Box.model_fields) for box in boxes)
    upload = {"file": ("a.png", png_bytes(image), "image/png")}
    served = TestClient(create_app(predictor)).post("/predict", files=upload).json()
    assert set(served) == set(PredictAnswer.model_fields) and set(served["image"]) == set(ImageInfo.model_fields)
    assert served["classes"] == classes  # the response model dropped nothing and changed no value


def test_the_model_answer_has_exactly_the_declared_fields():
    from steelseg.service.app import _model_info

    predictor = make_predictor()
    built = _model_info(predictor, ServiceSettings())  # the dict the route returns, before filtering
    assert set(built) == set(ModelInfo.model_fields)
    assert all(set(entry) == set(ModelClass.model_fields) for entry in built["classes"])
    served = TestClient(create_app(predictor)).get("/model").json()
    assert served["limits"] == ServiceSettings().public() | {"api_key": False}  # ints, floats, bools as they were
    assert served["classes"] == built["classes"] and served["versions"] == built["versions"]
