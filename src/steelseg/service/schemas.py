"""The shapes of the service's JSON answers, for the OpenAPI page and its clients: the answers
are built as plain dicts (``results``, ``app._model_info``) and checked against these on the way
out, so a field added there and not here is dropped, not published unannounced."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Box(BaseModel):
    x: int = Field(description="left edge, 0-based pixels")
    y: int = Field(description="top edge, 0-based pixels")
    width: int
    height: int
    area: int = Field(description="the component's area in pixels")


class ClassResult(BaseModel):
    id: int = Field(description="1-based class id, as in the submission")
    name: str
    present: bool
    score: float = Field(description="the class score: the mask's peak probability, or the class head's")
    threshold: float | None = Field(description="the presence threshold when a classifier alone decides")
    area: int | None = Field(description="mask area in pixels; None without masks")
    rle: str | None = Field(description="run-length encoded mask (column-major, 1-based); None without masks")
    boxes: list[Box] = Field(description="one per 8-connected component, largest first")


class ImageInfo(BaseModel):
    name: str
    height: int
    width: int


class PredictAnswer(BaseModel):
    image: ImageInfo
    classes: list[ClassResult]
    elapsed_ms: float


class ModelClass(BaseModel):
    id: int
    name: str
    color: str = Field(description="#rrggbb, as in overlays")
    presence_threshold: float
    pixel_threshold: float
    min_area: int


class ModelInfo(BaseModel):
    task: str
    classes: list[ModelClass]
    masks: bool
    postprocess: str = Field(description="the post-processing, one line per class")
    backend: str
    members: list[str]
    limits: dict[str, int | float | bool] = Field(description="the service's limits; api_key: whether one is needed")
    api_key_header: str
    versions: dict[str, str]


class Ready(BaseModel):
    status: str
    waiting: int = Field(description="requests waiting for the networks")
